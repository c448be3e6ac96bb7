"""Platform and derived table transforms (TABLES.md §2.10–2.16) and the open-data S3 accessor.

Real DocDB v2 records from ``tests/fixtures/docdb-records`` cover the documented examples; small
synthetic records cover the edge cases. S3 is moto's server on loopback, talked to by boto3.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import boto3
import pandas as pd
import pytest
from botocore import UNSIGNED
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from bdc_tables_docdb.open_data import OpenData, parse_s3_url
from bdc_tables_docdb.transforms import curriculum as cur
from bdc_tables_docdb.transforms import exaspim as exa
from bdc_tables_docdb.transforms import metadata_upgrade as mu
from bdc_tables_docdb.transforms import platform_fib as fib
from bdc_tables_docdb.transforms import scientist_rl_fib as rl
from bdc_tables_docdb.transforms import smartspim as spim
from bdc_tables_docdb.transforms import time_to_qc as ttq

RECORDS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "docdb-records"
BUCKET = "aind-open-data"
OTHER_BUCKET = "codeocean-s3datasetsbucket-bdctest"
FIBER_ASSET = "808054_2026-04-16_19-38-24_processed_2026-04-17_15-47-55"


def load(name: str) -> dict:
    return json.loads((RECORDS_DIR / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def records() -> dict[str, dict]:
    return {n: load(n) for n in ("fiber_example3", "v2_derived", "v2_raw", "v2_record")}


def basics(rows: list[dict[str, Any]]) -> pd.DataFrame:
    columns = ["_id", "_last_modified", "name", "data_level", "modalities", "instrument_id", "location"]
    return pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)


def plain_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with every null (NaN, NA, NaT) as ``None``."""
    return [{k: (None if not isinstance(v, list) and pd.isna(v) else v) for k, v in r.items()} for r in frame.to_dict("records")]


def source_data(rows: list[tuple[str, str]]) -> pd.DataFrame:
    out = []
    for name, src in rows:
        ptime = name[-19:] if name[-19:-15].isdigit() else ""
        out.append({"name": name, "source_data": src, "pipeline_name": "", "processing_time": ptime})
    return pd.DataFrame(out, columns=["name", "source_data", "pipeline_name", "processing_time"])


# --------------------------------------------------------------------------------------------
# moto S3 server on loopback
# --------------------------------------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any):
        yield self._body

    def read(self, *_: Any, **__: Any) -> bytes:
        return self._body


