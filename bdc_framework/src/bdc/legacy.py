"""The one-liners of the reference package ``biodata_cache``, on bdc's default cache.

Migrating is changing the import (``from biodata_cache import qc`` → ``from bdc import qc``); the
arguments and return types stay the same. This module holds the core ones
(:func:`custom`, :func:`get_cache_registry`, :func:`get_cache_versions`) and the helpers the table
plugins build theirs from (:func:`read_table`, :func:`unique_values`); the table one-liners
themselves (``qc``, ``asset_basics``, ``platform_dynamic_foraging_trials``, ...) are contributed by
the plugins that declare the tables, through the ``bdc_functions`` hook, and resolved lazily by
``bdc.__getattr__``.

What differs from the reference, on purpose:

* reads only read (D23): a table that was never built raises :class:`bdc.TableNotBuiltError`
  naming the ``bdc-sync`` command, instead of starting a build; ``force_update=True`` is accepted
  for compatibility but rebuilds nothing (a warning says which command does);
* the default cache is ``BDC_CACHE``, else ``BIODATA_CACHE_BACKEND`` (``S3``/``MEMORY``) as
  before, else a local-disk cache (see :mod:`bdc.config`);
* every function also takes a keyword-only ``cache=`` (a URL or :class:`bdc.Cache`).

See ``docs/migration.md`` for the side-by-side table.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:  # pragma: no cover
    from bdc.cache import Cache

__all__ = [
    "custom",
    "get_cache_registry",
    "get_cache_versions",
    "CacheRegistry",
    "CacheTable",
    "RegistryColumn",
    "resolve_cache",
    "read_table",
    "unique_values",
    "warn_force_update",
]


# -- helpers for one-liners (used by the table plugins too) --------------------------------------


def resolve_cache(cache: Any = None) -> Cache:
    """``cache`` as a :class:`bdc.Cache`: a Cache is used as is, a URL is opened, ``None`` is the default cache."""
    from bdc.cache import Cache

    if isinstance(cache, Cache):
        return cache
    if cache is None:
        from bdc.api import default_cache

        return default_cache()
    return Cache(str(cache))


def warn_force_update(name: str, cache: Cache, stacklevel: int = 2) -> None:
    """Warn that ``force_update=True`` does not rebuild ``name`` (reads only read, D23).

    ``stacklevel`` as for :func:`warnings.warn` called where this is called (2: that function's caller).
    """
    warnings.warn(
        f"force_update=True does not rebuild {name!r}: bdc reads never build. The cached table is "
        f"returned; rebuild it with: bdc-sync --cache {cache.url} --only {name}",
        UserWarning,
        stacklevel=stacklevel + 1,
    )


def read_table(
    name: str,
    *,
    cache: Any = None,
    force_update: bool = False,
    columns: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
    stacklevel: int = 2,
    **filters: Any,
) -> Any:
    """Read a whole table (or the rows matching ``where``/``filters``) as a pandas DataFrame.

    Never builds: an unbuilt table raises :class:`bdc.TableNotBuiltError`; ``force_update=True``
    only warns (see :func:`warn_force_update`; ``stacklevel`` as for :func:`warnings.warn`).
    """
    resolved = resolve_cache(cache)
    if force_update:
        warn_force_update(resolved.spec(name).name, resolved, stacklevel=stacklevel)
    return resolved.get(name, columns=columns, where=where, **filters)


def unique_values(name: str, column: str, *, cache: Any = None, force_update: bool = False,
                  stacklevel: int = 2) -> list[str]:
    """The distinct non-null values of one column as a sorted list of strings (the ``unique_*`` one-liners)."""
    resolved = resolve_cache(cache)
    if force_update:
        warn_force_update(resolved.spec(name).name, resolved, stacklevel=stacklevel)
    table = resolved.get(name, columns=[column], arrow=True)
    values = {v for v in table.column(column).to_pylist() if v is not None}
    return sorted(str(v) for v in values)


# -- the registry, shaped like the reference's pydantic models ------------------------------------


@attrs.frozen
class RegistryColumn:
    """One column of a registry entry: its name, description and (bdc) Arrow type text."""

    name: str
    description: str = ""
    type: str | None = None

    def model_dump(self) -> dict[str, Any]:
        """The column as a dict (the name of the reference's pydantic method)."""
        return attrs.asdict(self)


@attrs.frozen
class CacheTable:
    """One table of the registry (``name``, ``description``, ``location``, ``partitioned``,
    ``partition_key``, ``type``, ``columns`` as in the reference), plus bdc's ``aliases``,
    ``plugin`` and last ``build`` summary."""

    name: str
    description: str
    location: str
    partitioned: bool
    partition_key: str | None
    type: str
    columns: tuple[RegistryColumn, ...] = ()
    aliases: tuple[str, ...] = ()
    plugin: str | None = None
    build: Mapping[str, Any] | None = None

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> CacheTable:
        """A table from one entry of ``cache_registry.json`` (fields it lacks take defaults)."""
        columns = tuple(
            RegistryColumn(str(c.get("name", "")), str(c.get("description") or ""), c.get("type"))
            for c in entry.get("columns") or [] if isinstance(c, Mapping)
        )
        return cls(
            name=str(entry.get("name", "")),
            description=str(entry.get("description") or ""),
            location=str(entry.get("location") or ""),
            partitioned=bool(entry.get("partitioned", False)),
            partition_key=entry.get("partition_key"),
            type=str(entry.get("type") or "metadata"),
            columns=columns,
            aliases=tuple(entry.get("aliases") or ()),
            plugin=entry.get("plugin"),
            build=entry.get("build"),
        )

    def model_dump(self) -> dict[str, Any]:
        """The table as a dict (the name of the reference's pydantic method)."""
        out = attrs.asdict(self, recurse=True)
        out["columns"] = [c.model_dump() for c in self.columns]
        out["aliases"] = list(self.aliases)
        return out


@attrs.frozen
class CacheRegistry:
    """The published registry of one version: ``tables``, a list of :class:`CacheTable`
    (``registry.tables[0].name`` works as with the reference's pydantic model)."""

    tables: tuple[CacheTable, ...] = ()
    version_folder: str | None = None
    updated_at: str | None = None

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> CacheRegistry:
        """A registry from the parsed ``cache_registry.json``."""
        return cls(
            tables=tuple(CacheTable.from_entry(e) for e in doc.get("tables") or [] if isinstance(e, Mapping)),
            version_folder=doc.get("version_folder"),
            updated_at=doc.get("updated_at"),
        )

    def table(self, name: str) -> CacheTable:
        """The entry of one table, by name or alias (``KeyError`` if it is not published)."""
        for entry in self.tables:
            if entry.name == name or name in entry.aliases:
                return entry
        raise KeyError(name)

    def names(self) -> list[str]:
        """The published table names, in registry order."""
        return [t.name for t in self.tables]

    def model_dump(self) -> dict[str, Any]:
        """The registry as a dict (the name of the reference's pydantic method)."""
        return {"tables": [t.model_dump() for t in self.tables], "version_folder": self.version_folder,
                "updated_at": self.updated_at}


# -- the core one-liners --------------------------------------------------------------------------


def custom(name: str, df: Any = None, *, cache: Any = None) -> Any:
    """Store ``df`` as the custom table ``name`` and return it, or (no ``df``) read it back.

    As in the reference, reading a name that was never stored raises ``ValueError`` (here
    :class:`bdc.cache.CustomTableNotFoundError`, which is one). Custom tables live outside the
    version folders, so they survive version bumps; names are letters, digits and ``_``.
    """
    return resolve_cache(cache).custom(name, df)


def get_cache_registry(*, cache: Any = None) -> CacheRegistry:
    """The registry of every published table of this version (descriptions, locations, columns, last build)."""
    return CacheRegistry.from_document(resolve_cache(cache).registry())


def get_cache_versions(*, cache: Any = None) -> list[str]:
    """Every version folder published in the cache (``["bdc-v0.35", "bdc-v0.36"]``), sorted."""
    return resolve_cache(cache).versions()
