"""Retrying transient failures with exponential backoff and jitter, a bounded number of times."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["RetryPolicy", "is_transient", "TransientError"]

_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
_TRANSIENT_S3 = {"SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable",
                 "Throttling", "ThrottlingException", "RequestLimitExceeded", "503", "500"}


class TransientError(Exception):
    """Raise this from a build to ask for a retry explicitly."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying: throttling, 5xx, connection resets, timeouts."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status in _TRANSIENT_HTTP
    if isinstance(response, dict):  # botocore ClientError
        code = str(response.get("Error", {}).get("Code", ""))
        http = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in _TRANSIENT_S3 or http in _TRANSIENT_HTTP
    module = type(exc).__module__
    name = type(exc).__name__
    if module.startswith(("requests", "urllib3", "botocore")):
        return name in {"ConnectionError", "ChunkedEncodingError", "ReadTimeout", "ConnectTimeout", "Timeout",
                        "ProtocolError", "EndpointConnectionError", "ConnectionClosedError",
                        "ReadTimeoutError", "ConnectTimeoutError", "IncompleteReadError", "ResponseStreamingError"}
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        return is_transient(cause)
    return False


@attrs.frozen
class RetryPolicy:
    """``attempts`` tries in all; waits ``base * 2**n`` (capped at ``cap``) with full jitter."""

    attempts: int = 5
    base: float = 0.2
    cap: float = 10.0
    classify: Callable[[BaseException], bool] = is_transient

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``attempt`` (1-based)."""
        upper = min(self.cap, self.base * (2 ** (attempt - 1)))
        return (rng or random).uniform(0, upper)

    def call(self, fn: Callable[..., Any], *args: Any, on_retry: Callable[[int, BaseException], None] | None = None,
             **kwargs: Any) -> Any:
        """Call ``fn`` until it succeeds, a permanent error occurs, or the attempts run out."""
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                attempt += 1
                if attempt >= self.attempts or not self.classify(exc):
                    raise
                if on_retry is not None:
                    on_retry(attempt, exc)
                time.sleep(self.delay(attempt))