def make_client(endpoint: str, fail: Callable[[Any], int | None] | None = None) -> Any:
    """A boto3 S3 client for the moto server; ``fail(request)`` may return an HTTP status to inject."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}),
    )
    if fail is not None:

        def hook(request: Any, **_: Any) -> AWSResponse | None:
            status = fail(request)
            if status is None:
                return None
            code = {403: "AccessDenied", 500: "InternalError", 503: "SlowDown"}.get(status, "Error")
            body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
            return AWSResponse(request.url, status, {}, _Raw(body if request.method != "HEAD" else b""))

        client.meta.events.register("before-send.s3", hook)
    return client


@pytest.fixture(scope="module")
def s3_endpoint() -> Any:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = make_client(endpoint)
    for bucket in (BUCKET, OTHER_BUCKET):
        try:
            client.create_bucket(Bucket=bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
    yield endpoint
    server.stop()


@pytest.fixture(scope="module")
def s3(s3_endpoint: str) -> Any:
    return make_client(s3_endpoint)


def put(client: Any, key: str, body: Any = b"{}", bucket: str = BUCKET) -> None:
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    client.put_object(Bucket=bucket, Key=key, Body=body)


# --------------------------------------------------------------------------------------------
# open_data
# --------------------------------------------------------------------------------------------


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://aind-open-data/abc/def.json") == ("aind-open-data", "abc/def.json")
    assert parse_s3_url("s3://aind-open-data") == ("aind-open-data", "")
    assert parse_s3_url("  s3://bucket-x/key/ ") == ("bucket-x", "key/")
    assert parse_s3_url("https://aind-open-data/x") is None
    assert parse_s3_url("s3:///x") is None
    assert parse_s3_url(None) is None
    assert parse_s3_url("") is None


def test_open_data_listing_is_paginated(s3: Any) -> None:
    for i in range(5):
        put(s3, f"odtest_listing/sub{i}/file.txt", b"x")
        put(s3, f"odtest_listing/top{i}.json", b"{}")
    od = OpenData(BUCKET, client=s3, page_size=2)
    keys = od.list_keys("odtest_listing/")
    assert len(keys) == 10 and keys == sorted(keys)
    prefixes = od.list_common_prefixes("odtest_listing/")
    assert prefixes == [f"odtest_listing/sub{i}/" for i in range(5)]
    assert od.list_keys("odtest_nothing_here/") == []


def test_open_data_get_json_and_exists(s3: Any, s3_endpoint: str) -> None:
    put(s3, "odtest_json/good.json", {"a": 1})
    put(s3, "odtest_json/bad.json", b"{not json")
    put(s3, "odtest_json/list.json", b"[1, 2]")
    od = OpenData(BUCKET, client=s3)
    assert od.get_json("odtest_json/good.json") == {"a": 1}
    assert od.get_json("odtest_json/missing.json") is None
    with pytest.raises(ValueError):
        od.get_json("odtest_json/bad.json")
    with pytest.raises(ValueError):
        od.get_json("odtest_json/list.json")
    assert od.exists("odtest_json/good.json") is True
    assert od.exists("odtest_json/missing.json") is False
    # Other errors raise: missing bucket, access denied, throttling.
    with pytest.raises(Exception) as excinfo:
        od.get_json("x.json", bucket="bdctest-no-such-bucket")
    assert "NoSuchBucket" in str(excinfo.value)
    with pytest.raises(Exception):
        od.list_keys("x", bucket="bdctest-no-such-bucket")
    denied = OpenData(BUCKET, client=make_client(s3_endpoint, fail=lambda r: 403))
    with pytest.raises(Exception):
        denied.exists("odtest_json/good.json")
    with pytest.raises(Exception):
        denied.get_json("odtest_json/good.json")


def test_open_data_default_client_is_lazy_and_unsigned_without_credentials(
    s3: Any, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the real bucket is public; moto enforces ACLs for anonymous requests
    s3.put_object(Bucket=BUCKET, Key="odtest_default/x.json", Body=b'{"ok": true}', ACL="public-read")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    od = OpenData()
    assert od._client is None  # nothing created at construction
    assert od.get_json("odtest_default/x.json") == {"ok": True}
    assert od.client.meta.config.signature_version is UNSIGNED
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    signed = OpenData()
    assert signed.exists("odtest_default/x.json")
    assert signed.client.meta.config.signature_version is not UNSIGNED


# --------------------------------------------------------------------------------------------
# platform_fib
# --------------------------------------------------------------------------------------------


def test_fib_rows_fiber_example3(records: dict[str, dict]) -> None:
    rows = fib.fib_rows(records["fiber_example3"])
    assert len(rows) == 12
    as_tuples = {(r["fiber"], r["patch_cord"], r["channel"], r["intended_measurement"], r["targeted_structure"]) for r in rows}
    assert ("Fiber 0", "Patch Cord 0", "Fiber_0_Green", "calcium", "PL") in as_tuples
    assert ("Fiber 2", "Patch Cord 2", "Fiber_2_Red", "acetylcholine", "ACB") in as_tuples
    red0 = [r for r in rows if r["channel"] == "Fiber_0_Red"]
    assert red0 and red0[0]["intended_measurement"] == "missing"
    assert {r["asset_name"] for r in rows} == {FIBER_ASSET}
    for other in ("v2_derived", "v2_raw", "v2_record"):
        assert fib.fib_rows(records[other]) == []


def test_fib_table_schema_and_duplicates(records: dict[str, dict]) -> None:
    newer = copy.deepcopy(records["fiber_example3"])
    newer["_last_modified"] = "2026-05-01T00:00:00Z"
    for proc in newer["procedures"]["subject_procedures"][0]["procedures"]:
        if proc.get("object_type") == "Probe implant":
            proc["device_config"]["primary_targeted_structure"]["acronym"] = "VTA"
    table = fib.fib_table([records["fiber_example3"], newer, records["v2_raw"]])
    assert list(table.columns) == [c for c, _, _ in fib.COLUMNS]
    assert len(table) == 12 and set(table["targeted_structure"]) == {"VTA"}  # newest duplicate wins
    empty = fib.fib_table([])
    assert list(empty.columns) == [c for c, _, _ in fib.COLUMNS] and len(empty) == 0
    assert all(t == "string" for _, t, _ in fib.COLUMNS)


def test_fib_edge_cases() -> None:
    def implant(name: Any, acronym: Any) -> dict:
        return {
            "object_type": "Probe implant",
            "implanted_device": {"name": name},
            "device_config": {"primary_targeted_structure": {"acronym": acronym} if acronym is not None else None},
        }

    record = {
        "name": "fib_edge",
        "procedures": {
            "subject_procedures": [
                {"procedures": [implant("Fiber_0", "root"), implant("Fiber_1", "VTA"), implant("", "X"), None]},
                None,
                {"procedures": [implant("Fiber 1", "NAc"), implant("Fiber_2", None)]},  # later implant wins
            ]
        },
        "acquisition": {
            "data_streams": [
                None,
                {
                    "connections": [
                        {"source_device": "PC0", "target_device": "Fiber_0"},
                        {"source_device": "PC1", "target_device": "Fiber 1"},
                        {"source_device": "PC9", "target_device": "Fiber 9"},  # unknown fiber
                        {"source_device": None, "target_device": "Fiber 2"},
                    ],
                    "configurations": [
                        {"object_type": "Patch cord config", "device_name": "PC0", "channels": [{"channel_name": None}]},
                        {"object_type": "Patch cord config", "device_name": "PC1",
                         "channels": [{"channel_name": "c1", "intended_measurement": "dopamine"}, None]},
                        {"object_type": "Patch cord config", "device_name": "PC9", "channels": [{"channel_name": "c9"}]},
                        {"object_type": "Patch cord config", "device_name": None, "channels": [{"channel_name": "cx"}]},
                        {"object_type": "Laser config", "device_name": "PC0", "channels": [{"channel_name": "laser"}]},
                    ],
                },
                # a second stream does not see the first stream's connections
                {"connections": None, "configurations": [{"object_type": "Patch cord config", "device_name": "PC0", "channels": [{}]}]},
            ]
        },
    }
    rows = fib.fib_rows(record)
    assert [(r["fiber"], r["patch_cord"], r["channel"], r["intended_measurement"], r["targeted_structure"]) for r in rows] == [
        ("Fiber 0", "PC0", "missing", "missing", "missing"),
        ("Fiber 1", "PC1", "c1", "dopamine", "NAc"),
        ("Fiber 1", "PC1", "missing", "missing", "NAc"),
    ]
    for broken in ({"name": "x", "procedures": None, "acquisition": None}, {"name": "x", "acquisition": {"data_streams": None}}, {}):
        assert fib.fib_rows(broken) == []


def test_select_fib_assets() -> None:
    frame = basics(
        [
            {"name": "a", "modalities": ["fib", "behavior"]},
            {"name": "b", "modalities": ["behavior"]},
            {"name": "c", "modalities": ["FIB"]},
            {"name": "a", "modalities": ["fib"]},
            {"name": None, "modalities": ["fib"]},
            {"name": "d", "modalities": None},
        ]
    )
    assert fib.select_fib_assets(frame) == ["a", "c"]
    assert fib.select_fib_assets(basics([])) == []


# --------------------------------------------------------------------------------------------
# time_to_qc
# --------------------------------------------------------------------------------------------


def test_time_to_qc_v2_derived_pending(records: dict[str, dict]) -> None:
    table = ttq.time_to_qc_table([records["v2_derived"], records["v2_raw"]])
    assert list(table.columns) == [c for c, _, _ in ttq.COLUMNS]
    assert len(table) == 1  # v2_raw has quality_control null: skipped
    row = table.iloc[0]
    assert row["name"] == "828418_2026-02-13_18-31-13_processed_2026-02-14_12-44-45"
    assert row["process_end_time"] == "2026-02-14T12:42:00.190654Z"
    assert row["process_end_time_utc"] == pd.Timestamp("2026-02-14T12:42:00.190654Z")
    assert bool(row["qc_pending"]) is True
    assert pd.isna(row["qc_time"]) and pd.isna(row["qc_duration_hours"])
    assert str(table["qc_time"].dtype) == "datetime64[us, UTC]"


def _qc_record(name: str, stamps: list[str], statuses: dict[str, str] | None, processes: Any) -> dict:
    return {
        "name": name,
        "processing": {"data_processes": processes},
        "quality_control": {
            "metrics": [
                {"name": f"m{i}", "status_history": [{"status": "Pass", "timestamp": "2000-01-01T00:00:00Z"},
                                                      {"status": "Pass", "timestamp": s}]}
                for i, s in enumerate(stamps)
            ]
            + [{"name": "no history", "status_history": []}],
            "status": statuses,
        },
    }


def test_time_to_qc_parses_before_max_and_duration() -> None:
    # As strings "2024-01-01T16:30:00Z" > "2024-01-01 10:00:00-07:00", but the latter is 17:00 UTC (D8).
    record = _qc_record(
        "qc_a",
        ["2024-01-01T16:30:00Z", "2024-01-01 10:00:00-07:00", "garbage"],
        {"x": "Pass", "Processing": "Fail"},
        [
            {"start_date_time": "2024-01-01T14:00:00Z", "end_date_time": "2024-01-01T20:00:00Z"},  # later, not last
            {"start_date_time": "2024-01-01 06:00:00-08:00", "end_date_time": "2024-01-01 07:00:00-08:00"},  # 15:00Z
        ],
    )
    row = ttq.time_to_qc_row(record)
    assert row["qc_pending"] is False
    assert row["qc_time"] == pd.Timestamp("2024-01-01T17:00:00Z")
    assert row["process_end_time"] == "2024-01-01 07:00:00-08:00"  # §2.15: the last process, verbatim
    assert row["process_end_time_utc"] == pd.Timestamp("2024-01-01T15:00:00Z")
    assert row["qc_duration_hours"] == pytest.approx(2.0)


def test_time_to_qc_edge_cases() -> None:
    only_start = _qc_record("qc_b", ["2024-01-01T00:00:00Z"], None, [{"start_date_time": "2023-12-31 23:00:00+00:00"}])
    row = ttq.time_to_qc_row(only_start)
    assert row["process_end_time"] == "2023-12-31 23:00:00+00:00"  # verbatim, start as fallback (no end key)
    assert row["qc_duration_hours"] == pytest.approx(1.0)
    pending_by_metric = _qc_record("qc_c", [], None, None)
    pending_by_metric["quality_control"]["metrics"].append({"status_history": [{"status": "Pending", "timestamp": "2024-01-01T00:00:00Z"}]})
    row = ttq.time_to_qc_row(pending_by_metric)
    assert row["qc_pending"] is True and row["qc_time"] is None and row["process_end_time"] is None
    assert ttq.time_to_qc_row({"name": "n", "quality_control": {}}) is None
    assert ttq.time_to_qc_row({"name": "n", "quality_control": None}) is None
    empty = ttq.time_to_qc_table([])
    assert len(empty) == 0 and list(empty.columns) == [c for c, _, _ in ttq.COLUMNS]
    assert str(empty["qc_pending"].dtype) == "boolean"
    frame = basics([{"name": "d1", "data_level": "derived"}, {"name": "r1", "data_level": "raw"}, {"name": None, "data_level": "derived"}])
    assert ttq.select_time_to_qc_assets(frame) == ["d1"]
    types = dict((c, t) for c, t, _ in ttq.COLUMNS)
    assert types["qc_time"] == types["process_end_time_utc"] == "timestamp[us, tz=UTC]"


def test_time_to_qc_process_end_time_last_element_end_key_present(records: dict[str, dict]) -> None:
    """§2.15: the **last** process's ``end_date_time`` when that key is present, even when null;
    its ``start_date_time`` only when the key is absent."""
    record = copy.deepcopy(records["v2_raw"])  # two processes; the first one's end is the earlier
    record["quality_control"] = copy.deepcopy(records["v2_derived"]["quality_control"])
    processes = record["processing"]["data_processes"]
    assert ttq.process_end_time(record)[0] == "2026-02-14T12:30:37Z"
    processes[-1]["end_date_time"] = None  # present but null: null, no fallback to the start time
    row = ttq.time_to_qc_row(record)
    assert row["process_end_time"] is None and row["process_end_time_utc"] is None
    assert row["qc_duration_hours"] is None
    del processes[-1]["end_date_time"]  # absent: the start time
    assert ttq.process_end_time(record) == ("2026-02-14T02:24:52Z", pd.Timestamp("2026-02-14T02:24:52Z"))
    # the last element, not the latest process (the first one ends later here)
    processes[0]["end_date_time"] = "2030-01-01T00:00:00Z"
    assert ttq.process_end_time(record)[0] == "2026-02-14T02:24:52Z"
    processes[-1]["end_date_time"] = ""  # verbatim, "" included; it parses to nothing
    assert ttq.process_end_time(record) == ("", None)
    # null-safe: a last element that is not a dict has neither key; no list means no processes
    processes.append("junk")
    assert ttq.process_end_time(record) == (None, None)
    for value in (None, {"end_date_time": "2024-01-01T00:00:00Z"}, "x", []):
        record["processing"]["data_processes"] = value
        assert ttq.process_end_time(record) == (None, None)
    record["processing"] = None
    assert ttq.process_end_time(record) == (None, None)


# --------------------------------------------------------------------------------------------
# scientist_rl_fib
# --------------------------------------------------------------------------------------------


def test_scientist_rl_fib_fiber_example3(records: dict[str, dict]) -> None:
    procedures = records["fiber_example3"]["procedures"]["subject_procedures"][0]["procedures"]
    fiber0 = next(p for p in procedures if (p.get("implanted_device") or {}).get("name") == "Fiber_0")
    assert rl.implant_coordinates(fiber0["device_config"]) == "AP=2, ML=-0.8, D=1.6"
    implants = rl.subject_implants(records["fiber_example3"])
    assert rl.Implant("PL", "AP=2, ML=-0.8, D=1.6") in implants
    assert rl.Implant("ACB", "AP=1, ML=-2.2, D=4.1") in implants
    table = rl.scientist_rl_fib_table([records["fiber_example3"]])
    assert list(table.columns) == [c for c, _, _ in rl.COLUMNS]
    assert list(table["indicator"]) == ["VIR32017_PHPeB", "VIR32294_PHPeB"]  # tars ids (D19)
    assert set(table["targeted_structure"]) == {"ACB"}
    assert table.iloc[0]["coordinates"] == ["AP=1, ML=-2.2, D=4.1", "AP=1, ML=2.2, D=4.1"]
    assert table.iloc[0]["mouse_ids"] == ["808054"]
    assert int(table.iloc[0]["mouse_count"]) == 1 and int(table.iloc[0]["session_count"]) == 1


def _rl_record(subject: Any, name: str, sources: list[str] | None, last_modified: str, procedures: list[dict]) -> dict:
    return {
        "name": name,
        "_last_modified": last_modified,
        "subject": {"subject_id": subject} if subject is not None else None,
        "data_description": {"source_data": sources},
        "procedures": {"subject_procedures": [{"object_type": "Surgery", "procedures": procedures}]},
    }


def _implant(acronym: Any, translation: list | None) -> dict:
    transform = [{"object_type": "Rotation", "angles": [0, 0, 0, 0]}]
    if translation is not None:
        transform.append({"object_type": "Translation", "translation": translation})
    return {
        "object_type": "Probe implant",
        "implanted_device": {"name": "Fiber_0"},
        "device_config": {"primary_targeted_structure": {"acronym": acronym}, "transform": transform},
    }


def _injection(acronym: Any, materials: list[dict]) -> dict:
    return {"object_type": "Brain injection", "targeted_structure": {"acronym": acronym}, "injection_materials": materials}


def test_scientist_rl_fib_d19_rules() -> None:
    gcamp = {"name": "GCaMP8m", "tars_identifiers": {"virus_tars_id": "VIR1"}}
    tars_only = {"name": None, "tars_identifiers": {"virus_tars_id": "VIR2"}}
    new_procs = [
        _implant("VTA", [-3.1, 0.5, 0, 4.2]),
        _implant(None, [1, 1, 1, 1]),  # missing structure
        _implant("root", None),  # root -> missing
        _injection("VTA", [gcamp, tars_only, {"name": ""}]),
        _injection(None, [{"name": "MissingVirus"}]),  # missing never pairs with missing
        _injection("LC", []),  # no indicator: skipped
    ]
    old_procs = [_implant("DMS", [0, 0, 0, 1]), _injection("DMS", [{"name": "Old"}])]
    recs = [
        # subject 1: one session processed twice + another session; newest record has the procedures
        _rl_record("1", "s1_a_processed_1", ["s1_a"], "2024-01-01T00:00:00Z", old_procs),
        _rl_record("1", "s1_a_processed_2", ["s1_a"], "2024-03-01 00:00:00-08:00", new_procs),
        _rl_record("1", "s1_b_processed_1", ["s1_b"], "2024-02-01T00:00:00Z", old_procs),
        # subject 2: same pairing at other coordinates, no source_data (counts itself)
        _rl_record("2", "s2_processed", None, "2024-01-01T00:00:00Z", [_implant("VTA", [-3.2, None, 0, 4.0]), _injection("VTA", [gcamp])]),
        # no subject id: skipped
        _rl_record(None, "nosubject", ["z"], "2024-01-01T00:00:00Z", new_procs),
    ]
    table = rl.scientist_rl_fib_table(recs)
    rows = {r["indicator"]: r for r in table.to_dict("records")}
    assert list(table["indicator"]) == ["GCaMP8m", "VIR2"] and set(table["targeted_structure"]) == {"VTA"}
    assert rows["GCaMP8m"]["mouse_ids"] == ["1", "2"]
    assert rows["GCaMP8m"]["mouse_count"] == 2
    assert rows["GCaMP8m"]["session_count"] == 3  # subject 1: 2 distinct sessions; subject 2: 1
    assert rows["GCaMP8m"]["coordinates"] == ["AP=-3.1, ML=0.5, D=4.2", "AP=-3.2, ML=?, D=4.0"]
    assert rows["VIR2"]["mouse_ids"] == ["1"] and rows["VIR2"]["session_count"] == 2
    assert rl.implant_coordinates({"transform": [{"object_type": "Translation", "translation": [1, 2, 3]}]}) == "missing"
    empty = rl.scientist_rl_fib_table([])
    assert len(empty) == 0 and list(empty.columns) == [c for c, _, _ in rl.COLUMNS]
    assert rl.FILTER["data_description.data_level"] == "derived"
    assert "data_description.source_data" in rl.PROJECTION and "_last_modified" in rl.PROJECTION


# --------------------------------------------------------------------------------------------
# metadata_upgrade
# --------------------------------------------------------------------------------------------


def _status(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(mu.STATUS_COLUMNS))


def test_metadata_upgrade_groups_versions_and_keeps_history() -> None:
    status = _status(
        [
            ("v1-a", "v2-a", "1.9.0", "success", "2024-01-01", "2024-06-01T00:00:00Z"),
            ("v1-b", None, "1.10.0", "failed", "2024-01-02", "2024-06-02T00:00:00Z"),
            ("v1-c", "v2-c", "1.10.0", "success", "2024-01-03", "2024-06-02T00:00:00Z"),
            ("v1-c", None, "1.9.0", "failed", "2024-01-03", "2024-05-01T00:00:00Z"),  # older attempt
            ("v1-e", "v2-unknown", "1.10.0", "success", "2024-01-05", "2024-06-02T00:00:00Z"),
        ]
    )
    previous = pd.DataFrame(
        [
            {"_id": "v1-a", "name": "old-a", "status": "failed", "1.0.0": "failed", "1.9.0": "failed"},
            {"_id": "v1-d", "name": "old-d", "project_name": "P-old", "data_level": "raw", "1.0.0": "success"},
        ]
    )
    basics_df = pd.DataFrame(
        [
            {"_id": "v2-a", "name": "asset-a", "project_name": "PA", "data_level": "raw"},
            {"_id": "v2-c", "name": "asset-c", "project_name": "PC", "data_level": "derived"},
        ]
    )
    calls: list[list[str]] = []

    def v1_lookup(ids: list[str]) -> list[dict]:
        calls.append(list(ids))
        known = {"v1-b": {"_id": "v1-b", "name": "v1name-b", "data_description": {"project_name": "PB", "data_level": "raw"}},
                 "v1-e": {"_id": "v1-e", "name": "v1name-e", "data_description": None}}
        return [known[i] for i in ids if i in known]

    table = mu.upgrade_table(status, previous, basics_df, v1_lookup)
    assert list(table.columns) == [c for c, _, _ in mu.COLUMNS] + ["1.0.0", "1.9.0", "1.10.0"]
    rows = {r["_id"]: r for r in plain_rows(table)}
    assert list(table["_id"]) == ["v1-a", "v1-b", "v1-c", "v1-e", "v1-d"]
    a, b, c, d, e = (rows[k] for k in ("v1-a", "v1-b", "v1-c", "v1-d", "v1-e"))
    # D20: each row's status lands in its own version column
    assert (a["1.9.0"], a["1.10.0"], a["1.0.0"]) == ("success", None, "failed")
    assert (b["1.10.0"], b["1.9.0"]) == ("failed", None)
    assert (c["1.10.0"], c["1.9.0"], c["upgrader_version"], c["status"]) == ("success", "failed", "1.10.0", "success")
    # names: basics for successes, v1 for failures / unknown v2 ids, never the previous table (§2.10)
    assert (a["name"], a["project_name"], a["data_level"]) == ("asset-a", "PA", "raw")
    assert (b["name"], b["project_name"]) == ("v1name-b", "PB")
    assert (e["name"], e["project_name"]) == ("v1name-e", None)
    # D9: history-only id kept with its old column; its descriptive fields come from v1 only (none here)
    assert (d["1.0.0"], d["name"], d["project_name"], d["data_level"], d["status"]) == ("success", None, None, None, None)
    assert sorted(sum(calls, [])) == ["v1-b", "v1-d", "v1-e"]


def test_metadata_upgrade_failed_row_does_not_keep_previous_names() -> None:
    """§2.10 steps 4–6: name/project_name/data_level are dropped from the previous table, so an id
    that was a success in run 1 and fails in run 2 without a v1 record gets nulls, not run 1's v2
    name; an id only in the history gets v1's values (or nulls), never the old ones."""
    basics_df = pd.DataFrame([{"_id": "v2-a", "name": "asset-a", "project_name": "PA", "data_level": "raw"}])
    v1 = {"v1-c": {"_id": "v1-c", "name": "v1name-c", "data_description": {"project_name": "PC1", "data_level": "raw"}}}

    def v1_lookup(ids: list[str]) -> list[dict]:
        return [v1[i] for i in ids if i in v1]

    run1 = mu.upgrade_table(
        _status([("v1-a", "v2-a", "1.0", "success", None, "2024-01-01T00:00:00Z"),
                 ("v1-b", "v2-a", "1.0", "success", None, "2024-01-01T00:00:00Z"),
                 ("v1-c", None, "1.0", "failed", None, "2024-01-01T00:00:00Z")]),
        None, basics_df, v1_lookup,
    )
    assert list(run1["name"]) == ["asset-a", "asset-a", "v1name-c"]
    v1["v1-c"] = {"_id": "v1-c", "name": "v1name-c", "data_description": {"project_name": "PC2", "data_level": None}}
    run2 = mu.upgrade_table(
        _status([("v1-a", None, "1.1", "failed", None, "2024-02-01T00:00:00Z")]),  # v1-b, v1-c: history only
        run1, basics_df, v1_lookup,
    )
    rows = {r["_id"]: r for r in plain_rows(run2)}
    assert (rows["v1-a"]["name"], rows["v1-a"]["project_name"], rows["v1-a"]["data_level"]) == (None, None, None)
    assert (rows["v1-a"]["1.0"], rows["v1-a"]["1.1"], rows["v1-a"]["v2_id"]) == ("success", "failed", None)
    assert (rows["v1-b"]["name"], rows["v1-b"]["project_name"], rows["v1-b"]["1.0"]) == (None, None, "success")
    assert (rows["v1-c"]["name"], rows["v1-c"]["project_name"], rows["v1-c"]["data_level"]) == ("v1name-c", "PC2", None)


