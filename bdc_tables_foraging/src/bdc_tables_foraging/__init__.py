"""bdc tables mirrored from the AIND dynamic-foraging parquet database.

Installing the distribution registers three tables with bdc (entry point ``foraging``):
``platform_dynamic_foraging_sessions`` (``df_sessions``), ``platform_dynamic_foraging_trials``
(``df_trials``) and ``platform_dynamic_foraging_events`` (``df_events``), mirrored from
``BDC_FORAGING_BASE`` (default: upstream's public S3 prefix). :func:`duckdb_connect` lets the
upstream query helpers read ``s3://`` locations without DuckDB's httpfs.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.36.0"

_LAZY = {
    "ForagingSource": "bdc_tables_foraging.source",
    "foraging_base": "bdc_tables_foraging.source",
    "BASE_ENV": "bdc_tables_foraging.source",
    "duckdb_connect": "bdc_tables_foraging.filesystem",
    "table_specs": "bdc_tables_foraging.tables",
    "SESSIONS": "bdc_tables_foraging.tables",
    "TRIALS": "bdc_tables_foraging.tables",
    "EVENTS": "bdc_tables_foraging.tables",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """Resolve the public names from their modules on first use (importing the package stays light)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
