"""Incremental builds equal full builds, row for row, and fetch only what changed (D1, D2, D12).

Generated records are served by the emulator and synced; the emulator's collection is then
changed, grown and shrunk (:func:`bdc_tables_docdb.demo.mutate`, applied with
replace/insert/delete or a reload), the same cache is synced again incrementally, and a
second cache is rebuilt in full from the same data: both must hold the same rows.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from test_tables_support import (  # noqa: F401 - docdb_plugin_only is an autouse fixture
    apply_mutation,
    canonical,
    docdb_plugin_only,
    docdb_table_names,
    memory_url,
    records_by_subject,
    rows_of,
    serve,
    sync_ok,
)

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop is deprecated")

#: The incremental DocDB tables (qc_tag_status comes with quality_control).
CORE = ["asset_basics", "metadata_core", "source_data", "quality_control"]
COMPARED = [*CORE, "qc_tag_status"]


def _same_tables(left: str, right: str, names: list[str]) -> None:
    """Assert two caches hold the same rows (order-insensitive) with the same columns."""
    from bdc.cache import Cache

    a, b = Cache(left), Cache(right)
    for name in names:
        fa, fb = a.get(name), b.get(name)
        assert list(fa.columns) == list(fb.columns), name
        ra, rb = canonical(fa), canonical(fb)
        assert len(ra) == len(rb), f"{name}: {len(ra)} rows incrementally, {len(rb)} in full"
        assert ra == rb, f"{name}: incremental and full builds differ"


def test_incremental_equals_full_and_fetches_little(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changed, added and removed records: the incremental sync matches a full rebuild, cheaply.

    The incremental run is made in two steps so the emulator's counters tell the record tables
    (asset_basics, metadata_core, source_data: only the changed records) from quality_control
    (only the partitions of the subjects whose records changed).
    """
    from bdc_tables_docdb.demo.generator import generate_records, mutate
    from bdc_tables_docdb.emulator import DocDBEmulator

    records_tables = ["asset_basics", "metadata_core", "source_data"]
    before = generate_records(400, seed=21)
    after = mutate(before, changed=0.03, added=0.03, removed=0.03, seed=4)
    gone = min(records_by_subject(before).items(), key=lambda item: (len(item[1]), item[0]))[0]
    after = [r for r in after if (r.get("subject") or {}).get("subject_id") != gone]  # a subject disappears
    with DocDBEmulator(before) as emulator:
        serve(monkeypatch, emulator)
        incremental = memory_url()
        sync_ok(incremental, only=CORE)
        mutation = apply_mutation(emulator, before, after)
        assert mutation.changed and mutation.added and mutation.removed
        emulator.reset_stats()
        report = sync_ok(incremental, only=records_tables)
        inc_records = emulator.stats
        emulator.reset_stats()
        qc_report = sync_ok(incremental, only=["quality_control"], no_deps=True)
        inc_qc = emulator.stats
        full = memory_url()
        emulator.reset_stats()
        sync_ok(full, only=records_tables, full=True)
        whole_records = emulator.stats
        sync_ok(full, only=["quality_control"], no_deps=True, full=True)

    _same_tables(incremental, full, COMPARED)
    assert {r["_id"] for r in rows_of(incremental, "asset_basics")} == {r["_id"] for r in after}

    # asset_basics fetched exactly the new and modified records and dropped the removed ones
    basics = report.table("asset_basics")
    assert basics.counters["records_fetched"] == len(mutation.changed) + len(mutation.added)
    assert basics.counters["records_dropped"] == len(mutation.removed)
    # one listing plus one $in lookup per table; a small fraction of a full build's bytes
    assert inc_records["requests"] == 4 and inc_records["find"] == 0, inc_records
    assert inc_records["bytes_sent"] < 0.15 * whole_records["bytes_sent"], (inc_records, whole_records)

    # only the subjects whose records changed were rebuilt; vanished subjects' partitions removed
    touched = mutation.touched_subjects()
    subjects_after = set(records_by_subject(after))
    subjects_before = set(records_by_subject(before))
    qc = qc_report.table("quality_control")
    assert qc.partitions == len(subjects_after)
    assert 0 < qc.partitions_built == len(touched & subjects_after) < len(subjects_after)
    assert gone not in subjects_after
    assert qc.partitions_deleted == len(subjects_before - subjects_after) > 0
    assert inc_qc["requests"] == math.ceil(len(touched & subjects_after) / 100), inc_qc


