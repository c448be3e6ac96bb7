"""The hooks a bdc plugin can implement (pluggy, project name ``bdc``).

A plugin is a module (or object) with functions named like the specs below and decorated with
:data:`hookimpl`; it is found through the entry-point group ``bdc``. Each hook returns a list of
typed records from :mod:`bdc.spec`; every plugin's answers are collected.
"""

from __future__ import annotations

import pluggy

from bdc.spec import BackendSpec, DemoSpec, ExecutorSpec, FunctionSpec, TableSpec

__all__ = ["hookspec", "hookimpl", "PROJECT_NAME", "bdc_tables", "bdc_backends",
           "bdc_executors", "bdc_functions", "bdc_demo_sources"]

PROJECT_NAME = "bdc"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def bdc_tables() -> list[TableSpec]:
    """Return the tables this plugin declares.

    Called once per process when the table catalog is first needed. Keep it cheap: declare specs
    and refer to build functions, do not fetch anything.
    """


@hookspec
def bdc_backends() -> list[BackendSpec]:
    """Return storage backends, one per URL scheme (``memory``, ``file``, ``s3``, ...)."""


@hookspec
def bdc_executors() -> list[ExecutorSpec]:
    """Return sync executors by name (``threads``, ``processes``, ``dask``, ...)."""


@hookspec
def bdc_functions() -> list[FunctionSpec]:
    """Return functions to expose as ``bdc.<name>`` (migration one-liners such as ``qc``)."""


@hookspec
def bdc_demo_sources() -> list[DemoSpec]:
    """Return offline demo sources that ``bdc-sync --demo`` starts before building."""
