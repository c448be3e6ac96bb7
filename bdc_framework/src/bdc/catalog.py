"""The table catalog: every table spec from every plugin, by name and alias.

Built once from the plugin manager (and rebuilt when plugins are registered or removed); an
unknown name gives close matches.

Two plugins declaring one name or alias is a *collision*, isolated like any other plugin fault
(with ``BDC_STRICT_PLUGINS=1`` it is fatal instead: the catalog raises). The contested label
resolves to a :class:`~bdc.errors.TableCollisionError` naming both distributions, so ``bdc.get``
of it raises that error, and the sync reports the table as failed while every other table builds.
No claimant of a contested *name* is kept: which plugin loads first depends on the environment
(entry-point order, in-process registration), so keeping "the first" would publish different data
under one name on different machines, and could overwrite what the other plugin published
before; keeping none leaves the data already published under that name untouched until an
operator disables one of the two. A contested *alias* is only a reader's shortcut: the alias is
unusable (it raises the collision), the table keeps building under its own name.
"""

from __future__ import annotations

import difflib
import functools
import logging
import threading
from collections.abc import Iterator
from typing import Any

import attrs

from bdc.errors import PluginError, TableCollisionError, UnknownTableError
from bdc.spec import BackendSpec, DemoSpec, ExecutorSpec, FunctionSpec, TableSpec

__all__ = ["Catalog", "get_catalog", "invalidate"]

log = logging.getLogger(__name__)

_lock = threading.RLock()
_catalog: Catalog | None = None


def _collect(hook: Any, kind: type) -> list[tuple[str, Any]]:
    """Call each plugin's implementation of ``hook`` separately, so answers keep their plugin.

    A plugin whose hook raises is reported (see :func:`bdc.plugins.plugin_failures`) and left out;
    the other plugins still count. ``BDC_STRICT_PLUGINS=1`` makes it fatal.
    """
    from bdc.plugins import distribution_of, record_failure

    out: list[tuple[str, Any]] = []
    for impl in hook.get_hookimpls():  # registration order
        dist = distribution_of(impl.plugin_name)
        try:
            result = impl.function()
        except Exception as exc:
            record_failure(impl.plugin_name, dist, exc, hook.name)
            continue
        if result is None:
            continue
        for item in result:
            if not isinstance(item, kind):
                raise PluginError(
                    f"Plugin {impl.plugin_name!r} ({dist}) returned {type(item).__name__} from "
                    f"{hook.name}; expected {kind.__name__}"
                )
            out.append((dist, attrs.evolve(item, plugin=dist)))
    return out


def _keyed(pm: Any, hook_name: str, kind: type, key: str, label: str) -> dict[str, Any]:
    """One plugin answer per key (URL scheme, executor name, function name); a second claim is an error."""
    out: dict[str, Any] = {}
    for dist, item in _collect(getattr(pm.hook, hook_name), kind):
        name = getattr(item, key)
        if name in out:
            raise PluginError(f"{label} {name!r} is claimed by both {out[name].plugin!r} and {dist!r}")
        out[name] = item
    return out


