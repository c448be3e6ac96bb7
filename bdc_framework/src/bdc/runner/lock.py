"""One sync at a time per cache.

Local disk: an OS lock (``flock``) on ``{root}/_bdc_sync.lock``, released by the kernel if the
process dies. Other backends (S3, memory): a lock object created with a conditional put
(``If-None-Match: *``) that names its holder and carries an expiry, renewed while the sync runs,
so a crashed run blocks the next one for at most the expiry.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from bdc.backends.base import Backend
from bdc.errors import LockHeldError, ObjectNotFoundError
from bdc.layout import LOCK_KEY

__all__ = ["SyncLock", "DEFAULT_TTL"]

DEFAULT_TTL = 15 * 60.0


def _holder() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(), "token": uuid.uuid4().hex}


def _describe(info: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(info.get("since", 0))))
    return f"pid {info.get('pid')} on {info.get('host')} since {since}"


class SyncLock:
    """Context manager holding the cache's sync lock; :class:`LockHeldError` names the holder."""

    def __init__(self, backend: Backend, *, ttl: float = DEFAULT_TTL):
        self.backend = backend
        self.ttl = ttl
        self.info = _holder()
        self._fh: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SyncLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockHeldError`."""
        path = self.backend.local_path(LOCK_KEY)
        if path is not None:
            self._acquire_file(path)
        else:
            self._acquire_object()

    def _acquire_file(self, path: str) -> None:
        import fcntl

        os.makedirs(os.path.dirname(path), exist_ok=True)
        fh = open(path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            try:
                held = json.loads(fh.read() or "{}")
            except ValueError:
                held = {}
            fh.close()
            raise LockHeldError(f"Another bdc-sync is running on {self.backend.url}: {_describe(held)}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(self.info))
        fh.flush()
        self._fh = fh

    def _payload(self) -> bytes:
        return json.dumps({**self.info, "expires": time.time() + self.ttl}).encode()

    def _acquire_object(self) -> None:
        for _ in range(3):
            if self.backend.create_exclusive(LOCK_KEY, self._payload()):
                self._start_heartbeat()
                return
            try:
                held = json.loads(self.backend.read_bytes(LOCK_KEY))
            except ObjectNotFoundError:
                continue  # released meanwhile: try again
            except ValueError:
                held = {"expires": 0}
            if float(held.get("expires", 0)) < time.time():
                self.backend.delete(LOCK_KEY)  # expired: a crashed run
                continue
            raise LockHeldError(
                f"Another bdc-sync is running on {self.backend.url}: {_describe(held)} "
                f"(lock expires in {float(held['expires']) - time.time():.0f} s)"
            )
        raise LockHeldError(f"Could not take the sync lock on {self.backend.url}")

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.ttl / 3):
                try:
                    self.backend.write_bytes(LOCK_KEY, self._payload())
                except Exception:  # the next beat tries again
                    pass

        self._thread = threading.Thread(target=beat, name="bdc-sync-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Give the lock back (safe to call twice)."""
        if self._fh is not None:
            import fcntl

            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
            return
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
            try:
                held = json.loads(self.backend.read_bytes(LOCK_KEY))
            except (ObjectNotFoundError, ValueError):
                return
            if held.get("token") == self.info["token"]:
                self.backend.delete(LOCK_KEY)
