"""Running a thread pool's Python-bound work on one core when that is measurably faster.

Threads of one interpreter take turns holding the GIL. When partition builds are mostly
Python work (making frames, decoding JSON) and the threads run on several cores, every turn
moves the interpreter's state from one core's caches to another's and wakes a thread across
cores, which on a virtual machine costs far more than the turn itself: measured on 2 cores,
2,000 partition builds of 500-row pandas frames take 20-25 % less wall time (and a third less
CPU) with the pool's threads on one core. Builds that spend their time outside the GIL
(compressing, copying files, native readers) lose by it, since they could use every core.

:class:`CorePinning` finds out which case it is while the pool works: it measures the pool's
rate (items finished per second) over a window with its threads free, then over a window with
them on one core, keeps one core when it was faster (or as fast, within the noise of a window,
for clearly less CPU per item) and measures again now and then, since a run's tables differ. Linux only (``os.sched_setaffinity``); elsewhere, on
one core, or with ``mode="off"`` it does nothing.

Threads and processes that a build starts while its thread is on one core inherit that core;
the threads among them are given back every core when the pool leaves the core (at the latest
when a map ends). Child processes keep it; a build that starts some may want ``mode="off"``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

__all__ = ["CorePinning", "PINNING_MODES"]

log = logging.getLogger("bdc.runner")

#: ``auto``: measure and decide; ``on``: always one core; ``off``: never.
PINNING_MODES = ("auto", "on", "off")


class CorePinning:
    """Decides, for the worker threads of one pool, whether they run on one core (see the module)."""

    #: Seconds of work before the first window (a short map is not measured at all).
    warmup_s = 0.5
    #: Seconds a measuring window lasts at least (and items it counts at least: twice the workers).
    window_s = 0.4
    #: Seconds after a switch whose finished items are not counted (they started before it).
    settle_s = 0.03
    #: One core is kept only when its rate is at least this much higher than free threads'.
    margin = 1.03
    #: ... or at least this share of it, with at most this share of the CPU per item (as fast
    #: within the noise of a window, for clearly less CPU).
    par = 0.97
    cpu_share = 0.85
    #: Windows run in the chosen mode before measuring both again (doubled, up to ``max_keep``,
    #: each time a measure confirms the choice).
    keep_windows = 8
    max_keep = 64

    def __init__(self, mode: str = "auto", workers: int = 1):
        if mode not in PINNING_MODES:
            raise ValueError(f"thread pinning {mode!r}: expected one of {', '.join(PINNING_MODES)}")
        self.mode = mode
        self.min_items = 2 * max(1, workers)
        self._all: frozenset[int] = frozenset()
        self._one: frozenset[int] = frozenset()
        if mode != "off" and hasattr(os, "sched_setaffinity"):
            try:
                cores = frozenset(os.sched_getaffinity(0))
            except OSError:  # pragma: no cover - not allowed here
                cores = frozenset()
            if len(cores) > 1:
                self._all = cores
                ordered = sorted(cores)
                self._one = frozenset({ordered[os.getpid() % len(ordered)]})
        #: Whether this pool's threads may be put on one core at all.
        self.enabled = bool(self._one)
        #: Whether worker threads should be on one core now.
        self.pinned = self.enabled and mode == "on"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._workers: set[int] = set()  # native ids of the pool's threads
        self._before: set[int] | None = None  # the process's threads when the pool went to one core
        # measuring (auto): the phase, when the current window's counting starts, items counted
        self._phase = "free"  # "free" -> "one" -> "keep" -> "free" ...
        self._free_rate = 0.0
        self._free_cpu = 0.0  # CPU seconds per item measured with free threads
        self._cpu = 0.0  # the process's CPU time when the window's counting started
        self._kept = 0
        self._keep = self.keep_windows
        self._choice: bool | None = None  # the last measure's choice
        self._started: float | None = None  # set by the first item (+ warmup_s)
        self._count = 0
        #: What was measured: (phase, items per second in its window, CPU seconds per item,
        #: whether on one core after).
        self.decisions: list[tuple[str, float, float, bool]] = []

    # -- in the worker threads -----------------------------------------------------------------------

    def before_item(self) -> None:
        """In a worker thread, before it runs an item: on one core or on all, as decided now."""
        if not self.enabled:
            return
        local = self._local
        want = self.pinned
        if getattr(local, "pinned", False) is want:
            return
        if not hasattr(local, "pinned") or (want and self._before is None):
            with self._lock:
                self._workers.add(threading.get_native_id())
                if want and self._before is None:  # threads from now on may inherit the one core
                    self._before = _threads()
        self._set(0, self._one if want else self._all)
        local.pinned = want

    def after_item(self) -> None:
        """In a worker thread, after an item: count it, and close the window when it is over."""
        if not self.enabled or self.mode != "auto":
            return
        now = time.monotonic()
        started = self._started
        if started is None:  # the pool's first item (or the first after it was idle)
            self._started, self._count = now + (self.warmup_s if not self.decisions else self.settle_s), 0
            return
        if now < started:
            return
        if self._count == 0:
            self._cpu = time.process_time()
        self._count += 1  # (a lost increment under a race only shortens a window)
        if now - started < self.window_s or self._count < self.min_items:
            return
        if not self._lock.acquire(blocking=False):
            return
        try:
            started = self._started
            if started is not None and now - started >= self.window_s and self._count >= self.min_items:
                count = self._count
                self._close_window(count / (now - started), now, (time.process_time() - self._cpu) / count)
        finally:
            self._lock.release()

    def leave(self) -> None:
        """In a worker thread that takes no more items (for now): back on every core."""
        local = self._local
        if getattr(local, "pinned", False):
            self._set(0, self._all)
            local.pinned = False

    # -- deciding ------------------------------------------------------------------------------

    def _close_window(self, rate: float, now: float, cpu: float = 0.0) -> None:
        """A window closed: ``rate`` items per second, ``cpu`` CPU seconds per item (the process's)."""
        phase = self._phase
        if phase == "free":
            self._free_rate, self._free_cpu = rate, cpu
            self._switch("one", True, now)
        elif phase == "one":
            keep_one = rate >= self._free_rate * self.margin or (
                rate >= self._free_rate * self.par and 0 < cpu <= self._free_cpu * self.cpu_share)
            self._keep = min(self.max_keep, self._keep * 2) if self._choice is keep_one else self.keep_windows
            self._choice = keep_one
            self._kept = 0
            self._switch("keep", keep_one, now)
        else:
            self._kept += 1
            if self._kept >= self._keep:
                self._switch("free", False, now)
            else:
                self._started, self._count = now, 0
                return
        self.decisions.append((phase, rate, cpu, self.pinned))
        log.debug("build threads %s: %.0f items/s; %s now", _PHASES[phase], rate,
                  "on one core" if self.pinned else "on every core")

    def _switch(self, phase: str, pinned: bool, now: float) -> None:
        was = self.pinned
        self._phase = phase
        self.pinned = pinned
        self._started, self._count = now + (self.settle_s if pinned != was else 0.0), 0
        if was and not pinned:
            self._release_inherited()

    def finish(self, idle: bool) -> None:
        """When a map ends: threads the builds started on one core get every core back. ``idle``:
        no other map is running, so the window being measured stops here (the next map's first
        item starts a new one: time without work is no measure of either mode)."""
        if self.enabled:
            with self._lock:
                self._release_inherited()
                if idle:
                    self._started = None

    def _release_inherited(self) -> None:
        """Give every core back to the threads started while the pool was on one core (not the
        pool's own: each of those moves back itself before its next item)."""
        before, self._before = self._before, (_threads() if self.pinned else None)
        if before is None:
            return
        for tid in _threads() - before - self._workers:
            try:
                if frozenset(os.sched_getaffinity(tid)) == self._one:
                    self._set(tid, self._all)
            except OSError:  # gone already
                continue

    def measures(self) -> list[dict[str, Any]]:
        """:attr:`decisions` as a run report lists them."""
        return [{"measured": _PHASES[phase], "items_per_s": round(rate, 1), "cpu_ms_per_item": round(cpu * 1000, 3),
                 "one_core_after": pinned} for phase, rate, cpu, pinned in self.decisions]

    @staticmethod
    def _set(tid: int, cores: Any) -> None:
        try:
            os.sched_setaffinity(tid, cores)
        except OSError:  # pragma: no cover - a thread that ended, or a container that forbids it
            pass


_PHASES = {"free": "free", "one": "one core", "keep": "kept"}


def _threads() -> set[int]:
    """The native ids of this process's threads (Linux)."""
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except OSError:  # pragma: no cover - not Linux
        return set()
