"""The backend interface shared by every store."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from typing import IO, Any

import attrs

from bdc.errors import ObjectNotFoundError

__all__ = ["Backend", "ObjectInfo", "Fetched", "object_headers", "is_immutable", "byte_view",
           "PARQUET_CONTENT_TYPE"]

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


@attrs.frozen
class ObjectInfo:
    """A stored object: its key (relative to the cache root), size, modification time and ETag."""

    key: str
    size: int
    modified: float | None = None
    etag: str | None = None


#: Content types by key suffix (everything else is ``application/octet-stream``).
_CONTENT_TYPES = {
    ".pqt": PARQUET_CONTENT_TYPE,
    ".parquet": PARQUET_CONTENT_TYPE,
    ".json": "application/json",
    ".lock": "application/json",
    ".html": "text/html; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
}

#: Written once under a unique name, never changed: any cache may keep it for a year.
IMMUTABLE = "public, max-age=31536000, immutable"
#: Rewritten in place by syncs: a cache may keep a copy but must revalidate it (ETag → 304) on
#: every use, so a browser, a CDN or bdc's local read cache never serves it stale.
REVALIDATE = "no-cache"
#: The sync lock: coordination state, never worth caching anywhere.
NO_STORE = "no-store"


def object_headers(key: str) -> dict[str, str]:
    """Content-Type and Cache-Control for an object, from its key.

    * run reports (``…/_runs/{run_id}.json``) are written once under a unique name: ``immutable``;
    * the sync lock is ``no-store``;
    * everything else (tables and partitions, which syncs rewrite in place under the same name;
      the registry; the version index; sidecars; incremental state; custom tables) is
      ``no-cache``: it may be stored, but a browser or CDN revalidates it with its ETag
      before each use (a cheap 304), so it is never served stale. Making tables ``immutable``
      would need content-addressed names, which the layout shared with existing readers rules out.
    """
    dot = key.rfind(".")
    content_type = _CONTENT_TYPES.get(key[dot:].lower() if dot > key.rfind("/") else "", "application/octet-stream")
    name = key.rsplit("/", 1)[-1]
    if "/_runs/" in f"/{key}":
        cache_control = IMMUTABLE
    elif name == "_bdc_sync.lock":
        cache_control = NO_STORE
    else:
        cache_control = REVALIDATE
    return {"ContentType": content_type, "CacheControl": cache_control}


def byte_view(data: Any) -> memoryview:
    """``data`` (bytes, a ``pyarrow.Buffer``, any bytes-like object) as a flat view of unsigned
    bytes, which compares equal to another such view, or to ``bytes``, exactly when the bytes are."""
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def is_immutable(key: str) -> bool:
    """Whether ``key`` is written once and never changed (a copy never needs revalidating)."""
    return object_headers(key)["CacheControl"] == IMMUTABLE


@attrs.frozen
class Fetched:
    """What :meth:`Backend.fetch` got: ``status`` 200 (whole object), 206 (a byte range),
    304 (not modified since ``if_none_match``) or 412 (changed since ``if_match``).

    ``size`` is the size of the whole object, ``written`` the bytes written to the file.
    """

    status: int
    etag: str | None = None
    size: int | None = None
    written: int = 0
    start: int = 0


class Backend(abc.ABC):
    """An object store holding a cache: bytes under keys relative to a root URL."""

    #: The URL scheme this backend serves.
    scheme: str = ""
    #: Whether objects live far away (a network store): readers then go through the local
    #: read-through cache (:mod:`bdc.backends.readcache`) and the backend implements
    #: :meth:`fetch` with conditional and ranged requests.
    remote: bool = False

    def __init__(self, url: str):
        self.url = url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @abc.abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The object's bytes; :class:`ObjectNotFoundError` if absent, :class:`BackendError` on failure."""

    @abc.abstractmethod
    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        """A binary file to write ``key``; the object appears whole when the block exits cleanly.

        On an exception nothing is published and any previous object stays as it was.
        """

    def open_write_staged(self, key: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """:meth:`open_write` for a key that nothing reads before the block exits (a sync run's
        staging: readers only see it once published). A store may then write a new object in
        place, without the temp name that makes it appear whole; on an exception nothing of this
        write is left under ``key``, and a second writer of the key (a task run again while the
        first still runs) must still leave one whole object. This default: :meth:`open_write`."""
        return self.open_write(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` to ``key`` atomically."""
        with self.open_write(key) as fh:
            fh.write(data)

    def holds(self, key: str, data: Any, info: ObjectInfo | None = None) -> bool:
        """Whether ``key`` holds exactly the bytes ``data`` (any bytes-like object), so writing
        them again would change nothing. ``info``: the object as a listing gave it (saves a
        lookup; a size that differs answers at once). This default reads the object and compares;
        stores override it with a cheaper test. Absent (or unreadable as an object) is ``False``."""
        view = byte_view(data)
        if info is not None and info.size != len(view):
            return False
        try:
            stored = self.read_bytes(key)
        except ObjectNotFoundError:
            return False
        return stored == view

    @abc.abstractmethod
    def info(self, key: str) -> ObjectInfo:
        """Size, time and ETag of ``key``; :class:`ObjectNotFoundError` if absent."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        try:
            self.info(key)
        except ObjectNotFoundError:
            return False
        return True

    @abc.abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (recursively), sorted by key."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Delete ``key`` (absent is fine)."""

    def copy(self, source: str, target: str) -> None:
        """Copy object ``source`` to ``target`` within this store; ``target`` appears whole
        (readers see the previous object or the new one, never a part). This default reads
        and writes the bytes; stores override it with their own copy."""
        self.write_bytes(target, self.read_bytes(source))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many."""
        items = self.list(prefix)
        for item in items:
            self.delete(item.key)
        return len(items)

    def remove_temp_files(self, prefix: str) -> int:
        """Delete what writes interrupted by a crash left under ``prefix`` (temp files filled but
        never renamed into place, which listings do not show); returns how many. Only for a caller
        that knows no write is in progress there (the sync runner, holding the lock). This default:
        none (a store whose objects appear whole, with nothing beside them)."""
        return 0

    @abc.abstractmethod
    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist yet; ``False`` if it already existed."""

    @abc.abstractmethod
    def uri(self, key: str) -> str:
        """The location of ``key`` for readers outside bdc (DuckDB, a browser)."""

    def local_path(self, key: str) -> str | None:
        """A local file path DuckDB can read for ``key``, if this backend has one."""
        return None

    def arrow_filesystem(self) -> tuple[Any, str] | None:
        """A ``pyarrow.fs.FileSystem`` and the root path within it, if this backend has one."""
        return None

    def object_id(self, key: str) -> str:
        """A name of ``key`` unique across stores (the local read cache files copies under it)."""
        return self.uri(key)

    def fetch(
        self,
        key: str,
        fh: IO[bytes],
        *,
        if_none_match: str | None = None,
        if_match: str | None = None,
        byte_range: tuple[int, int] | None = None,
        tail: int | None = None,
    ) -> Fetched:
        """Write ``key`` (or bytes ``[start, end)`` of it, or its last ``tail`` bytes) to ``fh``.

        With ``if_none_match`` an unchanged object is not sent (status 304); with ``if_match`` a
        changed one is not sent (412). :class:`ObjectNotFoundError` if absent. This default
        reads the whole object and ignores the conditions' savings; remote backends override it.
        """
        data = self.read_bytes(key)
        etag = self.info(key).etag
        if if_none_match is not None and etag == if_none_match:
            return Fetched(304, etag, len(data))
        if if_match is not None and etag != if_match:
            return Fetched(412, etag, len(data))
        start, end = 0, len(data)
        if byte_range is not None:
            start, end = byte_range[0], min(byte_range[1], len(data))
        elif tail is not None and tail < len(data):
            start = len(data) - tail
        fh.write(data[start:end])
        whole = start == 0 and end == len(data)
        return Fetched(200 if whole else 206, etag, len(data), end - start, start)

