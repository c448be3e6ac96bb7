"""asset_basics (``basics``): one row per DocDB v2 record (TABLES.md §2.4).

Build in two steps:

1. :func:`basics_row` per fetched record (pure, never raises). It produces the *pre-merge* row:
   the ``*_normalized`` columns hold the per-row normalisation (§1.3) only.
2. :func:`finalize_basics` over **all** rows of the table (fresh and cached alike). It recomputes
   the per-row normalisation from the raw ``experimenters``/``investigators`` lists and applies
   the table-wide first-name merge (§1.4). Because it starts from the raw lists, it can be
   re-run on an already finalised table (incremental builds, D1) and gives the same result as a
   full rebuild.

:func:`plan_refresh` computes the incremental diff (D1, D2) from two ``_id → _last_modified``
maps. Fetch with ``find({"_id": {"$in": ids}}, PROJECTION)`` in batches of :data:`BATCH_SIZE`.

Judgment calls (beyond TABLES.md):

* ``age`` (D17 "wanted"): DOB from ``subject.subject_details.date_of_birth``, else
  ``subject.subject_details.year_of_birth`` (→ 1 January); ``acquisition.subject_details`` is not
  read (it never carries a DOB in v2). Age = calendar date of ``acquisition_start_time`` in its own
  offset minus the DOB, in days. A **negative** age (acquisition before birth) is a data error
  and gives null. So the TABLES.md example row's ``age=null`` (a reference defect) becomes
  ``199`` for ``v2_derived.json``.
* ``process_date`` (D4): the process with the latest ``start_date_time`` (compared in UTC; naive
  times are taken as UTC for the comparison only); ties go to the later list element. The date is
  the one written in that timestamp's own offset. Processes with a missing/unparseable start are
  ignored; none usable → null.
* ``code_ocean``: a plain string is wrapped in a one-element list; non-text ids are dropped.
* ``experimenters``/``investigators``: dict elements contribute ``name`` (``""`` if absent),
  strings are kept, numbers become text, other elements are dropped; a lone string field is
  treated as a one-element list.
* ``modalities``: only dict elements with a non-empty ``abbreviation`` count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from bdc_tables_docdb.records import as_list, get_path
from bdc_tables_docdb.timeparse import local_date, parse_date, parse_timestamp, to_utc
from bdc_tables_docdb.transforms._common import note, text
from bdc_tables_docdb.transforms.arrow import to_arrow
from bdc_tables_docdb.transforms.names import (
    first_name_merge,
    normalize_experimenters,
    normalize_instrument_id,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "TABLE_NAME",
    "DESCRIPTION",
    "BATCH_SIZE",
    "LISTING_PROJECTION",
    "PROJECTION",
    "COLUMNS",
    "basics_row",
    "finalize_basics",
    "basics_table",
    "latest_process_date",
    "age_days",
    "RefreshPlan",
    "plan_refresh",
]

TABLE_NAME = "asset_basics"
DESCRIPTION = "Basic metadata for every DocDB asset (one row per record)"
BATCH_SIZE = 100
"""Ids per ``$in`` find."""

LISTING_PROJECTION: dict[str, int] = {"_id": 1, "_last_modified": 1}
"""Projection of the id listing ``find({}, LISTING_PROJECTION, limit=0)``."""

PROJECTION: dict[str, int] = {
    "_id": 1,
    "_last_modified": 1,
    "data_description.modalities": 1,
    "data_description.project_name": 1,
    "data_description.data_level": 1,
    "data_description.investigators": 1,
    "subject.subject_id": 1,
    "subject.subject_details.genotype": 1,
    "subject.subject_details.date_of_birth": 1,
    "subject.subject_details.year_of_birth": 1,
    "acquisition.acquisition_start_time": 1,
    "acquisition.acquisition_end_time": 1,
    "acquisition.acquisition_type": 1,
    "acquisition.experimenters": 1,
    "acquisition.instrument_id": 1,
    "processing.data_processes.start_date_time": 1,
    "other_identifiers": 1,
    "location": 1,
    "name": 1,
}
"""Fields :func:`basics_row` reads (DOB from ``subject.subject_details``, D17)."""

COLUMNS: list[tuple[str, str, str]] = [
    ("_id", "string", "DocDB record id"),
    ("_last_modified", "string", "DocDB last-modified time, as returned (ISO text)"),
    ("modalities", "list<string>", "Modality abbreviations (data_description.modalities[].abbreviation)"),
    ("project_name", "string", "data_description.project_name"),
    ("data_level", "string", "data_description.data_level (raw/derived)"),
    ("subject_id", "string", "subject.subject_id"),
    ("acquisition_start_time", "string", "acquisition.acquisition_start_time, verbatim (mixed ISO formats)"),
    ("acquisition_end_time", "string", "acquisition.acquisition_end_time, verbatim"),
    ("code_ocean", "list<string>", "Code Ocean asset IDs (other_identifiers['Code Ocean'])"),
    ("process_date", "string", "YYYY-MM-DD of the latest data process start (in its own offset)"),
    ("genotype", "string", "subject.subject_details.genotype"),
    ("age", "int64", "Age in days at acquisition start (subject date/year of birth)"),
    ("acquisition_type", "string", "acquisition.acquisition_type"),
    ("location", "string", "S3 location of the asset"),
    ("name", "string", "Asset name (not unique in DocDB)"),
    ("experimenters", "list<string>", "acquisition.experimenters as stored (dicts contribute their name)"),
    ("experimenters_normalized", "list<string>", "Normalised experimenter names (first names merged table-wide)"),
    ("instrument_id", "string", "acquisition.instrument_id"),
    ("instrument_id_normalized", "string", "Normalised instrument id ('' if missing)"),
    ("investigators", "list<string>", "data_description.investigators[].name"),
    ("investigators_normalized", "list<string>", "Normalised investigator names (first names merged table-wide)"),
]


def _modalities(record: Any) -> list[str]:
    out = []
    for item in as_list(get_path(record, "data_description.modalities")):
        abbr = text(item.get("abbreviation")) if isinstance(item, dict) else None
        if abbr:
            out.append(abbr)
    return out


def _people(value: Any) -> list[str]:
    """Names from a people list: dict → its ``name`` (``""`` if absent), text kept, rest dropped."""
    if isinstance(value, (str, dict)):
        value = [value]
    out: list[str] = []
    for item in as_list(value):
        if isinstance(item, dict):
            out.append(text(item.get("name")) or "")
        else:
            name = text(item)
            if name is not None:
                out.append(name)
    return out


def _code_ocean(record: Any) -> list[str] | None:
    value = get_path(record, "other_identifiers.Code Ocean")
    if value is None:
        return None
    if isinstance(value, list):
        return [t for t in (text(v) for v in value) if t is not None]
    single = text(value)
    return [single] if single is not None else None


def latest_process_date(processes: Any, problems: list[str] | None = None, record: Any = None) -> str | None:
    """``YYYY-MM-DD`` of the process with the latest parsed ``start_date_time`` (D4), or ``None``.

    Starts are compared in UTC; the date returned is the one written in the winning timestamp's
    own offset. Ties go to the later list element. Processes that are not dicts or whose start
    is missing or unparseable are skipped (unparseable ones are noted in ``problems``).
    """
    best = None
    best_key = None
    for process in as_list(processes):
        raw = process.get("start_date_time") if isinstance(process, dict) else None
        if raw is None:
            continue
        key = to_utc(raw)
        if key is None:
            note(problems, record, f"unparseable processing start_date_time {raw!r}")
            continue
        if best_key is None or key >= best_key:
            best, best_key = raw, key
    day = local_date(best) if best is not None else None
    return day.isoformat() if day is not None else None


def _dob(date_of_birth: Any, year_of_birth: Any) -> date | None:
    if date_of_birth is not None:
        parsed = parse_date(date_of_birth)
        if parsed is not None:
            return parsed
    if year_of_birth is None or isinstance(year_of_birth, bool):
        return None
    try:
        year = int(str(year_of_birth).strip()) if not isinstance(year_of_birth, float) else int(year_of_birth)
        return date(year, 1, 1)
    except (TypeError, ValueError, OverflowError):
        return None


def age_days(acquisition_start: Any, date_of_birth: Any = None, year_of_birth: Any = None) -> int | None:
    """Age in whole days at acquisition (D17 "wanted"), or ``None``.

    ``acquisition_start`` is any ISO timestamp text; its calendar date is taken in its own
    offset. DOB is ``date_of_birth`` (a date or timestamp text) or else 1 January of
    ``year_of_birth`` (int or digit text). Missing/unparseable inputs and negative ages give
    ``None``.

    >>> age_days("2026-02-13T18:31:13.061848Z", "2025-07-29")
    199
    """
    start = local_date(acquisition_start)
    dob = _dob(date_of_birth, year_of_birth)
    if start is None or dob is None:
        return None
    days = (start - dob).days
    return days if days >= 0 else None


def basics_row(record: Mapping[str, Any], problems: list[str] | None = None) -> dict[str, Any]:
    """Flatten one DocDB record into a **pre-merge** asset_basics row (keys = :data:`COLUMNS`).

    Never raises: missing, null or wrongly typed fields at any level give nulls or empty lists
    (D5). ``experimenters_normalized``/``investigators_normalized`` are per-row only (§1.3); run
    :func:`finalize_basics` over the whole table for §1.4. Values that are present but unusable
    (unparseable times, ...) are noted in ``problems`` (``"<_id>: <message>"``) if a list is given.
    """
    experimenters = _people(get_path(record, "acquisition.experimenters"))
    investigators = _people(get_path(record, "data_description.investigators"))
    instrument_id = text(get_path(record, "acquisition.instrument_id"))
    start = text(get_path(record, "acquisition.acquisition_start_time"))
    if start is not None and parse_timestamp(start) is None:
        note(problems, record, f"unparseable acquisition_start_time {start!r}")
    dob = get_path(record, "subject.subject_details.date_of_birth")
    if dob is not None and parse_date(dob) is None:
        note(problems, record, f"unparseable subject date_of_birth {dob!r}")
    yob = get_path(record, "subject.subject_details.year_of_birth")
    return {
        "_id": text(get_path(record, "_id")),
        "_last_modified": text(get_path(record, "_last_modified")),
        "modalities": _modalities(record),
        "project_name": text(get_path(record, "data_description.project_name")),
        "data_level": text(get_path(record, "data_description.data_level")),
        "subject_id": text(get_path(record, "subject.subject_id")),
        "acquisition_start_time": start,
        "acquisition_end_time": text(get_path(record, "acquisition.acquisition_end_time")),
        "code_ocean": _code_ocean(record),
        "process_date": latest_process_date(get_path(record, "processing.data_processes"), problems, record),
        "genotype": text(get_path(record, "subject.subject_details.genotype")),
        "age": age_days(start, dob, yob),
        "acquisition_type": text(get_path(record, "acquisition.acquisition_type")),
        "location": text(get_path(record, "location")),
        "name": text(get_path(record, "name")),
        "experimenters": experimenters,
        "experimenters_normalized": normalize_experimenters(experimenters),
        "instrument_id": instrument_id,
        "instrument_id_normalized": normalize_instrument_id(instrument_id),
        "investigators": investigators,
        "investigators_normalized": normalize_experimenters(investigators),
    }


def finalize_basics(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Apply the table-wide first-name merge (§1.4) to **all** rows of asset_basics.

    For each row the per-row normalisation (§1.3) is recomputed from the raw ``experimenters``
    and ``investigators`` lists (so already-finalised cached rows can be mixed with fresh ones,
    and names whose full form has left the table are un-merged again); then the merge map is
    built over the whole table and both ``*_normalized`` columns are rewritten. Accepts row
    dicts (e.g. ``df.to_dict("records")``; list cells may be numpy arrays) and returns new
    dicts with the same keys in the original order; inputs are not modified.
    """
    out = [dict(row) for row in rows]
    merged_exp, merged_inv = first_name_merge(
        [normalize_experimenters(row.get("experimenters")) for row in out],
        [normalize_experimenters(row.get("investigators")) for row in out],
    )
    for row, exp, inv in zip(out, merged_exp, merged_inv):
        row["experimenters_normalized"] = exp
        row["investigators_normalized"] = inv
    return out


def basics_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows (already finalised) as a ``pyarrow.Table`` with the declared :data:`COLUMNS` schema."""
    return to_arrow(rows, COLUMNS)


@dataclass(frozen=True)
class RefreshPlan:
    """What an incremental build must do (D1): ``fetch`` ids, ``drop`` ids, ``keep`` cached ids."""

    fetch: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)


def plan_refresh(cached: Mapping[str, Any], current: Mapping[str, Any]) -> RefreshPlan:
    """Diff the cached ``_id → _last_modified`` map against DocDB's listing (D1, D2).

    ``fetch``: ids new in DocDB or whose ``_last_modified`` text differs (string equality, in
    listing order); ``drop``: cached ids no longer in DocDB; ``keep``: cached ids to reuse as-is.
    Hash lookups only (O(N + M)). Use ``dict(zip(df["_id"], df["_last_modified"]))`` to build the maps.
    """
    fetch, keep = [], []
    for _id, modified in current.items():
        if _id in cached and text(cached[_id]) == text(modified):
            keep.append(_id)
        else:
            fetch.append(_id)
    drop = [_id for _id in cached if _id not in current]
    return RefreshPlan(fetch=fetch, drop=drop, keep=keep)
