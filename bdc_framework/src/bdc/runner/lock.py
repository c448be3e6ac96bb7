"""One sync at a time per cache.

Local disk: an OS lock (``flock``) on ``{root}/_bdc_sync.lock``, released by the kernel if the
process dies (even by SIGKILL), so a crashed run never blocks the next one. The file names the
holder (host, pid, run, since) while it is held and is emptied on release.

Other backends (S3, memory): a lock *object* that names its holder and carries an expiry, renewed
every ``ttl / 3`` while the sync runs, so a crashed run blocks the next one for at most ``ttl``
(15 minutes; ``BDC_SYNC_LOCK_TTL`` sets it in seconds).
Every change to it is a compare-and-swap, never a blind write:

* taking a free lock: PutObject with ``If-None-Match: *`` (only one of two racing syncs creates it);
* taking over an *expired* lock (a crashed holder): PutObject with ``If-Match`` on the ETag of the
  expired object that was read, so of two syncs that both saw it expire exactly one replaces it,
  and the other sees a live lock (the old delete-then-create let the slower one delete the lock the
  faster one had just created, and both ran);
* renewing: ``If-Match`` on the ETag of the holder's last write: a holder that was paused past its
  expiry and was taken over finds out (``lost``) instead of overwriting the new holder's lock;
* releasing: DeleteObject with ``If-Match`` on the same ETag: never deletes another holder's lock.

S3 has honoured ``If-Match`` on PutObject since 2024-11 and on DeleteObject (general purpose
buckets) since 2025-09; a store that refuses the conditional delete (``NotImplemented``) gets a
read-compare-delete instead. The memory store is process-local: its compare-and-swap runs under a
lock in this module.

Limits, by design: expiry compares the holder's clock with the taker's (keep clocks within
seconds of each other; ``ttl`` is 15 minutes), and a holder whose renewals all fail for ``ttl``
(a network partition) can be taken over while it still runs; it logs that it lost the lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from bdc.backends.base import Backend
from bdc.errors import BdcError, LockHeldError, ObjectNotFoundError
from bdc.layout import LOCK_KEY

__all__ = ["SyncLock", "DEFAULT_TTL", "ENV_TTL", "default_ttl"]

log = logging.getLogger(__name__)

DEFAULT_TTL = 15 * 60.0
#: Environment variable overriding :data:`DEFAULT_TTL` (seconds).
ENV_TTL = "BDC_SYNC_LOCK_TTL"
#: How long a refused sync re-reads an empty or stale local lock file for the holder's name.
_HOLDER_READ_WAIT = 1.0


def default_ttl() -> float:
    """The lock object's expiry in seconds: ``BDC_SYNC_LOCK_TTL`` if set (and positive), else :data:`DEFAULT_TTL`."""
    text = os.environ.get(ENV_TTL, "").strip()
    if text:
        try:
            value = float(text)
        except ValueError:
            raise BdcError(f"{ENV_TTL} must be a number of seconds, got {text!r}") from None
        if value > 0:
            return value
    return DEFAULT_TTL


def _holder(run_id: str | None) -> dict[str, Any]:
    info = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(), "token": uuid.uuid4().hex}
    if run_id:
        info["run_id"] = run_id
    return info


def _describe(info: dict[str, Any]) -> str:
    if not info.get("pid") and not info.get("host"):
        return "holder unknown (the lock names no holder yet)"
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(info.get("since", 0))))
    run = f", run {info['run_id']}" if info.get("run_id") else ""
    return f"pid {info.get('pid')} on {info.get('host')} since {since}{run}"


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    return True


# -- compare-and-swap on the lock object ------------------------------------------------------------


