"""time_to_qc: when processing ended and when QC was last evaluated, per derived asset — TABLES.md §2.15.

Build: :func:`select_time_to_qc_assets` gives the derived asset names from asset_basics; the
builder fetches them in batches of :data:`BATCH_SIZE` (``{"name": {"$in": [...]}}``,
:data:`PROJECTION`); :func:`time_to_qc_table` builds the table. Records whose ``quality_control``
is null or empty are skipped. The table is always written, even when empty.

Wanted behaviour (§4):
- D7: an asset with any ``Pending`` status gets ``qc_time = null`` and ``qc_pending = true``
  (the reference stored the build time, which changed every run).
- D8: timestamps are parsed (any ISO variant/offset) and compared in UTC, never as strings.

``process_end_time`` follows §2.15 exactly: from the **last** element of
``processing.data_processes``, its ``end_date_time`` when that key is present (even when null, which
gives null), otherwise its ``start_date_time``; the string is kept verbatim (``""`` included) and is
null when there are no processes. Null-safe (D5): a non-list ``data_processes`` counts as no
processes, and a last element that is not a dict has neither key, so it gives null.
``process_end_time_utc`` is that text parsed to UTC (null when null or unparseable).

Judgment calls (documented):
- ``qc_pending`` looks at the values of ``quality_control.status``; when that dict is absent it
  falls back to the last ``status_history`` entry of each metric.
- ``qc_time`` is the latest (UTC) timestamp among the last ``status_history`` entries of all
  metrics; null when pending or when no timestamp parses.
- ``qc_duration_hours`` = ``qc_time − process_end_time_utc`` in hours (may be negative: QC of raw
  data can precede the end of processing); null unless both are known.
- Duplicate asset names keep the newest record by ``_last_modified`` (D21).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..records import as_dict, as_list, as_str, clean_text, get_path
from ..timeparse import to_utc
from ._platform_common import ColumnSpec, frame_from_rows, newest_by_name

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PROJECTION",
    "COLUMNS",
    "BATCH_SIZE",
    "select_time_to_qc_assets",
    "process_end_time",
    "time_to_qc_row",
    "time_to_qc_table",
]

BATCH_SIZE = 50

PROJECTION: dict[str, int] = {
    "_id": 1,
    "_last_modified": 1,
    "name": 1,
    "processing.data_processes": 1,
    "quality_control": 1,
}

COLUMNS: list[ColumnSpec] = [
    ("name", "string", "Derived asset name"),
    ("process_end_time", "string", "End (else start) time of the last data process, verbatim as in DocDB"),
    ("process_end_time_utc", "timestamp[us, tz=UTC]", "process_end_time parsed and converted to UTC"),
    ("qc_time", "timestamp[us, tz=UTC]", "Latest QC evaluation time in UTC (null while any QC status is Pending)"),
    ("qc_pending", "bool", "True when any quality_control status is Pending"),
    ("qc_duration_hours", "float64", "Hours from process_end_time_utc to qc_time (null unless both are known)"),
]


def select_time_to_qc_assets(basics_df: pd.DataFrame) -> list[str]:
    """Distinct non-empty names of ``data_level == "derived"`` assets, in basics order."""
    if basics_df is None or len(basics_df) == 0 or not {"name", "data_level"} <= set(basics_df.columns):
        return []
    names: dict[str, None] = {}
    for name, level in zip(basics_df["name"], basics_df["data_level"]):
        if isinstance(name, str) and name and level == "derived":
            names.setdefault(name, None)
    return list(names)


def _verbatim(value: Any) -> str | None:
    """A DocDB value as verbatim text: strings as they are (``""`` kept), numbers as text, else ``None``."""
    return clean_text(value) if isinstance(value, str) else as_str(value)


def process_end_time(record: Mapping[str, Any]) -> tuple[str | None, datetime | None]:
    """``(verbatim text, UTC datetime)`` of the last data process's end (else start) time (§2.15).

    The last element of ``processing.data_processes`` gives its ``end_date_time`` when that key is
    present, even when its value is null (→ ``(None, None)``), otherwise its ``start_date_time``.
    No processes (missing, null, empty or not a list) → ``(None, None)``; a last element that is
    not a dict has neither key → ``(None, None)``.
    """
    processes = as_list(get_path(record, "processing.data_processes"))
    if not processes:
        return None, None
    last = processes[-1]
    if not isinstance(last, dict):
        return None, None
    value = last["end_date_time"] if "end_date_time" in last else last.get("start_date_time")
    text = _verbatim(value)
    return text, to_utc(text)


def _last_status(metric: Any) -> dict:
    history = as_list(get_path(metric, "status_history"))
    return as_dict(history[-1]) if history else {}


def time_to_qc_row(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The time_to_qc row of one record, or ``None`` when its ``quality_control`` is null or empty."""
    qc = get_path(record, "quality_control")
    if not isinstance(qc, dict) or not qc:
        return None
    metrics = as_list(qc.get("metrics"))
    status = qc.get("status")
    if isinstance(status, dict):
        pending = any(value == "Pending" for value in status.values())
    else:
        pending = any(_last_status(metric).get("status") == "Pending" for metric in metrics)
    qc_time: datetime | None = None
    if not pending:
        stamps = [to_utc(_last_status(metric).get("timestamp")) for metric in metrics]
        known = [stamp for stamp in stamps if stamp is not None]
        qc_time = max(known) if known else None
    end_text, end_time = process_end_time(record)
    duration = (qc_time - end_time).total_seconds() / 3600.0 if qc_time is not None and end_time is not None else None
    return {
        "name": as_str(get_path(record, "name")),
        "process_end_time": end_text,
        "process_end_time_utc": end_time,
        "qc_time": qc_time,
        "qc_pending": pending,
        "qc_duration_hours": duration,
    }


def time_to_qc_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The time_to_qc table from fetched records (declared schema even when empty)."""
    rows = []
    for record in newest_by_name(records).values():
        row = time_to_qc_row(record)
        if row is not None:
            rows.append(row)
    return frame_from_rows(rows, COLUMNS)