def test_metadata_upgrade_missing_inputs_and_failures() -> None:
    previous = pd.DataFrame([{"_id": "x", "name": "nx", "1.0.0": "success"}])
    kept = mu.upgrade_table(None, previous, None, lambda ids: [])
    assert list(kept["_id"]) == ["x"] and kept.iloc[0]["1.0.0"] == "success"
    kept = mu.upgrade_table(pd.DataFrame({"v1_id": ["a"]}), previous, None, lambda ids: [])  # no upgrader_version
    assert list(kept["_id"]) == ["x"]
    empty = mu.upgrade_table(None, None, None, lambda ids: [])
    assert len(empty) == 0 and list(empty.columns) == [c for c, _, _ in mu.COLUMNS]

    def broken(ids: list[str]) -> list[dict]:
        raise ConnectionError("v1 down")

    with pytest.raises(ConnectionError):
        mu.upgrade_table(_status([("a", None, "2.0", "failed", None, None)]), previous, None, broken)

    sizes: list[int] = []
    many = _status([(f"id{i:03d}", None, "2.0", "failed", None, None) for i in range(150)])
    table = mu.upgrade_table(many, None, None, lambda ids: sizes.append(len(ids)) or [])
    assert sizes == [100, 50] and len(table) == 150 and set(table["2.0"]) == {"failed"}


