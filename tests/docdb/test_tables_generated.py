"""The DocDB tables on generated records: values checked against what the records say.

A few hundred records from :func:`bdc_tables_docdb.demo.generate_records` (every platform, and
the generator's deliberate messiness: null core fields, string investigators, empty status
histories, ...) are served by the emulator and synced once per module. Each test recomputes
the expected content of a table straight from the records, independently of the transforms.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from test_tables_support import (  # noqa: F401 - docdb_plugin_only is an autouse fixture
    dig,
    docdb_plugin_only,
    memory_url,
    records_by_subject,
    rows_of,
    subject_of,
    sync_ok,
)

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop is deprecated")

N_RECORDS = 300
SEED = 11


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[dict[str, Any]], str, Any]]:
    """``(records, cache URL, run report)``: every DocDB table synced from the generated records.

    Module-scoped (one sync for all tests), so it sets its own environment: module fixtures run
    before the function-scoped ``docdb_plugin_only``.
    """
    from bdc import api, plugins

    from bdc_tables_docdb.demo.generator import generate_records
    from bdc_tables_docdb.emulator import DocDBEmulator

    records = generate_records(N_RECORDS, seed=SEED)
    with pytest.MonkeyPatch.context() as mp, DocDBEmulator(records) as emulator:
        mp.setenv("BDC_LOAD_PLUGINS", "docdb")
        mp.setenv("BDC_DOCDB_URL", emulator.url)
        mp.setenv("BDC_OPEN_DATA_URL", tmp_path_factory.mktemp("no-open-data").as_uri())
        mp.delenv("BDC_DOCDB_PAGE_SIZE", raising=False)
        plugins.reset()
        api._caches.clear()
        url = memory_url()
        report = sync_ok(url)
        plugins.reset()
    yield records, url, report


def test_generated_data_is_messy(generated: tuple[list[dict[str, Any]], str, Any]) -> None:
    """The input really holds the malformed shapes the tables must survive."""
    from bdc_tables_docdb.demo.generator import messy_kinds

    records, _url, report = generated
    kinds = Counter(k for r in records for k in messy_kinds(r))
    for kind in ("acquisition_null", "subject_null", "data_description_null", "processing_null",
                 "modalities_null", "investigators_string", "status_history_empty", "quality_control_null"):
        assert kinds[kind] >= 1, kind
    assert report.ok


def test_asset_basics_matches_records(generated: tuple[list[dict[str, Any]], str, Any]) -> None:
    """One row per record; the plain columns are the records' values."""
    records, url, _ = generated
    rows = {r["_id"]: r for r in rows_of(url, "asset_basics")}
    assert set(rows) == {r["_id"] for r in records}
    for record in records:
        row = rows[record["_id"]]
        modalities = dig(record, "data_description.modalities")
        expected = {
            "_last_modified": record["_last_modified"],
            "name": record.get("name"),
            "subject_id": subject_of(record),
            "data_level": dig(record, "data_description.data_level"),
            "project_name": dig(record, "data_description.project_name"),
            "modalities": tuple(m["abbreviation"] for m in modalities or []
                                if isinstance(m, dict) and m.get("abbreviation")),
            "acquisition_start_time": dig(record, "acquisition.acquisition_start_time"),
            "acquisition_type": dig(record, "acquisition.acquisition_type"),
            "genotype": dig(record, "subject.subject_details.genotype"),
            "location": record.get("location"),
            "instrument_id": dig(record, "acquisition.instrument_id"),
        }
        assert {k: row[k] for k in expected} == expected, record["_id"]
        assert isinstance(row["instrument_id_normalized"], str)  # "" when missing, never null


def test_unique_tables_match_records(generated: tuple[list[dict[str, Any]], str, Any]) -> None:
    """Sorted distinct non-null values (D27)."""
    records, url, _ = generated

    def distinct(path: str) -> list[str]:
        return sorted({v for r in records if isinstance(v := dig(r, path), str)})

    assert [r["project_name"] for r in rows_of(url, "unique_project_names")] == distinct("data_description.project_name")
    assert [r["subject_id"] for r in rows_of(url, "unique_subject_ids")] == distinct("subject.subject_id")
    assert [r["genotype"] for r in rows_of(url, "unique_genotypes")] == distinct("subject.subject_details.genotype")