class Catalog:
    """Tables, backends, executors and functions contributed by the registered plugins.

    Each section asks its hook the first time it is used, so opening a cache (backends) does not
    need the table specs.
    """

    def __init__(self, pm: Any):
        self._pm = pm

    @functools.cached_property
    def _table_index(self) -> tuple[dict[str, TableSpec], dict[str, str], dict[str, TableCollisionError],
                                    dict[str, tuple[TableSpec, ...]]]:
        from bdc.plugins import _strict

        declared = _collect(self._pm.hook.bdc_tables, TableSpec)
        claims: dict[str, list[str]] = {}  # label -> the distributions claiming it, in order
        for dist, spec in declared:
            for label in dict.fromkeys((spec.name, *spec.aliases)):
                claims.setdefault(label, []).append(dist)
        blocked: dict[str, TableCollisionError] = {}
        for label, dists in claims.items():
            if len(dists) > 1:
                error = TableCollisionError(label, dists[0], dists[1])
                if _strict():
                    raise error
                log.warning("%s; it is not built and reading it raises this error until one is disabled", error)
                blocked[label] = error
        tables: dict[str, TableSpec] = {}
        by_alias: dict[str, str] = {}
        excluded: dict[str, tuple[TableSpec, ...]] = {}
        left_out: list[TableSpec] = []
        for _dist, spec in declared:
            if spec.name in blocked:  # a contested name: no claimant is kept
                excluded[spec.name] = (*excluded.get(spec.name, ()), spec)
                left_out.append(spec)
                continue
            tables[spec.name] = spec
            for alias in spec.aliases:
                if alias not in blocked:
                    by_alias[alias] = spec.name
        for spec in left_out:  # the aliases of a left-out table raise its name's collision
            for alias in spec.aliases:
                if alias not in blocked and alias not in tables and alias not in by_alias:
                    blocked[alias] = blocked[spec.name]
        return tables, by_alias, blocked, excluded

    @property
    def _tables(self) -> dict[str, TableSpec]:
        return self._table_index[0]

    @property
    def _by_alias(self) -> dict[str, str]:
        return self._table_index[1]

    @property
    def collisions(self) -> dict[str, TableCollisionError]:
        """Labels (names and aliases) claimed by more than one plugin, each with its error.

        Also the aliases of a table left out for a contested name (they raise its collision).
        """
        return dict(self._table_index[2])

    @property
    def excluded(self) -> dict[str, tuple[TableSpec, ...]]:
        """Table names left out because more than one plugin declares them: name → every claimant's spec."""
        return dict(self._table_index[3])

    @functools.cached_property
    def backends(self) -> dict[str, BackendSpec]:
        """Storage backends by URL scheme."""
        return _keyed(self._pm, "bdc_backends", BackendSpec, "scheme", "URL scheme")

    @functools.cached_property
    def executors(self) -> dict[str, ExecutorSpec]:
        """Sync executors by name."""
        return _keyed(self._pm, "bdc_executors", ExecutorSpec, "name", "Executor")

    @functools.cached_property
    def functions(self) -> dict[str, FunctionSpec]:
        """Functions added to the ``bdc`` namespace, by name."""
        return _keyed(self._pm, "bdc_functions", FunctionSpec, "name", "Function")

    @functools.cached_property
    def demos(self) -> list[DemoSpec]:
        """Offline demo sources."""
        return [demo for _, demo in _collect(self._pm.hook.bdc_demo_sources, DemoSpec)]

    def names(self) -> list[str]:
        """Table names in declaration order."""
        return list(self._tables)

    def __iter__(self) -> Iterator[TableSpec]:
        return iter(self._tables.values())

    def __len__(self) -> int:
        return len(self._tables)

    def __contains__(self, name: object) -> bool:
        return name in self._tables or name in self._by_alias or name in self._table_index[2]

    def resolve(self, name: str) -> TableSpec:
        """The spec for a table name or alias; :class:`UnknownTableError` with suggestions,
        :class:`TableCollisionError` for a label two plugins claim."""
        if name in self._table_index[2]:
            error = self._table_index[2][name]
            raise TableCollisionError(error.name, *error.providers)  # a fresh one: no stale traceback
        spec = self._tables.get(name)
        if spec is None and name in self._by_alias:
            spec = self._tables[self._by_alias[name]]
        if spec is None:
            labels = list(self._tables) + list(self._by_alias)
            close = difflib.get_close_matches(str(name), labels, n=3, cutoff=0.6)
            raise UnknownTableError(str(name), self._tables, close)
        return spec

    def get(self, name: str) -> TableSpec | None:
        """The spec for a name or alias, or ``None`` (a contested label raises its :class:`TableCollisionError`)."""
        try:
            return self.resolve(name)
        except UnknownTableError:
            return None


def get_catalog() -> Catalog:
    """The catalog of the current plugin manager (built on first use)."""
    global _catalog
    if _catalog is None:
        with _lock:
            if _catalog is None:
                from bdc.plugins import get_plugin_manager

                _catalog = Catalog(get_plugin_manager())
    return _catalog


def invalidate() -> None:
    """Drop the cached catalog (after plugins change)."""
    global _catalog
    with _lock:
        _catalog = None
