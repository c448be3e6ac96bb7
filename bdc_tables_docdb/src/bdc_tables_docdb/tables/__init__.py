"""The DocDB table specs, grouped by what they read."""

from __future__ import annotations

__all__ = ["all_specs"]


def all_specs() -> list:
    """Every table this plugin declares, in publish order."""
    from bdc_tables_docdb.tables import assets, platforms, qc

    return [*assets.specs(), *qc.specs(), *platforms.specs()]
