"""platform_qc, partitioned by ``platform`` (TABLES.md §2.8).

Build one partition per platform of :data:`PLATFORMS` (in that order):

1. ``assets = select_platform_assets(basics_df, platform)``.
2. Fetch the assets' records by id in batches of :data:`BATCH_SIZE`:
   ``find({"_id": {"$in": ids}}, PROJECTION)`` (D21: ids, not the non-unique names).
3. ``rows = [r for rec in records for r in platform_qc_rows(rec, platform)]``.
4. ``join_basics(rows, basics_df)`` → the partition (empty frames keep the schema, D12).

Wanted behaviour implemented: list tags map under their own text (D6, :func:`tag_modality_map`);
the join uses ``_id`` (D21), falling back to ``name`` only for rows without a known id, where
duplicate basics names resolve to the newest ``_last_modified`` (reported in ``problems``);
``timestamp`` is a UTC timestamp (D18) and the verbatim text stays in ``acquisition_start_time``.

As in the reference, the status-key check is **case-sensitive** (metric modality abbreviations
are schema enum values such as ``SPIM`` and ``fib``), while the asset filter is not.
Curation metrics contribute to the tag→modality map like QC metrics do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bdc_tables_docdb.records import as_list, clean_text, get_path
from bdc_tables_docdb.timeparse import parse_timestamp, to_utc
from bdc_tables_docdb.transforms._common import cell_list, is_missing, note, text
from bdc_tables_docdb.transforms.arrow import to_frame
from bdc_tables_docdb.transforms.quality_control import tag_strings

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "TABLE_NAME",
    "DESCRIPTION",
    "PARTITION_KEY",
    "BATCH_SIZE",
    "PROJECTION",
    "COLUMNS",
    "Platform",
    "PLATFORMS",
    "get_platform",
    "select_platform_assets",
    "tag_modality_map",
    "platform_qc_rows",
    "join_basics",
]

TABLE_NAME = "platform_qc"
DESCRIPTION = "QC status per asset and status key for each platform, partitioned by platform"
PARTITION_KEY = "platform"
BATCH_SIZE = 50
PROJECTION: dict[str, int] = {"_id": 1, "name": 1, "quality_control": 1}

COLUMNS: list[tuple[str, str, str]] = [
    ("asset_name", "string", "Asset name"),
    ("tag", "string", "QC status key (tag 'key:value', list tag, or modality abbreviation)"),
    ("status", "string", "QC status for that key (Pass, Fail, Pending)"),
    ("timestamp", "timestamp[us, tz=UTC]", "Acquisition start time (UTC), from asset_basics"),
    ("instrument_id_normalized", "string", "Normalised instrument id, from asset_basics"),
    ("experimenters_normalized", "list<string>", "Normalised experimenter names, from asset_basics"),
    ("acquisition_start_time", "string", "Acquisition start time as written in DocDB (verbatim)"),
    ("asset_id", "string", "DocDB _id of the asset (join key to asset_basics._id)"),
]


@dataclass(frozen=True)
class Platform:
    """A platform filter: assets with any modality in ``qc_modalities`` plus an extra condition.

    ``acquisition_type``: exact value required (``None`` = no condition).
    ``acquisition_type_pattern``: regex that must match at the **start** of ``acquisition_type``
    (``None`` = no condition; a null acquisition type never matches).
    """

    name: str
    qc_modalities: frozenset[str]
    acquisition_type: str | None = None
    acquisition_type_pattern: str | None = None

    def accepts(self, modalities: Any, acquisition_type: Any) -> bool:
        """Whether an asset_basics row (its ``modalities`` cell and ``acquisition_type``) qualifies."""
        wanted = {m.lower() for m in self.qc_modalities}
        if not any(isinstance(m, str) and m.lower() in wanted for m in cell_list(modalities)):
            return False
        acq = None if is_missing(acquisition_type) else acquisition_type
        if self.acquisition_type is not None and acq != self.acquisition_type:
            return False
        if self.acquisition_type_pattern is not None:
            if not isinstance(acq, str) or re.match(self.acquisition_type_pattern, acq) is None:
                return False
        return True


PLATFORMS: dict[str, Platform] = {
    "spim": Platform("spim", frozenset({"SPIM"})),
    "fib": Platform("fib", frozenset({"fib"})),
    "vr": Platform("vr", frozenset({"behavior", "behavior-videos"}), acquisition_type="AindVrForaging"),
    "dynamic_foraging": Platform(
        "dynamic_foraging",
        frozenset({"behavior", "behavior-videos"}),
        acquisition_type_pattern=r"(Uncoupled|Coupled)( Without)? Baiting",
    ),
    "slap2": Platform("slap2", frozenset({"slap2"})),
}
"""The platforms in build order."""


def get_platform(platform: str | Platform) -> Platform:
    """A :class:`Platform` from its name (a key of :data:`PLATFORMS`) or itself."""
    if isinstance(platform, Platform):
        return platform
    try:
        return PLATFORMS[platform]
    except KeyError:
        raise ValueError(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}") from None


def select_platform_assets(basics_df: pd.DataFrame, platform: str | Platform) -> pd.DataFrame:
    """The asset_basics rows that belong to ``platform`` (basics order kept, index reset).

    An asset qualifies when any of its ``modalities`` (case-insensitive) is one of the
    platform's ``qc_modalities`` and the platform's acquisition-type condition holds.
    """
    spec = get_platform(platform)
    if basics_df.empty or "modalities" not in basics_df.columns:
        return basics_df.iloc[0:0].reset_index(drop=True)
    acq = basics_df["acquisition_type"] if "acquisition_type" in basics_df.columns else [None] * len(basics_df)
    mask = [spec.accepts(m, a) for m, a in zip(basics_df["modalities"], acq)]
    return basics_df.loc[mask].reset_index(drop=True)


def tag_modality_map(record: Mapping[str, Any]) -> dict[str, set[str]]:
    """Map each QC status key of ``record`` to the modality abbreviations of its metrics (D6).

    For each metric with a modality abbreviation ``a``: each dict tag ``k: v`` adds ``a`` under
    ``"k:v"``, each list tag ``t`` adds ``a`` under ``t``, and ``a`` is added under ``a`` itself.
    Metrics without an abbreviation contribute nothing.
    """
    mapping: dict[str, set[str]] = {}
    for metric in as_list(get_path(record, "quality_control.metrics")):
        if not isinstance(metric, dict):
            continue
        modality = metric.get("modality")
        abbr = text(modality.get("abbreviation")) if isinstance(modality, dict) else text(modality)
        if not abbr:
            continue
        for key in (*tag_strings(metric.get("tags")), abbr):
            mapping.setdefault(key, set()).add(abbr)
    return mapping


def platform_qc_rows(record: Mapping[str, Any], platform: str | Platform) -> list[dict[str, Any]]:
    """The (asset, status key) rows of ``record`` kept for ``platform``; never raises.

    An entry of ``quality_control.status`` is kept when its key's modalities
    (:func:`tag_modality_map`) intersect the platform's ``qc_modalities`` or the key itself is
    one of them (case-sensitive). Stage keys (``Processing``, ``Raw data``) and keys of other
    modalities are dropped. Rows carry ``asset_name``, ``tag``, ``status`` and ``asset_id``;
    :func:`join_basics` adds the rest. Records without a status dict give ``[]``.
    """
    spec = get_platform(platform)
    status = get_path(record, "quality_control.status")
    if not isinstance(status, dict) or not status:
        return []
    keys_to_modalities = tag_modality_map(record)
    asset_name = _cell(get_path(record, "name"))  # "" kept, as in the reference
    asset_id = text(get_path(record, "_id"))
    rows = []
    for key, value in status.items():
        key = clean_text(str(key))  # the same text as tag_strings' keys
        if key in spec.qc_modalities or keys_to_modalities.get(key, set()) & spec.qc_modalities:
            rows.append(
                {
                    "asset_name": asset_name,
                    "tag": key,
                    "status": clean_text(value) if isinstance(value, str) else None,
                    "asset_id": asset_id,
                }
            )
    return rows


def _column(df: pd.DataFrame, name: str) -> list[Any]:
    return list(df[name]) if name in df.columns else [None] * len(df)


def _cell(value: Any) -> str | None:
    """A string cell passed through as it is (``""`` stays ``""``, see :func:`clean_text`); anything
    else as :func:`text` makes it (missing values → ``None``)."""
    return clean_text(value) if isinstance(value, str) else text(value)


def _newer(a: Any, b: Any) -> bool:
    """Whether ``_last_modified`` ``a`` is newer than ``b`` (parsed; text as tie-break)."""
    ta, tb = to_utc(a), to_utc(b)
    if ta is not None and tb is not None and ta != tb:
        return ta > tb
    if (ta is None) != (tb is None):
        return ta is not None
    return (text(a) or "") > (text(b) or "")


def join_basics(
    rows: Iterable[Mapping[str, Any]], basics_df: pd.DataFrame, problems: list[str] | None = None
) -> pd.DataFrame:
    """Left-join platform rows to asset_basics and return the typed partition (:data:`COLUMNS`).

    Each row joins on ``asset_id = basics._id`` (D21). A row without an ``asset_id`` found in
    basics falls back to ``asset_name = basics.name``; if that name is duplicated in basics,
    the row with the newest ``_last_modified`` wins and the duplicate is noted in ``problems``.
    A matched row carries basics' values as they are (§2.8 step 4): ``instrument_id_normalized``
    stays ``""`` when basics has ``""`` (§1.5, §2.4: never null), and so do an empty
    ``acquisition_start_time`` and the row's own empty ``asset_name``. Unmatched rows keep nulls
    (``experimenters_normalized`` → ``[]``). ``timestamp`` is basics' ``acquisition_start_time``
    parsed to UTC (D18), null when that text is empty or unparseable (only non-empty unparseable
    text is noted in ``problems``); the verbatim text is kept alongside.
    """
    ids = _column(basics_df, "_id")
    names = _column(basics_df, "name")
    modified = _column(basics_df, "_last_modified")
    by_id: dict[str, int] = {}
    by_name: dict[str, int] = {}
    duplicated: set[str] = set()
    for i, (_id, name) in enumerate(zip(ids, names)):
        _id, name = text(_id), text(name)
        if _id is not None:
            by_id.setdefault(_id, i)
        if name is not None:
            if name in by_name:
                duplicated.add(name)
                if _newer(modified[i], modified[by_name[name]]):
                    by_name[name] = i
            else:
                by_name[name] = i
    starts = _column(basics_df, "acquisition_start_time")
    instruments = _column(basics_df, "instrument_id_normalized")
    experimenters = _column(basics_df, "experimenters_normalized")

    out = []
    for row in rows:
        asset_id, asset_name = text(row.get("asset_id")), _cell(row.get("asset_name"))
        index = by_id.get(asset_id) if asset_id is not None else None
        if index is None and asset_name:
            index = by_name.get(asset_name)
            if index is not None and asset_name in duplicated:
                note(problems, {"_id": asset_id, "name": asset_name},
                     f"asset name {asset_name!r} is not unique in asset_basics; joined the newest")
        start = _cell(starts[index]) if index is not None else None
        if start and parse_timestamp(start) is None:
            note(problems, {"_id": asset_id, "name": asset_name}, f"unparseable acquisition_start_time {start!r}")
        out.append(
            {
                "asset_name": asset_name,
                "tag": row.get("tag"),
                "status": row.get("status"),
                "timestamp": to_utc(start),
                "instrument_id_normalized": _cell(instruments[index]) if index is not None else None,
                "experimenters_normalized": cell_list(experimenters[index]) if index is not None else [],
                "acquisition_start_time": start,
                "asset_id": asset_id,
            }
        )
    return to_frame(out, COLUMNS)