def test_source_data_matches_records(generated: tuple[list[dict[str, Any]], str, Any]) -> None:
    """One row per (derived asset, source); ``""`` for no source and no pipeline."""
    records, url, _ = generated
    expected = []
    for record in records:
        if dig(record, "data_description.data_level") != "derived":
            continue
        sources = [s for s in dig(record, "data_description.source_data") or [] if isinstance(s, str)] or [""]
        pipelines = dig(record, "processing.pipelines") or []
        pipeline = (pipelines[0].get("name") or "") if pipelines and isinstance(pipelines[0], dict) else ""
        stamp = re.search(r"(\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})$", record["name"])
        for source in sources:
            expected.append((record["name"], source, pipeline, stamp.group(1) if stamp else "", record["_id"]))
    actual = [(r["name"], r["source_data"], r["pipeline_name"], r["processing_time"], r["asset_id"])
              for r in rows_of(url, "source_data")]
    assert sorted(actual) == sorted(expected)
    assert len(expected) > 100


def test_quality_control_matches_records(generated: tuple[list[dict[str, Any]], str, Any]) -> None:
    """Every non-curation metric of every subject, with its last status (null when the history is empty)."""
    records, url, report = generated
    by_subject = records_by_subject(records)
    expected = []
    tag_rows = 0
    for subject, group in by_subject.items():
        for record in group:
            for metric in dig(record, "quality_control.metrics") or []:
                if not isinstance(metric, dict) or metric.get("object_type") == "Curation metric":
                    continue
                history = metric.get("status_history") or []
                last = history[-1].get("status") if history and isinstance(history[-1], dict) else None
                expected.append((subject, record["_id"], metric.get("name"), last))
            status = dig(record, "quality_control.status")
            tag_rows += len(status) if isinstance(status, dict) else 0
    actual = [(r["subject_id"], r["asset_id"], r["name"], r["status"]) for r in rows_of(url, "quality_control")]
    assert sorted(actual, key=repr) == sorted(expected, key=repr)
    assert any(status is None for *_, status in expected)  # the empty histories (D14)
    assert report.table("quality_control").partitions == len(by_subject)
    assert len(rows_of(url, "qc_tag_status")) == report.table("qc_tag_status").rows == tag_rows


def test_metadata_core_matches_records(generated: tuple[list[dict[str, Any]], str, Any]) -> None:
    """True exactly when the core field is present and not null."""
    records, url, _ = generated
    fields = ("subject", "data_description", "procedures", "instrument", "acquisition", "processing", "quality_control")
    rows = {r["_id"]: r for r in rows_of(url, "metadata_core")}
    assert set(rows) == {r["_id"] for r in records}
    for record in records:
        assert {f: rows[record["_id"]][f] for f in fields} == {f: record.get(f) is not None for f in fields}
    assert not all(r["quality_control"] for r in rows.values())


def test_platform_tables_are_consistent_with_records(generated: tuple[list[dict[str, Any]], str, Any]) -> None:
    """platform_qc keeps statuses as DocDB has them; fib rows come from fib assets only."""
    records, url, _ = generated
    by_id = {r["_id"]: r for r in records}
    fib_rows = rows_of(url, "platform_qc", platform="fib")
    assert fib_rows
    for row in fib_rows:
        record = by_id[row["asset_id"]]
        assert row["asset_name"] == record["name"]
        assert dig(record, "quality_control.status")[row["tag"]] == row["status"]
        assert "fib" in [m.get("abbreviation") for m in dig(record, "data_description.modalities")]
        assert row["tag"] not in ("Processing", "Raw data")
    fib_assets = {r["name"] for r in records
                  if any("fib" in (m.get("abbreviation") or "").lower()
                         for m in dig(r, "data_description.modalities") or [] if isinstance(m, dict))}
    fiber_rows = rows_of(url, "platform_fib")
    assert fiber_rows and {r["asset_name"] for r in fiber_rows} <= fib_assets
    for row in fiber_rows:
        assert None not in row.values()  # "missing", never null
        assert row["fiber"].startswith("Fiber ")


def test_time_to_qc_and_cohort_tables(generated: tuple[list[dict[str, Any]], str, Any]) -> None:
    """time_to_qc: derived assets with QC, never a build time (D7); scientist_rl_fib: sorted mouse lists."""
    records, url, _ = generated
    derived_with_qc = {r["name"] for r in records
                       if dig(r, "data_description.data_level") == "derived" and dig(r, "quality_control")}
    rows = rows_of(url, "time_to_qc")
    assert {r["name"] for r in rows} == derived_with_qc
    for row in rows:
        assert row["qc_pending"] in (True, False)
        if row["qc_pending"]:
            assert row["qc_time"] is None
    cohort = rows_of(url, "scientist_rl_fib")
    assert cohort
    for row in cohort:
        assert list(row["mouse_ids"]) == sorted(row["mouse_ids"]) and row["mouse_count"] == len(row["mouse_ids"])
        assert row["session_count"] >= row["mouse_count"] >= 1
        assert row["targeted_structure"] != "missing"  # never paired on "missing" (D19)
