"""The table catalog: every table spec from every plugin, by name and alias.

Built once from the plugin manager (and rebuilt when plugins are registered or removed). Two
plugins declaring one name or alias is a :class:`~bdc.errors.TableCollisionError` naming both
distributions; an unknown name gives close matches.
"""

from __future__ import annotations

import difflib
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
    for impl in reversed(hook.get_hookimpls()):  # registration order
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


class Catalog:
    """Tables, backends, executors and functions contributed by the registered plugins."""

    def __init__(self, pm: Any):
        self._tables: dict[str, TableSpec] = {}
        self._by_alias: dict[str, str] = {}
        owners: dict[str, str] = {}
        for dist, spec in _collect(pm.hook.bdc_tables, TableSpec):
            for label in (spec.name, *spec.aliases):
                if label in owners:
                    raise TableCollisionError(label, owners[label], dist)
                owners[label] = dist
            self._tables[spec.name] = spec
            for alias in spec.aliases:
                self._by_alias[alias] = spec.name
        self.backends: dict[str, BackendSpec] = {}
        for dist, backend in _collect(pm.hook.bdc_backends, BackendSpec):
            if backend.scheme in self.backends:
                raise PluginError(
                    f"URL scheme {backend.scheme!r} is claimed by both "
                    f"{self.backends[backend.scheme].plugin!r} and {dist!r}"
                )
            self.backends[backend.scheme] = backend
        self.executors: dict[str, ExecutorSpec] = {}
        for dist, executor in _collect(pm.hook.bdc_executors, ExecutorSpec):
            if executor.name in self.executors:
                raise PluginError(
                    f"Executor {executor.name!r} is declared by both "
                    f"{self.executors[executor.name].plugin!r} and {dist!r}"
                )
            self.executors[executor.name] = executor
        self.functions: dict[str, FunctionSpec] = {}
        for dist, function in _collect(pm.hook.bdc_functions, FunctionSpec):
            if function.name in self.functions:
                raise PluginError(
                    f"Function {function.name!r} is declared by both "
                    f"{self.functions[function.name].plugin!r} and {dist!r}"
                )
            self.functions[function.name] = function
        self.demos: list[DemoSpec] = [demo for _, demo in _collect(pm.hook.bdc_demo_sources, DemoSpec)]

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
