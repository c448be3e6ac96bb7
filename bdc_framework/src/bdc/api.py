"""The one-line functions on the default cache (``bdc.get``, ``bdc.sql``, ...).

The default cache is decided at each call from the environment (see :mod:`bdc.config`), and
opened caches are reused while the setting stays the same.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from bdc.cache import Cache
from bdc.spec import TableSpec

__all__ = ["default_cache", "describe", "tables", "get", "location", "sql", "versions", "registry", "custom", "sync"]

_lock = threading.Lock()
_caches: dict[str, Cache] = {}


def default_cache() -> Cache:
    """The cache the module-level functions use (``BDC_CACHE``, ``BIODATA_CACHE_BACKEND`` or local disk)."""
    from bdc.config import default_cache_url

    url = default_cache_url()
    cache = _caches.get(url)
    if cache is None:
        with _lock:
            cache = _caches.get(url)
            if cache is None:
                cache = _caches[url] = Cache(url)
    return cache


def tables() -> list[TableSpec]:
    """Every installed table (name, description, kind, columns, partition key, ...)."""
    return Cache.tables()


def describe(name: str) -> Any:
    """A table's spec and last build in the default cache, readable in a terminal or a notebook."""
    return default_cache().describe(name)


def get(
    name: str,
    *,
    columns: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
    limit: int | None = None,
    **filters: Any,
) -> Any:
    """Read a table from the default cache as a pandas DataFrame.

    >>> bdc.get("qc", subject_id="692478", columns=["name", "status"])   # doctest: +SKIP
    """
    return default_cache().get(name, columns=columns, where=where, limit=limit, **filters)


def location(name: str, **partition: Any) -> str:
    """The URI of a table (or one partition) in the default cache, for DuckDB or a browser."""
    return default_cache().location(name, **partition)


def sql(query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
    """Run SQL over the default cache; every table is a view. Pass values as ``params``."""
    return default_cache().sql(query, params)


def versions() -> list[str]:
    """The version folders published in the default cache."""
    return default_cache().versions()


def registry() -> dict[str, Any]:
    """The published registry of this version in the default cache."""
    return default_cache().registry()


def custom(name: str, df: Any = None) -> Any:
    """Store a DataFrame as a custom table (``custom(name, df)``) or read it back (``custom(name)``)."""
    return default_cache().custom(name, df)


def sync(cache: Any = None, **options: Any) -> Any:
    """Build every installed table into a cache; returns the run report (see :func:`bdc.runner.sync`)."""
    from bdc.runner import sync as run

    return run(cache, **options)
