"""platform_exaspim (``exaspim``): one row per raw ExaSPIM asset — TABLES.md §2.13.

Build:
1. :func:`select_exaspim_assets` (asset_basics + source_data) → raw assets (as for SmartSPIM, but
   ``instrument_id`` must contain ``exa``, case-insensitive) with their latest ``fused`` child
   (case-insensitive; greatest ``processing_time``, ties: greatest name).
2. The builder fetches the fused names (:func:`~bdc_tables_docdb.transforms.smartspim.names_to_fetch`
   with ``column="fused_name"``) from DocDB v2 in batches of :data:`BATCH_SIZE` with :data:`PROJECTION`.
3. :func:`exaspim_table` checks the raw neuroglancer files on S3 and builds the rows.

Raw link: HeadObject ``<raw_name>/neuroglancer.json``, then ``<raw_name>/process_output.json``, in
that order, in the open-data bucket; the first that exists gives
``<neuroglancer_base>s3://<bucket>/<raw_name>/<file>``; none → null. A failure other than 404
stops the probe for that asset: the link is null and the failure is reported in ``errors``
(per-asset isolation, D25) rather than silently treated as "absent".
``fused_link`` = ``neuroglancer_base + location`` of the fused record, null without a location.
Order follows asset_basics; duplicate raw names collapse to one; duplicate records keep the newest
``_last_modified`` (D21).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from ..open_data import OpenData
from ..records import as_str, get_path
from ._platform_common import (
    ColumnSpec,
    cell_str,
    describe_error,
    frame_from_rows,
    newest_by_name,
    report_problems,
    run_per_asset,
)
from .smartspim import latest_children, raw_spim_assets

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PROJECTION",
    "COLUMNS",
    "BATCH_SIZE",
    "NEUROGLANCER_BASE",
    "RAW_LINK_FILES",
    "select_exaspim_assets",
    "raw_link",
    "exaspim_table",
]

BATCH_SIZE = 100
NEUROGLANCER_BASE = "https://neuroglancer-demo.appspot.com/#!"
RAW_LINK_FILES: tuple[str, ...] = ("neuroglancer.json", "process_output.json")

PROJECTION: dict[str, int] = {"_id": 1, "_last_modified": 1, "name": 1, "location": 1}

COLUMNS: list[ColumnSpec] = [
    ("name", "string", "Fused asset name, or the raw asset name if not processed"),
    ("raw_name", "string", "Raw ExaSPIM asset name"),
    ("processed", "bool", "Whether a fused asset exists for the raw asset"),
    ("raw_link", "string", "Neuroglancer link to the raw data (neuroglancer.json, else process_output.json)"),
    ("fused_link", "string", "Neuroglancer link to the fused asset's location"),
]


def select_exaspim_assets(basics_df: pd.DataFrame, source_df: pd.DataFrame) -> pd.DataFrame:
    """Raw ExaSPIM assets and their latest fused child: columns ``raw_name``, ``fused_name`` (or null)."""
    import pandas as pd

    children = latest_children(source_df, "fused")
    raws = raw_spim_assets(basics_df, exaspim=True)
    return pd.DataFrame(
        {"raw_name": pd.Series(raws, dtype=object), "fused_name": pd.Series([children.get(r) for r in raws], dtype=object)}
    )


def raw_link(open_data: OpenData, raw_name: str, *, neuroglancer_base: str = NEUROGLANCER_BASE) -> str | None:
    """The raw neuroglancer link of ``raw_name`` (HeadObject probes in order); errors other than 404 raise."""
    for filename in RAW_LINK_FILES:
        key = f"{raw_name}/{filename}"
        if open_data.exists(key):
            return f"{neuroglancer_base}s3://{open_data.bucket}/{key}"
    return None


def exaspim_table(
    selection: pd.DataFrame,
    records: Iterable[Mapping[str, Any]],
    open_data: OpenData,
    *,
    neuroglancer_base: str = NEUROGLANCER_BASE,
    errors: MutableMapping[str, str] | None = None,
    max_workers: int = 8,
) -> pd.DataFrame:
    """The platform_exaspim table.

    ``selection`` comes from :func:`select_exaspim_assets`; ``records`` are the fetched fused records.
    Per-asset S3 failures go to ``errors`` (raw name → message) when given, else to the log.
    """
    by_name = newest_by_name(records)
    items: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    if selection is not None and len(selection):
        for raw, fused in zip(selection["raw_name"], selection["fused_name"]):
            raw = cell_str(raw)
            if raw is None or raw in seen:
                continue
            seen.add(raw)
            items.append((raw, cell_str(fused)))

    def work(item: tuple[str, str | None]) -> tuple[dict[str, Any], list[str]]:
        raw, fused = item
        problems: list[str] = []
        try:
            link = raw_link(open_data, raw, neuroglancer_base=neuroglancer_base)
        except Exception as error:  # per-asset isolation (D25)
            link = None
            problems.append(f"raw link: {describe_error(error)}")
        location = as_str(get_path(by_name.get(fused), "location")) if fused else None
        return (
            {
                "name": fused or raw,
                "raw_name": raw,
                "processed": fused is not None,
                "raw_link": link,
                "fused_link": f"{neuroglancer_base}{location}" if location else None,
            },
            problems,
        )

    rows: list[dict[str, Any]] = []
    for (raw, _), (row, problems) in zip(items, run_per_asset(work, items, max_workers)):
        rows.append(row)
        report_problems(errors, "platform_exaspim", raw, problems)
    return frame_from_rows(rows, COLUMNS)