def test_version_sort_key() -> None:
    assert sorted(["1.10.0", "1.9.0", "1.2.0", "2.0"], key=mu.version_sort_key) == ["1.2.0", "1.9.0", "1.10.0", "2.0"]


# --------------------------------------------------------------------------------------------
# platform_smartspim (moto S3)
# --------------------------------------------------------------------------------------------

RAW1 = "SmartSPIM_990001_2024-01-01_10-00-00"
RAW2 = "SmartSPIM_990002_2024-01-02_10-00-00"
RAW3 = "SmartSPIM_990003_2024-01-03_10-00-00"
RAW4 = "SmartSPIM_990004_2024-01-04_10-00-00"
RAW5 = "SmartSPIM_990005_2024-01-05_10-00-00"
EXA1 = "exaSPIM_990011_2024-02-01_10-00-00"
EXA2 = "exaSPIM_990012_2024-02-02_10-00-00"
EXA3 = "exaSPIM_990013_2024-02-03_10-00-00"
EXA4 = "exaSPIM_990014_2024-02-04_10-00-00"


def _stitched(raw: str, when: str) -> str:
    return f"{raw}_stitched_{when}"


def spim_basics() -> pd.DataFrame:
    return basics(
        [
            {"name": RAW1, "data_level": "raw", "modalities": ["SPIM"], "instrument_id": "SmartSPIM2-2_20240101"},
            {"name": RAW2, "data_level": "raw", "modalities": ["SPIM"], "instrument_id": None},
            {"name": RAW3, "data_level": "raw", "modalities": ["SPIM"], "instrument_id": "SmartSPIM1"},
            {"name": RAW4, "data_level": "raw", "modalities": ["SPIM"], "instrument_id": "SmartSPIM1"},
            {"name": RAW1, "data_level": "raw", "modalities": ["SPIM"], "instrument_id": "SmartSPIM2"},  # duplicate
            {"name": RAW5, "data_level": "raw", "modalities": ["SPIM"], "instrument_id": "SmartSPIM3"},
            {"name": "SmartSPIM_990009_derived", "data_level": "derived", "modalities": ["SPIM"], "instrument_id": "x"},
            {"name": "lower_spim", "data_level": "raw", "modalities": ["spim"], "instrument_id": "x"},
            {"name": EXA1, "data_level": "raw", "modalities": ["SPIM"], "instrument_id": "exaSPIM-1"},
            {"name": EXA2, "data_level": "raw", "modalities": ["SPIM"], "instrument_id": "EXASPIM_2"},
            {"name": EXA3, "data_level": "raw", "modalities": ["SPIM"], "instrument_id": "exaspim"},
            {"name": EXA4, "data_level": "raw", "modalities": ["SPIM"], "instrument_id": "ExaSPIM"},
        ]
    )


