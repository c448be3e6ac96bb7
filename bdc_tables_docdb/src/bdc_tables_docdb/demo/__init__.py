"""Demo data for bdc's DocDB tables: a seeded record generator and a small shipped sample.

- :mod:`bdc_tables_docdb.demo.generator` makes realistic DocDB v2 asset records
  (:func:`generate_records`), the open-data S3 objects the platform tables read
  (:func:`generate_open_data_objects`) and incremental changes for refresh tests (:func:`mutate`).
- :mod:`bdc_tables_docdb.demo.sample` loads the shipped sample (~3,000 records including the four real
  DocDB records, and its open-data objects): :func:`load_sample_records`, :func:`load_sample_open_data`.

Names are imported lazily, so ``python -m bdc_tables_docdb.demo.generator`` runs cleanly and importing the
package costs nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "generate_records",
    "generate_open_data_objects",
    "mutate",
    "messy_kinds",
    "qc_status",
    "MESSY_KINDS",
    "REAL_RECORD_IDS",
    "load_sample_records",
    "load_sample_open_data",
]

_SOURCES = {
    "generate_records": "generator",
    "generate_open_data_objects": "generator",
    "mutate": "generator",
    "messy_kinds": "generator",
    "qc_status": "generator",
    "MESSY_KINDS": "generator",
    "REAL_RECORD_IDS": "generator",
    "load_sample_records": "sample",
    "load_sample_open_data": "sample",
}


def __getattr__(name: str) -> Any:
    """Import public names from their submodule on first access (PEP 562)."""
    module_name = _SOURCES.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names next to the module attributes."""
    return sorted(set(globals()) | set(__all__))
