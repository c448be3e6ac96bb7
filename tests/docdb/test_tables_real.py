"""Every DocDB table built by the real sync from the four real DocDB records, values asserted.

The records (tests/fixtures/docdb-records) are served by the DocDB emulator on loopback and
fetched through the real ``MetadataDbClient``; expected values come from TABLES.md (its examples
and the wanted fixes of §4) or are derived here from the records themselves.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pandas as pd
import pytest

from test_tables_support import (  # noqa: F401 - docdb_plugin_only is an autouse fixture
    DOCDB_DISTRIBUTION,
    docdb_plugin_only,
    docdb_table_names,
    memory_url,
    rows_of,
    serve,
    sync_ok,
)

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop is deprecated")

V2_RECORD = "c9888108-f413-41cc-9a1d-418937a04410"
V2_RAW = "ad668ba9-326a-4b5d-abc1-63ddefaf0a41"
V2_DERIVED = "3b3cad8f-774b-42a1-bdce-a84269078db2"
FIBER = "1750a84b-f873-4845-bd21-13b6520235fb"

V2_RAW_NAME = "828418_2026-02-13_18-31-13"
V2_DERIVED_NAME = "828418_2026-02-13_18-31-13_processed_2026-02-14_12-44-45"
V2_RECORD_NAME = "multiplane-ophys_692478_2023-09-29_08-53-45_processed_2025-04-22_20-50-47"
FIBER_NAME = "808054_2026-04-16_19-38-24_processed_2026-04-17_15-47-55"


@pytest.fixture
def real_cache(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A memory cache holding every DocDB table, synced from the emulator's four real records."""
    serve(monkeypatch, emulator)
    url = memory_url()
    report = sync_ok(url)
    assert {t.name for t in report.tables} == set(docdb_table_names())
    return url


