"""``memory://name``: a process-wide in-memory store (tests, notebooks, throwaway caches).

Caches opened with the same URL share their objects within the process.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import time
from collections.abc import Iterator
from typing import IO

from bdc.backends.base import Backend, ObjectInfo
from bdc.errors import ObjectNotFoundError

__all__ = ["MemoryBackend", "clear_memory_stores"]

_stores: dict[str, dict[str, tuple[bytes, float]]] = {}
_lock = threading.RLock()


def clear_memory_stores() -> None:
    """Forget every in-memory cache of this process."""
    with _lock:
        _stores.clear()


class MemoryBackend(Backend):
    """Objects in a dict, shared by every backend opened with the same URL."""

    scheme = "memory"

    def __init__(self, url: str = "memory://"):
        super().__init__(url)
        name = url.split("://", 1)[1].strip("/") if "://" in url else url
        with _lock:
            self._objects = _stores.setdefault(name, {})

    def read_bytes(self, key: str) -> bytes:
        """The object's bytes."""
        with _lock:
            try:
                return self._objects[key][0]
            except KeyError:
                raise ObjectNotFoundError(f"{self.url}: no object {key!r}") from None

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        """Buffer the writes; store the object on a clean exit."""
        buffer = io.BytesIO()
        yield buffer
        with _lock:
            self._objects[key] = (buffer.getvalue(), time.time())

    def copy(self, source: str, target: str) -> None:
        """Store ``source``'s bytes under ``target`` too."""
        with _lock:
            try:
                data = self._objects[source][0]
            except KeyError:
                raise ObjectNotFoundError(f"{self.url}: no object {source!r}") from None
            self._objects[target] = (data, time.time())

    def info(self, key: str) -> ObjectInfo:
        """Size, time and an MD5 ETag."""
        with _lock:
            try:
                data, modified = self._objects[key]
            except KeyError:
                raise ObjectNotFoundError(f"{self.url}: no object {key!r}") from None
        return ObjectInfo(key, len(data), modified, hashlib.md5(data).hexdigest())

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Objects under ``prefix``."""
        with _lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        out = []
        for key in keys:
            with contextlib.suppress(ObjectNotFoundError):
                out.append(self.info(key))
        return out

    def delete(self, key: str) -> None:
        """Drop ``key``."""
        with _lock:
            self._objects.pop(key, None)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Store ``key`` unless present."""
        with _lock:
            if key in self._objects:
                return False
            self._objects[key] = (data, time.time())
            return True

    def uri(self, key: str) -> str:
        """The key itself (the memory store has no outside address)."""
        return key
