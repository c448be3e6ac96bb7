"""The bdc plugin of bdc-tables-foraging (entry point ``foraging`` in the group ``bdc``).

Declares the three dynamic-foraging mirrors, their one-liners (``bdc.platform_dynamic_foraging_trials``)
and an offline demo source. Loading it is cheap:
specs only, nothing is read until a sync runs.
"""

from __future__ import annotations

from typing import Any

from bdc.hookspecs import hookimpl

__all__ = ["bdc_tables", "bdc_functions", "bdc_demo_sources"]


@hookimpl
def bdc_tables() -> list[Any]:
    """platform_dynamic_foraging_sessions, _trials and _events."""
    from bdc_tables_foraging.tables import table_specs

    return table_specs()


@hookimpl
def bdc_functions() -> list[Any]:
    """The reference's one-liners: ``from bdc import platform_dynamic_foraging_trials``."""
    from bdc_tables_foraging.functions import function_specs

    return function_specs()


@hookimpl
def bdc_demo_sources() -> list[Any]:
    """A generated foraging database (24 subjects x 4 sessions x 150 trials) in a temp dir."""
    from bdc.spec import DemoSpec
    from bdc_tables_foraging.demo.sandbox import DEMO_SHAPE, demo_database

    return [DemoSpec(
        name="foraging",
        start=demo_database,
        description=(f"generated dynamic-foraging database ({DEMO_SHAPE['subjects']} subjects x "
                     f"{DEMO_SHAPE['sessions_per_subject']} sessions x {DEMO_SHAPE['trials_per_session']} "
                     f"trials) in a temp dir, as BDC_FORAGING_BASE"),
    )]