def spim_sources() -> pd.DataFrame:
    return source_data(
        [
            (_stitched(RAW1, "2024-01-05_12-00-00"), RAW1),
            (_stitched(RAW1, "2024-01-09_12-00-00"), RAW1),  # latest stitched
            (f"{RAW1}_processed_2024-02-01_00-00-00", RAW1),  # not stitched
            (_stitched(RAW2, "2024-01-06_12-00-00"), RAW2),
            (f"{RAW3}_STITCHED_2024-01-07_12-00-00", RAW3),  # case-insensitive
            (_stitched(RAW5, "2024-01-08_12-00-00"), RAW5),
            (f"{EXA1}_fused_2024-03-01_00-00-00", EXA1),
            (f"{EXA1}_fused_2024-03-05_00-00-00", EXA1),
            (f"{EXA3}_FUSED_2024-03-03_00-00-00", EXA3),
        ]
    )


def test_select_smartspim_assets() -> None:
    selection = spim.select_smartspim_assets(spim_basics(), spim_sources())
    assert list(selection["raw_name"]) == [RAW1, RAW2, RAW3, RAW4, RAW5]
    assert list(selection["stitched_name"]) == [
        _stitched(RAW1, "2024-01-09_12-00-00"),
        _stitched(RAW2, "2024-01-06_12-00-00"),
        f"{RAW3}_STITCHED_2024-01-07_12-00-00",
        None,
        _stitched(RAW5, "2024-01-08_12-00-00"),
    ]
    assert spim.names_to_fetch(selection) == [n for n in selection["stitched_name"] if n]
    assert spim.fix_ng_link("https://x#!s3://b/r/derivatives/a.json") == "https://x#!s3://b/r/SPIM/derivatives/a.json"
    assert spim.fix_ng_link("https://x#!s3://b/r/SPIM/derivatives/a.json") == "https://x#!s3://b/r/SPIM/derivatives/a.json"
    assert spim.fix_ng_link(None) is None


