"""Shared private helpers of the platform/derived transforms (frames, list cells, deduplication).

Frames: build pandas frames that match a declared column list (name, Arrow type string,
description). Every table declares ``COLUMNS`` as
``[(name, arrow_type, description), ...]`` with type strings such as ``"string"``, ``"bool"``,
``"int64"``, ``"float64"``, ``"list<string>"`` and ``"timestamp[us, tz=UTC]"``. Frames are built
through Arrow with that schema, so an empty result still carries every column with its type
(TABLES.md D18) and booleans/integers never degrade to ``object`` after concatenation. Type texts
are parsed by the package-wide :mod:`bdc_tables_docdb.transforms.arrow`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from ..records import as_str
from ..timeparse import to_utc
from .arrow import arrow_schema

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "ColumnSpec",
    "frame_from_rows",
    "as_sequence",
    "modality_list",
    "recency_key",
    "newest_by_name",
    "dedupe_frame_newest",
    "cell_str",
    "run_per_asset",
    "describe_error",
    "report_problems",
]

_LOG = logging.getLogger("bdc_tables_docdb.transforms")

ColumnSpec = tuple[str, str, str]


@cache
def _pandas_types() -> dict[pa.DataType, Any]:
    """The nullable pandas dtypes that ``int64`` and ``bool`` Arrow columns become."""
    import pandas as pd
    import pyarrow as pa

    return {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


def as_sequence(value: Any) -> list:
    """A list from a list, tuple or numpy array cell (parquet round trips give arrays); else ``[]``."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        converted = value.tolist()
        return converted if isinstance(converted, list) else []
    return []


def frame_from_rows(rows: Iterable[Mapping[str, Any]], columns: Sequence[ColumnSpec]) -> pd.DataFrame:
    """A DataFrame with exactly the declared columns, types and order, built from ``rows``.

    Missing keys become nulls; extra keys are ignored. ``int64`` and ``bool`` columns use the
    nullable pandas dtypes, timestamps become ``datetime64[us, UTC]``, list columns hold Python lists.
    """
    import pandas as pd
    import pyarrow as pa

    schema = arrow_schema(columns)
    names = schema.names
    data = {name: [] for name in names}
    for row in rows:
        for name in names:
            data[name].append(row.get(name))
    table = pa.Table.from_pydict(data, schema=schema)
    frame = table.to_pandas(types_mapper=_pandas_types().get)
    for field in schema:
        if pa.types.is_list(field.type):
            frame[field.name] = pd.Series(
                [None if v is None else list(v) for v in table.column(field.name).to_pylist()],
                index=frame.index,
                dtype=object,
            )
    return frame


def cell_str(value: Any) -> str | None:
    """A DataFrame cell as a non-empty string, or ``None`` (NaN, ``pd.NA``, ``""`` and non-strings)."""
    if isinstance(value, str):
        return value if value != "" else None
    return None


def modality_list(value: Any) -> list[str]:
    """The modality abbreviations of an asset_basics ``modalities`` cell (strings only)."""
    return [m for m in as_sequence(value) if isinstance(m, str)]


def recency_key(last_modified: Any) -> tuple[int, float, str]:
    """Sort key ordering by ``_last_modified`` (parsed to UTC); unparseable values sort first."""
    parsed = to_utc(last_modified)
    if parsed is None:
        return (0, 0.0, as_str(last_modified) or "")
    return (1, parsed.timestamp(), as_str(last_modified) or "")


def newest_by_name(records: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Map each record ``name`` to its newest record by ``_last_modified`` (TABLES.md D21).

    Records without a string name are ignored. Ties keep the first record seen. The dict keeps the
    order in which names were first seen.
    """
    chosen: dict[str, Mapping[str, Any]] = {}
    for record in records:
        if not isinstance(record, Mapping):
            continue
        name = as_str(record.get("name"))
        if name is None:
            continue
        current = chosen.get(name)
        if current is None or recency_key(record.get("_last_modified")) > recency_key(
            current.get("_last_modified")
        ):
            chosen[name] = record
    return chosen


def dedupe_frame_newest(frame: pd.DataFrame, key: str = "name") -> pd.DataFrame:
    """Rows of ``frame`` with a non-empty ``key``, one per key: the newest ``_last_modified``.

    Without a ``_last_modified`` column the first row per key wins. The result keeps the order of
    first appearance of each key and a fresh ``RangeIndex``.
    """
    import pandas as pd

    if frame is None or len(frame) == 0 or key not in frame.columns:
        return frame.iloc[0:0].reset_index(drop=True) if frame is not None else pd.DataFrame()
    keys = [cell_str(v) for v in frame[key]]
    stamps = list(frame["_last_modified"]) if "_last_modified" in frame.columns else [None] * len(frame)
    best: dict[str, int] = {}
    for position, name in enumerate(keys):
        if name is None:
            continue
        if name not in best or recency_key(stamps[position]) > recency_key(stamps[best[name]]):
            best[name] = position
    first_seen: dict[str, int] = {}
    for position, name in enumerate(keys):
        if name is not None and name not in first_seen:
            first_seen[name] = position
    order = sorted(best, key=first_seen.__getitem__)
    return frame.iloc[[best[name] for name in order]].reset_index(drop=True)


def run_per_asset(func: Any, items: Sequence[Any], max_workers: int) -> list[Any]:
    """``[func(item) for item in items]``, on up to ``max_workers`` threads, results in input order."""
    if max_workers <= 1 or len(items) <= 1:
        return [func(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as pool:
        return list(pool.map(func, items))


def describe_error(error: BaseException) -> str:
    """A one-line description of an exception for per-asset error reports."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def report_problems(
    errors: MutableMapping[str, str] | None, table: str, asset: str, problems: Sequence[str]
) -> None:
    """Record an asset's problems in ``errors`` (asset → ``"; "``-joined message), or log a warning."""
    if not problems:
        return
    message = "; ".join(problems)
    if errors is not None:
        errors[asset] = message
    else:
        _LOG.warning("%s: %s: %s", table, asset, message)