class _ObjectStore:
    """The lock object in a store that is not local disk: read with its ETag, create, replace and
    delete on condition. This generic version (memory store) is atomic within the process."""

    _mutex = threading.Lock()

    def __init__(self, backend: Backend):
        self.backend = backend

    @staticmethod
    def _etag(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def read(self) -> tuple[bytes, str] | None:
        with self._mutex:
            try:
                data = self.backend.read_bytes(LOCK_KEY)
            except ObjectNotFoundError:
                return None
            return data, self._etag(data)

    def create(self, data: bytes) -> str | None:
        with self._mutex:
            return self._etag(data) if self.backend.create_exclusive(LOCK_KEY, data) else None

    def replace(self, data: bytes, etag: str) -> str | None:
        with self._mutex:
            try:
                current = self.backend.read_bytes(LOCK_KEY)
            except ObjectNotFoundError:
                return None
            if self._etag(current) != etag:
                return None
            self.backend.write_bytes(LOCK_KEY, data)
            return self._etag(data)

    def delete(self, etag: str) -> bool:
        with self._mutex:
            try:
                current = self.backend.read_bytes(LOCK_KEY)
            except ObjectNotFoundError:
                return False
            if self._etag(current) != etag:
                return False
            self.backend.delete(LOCK_KEY)
            return True


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


#: Answers of S3 that mean "the condition did not hold" (or a concurrent conditional write won).
_LOST = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404", "NotFound")


class _S3ObjectStore(_ObjectStore):
    """The lock object in S3: conditional PutObject/DeleteObject on the object's ETag."""

    def __init__(self, backend: Any):
        super().__init__(backend)
        self.client = backend.client
        self.bucket = backend.bucket
        self.key = backend._key(LOCK_KEY)

    def _fail(self, action: str, exc: Exception) -> Exception:
        make = getattr(self.backend, "_error", None)
        return make(action, LOCK_KEY, exc) if make is not None else exc

    def _put(self, data: bytes, **condition: str) -> str | None:
        from bdc.backends.base import object_headers

        try:
            answer = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data,
                                            **condition, **object_headers(LOCK_KEY))
        except Exception as exc:
            if _code(exc) in _LOST:
                return None
            raise self._fail("writing", exc) from exc
        return str(answer["ETag"])

    def read(self) -> tuple[bytes, str] | None:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key)
            return answer["Body"].read(), str(answer["ETag"])
        except Exception as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail("reading", exc) from exc

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def replace(self, data: bytes, etag: str) -> str | None:
        return self._put(data, IfMatch=etag)

    def delete(self, etag: str) -> bool:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=etag)
            return True
        except Exception as exc:
            code = _code(exc)
            if code in _LOST:
                return False
            if code not in ("NotImplemented", "InvalidArgument", "InvalidRequest", "501"):
                raise self._fail("deleting", exc) from exc
        current = self.read()  # a store without conditional deletes: compare, then delete
        if current is None or current[1] != etag:
            return False
        self.backend.delete(LOCK_KEY)
        return True


def _object_store(backend: Backend) -> _ObjectStore:
    try:
        from bdc.backends.s3 import S3Backend
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return _ObjectStore(backend)
    return _S3ObjectStore(backend) if isinstance(backend, S3Backend) else _ObjectStore(backend)


# -- the lock -----------------------------------------------------------------------------------