def test_smartspim_table(s3: Any) -> None:
    s1 = _stitched(RAW1, "2024-01-09_12-00-00")
    s2 = _stitched(RAW2, "2024-01-06_12-00-00")
    s3_name = f"{RAW3}_STITCHED_2024-01-07_12-00-00"
    s5 = _stitched(RAW5, "2024-01-08_12-00-00")
    for channel in ("Ex_488_Em_525", "Ex_561_Em_600", "Ex_639_Em_667"):
        put(s3, f"{s1}/image_cell_segmentation/{channel}/visualization/neuroglancer_config.json")
    put(s3, f"{s1}/image_cell_segmentation/readme.txt", b"not a channel")
    put(s3, f"{RAW1}/SPIM/derivatives/neuroglancer_config.json",
        {"ng_link": f"https://allen.neuroglass.io/new#!s3://aind-open-data/{RAW1}/derivatives/ng.json"})
    # RAW2's stitched data sits in a Code Ocean bucket (D25: bucket parsed from the location)
    put(s3, f"cap-123/{s2}/image_cell_segmentation/Ex_445_Em_469/x.json", bucket=OTHER_BUCKET)
    put(s3, f"{RAW2}/SPIM/derivatives/neuroglancer_config.json",
        {"ng_link": f"https://allen.neuroglass.io/new#!s3://aind-open-data/{RAW2}/SPIM/derivatives/ng.json"})
    put(s3, f"{RAW4}/SPIM/derivatives/neuroglancer_config.json", {"ng_link": "https://n/#!s3://aind-open-data/r4/derivatives/z"})
    stitched_records = [
        {"name": s1, "_last_modified": "2024-01-01T00:00:00Z", "location": "s3://aind-open-data/stale-location"},
        {"name": s1, "_last_modified": "2024-02-01T00:00:00Z", "location": f"s3://aind-open-data/{s1}/",
         "data_description": {"institution": {"abbreviation": "AIND"}},
         "processing": {"data_processes": [{"end_date_time": "2024-01-09T10:00:00Z"}, {"end_date_time": "2024-01-09T12:00:00Z"}]}},
        {"name": s2, "location": f"s3://{OTHER_BUCKET}/cap-123/{s2}", "data_description": None, "processing": None},
        {"name": s3_name, "location": None, "data_description": {"institution": None}},
        {"name": s5, "location": "s3://bdctest-no-such-bucket/x"},
    ]
    errors: dict[str, str] = {}
    selection = spim.select_smartspim_assets(spim_basics(), spim_sources())
    od = OpenData(BUCKET, client=s3, page_size=1)
    table = spim.smartspim_table(selection, stitched_records, od, errors=errors)
    assert list(table.columns) == [c for c, _, _ in spim.COLUMNS]
    ng = spim.NEUROGLASS_BASE
    loc1 = f"s3://aind-open-data/{s1}"
    r1 = table[table["raw_name"] == RAW1]
    assert list(r1["channel"]) == ["Ex_488_Em_525", "Ex_561_Em_600", "Ex_639_Em_667"]
    second = r1.iloc[1]
    assert second["name"] == s1 and bool(second["processed"]) and second["institution"] == "AIND"
    assert second["processing_end_time"] == "2024-01-09T12:00:00Z"
    assert second["raw_link"] == f"https://allen.neuroglass.io/new#!s3://aind-open-data/{RAW1}/SPIM/derivatives/ng.json"
    assert second["stitched_link"] == f"{ng}{loc1}/neuroglancer_config.json"
    assert second["segmentation_link"] == f"{ng}{loc1}/image_cell_segmentation/Ex_561_Em_600/visualization/neuroglancer_config.json"
    assert second["quantification_link"] == f"{ng}{loc1}/image_cell_quantification/Ex_561_Em_600/visualization/neuroglancer_config.json"
    assert second["alignment_link"] == f"{ng}{loc1}/image_atlas_alignment/neuroglancer_config.json"
    assert second["alignment_ccf_link"] == f"{ng}{loc1}/image_atlas_alignment/ccf_visualization/neuroglancer_config.json"

    r2 = table[table["raw_name"] == RAW2]
    assert list(r2["channel"]) == ["Ex_445_Em_469"] and pd.isna(r2.iloc[0]["institution"])
    assert r2.iloc[0]["raw_link"].endswith(f"{RAW2}/SPIM/derivatives/ng.json")

    r3 = table[table["raw_name"] == RAW3].iloc[0]  # processed, no location: links null
    assert bool(r3["processed"]) and pd.isna(r3["stitched_link"]) and pd.isna(r3["channel"]) and pd.isna(r3["raw_link"])

    r4 = table[table["raw_name"] == RAW4]  # unprocessed
    assert len(r4) == 1 and r4.iloc[0]["name"] == RAW4 and not bool(r4.iloc[0]["processed"])
    assert r4.iloc[0]["raw_link"] == "https://n/#!s3://aind-open-data/r4/SPIM/derivatives/z"
    assert pd.isna(r4.iloc[0]["stitched_link"])

    r5 = table[table["raw_name"] == RAW5]  # listing fails: reported, row kept without channel
    assert len(r5) == 1 and pd.isna(r5.iloc[0]["channel"]) and r5.iloc[0]["stitched_link"].startswith(ng)
    assert set(errors) == {RAW5} and "channel listing" in errors[RAW5]
    assert list(dict.fromkeys(table["raw_name"])) == [RAW1, RAW2, RAW3, RAW4, RAW5]
    assert len(table) == 3 + 1 + 1 + 1 + 1

    empty = spim.smartspim_table(spim.select_smartspim_assets(basics([]), source_data([])), [], od)
    assert len(empty) == 0 and list(empty.columns) == [c for c, _, _ in spim.COLUMNS]


def test_smartspim_raw_ng_link_that_is_not_text_is_missing(s3: Any) -> None:
    od = OpenData(BUCKET, client=s3)
    for raw, config, expected in [
        ("ng_number_2024", {"ng_link": 5}, None),  # wrong type counts as missing (§0), not "5"
        ("ng_list_2024", {"ng_link": ["https://x#!s3://b/r/derivatives/a.json"]}, None),
        ("ng_text_2024", {"ng_link": "https://x#!s3://b/r/derivatives/a.json"}, "https://x#!s3://b/r/SPIM/derivatives/a.json"),
    ]:
        put(s3, f"{raw}/SPIM/derivatives/neuroglancer_config.json", config)
        assert spim.raw_ng_link(od, raw) == expected, raw
    assert spim.raw_ng_link(od, "ng_absent_2024") is None


