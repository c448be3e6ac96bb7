"""Demo data for the foraging tables: a seeded generator of a database in the upstream layout.

See :mod:`bdc_tables_foraging.demo.generator` and, for the ``bdc-sync --demo`` source,
:mod:`bdc_tables_foraging.demo.sandbox`. Names are resolved lazily so that
``python -m bdc_tables_foraging.demo.generator`` does not import the module twice.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DEMO_SHAPE",
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "TRIAL_COLUMNS",
    "ForagingDbChange",
    "ForagingDbInfo",
    "demo_database",
    "describe_foraging_db",
    "generate_foraging_db",
    "modify_foraging_db",
]

_SANDBOX = ("DEMO_SHAPE", "demo_database")


def __getattr__(name: str) -> Any:
    """Resolve the public names from :mod:`bdc_tables_foraging.demo.generator` on first use."""
    if name in _SANDBOX:
        return getattr(importlib.import_module(f"{__name__}.sandbox"), name)
    if name in __all__:
        return getattr(importlib.import_module(f"{__name__}.generator"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