def _by(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    out = {r[key]: r for r in rows}
    assert len(out) == len(rows), f"{key} is not unique"
    return out


def _record(records: list[dict[str, Any]], rid: str) -> dict[str, Any]:
    return next(r for r in records if r["_id"] == rid)


# -- asset_basics -------------------------------------------------------------------------------


def test_asset_basics_rows(real_cache: str, docdb_records: list[dict[str, Any]]) -> None:
    """One row per record; the v2_derived row is TABLES.md's example (with age fixed, D17)."""
    rows = _by(rows_of(real_cache, "asset_basics"), "_id")
    assert set(rows) == {V2_RECORD, V2_RAW, V2_DERIVED, FIBER}

    derived = rows[V2_DERIVED]
    assert derived == {
        "_id": V2_DERIVED,
        "_last_modified": "2026-02-14T13:00:35.192Z",
        "modalities": ("behavior",),
        "project_name": "Cognitive flexibility in patch foraging",
        "data_level": "derived",
        "subject_id": "828418",
        "acquisition_start_time": "2026-02-13T18:31:13.061848Z",
        "acquisition_end_time": "2026-02-13T19:43:41.982725Z",
        "code_ocean": ("3c417189-1c93-4a97-92cd-b6201171c1f4",),
        "process_date": "2026-02-14",
        "genotype": "wt/wt",
        "age": 199,  # 2026-02-13 - DOB 2025-07-29 (the reference's null is D17)
        "acquisition_type": "AindVrForaging",
        "location": "s3://aind-open-data/828418_2026-02-13_18-31-13_processed_2026-02-14_12-44-45",
        "name": V2_DERIVED_NAME,
        "experimenters": ("huy.nguyen",),
        "experimenters_normalized": ("Huy Nguyen",),
        "instrument_id": "4A",
        "instrument_id_normalized": "4A",
        "investigators": ("Bruno Cruz", "Cindy Poo", "Tiffany Ona"),
        "investigators_normalized": ("Bruno Cruz", "Cindy Poo", "Tiffany Ona"),
    }

    record = rows[V2_RECORD]
    assert record["process_date"] is None  # data_processes: []
    assert record["instrument_id_normalized"] == "429mesoscope20220321"
    assert record["acquisition_start_time"] == "2023-09-29 08:53:23.654198-07:00"  # verbatim
    assert record["modalities"] == ("pophys", "behavior-videos")
    assert record["experimenters_normalized"] == ("Unknown User",)

    for rid, row in rows.items():  # age = acquisition date in its own offset minus DOB (§2.4)
        source = _record(docdb_records, rid)
        dob = dt.date.fromisoformat(source["subject"]["subject_details"]["date_of_birth"])
        acquired = dt.datetime.fromisoformat(source["acquisition"]["acquisition_start_time"].replace("Z", "+00:00"))
        assert row["age"] == (acquired.date() - dob).days
    assert rows[FIBER]["experimenters_normalized"] == ("Olivia Unokesan",)
    assert rows[FIBER]["instrument_id_normalized"] == "13A"
    assert rows[V2_RAW]["data_level"] == "raw"


def test_asset_basics_types(real_cache: str) -> None:
    """Fixed Arrow schema (D18): ids are strings, age int64, lists are lists of strings."""
    from bdc.cache import Cache

    table = Cache(real_cache).get("asset_basics", arrow=True)
    spec = Cache.spec("asset_basics")
    assert table.schema.equals(spec.arrow_schema())
    assert str(table.schema.field("subject_id").type) == "string"
    assert str(table.schema.field("age").type) == "int64"
    import pyarrow as pa

    for column in ("code_ocean", "modalities", "experimenters_normalized"):
        kind = table.schema.field(column).type
        assert pa.types.is_list(kind) and kind.value_type == pa.string(), column


# -- unique tables, source_data, raw_to_derived ------------------------------------------------


def test_unique_tables_sorted_without_nulls(real_cache: str) -> None:
    """D27: sorted, no null row; subject ids stay strings."""
    assert [r["project_name"] for r in rows_of(real_cache, "unique_project_names")] == [
        "Cognitive flexibility in patch foraging", "Learning mFISH-V1omFISH"]
    assert [r["subject_id"] for r in rows_of(real_cache, "unique_subject_ids")] == ["692478", "808054", "828418"]
    assert [r["genotype"] for r in rows_of(real_cache, "unique_genotypes")] == [
        "Dbh-Cre-KI/wt", "Slc32a1-IRES-Cre/wt;Oi1(TIT2L-jGCaMP8s-WPRE-ICL-IRES-tTA2)/wt", "wt/wt"]


def test_source_data_rows(real_cache: str) -> None:
    """One row per (derived asset, source), examples of TABLES.md §2.5."""
    rows = sorted((r["name"], r["source_data"], r["pipeline_name"], r["processing_time"], r["asset_id"])
                  for r in rows_of(real_cache, "source_data"))
    assert rows == [
        (FIBER_NAME, "808054_2026-04-16_19-38-24", "Fiberphotometry Schema 2.0 Processing Pipeline",
         "2026-04-17_15-47-55", FIBER),
        (V2_DERIVED_NAME, V2_RAW_NAME, "", "2026-02-14_12-44-45", V2_DERIVED),  # pipelines[0].name == ""
        (V2_RECORD_NAME, "multiplane-ophys_692478_2023-09-29_08-53-45", "", "2025-04-22_20-50-47", V2_RECORD),
    ]


def test_raw_to_derived(real_cache: str) -> None:
    """raw_to_derived(v2_raw) → [v2_derived], through ``bdc.raw_to_derived`` and the plugin function."""
    import bdc
    from bdc.cache import Cache

    from bdc_tables_docdb.functions import raw_to_derived

    cache = Cache(real_cache)
    assert bdc.raw_to_derived(V2_RAW_NAME, cache=cache) == [V2_DERIVED_NAME]
    assert raw_to_derived(V2_RAW_NAME, cache=cache) == [V2_DERIVED_NAME]
    assert raw_to_derived(V2_RAW_NAME, latest=True, cache=cache) == [V2_DERIVED_NAME]
    assert raw_to_derived(V2_RAW_NAME, modality="BEHAV", cache=cache) == [V2_DERIVED_NAME]
    assert raw_to_derived(V2_RAW_NAME, modality="fib", cache=cache) == []
    assert raw_to_derived(V2_DERIVED_NAME, cache=cache) == []  # direct children only
    assert raw_to_derived("no-such-asset", cache=cache) == []


# -- quality_control, qc_tag_status -------------------------------------------------------------


def test_quality_control_fiber_subject(real_cache: str, docdb_records: list[dict[str, Any]]) -> None:
    """Subject 808054: one row per metric of fiber_example3, TABLES.md's example row."""
    rows = rows_of(real_cache, "quality_control", subject_id="808054")
    metrics = _record(docdb_records, FIBER)["quality_control"]["metrics"]
    assert len(rows) == len(metrics) == 66
    assert [r["name"] for r in rows] == [m["name"] for m in metrics]
    assert {r["asset_name"] for r in rows} == {FIBER_NAME}
    assert {r["asset_id"] for r in rows} == {FIBER}
    example = next(r for r in rows if r["name"] == "ContractTestSuite::test_has_errors_on_load")
    assert example == {
        "name": "ContractTestSuite::test_has_errors_on_load",
        "modality": "fib",
        "stage": "Raw data",
        "value": None,
        "status": "Fail",
        "asset_name": FIBER_NAME,
        "subject_id": "808054",
        "timestamp": "2026-04-16T19:38:24.983132+00:00",
        "tags": ("Dataset_Contract:Contract tests",),  # D6: dict tag kept as "key:value"
        "asset_id": FIBER,
    }
    for row, metric in zip(rows, metrics):  # status = last status_history entry
        assert row["status"] == metric["status_history"][-1]["status"]


def test_quality_control_values_and_timestamps(real_cache: str) -> None:
    """v2_record: dict values JSON-encoded (D13), list tags kept (D6), local offset converted to UTC."""
    rows = rows_of(real_cache, "quality_control", subject_id="692478")
    assert len(rows) == 4
    for row in rows:
        value = json.loads(row["value"])
        assert isinstance(value, dict) and value["type"] == "dropdown"
        assert row["timestamp"] == "2023-09-29T15:53:23.654198+00:00"
        assert row["status"] == "Pending"
        assert len(row["tags"]) == 1 and row["tags"][0].startswith("Motion Correction ")
    fov = next(r for r in rows if r["name"] == "VISp_0 FOV Quality")
    assert json.loads(fov["value"])["value"] == "Quality is sufficient"
    # v2_raw (subject 828418) has quality_control null: only v2_derived's 131 metrics
    subject = rows_of(real_cache, "quality_control", subject_id="828418")
    assert len(subject) == 131 and {r["asset_name"] for r in subject} == {V2_DERIVED_NAME}


def test_qc_tag_status_rows(real_cache: str, docdb_records: list[dict[str, Any]]) -> None:
    """qc_tag_status: one row per quality_control.status entry; 6 for v2_record (D11)."""
    rows = rows_of(real_cache, "qc_tag_status", subject_id="692478")
    assert sorted((r["tag"], r["status"]) for r in rows) == sorted([
        ("Motion Correction FOV Quality VISp_0", "Pending"), ("Motion Correction FOV Quality VISp_1", "Pending"),
        ("Motion Correction Registration Summary VISp_0", "Pending"),
        ("Motion Correction Registration Summary VISp_1", "Pending"),
        ("pophys", "Pending"), ("Processing", "Pending"),
    ])
    assert {(r["asset_name"], r["asset_id"], r["timestamp"]) for r in rows} == {
        (V2_RECORD_NAME, V2_RECORD, "2023-09-29T15:53:23.654198+00:00")}
    fiber = rows_of(real_cache, "qc_tag_status", subject_id="808054")
    assert {r["tag"]: r["status"] for r in fiber} == _record(docdb_records, FIBER)["quality_control"]["status"]
    assert len(rows_of(real_cache, "qc_tag_status")) == 6 + 17 + 25


def test_quality_control_layout_and_registry(real_cache: str) -> None:
    """Storage folder ``qc/`` with string partition values; registry lists all 10 columns (D15)."""
    from bdc.cache import Cache

    cache = Cache(real_cache)
    assert cache.location("quality_control", subject_id="808054").endswith("/qc/subject_id=808054/data.pqt")
    assert sorted(cache.partition_objects(cache.spec("quality_control"))) == ["692478", "808054", "828418"]
    entries = {e["name"]: e for e in cache.registry()["tables"]}
    qc = entries["quality_control"]
    assert qc["partitioned"] is True and qc["partition_key"] == "subject_id"
    assert qc["location"].endswith("/qc/")
    assert {"subject_id", "timestamp", "name", "status", "value"} <= {c["name"] for c in qc["columns"]}
    assert {"metadata_core", "qc_tag_status"} <= set(entries)  # D10, D11


# -- platform_qc, platform_fib, metadata_core, time_to_qc ---------------------------------------


def test_platform_qc(real_cache: str) -> None:
    """fib keeps 15 of fiber_example3's 17 keys, vr 24 of v2_derived's 25; types fixed (D18)."""
    fib = rows_of(real_cache, "platform_qc", platform="fib")
    assert {r["asset_name"] for r in fib} == {FIBER_NAME}
    tags = {r["tag"]: r["status"] for r in fib}
    assert len(fib) == len(tags) == 15
    assert "Processing" not in tags and "Raw data" not in tags
    assert tags["Channel:red"] == "Fail" and tags["Fiber ROI:Fiber ROI 0"] == "Pending" and tags["fib"] == "Fail"
    row = next(r for r in fib if r["tag"] == "fib")
    assert row["instrument_id_normalized"] == "13A"
    assert row["experimenters_normalized"] == ("Olivia Unokesan",)
    assert row["timestamp"] == "2026-04-16T19:38:24.983132+00:00"  # a UTC timestamp, not a string
    assert row["asset_id"] == FIBER

    vr = rows_of(real_cache, "platform_qc", platform="vr")
    assert {r["asset_name"] for r in vr} == {V2_DERIVED_NAME}
    assert len(vr) == 24 and "Processing" not in {r["tag"] for r in vr} and "behavior" in {r["tag"] for r in vr}
    for platform in ("spim", "dynamic_foraging", "slap2"):  # written empty, not left stale (D12)
        assert rows_of(real_cache, "platform_qc", platform=platform) == []
    from bdc.cache import Cache

    cache = Cache(real_cache)
    assert sorted(cache.partition_objects(cache.spec("platform_qc"))) == [
        "dynamic_foraging", "fib", "slap2", "spim", "vr"]


def test_platform_fib(real_cache: str) -> None:
    """12 rows for fiber_example3, TABLES.md §2.11's example rows."""
    rows = rows_of(real_cache, "platform_fib")
    assert len(rows) == 12 and {r["asset_name"] for r in rows} == {FIBER_NAME}
    keyed = {r["channel"]: r for r in rows}
    assert keyed["Fiber_0_Green"] == {"asset_name": FIBER_NAME, "fiber": "Fiber 0", "patch_cord": "Patch Cord 0",
                                      "channel": "Fiber_0_Green", "intended_measurement": "calcium",
                                      "targeted_structure": "PL"}
    assert keyed["Fiber_2_Red"] == {"asset_name": FIBER_NAME, "fiber": "Fiber 2", "patch_cord": "Patch Cord 2",
                                    "channel": "Fiber_2_Red", "intended_measurement": "acetylcholine",
                                    "targeted_structure": "ACB"}
    assert keyed["Fiber_0_Red"]["intended_measurement"] == "missing"
    assert sorted({r["fiber"] for r in rows}) == ["Fiber 0", "Fiber 1", "Fiber 2", "Fiber 3"]


def test_metadata_core(real_cache: str) -> None:
    """One bool per core field; v2_raw has quality_control false (D10: synced and published)."""
    rows = _by(rows_of(real_cache, "metadata_core"), "_id")
    fields = ("subject", "data_description", "procedures", "instrument", "acquisition", "processing", "quality_control")
    for rid, row in rows.items():
        expected = {f: not (rid == V2_RAW and f == "quality_control") for f in fields}
        assert {f: row[f] for f in fields} == expected, rid
    assert rows[V2_RAW]["_last_modified"] == "2026-02-14T12:34:44.410Z"


def test_time_to_qc(real_cache: str) -> None:
    """Derived assets only; Pending gives qc_time null and qc_pending true, never now() (D7)."""
    rows = _by(rows_of(real_cache, "time_to_qc"), "name")
    assert set(rows) == {V2_DERIVED_NAME, FIBER_NAME, V2_RECORD_NAME}
    derived = rows[V2_DERIVED_NAME]
    assert derived["process_end_time"] == "2026-02-14T12:42:00.190654Z"
    assert derived["process_end_time_utc"] == "2026-02-14T12:42:00.190654+00:00"
    assert derived["qc_time"] is None and derived["qc_pending"] is True and derived["qc_duration_hours"] is None
    assert rows[V2_RECORD_NAME]["process_end_time"] is None  # no data processes
    assert rows[FIBER_NAME]["process_end_time"] == "2026-04-17T15:47:55.969242Z"


def test_time_to_qc_without_pending(emulator: Any, docdb_records: list[dict[str, Any]],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """No Pending status: qc_time is the latest last-status timestamp, compared in UTC (D8)."""
    record = copy.deepcopy(_record(docdb_records, V2_DERIVED))
    record["quality_control"]["status"] = {k: ("Pass" if v == "Pending" else v)
                                           for k, v in record["quality_control"]["status"].items()}
    for metric in record["quality_control"]["metrics"]:
        for entry in metric["status_history"]:
            if entry["status"] == "Pending":
                entry["status"] = "Pass"
    record["_last_modified"] = "2026-03-01T00:00:00.000Z"
    emulator.replace([record])
    serve(monkeypatch, emulator)
    url = memory_url()
    sync_ok(url, only=["time_to_qc"])
    row = _by(rows_of(url, "time_to_qc"), "name")[V2_DERIVED_NAME]
    latest = max(pd.Timestamp(m["status_history"][-1]["timestamp"]).tz_convert("UTC")
                 for m in record["quality_control"]["metrics"])
    assert row["qc_pending"] is False
    assert row["qc_time"] == latest.isoformat() == "2026-02-14T12:38:08.289331+00:00"
    hours = (latest - pd.Timestamp("2026-02-14T12:42:00.190654Z")).total_seconds() / 3600
    assert row["qc_duration_hours"] == pytest.approx(hours)


# -- tables with nothing to show on these records -----------------------------------------------


def test_platform_tables_without_matching_assets(real_cache: str) -> None:
    """No SPIM assets, no curriculum fiber mice: empty tables with the declared columns."""
    from bdc.cache import Cache

    cache = Cache(real_cache)
    for name in ("platform_smartspim", "platform_exaspim", "scientist_rl_fib", "metadata_upgrade"):
        frame = cache.get(name)
        assert frame.empty and list(frame.columns) == cache.spec(name).column_names, name


def test_behavior_curriculum_without_trainer_state(real_cache: str) -> None:
    """Behavior assets get a row each; no trainer state in an empty open-data copy, codeocean is not open data."""
    rows = _by(rows_of(real_cache, "behavior_curriculum"), "asset_name")
    assert {n: r["status"] for n, r in rows.items()} == {
        V2_RAW_NAME: "no_trainer_state", V2_DERIVED_NAME: "no_trainer_state", V2_RECORD_NAME: "not_open_data"}
    assert all(r["curriculum_name"] is None and r["stage_node_id"] is None for r in rows.values())


def test_metadata_upgrade(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upgrade status from the custom table: success joined to asset_basics, failure looked up in DocDB v1."""
    from bdc.cache import Cache

    emulator.load([{"_id": "v1-failed", "name": "old_asset_2022-01-01_00-00-00",
                    "data_description": {"data_level": "raw", "project_name": "Old project"}}], version="v1")
    serve(monkeypatch, emulator)
    url = memory_url()
    status = pd.DataFrame({
        "v1_id": ["v1-ok", "v1-failed"],
        "v2_id": [V2_DERIVED, None],
        "upgrader_version": ["1.2.0", "1.2.0"],
        "status": ["success", "failed"],
        "last_modified": ["2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z"],
        "upgrade_datetime": ["2025-02-01T00:00:00Z", "2025-02-02T00:00:00Z"],
    })
    Cache(url).custom("metadata_upgrade_status_prod", status)
    sync_ok(url, only=["metadata_upgrade"])
    rows = _by(rows_of(url, "metadata_upgrade"), "_id")
    assert rows["v1-ok"]["name"] == V2_DERIVED_NAME
    assert rows["v1-ok"]["project_name"] == "Cognitive flexibility in patch foraging"
    assert rows["v1-ok"]["data_level"] == "derived" and rows["v1-ok"]["v2_id"] == V2_DERIVED
    assert rows["v1-failed"]["name"] == "old_asset_2022-01-01_00-00-00"
    assert rows["v1-failed"]["project_name"] == "Old project" and rows["v1-failed"]["data_level"] == "raw"
    assert rows["v1-ok"]["1.2.0"] == "success" and rows["v1-failed"]["1.2.0"] == "failed"


# -- empty and malformed inputs ------------------------------------------------------------------


def test_empty_database_publishes_empty_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty collection: every table is built and published empty, with its declared schema (D12)."""
    from bdc.cache import Cache

    from bdc_tables_docdb.emulator import DocDBEmulator

    with DocDBEmulator([]) as empty:
        serve(monkeypatch, empty)
        url = memory_url()
        report = sync_ok(url)
    cache = Cache(url)
    names = docdb_table_names()
    assert {t.name for t in report.tables} == set(names)
    for name in names:
        spec = cache.spec(name)
        assert spec.plugin == DOCDB_DISTRIBUTION
        table = cache.get(name, arrow=True)
        assert table.num_rows == 0, name
        assert table.schema.equals(spec.arrow_schema()), (name, table.schema)
        assert report.table(name).rows == 0
    published = {e["name"] for e in cache.registry()["tables"]}
    assert set(names) <= published


#: Broken copies of the real records: (new id, what is broken, a change to the record).
_MALFORMED = [
    ("bad-acquisition", "acquisition null", lambda r: r.update(acquisition=None)),
    ("bad-subject", "subject null", lambda r: r.update(subject=None)),
    ("bad-description", "data_description null", lambda r: r.update(data_description=None)),
    ("bad-processing", "processing null", lambda r: r.update(processing=None)),
    ("bad-modalities", "modalities null, investigators a string",
     lambda r: r["data_description"].update(modalities=None, investigators="Jane Doe, jane")),
    ("bad-qc-null-parts", "quality_control with null metrics and status",
     lambda r: r.update(quality_control={"metrics": None, "status": None})),
    ("bad-metrics", "metrics that are not objects, empty status history, status not a dict",
     lambda r: r["quality_control"].update(
         metrics=[None, "junk", {"name": "odd", "modality": None, "stage": "Processing", "value": {"a": [1, True]},
                                 "status_history": [], "tags": None}],
         status=["not", "a", "dict"])),
    ("bad-processes", "a process without start time, a space-separated one (D4)",
     lambda r: r["processing"].update(data_processes=[
         {"start_date_time": None}, {"start_date_time": "2025-04-22 20:50:47-07:00"}])),
    ("bad-identifiers", "other_identifiers null, experimenters as dicts",
     lambda r: (r.update(other_identifiers=None),
                r["acquisition"].update(experimenters=[{"name": "jane doe"}, {"role": "x"}, None]))),
    ("bad-time", "an acquisition start that is no time", lambda r: r["acquisition"].update(
        acquisition_start_time="yesterday")),
]


def test_malformed_records_do_not_break_any_table(emulator: Any, docdb_records: list[dict[str, Any]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Nulls where objects are expected: every table still builds, the bad parts become nulls (D5, D14)."""
    base = _record(docdb_records, V2_DERIVED)
    broken = []
    for rid, _why, change in _MALFORMED:
        record = copy.deepcopy(base)
        record["_id"], record["name"] = rid, f"{base['name']}-{rid}"
        change(record)
        broken.append(record)
    emulator.insert(broken)
    serve(monkeypatch, emulator)
    url = memory_url()
    report = sync_ok(url)
    basics = _by(rows_of(url, "asset_basics"), "_id")
    assert len(basics) == 4 + len(_MALFORMED)

    assert basics["bad-acquisition"]["acquisition_start_time"] is None
    assert basics["bad-acquisition"]["experimenters"] == () and basics["bad-acquisition"]["age"] is None
    assert basics["bad-acquisition"]["instrument_id_normalized"] == ""
    assert basics["bad-subject"]["subject_id"] is None and basics["bad-subject"]["genotype"] is None
    assert basics["bad-description"]["modalities"] == () and basics["bad-description"]["data_level"] is None
    assert basics["bad-description"]["investigators"] == () and basics["bad-description"]["project_name"] is None
    assert basics["bad-processing"]["process_date"] is None
    assert basics["bad-modalities"]["modalities"] == ()
    assert basics["bad-modalities"]["investigators_normalized"] == ("Jane Doe",)  # §1.3 drops "Jane"
    assert basics["bad-processes"]["process_date"] == "2025-04-22"  # its own offset, not the whole string
    assert basics["bad-identifiers"]["code_ocean"] is None
    assert basics["bad-identifiers"]["experimenters"] == ("jane doe", "")
    assert basics["bad-identifiers"]["experimenters_normalized"] == ("Jane Doe",)

    qc = rows_of(url, "quality_control", subject_id="828418")
    by_asset: dict[str, list[dict[str, Any]]] = {}
    for row in qc:
        by_asset.setdefault(row["asset_id"], []).append(row)
    assert "bad-qc-null-parts" not in by_asset  # metrics null: no rows
    odd = by_asset["bad-metrics"]
    assert len(odd) == 1 and odd[0]["name"] == "odd"
    assert odd[0]["status"] is None  # empty status_history (D14)
    assert odd[0]["value"] == '{"a":[1,true]}' and odd[0]["tags"] == () and odd[0]["modality"] is None
    assert len(by_asset["bad-acquisition"]) == 131 and {r["timestamp"] for r in by_asset["bad-acquisition"]} == {None}
    tags = {r["asset_id"] for r in rows_of(url, "qc_tag_status", subject_id="828418")}
    assert "bad-metrics" not in tags and "bad-qc-null-parts" not in tags

    # the unparented records (subject or description null) are in no partition and break no lookups
    assert "bad-subject" not in {r["asset_id"] for r in rows_of(url, "quality_control")}
    sources = {r["asset_id"] for r in rows_of(url, "source_data")}
    assert "bad-description" not in sources and "bad-processing" in sources
    core = _by(rows_of(url, "metadata_core"), "_id")
    assert core["bad-acquisition"]["acquisition"] is False and core["bad-subject"]["subject"] is False
    assert core["bad-qc-null-parts"]["quality_control"] is True  # an object, though with null parts
    assert basics["bad-time"]["acquisition_start_time"] == "yesterday" and basics["bad-time"]["age"] is None
    assert {r["timestamp"] for r in by_asset["bad-time"]} == {None}
    # problems are counted in the run report, not raised
    assert report.table("asset_basics").counters["record_problems"] == 1  # the unparseable time
    # two non-object metrics, and the bad time once for qc rows and once for tag-status rows
    assert report.table("quality_control").counters["record_problems"] == 2 + 2
