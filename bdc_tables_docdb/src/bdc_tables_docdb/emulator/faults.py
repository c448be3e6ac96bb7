"""Fault injection for the DocDB emulator.

A :class:`FaultConfig` describes how often the emulated API gateway misbehaves: extra latency,
5xx errors, 429 throttling (with ``Retry-After``) and dropped connections (the socket is closed
without any response). A :class:`FaultInjector` turns a config into per-request decisions with a
seeded RNG, so a given seed and request order always give the same faults.

With ``FaultConfig(keyed=True)`` the decision for a request is drawn from its own RNG, seeded
with the seed, the request (method, path and query, body digest) and how many times that same
request came before: the same seed and the same *set* of requests give the same faults, however
concurrent clients interleave them (a parallel sync is reproducible), and a retried request
draws anew.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Literal

__all__ = ["FaultConfig", "FaultDecision", "FaultInjector", "SERVER_ERROR_CODES"]

#: The 5xx status codes an injected server error picks from (uniformly).
SERVER_ERROR_CODES: tuple[int, ...] = (500, 502, 503, 504)

FaultKind = Literal["error_5xx", "error_429", "drop"]


@dataclass(frozen=True)
class FaultConfig:
    """How the emulator misbehaves.

    Rates are probabilities per request, drawn from one seeded RNG; their sum must be at most 1.

    Attributes:
        latency_ms: extra delay added to every request (on top of the emulator's own latency).
        error_5xx_rate: probability of answering 500, 502, 503 or 504.
        error_429_rate: probability of answering 429 ``Too Many Requests`` with ``Retry-After``.
        drop_rate: probability of closing the connection without sending any response.
        seed: seed of the RNG deciding the faults; the same seed gives the same sequence.
        retry_after_s: value of the ``Retry-After`` header sent with injected 429s.
        keyed: draw each request's fault from the request itself and its repetition count
            (reproducible under concurrency) instead of from one sequence in arrival order.
    """

    latency_ms: float = 0
    error_5xx_rate: float = 0.0
    error_429_rate: float = 0.0
    drop_rate: float = 0.0
    seed: int = 0
    retry_after_s: int = 1
    keyed: bool = False

    def __post_init__(self) -> None:
        """Validate the rates and latency."""
        for name in ("error_5xx_rate", "error_429_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FaultConfig.{name} must be within [0, 1], got {value!r}")
        total = self.error_5xx_rate + self.error_429_rate + self.drop_rate
        if total > 1.0 + 1e-9:
            raise ValueError(f"FaultConfig rates sum to {total:.3f}, which is more than 1")
        if self.latency_ms < 0:
            raise ValueError(f"FaultConfig.latency_ms must be >= 0, got {self.latency_ms!r}")
        if self.retry_after_s < 0:
            raise ValueError(f"FaultConfig.retry_after_s must be >= 0, got {self.retry_after_s!r}")

    @property
    def active(self) -> bool:
        """True when this config injects anything at all."""
        return bool(self.latency_ms or self.error_5xx_rate or self.error_429_rate or self.drop_rate)


@dataclass(frozen=True)
class FaultDecision:
    """What to do with one request: ``kind`` is ``None`` for a normal answer.

    Attributes:
        kind: ``"error_5xx"``, ``"error_429"``, ``"drop"`` or ``None``.
        status: the HTTP status to send for ``error_5xx``/``error_429`` (else ``None``).
    """

    kind: FaultKind | None = None
    status: int | None = None


class FaultInjector:
    """Thread-safe, seeded per-request fault decisions for one :class:`FaultConfig`."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        """Start deciding for ``config`` (``None`` = no faults)."""
        self._lock = threading.Lock()
        self._config = config or FaultConfig()
        self._rng = random.Random(self._config.seed)
        self._seen: Counter[str] = Counter()

    @property
    def config(self) -> FaultConfig:
        """The active configuration."""
        return self._config

    def reset(self, config: FaultConfig | None = None) -> None:
        """Switch to ``config`` (``None`` = no faults) and reseed the RNG from its seed."""
        with self._lock:
            self._config = config or FaultConfig()
            self._rng = random.Random(self._config.seed)
            self._seen.clear()

    def decide(self, request: str | None = None) -> FaultDecision:
        """Draw the fault (if any) for the next request.

        One uniform draw per request, compared against the cumulative rates in the order
        5xx, 429, drop; a 5xx draws a second number to pick the status code. With a keyed
        config, ``request`` (a text naming the request: method, path, query, body digest) and
        its repetition count seed the draw; without ``request`` the shared sequence is used.
        """
        with self._lock:
            cfg = self._config
            if not (cfg.error_5xx_rate or cfg.error_429_rate or cfg.drop_rate):
                return FaultDecision()
            rng = self._rng
            if cfg.keyed and request is not None:
                n = self._seen[request]
                self._seen[request] += 1
                digest = hashlib.sha256(f"{cfg.seed}|{n}|{request}".encode()).hexdigest()
                rng = random.Random(int(digest[:16], 16))
            u = rng.random()
            if u < cfg.error_5xx_rate:
                return FaultDecision("error_5xx", rng.choice(SERVER_ERROR_CODES))
            u -= cfg.error_5xx_rate
            if u < cfg.error_429_rate:
                return FaultDecision("error_429", 429)
            u -= cfg.error_429_rate
            if u < cfg.drop_rate:
                return FaultDecision("drop")
            return FaultDecision()
