"""The table catalog: every table spec from every plugin, by name and alias.

Built once from the plugin manager (and rebuilt when plugins are registered or removed). Two
plugins declaring one name or alias is a :class:`~bdc.errors.TableCollisionError` naming both
distributions; an unknown name gives close matches.
"""

from __future__ import annotations

import difflib
import functools
import threading
from collections.abc import Iterator
from typing import Any

import attrs

from bdc.errors import PluginError, TableCollisionError, UnknownTableError
from bdc.spec import BackendSpec, DemoSpec, ExecutorSpec, FunctionSpec, TableSpec

__all__ = ["Catalog", "get_catalog", "invalidate"]

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
    def _table_index(self) -> tuple[dict[str, TableSpec], dict[str, str]]:
        tables: dict[str, TableSpec] = {}
        by_alias: dict[str, str] = {}
        owners: dict[str, str] = {}
        for dist, spec in _collect(self._pm.hook.bdc_tables, TableSpec):
            for label in (spec.name, *spec.aliases):
                if label in owners:
                    raise TableCollisionError(label, owners[label], dist)
                owners[label] = dist
            tables[spec.name] = spec
            for alias in spec.aliases:
                by_alias[alias] = spec.name
        return tables, by_alias

    @property
    def _tables(self) -> dict[str, TableSpec]:
        return self._table_index[0]

    @property
    def _by_alias(self) -> dict[str, str]:
        return self._table_index[1]

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
        return name in self._tables or name in self._by_alias

    def resolve(self, name: str) -> TableSpec:
        """The spec for a table name or alias; :class:`UnknownTableError` with suggestions."""
        spec = self._tables.get(name)
        if spec is None and name in self._by_alias:
            spec = self._tables[self._by_alias[name]]
        if spec is None:
            labels = list(self._tables) + list(self._by_alias)
            close = difflib.get_close_matches(str(name), labels, n=3, cutoff=0.6)
            raise UnknownTableError(str(name), self._tables, close)
        return spec

    def get(self, name: str) -> TableSpec | None:
        """The spec for a name or alias, or ``None``."""
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
