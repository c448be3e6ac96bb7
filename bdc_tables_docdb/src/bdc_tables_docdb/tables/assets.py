"""Tables read straight from DocDB: asset_basics, metadata_core, source_data and the unique lists."""

from __future__ import annotations

from typing import Any

from bdc import BuildResult, Delta, TableSpec

from bdc_tables_docdb.tables.incremental import basics_map, changed_ids

__all__ = ["specs", "build_asset_basics", "build_metadata_core", "build_source_data", "build_unique", "core_rows"]

#: Ids per ``$in`` request of an incremental asset_basics build. Its projection is small (a few
#: hundred bytes to a few kB a record), so 500 records stay far below a gateway's payload cap;
#: a 413 halves the batch anyway.
ID_BATCH_SIZE = 500

_CORE_FIELDS = ("subject", "data_description", "procedures", "instrument", "acquisition", "processing",
                "quality_control")


def build_asset_basics(ctx: Any) -> Any:
    """Full: one stable sweep. Incremental: one listing, then only new or modified records (D1, D2)."""
    from bdc_tables_docdb.fetch import fetch_by, modified_listing, source_for, sweep
    from bdc_tables_docdb.transforms.asset_basics import PROJECTION, basics_row

    source = source_for(ctx)
    previous = ctx.previous(columns=["_id", "_last_modified"])
    problems: list[str] = []
    if previous is None:
        rows = [basics_row(r, problems) for r in sweep(source, None, PROJECTION)]
        ctx.count("records", len(rows))
        ctx.count("record_problems", len(problems))
        return rows
    cached = dict(zip(previous.column("_id").to_pylist(), previous.column("_last_modified").to_pylist()))
    fetch, drop = changed_ids(cached, modified_listing(source))
    records = fetch_by(source, "_id", fetch, PROJECTION, batch_size=ID_BATCH_SIZE)
    ctx.count("records_fetched", len(records))
    ctx.count("records_dropped", len(drop))
    return Delta(upserts=[basics_row(r, problems) for r in records], deletes=drop)


def finalize_asset_basics(table: Any) -> Any:
    """The table-wide first-name merge (§1.4), recomputed over every row.

    Same result as :func:`~bdc_tables_docdb.transforms.asset_basics.finalize_basics`, computed on
    the two raw name columns only: the other columns pass through as Arrow data (no round trip
    through Python dicts), and each distinct raw list is normalised once (asset_basics has
    ~10^5 rows but a few thousand distinct name lists). This runs on every build, incremental
    ones included, so it must stay cheap next to the few records an incremental run fetches.
    """
    import pyarrow as pa

    from bdc_tables_docdb.transforms.names import first_name_map, normalize_experimenters

    def normalized(column: str) -> list[list[str]]:
        memo: dict[Any, list[str]] = {}
        out = []
        for value in table.column(column).to_pylist():
            key = tuple(value) if isinstance(value, list) else value
            if key not in memo:
                memo[key] = normalize_experimenters(value)
            out.append(memo[key])
        return out

    experimenters, investigators = normalized("experimenters"), normalized("investigators")
    seen: dict[tuple[str, ...], None] = {}
    for names in (*experimenters, *investigators):
        seen.setdefault(tuple(names))
    mapping = first_name_map(n for names in seen for n in names)

    def rewrite(rows: list[list[str]]) -> Any:
        memo: dict[tuple[str, ...], list[str]] = {}
        out = []
        for names in rows:
            key = tuple(names)
            if key not in memo:
                memo[key] = list(dict.fromkeys(mapping.get(n, n) for n in names))
            out.append(memo[key])
        return pa.array(out, type=pa.list_(pa.string()))

    for column, rows in (("experimenters_normalized", experimenters), ("investigators_normalized", investigators)):
        index = table.schema.get_field_index(column)
        table = table.set_column(index, pa.field(column, pa.list_(pa.string())), rewrite(rows))
    return table


_CORE_PROJECT = {
    "_id": 1,
    "_last_modified": 1,
    **{f: {"$ne": [{"$ifNull": [f"${f}", None]}, None]} for f in _CORE_FIELDS},
}


def build_metadata_core(ctx: Any) -> Any:
    """Which core fields each record has, computed by DocDB (no record is shipped whole)."""
    from bdc_tables_docdb.fetch import source_for

    source = source_for(ctx)
    current = basics_map(ctx)
    seen = ctx.state.get("seen") if ctx.previous(columns=["_id"]) is not None else None
    if seen is None:
        return BuildResult(_core_pages(source), state={"seen": current})
    fetch, drop = changed_ids(seen, current)
    rows = _core_by_ids(source, fetch)
    return BuildResult(Delta(upserts=rows, deletes=drop), state={"seen": current})


