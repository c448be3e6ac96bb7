"""platform_smartspim (``smartspim``): one row per (raw SmartSPIM asset, channel) — TABLES.md §2.12.

Build:
1. :func:`select_smartspim_assets` (asset_basics + source_data) → one row per raw asset with its
   latest stitched child (or none).
2. The builder fetches the stitched names (:func:`names_to_fetch`) from DocDB v2 in batches of
   :data:`BATCH_SIZE` with ``{"name": {"$in": [...]}}`` and :data:`PROJECTION`.
3. :func:`smartspim_table` lists channels and reads the raw neuroglancer link from S3 through an
   :class:`~bdc_tables_docdb.open_data.OpenData` accessor and builds the rows.

Selection: raw assets are asset_basics rows with ``data_level == "raw"``, a modality abbreviation
containing ``SPIM`` (case-sensitive) and an ``instrument_id`` *not* containing ``exa``
(case-insensitive; null counts as not containing). The stitched asset is the source_data child
whose name contains ``stitched`` (case-insensitive) with the greatest ``processing_time`` (ties:
greatest name). Order follows asset_basics; duplicate raw names collapse to one.

S3 (fixes of D25):
- channels: the stitched asset's ``location`` is parsed into bucket and key (it may be outside the
  open-data bucket) and ``<key>/image_cell_segmentation/`` is listed with delimiter ``/``, every
  page; each CommonPrefix's last component is a channel (``Ex_561_Em_600``);
- raw link: GetObject ``<raw_name>/SPIM/derivatives/neuroglancer_config.json`` in the open-data
  bucket, field ``ng_link``; a link with ``/derivatives/`` but not ``/SPIM/derivatives/`` gets
  ``/SPIM/derivatives/`` (:func:`fix_ng_link`). A missing object gives a null link.
- Errors are per asset: a failed listing or read (anything but "not found") is reported in
  ``errors[raw_name]`` and the asset still gets its row(s) with the affected fields null
  (channel rows cannot be produced without the listing). The builder decides whether a non-empty
  ``errors`` fails/retries the table.

Links (``NG`` = ``neuroglancer_base``, ``L`` = stitched location without trailing ``/``):
``stitched_link = NG+L+"/neuroglancer_config.json"``, ``segmentation_link`` /
``quantification_link`` = ``NG+L+"/image_cell_{segmentation,quantification}/<channel>/visualization/neuroglancer_config.json"``,
``alignment_link = NG+L+"/image_atlas_alignment/neuroglancer_config.json"``,
``alignment_ccf_link = NG+L+"/image_atlas_alignment/ccf_visualization/neuroglancer_config.json"``.
With no location, these are all null; ``raw_link`` does not depend on the location and is kept.
Records with duplicate names keep the newest ``_last_modified`` (D21).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from ..open_data import OpenData, parse_s3_url
from ..records import as_dict, as_list, as_str, get_path
from ._platform_common import (
    ColumnSpec,
    cell_str,
    describe_error,
    frame_from_rows,
    modality_list,
    newest_by_name,
    report_problems,
    run_per_asset,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PROJECTION",
    "COLUMNS",
    "BATCH_SIZE",
    "NEUROGLASS_BASE",
    "raw_spim_assets",
    "latest_children",
    "select_smartspim_assets",
    "names_to_fetch",
    "fix_ng_link",
    "raw_ng_link",
    "list_channels",
    "smartspim_table",
]

BATCH_SIZE = 100
NEUROGLASS_BASE = "https://allen.neuroglass.io/new#!"

PROJECTION: dict[str, int] = {
    "_id": 1,
    "_last_modified": 1,
    "name": 1,
    "data_description.institution": 1,
    "processing.data_processes": 1,
    "location": 1,
}

COLUMNS: list[ColumnSpec] = [
    ("name", "string", "Stitched asset name, or the raw asset name if not processed"),
    ("raw_name", "string", "Raw SmartSPIM asset name"),
    ("processed", "bool", "Whether a stitched asset exists for the raw asset"),
    ("institution", "string", "Institution abbreviation of the stitched asset (e.g. AIND)"),
    ("processing_end_time", "string", "end_date_time of the stitched asset's last data process, verbatim"),
    ("stitched_link", "string", "Neuroglancer link to the stitched volume"),
    ("raw_link", "string", "Neuroglancer link to the raw data (from the raw asset's neuroglancer_config.json)"),
    ("channel", "string", "Segmented channel (e.g. Ex_561_Em_600); null when none is known"),
    ("segmentation_link", "string", "Neuroglancer link to the cell segmentation of the channel"),
    ("quantification_link", "string", "Neuroglancer link to the cell quantification of the channel"),
    ("alignment_link", "string", "Neuroglancer link to the atlas alignment"),
    ("alignment_ccf_link", "string", "Neuroglancer link to the atlas alignment in CCF"),
]

_NG_CONFIG = "neuroglancer_config.json"


def raw_spim_assets(basics_df: pd.DataFrame, *, exaspim: bool) -> list[str]:
    """Distinct raw SPIM asset names in basics order; ``exaspim`` selects instruments containing ``exa``."""
    if basics_df is None or len(basics_df) == 0 or "name" not in basics_df.columns:
        return []
    column = lambda c: basics_df[c] if c in basics_df.columns else [None] * len(basics_df)  # noqa: E731
    names: dict[str, None] = {}
    for name, level, modalities, instrument in zip(
        basics_df["name"], column("data_level"), column("modalities"), column("instrument_id")
    ):
        name = cell_str(name)
        if name is None or level != "raw":
            continue
        if not any("SPIM" in m for m in modality_list(modalities)):
            continue
        is_exa = "exa" in (cell_str(instrument) or "").lower()
        if is_exa == exaspim:
            names.setdefault(name, None)
    return list(names)


def latest_children(source_df: pd.DataFrame, keyword: str) -> dict[str, str]:
    """Raw name → the child (derived) name containing ``keyword`` (case-insensitive) with the latest
    ``processing_time`` (ties: greatest name)."""
    if source_df is None or len(source_df) == 0 or not {"name", "source_data"} <= set(source_df.columns):
        return {}
    times = source_df["processing_time"] if "processing_time" in source_df.columns else [None] * len(source_df)
    needle = keyword.lower()
    best: dict[str, tuple[str, str]] = {}
    for name, source, ptime in zip(source_df["name"], source_df["source_data"], times):
        name, source = cell_str(name), cell_str(source)
        if name is None or source is None or needle not in name.lower():
            continue
        candidate = (cell_str(ptime) or "", name)
        if source not in best or candidate > best[source]:
            best[source] = candidate
    return {source: value[1] for source, value in best.items()}


def select_smartspim_assets(basics_df: pd.DataFrame, source_df: pd.DataFrame) -> pd.DataFrame:
    """Raw SmartSPIM assets and their latest stitched child: columns ``raw_name``, ``stitched_name`` (or null)."""
    import pandas as pd

    children = latest_children(source_df, "stitched")
    raws = raw_spim_assets(basics_df, exaspim=False)
    return pd.DataFrame(
        {"raw_name": pd.Series(raws, dtype=object), "stitched_name": pd.Series([children.get(r) for r in raws], dtype=object)}
    )


def names_to_fetch(selection: pd.DataFrame, column: str = "stitched_name") -> list[str]:
    """The distinct non-null child names of a selection, to fetch from DocDB."""
    if selection is None or column not in selection.columns:
        return []
    return list(dict.fromkeys(n for n in (cell_str(v) for v in selection[column]) if n is not None))


def fix_ng_link(link: str | None) -> str | None:
    """Insert the ``SPIM/`` level into a raw ``ng_link`` that points at ``/derivatives/`` directly."""
    if link and "/derivatives/" in link and "/SPIM/derivatives/" not in link:
        return link.replace("/derivatives/", "/SPIM/derivatives/")
    return link


def raw_ng_link(open_data: OpenData, raw_name: str) -> str | None:
    """The fixed ``ng_link`` of a raw asset; ``None`` if the config object or field is absent, or
    the field is not text (wrong type counts as missing, §0; errors raise)."""
    config = open_data.get_json(f"{raw_name}/SPIM/derivatives/{_NG_CONFIG}")
    if config is None:
        return None
    link = get_path(config, "ng_link")
    return fix_ng_link(as_str(link)) if isinstance(link, str) else None


def list_channels(open_data: OpenData, location: str) -> list[str]:
    """Channel names under ``<location>/image_cell_segmentation/`` (bucket taken from the location).

    A location that is not an ``s3://`` URL has no listable channels (``[]``); S3 errors raise.
    """
    parsed = parse_s3_url(location)
    if parsed is None:
        return []
    bucket, key = parsed
    key = key.strip("/")
    prefix = f"{key}/image_cell_segmentation/" if key else "image_cell_segmentation/"
    channels: list[str] = []
    for common in open_data.list_common_prefixes(prefix, bucket=bucket):
        last = common.rstrip("/").rsplit("/", 1)[-1]
        if last and last not in channels:
            channels.append(last)
    return channels


def _last_process_end(record: Mapping[str, Any] | None) -> str | None:
    processes = as_list(get_path(record, "processing.data_processes"))
    return as_str(get_path(processes[-1], "end_date_time")) if processes else None


def _asset_rows(
    raw_name: str,
    stitched: str | None,
    record: Mapping[str, Any] | None,
    open_data: OpenData,
    base: str,
) -> tuple[list[dict[str, Any]], list[str]]:
    problems: list[str] = []
    try:
        raw_link = raw_ng_link(open_data, raw_name)
    except Exception as error:  # per-asset isolation (D25)
        raw_link = None
        problems.append(f"raw link: {describe_error(error)}")
    if stitched is None:
        return [{"name": raw_name, "raw_name": raw_name, "processed": False, "raw_link": raw_link}], problems

    location = (as_str(get_path(record, "location")) or "").rstrip("/")
    row: dict[str, Any] = {
        "name": stitched,
        "raw_name": raw_name,
        "processed": True,
        "institution": as_str(get_path(as_dict(get_path(record, "data_description.institution")), "abbreviation")),
        "processing_end_time": _last_process_end(record),
        "raw_link": raw_link,
    }
    if not location:
        return [row], problems
    row["stitched_link"] = f"{base}{location}/{_NG_CONFIG}"
    row["alignment_link"] = f"{base}{location}/image_atlas_alignment/{_NG_CONFIG}"
    row["alignment_ccf_link"] = f"{base}{location}/image_atlas_alignment/ccf_visualization/{_NG_CONFIG}"
    try:
        channels = list_channels(open_data, location)
    except Exception as error:  # per-asset isolation (D25)
        channels = []
        problems.append(f"channel listing: {describe_error(error)}")
    if not channels:
        return [row], problems
    rows = []
    for channel in channels:
        rows.append(
            {
                **row,
                "channel": channel,
                "segmentation_link": f"{base}{location}/image_cell_segmentation/{channel}/visualization/{_NG_CONFIG}",
                "quantification_link": f"{base}{location}/image_cell_quantification/{channel}/visualization/{_NG_CONFIG}",
            }
        )
    return rows, problems


def smartspim_table(
    selection: pd.DataFrame,
    records: Iterable[Mapping[str, Any]],
    open_data: OpenData,
    *,
    neuroglancer_base: str = NEUROGLASS_BASE,
    errors: MutableMapping[str, str] | None = None,
    max_workers: int = 8,
) -> pd.DataFrame:
    """The platform_smartspim table.

    ``selection`` comes from :func:`select_smartspim_assets`; ``records`` are the fetched stitched
    records (:data:`PROJECTION`). Per-asset S3 failures are written to ``errors`` (raw name →
    message) when given, and logged otherwise; they never abort the table.
    """
    by_name = newest_by_name(records)
    items: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    if selection is not None and len(selection):
        for raw, stitched in zip(selection["raw_name"], selection["stitched_name"]):
            raw = cell_str(raw)
            if raw is None or raw in seen:
                continue
            seen.add(raw)
            items.append((raw, cell_str(stitched)))

    def work(item: tuple[str, str | None]) -> tuple[list[dict[str, Any]], list[str]]:
        raw, stitched = item
        return _asset_rows(raw, stitched, by_name.get(stitched) if stitched else None, open_data, neuroglancer_base)

    rows: list[dict[str, Any]] = []
    for (raw, _), (asset_rows, problems) in zip(items, run_per_asset(work, items, max_workers)):
        rows.extend(asset_rows)
        report_problems(errors, "platform_smartspim", raw, problems)
    return frame_from_rows(rows, COLUMNS)

