"""raw_to_derived (``r2d``): derived children of raw assets (TABLES.md §2.6). Not a stored table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from bdc_tables_docdb.transforms._common import cell_list, text

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["raw_to_derived"]


def raw_to_derived(
    source_data_df: pd.DataFrame,
    asset_basics_df: pd.DataFrame | None,
    asset_name: str | Iterable[str],
    latest: bool = False,
    modality: str | None = None,
) -> list[str]:
    """Names of the derived assets made directly from ``asset_name`` (one raw name or several).

    1. Rows of ``source_data_df`` whose ``source_data`` **equals** one of the given names
       (direct children only, not transitive).
    2. With ``modality``: keep derived names having at least one asset_basics row (joined on
       ``name``) with a modality abbreviation that **contains** ``modality``,
       case-insensitively (``behavior`` matches ``behavior-videos``). ``asset_basics_df`` may be
       ``None`` when no modality filter is used.
    3. With ``latest``: keep, per (source name, ``pipeline_name``) — ``""`` is its own pipeline —
       the row with the greatest ``processing_time`` (ties: greatest name); the result is ordered
       by source name (in the order given), then pipeline name.

    Judgment calls: the result has no duplicates (first occurrence kept; the reference could
    repeat a name); with several raw names, ``latest`` works per raw asset, not across them;
    a name-duplicated basics row never multiplies results (D21). Without ``latest`` the order
    is that of ``source_data_df``.
    """
    names = [asset_name] if isinstance(asset_name, str) else list(asset_name or [])
    wanted = [n for n in names if isinstance(n, str) and n]
    if not wanted or source_data_df is None or source_data_df.empty:
        return []
    order = {name: i for i, name in reversed(list(enumerate(wanted)))}
    cols = {c: list(source_data_df[c]) if c in source_data_df.columns else [None] * len(source_data_df)
            for c in ("name", "source_data", "pipeline_name", "processing_time")}
    candidates = [
        (text(src) or "", text(name), text(pipe) or "", text(when) or "")
        for name, src, pipe, when in zip(
            cols["name"], cols["source_data"], cols["pipeline_name"], cols["processing_time"]
        )
        if text(src) in order and text(name) is not None
    ]

    if modality is not None:
        needle = modality.lower()
        matching: set[str] = set()
        if asset_basics_df is not None and {"name", "modalities"} <= set(asset_basics_df.columns):
            for name, mods in zip(asset_basics_df["name"], asset_basics_df["modalities"]):
                if any(isinstance(m, str) and needle in m.lower() for m in cell_list(mods)):
                    name = text(name)
                    if name is not None:
                        matching.add(name)
        candidates = [c for c in candidates if c[1] in matching]

    if latest:
        best: dict[tuple[str, str], tuple[str, str, str, str]] = {}
        for cand in candidates:
            key = (cand[0], cand[2])
            if key not in best or (cand[3], cand[1]) > (best[key][3], best[key][1]):
                best[key] = cand
        candidates = [best[k] for k in sorted(best, key=lambda k: (order[k[0]], k[1]))]

    return list(dict.fromkeys(c[1] for c in candidates))