def core_rows(page: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """metadata_core rows from the aggregate's answers (:data:`_CORE_PROJECT`).

    The flags are computed by DocDB (booleans), but ``_id`` and ``_last_modified`` come back as the
    record holds them: one record with a number, an object or a list there would make the string
    column unbuildable and fail the whole table. They go through the same ``text`` rule as
    asset_basics (numbers as text, Extended JSON unwrapped, anything else null).
    """
    from bdc_tables_docdb.transforms._common import text

    return [{"_id": text(row.get("_id")), "_last_modified": text(row.get("_last_modified")),
             **{f: row.get(f) is True for f in _CORE_FIELDS}} for row in page]


#: Rows per aggregate page of a full metadata_core build (halved on HTTP 413).
CORE_PAGE_SIZE = 5000


def _core_pages(source: Any, page_size: int = CORE_PAGE_SIZE) -> list[dict[str, Any]]:
    """Every record's core-field flags, in ``_id`` ranges (``$match _id > last``, ``$sort``, ``$limit``).

    A gateway "payload too large" answer halves the page size for the rest of the build.
    """
    import requests

    from bdc_tables_docdb.fetch import aggregate

    rows: list[dict[str, Any]] = []
    last = None
    size = page_size
    while True:
        match = [{"$match": {"_id": {"$gt": last}}}] if last is not None else []
        try:
            page = aggregate(source, [*match, {"$sort": {"_id": 1}}, {"$limit": size}, {"$project": _CORE_PROJECT}])
        except requests.HTTPError as exc:
            if getattr(exc.response, "status_code", None) == 413 and size > 1:
                size //= 2
                continue
            raise
        rows.extend(core_rows(page))
        if len(page) < size:
            return rows
        last = page[-1]["_id"]


def _core_by_ids(source: Any, ids: list[str]) -> list[dict[str, Any]]:
    """Core-field flags of the records ``ids`` (batched ``$in``, split on 413)."""
    from bdc_tables_docdb.fetch import fetch_by

    return core_rows(fetch_by(source, "_id", ids, _CORE_PROJECT, batch_size=ID_BATCH_SIZE, paged_fallback=False))


def _source_rows(records: Any) -> list[dict[str, Any]]:
    """source_data rows with ``asset_id``: the record ``_id`` as text, like asset_basics' ``_id`` (a raw
    id that is not storable text, e.g. with a lone surrogate, used to fail the whole table)."""
    from bdc_tables_docdb.transforms._common import text
    from bdc_tables_docdb.transforms.source_data import source_data_rows

    return [{**row, "asset_id": text(r.get("_id"))} for r in records for row in source_data_rows(r)]


def build_source_data(ctx: Any) -> Any:
    """One row per (derived asset, source); incrementally only for derived records that changed."""
    from bdc_tables_docdb.fetch import fetch_by, source_for, sweep
    from bdc_tables_docdb.transforms.source_data import FILTER, PROJECTION

    source = source_for(ctx)
    projection = {**PROJECTION, "_id": 1}
    current = basics_map(ctx)
    seen = ctx.state.get("seen") if ctx.previous(columns=["asset_id"]) is not None else None
    if seen is None:
        return BuildResult(_source_rows(sweep(source, FILTER, projection)), state={"seen": current})
    fetch, drop = changed_ids(seen, current)
    records = [r for r in fetch_by(source, "_id", fetch, {**projection, "data_description.data_level": 1})
               if (r.get("data_description") or {}).get("data_level") == "derived"]
    return BuildResult(Delta(upserts=_source_rows(records), deletes=fetch + drop), state={"seen": current})


def build_unique(ctx: Any) -> Any:
    """One aggregate; sorted, no nulls (D27)."""
    from bdc_tables_docdb.fetch import aggregate, source_for
    from bdc_tables_docdb.transforms.unique import TABLES, pipeline, unique_rows

    column = TABLES[ctx.spec.name]["column"]
    return unique_rows(aggregate(source_for(ctx), pipeline(ctx.spec.name)), column)


def specs() -> list[TableSpec]:
    """asset_basics, the unique lists, source_data, metadata_core."""
    from bdc_tables_docdb.transforms import asset_basics, metadata_core, source_data, unique

    out = [
        TableSpec("asset_basics", asset_basics.DESCRIPTION, asset_basics.COLUMNS, aliases="basics",
                  build=build_asset_basics, incremental=True, key="_id", finalize=finalize_asset_basics),
    ]
    for name, info in unique.TABLES.items():
        out.append(TableSpec(name, info["description"], unique.COLUMNS[name], aliases=info["key"],
                             build=build_unique, key=info["column"]))
    out.append(TableSpec(
        "source_data", source_data.DESCRIPTION,
        [*source_data.COLUMNS, ("asset_id", "string", "DocDB _id of the derived asset")],
        aliases="d2r", build=build_source_data, depends_on="asset_basics", incremental=True,
        key="asset_id"))
    out.append(TableSpec("metadata_core", metadata_core.DESCRIPTION, metadata_core.COLUMNS, aliases="core",
                         build=build_metadata_core, depends_on="asset_basics", incremental=True, key="_id"))
    return out
