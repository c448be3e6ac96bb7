"""metadata_core (``core``): which core metadata files each record has (TABLES.md §2.9, D10).

Listing, incremental diff (:func:`bdc_tables_docdb.transforms.asset_basics.plan_refresh`) and
100-id batching are the same as asset_basics; flatten each record with :func:`core_row`.
A field counts as present when its key exists and is not null (an empty dict counts as present).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bdc_tables_docdb.records import get_path
from bdc_tables_docdb.transforms._common import text
from bdc_tables_docdb.transforms.arrow import to_arrow

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["TABLE_NAME", "DESCRIPTION", "CORE_FIELDS", "PROJECTION", "COLUMNS", "core_row", "core_table"]

TABLE_NAME = "metadata_core"
DESCRIPTION = "Which core metadata files (subject, procedures, ...) each DocDB asset has"

CORE_FIELDS: tuple[str, ...] = (
    "subject",
    "data_description",
    "procedures",
    "instrument",
    "acquisition",
    "processing",
    "quality_control",
)

PROJECTION: dict[str, int] = {"_id": 1, "_last_modified": 1, **{f: 1 for f in CORE_FIELDS}}

COLUMNS: list[tuple[str, str, str]] = [
    ("_id", "string", "DocDB record id"),
    ("_last_modified", "string", "DocDB last-modified time, as returned (ISO text)"),
    *[(f, "bool", f"Whether {f}.json is present (not null)") for f in CORE_FIELDS],
]


def core_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One metadata_core row: ids plus one bool per core field (present and not null)."""
    row: dict[str, Any] = {
        "_id": text(get_path(record, "_id")),
        "_last_modified": text(get_path(record, "_last_modified")),
    }
    for f in CORE_FIELDS:
        row[f] = isinstance(record, Mapping) and record.get(f) is not None
    return row


def core_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """``records`` as a ``pyarrow.Table`` with the declared :data:`COLUMNS` schema."""
    return to_arrow((core_row(r) for r in records), COLUMNS)