class SyncLock:
    """Context manager holding the cache's sync lock; :class:`LockHeldError` names the holder.

    ``run_id`` (the sync's run) is recorded with the holder and named to a refused sync; ``ttl``
    defaults to :func:`default_ttl`.
    After :meth:`acquire`, ``took_over`` is the expired holder replaced (``None`` if the lock was
    free); ``lost`` turns true if a renewal found the lock object changed by someone else.
    """

    def __init__(self, backend: Backend, *, ttl: float | None = None, run_id: str | None = None):
        self.backend = backend
        self.ttl = default_ttl() if ttl is None else ttl
        self.info = _holder(run_id)
        self.took_over: dict[str, Any] | None = None
        self.lost = False
        self._fh: Any = None
        self._store: _ObjectStore | None = None
        self._etag: str | None = None
        self._stop = threading.Event()
        self._beating = threading.Lock()  # a renewal and the release never interleave
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

    # -- local disk -------------------------------------------------------------------------------

    def _acquire_file(self, path: str) -> None:
        import fcntl

        os.makedirs(os.path.dirname(path), exist_ok=True)
        fh = open(path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            held = self._read_file_holder(fh)
            fh.close()
            raise LockHeldError(f"Another bdc-sync is running on {self.backend.url}: {_describe(held)}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(self.info))
        fh.flush()
        self._fh = fh

    @staticmethod
    def _read_file_holder(fh: Any) -> dict[str, Any]:
        """The holder named in the lock file. The holder writes its name just after taking the
        lock, so for a moment the file is empty or still names a crashed earlier holder: re-read
        briefly while it does."""
        deadline = time.monotonic() + _HOLDER_READ_WAIT
        while True:
            fh.seek(0)
            try:
                held = json.loads(fh.read() or "{}")
            except ValueError:
                held = {}
            if not isinstance(held, dict):
                held = {}
            current = bool(held.get("pid")) and (held.get("host") != socket.gethostname()
                                                 or _pid_alive(held["pid"]))
            if current or time.monotonic() >= deadline:
                return held
            time.sleep(0.02)

    # -- objects (S3, memory) ---------------------------------------------------------------------

    def _payload(self) -> bytes:
        return json.dumps({**self.info, "expires": time.time() + self.ttl}).encode()

    def _acquire_object(self) -> None:
        store = self._store = _object_store(self.backend)
        for _ in range(10):
            etag = store.create(self._payload())
            if etag is not None:
                self._held(etag)
                return
            current = store.read()
            if current is None:
                continue  # released meanwhile: try again
            data, seen = current
            try:
                held = json.loads(data)
                expires = float(held["expires"])
            except (ValueError, TypeError, KeyError):
                held, expires = {}, 0.0  # unreadable: no live holder can be named, take it over
            if not isinstance(held, dict):
                held, expires = {}, 0.0
            if expires < time.time():
                etag = store.replace(self._payload(), seen)  # only the very object seen expired
                if etag is None:
                    continue  # another sync changed it first: look again
                self.took_over = held
                log.warning("took over the expired sync lock on %s (%s)", self.backend.url, _describe(held))
                self._held(etag)
                return
            raise LockHeldError(
                f"Another bdc-sync is running on {self.backend.url}: {_describe(held)} "
                f"(lock expires in {expires - time.time():.0f} s)"
            )
        raise LockHeldError(f"Could not take the sync lock on {self.backend.url}: it keeps changing hands")

    def _held(self, etag: str) -> None:
        self._etag = etag
        self.lost = False
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(self.ttl / 3):
                with self._beating:
                    if self._stop.is_set():
                        return
                    try:
                        etag = self._store.replace(self._payload(), self._etag)  # type: ignore[union-attr,arg-type]
                    except Exception:  # unreachable store: the next beat tries again
                        continue
                    if etag is None:
                        self.lost = True
                        log.error("the sync lock on %s was taken over by another sync (this one ran past its "
                                  "expiry without renewing it)", self.backend.url)
                        return
                    self._etag = etag

        self._thread = threading.Thread(target=beat, name="bdc-sync-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Give the lock back (safe to call twice); never removes another holder's lock."""
        if self._fh is not None:
            import fcntl

            self._fh.seek(0)
            self._fh.truncate()
            self._fh.flush()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
            return
        if self._thread is not None:
            self._stop.set()
            with self._beating:  # waits for a renewal in flight; none starts after this
                thread, self._thread = self._thread, None
                etag, self._etag = self._etag, None
            thread.join(timeout=5)
        else:
            etag, self._etag = self._etag, None
        if etag is not None and self._store is not None and not self.lost:
            self._store.delete(etag)
