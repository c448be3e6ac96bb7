"""The plugin manager: built-in plugins plus entry points of the group ``bdc``, loaded once.

Environment, read when the manager is first built (not at import):

* ``BDC_LOAD_PLUGINS``: comma-separated allow-list of entry-point or distribution names; set but
  empty loads no external plugin.
* ``BDC_DISABLE_PLUGINS``: comma-separated names to skip.
* ``BDC_STRICT_PLUGINS=1``: a plugin that fails to import is fatal instead of reported.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import attrs
import pluggy

from bdc import hookspecs
from bdc.errors import PluginLoadError

__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTIN_PLUGINS",
    "PluginRecord",
    "get_plugin_manager",
    "plugin_failures",
    "plugin_records",
    "distribution_of",
    "register",
    "unregister",
    "record_failure",
    "reset",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "bdc"
#: Plugins that ship with the framework, registered exactly like external ones (by module name).
BUILTIN_PLUGINS = ("bdc.backends.builtin", "bdc.runner.executors")

_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_failures: list[PluginLoadError] = []
_records: dict[str, PluginRecord] = {}


@attrs.frozen
class PluginRecord:
    """Where a registered plugin came from."""

    name: str
    distribution: str
    source: str  # "builtin", "entry point" or "in-process"


def _split(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {v.strip() for v in value.split(",") if v.strip()}


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def _dist_name(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or ep.value.split(":")[0].split(".")[0]


def _build() -> pluggy.PluginManager:
    import importlib

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
        _records[module_name] = PluginRecord(module_name, "bdc-framework", "builtin")

    allow = _split(os.environ.get("BDC_LOAD_PLUGINS"))
    deny = _split(os.environ.get("BDC_DISABLE_PLUGINS")) or set()
    strict = _strict()
    seen: set[str] = set()
    for ep in _entry_points():
        dist = _dist_name(ep)
        if ep.name in seen:
            continue
        if allow is not None and ep.name not in allow and dist not in allow:
            continue
        if ep.name in deny or dist in deny:
            continue
        seen.add(ep.name)
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken plugin must not take the others down
            failure = PluginLoadError(ep.name, dist, exc)
            if strict:
                raise failure from exc
            log.warning("%s", failure)
            _failures.append(failure)
            continue
        _records[ep.name] = PluginRecord(ep.name, dist, "entry point")
    pm.check_pending()
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _pm
    if _pm is None:
        with _lock:
            if _pm is None:
                _pm = _build()
    return _pm


def _strict() -> bool:
    return os.environ.get("BDC_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes")


def record_failure(plugin: str, distribution: str, error: BaseException, hook: str) -> None:
    """Report a plugin whose hook raised (fatal with ``BDC_STRICT_PLUGINS=1``)."""
    failure = PluginLoadError(f"{plugin} ({hook})", distribution, error)
    if _strict():
        raise failure from error
    log.warning("%s", failure)
    with _lock:
        if not any(str(f) == str(failure) for f in _failures):
            _failures.append(failure)


def plugin_failures() -> list[PluginLoadError]:
    """Plugins that failed to load (each names its distribution)."""
    get_plugin_manager()
    return list(_failures)


def plugin_records() -> dict[str, PluginRecord]:
    """Every registered plugin by name."""
    get_plugin_manager()
    return dict(_records)


def distribution_of(plugin_name: str) -> str:
    """The distribution a plugin came from (its own name if unknown)."""
    record = _records.get(plugin_name)
    return record.distribution if record else plugin_name


def register(plugin: object, name: str | None = None, distribution: str | None = None) -> str:
    """Register an in-process plugin (a module or object with hook implementations).

    Returns the plugin name; dependent caches (the table catalog) are refreshed.
    """
    from bdc import catalog

    pm = get_plugin_manager()
    with _lock:
        registered = pm.register(plugin, name=name)
        if registered is None:
            raise ValueError(f"Plugin {name or plugin!r} is already registered")
        pm.check_pending()
        _records[registered] = PluginRecord(registered, distribution or registered, "in-process")
    catalog.invalidate()
    return registered


def unregister(name: str) -> None:
    """Remove a plugin registered with :func:`register` (or any plugin, by name)."""
    from bdc import catalog

    pm = get_plugin_manager()
    with _lock:
        pm.unregister(name=name)
        _records.pop(name, None)
    catalog.invalidate()


def reset() -> None:
    """Forget the plugin manager; the next use rebuilds it from the environment (for tests)."""
    global _pm
    from bdc import catalog

    with _lock:
        _pm = None
        _failures.clear()
        _records.clear()
    catalog.invalidate()
