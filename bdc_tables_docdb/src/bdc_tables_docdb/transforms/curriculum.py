"""behavior_curriculum (``curriculum``): curriculum and stage of every behavior asset — TABLES.md §2.14.

Incremental by nature: a trainer-state file never changes once written, so an asset whose answer
is cached as *final* is never read again. :func:`curriculum_rows` takes the asset list, the
previously published table and an :class:`~bdc_tables_docdb.open_data.OpenData` accessor, and
returns the complete new table.

Per asset (location ``s3://<open-data bucket>/<asset_key>``):
1. List **fully** (every page) ``<asset_key>/behavior/trainer_state``; if it holds no ``.json`` key,
   list the legacy ``<asset_key>/behavior/Logs/.launcher/TrainerState_``.
2. Pick, within the first prefix that has any, the first key (in listing order, which is
   lexicographic) ending in ``.json``: the key the reference takes (§2.14 "the first returned key
   that ends in ``.json``"), found even when non-json keys sort before it (D24, unlike
   ``MaxKeys=1``). For legacy names, which carry a launch timestamp, that is the first launch.
3. GetObject it: ``curriculum_name = curriculum.name``, ``stage_name = stage.name``,
   ``stage_node_id`` = the integer key of the first entry of ``curriculum.graph.nodes`` (a dict)
   whose ``name`` equals ``stage_name``; null when there is none or that key is not an integer.
   Empty strings are null.

``status`` (a column) says what the row means:
- ``ok`` — curriculum and stage found and the stage is a node of the graph; final.
- ``stage_not_in_graph`` — trainer state read, but the stage has no integer node in the graph
  (or no stage name); final (the file is immutable; the reference refetched these every run).
- ``no_trainer_state`` — neither prefix holds a ``.json`` key; final (as in the reference).
- ``not_open_data`` — the location is not in the open-data bucket; not final: recomputed every
  run without any S3 call, so a location that later moves into open data gets picked up.

Errors (D24): any failure while listing, reading or parsing (S3 errors other than "not found",
invalid JSON, an object that vanished between list and get) keeps the asset **out of the result**
so the next run retries it; the failure is reported in ``errors`` (asset → message) or logged.

Previous rows: rows with a final ``status`` are reused as they are. Rows from a table without a
``status`` column (the reference's) are final only when both ``curriculum_name`` and
``stage_node_id`` are set (they become ``ok``); all others are reprocessed once, because the
reference cached read errors as permanent nulls. Rows of assets no longer selected are dropped.
Rows follow the order of the selected assets (duplicates by name keep the newest
``_last_modified``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from ..open_data import OpenData, parse_s3_url
from ..records import as_dict, as_str, get_path
from ._platform_common import (
    ColumnSpec,
    cell_str,
    dedupe_frame_newest,
    describe_error,
    frame_from_rows,
    modality_list,
    report_problems,
    run_per_asset,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "TRAINER_STATE_PREFIXES",
    "STATUS_OK",
    "STATUS_STAGE_NOT_IN_GRAPH",
    "STATUS_NO_TRAINER_STATE",
    "STATUS_NOT_OPEN_DATA",
    "FINAL_STATUSES",
    "TrainerStateMissing",
    "select_curriculum_assets",
    "choose_trainer_state_key",
    "parse_trainer_state",
    "read_curriculum",
    "curriculum_rows",
]

TRAINER_STATE_PREFIXES: tuple[str, ...] = ("behavior/trainer_state", "behavior/Logs/.launcher/TrainerState_")

STATUS_OK = "ok"
STATUS_STAGE_NOT_IN_GRAPH = "stage_not_in_graph"
STATUS_NO_TRAINER_STATE = "no_trainer_state"
STATUS_NOT_OPEN_DATA = "not_open_data"
FINAL_STATUSES: frozenset[str] = frozenset({STATUS_OK, STATUS_STAGE_NOT_IN_GRAPH, STATUS_NO_TRAINER_STATE})

COLUMNS: list[ColumnSpec] = [
    ("asset_name", "string", "Behavior asset name"),
    ("curriculum_name", "string", "Curriculum name from the trainer state"),
    ("stage_name", "string", "Current stage name from the trainer state"),
    ("stage_node_id", "int64", "Node id of the stage in the curriculum graph (orders stages); null if not in the graph"),
    ("status", "string", "ok | stage_not_in_graph | no_trainer_state | not_open_data"),
    ("trainer_state_key", "string", "S3 key of the trainer-state JSON that was read"),
]


class TrainerStateMissing(LookupError):
    """A listed trainer-state object could not be read back (vanished or inconsistent listing)."""


def select_curriculum_assets(basics_df: pd.DataFrame) -> pd.DataFrame:
    """Behavior assets (a lowercased modality contains ``behavior``), one row per name (newest).

    Frames without a ``modalities`` column are taken as already selected. Returns ``name`` and
    ``location`` columns.
    """
    import pandas as pd

    if basics_df is None or len(basics_df) == 0 or "name" not in basics_df.columns:
        return pd.DataFrame({"name": pd.Series([], dtype=object), "location": pd.Series([], dtype=object)})
    frame = basics_df
    if "modalities" in frame.columns:
        keep = [any("behavior" in m.lower() for m in modality_list(cell)) for cell in frame["modalities"]]
        frame = frame[keep]
    frame = dedupe_frame_newest(frame, "name")
    locations = frame["location"] if "location" in frame.columns else [None] * len(frame)
    return pd.DataFrame(
        {
            "name": pd.Series([cell_str(v) for v in frame["name"]], dtype=object),
            "location": pd.Series([cell_str(v) for v in locations], dtype=object),
        }
    )


def choose_trainer_state_key(keys: Iterable[str]) -> str | None:
    """The first key (lexicographic, as S3 lists them) ending in ``.json``, or ``None``."""
    candidates = [k for k in keys if isinstance(k, str) and k.endswith(".json")]
    return min(candidates) if candidates else None


def _node_id(nodes: Any, stage_name: str | None) -> int | None:
    if stage_name is None:
        return None
    for key, node in as_dict(nodes).items():
        if get_path(node, "name") != stage_name:
            continue
        try:  # the first match decides: a key that is not an integer gives null (§2.14)
            return int(key)
        except (TypeError, ValueError):
            return None
    return None


def parse_trainer_state(state: Mapping[str, Any]) -> tuple[str | None, str | None, int | None]:
    """``(curriculum_name, stage_name, stage_node_id)`` of a trainer-state document."""
    curriculum_name = as_str(get_path(state, "curriculum.name"))
    stage_name = as_str(get_path(state, "stage.name"))
    return curriculum_name, stage_name, _node_id(get_path(state, "curriculum.graph.nodes"), stage_name)


def read_curriculum(open_data: OpenData, asset_name: str, location: str | None) -> dict[str, Any]:
    """One curriculum row for an asset, reading S3. Any failure raises (the caller keeps it uncached)."""
    row: dict[str, Any] = {"asset_name": asset_name}
    parsed = parse_s3_url(location)
    asset_key = parsed[1].strip("/") if parsed is not None else ""
    if parsed is None or parsed[0] != open_data.bucket or not asset_key:
        row["status"] = STATUS_NOT_OPEN_DATA
        return row
    key = None
    for suffix in TRAINER_STATE_PREFIXES:
        key = choose_trainer_state_key(open_data.list_keys(f"{asset_key}/{suffix}"))
        if key is not None:
            break
    if key is None:
        row["status"] = STATUS_NO_TRAINER_STATE
        return row
    state = open_data.get_json(key)
    if state is None:
        raise TrainerStateMissing(f"listed trainer state s3://{open_data.bucket}/{key} is not readable")
    curriculum_name, stage_name, node_id = parse_trainer_state(state)
    row.update(
        curriculum_name=curriculum_name,
        stage_name=stage_name,
        stage_node_id=node_id,
        trainer_state_key=key,
        status=STATUS_OK if node_id is not None else STATUS_STAGE_NOT_IN_GRAPH,
    )
    return row


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
        return int(value)
    except (TypeError, ValueError):
        return None


def _final_previous_rows(previous_df: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    if previous_df is None or len(previous_df) == 0 or "asset_name" not in previous_df.columns:
        return {}
    columns = previous_df.columns
    cached: dict[str, dict[str, Any]] = {}
    for record in previous_df.to_dict("records"):
        name = cell_str(record.get("asset_name"))
        if name is None:
            continue
        row = {
            "asset_name": name,
            "curriculum_name": cell_str(record.get("curriculum_name")),
            "stage_name": cell_str(record.get("stage_name")),
            "stage_node_id": _int_or_none(record.get("stage_node_id")),
            "trainer_state_key": cell_str(record.get("trainer_state_key")),
            "status": cell_str(record.get("status")) if "status" in columns else None,
        }
        if row["status"] is None and row["curriculum_name"] is not None and row["stage_node_id"] is not None:
            row["status"] = STATUS_OK  # legacy row with a complete answer
        if row["status"] in FINAL_STATUSES:
            cached[name] = row
    return cached


def curriculum_rows(
    assets_df: pd.DataFrame,
    previous_df: pd.DataFrame | None,
    open_data: OpenData,
    *,
    errors: MutableMapping[str, str] | None = None,
    max_workers: int = 8,
) -> pd.DataFrame:
    """The complete behavior_curriculum table: final cached rows reused, other assets (re)read from S3.

    ``assets_df`` is asset_basics (filtered here with :func:`select_curriculum_assets`) or a frame
    with ``name`` and ``location``. Assets whose read failed are left out (retried next run) and
    reported in ``errors`` when given, else logged.
    """
    assets = select_curriculum_assets(assets_df)
    cached = _final_previous_rows(previous_df)
    todo = [(n, loc) for n, loc in zip(assets["name"], assets["location"]) if n is not None and n not in cached]

    def work(item: tuple[str, str | None]) -> tuple[dict[str, Any] | None, str | None]:
        name, location = item
        try:
            return read_curriculum(open_data, name, location), None
        except Exception as error:  # D24: errors never become cached answers
            return None, describe_error(error)

    fresh: dict[str, dict[str, Any]] = {}
    for (name, _), (row, problem) in zip(todo, run_per_asset(work, todo, max_workers)):
        if row is not None:
            fresh[name] = row
        else:
            report_problems(errors, "behavior_curriculum", name, [problem or "unknown error"])

    rows = []
    for name in assets["name"]:
        if name is None:
            continue
        row = cached.get(name) or fresh.get(name)
        if row is not None:
            rows.append(row)
    return frame_from_rows(rows, COLUMNS)
