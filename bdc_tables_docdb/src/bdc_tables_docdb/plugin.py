"""The bdc plugin of bdc-tables-docdb (entry point ``docdb`` in the group ``bdc``)."""

from __future__ import annotations

from bdc import hookimpl
from bdc.spec import DemoSpec, FunctionSpec, TableSpec

__all__ = ["bdc_tables", "bdc_functions", "bdc_demo_sources"]


@hookimpl
def bdc_tables() -> list[TableSpec]:
    """Every DocDB table."""
    from bdc_tables_docdb.tables import all_specs

    return all_specs()


@hookimpl
def bdc_functions() -> list[FunctionSpec]:
    """Lookups over the cached tables (``bdc.raw_to_derived``) and the reference's one-liners."""
    from bdc_tables_docdb import functions

    return functions.function_specs()


@hookimpl
def bdc_demo_sources() -> list[DemoSpec]:
    """A DocDB emulator on loopback serving the bundled sample records, and a local open-data copy."""
    from bdc_tables_docdb.demo.source import demo_docdb

    return [DemoSpec("docdb", demo_docdb, "DocDB emulator with the bundled sample records")]
