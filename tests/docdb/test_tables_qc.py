"""quality_control at scale: batched requests, no truncation (D3), payload caps, and injected faults.

Records here are small synthetic ones (a subject, a name, two QC metrics), so the emulator can
hold hundreds of subjects cheaply; the fault test uses generated records and every table.
"""

from __future__ import annotations

from typing import Any

import pytest

from test_tables_support import (  # noqa: F401 - docdb_plugin_only is an autouse fixture
    canonical,
    docdb_plugin_only,
    docdb_table_names,
    memory_url,
    rows_of,
    serve,
    sync_ok,
)

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop is deprecated")


def qc_record(subject: str, index: int) -> dict[str, Any]:
    """A small derived record of ``subject`` with two QC metrics (one dict-tagged, one list-tagged)."""
    name = f"{subject}_2026-01-01_00-00-{index:02d}_processed_2026-01-02_00-00-00"
    if index >= 60:
        name = f"{subject}_2026-01-01_{index // 60:02d}-{index % 60:02d}-00_processed_2026-01-02_00-00-00"
    history = [{"evaluator": "auto", "status": "Pending", "timestamp": "2026-01-02T00:00:00Z"},
               {"evaluator": "Kelly Tran", "status": "Pass" if index % 3 else "Fail", "timestamp": "2026-01-03T00:00:00Z"}]
    return {
        "_id": f"{subject}-{index:04d}",
        "_last_modified": "2026-01-03T00:00:00.000Z",
        "name": name,
        "subject": {"subject_id": subject},
        "data_description": {"data_level": "derived", "modalities": [{"name": "Fiber photometry", "abbreviation": "fib"}],
                             "source_data": [name.split("_processed")[0]]},
        "acquisition": {"acquisition_start_time": "2026-01-01T00:00:00Z"},
        "quality_control": {
            "metrics": [
                {"object_type": "QC metric", "name": "signal", "modality": {"abbreviation": "fib"},
                 "stage": "Processing", "value": index, "status_history": history, "tags": {"Channel": "green"}},
                {"object_type": "QC metric", "name": "motion", "modality": {"abbreviation": "fib"},
                 "stage": "Raw data", "value": "ok", "status_history": history[:1], "tags": ["Motion"]},
            ],
            "status": {"Channel:green": history[-1]["status"], "Motion": "Pending", "fib": "Pending"},
        },
    }


def many_subjects(subjects: int, per_subject: int = 2) -> list[dict[str, Any]]:
    """``per_subject`` records for each of ``subjects`` subjects (ids like ``"0000123"``, kept as text)."""
    return [qc_record(f"{s:07d}", i) for s in range(subjects) for i in range(per_subject)]


def test_qc_requests_far_below_one_per_subject(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full quality_control build of 420 subjects: ≤ 0.05 requests per subject + a constant."""
    from bdc_tables_docdb.emulator import DocDBEmulator

    subjects = 420
    records = many_subjects(subjects)
    with DocDBEmulator(records) as emulator:
        serve(monkeypatch, emulator)
        url = memory_url()
        sync_ok(url, only=["asset_basics"])
        emulator.reset_stats()
        report = sync_ok(url, only=["quality_control"], no_deps=True)
        stats = emulator.stats
    qc = report.table("quality_control")
    assert qc.partitions == qc.partitions_built == subjects
    assert qc.rows == 2 * len(records)
    assert stats["requests"] <= 0.05 * subjects + 2, stats
    assert stats["requests"] == 5  # ⌈420 / 100⌉ subjects per $in request
    rows = rows_of(url, "quality_control", subject_id="0000007")
    assert sorted((r["asset_id"], r["name"], r["status"]) for r in rows) == [
        ("0000007-0000", "motion", "Pending"), ("0000007-0000", "signal", "Fail"),
        ("0000007-0001", "motion", "Pending"), ("0000007-0001", "signal", "Pass")]
    assert {r["subject_id"] for r in rows} == {"0000007"}  # leading zeros kept: ids are text


def test_subject_with_more_than_100_assets_is_not_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    """D3: a subject with 150 assets gets all of them, through a 40-record page cap."""
    from bdc_tables_docdb.emulator import DocDBEmulator

    big = [qc_record("999001", i) for i in range(150)]
    records = big + many_subjects(5)
    with DocDBEmulator(records, page_cap=40) as emulator:
        serve(monkeypatch, emulator)
        url = memory_url()
        report = sync_ok(url, only=["quality_control"])
    rows = rows_of(url, "quality_control", subject_id="999001")
    assert {r["asset_id"] for r in rows} == {r["_id"] for r in big}
    assert len(rows) == 300 and report.table("qc_tag_status").rows == 3 * len(records)
    assert len(rows_of(url, "qc_tag_status", subject_id="999001")) == 450
    assert report.table("asset_basics").rows == len(records)


def test_payload_cap_splits_requests_without_losing_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway byte cap: find pages come back short, aggregates answer 413 and are split, down to a
    paged find for a subject whose records alone exceed the cap; every table equals an uncapped run."""
    from bdc.cache import Cache

    from bdc_tables_docdb.demo.generator import generate_records
    from bdc_tables_docdb.emulator import DocDBEmulator

    records = generate_records(250, seed=6)
    with DocDBEmulator(records, max_payload_bytes=30_000) as emulator:
        serve(monkeypatch, emulator)
        capped = memory_url()
        sync_ok(capped, only=["asset_basics"])
        emulator.reset_stats()
        sync_ok(capped, only=["quality_control"], no_deps=True)
        qc_stats = emulator.stats
        sync_ok(capped)
    # 413 on the $in aggregate, then the too-large subjects paged with find (short pages)
    assert qc_stats["payload_too_large"] > 0 and qc_stats["find"] > 0 and qc_stats["payload_truncated"] > 0, qc_stats
    with DocDBEmulator(records) as emulator:
        serve(monkeypatch, emulator)
        free = memory_url()
        sync_ok(free)
    for name in docdb_table_names():
        assert canonical(Cache(capped).get(name)) == canonical(Cache(free).get(name)), name
    assert len(rows_of(capped, "quality_control")) > 500


def test_sync_under_injected_faults_equals_fault_free_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """5xx, 429 and dropped connections: every table completes, with retries, and equals a clean run."""
    from bdc.cache import Cache
    from bdc.runner import RetryPolicy

    from bdc_tables_docdb.demo.generator import generate_records
    from bdc_tables_docdb.emulator import DocDBEmulator, FaultConfig

    faults = FaultConfig(error_5xx_rate=0.1, error_429_rate=0.05, drop_rate=0.02, seed=11)
    # more attempts and short waits than the default policy: the same logic, a fast and certain test
    retry = RetryPolicy(attempts=12, base=0.01, cap=0.05)
    records = generate_records(250, seed=6)
    with DocDBEmulator(records, faults=faults) as emulator:
        serve(monkeypatch, emulator)
        faulty = memory_url()
        report = sync_ok(faulty, retry=retry)
        stats = emulator.stats
        emulator.set_faults(None)
        clean = memory_url()
        clean_report = sync_ok(clean)
    injected = stats["faults_5xx"] + stats["faults_429"] + stats["faults_drop"]
    assert injected > 0 and stats["faults_5xx"] > 0, stats
    assert report.retries >= injected > 0  # every injected fault cost one retry (none was fatal)
    assert clean_report.retries == 0
    for name in docdb_table_names():
        assert canonical(Cache(faulty).get(name)) == canonical(Cache(clean).get(name)), name
        assert report.table(name).rows == clean_report.table(name).rows, name