def test_every_table_incremental_equals_full_over_several_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """All DocDB tables, three rounds of changes (one by reloading the collection), then a full rebuild."""
    from bdc_tables_docdb.demo.generator import generate_records, mutate
    from bdc_tables_docdb.emulator import DocDBEmulator

    records = generate_records(250, seed=8)
    with DocDBEmulator(records) as emulator:
        serve(monkeypatch, emulator)
        incremental = memory_url()
        sync_ok(incremental)
        for round_ in range(3):
            changed = mutate(records, changed=0.04, added=0.03, removed=0.03, seed=100 + round_)
            if round_ == 1:
                emulator.clear()
                emulator.load(changed)
            else:
                apply_mutation(emulator, records, changed)
            records = changed
            sync_ok(incremental)
        full = memory_url()
        sync_ok(full, full=True)
    _same_tables(incremental, full, docdb_table_names())


def test_nothing_changed_fetches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resync without changes: one listing request for the incremental tables, no partition rebuilt."""
    from bdc_tables_docdb.demo.generator import generate_records
    from bdc_tables_docdb.emulator import DocDBEmulator

    with DocDBEmulator(generate_records(120, seed=2)) as emulator:
        serve(monkeypatch, emulator)
        url = memory_url()
        sync_ok(url, only=CORE)
        emulator.reset_stats()
        report = sync_ok(url, only=CORE)
        stats = emulator.stats
    assert report.table("asset_basics").counters["records_fetched"] == 0
    assert report.table("quality_control").status == "unchanged"
    assert report.table("quality_control").partitions_built == 0
    assert stats["requests"] == 1 and stats["aggregate"] == 1, stats  # the _id/_last_modified listing


def _named(record: dict[str, Any], rid: str, name: str, experimenters: list[str]) -> dict[str, Any]:
    out = copy.deepcopy(record)
    out["_id"], out["name"] = rid, name
    out["acquisition"]["experimenters"] = experimenters
    out["_last_modified"] = "2026-10-01T00:00:00.000Z"
    return out


def test_first_name_merge_follows_the_whole_table(monkeypatch: pytest.MonkeyPatch,
                                                  docdb_records: list[dict[str, Any]]) -> None:
    """§1.4 depends on every row: adding "Zed Quux" rewrites an unchanged row's "Zed"; removing it undoes that."""
    from bdc_tables_docdb.emulator import DocDBEmulator

    base = next(r for r in docdb_records if r["_id"] == "3b3cad8f-774b-42a1-bdce-a84269078db2")
    short = _named(base, "zed-short", "zed_short", ["Zed"])
    full_name = _named(base, "zed-full", "zed_full", ["zed quux"])
    with DocDBEmulator([*docdb_records, short]) as emulator:
        serve(monkeypatch, emulator)
        url = memory_url()

        def zed() -> tuple[str, ...]:
            sync_ok(url, only=["asset_basics"])
            rows = {r["_id"]: r for r in rows_of(url, "asset_basics")}
            return rows["zed-short"]["experimenters_normalized"]

        assert zed() == ("Zed",)
        emulator.insert([full_name])
        assert zed() == ("Zed Quux",)  # the zed-short record was not refetched, yet re-merged
        emulator.delete("zed-full")
        assert zed() == ("Zed",)
        check = memory_url()
        sync_ok(check, only=["asset_basics"], full=True)
    _same_tables(url, check, ["asset_basics"])
