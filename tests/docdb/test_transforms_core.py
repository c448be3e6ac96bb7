"""Pure transforms of the core DocDB tables, checked against the real records and TABLES.md."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from bdc_tables_docdb.transforms import asset_basics as ab
from bdc_tables_docdb.transforms import metadata_core as mc
from bdc_tables_docdb.transforms import platform_qc as pq
from bdc_tables_docdb.transforms import quality_control as qc
from bdc_tables_docdb.transforms import source_data as sd
from bdc_tables_docdb.transforms import unique
from bdc_tables_docdb.transforms.arrow import arrow_schema, column_names, to_arrow
from bdc_tables_docdb.transforms.names import (
    first_name_map,
    first_name_merge,
    normalize_experimenters,
    normalize_instrument_id,
    normalize_name,
    parse_experimenters,
)
from bdc_tables_docdb.transforms.raw_to_derived import raw_to_derived

RECORDS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "docdb-records"
UTC = timezone.utc


def _load(name: str) -> dict:
    return json.loads((RECORDS_DIR / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def records() -> dict[str, dict]:
    return {name: _load(name) for name in ("v2_record", "v2_raw", "v2_derived", "fiber_example3")}


@pytest.fixture()
def rec(records):
    """A deep copy per test, so tests may mutate records freely."""
    return lambda name: copy.deepcopy(records[name])


@pytest.fixture(scope="module")
def basics_df(records) -> pd.DataFrame:
    rows = ab.finalize_basics(ab.basics_row(r) for r in records.values())
    return ab.basics_table(rows).to_pandas()


MESSY = [
    {"_id": "m1", "acquisition": None, "processing": None, "data_description": None, "subject": None},
    {"_id": "m2", "data_description": {"modalities": None, "investigators": ["Jane Doe", None, 3]}},
    {"_id": "m3", "processing": {"data_processes": [{"name": "x"}, {"start_date_time": None}, "junk"]}},
    {"_id": "m4", "processing": {"data_processes": [{"start_date_time": "2025-04-22 20:50:47-07:00"}]}},
    {"_id": "m5", "acquisition": {"experimenters": [{"name": "a.b"}, {"x": 1}, None, "c"], "acquisition_start_time": "garbage"}},
    {"_id": "m6", "acquisition": "not a dict", "subject": {"subject_details": None}, "other_identifiers": None},
    {},
]


# ---------------------------------------------------------------- names (§1)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("huy.nguyen", "Huy Nguyen"),
        ("unknown user", "Unknown User"),
        ("o'brien-smith; X", "O Brien Smith X"),
        ("  a__b  ", "A B"),
        ("josé", "Jos"),
        ("3rd test", "3Rd Test"),
        (None, ""),
    ],
)
def test_normalize_name(raw, expected):
    assert normalize_name(raw) == expected


def test_parse_experimenters():
    assert parse_experimenters("Smith, John") == ["Smith", "John"]
    assert parse_experimenters("huy.nguyen, Huy Nguyen, huynguyen") == ["Huy Nguyen"]
    assert parse_experimenters("") == []
    assert parse_experimenters(None) == []
    assert parse_experimenters(" , ,") == []


def test_normalize_experimenters():
    assert normalize_experimenters(["Smith, John", "john smith", "JOHN", "Jane Doe, jane"]) == [
        "Smith",
        "John Smith",
        "Jane Doe",
    ]
    # two candidates: nothing dropped
    assert normalize_experimenters(["Bruno", "Bruno Cruz", "Bruno Smith"]) == ["Bruno", "Bruno Cruz", "Bruno Smith"]
    assert normalize_experimenters(None) == []
    assert normalize_experimenters("huy.nguyen") == ["Huy Nguyen"]


def test_first_name_map_and_merge():
    assert first_name_map(["Bruno Cruz", "Cindy Poo", "Cindy Lee", "Bruno", "Cindy"]) == {"Bruno": "Bruno Cruz"}
    exp, inv = first_name_merge(
        [["Bruno", "Cindy"], ["Cindy Lee"], None],
        [["Bruno Cruz", "Cindy Poo"], [], ["Bruno", "Bruno Cruz"]],
    )
    assert exp == [["Bruno Cruz", "Cindy"], ["Cindy Lee"], []]
    assert inv == [["Bruno Cruz", "Cindy Poo"], [], ["Bruno Cruz"]]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("323_EPHYS1_20231003", "EPHYS1"),
        ("447-3-B_20240115", "3B"),
        ("SmartSPIM2-2_20240101", "2"),
        ("FIP_1_230815", "1"),
        ("4A", "4A"),
        ("13A", "13A"),
        ("429-mesoscope-20220321", "429mesoscope20220321"),
        ("NP3_2025-01-01", "NP320250101"),
        ("MESO.2", "MESO.2"),
        ("FIP_1_220815", "FIP1220815"),  # YY outside 23-26: no match
        (None, ""),
        ("", ""),
    ],
)
def test_normalize_instrument_id(raw, expected):
    assert normalize_instrument_id(raw) == expected


# ---------------------------------------------------------------- asset_basics (§2.4)


def test_basics_columns_match_declared_schema(basics_df):
    assert list(basics_df.columns) == column_names(ab.COLUMNS)
    table = ab.basics_table([])
    assert table.num_rows == 0
    assert table.schema.field("age").type == pa.int64()
    assert table.schema.field("modalities").type == pa.list_(pa.string())
    assert set(ab.PROJECTION) >= {"_id", "_last_modified", "subject.subject_details.date_of_birth"}


def test_basics_row_v2_derived(rec):
    row = ab.finalize_basics([ab.basics_row(rec("v2_derived"))])[0]
    assert row == {
        "_id": "3b3cad8f-774b-42a1-bdce-a84269078db2",
        "_last_modified": "2026-02-14T13:00:35.192Z",
        "modalities": ["behavior"],
        "project_name": "Cognitive flexibility in patch foraging",
        "data_level": "derived",
        "subject_id": "828418",
        "acquisition_start_time": "2026-02-13T18:31:13.061848Z",
        "acquisition_end_time": "2026-02-13T19:43:41.982725Z",
        "code_ocean": ["3c417189-1c93-4a97-92cd-b6201171c1f4"],
        "process_date": "2026-02-14",
        "genotype": "wt/wt",
        # D17 wanted: 2026-02-13 minus DOB 2025-07-29 (the reference's null is a defect)
        "age": 199,
        "acquisition_type": "AindVrForaging",
        "location": "s3://aind-open-data/828418_2026-02-13_18-31-13_processed_2026-02-14_12-44-45",
        "name": "828418_2026-02-13_18-31-13_processed_2026-02-14_12-44-45",
        "experimenters": ["huy.nguyen"],
        "experimenters_normalized": ["Huy Nguyen"],
        "instrument_id": "4A",
        "instrument_id_normalized": "4A",
        "investigators": ["Bruno Cruz", "Cindy Poo", "Tiffany Ona"],
        "investigators_normalized": ["Bruno Cruz", "Cindy Poo", "Tiffany Ona"],
    }


def test_basics_row_v2_record(rec):
    row = ab.basics_row(rec("v2_record"))
    assert row["process_date"] is None
    assert row["instrument_id"] == "429-mesoscope-20220321"
    assert row["instrument_id_normalized"] == "429mesoscope20220321"
    assert row["modalities"] == ["pophys", "behavior-videos"]
    assert row["experimenters_normalized"] == ["Unknown User"]
    assert row["age"] == 86  # 2023-09-29 (its own -07:00 offset) minus 2023-07-05
    assert row["code_ocean"] == ["df429003-91a0-45d2-8457-66b156ad8bfa"]


def test_age_rules():
    assert ab.age_days("2023-09-29 23:30:00-07:00", "2023-09-28") == 1  # own offset, not UTC (which is the 30th)
    assert ab.age_days("2024-06-01T00:00:00Z", None, 2000) == (datetime(2024, 6, 1) - datetime(2000, 1, 1)).days
    assert ab.age_days("2024-06-01T00:00:00Z", None, "2000") == ab.age_days("2024-06-01T00:00:00Z", None, 2000)
    assert ab.age_days("2024-06-01T00:00:00Z", "2024-06-02") is None  # negative
    assert ab.age_days(None, "2024-01-01") is None
    assert ab.age_days("2024-06-01", "not a date") is None
    rec = {"acquisition": {"acquisition_start_time": "2024-06-01T10:00:00Z"},
           "subject": {"subject_details": {"year_of_birth": 1990}}}
    assert ab.basics_row(rec)["age"] == (datetime(2024, 6, 1) - datetime(1990, 1, 1)).days


def test_process_date_latest_parsed():
    procs = [
        {"start_date_time": "2025-04-23 00:38:48.368044+00:00"},
        {"start_date_time": "2025-04-22 20:50:47-07:00"},  # 2025-04-23T03:50Z: the latest, dated as written
        {"start_date_time": "2024-01-01T00:00:00Z"},
        {"start_date_time": None},
        {},
    ]
    assert ab.latest_process_date(procs) == "2025-04-22"
    problems: list[str] = []
    assert ab.latest_process_date([{"start_date_time": "yesterday"}], problems, {"_id": "x"}) is None
    assert problems == ["x: unparseable processing start_date_time 'yesterday'"]


def test_finalize_merges_table_wide_and_is_recomputable(rec):
    a = {"_id": "a", "acquisition": {"experimenters": ["bruno", "Cindy"]}}
    b = {"_id": "b", "data_description": {"investigators": [{"name": "Bruno Cruz"}, {"name": "Cindy Poo"}, {"name": "Cindy Lee"}]}}
    rows = ab.finalize_basics([ab.basics_row(a), ab.basics_row(b)])
    assert rows[0]["experimenters"] == ["bruno", "Cindy"]  # raw kept
    assert rows[0]["experimenters_normalized"] == ["Bruno Cruz", "Cindy"]
    assert rows[1]["investigators_normalized"] == ["Bruno Cruz", "Cindy Poo", "Cindy Lee"]
    # idempotent, and recomputed from the raw lists: drop b, and "Bruno" is no longer merged
    assert ab.finalize_basics(rows) == rows
    assert ab.finalize_basics(rows[:1])[0]["experimenters_normalized"] == ["Bruno", "Cindy"]
    # works on rows read back from parquet/pandas (numpy list cells)
    df = ab.basics_table(rows).to_pandas()
    again = ab.finalize_basics(df.to_dict("records"))
    assert list(again[0]["experimenters_normalized"]) == ["Bruno Cruz", "Cindy"]


@pytest.mark.parametrize("record", MESSY, ids=[r.get("_id", "empty") for r in MESSY])
def test_basics_row_messy_records_do_not_crash(record):
    row = ab.basics_row(record)
    assert list(row) == column_names(ab.COLUMNS)
    for col in ("modalities", "experimenters", "experimenters_normalized", "investigators", "investigators_normalized"):
        assert isinstance(row[col], list)
    assert row["instrument_id_normalized"] == ""
    ab.basics_table(ab.finalize_basics([row]))  # typed without error


def test_basics_messy_specifics():
    rows = {r.get("_id"): ab.basics_row(r) for r in MESSY}
    assert rows["m1"]["process_date"] is None and rows["m1"]["modalities"] == []
    assert rows["m1"]["code_ocean"] is None
    assert rows["m2"]["investigators"] == ["Jane Doe", "3"]  # D5: strings kept as names
    assert rows["m2"]["investigators_normalized"] == ["Jane Doe", "3"]
    assert rows["m3"]["process_date"] is None
    assert rows["m4"]["process_date"] == "2025-04-22"  # D4: space-separated time
    assert rows["m5"]["experimenters"] == ["a.b", "", "c"]
    assert rows["m5"]["experimenters_normalized"] == ["A B", "C"]
    problems: list[str] = []
    assert ab.basics_row(MESSY[4], problems)["age"] is None
    assert problems == ["m5: unparseable acquisition_start_time 'garbage'"]


def test_plan_refresh():
    plan = ab.plan_refresh({"a": "1", "b": "1", "c": "1"}, {"a": "1", "b": "2", "d": "1"})
    assert plan.fetch == ["b", "d"] and plan.keep == ["a"] and plan.drop == ["c"]


# ---------------------------------------------------------------- source_data (§2.5)


def test_source_data_examples(rec):
    assert sd.FILTER == {"data_description.data_level": "derived"}
    assert sd.source_data_rows(rec("v2_derived")) == [
        {
            "name": "828418_2026-02-13_18-31-13_processed_2026-02-14_12-44-45",
            "source_data": "828418_2026-02-13_18-31-13",
            "pipeline_name": "",
            "processing_time": "2026-02-14_12-44-45",
        }
    ]
    assert sd.source_data_rows(rec("fiber_example3"))[0]["pipeline_name"] == "Fiberphotometry Schema 2.0 Processing Pipeline"
    assert sd.source_data_rows(rec("v2_record"))[0]["pipeline_name"] == ""  # pipelines: null


def test_source_data_edge_cases():
    assert sd.source_data_rows({"name": "x_2024-01-01_00-00-00", "data_description": {"source_data": None}}) == [
        {"name": "x_2024-01-01_00-00-00", "source_data": "", "pipeline_name": "", "processing_time": "2024-01-01_00-00-00"}
    ]
    rows = sd.source_data_rows({"name": "d", "data_description": {"source_data": ["a", "b", "a"]},
                                "processing": {"pipelines": [None, {"name": "p2"}]}})
    assert [(r["source_data"], r["pipeline_name"], r["processing_time"]) for r in rows] == [("a", "", ""), ("b", "", "")]
    for record in MESSY:
        assert len(sd.source_data_rows(record)) == 1
    table = sd.source_data_table([])
    assert table.schema.names == ["name", "source_data", "pipeline_name", "processing_time"]


# ---------------------------------------------------------------- metadata_core (§2.9)


def test_metadata_core(rec):
    row = mc.core_row(rec("v2_raw"))
    assert row["_id"] == "ad668ba9-326a-4b5d-abc1-63ddefaf0a41"
    assert row["quality_control"] is False
    assert all(row[f] is True for f in mc.CORE_FIELDS if f != "quality_control")
    assert mc.core_row({"_id": "x", "subject": {}})["subject"] is True
    assert mc.core_row({})["subject"] is False
    table = mc.core_table([rec("v2_raw"), MESSY[0]])
    assert table.schema.field("quality_control").type == pa.bool_()
    assert table.column("acquisition").to_pylist() == [True, False]


# ---------------------------------------------------------------- unique tables (§2.1–2.3)


def test_unique_rows_and_pipelines():
    results = [{"subject_id": "692478"}, {"subject_id": None}, {"subject_id": 12}, {}, {"subject_id": "12"}, {"subject_id": ""}]
    assert unique.unique_rows(results, "subject_id") == [{"subject_id": "12"}, {"subject_id": "692478"}]
    assert unique.UNIQUE_GENOTYPES_PIPELINE[0] == {
        "$match": {"subject.subject_details.genotype": {"$exists": True, "$ne": None}}
    }
    p = unique.pipeline("unique_project_names")
    p.append({"$limit": 1})
    assert len(unique.UNIQUE_PROJECT_NAMES_PIPELINE) == 2
    assert unique.TABLES["unique_genotypes"]["column"] == "genotype"


# ---------------------------------------------------------------- quality_control (§2.7)


def test_qc_fiber_example_row(rec):
    rows = qc.qc_rows(rec("fiber_example3"))
    assert len(rows) == 66
    assert rows[0] == {
        "name": "ContractTestSuite::test_has_errors_on_load",
        "modality": "fib",
        "stage": "Raw data",
        "value": None,
        "status": "Fail",
        "asset_name": "808054_2026-04-16_19-38-24_processed_2026-04-17_15-47-55",
        "subject_id": "808054",
        "timestamp": datetime(2026, 4, 16, 19, 38, 24, 983132, tzinfo=UTC),
        "tags": ["Dataset_Contract:Contract tests"],
        "asset_id": "1750a84b-f873-4845-bd21-13b6520235fb",
    }
    values = {r["value"] for r in rows}
    assert {"true", "false"} <= values  # D13, not "True"
    assert "0.5438170777750829" in values


def test_qc_v2_record(rec):
    rows = qc.qc_rows(rec("v2_record"))
    assert len(rows) == 4
    for row in rows:
        assert row["timestamp"] == datetime(2023, 9, 29, 15, 53, 23, 654198, tzinfo=UTC)
        value = json.loads(row["value"])  # D13: JSON, not "{dict}"
        assert isinstance(value, dict) and "options" in value
    assert rows[0]["value"].startswith('{"value":null,"options":["Motion correction successful"')
    assert rows[0]["tags"] == ["Motion Correction Registration Summary VISp_0"]  # D6: list tag kept
    table = qc.qc_table([rec("v2_record")])
    assert table.schema == arrow_schema(qc.COLUMNS)
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")


def test_qc_edge_cases():
    record = {
        "_id": "q1",
        "name": "asset",
        "subject": {"subject_id": "1"},
        "acquisition": None,
        "quality_control": {
            "metrics": [
                {"name": "a", "modality": "fib", "stage": "Raw data", "value": "ok", "status_history": []},
                {"name": "b", "modality": {"abbreviation": "ecephys"}, "value": ["a"], "status_history": None,
                 "tags": {"probe": "A"}},
                {"name": "c", "object_type": "Curation metric", "value": 1, "status_history": []},
                {"name": "d", "value": {"x": "é"}, "status_history": [{"status": "Pass"}, "junk"]},
                "junk",
            ],
            "status": None,
        },
    }
    problems: list[str] = []
    rows = qc.qc_rows(record, problems)
    assert [r["name"] for r in rows] == ["a", "b", "d"]
    assert [r["status"] for r in rows] == [None, None, None]  # D14
    assert [r["value"] for r in rows] == ["ok", '["a"]', '{"x":"é"}']
    assert [r["modality"] for r in rows] == ["fib", "ecephys", None]
    assert rows[1]["tags"] == ["probe:A"]
    assert rows[0]["timestamp"] is None
    assert problems == ["q1: quality_control.metrics[4] is not an object"]
    assert qc.qc_tag_status_rows(record) == []
    for messy in MESSY:
        assert qc.qc_rows(messy) == [] and qc.qc_tag_status_rows(messy) == []
    assert qc.qc_table([]).num_rows == 0


def test_qc_tag_status_v2_record(rec):
    rows = qc.qc_tag_status_rows(rec("v2_record"))
    assert len(rows) == 6
    pairs = {(r["tag"], r["status"]) for r in rows}
    assert {("Motion Correction FOV Quality VISp_0", "Pending"), ("pophys", "Pending"), ("Processing", "Pending")} <= pairs
    assert all(r["subject_id"] == "692478" for r in rows)
    assert rows[0]["timestamp"] == datetime(2023, 9, 29, 15, 53, 23, 654198, tzinfo=UTC)
    assert [c[0] for c in qc.QC_TAG_STATUS_COLUMNS][:5] == ["tag", "status", "asset_name", "subject_id", "timestamp"]


def test_qc_tag_status_without_metrics():
    record = {"_id": "x", "name": "n", "acquisition": {"acquisition_start_time": "2024-01-01 08:00:00-07:00"},
              "quality_control": {"metrics": [], "status": {"fib": "Pass"}}}
    rows = qc.qc_tag_status_rows(record)
    assert rows == [{"tag": "fib", "status": "Pass", "asset_name": "n", "subject_id": None,
                     "timestamp": datetime(2024, 1, 1, 15, tzinfo=UTC), "asset_id": "x"}]
    assert qc.qc_rows(record) == []


# ---------------------------------------------------------------- platform_qc (§2.8)


def test_select_platform_assets(basics_df):
    assert list(pq.PLATFORMS) == ["spim", "fib", "vr", "dynamic_foraging", "slap2"]
    assert list(pq.select_platform_assets(basics_df, "fib")["name"]) == [
        "808054_2026-04-16_19-38-24_processed_2026-04-17_15-47-55"
    ]
    assert set(pq.select_platform_assets(basics_df, "vr")["name"]) == {
        "828418_2026-02-13_18-31-13", "828418_2026-02-13_18-31-13_processed_2026-02-14_12-44-45"
    }
    assert pq.select_platform_assets(basics_df, "spim").empty
    df = pd.DataFrame({
        "name": ["a", "b", "c", "d", "e", "f"],
        "modalities": [["Behavior"], ["behavior-videos"], ["behavior"], ["behavior"], None, ["fib"]],
        "acquisition_type": ["Uncoupled Baiting", "Coupled Without Baiting v2", "Foo Coupled Baiting", None,
                             "Coupled Baiting", "Coupled Baiting"],
    })
    assert list(pq.select_platform_assets(df, "dynamic_foraging")["name"]) == ["a", "b"]
    with pytest.raises(ValueError):
        pq.select_platform_assets(df, "nope")


def test_platform_qc_fiber_on_fib(rec, basics_df):
    record = rec("fiber_example3")
    assert len(record["quality_control"]["status"]) == 17
    rows = pq.platform_qc_rows(record, "fib")
    assert len(rows) == 15
    assert {r["tag"] for r in rows}.isdisjoint({"Processing", "Raw data"})
    df = pq.join_basics(rows, basics_df)
    assert list(df.columns) == column_names(pq.COLUMNS)
    got = {(r.tag, r.status) for r in df.itertuples()}
    assert {("Channel:red", "Fail"), ("Fiber ROI:Fiber ROI 0", "Pending"), ("fib", "Fail")} <= got
    assert set(df["instrument_id_normalized"]) == {"13A"}
    assert all(list(x) == ["Olivia Unokesan"] for x in df["experimenters_normalized"])
    assert df["timestamp"].iloc[0] == pd.Timestamp("2026-04-16T19:38:24.983132Z")
    assert df["acquisition_start_time"].iloc[0] == "2026-04-16T19:38:24.983132Z"
    assert str(df["timestamp"].dtype) == "datetime64[us, UTC]"
    assert pq.platform_qc_rows(record, "vr") == []


def test_platform_qc_v2_derived_on_vr(rec):
    record = rec("v2_derived")
    assert len(record["quality_control"]["status"]) == 25
    rows = pq.platform_qc_rows(record, "vr")
    assert len(rows) == 24
    assert "Processing" not in {r["tag"] for r in rows}
    # v2_derived only has dict tags, so D6 changes nothing here: every key is "k:v" or the modality
    assert all(":" in r["tag"] or r["tag"] == "behavior" for r in rows)


def test_platform_qc_list_tags_d6(rec):
    record = rec("v2_record")
    mapping = pq.tag_modality_map(record)
    assert mapping["Motion Correction FOV Quality VISp_0"] == {"pophys"}
    assert mapping["pophys"] == {"pophys"}
    ophys = pq.Platform("ophys", frozenset({"pophys"}))
    rows = pq.platform_qc_rows(record, ophys)
    # reference keeps only "pophys"; D6 keeps the 4 list-tag keys too; "Processing" dropped
    assert sorted(r["tag"] for r in rows) == sorted(
        ["Motion Correction FOV Quality VISp_0", "Motion Correction FOV Quality VISp_1",
         "Motion Correction Registration Summary VISp_0", "Motion Correction Registration Summary VISp_1", "pophys"]
    )


def test_join_basics_on_id_and_duplicate_names():
    basics = pd.DataFrame({
        "_id": ["old", "new", "other"],
        "_last_modified": ["2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z"],
        "name": ["dup", "dup", "x"],
        "acquisition_start_time": ["2024-01-01 08:00:00-07:00", "2025-01-01T00:00:00Z", "bad"],
        "instrument_id_normalized": ["OLD", "NEW", "X"],
        "experimenters_normalized": [["A"], ["B"], None],
    })
    rows = [
        {"asset_name": "dup", "tag": "t", "status": "Pass", "asset_id": "old"},  # id join wins over name
        {"asset_name": "dup", "tag": "t", "status": "Pass", "asset_id": None},  # name fallback: newest
        {"asset_name": "x", "tag": "t", "status": None, "asset_id": "other"},
        {"asset_name": "missing", "tag": "t", "status": "Fail", "asset_id": "nope"},
    ]
    problems: list[str] = []
    df = pq.join_basics(rows, basics, problems)
    assert len(df) == 4  # no row multiplication (D21)
    assert list(df["instrument_id_normalized"][:2]) == ["OLD", "NEW"]
    assert df["timestamp"].iloc[0] == pd.Timestamp("2024-01-01T15:00:00Z")
    assert pd.isna(df["timestamp"].iloc[2]) and df["acquisition_start_time"].iloc[2] == "bad"
    assert pd.isna(df["instrument_id_normalized"].iloc[3]) and list(df["experimenters_normalized"].iloc[3]) == []
    assert any("not unique" in p for p in problems) and any("'bad'" in p for p in problems)
    empty = pq.join_basics([], basics)
    assert empty.empty and list(empty.columns) == column_names(pq.COLUMNS)
    assert to_arrow(empty, pq.COLUMNS).schema == arrow_schema(pq.COLUMNS)


def test_join_basics_keeps_empty_basics_values(rec):
    """§2.8 step 4 / §1.5: a matched row carries basics' values as they are, so a missing
    instrument id stays ``""`` (never null) in platform_qc, like asset_basics has it."""
    record = rec("fiber_example3")
    record["acquisition"]["instrument_id"] = None
    basics = ab.basics_table(ab.finalize_basics([ab.basics_row(record)])).to_pandas()
    assert basics["instrument_id_normalized"].iloc[0] == ""
    problems: list[str] = []
    df = pq.join_basics(pq.platform_qc_rows(record, "fib"), basics, problems)
    assert len(df) == 15
    assert list(df["instrument_id_normalized"]) == [""] * 15
    assert all(list(x) == ["Olivia Unokesan"] for x in df["experimenters_normalized"])
    assert df["acquisition_start_time"].iloc[0] == "2026-04-16T19:38:24.983132Z"
    assert to_arrow(df, pq.COLUMNS).column("instrument_id_normalized").null_count == 0

    # Empty strings in basics (and an empty asset name) pass through too; "" is no timestamp and
    # is not reported as unparseable. Unmatched rows still get nulls (left join).
    basics = pd.DataFrame({
        "_id": ["id1"], "name": ["a1"], "_last_modified": ["2025-01-01T00:00:00Z"],
        "acquisition_start_time": [""], "instrument_id_normalized": [""], "experimenters_normalized": [[]],
    })
    rows = [{"asset_id": "id1", "asset_name": "", "tag": "fib", "status": "Fail"},
            {"asset_id": "nope", "asset_name": "zz", "tag": "fib", "status": "Pass"}]
    df = pq.join_basics(rows, basics, problems)
    first = df.iloc[0]
    assert (first["asset_name"], first["instrument_id_normalized"], first["acquisition_start_time"]) == ("", "", "")
    assert pd.isna(first["timestamp"]) and problems == []
    assert pd.isna(df["instrument_id_normalized"].iloc[1]) and pd.isna(df["acquisition_start_time"].iloc[1])


def test_platform_qc_rows_keep_empty_asset_name(rec):
    record = rec("fiber_example3")
    record["name"] = ""
    rows = pq.platform_qc_rows(record, "fib")
    assert len(rows) == 15 and {r["asset_name"] for r in rows} == {""}


# ---------------------------------------------------------------- raw_to_derived (§2.6)


def test_raw_to_derived(records, basics_df):
    sdf = sd.source_data_table(records.values()).to_pandas()
    raw = "828418_2026-02-13_18-31-13"
    derived = "828418_2026-02-13_18-31-13_processed_2026-02-14_12-44-45"
    assert raw_to_derived(sdf, basics_df, raw) == [derived]
    assert raw_to_derived(sdf, basics_df, raw, modality="BEHAV") == [derived]
    assert raw_to_derived(sdf, basics_df, raw, modality="fib") == []
    assert raw_to_derived(sdf, None, "nope") == []
    assert raw_to_derived(sdf, None, "") == []
    both = raw_to_derived(sdf, None, [raw, "808054_2026-04-16_19-38-24"])
    # without latest: source_data order (fixture order puts the VR child before the fiber one)
    assert both == [derived, "808054_2026-04-16_19-38-24_processed_2026-04-17_15-47-55"]


def test_raw_to_derived_latest():
    sdf = pd.DataFrame([
        {"name": "r_p_2024-01-02_00-00-00", "source_data": "r", "pipeline_name": "b", "processing_time": "2024-01-02_00-00-00"},
        {"name": "r_p_2024-01-03_00-00-00", "source_data": "r", "pipeline_name": "b", "processing_time": "2024-01-03_00-00-00"},
        {"name": "r_q_2024-01-01_00-00-00", "source_data": "r", "pipeline_name": "", "processing_time": "2024-01-01_00-00-00"},
        {"name": "r_a_2024-01-01_00-00-00", "source_data": "r", "pipeline_name": "a", "processing_time": "2024-01-01_00-00-00"},
        {"name": "s_a_2024-01-01_00-00-00", "source_data": "s", "pipeline_name": "a", "processing_time": "2024-01-01_00-00-00"},
        {"name": "other", "source_data": "rr", "pipeline_name": "a", "processing_time": ""},
    ])
    assert raw_to_derived(sdf, None, "r") == [
        "r_p_2024-01-02_00-00-00", "r_p_2024-01-03_00-00-00", "r_q_2024-01-01_00-00-00", "r_a_2024-01-01_00-00-00"
    ]
    assert raw_to_derived(sdf, None, "r", latest=True) == [
        "r_q_2024-01-01_00-00-00", "r_a_2024-01-01_00-00-00", "r_p_2024-01-03_00-00-00"
    ]
    assert raw_to_derived(sdf, None, ["s", "r"], latest=True) == [
        "s_a_2024-01-01_00-00-00", "r_q_2024-01-01_00-00-00", "r_a_2024-01-01_00-00-00", "r_p_2024-01-03_00-00-00"
    ]
    basics = pd.DataFrame({"name": ["r_a_2024-01-01_00-00-00", "r_a_2024-01-01_00-00-00", "r_q_2024-01-01_00-00-00"],
                           "modalities": [["behavior-videos"], ["behavior"], ["fib"]]})
    assert raw_to_derived(sdf, basics, "r", modality="behavior") == ["r_a_2024-01-01_00-00-00"]
