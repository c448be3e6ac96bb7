"""The DocDB REST emulator, driven by the real ``MetadataDbClient`` from ``make_client``."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bdc_tables_docdb.client import (
    DEFAULT_DOCDB_URL,
    find_in_batches,
    iter_pages_by_id,
    make_client,
    resolve_docdb_url,
)
from bdc_tables_docdb.emulator import DocDBEmulator, FaultConfig
from bdc_tables_docdb.emulator import cli
from bdc_tables_docdb.emulator.faults import FaultInjector
from bdc_tables_docdb.emulator.server import read_records_file

PROJECT_PIPELINE = [
    {"$group": {"_id": "$data_description.project_name"}},
    {"$project": {"project_name": "$_id", "_id": 0}},
]


def synthetic(n: int, prefix: str = "rec", start: int = 0) -> list[dict[str, Any]]:
    """Small records with sortable string ids, spread over 7 subjects and 3 projects."""
    return [
        {
            "_id": f"{prefix}-{i:04d}",
            "name": f"asset_{i:04d}",
            "subject": {"subject_id": str(600000 + i % 7)},
            "data_description": {"project_name": f"project-{i % 3}", "modalities": ["ecephys"]},
            "pad": "x" * 200,
        }
        for i in range(start, start + n)
    ]


@pytest.fixture
def running() -> Iterator[Any]:
    """Start extra emulators with custom settings; all are stopped at teardown."""
    started: list[DocDBEmulator] = []

    def _start(records: Any = None, **kwargs: Any) -> DocDBEmulator:
        emu = DocDBEmulator(records, **kwargs).start()
        started.append(emu)
        return emu

    yield _start
    for emu in started:
        emu.stop()


# ----------------------------------------------------------------------------------------------
# find
# ----------------------------------------------------------------------------------------------


def test_find_filter_projection_sort(emulator: DocDBEmulator, docdb_records: list[dict]) -> None:
    client = make_client(emulator.url)
    subject = docdb_records[1]["subject"]["subject_id"]
    expected = sorted(
        (r["name"] for r in docdb_records if r["subject"]["subject_id"] == subject), reverse=True
    )
    got = client.retrieve_docdb_records(
        filter_query={"subject.subject_id": subject},
        projection={"name": 1, "subject.subject_id": 1},
        sort={"name": -1},
    )
    assert [r["name"] for r in got] == expected
    assert len(expected) == 2  # raw + derived of one subject
    for r in got:
        assert set(r) == {"_id", "name", "subject"}
        assert set(r["subject"]) == {"subject_id"}

    # _id excluded, regex filter, $in, $exists and limit
    got = client._find_records(
        filter_query={"name": {"$regex": "processed"}, "quality_control": {"$exists": True}},
        projection={"name": 1, "_id": 0},
        sort={"name": 1},
        limit=2,
    )
    processed = sorted(r["name"] for r in docdb_records if "processed" in r["name"])
    assert got == [{"name": n} for n in processed[:2]]
    ids = [docdb_records[0]["_id"], docdb_records[3]["_id"], "missing"]
    got = client._find_records(filter_query={"_id": {"$in": ids}}, projection={"_id": 1})
    assert sorted(r["_id"] for r in got) == sorted(ids[:2])


def test_find_returns_full_records_unchanged(
    emulator: DocDBEmulator, docdb_records: list[dict]
) -> None:
    client = make_client(emulator.url)
    got = client.retrieve_docdb_records()
    assert sorted(got, key=lambda r: r["_id"]) == sorted(docdb_records, key=lambda r: r["_id"])
    assert all(isinstance(r["_id"], str) for r in got)


def test_paging_through_the_page_cap(running: Any) -> None:
    emu = running(synthetic(35), page_cap=10)
    client = make_client(emu.url)
    got = client.retrieve_docdb_records(filter_query={}, projection={"name": 1})
    assert len(got) == 35 and len({r["_id"] for r in got}) == 35
    stats = emu.stats
    assert stats["find"] == 5  # 10 + 10 + 10 + 5 + the empty page
    assert stats["records_returned"] == 35

    emu.reset_stats()
    got = client.retrieve_docdb_records(limit=12, sort={"_id": -1})
    assert [r["_id"] for r in got] == [f"rec-{i:04d}" for i in range(34, 22, -1)]
    assert emu.stats["find"] == 2  # 10 (capped), then the remaining 2


def test_retrieve_with_limit_zero_returns_everything(
    running: Any, docdb_records: list[dict]
) -> None:
    emu = running(docdb_records + synthetic(1203), page_cap=500)
    client = make_client(emu.url)
    got = client.retrieve_docdb_records(limit=0, projection={"name": 1})
    assert len(got) == 1207
    assert {r["_id"] for r in got} == {r["_id"] for r in docdb_records} | {
        f"rec-{i:04d}" for i in range(1203)
    }
    assert emu.stats["find"] == 4


def test_payload_cap_truncates_find_pages(running: Any) -> None:
    records = synthetic(20)
    one = len(json.dumps(records[0], separators=(",", ":")))
    cap = 3 * one + 10  # room for three records per response
    emu = running(records, page_cap=500, max_payload_bytes=cap)
    client = make_client(emu.url)
    got = client.retrieve_docdb_records()
    assert [r["_id"] for r in got] == [r["_id"] for r in records]
    stats = emu.stats
    assert stats["find"] == 8  # ceil(20 / 3) pages + the empty page
    assert stats["payload_truncated"] == 6
    resp = requests.get(f"{emu.url}/v2/metadata_index/data_assets/find", params={"limit": "0"})
    assert resp.status_code == 200 and len(resp.content) <= cap and len(resp.json()) == 3


def test_single_record_over_the_byte_cap_is_413(
    running: Any, docdb_records: list[dict]
) -> None:
    emu = running(docdb_records, max_payload_bytes=100_000)
    client = make_client(emu.url)
    big = max(docdb_records, key=lambda r: len(json.dumps(r)))
    with pytest.raises(requests.HTTPError) as info:
        client._find_records(filter_query={"_id": big["_id"]})
    assert info.value.response.status_code == 413
    assert "payload too large" in info.value.response.json()["message"]
    # a projection makes it fit
    got = client._find_records(filter_query={"_id": big["_id"]}, projection={"name": 1})
    assert got == [{"_id": big["_id"], "name": big["name"]}]
    assert emu.stats["payload_too_large"] == 1


def test_get_records_bare_collection_url(running: Any) -> None:
    emu = running(synthetic(30), page_cap=10, max_payload_bytes=2_000)
    client = make_client(emu.url)
    got = client._get_records(filter_query={"subject.subject_id": "600003"}, projection={"name": 1})
    assert [r["name"] for r in got] == [f"asset_{i:04d}" for i in range(3, 30, 7)]
    with pytest.raises(requests.HTTPError) as info:  # no page cap here, only the byte cap
        client._get_records()
    assert info.value.response.status_code == 413
    assert emu.stats["get_records"] == 2


# ----------------------------------------------------------------------------------------------
# aggregate and count_documents
# ----------------------------------------------------------------------------------------------


def test_aggregate_group_project_match(emulator: DocDBEmulator, docdb_records: list[dict]) -> None:
    client = make_client(emulator.url)
    got = client.aggregate_docdb_records(PROJECT_PIPELINE)
    assert sorted(r["project_name"] for r in got) == sorted(
        {r["data_description"]["project_name"] for r in docdb_records}
    )
    assert all(set(r) == {"project_name"} for r in got)

    subject = docdb_records[1]["subject"]["subject_id"]
    got = client.aggregate_docdb_records(
        [
            {"$match": {"subject.subject_id": subject}},
            {
                "$group": {
                    "_id": "$subject.subject_id",
                    "n": {"$sum": 1},
                    "names": {"$push": "$name"},
                }
            },
            {"$project": {"subject_id": "$_id", "n": 1, "names": 1, "_id": 0}},
        ]
    )
    assert len(got) == 1 and got[0]["subject_id"] == subject and got[0]["n"] == 2

    # fetch_records_by_filter_list is $match + $project through aggregate
    names = [docdb_records[0]["name"], docdb_records[2]["name"]]
    got = client.fetch_records_by_filter_list("name", names, projection={"name": 1, "_id": 0})
    assert sorted(r["name"] for r in got) == sorted(names)
    assert emulator.stats["aggregate"] == 3


def test_aggregate_oversize_is_413(running: Any, docdb_records: list[dict]) -> None:
    emu = running(docdb_records, max_payload_bytes=50_000)
    client = make_client(emu.url)
    with pytest.raises(requests.HTTPError) as info:
        client.aggregate_docdb_records([{"$match": {}}])
    assert info.value.response.status_code == 413
    assert client.aggregate_docdb_records(PROJECT_PIPELINE)  # a small result still passes


def test_count_documents(emulator: DocDBEmulator, docdb_records: list[dict]) -> None:
    client = make_client(emulator.url)
    assert client._count_records() == {"total_record_count": 4, "filtered_record_count": 4}
    subject = docdb_records[1]["subject"]["subject_id"]
    assert client._count_records({"subject.subject_id": subject}) == {
        "total_record_count": 4,
        "filtered_record_count": 2,
    }
    assert emulator.stats["count_documents"] == 2


def test_versions_are_independent(emulator: DocDBEmulator) -> None:
    emulator.load(synthetic(3, prefix="old"), version="v1")
    v1 = make_client(emulator.url, version="v1")
    v2 = make_client(emulator.url, version="v2")
    assert [r["_id"] for r in v1.retrieve_docdb_records(projection={"_id": 1})] == [
        "old-0000",
        "old-0001",
        "old-0002",
    ]
    assert v2._count_records()["total_record_count"] == 4
    assert emulator.count("v1") == 3 and emulator.count() == 4
    other = make_client(emulator.url, database="other_db", collection="things")
    assert other.retrieve_docdb_records() == []


# ----------------------------------------------------------------------------------------------
# stable paging helpers
# ----------------------------------------------------------------------------------------------


def test_iter_pages_by_id_basic(running: Any) -> None:
    emu = running(synthetic(23), page_cap=500)
    client = make_client(emu.url)
    query = {"subject.subject_id": {"$ne": "600000"}}
    pages = list(iter_pages_by_id(client, query, {"name": 1}, page_size=5))
    ids = [r["_id"] for p in pages for r in p]
    assert ids == sorted(f"rec-{i:04d}" for i in range(23) if i % 7 != 0)
    assert [len(p) for p in pages] == [5, 5, 5, 4]
    assert emu.stats["find"] == 5

    # _id excluded by the caller: fetched for paging, removed from the records
    pages = list(iter_pages_by_id(client, None, {"_id": 0, "name": 1}, page_size=10))
    assert [r for p in pages for r in p] == [{"name": f"asset_{i:04d}"} for i in range(23)]


def test_iter_pages_by_id_survives_inserts_and_deletes(running: Any) -> None:
    emu = running(synthetic(60, prefix="m", start=100), page_cap=500)
    client = make_client(emu.url)
    initial = {f"m-{i:04d}" for i in range(100, 160)}
    seen: list[str] = []
    deleted: set[str] = set()
    inserted_after: set[str] = set()
    for n, page in enumerate(iter_pages_by_id(client, {}, {"name": 1}, page_size=7)):
        seen.extend(r["_id"] for r in page)
        if n == 1:
            last = page[-1]["_id"]
            # delete records both behind and ahead of the cursor
            doomed = ["m-0101", "m-0130", "m-0131", "m-0159"]
            assert emu.delete(doomed) == 4
            deleted |= {d for d in doomed if d > last}
            # insert behind the cursor (never seen) and ahead of it (seen once)
            emu.insert(synthetic(5, prefix="m", start=0))
            emu.insert(synthetic(4, prefix="m", start=200))
            inserted_after = {f"m-{i:04d}" for i in range(200, 204)}
        if n == 4:
            # skip-based paging would now repeat records; id-based paging must not
            emu.delete([seen[0], seen[1], seen[2]])
    counts = Counter(seen)
    assert all(c == 1 for c in counts.values()), "a record was returned twice"
    survivors = initial - {"m-0101", "m-0130", "m-0131", "m-0159"} - set(seen[:3])
    assert survivors <= set(seen)
    assert not (deleted & set(seen))
    assert inserted_after <= set(seen)
    assert not ({f"m-{i:04d}" for i in range(5)} & set(seen))
    assert seen == sorted(seen)


def test_iter_pages_by_id_copes_with_short_pages(running: Any) -> None:
    records = synthetic(25)
    one = len(json.dumps(records[0], separators=(",", ":")))
    emu = running(records, max_payload_bytes=4 * one + 10)
    client = make_client(emu.url)
    pages = list(iter_pages_by_id(client, {}, None, page_size=10))
    assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 4, 1]
    assert [r["_id"] for p in pages for r in p] == [r["_id"] for r in records]


def test_iter_pages_by_id_halves_the_page_size_on_413(running: Any) -> None:
    records = synthetic(20)
    one = len(json.dumps(records[0], separators=(",", ":")))
    emu = running(records, max_payload_bytes=3 * one + 10, find_overflow="413")
    client = make_client(emu.url)
    pages = list(iter_pages_by_id(client, {}, None, page_size=16))
    assert [r["_id"] for p in pages for r in p] == [r["_id"] for r in records]
    assert {len(p) for p in pages} == {2}  # 16 -> 8 -> 4 -> 2, then it stays at 2
    assert emu.stats["status"][413] == 3

    # a single record over the cap: shrink down to 1, then raise
    emu.replace([{**records[0], "pad": "y" * (5 * one)}])
    emu.reset_stats()
    with pytest.raises(requests.HTTPError) as info:
        list(iter_pages_by_id(client, {}, None, page_size=16))
    assert info.value.response.status_code == 413
    assert emu.stats["find"] == 5  # 16, 8, 4, 2, 1


def test_find_in_batches(running: Any, docdb_records: list[dict]) -> None:
    emu = running(synthetic(70) + docdb_records, page_cap=6)
    client = make_client(emu.url)
    wanted = [f"asset_{i:04d}" for i in (3, 5, 5, 9, 11, 40, 41, 42, 43, 44, 69)] + ["nope"]
    wanted.append(docdb_records[2]["name"])
    got = find_in_batches(client, "name", wanted, {"name": 1, "_id": 0}, batch_size=4)
    assert sorted(r["name"] for r in got) == sorted(set(wanted) - {"nope"})
    assert all(set(r) == {"name"} for r in got)
    # 12 unique values -> 3 batches, each one page of <= 4 then an empty page
    assert emu.stats["find"] == 6

    # an array field matched by two batches is returned once
    values = ["ecephys", "x", "y", "ecephys2"]
    got = find_in_batches(client, "data_description.modalities", values, None, batch_size=1)
    assert len(got) == 70 and len({r["_id"] for r in got}) == 70
    assert find_in_batches(client, "name", [], None) == []


# ----------------------------------------------------------------------------------------------
# faults
# ----------------------------------------------------------------------------------------------


def _hit(session: requests.Session, url: str) -> int | str:
    try:
        return session.get(url, timeout=5).status_code
    except requests.ConnectionError:
        return "drop"


def test_faults_at_seeded_rates(running: Any) -> None:
    config = FaultConfig(error_5xx_rate=0.2, error_429_rate=0.15, drop_rate=0.1, seed=42)
    emu = running(synthetic(3), faults=config)
    url = f"{emu.url}/v2/metadata_index/data_assets/count_documents"
    session = requests.Session()
    outcomes = [_hit(session, url) for _ in range(200)]

    # the same seed replays the same decisions
    injector = FaultInjector(config)
    expected = []
    for _ in range(200):
        d = injector.decide()
        expected.append("drop" if d.kind == "drop" else (d.status or 200))
    assert outcomes == expected

    counts = Counter("5xx" if isinstance(o, int) and o >= 500 else o for o in outcomes)
    assert 20 <= counts["5xx"] <= 60
    assert 15 <= counts[429] <= 50
    assert 8 <= counts["drop"] <= 35
    assert counts[200] == 200 - counts["5xx"] - counts[429] - counts["drop"]
    assert {o for o in outcomes if isinstance(o, int) and o >= 500} <= {500, 502, 503, 504}
    stats = emu.stats
    assert stats["faults_5xx"] == counts["5xx"]
    assert stats["faults_429"] == counts[429]
    assert stats["faults_drop"] == counts["drop"]
    assert stats["count_documents"] == 200 and stats["requests"] == 200

    # 429 carries Retry-After; reseeding restarts the sequence; None switches faults off
    emu.set_faults(FaultConfig(error_429_rate=1.0, retry_after_s=3))
    resp = session.get(url)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "3"
    emu.set_faults(config)
    assert [_hit(session, url) for _ in range(20)] == expected[:20]
    emu.set_faults(None)
    assert {_hit(session, url) for _ in range(10)} == {200}


def test_faults_reach_the_real_client(running: Any) -> None:
    emu = running(synthetic(3), faults=FaultConfig(drop_rate=1.0))
    client = make_client(emu.url)
    with pytest.raises(requests.ConnectionError):
        client.retrieve_docdb_records()
    emu.set_faults(FaultConfig(error_5xx_rate=1.0, seed=1))
    with pytest.raises(requests.HTTPError) as info:
        client.aggregate_docdb_records(PROJECT_PIPELINE)
    assert info.value.response.status_code in (500, 502, 503, 504)


def test_latency_and_client_timeout(running: Any) -> None:
    emu = running(synthetic(2), latency_ms=40, faults=FaultConfig(latency_ms=40))
    client = make_client(emu.url)
    t0 = time.perf_counter()
    assert client._count_records()["total_record_count"] == 2
    assert time.perf_counter() - t0 >= 0.08
    slow = make_client(emu.url, timeout=0.02)
    with pytest.raises(requests.Timeout):
        slow._count_records()


def test_fault_config_validation() -> None:
    with pytest.raises(ValueError):
        FaultConfig(error_5xx_rate=1.5)
    with pytest.raises(ValueError):
        FaultConfig(error_5xx_rate=0.6, drop_rate=0.6)
    with pytest.raises(ValueError):
        FaultConfig(latency_ms=-1)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"filter": "{bad json"}, "filter"),
        ({"projection": "[1, 2]"}, "projection"),
        ({"sort": '{"name": 2}'}, "sort"),
        ({"sort": "nope"}, "sort"),
        ({"limit": "ten"}, "limit"),
        ({"skip": "-1"}, "skip"),
        ({"filter": '{"name": {"$nosuchop": 1}}'}, "query error"),
    ],
)
def test_bad_find_params_are_400(emulator: DocDBEmulator, params: dict, fragment: str) -> None:
    resp = requests.get(f"{emulator.url}/v2/metadata_index/data_assets/find", params=params)
    assert resp.status_code == 400
    assert fragment in resp.json()["message"]


@pytest.mark.parametrize("body", [b"not json", b'{"$match": {}}', b"", b"[1, 2]"])
def test_bad_aggregate_body_is_400(emulator: DocDBEmulator, body: bytes) -> None:
    resp = requests.post(
        f"{emulator.url}/v2/metadata_index/data_assets/aggregate",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400 and resp.json()["message"]


def test_bad_count_filter_is_400_and_write_stages_refused(emulator: DocDBEmulator) -> None:
    base = f"{emulator.url}/v2/metadata_index/data_assets"
    resp = requests.get(f"{base}/count_documents", params={"filter": "{"})
    assert resp.status_code == 400
    resp = requests.post(f"{base}/aggregate", json=[{"$out": "elsewhere"}])
    assert resp.status_code == 400 and "$out" in resp.json()["message"]


def test_unknown_paths_and_methods(emulator: DocDBEmulator) -> None:
    for path in (
        "/nope",
        "/v2/metadata_index/data_assets/insert_one",
        "/x/metadata_index/data_assets/find",
        "/v2/a/b/c/d",
    ):
        resp = requests.get(emulator.url + path)
        assert resp.status_code == 404, path
        assert "not found" in resp.json()["message"]
    resp = requests.post(emulator.url + "/v2/metadata_index/data_assets/find", json={})
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET"
    resp = requests.get(emulator.url + "/v2/metadata_index/data_assets/aggregate")
    assert resp.status_code == 405 and resp.headers["Allow"] == "POST"
    assert requests.get(emulator.url + "/health").json()["status"] == "ok"
    stats = emulator.stats
    assert stats["not_found"] == 4 and stats["status"][404] == 4 and stats["status"][405] == 2


# ----------------------------------------------------------------------------------------------
# data helpers, encoding, concurrency
# ----------------------------------------------------------------------------------------------


def test_load_file_formats(tmp_path: Path, docdb_records: list[dict]) -> None:
    array = tmp_path / "array.json"
    array.write_text(json.dumps(docdb_records[:2]))
    lines = tmp_path / "more.jsonl.gz"
    lines.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in synthetic(5)).encode()))
    single = tmp_path / "one.json"
    single.write_text(json.dumps(docdb_records[3], indent=2))
    (tmp_path / "ignored.txt").write_text("not records")
    emu = DocDBEmulator()
    assert emu.load_file(array) == 2
    assert emu.load_file(lines) == 5
    assert emu.load_file(single) == 1
    assert emu.count() == 8
    assert len(read_records_file(tmp_path)) == 8  # a directory reads every records file
    assert emu.load_file(array) == 2 and emu.count() == 8  # loading again upserts by _id


def test_encoding_and_generated_ids(emulator: DocDBEmulator) -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    (new_id,) = emulator.insert([{"name": "dated", "acquisition": {"start": when}}])
    assert isinstance(new_id, str)
    client = make_client(emulator.url)
    (rec,) = client._find_records(filter_query={"name": "dated"})
    assert rec["_id"] == new_id
    assert rec["acquisition"]["start"].startswith("2024-05-06T07:08:09")
    assert emulator.replace([{"_id": new_id, "name": "renamed"}]) == 1
    assert client._count_records({"name": "renamed"})["filtered_record_count"] == 1
    with pytest.raises(Exception):
        emulator.insert([{"_id": new_id}])  # duplicate id


def test_concurrent_requests_are_counted(running: Any) -> None:
    emu = running(synthetic(50), page_cap=20)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            client = make_client(emu.url)
            for _ in range(5):
                assert len(client.retrieve_docdb_records(projection={"name": 1})) == 50
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = emu.stats
    assert stats["find"] == 4 * 5 * 4 and stats["requests"] == stats["find"]
    assert stats["status"] == {200: 80}


def test_stop_closes_the_server(docdb_records: list[dict]) -> None:
    emu = DocDBEmulator(docdb_records).start()
    client = make_client(emu.url)
    assert client._count_records()["total_record_count"] == 4
    emu.stop()
    assert not emu.running
    with pytest.raises(requests.ConnectionError):
        client._count_records()
    with pytest.raises(RuntimeError):
        _ = emu.url


# ----------------------------------------------------------------------------------------------
# make_client
# ----------------------------------------------------------------------------------------------


def test_make_client_urls(monkeypatch: pytest.MonkeyPatch, emulator: DocDBEmulator) -> None:
    monkeypatch.delenv("BDC_DOCDB_URL", raising=False)
    client = make_client()
    assert client.host == "api.allenneuraldynamics.org"
    assert client._find_url == f"{DEFAULT_DOCDB_URL}/v2/metadata_index/data_assets/find"
    assert make_client("https://docdb.example.org/stage/", "v1").host == "docdb.example.org/stage"
    assert resolve_docdb_url("docdb.example.org") == ("https", "docdb.example.org")
    with pytest.raises(ValueError):
        make_client("ftp://example.org")

    # the env var is read at call time; the emulator is reached through the https rewrite
    monkeypatch.setenv("BDC_DOCDB_URL", emulator.url)
    client = make_client()
    assert client.host == emulator.host
    assert client._count_url.startswith("https://127.0.0.1:")
    assert client._count_records()["total_record_count"] == 4
    # the CA-bundle variables of this environment do not get in the way of plain http
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/nonexistent/ca.pem")
    assert make_client(emulator.url)._count_records()["filtered_record_count"] == 4


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def test_cli_parses_args() -> None:
    args = cli.build_parser().parse_args(
        [
            "--records", "a.json", "--records", "b.jsonl.gz", "--demo", "--port", "8765",
            "--page-cap", "100", "--max-payload-bytes", "6000000", "--latency-ms", "5",
            "--error-rate-5xx", "0.1", "--error-rate-429", "0.05", "--drop-rate", "0.01",
            "--seed", "3",
        ]
    )
    assert args.records == ["a.json", "b.jsonl.gz"]
    assert args.demo and args.port == 8765 and args.page_cap == 100
    assert args.max_payload_bytes == 6_000_000 and args.latency_ms == 5.0
    faults = (args.error_rate_5xx, args.error_rate_429, args.drop_rate, args.seed)
    assert faults == (0.1, 0.05, 0.01, 3)
    defaults = cli.build_parser().parse_args([])
    assert defaults.records == [] and not defaults.demo and defaults.port == 0
    assert defaults.page_cap == 500 and defaults.max_payload_bytes is None
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--drop-rate", "2"])
    with pytest.raises(SystemExit):
        cli.main(["--error-rate-5xx", "0.7", "--drop-rate", "0.7"])


def test_cli_serves_records_until_interrupted(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    docdb_records: list[dict],
) -> None:
    path = tmp_path / "records.json"
    path.write_text(json.dumps(docdb_records))
    seen: dict[str, Any] = {}

    def fake_wait() -> None:
        url = capsys.readouterr().out.split(" at ")[1].split()[0]
        seen["count"] = make_client(url)._count_records()["total_record_count"]
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_wait_forever", fake_wait)
    assert cli.main(["--records", str(path), "--page-cap", "2"]) == 0
    assert seen["count"] == 4


def test_cli_demo(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "_DEMO_MODULE", "bdc_tables_docdb_no_such_demo.sample")
    assert cli.main(["--demo"]) == 2
    assert "--demo needs the module bdc_tables_docdb_no_such_demo.sample" in capsys.readouterr().err

    fake = types.ModuleType("bdc_test_fake_demo_sample")
    fake.load_sample_records = lambda: synthetic(6)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bdc_test_fake_demo_sample", fake)
    monkeypatch.setattr(cli, "_DEMO_MODULE", "bdc_test_fake_demo_sample")
    monkeypatch.setattr(cli, "_wait_forever", lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli.main(["--demo"]) == 0
    assert "serving 6 records" in capsys.readouterr().out


def test_one_client_serves_as_many_threads_as_a_sync_runs_without_dropping_connections(
    running: Any, caplog: Any
) -> None:
    """A sync's partition builds (up to ``default_workers()`` threads) share one client: its
    session keeps a connection per thread instead of urllib3's default 10 (which discards the
    others, warning "Connection pool is full", and reconnects for every request)."""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from bdc.runner.executors import default_workers

    emu = running(synthetic(40), latency_ms=30)
    client = make_client(emu.url)
    threads = min(32, max(default_workers(), 16))
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda i: client.retrieve_docdb_records(
                filter_query={"_id": f"rec-{i % 40:04d}"}, projection={"name": 1}), range(threads * 3)))
    assert all(len(r) == 1 for r in results)
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
