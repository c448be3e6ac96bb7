"""Quality-control tables: quality_control (+ qc_tag_status), platform_qc, time_to_qc."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from bdc import BuildResult, TableSpec

__all__ = ["specs", "qc_partitions", "build_qc_batch", "qc_results", "build_platform_qc", "build_time_to_qc", "basics_frame"]

#: Subjects fetched per DocDB request (one ``$in`` aggregate; halved on HTTP 413).
QC_SUBJECTS_PER_REQUEST = 100


def basics_frame(ctx: Any, columns: list[str]) -> Any:
    """asset_basics (as published in this run) as a pandas DataFrame with ``columns``."""
    return ctx.read("asset_basics", columns=columns)


def qc_partitions(ctx: Any) -> dict[str, str]:
    """Every subject of asset_basics, with a fingerprint of its records' ``_id``/``_last_modified``.

    A subject is rebuilt only when one of its records was added, changed or removed.
    """
    from bdc.errors import InvalidNameError
    from bdc.names import check_partition_value

    table = ctx.read_arrow("asset_basics", columns=["subject_id", "_id", "_last_modified"])
    groups: dict[str, list[str]] = defaultdict(list)
    for subject, rid, lm in zip(*(table.column(c).to_pylist() for c in ("subject_id", "_id", "_last_modified"))):
        if subject is None:
            continue
        groups[subject].append(f"{rid}\x1f{lm}")
    out = {}
    for subject, items in groups.items():
        try:
            check_partition_value(subject, "subject_id")
        except InvalidNameError:
            ctx.count("subject_ids_not_storable")
            continue
        out[subject] = hashlib.sha1("\x1e".join(sorted(items)).encode()).hexdigest()
    return out


def build_qc_batch(ctx: Any, subjects: list[str]) -> dict[str, BuildResult]:
    """QC rows and tag statuses for many subjects from one ``$in`` aggregate (no limit, D3).

    One request for the whole batch of subjects (:data:`QC_SUBJECTS_PER_REQUEST`); a gateway
    "payload too large" answer halves the batch (see :func:`~bdc_tables_docdb.fetch.fetch_by`).
    An aggregate answers in one response, so there is no trailing empty page to ask for, unlike
    a paged find.
    """
    from bdc_tables_docdb.fetch import fetch_by, source_for
    from bdc_tables_docdb.transforms.quality_control import PROJECTION

    fetched = fetch_by(source_for(ctx), "subject.subject_id", subjects, PROJECTION, batch_size=len(subjects))
    return qc_results(subjects, fetched, ctx.count)


def qc_results(subjects: list[str], fetched: Any, count: Any) -> dict[str, BuildResult]:
    """The partitions of ``subjects`` from the records fetched for them (pure; ``count(name, n)``).

    A record goes to the partition its ``subject.subject_id`` *text* names (the same rule as
    asset_basics' ``subject_id``, so its rows carry the partition's value). The ``$in`` query also
    matches records whose ``subject`` or ``subject_id`` is an array holding a requested id; those
    name no single subject and are skipped and counted (``records_skipped``) rather than breaking
    the batch (they used to raise ``AttributeError``/``TypeError`` while being grouped).
    """
    from bdc_tables_docdb.records import get_path
    from bdc_tables_docdb.transforms._common import text
    from bdc_tables_docdb.transforms.quality_control import qc_rows, qc_tag_status_rows

    wanted = set(subjects)
    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    skipped = 0
    for record in sorted(fetched, key=lambda r: str(r.get("_id"))):
        subject = text(get_path(record, "subject.subject_id"))
        if subject in wanted:
            records[subject].append(record)
        else:
            skipped += 1
    if skipped:
        count("records_skipped", skipped)
    out = {}
    problems: list[str] = []
    for subject in subjects:
        recs = records.get(subject, [])
        out[subject] = BuildResult(
            [row for r in recs for row in qc_rows(r, problems)],
            side={"qc_tag_status": [row for r in recs for row in qc_tag_status_rows(r, problems)]},
        )
    if problems:
        count("record_problems", len(problems))
    return out


def platform_list(ctx: Any) -> list[str]:
    """The platforms, in the reference's build order."""
    from bdc_tables_docdb.transforms.platform_qc import PLATFORMS

    return list(PLATFORMS)


def build_platform_qc(ctx: Any, platform: str) -> Any:
    """QC statuses of one platform's assets, joined to asset_basics on ``_id`` (D21)."""
    from bdc_tables_docdb.fetch import fetch_by, source_for
    from bdc_tables_docdb.transforms.platform_qc import (
        BATCH_SIZE, PROJECTION, join_basics, platform_qc_rows, select_platform_assets)

    basics = basics_frame(ctx, ["_id", "_last_modified", "name", "modalities", "acquisition_type",
                                "acquisition_start_time", "instrument_id_normalized", "experimenters_normalized"])
    assets = select_platform_assets(basics, platform)
    records = fetch_by(source_for(ctx), "_id", assets["_id"].tolist(), PROJECTION, batch_size=BATCH_SIZE * 2)
    rows = [row for r in records if r.get("quality_control") for row in platform_qc_rows(r, platform)]
    return join_basics(rows, basics)


def build_time_to_qc(ctx: Any) -> Any:
    """Processing end and QC time of every derived asset (D7, D8)."""
    from bdc_tables_docdb.fetch import fetch_by, source_for
    from bdc_tables_docdb.transforms.time_to_qc import PROJECTION, select_time_to_qc_assets, time_to_qc_table

    names = select_time_to_qc_assets(basics_frame(ctx, ["name", "data_level", "_id", "_last_modified"]))
    return time_to_qc_table(fetch_by(source_for(ctx), "name", names, {**PROJECTION, "_id": 1}))


def specs() -> list[TableSpec]:
    """quality_control (with its side table qc_tag_status), platform_qc, time_to_qc."""
    from bdc_tables_docdb.transforms import platform_qc, quality_control, time_to_qc

    return [
        TableSpec(
            "quality_control", quality_control.DESCRIPTION, quality_control.COLUMNS, kind="asset", aliases="qc",
            folder=quality_control.FOLDER, partition_key="subject_id", depends_on="asset_basics",
            partitions=qc_partitions, build_partitions=build_qc_batch, batch_size=QC_SUBJECTS_PER_REQUEST,
            incremental=True),
        TableSpec(
            "qc_tag_status", quality_control.QC_TAG_STATUS_DESCRIPTION, quality_control.QC_TAG_STATUS_COLUMNS,
            kind="asset", partition_key="subject_id", produced_by="quality_control"),
        TableSpec(
            "platform_qc", platform_qc.DESCRIPTION,
            [*platform_qc.COLUMNS, ("platform", "string", "The platform (spim, fib, vr, dynamic_foraging, slap2)")],
            kind="platform",
            partition_key="platform", depends_on="asset_basics", partitions=platform_list,
            build_partition=build_platform_qc),
        TableSpec(
            "time_to_qc", "Time from the end of processing to the last QC evaluation, per derived asset",
            time_to_qc.COLUMNS, depends_on="asset_basics", build=build_time_to_qc, key="name"),
    ]
