"""The incremental rule shared by the DocDB tables: diff ``_id → _last_modified`` maps.

asset_basics diffs the run's one listing of DocDB against its previous table; the tables built
from asset_basics (metadata_core, source_data) diff asset_basics against the map saved in their
state, so a run makes one listing sweep in all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["changed_ids", "basics_map"]


def changed_ids(previous: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``(fetch, drop)``: ids new or modified in ``current``, and ids gone from it."""
    fetch = [i for i, lm in current.items() if i not in previous or previous[i] != lm]
    drop = [i for i in previous if i not in current]
    return fetch, drop


def basics_map(ctx: Any, where: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``_id → _last_modified`` of asset_basics as published in this run (optionally filtered)."""
    table = ctx.read_arrow("asset_basics", columns=["_id", "_last_modified"], where=where)
    return dict(zip(table.column("_id").to_pylist(), table.column("_last_modified").to_pylist()))
