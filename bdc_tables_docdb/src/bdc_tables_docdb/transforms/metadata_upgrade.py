"""metadata_upgrade (``upgrade``): v1 → v2 metadata upgrade tracking with per-version history — TABLES.md §2.10.

Inputs: the custom table ``metadata_upgrade_status_prod`` (columns :data:`STATUS_COLUMNS`, written by
an external job), the previously published metadata_upgrade (history), asset_basics, and DocDB
**v1** through ``v1_lookup(ids) -> records`` (a find ``{"_id": {"$in": ids}}`` with
:data:`V1_PROJECTION`; :func:`upgrade_table` calls it in batches of :data:`V1_BATCH_SIZE`).

One row per v1 record (``_id`` = v1 id) with the base columns of :data:`COLUMNS` plus one string
column per upgrader version holding that record's upgrade status under that version.

Fixes of the reference:
- D20: version columns come from each row's own ``upgrader_version`` (grouped), not from the
  first row's. Version columns are ordered by version number (``1.10.0`` after ``1.9.0``).
- D9: history is kept. Old version columns survive; a version present in this run updates its
  column cell by cell (this run's value wins where the id has a row for that version, older
  values stay elsewhere), so an id that moved to a newer upgrader keeps its older result.

``name``/``project_name``/``data_level`` follow §2.10 steps 4–6: they are never carried over from
the previous table (step 4 drops them with the other base columns, keeping only ``_id`` and the
version columns). Successful upgrades take them from asset_basics (joined on ``_id = v2_id``);
failed upgrades and ids known only from history take them from DocDB v1 only, so a row with no v1
record gets nulls even if an earlier run had names for it (e.g. from a then-successful v2 asset).

Judgment calls:
- Duplicate ``v1_id`` rows: the row with the latest ``upgrade_datetime`` supplies the base columns
  (ties: the later row); per (id, version) likewise.
- A successful upgrade whose v2 record is not in asset_basics is looked up in DocDB v1 like a
  failed one (rather than left null). A ``v1_lookup`` failure raises (never a silently emptied
  table, D9).
- No usable status table (``None``, empty, or lacking ``v1_id``/``upgrader_version``): the
  previous table is returned unchanged (conformed to strings) so history is not lost; without a
  previous table, an empty frame with the base schema.
- Rows: this run's ids in status-table order, then history-only ids in previous-table order.
- ``last_modified``/``upgrade_datetime`` are passed through as text (ISO for datetime values).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from ..records import as_str, get_path
from ..timeparse import to_utc
from ._platform_common import ColumnSpec, cell_str, frame_from_rows

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "STATUS_COLUMNS",
    "COLUMNS",
    "V1_PROJECTION",
    "V1_BATCH_SIZE",
    "version_columns",
    "columns_for",
    "version_sort_key",
    "upgrade_table",
]

V1_BATCH_SIZE = 100

STATUS_COLUMNS: tuple[str, ...] = ("v1_id", "v2_id", "upgrader_version", "status", "last_modified", "upgrade_datetime")

V1_PROJECTION: dict[str, int] = {
    "_id": 1,
    "name": 1,
    "data_description.data_level": 1,
    "data_description.project_name": 1,
}

COLUMNS: list[ColumnSpec] = [
    ("_id", "string", "DocDB v1 record id"),
    ("name", "string", "Asset name (from the v2 asset when upgraded, else from the v1 record)"),
    ("project_name", "string", "Project name"),
    ("data_level", "string", "Data level (raw/derived)"),
    ("v2_id", "string", "DocDB v2 record id (null when the upgrade failed)"),
    ("upgrader_version", "string", "Upgrader version of the latest upgrade attempt"),
    ("last_modified", "string", "Last modification time of the v1 record, as given by the status table"),
    ("status", "string", "Status of the latest upgrade attempt"),
    ("upgrade_datetime", "string", "Time of the latest upgrade attempt, as given by the status table"),
]

_BASE_NAMES: tuple[str, ...] = tuple(name for name, _, _ in COLUMNS)


def _text(value: Any) -> str | None:
    """A cell as text: strings as-is (empty → None), datetimes as ISO, numbers via ``str``; nulls → None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def version_sort_key(version: str) -> tuple:
    """Sort key for version strings: numeric parts compare as numbers (``1.10`` > ``1.9``)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-+_]", version))


def version_columns(frame: pd.DataFrame | None) -> list[str]:
    """The history (version) columns of a metadata_upgrade frame: every non-base column, version-sorted."""
    if frame is None:
        return []
    return sorted((str(c) for c in frame.columns if c not in _BASE_NAMES), key=version_sort_key)


def columns_for(versions: Iterable[str]) -> list[ColumnSpec]:
    """:data:`COLUMNS` plus one string column per upgrader version."""
    return COLUMNS + [(v, "string", f"Upgrade status with upgrader version {v}") for v in versions]


def _stamp(value: Any) -> tuple[int, float]:
    parsed = to_utc(_text(value) if not isinstance(value, datetime) else value)
    return (1, parsed.timestamp()) if parsed is not None else (0, 0.0)


def _previous(previous_df: pd.DataFrame | None) -> tuple[list[str], dict[str, dict[str, Any]], list[str]]:
    if previous_df is None or len(previous_df) == 0 or "_id" not in previous_df.columns:
        return [], {}, []
    versions = version_columns(previous_df)
    order: list[str] = []
    rows: dict[str, dict[str, Any]] = {}
    for record in previous_df.to_dict("records"):
        vid = _text(record.get("_id"))
        if vid is None:
            continue
        if vid not in rows:
            order.append(vid)
            rows[vid] = {}
        row = rows[vid]
        for column in (*_BASE_NAMES, *versions):
            value = _text(record.get(column))
            if value is not None or column not in row:
                row[column] = value
    return order, rows, versions


def upgrade_table(
    status_df: pd.DataFrame | None,
    previous_df: pd.DataFrame | None,
    basics_df: pd.DataFrame | None,
    v1_lookup: Callable[[list[str]], list[dict]],
) -> pd.DataFrame:
    """The metadata_upgrade table (see the module docstring for every rule)."""
    prev_order, prev_rows, prev_versions = _previous(previous_df)
    usable = (
        status_df is not None
        and len(status_df) > 0
        and {"v1_id", "upgrader_version"} <= set(status_df.columns)
    )
    if not usable:
        rows = [prev_rows[i] for i in prev_order]
        return frame_from_rows(rows, columns_for(prev_versions))

    # This run: base row per id (latest upgrade_datetime) and status per (id, version).
    order: list[str] = []
    base: dict[str, tuple[tuple[int, float], dict[str, Any]]] = {}
    per_version: dict[str, dict[str, tuple[tuple[int, float], str | None]]] = {}
    versions: dict[str, None] = {}
    for record in status_df.to_dict("records"):
        vid = _text(record.get("v1_id"))
        if vid is None:
            continue
        stamp = _stamp(record.get("upgrade_datetime"))
        row = {
            "_id": vid,
            "v2_id": _text(record.get("v2_id")),
            "upgrader_version": _text(record.get("upgrader_version")),
            "status": _text(record.get("status")),
            "last_modified": _text(record.get("last_modified")),
            "upgrade_datetime": _text(record.get("upgrade_datetime")),
        }
        if vid not in base:
            order.append(vid)
        if vid not in base or stamp >= base[vid][0]:
            base[vid] = (stamp, row)
        version = row["upgrader_version"]
        if version is not None and version not in _BASE_NAMES:
            versions.setdefault(version, None)
            cells = per_version.setdefault(vid, {})
            if version not in cells or stamp >= cells[version][0]:
                cells[version] = (stamp, row["status"])

    all_versions = sorted(set(prev_versions) | set(versions), key=version_sort_key)
    ids = order + [i for i in prev_order if i not in base]

    rows: dict[str, dict[str, Any]] = {}
    for vid in ids:
        previous = prev_rows.get(vid, {})
        row = {column: None for column in _BASE_NAMES}
        row["_id"] = vid
        if vid in base:
            row.update(base[vid][1])
        for version in all_versions:
            row[version] = previous.get(version)
        for version, (_, status) in per_version.get(vid, {}).items():
            row[version] = status
        rows[vid] = row

    # Successful upgrades: descriptive fields from asset_basics (joined on _id = v2_id).
    basics: dict[str, dict[str, Any]] = {}
    if basics_df is not None and len(basics_df) and "_id" in basics_df.columns:
        wanted = {r["v2_id"] for r in rows.values() if r["v2_id"]}
        for record in basics_df.to_dict("records"):
            bid = _text(record.get("_id"))
            if bid in wanted and bid not in basics:
                basics[bid] = record
    need_v1: list[str] = []
    for vid in ids:
        row = rows[vid]
        source = basics.get(row["v2_id"]) if row["v2_id"] else None
        if source is not None:
            for column in ("name", "project_name", "data_level"):
                row[column] = cell_str(source.get(column))
        else:
            need_v1.append(vid)

    # Failed upgrades and history-only ids: DocDB v1 only (§2.10 step 6; no previous-table fallback).
    found: dict[str, Mapping[str, Any]] = {}
    for start in range(0, len(need_v1), V1_BATCH_SIZE):
        for record in v1_lookup(need_v1[start : start + V1_BATCH_SIZE]) or []:
            rid = as_str(get_path(record, "_id"))
            if rid is not None:
                found.setdefault(rid, record)
    for vid in need_v1:
        row, record = rows[vid], found.get(vid)
        row["name"] = as_str(get_path(record, "name"))
        row["project_name"] = as_str(get_path(record, "data_description.project_name"))
        row["data_level"] = as_str(get_path(record, "data_description.data_level"))

    return frame_from_rows([rows[i] for i in ids], columns_for(all_versions))
