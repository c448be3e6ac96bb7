"""bdc: versioned parquet tables of scientific metadata, built by plugins, read in one line.

::

    import bdc
    bdc.tables()
    bdc.get("qc", subject_id="692478", columns=["name", "status"])
    bdc.sql("SELECT project_name, count(*) FROM asset_basics GROUP BY 1")

Importing ``bdc`` is light: the functions below load pandas, DuckDB and the plugins on first use.
Any other name is looked up among the functions the installed plugins contribute (the
``bdc_functions`` hook), so code written for biodata-cache migrates by changing its import:
``from bdc import qc, unique_project_names`` (see docs/migration.md and :mod:`bdc.legacy`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.36.0"

_API = ("default_cache", "describe", "tables", "get", "location", "sql", "versions", "registry", "custom", "sync")
_LAZY = {
    **{name: "bdc.api" for name in _API},
    "Cache": "bdc.cache",
    "TableSpec": "bdc.spec",
    "Column": "bdc.spec",
    "BackendSpec": "bdc.spec",
    "ExecutorSpec": "bdc.spec",
    "FunctionSpec": "bdc.spec",
    "DemoSpec": "bdc.spec",
    "hookimpl": "bdc.hookspecs",
    "BuildContext": "bdc.build",
    "Delta": "bdc.build",
    "BuildResult": "bdc.build",
    "UNCHANGED": "bdc.build",
    "ParquetFiles": "bdc.build",
    "BdcError": "bdc.errors",
    "UnknownTableError": "bdc.errors",
    "TableNotBuiltError": "bdc.errors",
    "InvalidNameError": "bdc.errors",
    "ReadError": "bdc.errors",
    "SchemaMismatchError": "bdc.errors",
    "PluginLoadError": "bdc.errors",
    "TableCollisionError": "bdc.errors",
    "LockHeldError": "bdc.errors",
    "StaleCacheWarning": "bdc.backends.readcache",
    # the reference package's core one-liners (the table ones come from plugins, see __getattr__)
    "get_cache_registry": "bdc.legacy",
    "get_cache_versions": "bdc.legacy",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is not None:
        import importlib

        value = getattr(importlib.import_module(module_name), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):
        import importlib
        import importlib.util

        # A submodule (``from bdc import catalog`` before bdc.catalog is imported) is imported,
        # never looked up in the plugin catalog: that would load every plugin, or recurse while
        # bdc.plugins itself is still being imported.
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f"{__name__}.{name}")
        from bdc.catalog import get_catalog

        function = get_catalog().functions.get(name)
        if function is not None:
            return function.function
    raise AttributeError(f"module 'bdc' has no attribute {name!r}")


def __dir__() -> list[str]:
    """Module names, the lazy names and the functions the installed plugins add (``qc``, ...)."""
    names = set(globals()) | set(_LAZY)
    try:
        from bdc.catalog import get_catalog

        names |= set(get_catalog().functions)
    except Exception:  # a broken plugin must not break dir(bdc) or tab completion
        pass
    return sorted(names)
