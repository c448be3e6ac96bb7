"""quality_control (``qc``) and qc_tag_status, both partitioned by ``subject_id`` (TABLES.md §2.7).

Per subject, fetch ``find(qc_filter(subject_id), PROJECTION)`` with **no limit** (D3), then
flatten each record with :func:`qc_rows` and :func:`qc_tag_status_rows`. Both tables are built
together; a subject with no rows still gets an empty partition with the declared schema (D12).

Wanted behaviour implemented (TABLES.md §4):

* D6: each metric's ``tags`` kept as ``list<string>``: a dict tag ``k: v`` becomes ``"k:v"`` (the
  same text as the ``quality_control.status`` key), a list tag ``t`` stays ``t``.
* D13: ``value`` — null stays null, strings as-is, anything else compact JSON (``true``,
  ``0.5``, ``["a"]``, ``{"value":null,...}``; non-ASCII kept).
* D14: an empty (or non-list) ``status_history`` gives a null ``status``.
* D11: qc_tag_status is a declared table; rows come from every record whose
  ``quality_control.status`` is a dict, whether or not it has metrics.
* D21: both tables carry ``asset_id`` (the record ``_id``) so they join to asset_basics on id.

Judgment calls: metrics that are not dicts are skipped (noted in ``problems``); metrics with
``object_type == "Curation metric"`` are skipped; ``timestamp`` is
``acquisition.acquisition_start_time`` converted to UTC (a time without offset is taken as UTC,
unparseable → null); a non-string status value in ``status`` gives a null status.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bdc_tables_docdb.records import as_dict, as_list, clean_text, get_path
from bdc_tables_docdb.timeparse import to_utc
from bdc_tables_docdb.transforms._common import note, text
from bdc_tables_docdb.transforms.arrow import to_arrow

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "TABLE_NAME",
    "FOLDER",
    "DESCRIPTION",
    "PARTITION_KEY",
    "PROJECTION",
    "COLUMNS",
    "QC_TAG_STATUS_TABLE_NAME",
    "QC_TAG_STATUS_DESCRIPTION",
    "QC_TAG_STATUS_COLUMNS",
    "qc_filter",
    "encode_value",
    "tag_strings",
    "qc_rows",
    "qc_tag_status_rows",
    "qc_table",
    "qc_tag_status_table",
]

TABLE_NAME = "quality_control"
FOLDER = "qc"
"""Storage folder of quality_control (``bdc-vX.Y/qc/subject_id=<id>/``)."""
DESCRIPTION = "Quality control metrics for each asset, partitioned by subject"
PARTITION_KEY = "subject_id"

PROJECTION: dict[str, int] = {
    "_id": 1,
    "name": 1,
    "quality_control": 1,
    "acquisition.acquisition_start_time": 1,
    "subject.subject_id": 1,
}

COLUMNS: list[tuple[str, str, str]] = [
    ("name", "string", "QC metric name"),
    ("modality", "string", "Modality abbreviation of the metric"),
    ("stage", "string", "QC stage (Raw data, Processing, Analysis, Multi-asset)"),
    ("value", "string", "Metric value: strings as-is, other values JSON-encoded, null if none"),
    ("status", "string", "Latest status (Pass, Fail, Pending) from status_history; null if none"),
    ("asset_name", "string", "Asset name"),
    ("subject_id", "string", "Subject ID"),
    ("timestamp", "timestamp[us, tz=UTC]", "Acquisition start time (UTC)"),
    ("tags", "list<string>", "Metric tags: dict tags as 'key:value', list tags as-is"),
    ("asset_id", "string", "DocDB _id of the asset (join key to asset_basics._id)"),
]

QC_TAG_STATUS_TABLE_NAME = "qc_tag_status"
QC_TAG_STATUS_DESCRIPTION = "QC status per status key (tag, modality or stage) for each asset, partitioned by subject"
QC_TAG_STATUS_COLUMNS: list[tuple[str, str, str]] = [
    ("tag", "string", "quality_control.status key: a tag ('key:value' or list tag), a modality or a stage"),
    ("status", "string", "Status for that key (Pass, Fail, Pending)"),
    ("asset_name", "string", "Asset name"),
    ("subject_id", "string", "Subject ID"),
    ("timestamp", "timestamp[us, tz=UTC]", "Acquisition start time (UTC)"),
    ("asset_id", "string", "DocDB _id of the asset (join key to asset_basics._id)"),
]


def qc_filter(subject_id: str) -> dict[str, Any]:
    """The find filter for one subject partition (use with :data:`PROJECTION`, no limit)."""
    return {"subject.subject_id": subject_id}


def encode_value(value: Any) -> str | None:
    """A metric value as text (D13): ``None`` → ``None``, strings unchanged, others compact JSON.

    >>> encode_value(True), encode_value(["a"]), encode_value({"value": None})
    ('true', '["a"]', '{"value":null}')
    """
    if value is None:
        return None
    if isinstance(value, str):
        return clean_text(value)
    return clean_text(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))


def tag_strings(tags: Any) -> list[str]:
    """A metric's tags as strings (D6): dict ``{k: v}`` → ``"k:v"``, list elements as text.

    The dict form uses the same ``f"{k}:{v}"`` text as upstream ``quality_control.status`` keys.
    A lone string is one tag; ``None`` and other types give ``[]``.
    """
    if isinstance(tags, dict):
        return [clean_text(f"{k}:{v}") for k, v in tags.items()]
    if isinstance(tags, str):
        return [clean_text(tags)]
    return [t for t in (text(x) for x in as_list(tags)) if t is not None]


def _modality(metric: Mapping[str, Any]) -> str | None:
    modality = metric.get("modality")
    if isinstance(modality, dict):
        return text(modality.get("abbreviation"))
    return text(modality)


def _last_status(history: Any) -> str | None:
    entries = as_list(history)
    if not entries or not isinstance(entries[-1], dict):
        return None
    return text(entries[-1].get("status"))


def _context(record: Any, problems: list[str] | None) -> tuple[str | None, str | None, datetime | None, str | None]:
    raw_time = get_path(record, "acquisition.acquisition_start_time")
    timestamp = to_utc(raw_time)
    if raw_time is not None and timestamp is None:
        note(problems, record, f"unparseable acquisition_start_time {raw_time!r}")
    return (
        text(get_path(record, "name")),
        text(get_path(record, "subject.subject_id")),
        timestamp,
        text(get_path(record, "_id")),
    )


def qc_rows(record: Mapping[str, Any], problems: list[str] | None = None) -> list[dict[str, Any]]:
    """One quality_control row per QC metric of ``record`` (keys = :data:`COLUMNS`); never raises.

    Records whose ``quality_control`` is null/empty give ``[]``; ``Curation metric`` entries and
    non-dict metrics are skipped.
    """
    qc = as_dict(get_path(record, "quality_control"))
    metrics = as_list(qc.get("metrics"))
    if not metrics:
        return []
    asset_name, subject_id, timestamp, asset_id = _context(record, problems)
    rows = []
    for index, metric in enumerate(metrics):
        if not isinstance(metric, dict):
            note(problems, record, f"quality_control.metrics[{index}] is not an object")
            continue
        if metric.get("object_type") == "Curation metric":
            continue
        rows.append(
            {
                "name": text(metric.get("name")),
                "modality": _modality(metric),
                "stage": text(metric.get("stage")),
                "value": encode_value(metric.get("value")),
                "status": _last_status(metric.get("status_history")),
                "asset_name": asset_name,
                "subject_id": subject_id,
                "timestamp": timestamp,
                "tags": tag_strings(metric.get("tags")),
                "asset_id": asset_id,
            }
        )
    return rows


def qc_tag_status_rows(record: Mapping[str, Any], problems: list[str] | None = None) -> list[dict[str, Any]]:
    """One qc_tag_status row per entry of ``quality_control.status`` (D11); never raises.

    Rows are produced whenever ``status`` is a non-empty dict, regardless of metrics. Keys are
    kept as written (tag keys, modality abbreviations, stage names); non-string statuses give
    a null ``status``.
    """
    status = get_path(record, "quality_control.status")
    if not isinstance(status, dict) or not status:
        return []
    asset_name, subject_id, timestamp, asset_id = _context(record, problems)
    return [
        {
            "tag": clean_text(str(key)),
            "status": clean_text(value) if isinstance(value, str) else None,
            "asset_name": asset_name,
            "subject_id": subject_id,
            "timestamp": timestamp,
            "asset_id": asset_id,
        }
        for key, value in status.items()
    ]


def qc_table(records: Iterable[Mapping[str, Any]], problems: list[str] | None = None) -> pa.Table:
    """All quality_control rows of ``records`` as a ``pyarrow.Table`` (declared schema, maybe empty)."""
    return to_arrow((row for r in records for row in qc_rows(r, problems)), COLUMNS)


def qc_tag_status_table(records: Iterable[Mapping[str, Any]], problems: list[str] | None = None) -> pa.Table:
    """All qc_tag_status rows of ``records`` as a ``pyarrow.Table`` (declared schema, maybe empty)."""
    return to_arrow((row for r in records for row in qc_tag_status_rows(r, problems)), QC_TAG_STATUS_COLUMNS)