def test_smartspim_raw_link_error_is_per_asset(s3_endpoint: str) -> None:
    client = make_client(s3_endpoint, fail=lambda r: 503 if "neuroglancer_config.json" in r.url else None)
    selection = pd.DataFrame({"raw_name": [RAW4], "stitched_name": [None]})
    errors: dict[str, str] = {}
    table = spim.smartspim_table(selection, [], OpenData(BUCKET, client=client), errors=errors)
    assert len(table) == 1 and pd.isna(table.iloc[0]["raw_link"])
    assert "SlowDown" in errors[RAW4]


# --------------------------------------------------------------------------------------------
# platform_exaspim (moto S3)
# --------------------------------------------------------------------------------------------


def test_exaspim_table_head_order(s3: Any, s3_endpoint: str) -> None:
    put(s3, f"{EXA1}/neuroglancer.json")
    put(s3, f"{EXA1}/process_output.json")
    put(s3, f"{EXA2}/process_output.json")
    put(s3, f"{EXA4}/neuroglancer.json")
    selection = exa.select_exaspim_assets(spim_basics(), spim_sources())
    assert list(selection["raw_name"]) == [EXA1, EXA2, EXA3, EXA4]
    assert list(selection["fused_name"]) == [f"{EXA1}_fused_2024-03-05_00-00-00", None, f"{EXA3}_FUSED_2024-03-03_00-00-00", None]
    records = [
        {"name": f"{EXA1}_fused_2024-03-05_00-00-00", "location": f"s3://aind-open-data/{EXA1}_fused_2024-03-05_00-00-00"},
        {"name": f"{EXA3}_FUSED_2024-03-03_00-00-00", "location": None},
    ]
    heads: list[str] = []
    client = make_client(s3_endpoint, fail=lambda r: 403 if (r.method == "HEAD" and EXA4 in r.url) else None)
    client.meta.events.register("before-parameter-build.s3.HeadObject", lambda params, **_: heads.append(params["Key"]))
    errors: dict[str, str] = {}
    table = exa.exaspim_table(selection, records, OpenData(BUCKET, client=client), errors=errors, max_workers=1)
    assert list(table.columns) == [c for c, _, _ in exa.COLUMNS]
    rows = {r["raw_name"]: r for r in table.to_dict("records")}
    demo = exa.NEUROGLANCER_BASE
    assert rows[EXA1]["raw_link"] == f"{demo}s3://aind-open-data/{EXA1}/neuroglancer.json"
    assert rows[EXA1]["fused_link"] == f"{demo}s3://aind-open-data/{EXA1}_fused_2024-03-05_00-00-00"
    assert rows[EXA1]["processed"] and rows[EXA1]["name"] == f"{EXA1}_fused_2024-03-05_00-00-00"
    assert rows[EXA2]["raw_link"] == f"{demo}s3://aind-open-data/{EXA2}/process_output.json"
    assert not rows[EXA2]["processed"] and rows[EXA2]["name"] == EXA2 and pd.isna(rows[EXA2]["fused_link"])
    assert pd.isna(rows[EXA3]["raw_link"]) and pd.isna(rows[EXA3]["fused_link"]) and rows[EXA3]["processed"]
    assert pd.isna(rows[EXA4]["raw_link"]) and errors[EXA4].startswith("raw link: ClientError")
    assert set(errors) == {EXA4}
    assert heads == [
        f"{EXA1}/neuroglancer.json",
        f"{EXA2}/neuroglancer.json",
        f"{EXA2}/process_output.json",
        f"{EXA3}/neuroglancer.json",
        f"{EXA3}/process_output.json",
        f"{EXA4}/neuroglancer.json",  # error: stop probing this asset
    ]


# --------------------------------------------------------------------------------------------
# behavior_curriculum (moto S3)
# --------------------------------------------------------------------------------------------

CUR = {k: f"behavior_99{i:04d}_2024-04-01_10-00-00" for i, k in enumerate("ABCDEFGH")}


def _state(curriculum: str, stage: str | None, nodes: dict) -> dict:
    return {"curriculum": {"name": curriculum, "graph": {"nodes": nodes}}, "stage": {"name": stage} if stage else None}


NODES = {"0": {"name": "STAGE_1"}, "1": {"name": "STAGE_2"}, "x": {"name": "STAGE_X"}, "2": {"name": "STAGE_FINAL"}}


@pytest.fixture(scope="module")
def curriculum_bucket(s3: Any) -> Any:
    a, b, c, _d, _e, f, g, h = (CUR[k] for k in "ABCDEFGH")
    # A: new layout; a non-json key sorts before the json one (MaxKeys=1 would have missed it)
    put(s3, f"{a}/behavior/trainer_state.bak", b"old")
    put(s3, f"{a}/behavior/trainer_state.json", _state("Coupled", "STAGE_2", NODES))
    # B: legacy layout only; two launches: the first json (as S3 lists them) is the one, as in the reference
    put(s3, f"{b}/behavior/Logs/.launcher/TrainerState_20240401T095900.log", b"x")
    put(s3, f"{b}/behavior/Logs/.launcher/TrainerState_20240401T100000.json", _state("Legacy", "STAGE_1", NODES))
    put(s3, f"{b}/behavior/Logs/.launcher/TrainerState_20240401T100500.json", _state("Legacy", "STAGE_FINAL", NODES))
    # C: stage not in the graph (and one whose node key is not an integer)
    put(s3, f"{c}/behavior/trainer_state.json", _state("Coupled", "STAGE_GONE", NODES))
    # D: nothing at all (missing trainer state); E: location outside open data
    # F: transient error on first read; G: invalid JSON; H: stage name that maps to a non-integer key
    put(s3, f"{f}/behavior/trainer_state.json", _state("Coupled", "STAGE_1", NODES))
    put(s3, f"{g}/behavior/trainer_state.json", b"{broken")
    put(s3, f"{h}/behavior/trainer_state.json", _state("Coupled", "STAGE_X", NODES))
    return s3


def curriculum_basics() -> pd.DataFrame:
    rows = []
    for k, name in CUR.items():
        location = f"s3://{OTHER_BUCKET}/{name}" if k == "E" else f"s3://aind-open-data/{name}"
        rows.append({"name": name, "modalities": ["behavior-videos"] if k == "B" else ["behavior", "fib"], "location": location,
                     "_last_modified": "2024-04-02T00:00:00Z"})
    rows.append({"name": "ephys_only_2024", "modalities": ["ecephys"], "location": "s3://aind-open-data/ephys_only_2024"})
    # duplicate name with an older record pointing elsewhere
    rows.append({"name": CUR["A"], "modalities": ["behavior"], "location": "s3://aind-open-data/elsewhere",
                 "_last_modified": "2023-01-01T00:00:00Z"})
    return basics(rows)


