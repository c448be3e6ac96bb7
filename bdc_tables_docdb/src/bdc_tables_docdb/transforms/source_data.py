"""source_data (``d2r``): derived asset → source (raw) asset names (TABLES.md §2.5).

Fetch with ``find(FILTER, PROJECTION, limit=0)`` and flatten each record with
:func:`source_data_rows`.

Judgment calls: duplicate source names within one record give one row (first occurrence kept);
a ``source_data`` given as a lone string counts as a one-element list; a record without a
``name`` still yields its rows with ``name`` null.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bdc_tables_docdb.records import get_path
from bdc_tables_docdb.transforms._common import text
from bdc_tables_docdb.transforms.arrow import to_arrow

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "TABLE_NAME",
    "DESCRIPTION",
    "FILTER",
    "PROJECTION",
    "COLUMNS",
    "processing_time",
    "source_data_rows",
    "source_data_table",
]

TABLE_NAME = "source_data"
DESCRIPTION = "Mapping from derived asset names to their source raw asset names"

FILTER: dict[str, Any] = {"data_description.data_level": "derived"}
PROJECTION: dict[str, int] = {"name": 1, "data_description.source_data": 1, "processing.pipelines": 1}

COLUMNS: list[tuple[str, str, str]] = [
    ("name", "string", "Derived asset name"),
    ("source_data", "string", "One source (upstream) asset name, or '' if none"),
    ("pipeline_name", "string", "Name of the first processing pipeline, or ''"),
    ("processing_time", "string", "Trailing YYYY-MM-DD_HH-MM-SS of the derived name, or '' (sorts lexically)"),
]

_PROCESSING_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})$")


def processing_time(name: Any) -> str:
    """The trailing ``YYYY-MM-DD_HH-MM-SS`` of an asset name, or ``""``."""
    if not isinstance(name, str):
        return ""
    match = _PROCESSING_TIME.search(name)
    return match.group(1) if match else ""


def source_data_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (derived asset, source name); never raises.

    A record whose ``data_description.source_data`` is null, empty or holds no usable names
    still gives one row with ``source_data = ""``. ``pipeline_name`` is the ``name`` of
    ``processing.pipelines[0]`` (``""`` when absent, null or not a dict; later pipelines are
    ignored).
    """
    name = text(get_path(record, "name"))
    raw_sources = get_path(record, "data_description.source_data")
    if isinstance(raw_sources, str):
        raw_sources = [raw_sources]
    sources = list(
        dict.fromkeys(t for t in (text(s) for s in (raw_sources if isinstance(raw_sources, list) else [])) if t)
    ) or [""]
    pipelines = get_path(record, "processing.pipelines")
    first = pipelines[0] if isinstance(pipelines, list) and pipelines else None
    pipeline_name = (text(first.get("name")) if isinstance(first, dict) else None) or ""
    when = processing_time(name)
    return [
        {"name": name, "source_data": source, "pipeline_name": pipeline_name, "processing_time": when}
        for source in sources
    ]


def source_data_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """All rows of ``records`` as a ``pyarrow.Table`` with the declared :data:`COLUMNS` schema."""
    return to_arrow((row for record in records for row in source_data_rows(record)), COLUMNS)
