"""Tables read straight from DocDB: asset_basics, metadata_core, source_data and the unique lists."""

from __future__ import annotations

from typing import Any

from bdc import BuildResult, Delta, TableSpec

from bdc_tables_docdb.tables.incremental import basics_map, changed_ids

__all__ = ["specs", "build_asset_basics", "build_metadata_core", "build_source_data", "build_unique"]

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
    records = fetch_by(source, "_id", fetch, PROJECTION)
    ctx.count("records_fetched", len(records))
    ctx.count("records_dropped", len(drop))
    return Delta(upserts=[basics_row(r, problems) for r in records], deletes=drop)


def finalize_asset_basics(table: Any) -> Any:
    """The table-wide first-name merge (§1.4), recomputed over every row."""
    from bdc_tables_docdb.transforms.asset_basics import finalize_basics

    return finalize_basics(table.to_pylist())


_CORE_PROJECT = {
    "_id": 1,
    "_last_modified": 1,
    **{f: {"$ne": [{"$ifNull": [f"${f}", None]}, None]} for f in _CORE_FIELDS},
}


def build_metadata_core(ctx: Any) -> Any:
    """Which core fields each record has, computed by DocDB (no record is shipped whole)."""
    from bdc_tables_docdb.fetch import aggregate, fetch_by, source_for

    source = source_for(ctx)
    current = basics_map(ctx)
    seen = ctx.state.get("seen") if ctx.previous(columns=["_id"]) is not None else None
    if seen is None:
        rows: list[dict[str, Any]] = []
        last = None
        while True:
            match = [{"$match": {"_id": {"$gt": last}}}] if last is not None else []
            page = aggregate(source, [*match, {"$sort": {"_id": 1}}, {"$limit": 5000}, {"$project": _CORE_PROJECT}])
            rows.extend(page)
            if len(page) < 5000:
                break
            last = page[-1]["_id"]
        return BuildResult(rows, state={"seen": current})
    fetch, drop = changed_ids(seen, current)
    rows = _core_by_ids(source, fetch)
    return BuildResult(Delta(upserts=rows, deletes=drop), state={"seen": current})


def _core_by_ids(source: Any, ids: list[str]) -> list[dict[str, Any]]:
    from bdc_tables_docdb.fetch import aggregate

    out = []
    for i in range(0, len(ids), 100):
        out.extend(aggregate(source, [{"$match": {"_id": {"$in": ids[i:i + 100]}}}, {"$project": _CORE_PROJECT}]))
    return out


def _source_rows(records: Any) -> list[dict[str, Any]]:
    from bdc_tables_docdb.transforms.source_data import source_data_rows

    return [{**row, "asset_id": r.get("_id")} for r in records for row in source_data_rows(r)]


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
