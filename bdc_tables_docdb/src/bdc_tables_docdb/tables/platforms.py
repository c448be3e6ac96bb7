"""Platform and derived tables: fib, smartspim, exaspim, behavior curriculum, scientist_rl_fib, metadata_upgrade."""

from __future__ import annotations

from typing import Any

from bdc import TableSpec

from bdc_tables_docdb.tables.qc import basics_frame

__all__ = ["specs", "open_data", "build_fib", "build_smartspim", "build_exaspim", "build_curriculum",
           "build_scientist_rl_fib", "build_metadata_upgrade"]

_BASICS = ["_id", "_last_modified", "name", "data_level", "modalities", "instrument_id", "location",
           "subject_id", "acquisition_type"]


def open_data(ctx: Any) -> Any:
    """The open-data accessor from the settings (S3, or a local copy for the demo)."""
    from bdc_tables_docdb.open_data import open_data_from_url
    from bdc_tables_docdb.settings import current_settings

    return open_data_from_url(current_settings().open_data_url)


def _report_errors(ctx: Any, errors: dict[str, str]) -> None:
    if errors:
        ctx.count("asset_errors", len(errors))
        for name, error in list(errors.items())[:5]:
            ctx.log.warning("%s: %s", name, error)


def build_fib(ctx: Any) -> Any:
    """One row per (fib asset, fiber, channel)."""
    from bdc_tables_docdb.fetch import fetch_by, source_for
    from bdc_tables_docdb.transforms.platform_fib import BATCH_SIZE, PROJECTION, fib_table, select_fib_assets

    names = select_fib_assets(basics_frame(ctx, _BASICS))
    return fib_table(fetch_by(source_for(ctx), "name", names, PROJECTION, batch_size=BATCH_SIZE))


def build_smartspim(ctx: Any) -> Any:
    """One row per (raw SmartSPIM asset, channel), with neuroglancer links."""
    from bdc_tables_docdb.fetch import fetch_by, source_for
    from bdc_tables_docdb.settings import current_settings
    from bdc_tables_docdb.transforms.smartspim import PROJECTION, names_to_fetch, select_smartspim_assets, smartspim_table

    selection = select_smartspim_assets(basics_frame(ctx, _BASICS), ctx.read("source_data"))
    records = fetch_by(source_for(ctx), "name", names_to_fetch(selection), PROJECTION)
    errors: dict[str, str] = {}
    table = smartspim_table(selection, records, open_data(ctx), neuroglancer_base=current_settings().neuroglass_url,
                            errors=errors)
    _report_errors(ctx, errors)
    return table


def build_exaspim(ctx: Any) -> Any:
    """One row per raw exaSPIM asset, with raw and fused links."""
    from bdc_tables_docdb.fetch import fetch_by, source_for
    from bdc_tables_docdb.settings import current_settings
    from bdc_tables_docdb.transforms.exaspim import PROJECTION, exaspim_table, select_exaspim_assets
    from bdc_tables_docdb.transforms.smartspim import names_to_fetch

    selection = select_exaspim_assets(basics_frame(ctx, _BASICS), ctx.read("source_data"))
    records = fetch_by(source_for(ctx), "name", names_to_fetch(selection, "fused_name"), PROJECTION)
    errors: dict[str, str] = {}
    table = exaspim_table(selection, records, open_data(ctx), neuroglancer_base=current_settings().neuroglancer_url,
                          errors=errors)
    _report_errors(ctx, errors)
    return table


def build_curriculum(ctx: Any) -> Any:
    """Curriculum and stage of every behavior asset; final answers are reused, errors retried next run (D24)."""
    from bdc_tables_docdb.transforms.curriculum import curriculum_rows

    previous = ctx.previous()
    errors: dict[str, str] = {}
    table = curriculum_rows(basics_frame(ctx, _BASICS), previous.to_pandas() if previous is not None else None,
                            open_data(ctx), errors=errors)
    _report_errors(ctx, errors)
    return table


def build_scientist_rl_fib(ctx: Any) -> Any:
    """Cohort summary of dynamic-foraging fiber mice that reached the final stage (D19)."""
    from bdc_tables_docdb.fetch import source_for, sweep
    from bdc_tables_docdb.transforms.scientist_rl_fib import FILTER, PROJECTION, scientist_rl_fib_table

    return scientist_rl_fib_table(sweep(source_for(ctx), FILTER, PROJECTION))


def build_metadata_upgrade(ctx: Any) -> Any:
    """v1→v2 upgrade status with one history column per upgrader version (D20), history kept (D9)."""
    from bdc.cache import CustomTableNotFoundError

    from bdc_tables_docdb.fetch import fetch_by, source_for
    from bdc_tables_docdb.settings import current_settings
    from bdc_tables_docdb.transforms.metadata_upgrade import V1_PROJECTION, upgrade_table

    try:
        status = ctx.cache.custom(current_settings().upgrade_status_table)
    except CustomTableNotFoundError:
        status = None
    previous = ctx.previous()
    v1 = source_for(ctx, version="v1")
    return upgrade_table(status, previous.to_pandas() if previous is not None else None,
                         basics_frame(ctx, ["_id", "name", "project_name", "data_level"]),
                         lambda ids: fetch_by(v1, "_id", ids, V1_PROJECTION))


def specs() -> list[TableSpec]:
    """The platform and derived tables."""
    from bdc_tables_docdb.transforms import (
        curriculum, exaspim, metadata_upgrade, platform_fib, scientist_rl_fib, smartspim)

    return [
        TableSpec("platform_smartspim", "SmartSPIM raw assets with their stitched asset, channels and neuroglancer links",
                  smartspim.COLUMNS, aliases="smartspim", depends_on=("asset_basics", "source_data"),
                  build=build_smartspim),
        TableSpec("platform_exaspim", "exaSPIM raw assets with their fused asset and neuroglancer links",
                  exaspim.COLUMNS, aliases="exaspim", depends_on=("asset_basics", "source_data"), build=build_exaspim),
        TableSpec("metadata_upgrade", "Status of the v1 to v2 metadata upgrade, one column per upgrader version",
                  metadata_upgrade.COLUMNS, aliases="upgrade", depends_on="asset_basics",
                  build=build_metadata_upgrade, extra_columns=True),
        TableSpec("platform_fib", "Fiber photometry assets: one row per fiber and channel with its targeted structure",
                  platform_fib.COLUMNS, aliases="fib", depends_on="asset_basics", build=build_fib),
        TableSpec("behavior_curriculum", "Curriculum and stage of each behavior asset, from its trainer state",
                  curriculum.COLUMNS, kind="asset", aliases="curriculum", depends_on="asset_basics",
                  build=build_curriculum, incremental=True, key="asset_name"),
        TableSpec("scientist_rl_fib", "Dynamic-foraging fiber mice at the final stage: structures, coordinates, indicators",
                  scientist_rl_fib.COLUMNS, build=build_scientist_rl_fib),
    ]
