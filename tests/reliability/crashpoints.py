"""The synthetic sync plugin as seen by a ``bdc-sync`` process under a crash test, plus a tracer of
the cache mutations that process makes.

Installed as the entry point ``syncplugin`` of a throw-away distribution (see ``test_crash.py``),
this module *is* :mod:`syncplugin` for the process (its ``bdc_tables`` hook: the tables of
``$BDC_SYNCPLUGIN_SOURCE``). With ``BDC_CRASH_TRACE`` naming a file, it also wraps the storage
backends' mutating calls (``open_write``/``open_write_staged``/``write_bytes``, ``copy``, ``delete``,
``delete_prefix``) to append one JSON line per call to that file, and with ``BDC_CRASH_STOP`` set to
``{"when": "pre"|"post", "op": ..., "match": regex, "nth": n, "after": {"op": ..., "match": regex}}``
it stops the whole process (``SIGSTOP``) at the ``nth`` matching call: ``pre`` with the call's
bytes written but not yet visible (a write's temp file filled, not renamed, or a staged file
written in place not yet closed; a copy or delete not yet made), ``post`` just after it took effect. With ``after``, only calls made by a thread after
that thread made a call matching ``after`` count (the calls of one table's publication, not those
of a table building beside it). The test then kills the stopped process with ``SIGKILL``: a crash at an
exact point of the publication protocol, with every other thread wherever it happened to be.

Nothing here changes what the process does: the calls go through unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from syncplugin import bdc_tables  # noqa: F401  (the hook: this module is the plugin)

ENV_TRACE = "BDC_CRASH_TRACE"
ENV_STOP = "BDC_CRASH_STOP"

_lock = threading.Lock()
_local = threading.local()
_counts: dict[str, int] = {}
_stop: dict[str, Any] | None = None
_trace_fd: int | None = None


def _record(event: dict[str, Any]) -> None:
    if _trace_fd is not None:
        os.write(_trace_fd, (json.dumps(event) + "\n").encode())


def _checkpoint(when: str, op: str, key: str) -> None:
    """Count the call; stop the process here if it is the configured point."""
    stop = _stop
    if stop is None:
        return
    after = stop.get("after")
    if after and when == "post" and op == after["op"] and re.search(after["match"], key):
        _local.armed = True
    if stop.get("when") != when or stop.get("op") != op:
        return
    if after and not getattr(_local, "armed", False):
        return
    if not re.search(stop.get("match", ""), key):
        return
    with _lock:
        n = _counts[when] = _counts.get(when, 0) + 1
    if n == int(stop.get("nth", 1)):
        _record({"stopped": when, "op": op, "key": key, "t": time.time()})
        os.kill(os.getpid(), signal.SIGSTOP)  # the test kills us with SIGKILL while we are stopped
        time.sleep(60)  # if we are resumed (never, in the tests): do not go on


@contextlib.contextmanager
def _outer() -> Iterator[bool]:
    """Whether this is the outermost traced call of the thread (a copy made of a write is one call)."""
    depth = getattr(_local, "depth", 0)
    _local.depth = depth + 1
    try:
        yield depth == 0
    finally:
        _local.depth = depth


def _wrap_call(cls: type, name: str, op: str) -> None:
    original = getattr(cls, name)

    def traced(self: Any, key: str, *args: Any) -> Any:
        target = args[0] if op == "copy" else key
        with _outer() as outer:
            if outer:
                _checkpoint("pre", op, target)
            result = original(self, key, *args)
            if outer:
                _record({"op": op, "key": target, "t": time.time(), **({"source": key} if op == "copy" else {})})
                _checkpoint("post", op, target)
        return result

    traced.__name__ = name
    traced.__doc__ = original.__doc__
    setattr(cls, name, traced)


def _wrap_open_write(cls: type, name: str = "open_write") -> None:
    """Trace ``open_write`` (or ``open_write_staged``) of ``cls`` as the op ``write``."""
    original = getattr(cls, name)

    @contextlib.contextmanager
    def traced(self: Any, key: str) -> Iterator[Any]:
        with _outer() as outer:
            with original(self, key) as fh:
                yield fh
                if outer:
                    fh.flush()
                    _checkpoint("pre", "write", key)
            if outer:
                _record({"op": "write", "key": key, "t": time.time()})
                _checkpoint("post", "write", key)

    traced.__doc__ = original.__doc__
    setattr(cls, name, traced)


def _wrap_write_bytes(cls: type) -> None:
    """``write_bytes`` of a store that does not go through ``open_write`` (S3's PutObject)."""
    original = cls.write_bytes

    def traced(self: Any, key: str, data: bytes) -> None:
        with _outer() as outer:
            if outer:
                _checkpoint("pre", "write", key)
            original(self, key, data)
            if outer:
                _record({"op": "write", "key": key, "t": time.time()})
                _checkpoint("post", "write", key)

    traced.__doc__ = original.__doc__
    cls.write_bytes = traced


def install() -> None:
    """Trace (and maybe stop at) the mutating calls of the local and S3 backends."""
    global _stop, _trace_fd
    from bdc.backends.local import LocalBackend
    from bdc.backends.s3 import S3Backend

    _trace_fd = os.open(os.environ[ENV_TRACE], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    stop = os.environ.get(ENV_STOP)
    _stop = json.loads(stop) if stop else None
    for cls in (LocalBackend, S3Backend):
        _wrap_open_write(cls)
        if "open_write_staged" in cls.__dict__:  # the local disk writes staged files in place
            _wrap_open_write(cls, "open_write_staged")
        if "write_bytes" in cls.__dict__:
            _wrap_write_bytes(cls)
        _wrap_call(cls, "copy", "copy")
        _wrap_call(cls, "delete", "delete")
        _wrap_call(cls, "delete_prefix", "delete_prefix")
    _record({"op": "start", "pid": os.getpid(), "t": time.time()})


if os.environ.get(ENV_TRACE):
    install()