def test_curriculum_rows_incremental(curriculum_bucket: Any, s3_endpoint: str) -> None:
    f_key = f"{CUR['F']}/behavior/trainer_state.json"
    flaky = make_client(s3_endpoint, fail=lambda r: 503 if (r.method == "GET" and r.url.endswith(f_key)) else None)
    errors: dict[str, str] = {}
    first = cur.curriculum_rows(curriculum_basics(), None, OpenData(BUCKET, client=flaky, page_size=1), errors=errors)
    assert list(first.columns) == [c for c, _, _ in cur.COLUMNS]
    rows = {r["asset_name"]: r for r in first.to_dict("records")}
    a, b, c, d, e, f, g, h = (CUR[k] for k in "ABCDEFGH")
    assert list(first["asset_name"]) == [a, b, c, d, e, h]  # F and G errored: kept out (D24)
    assert set(errors) == {f, g}
    assert (rows[a]["curriculum_name"], rows[a]["stage_name"], rows[a]["stage_node_id"], rows[a]["status"]) == (
        "Coupled", "STAGE_2", 1, "ok")
    assert rows[a]["trainer_state_key"] == f"{a}/behavior/trainer_state.json"
    assert (rows[b]["stage_name"], rows[b]["stage_node_id"]) == ("STAGE_1", 0)
    assert rows[b]["trainer_state_key"].endswith("TrainerState_20240401T100000.json")
    assert (rows[c]["curriculum_name"], rows[c]["status"]) == ("Coupled", "stage_not_in_graph") and pd.isna(rows[c]["stage_node_id"])
    assert rows[h]["status"] == "stage_not_in_graph"
    assert rows[d]["status"] == "no_trainer_state" and pd.isna(rows[d]["curriculum_name"])
    assert rows[e]["status"] == "not_open_data"
    assert str(first["stage_node_id"].dtype) == "Int64"

    # Second run: final rows are not read again (objects changed/removed), errors retry.
    curriculum_bucket.delete_object(Bucket=BUCKET, Key=f"{c}/behavior/trainer_state.json")
    put(curriculum_bucket, f"{a}/behavior/trainer_state.json", _state("Changed", "STAGE_1", NODES))
    put(curriculum_bucket, f"{g}/behavior/trainer_state.json", _state("Fixed", "STAGE_FINAL", NODES))
    errors2: dict[str, str] = {}
    second = cur.curriculum_rows(curriculum_basics(), first, OpenData(BUCKET, client=curriculum_bucket), errors=errors2)
    rows2 = {r["asset_name"]: r for r in second.to_dict("records")}
    assert errors2 == {}
    assert list(second["asset_name"]) == [a, b, c, d, e, f, g, h]
    assert rows2[a]["curriculum_name"] == "Coupled"  # cached, not re-read
    assert rows2[c]["status"] == "stage_not_in_graph"  # final: not refetched
    assert (rows2[f]["stage_name"], rows2[f]["stage_node_id"], rows2[f]["status"]) == ("STAGE_1", 0, "ok")
    assert (rows2[g]["curriculum_name"], rows2[g]["stage_node_id"]) == ("Fixed", 2)

    # Assets gone from asset_basics are dropped from the table.
    third = cur.curriculum_rows(curriculum_basics().iloc[:2], second, OpenData(BUCKET, client=curriculum_bucket))
    assert list(third["asset_name"]) == [a, b]


def test_curriculum_legacy_previous_rows(curriculum_bucket: Any) -> None:
    a, b, c = CUR["A"], CUR["B"], CUR["C"]
    put(curriculum_bucket, f"{c}/behavior/trainer_state.json", _state("Coupled", "STAGE_2", NODES))
    legacy = pd.DataFrame(
        {
            "asset_name": [a, b, c],
            "curriculum_name": ["FromCache", "Legacy", None],  # b: curriculum without node id -> refetch
            "stage_name": ["S", "STAGE_FINAL", None],  # c: all null (maybe a cached error) -> refetch
            "stage_node_id": [7.0, float("nan"), float("nan")],
        }
    )
    assets = curriculum_basics().iloc[:3]
    table = cur.curriculum_rows(assets, legacy, OpenData(BUCKET, client=curriculum_bucket))
    rows = {r["asset_name"]: r for r in table.to_dict("records")}
    assert (rows[a]["curriculum_name"], rows[a]["stage_node_id"], rows[a]["status"]) == ("FromCache", 7, "ok")
    assert (rows[b]["stage_name"], rows[b]["stage_node_id"], rows[b]["status"]) == ("STAGE_1", 0, "ok")  # refetched
    assert (rows[c]["stage_name"], rows[c]["stage_node_id"]) == ("STAGE_2", 1)


def test_curriculum_helpers() -> None:
    # the first key ending in ".json" (exactly: §2.14 quotes it), whatever sorts before it
    assert cur.choose_trainer_state_key(["a/x.txt", "a/b.json", "a/0.JSON", "a/a.json"]) == "a/a.json"
    assert cur.choose_trainer_state_key(["a/x.txt", "a/c.JSON"]) is None
    assert cur.parse_trainer_state({"curriculum": {"name": "", "graph": None}, "stage": {"name": "S"}}) == (None, "S", None)
    # the first node named like the stage decides; a key that is not an integer gives null (§2.14)
    assert cur.parse_trainer_state(_state("C", "STAGE_X", {"x": {"name": "STAGE_X"}, "5": {"name": "STAGE_X"}})) == ("C", "STAGE_X", None)
    assert cur.parse_trainer_state(_state("C", "STAGE_X", {"5": {"name": "STAGE_X"}, "x": {"name": "STAGE_X"}})) == ("C", "STAGE_X", 5)
    empty = cur.curriculum_rows(basics([]), None, OpenData(BUCKET, client=object()))
    assert len(empty) == 0 and list(empty.columns) == [c for c, _, _ in cur.COLUMNS]


# --------------------------------------------------------------------------------------------
# declared schemas
# --------------------------------------------------------------------------------------------


def test_frames_match_declared_arrow_schemas(records: dict[str, dict]) -> None:
    import pyarrow as pa

    from bdc_tables_docdb.transforms.arrow import arrow_schema

    recs = list(records.values())
    status = _status([("a", None, "1.0", "failed", None, None)])
    frames = [
        (fib.fib_table(recs), fib.COLUMNS),
        (fib.fib_table([]), fib.COLUMNS),
        (ttq.time_to_qc_table(recs), ttq.COLUMNS),
        (ttq.time_to_qc_table([]), ttq.COLUMNS),
        (rl.scientist_rl_fib_table(recs), rl.COLUMNS),
        (rl.scientist_rl_fib_table([]), rl.COLUMNS),
        (mu.upgrade_table(status, None, None, lambda ids: []), mu.columns_for(["1.0"])),
        (cur.curriculum_rows(basics([]), None, OpenData(BUCKET, client=object())), cur.COLUMNS),
        (spim.smartspim_table(pd.DataFrame({"raw_name": [], "stitched_name": []}), [], OpenData(client=object())), spim.COLUMNS),
        (exa.exaspim_table(pd.DataFrame({"raw_name": [], "fused_name": []}), [], OpenData(client=object())), exa.COLUMNS),
    ]
    for frame, columns in frames:
        schema = arrow_schema(columns)
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        assert table.schema.equals(schema, check_metadata=False)
        assert table.num_rows == len(frame)
