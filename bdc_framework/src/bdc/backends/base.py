"""The backend interface shared by every store."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from typing import IO, Any

import attrs

from bdc.errors import ObjectNotFoundError

__all__ = ["Backend", "ObjectInfo", "object_headers", "PARQUET_CONTENT_TYPE"]

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


@attrs.frozen
class ObjectInfo:
    """A stored object: its key (relative to the cache root), size, modification time and ETag."""

    key: str
    size: int
    modified: float | None = None
    etag: str | None = None


def object_headers(key: str) -> dict[str, str]:
    """Content-Type and Cache-Control for an object, from its key.

    Everything bdc rewrites in place (tables, partitions, registry, version index) must never be
    served stale: browsers and CDNs revalidate (``no-cache`` keeps the ETag check cheap).
    Run reports are written once and never change.
    """
    if key.endswith((".pqt", ".parquet")):
        content_type = PARQUET_CONTENT_TYPE
    elif key.endswith(".json"):
        content_type = "application/json"
    elif key.endswith(".html"):
        content_type = "text/html; charset=utf-8"
    else:
        content_type = "application/octet-stream"
    if "/_runs/" in key:
        cache_control = "public, max-age=31536000, immutable"
    else:
        cache_control = "no-cache"
    return {"ContentType": content_type, "CacheControl": cache_control}


class Backend(abc.ABC):
    """An object store holding a cache: bytes under keys relative to a root URL."""

    #: The URL scheme this backend serves.
    scheme: str = ""

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

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` to ``key`` atomically."""
        with self.open_write(key) as fh:
            fh.write(data)

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

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many."""
        items = self.list(prefix)
        for item in items:
            self.delete(item.key)
        return len(items)

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

    def join(self, key: str) -> str:
        """Alias of :meth:`uri` kept for readability in callers."""
        return self.uri(key)
