"""Readers of an S3 cache: the local read-through cache, objects written for browsers, offline reads.

Against moto's S3 server on loopback; requests are counted on the server's side
(:class:`s3counting.CountingS3Server`).
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from bdc_samples import typed_rows, typed_specs
from s3counting import CountingS3Server, Request

pytestmark = pytest.mark.usefixtures("typed_plugin")

VERSION = "bdc-v0.36"


@attrs.define
class S3:
    """A bucket on a counting moto server, and the cache URL in it."""

    server: CountingS3Server
    bucket: str
    url: str
    client: Any

    @property
    def prefix(self) -> str:
        return self.url.split("/", 3)[3]

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}"

    def requests(self) -> list[Request]:
        return self.server.snapshot()


@pytest.fixture(scope="module")
def counting_server() -> Iterator[CountingS3Server]:
    with CountingS3Server() as server:
        yield server


def _bucket_on(server: CountingS3Server, monkeypatch: pytest.MonkeyPatch) -> S3:
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")
    bucket = f"bdc-rc-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3(server, bucket, f"s3://{bucket}/data-asset-cache", client)


@pytest.fixture
def s3(s3_env: str, counting_server: CountingS3Server, monkeypatch: pytest.MonkeyPatch) -> S3:
    """A fresh bucket on the counting server; ``s3_env`` gave credentials and a local store under tmp_path."""
    monkeypatch.delenv("BDC_LOCAL_CACHE_TTL", raising=False)
    monkeypatch.delenv("BDC_LOCAL_CACHE_MAX", raising=False)
    monkeypatch.delenv("BDC_LOCAL_CACHE", raising=False)
    return _bucket_on(counting_server, monkeypatch)


@contextlib.contextmanager
def another_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> Iterator[Any]:
    """A writer elsewhere: its writes cannot tell this machine's local copies."""
    from bdc.cache import Cache

    with monkeypatch.context() as m:
        m.setenv("BDC_LOCAL_CACHE_DIR", str(tmp_path / "another-machine"))
        yield Cache(url)


def big_assets(rows: int = 150_000, seed: int = 7) -> Any:
    """An ``assets`` table of a few MB (random names and scores do not compress)."""
    import datetime as dt
    import random

    import pyarrow as pa

    rnd = random.Random(seed)
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    return pa.table({
        "name": [f"{rnd.getrandbits(96):024x}" for _ in range(rows)],
        "subject_id": [f"{600000 + i % 900}" for i in range(rows)],
        "n_files": [rnd.randrange(1 << 40) for _ in range(rows)],
        "score": [rnd.random() for _ in range(rows)],
        "is_ok": [i % 3 == 0 for i in range(rows)],
        "created": [t0 + dt.timedelta(seconds=rnd.randrange(10**8)) for _ in range(rows)],
        "tags": [["x"] if i % 2 else [] for i in range(rows)],
    })


def event_rows(subjects: int, per: int = 20, revision: int = 0) -> list[dict[str, Any]]:
    return [{"name": f"e{revision}-{s}-{i}", "subject_id": f"{s:04d}", "n_files": i + revision, "score": 0.5,
             "is_ok": True, "created": None, "tags": ["t"]} for s in range(subjects) for i in range(per)]


def store() -> Any:
    from bdc.backends.readcache import get_store

    return get_store()


# -- first and second reads ------------------------------------------------------------------------


def test_first_read_downloads_once_and_later_reads_are_local(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    import bdc
    from bdc.cache import Cache

    writer = Cache(s3.url)
    writer.put("assets", typed_rows())
    writer.put("events", typed_rows())
    monkeypatch.setenv("BDC_CACHE", s3.url)

    s3.server.reset()
    first = bdc.get("assets")
    (req,) = s3.requests()  # one GET of the key the layout gives: no registry, no HEAD, no listing
    assert (req.method, req.path, req.range, req.if_none_match) == (
        "GET", f"/{s3.bucket}/{s3.key(VERSION + '/assets.pqt')}", None, None)
    s3.server.reset()
    second = bdc.get("assets")
    assert s3.requests() == []  # within the freshness window: no request at all
    assert second.equals(first) and len(first) == 5
    assert first["subject_id"].tolist() == ["0012", "0012", "692478", "692478", "a b"]

    # one partition: the registry (which lists the partition's files: a partition may have
    # several, and a sync may be writing new ones), then that object (no listing), then local
    s3.server.reset()
    part = bdc.get("events", subject_id="0012")
    assert [(r.method, r.path) for r in s3.requests()] == [
        ("GET", f"/{s3.bucket}/{s3.key(VERSION + '/cache_registry.json')}"),
        ("GET", f"/{s3.bucket}/{s3.key(VERSION + '/events/subject_id=0012/data.pqt')}")]
    s3.server.reset()
    assert bdc.get("events", subject_id="0012").equals(part) and len(part) == 2
    assert s3.requests() == []

    # no such partition: the registry (read through, still fresh) lists none: no request
    s3.server.reset()
    none = bdc.get("events", subject_id="999", columns=["name"])
    assert list(none.columns) == ["name"] and len(none) == 0
    assert s3.requests() == []
    s3.server.reset()
    assert len(bdc.get("events", subject_id="999")) == 0
    assert s3.requests() == []  # the absence is remembered for the window too

    # the whole partitioned table: the registry's file list, no listing; then nothing
    s3.server.reset()
    whole = bdc.get("events")
    assert len(whole) == 5 and not any(r.is_listing for r in s3.requests())
    assert len(s3.requests()) == 2  # the two partitions not read yet (the registry is local)
    query = "SELECT count(*) AS n FROM events JOIN assets USING (name)"
    assert bdc.sql(query)["n"].tolist() == [4]  # (the first query also learns "count" is no custom table)
    s3.server.reset()
    bdc.get("events")
    bdc.sql(query)
    assert s3.requests() == []

    # after the window: one conditional request per object (304: no body), still no listing
    monkeypatch.setenv("BDC_LOCAL_CACHE_TTL", "0")
    s3.server.reset()
    assert bdc.get("assets").equals(first)
    (req,) = s3.requests()
    assert req.if_none_match and req.method == "GET"
    s3.server.reset()
    bdc.get("events")  # the registry revalidated (304); its ETags vouch for every partition copy
    assert [r.path.rsplit("/", 1)[-1] for r in s3.requests()] == ["cache_registry.json"]


def test_not_built_and_missing_bucket_are_errors_not_empty(s3: S3) -> None:
    from bdc.cache import Cache
    from bdc.errors import BdcError, TableNotBuiltError

    cache = Cache(s3.url)
    with pytest.raises(TableNotBuiltError):
        cache.get("assets")
    with pytest.raises(TableNotBuiltError):
        cache.get("events", subject_id="0012")
    with pytest.raises(TableNotBuiltError):
        cache.get("events")
    with pytest.raises(BdcError):
        Cache("s3://no-such-bucket-anywhere/x").get("assets")


def test_projected_read_downloads_only_the_needed_byte_ranges(s3: S3) -> None:
    import pyarrow.compute as pc

    from bdc.cache import Cache

    table = big_assets()
    Cache(s3.url).put("assets", table)
    size = s3.client.head_object(Bucket=s3.bucket, Key=s3.key(f"{VERSION}/assets.pqt"))["ContentLength"]
    assert size > 2_000_000
    reader = Cache(s3.url)

    s3.server.reset()
    got = reader.get("assets", columns=["subject_id"], where={"is_ok": True}, arrow=True)
    requests = s3.requests()
    assert 2 <= len(requests) <= 3 and all(r.range for r in requests)  # the tail, then the column chunks
    assert got.column("subject_id").to_pylist() == table.filter(pc.field("is_ok")).column("subject_id").to_pylist()
    info = store().info()
    assert info["partial"] == 1 and info["bytes"] < 0.4 * size

    s3.server.reset()
    reader.get("assets", columns=["subject_id"])
    assert s3.requests() == []  # those columns are local now
    scores = reader.get("assets", columns=["score"], arrow=True)
    assert scores.column("score").equals(table.column("score"))
    assert 1 <= len(s3.requests()) <= 2 and all(r.range and r.if_match for r in s3.requests())

    s3.server.reset()
    whole = reader.get("assets", arrow=True)  # everything: one plain GET; the copy is whole now
    assert [r.range for r in s3.requests()] == [None]
    assert whole.num_rows == table.num_rows and whole.column("name").equals(table.column("name"))
    assert store().info()["partial"] == 0
    s3.server.reset()
    reader.get("assets", columns=["tags"])
    assert s3.requests() == []


# -- invalidation ------------------------------------------------------------------------------------


def test_a_new_publish_is_seen_after_the_window_and_on_the_next_registry_read(
        s3: S3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bdc.cache import Cache

    with another_machine(monkeypatch, tmp_path, s3.url) as writer:
        writer.put("assets", typed_rows())
        writer.put("events", event_rows(3, revision=1))
    reader = Cache(s3.url)
    assert len(reader.get("assets")) == 5
    assert reader.get("events", subject_id="0001")["n_files"].tolist()[0] == 1
    assert reader.get("events", subject_id="0002")["n_files"].tolist()[0] == 1
    before = reader.registry()
    updated = {e["name"]: e["build"] for e in before["tables"]}

    with another_machine(monkeypatch, tmp_path, s3.url) as writer:
        writer.put("assets", typed_rows()[:2], note="second sync")
        rows = [r for r in event_rows(3, revision=1) if r["subject_id"] != "0001"] + \
            [r for r in event_rows(3, revision=2) if r["subject_id"] == "0001"]
        writer.put("events", rows)

    # within the window the copy answers (no request): up to the window's age stale, by design
    s3.server.reset()
    assert len(reader.get("assets")) == 5 and s3.requests() == []

    # the registry is always revalidated: the new sync shows, and it vouches for the partitions
    s3.server.reset()
    after = reader.registry()
    assert len(s3.requests()) == 1 and s3.requests()[0].if_none_match
    assert after != before and {e["name"]: e["build"] for e in after["tables"]} != updated
    assert reader.registry_entry("assets")["build"]["note"] == "second sync"
    s3.server.reset()
    assert reader.get("events", subject_id="0001")["n_files"].tolist()[0] == 2  # changed: fetched again
    assert len(s3.requests()) == 1
    s3.server.reset()
    assert reader.get("events", subject_id="0002")["n_files"].tolist()[0] == 1  # same ETag: still fresh
    assert s3.requests() == []

    # an unpartitioned table after the window: one conditional GET brings the new object
    monkeypatch.setenv("BDC_LOCAL_CACHE_TTL", "0.2")
    import time

    time.sleep(0.25)
    s3.server.reset()
    assert len(reader.get("assets")) == 2
    assert len(s3.requests()) == 1
    s3.server.reset()
    assert len(reader.get("assets")) == 2 and s3.requests() == []


def test_writes_from_this_process_are_read_back_at_once(s3: S3) -> None:
    from bdc.cache import Cache

    reader, writer = Cache(s3.url), Cache(s3.url)
    writer.put("events", event_rows(4))
    assert len(reader.get("events")) == 80
    assert len(reader.get("events", subject_id="0003")) == 20
    writer.put("events", event_rows(2))  # partitions 0002 and 0003 are deleted
    assert len(reader.get("events", subject_id="0003")) == 0
    assert sorted(reader.get("events")["subject_id"].unique()) == ["0000", "0001"]
    writer.put("assets", typed_rows())
    assert len(reader.get("assets")) == 5
    writer.put("assets", typed_rows()[:1])
    assert len(reader.get("assets")) == 1


# -- size bound -----------------------------------------------------------------------------------------


def test_least_recently_used_copies_are_evicted_at_the_bound(
        s3: S3, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from bdc.cache import Cache
    from bdc.cli import main

    cache = Cache(s3.url)
    cache.put("events", event_rows(12))
    sizes = [f["size"] for f in cache.registry_entry("events")["files"]]
    registry = len(cache.backend.read_bytes(cache.layout.registry_key))  # partition reads consult it
    bound = 3 * max(sizes) + registry + 16
    assert 4 * min(sizes) + registry > bound
    monkeypatch.setenv("BDC_LOCAL_CACHE_MAX", str(bound))
    for value in range(12):
        assert len(cache.get("events", subject_id=f"{value:04d}")) == 20
        assert store().info()["bytes"] <= bound
    assert store().info()["objects"] == 4  # the registry and the three most recent partitions
    def partition_requests() -> list[Any]:
        return [r for r in s3.requests() if "/events/" in r.path]

    s3.server.reset()
    cache.get("events", subject_id="0011")
    assert partition_requests() == []  # recently used: kept
    cache.get("events", subject_id="0000")
    assert len(partition_requests()) == 1  # least recently used: evicted, downloaded again

    # a read bigger than the bound still answers (its own objects are never evicted under it)
    assert len(cache.get("events")) == 240
    assert store().info()["bytes"] > bound
    assert len(cache.get("events", subject_id="0005")) == 20
    assert store().info()["bytes"] <= bound

    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "objects:          4" in out and s3.bucket in out
    assert main(["cache", "clear"]) == 0
    assert "removed 4 local copies" in capsys.readouterr().out
    assert store().info()["objects"] == 0
    assert main(["cache", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bytes"] == 0
    s3.server.reset()
    assert len(cache.get("events", subject_id="0005")) == 20 and len(partition_requests()) == 1


def test_size_settings_are_checked() -> None:
    from bdc.backends.readcache import LocalCacheError, parse_size

    assert parse_size("2GB") == 2_000_000_000
    assert parse_size("2GiB") == parse_size("2G") == 2 * 1024**3
    assert parse_size("1.5 MB") == 1_500_000 and parse_size("4096") == 4096
    with pytest.raises(LocalCacheError, match="BDC_LOCAL_CACHE_MAX"):
        parse_size("lots", "BDC_LOCAL_CACHE_MAX")


# -- several processes --------------------------------------------------------------------------------


def _reader_process(url: str, barrier: Any, results: Any) -> None:
    """A reader in a fresh (spawned) interpreter: the same tables, read at the same moment."""
    import hashlib

    from bdc import plugins
    from bdc.cache import Cache
    from bdc.testing import specs_plugin

    plugins.register(specs_plugin(typed_specs()), name="typed-tables", distribution="bdc-test-typed")
    barrier.wait()
    cache = Cache(url)
    out = {}
    try:
        for label, frame in [
            ("assets", cache.get("assets", arrow=True)),
            ("subjects", cache.get("assets", columns=["subject_id"], arrow=True)),
            ("events", cache.get("events", arrow=True).sort_by("name")),
            ("one", cache.get("events", subject_id="0007", arrow=True)),
        ]:
            out[label] = (frame.num_rows, hashlib.sha1(str(frame.to_pylist()).encode()).hexdigest())
    except Exception as exc:  # reported to the parent
        out = {"error": f"{type(exc).__name__}: {exc}"}
    results.put(out)


def test_concurrent_readers_in_several_processes(s3: S3) -> None:
    import hashlib
    import multiprocessing

    import pyarrow.parquet as pq

    from bdc.cache import Cache

    writer = Cache(s3.url)
    writer.put("assets", big_assets(40_000))
    writer.put("events", event_rows(24))
    expected = {}
    for label, frame in [
        ("assets", writer.get("assets", arrow=True)),
        ("subjects", writer.get("assets", columns=["subject_id"], arrow=True)),
        ("events", writer.get("events", arrow=True).sort_by("name")),
        ("one", writer.get("events", subject_id="0007", arrow=True)),
    ]:
        expected[label] = (frame.num_rows, hashlib.sha1(str(frame.to_pylist()).encode()).hexdigest())
    store().clear()  # the readers start cold
    s3.server.reset()

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_reader_process, args=(s3.url, barrier, results)) for _ in range(3)]
    for p in procs:
        p.start()
    outs = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(out == expected for out in outs), outs
    # nothing downloaded twice: one GET per object (the table, 24 partitions, the registry) for all three
    assert s3.server.count("GET") == 26 and s3.server.count() == 26

    # the store is sound: every indexed copy is there, whole copies are valid parquet, no temp left
    info = store().info()
    assert info["objects"] == 26 and info["partial"] == 0
    root = store().root
    for path, size, ranges in store()._query("SELECT path, size, ranges FROM objects WHERE path IS NOT NULL"):
        assert (root / path).stat().st_size == size
        if ranges is None and path.endswith(".pqt"):
            pq.read_metadata(root / path)
    assert not list((root / ".tmp").glob("*"))


# -- objects written for browsers --------------------------------------------------------------------


def test_every_object_a_sync_writes_carries_fitting_headers(
        s3: S3, tmp_path: Path, bdc_plugin: Any) -> None:
    import syncplugin

    from bdc.cache import Cache
    from bdc.runner import RetryPolicy, sync

    source = syncplugin.make_source(tmp_path / "source")
    bdc_plugin(syncplugin.SyncPlugin(source), name="syncplugin-readcache", distribution="bdc-test-sync")
    cache = Cache(s3.url)
    report = sync(cache, retry=RetryPolicy(attempts=2, base=0.005, cap=0.01))
    assert report.ok, report.summary()
    cache.put("assets", typed_rows())
    cache.custom("my_notes", typed_rows())

    keys = [o["Key"] for o in s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"]]
    kinds = set()
    for key in keys:
        head = s3.client.head_object(Bucket=s3.bucket, Key=key)
        if "/_runs/" in key:
            expected = ("application/json", "public, max-age=31536000, immutable")
            kinds.add("run report")
        elif key.endswith(".pqt"):
            expected = ("application/vnd.apache.parquet", "no-cache")
            kinds.add("parquet")
        else:
            assert key.endswith(".json"), key
            expected = ("application/json", "no-cache")
            kinds.add("json")
        assert (head["ContentType"], head["CacheControl"]) == expected, key
    assert kinds == {"run report", "parquet", "json"}
    assert s3.key("cache_versions.json") in keys and s3.key(f"{VERSION}/cache_registry.json") in keys


def test_headers_by_kind_of_object() -> None:
    from bdc.backends.base import object_headers

    assert object_headers("bdc-v0.36/_runs/2024-01-01T00-00-00Z-abc.json") == {
        "ContentType": "application/json", "CacheControl": "public, max-age=31536000, immutable"}
    assert object_headers("_bdc_sync.lock")["CacheControl"] == "no-store"
    assert object_headers("bdc-v0.36/t/subject_id=1/data.pqt") == {
        "ContentType": "application/vnd.apache.parquet", "CacheControl": "no-cache"}
    assert object_headers("cache_versions.json")["CacheControl"] == "no-cache"
    assert object_headers("bdc-v0.36/report.html")["ContentType"] == "text/html; charset=utf-8"
    assert object_headers("weird.name/noext")["ContentType"] == "application/octet-stream"


def test_a_browser_finds_every_file_from_the_registry_without_listing(s3: S3) -> None:
    """Plain unsigned HTTP GETs, as a web page would make: the registry, then each file it lists."""
    import io

    import pyarrow.parquet as pq

    from bdc.cache import Cache

    s3.client.put_bucket_policy(Bucket=s3.bucket, Policy=json.dumps({  # a public bucket, like the real one
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::{s3.bucket}/*"}]}))
    cache = Cache(s3.url)
    cache.put("events", typed_rows())  # partition values "0012", "692478" and "a b"
    cache.put("assets", typed_rows())
    base = f"{s3.server.endpoint}/{s3.bucket}/{urllib.parse.quote(s3.prefix)}/{VERSION}/"

    def fetch(url: str) -> tuple[bytes, Any]:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=10) as response:
            return response.read(), response.headers

    s3.server.reset()
    body, headers = fetch(base + "cache_registry.json")
    assert headers["Content-Type"] == "application/json" and headers["Cache-Control"] == "no-cache"
    registry = json.loads(body)
    rows = 0
    for entry in registry["tables"]:
        assert {"name", "description", "location", "partitioned", "partition_key", "type", "columns"} <= set(entry)
        assert entry["files"], entry["name"]
        for item in entry["files"]:
            url = urllib.parse.urljoin(base, "/".join(urllib.parse.quote(p, safe="") for p in item["path"].split("/")))
            data, headers = fetch(url)
            assert len(data) == item["size"] and headers["ETag"] == item["etag"]
            assert headers["Content-Type"] == "application/vnd.apache.parquet"
            rows += pq.read_table(io.BytesIO(data)).num_rows
    assert rows == 10
    events = next(e for e in registry["tables"] if e["name"] == "events")
    assert [f["value"] for f in events["files"]] == ["0012", "692478", "a b"]
    assert not any(r.is_listing for r in s3.requests())


# -- offline -------------------------------------------------------------------------------------------


def test_offline_reads_of_local_copies_warn_and_answer(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bdc.backends.readcache import StaleCacheWarning
    from bdc.cache import Cache
    from bdc.errors import BackendUnavailableError, BdcError

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with CountingS3Server() as server:
        s3 = _bucket_on(server, monkeypatch)
        cache = Cache(s3.url)
        cache.put("assets", typed_rows())
        cache.put("events", typed_rows())
        cache.custom("notes", typed_rows())  # never read here
        assets = cache.get("assets")
        one = cache.get("events", subject_id="0012")
        whole = cache.get("events")
        cache.registry()
        cache.versions()
    monkeypatch.setenv("BDC_LOCAL_CACHE_TTL", "0")  # every read tries to revalidate

    reader = Cache(s3.url)
    with pytest.warns(StaleCacheWarning, match="cannot be reached"):
        assert reader.get("assets").equals(assets)
    with pytest.warns(StaleCacheWarning):
        assert reader.get("events", subject_id="0012").equals(one)
    with pytest.warns(StaleCacheWarning):
        assert reader.get("events").equals(whole)
    with pytest.warns(StaleCacheWarning):
        assert [e["name"] for e in reader.registry()["tables"]] == ["assets", "events"]
    with pytest.warns(StaleCacheWarning):
        assert reader.versions() == [VERSION]
    # what was never read is an error, never an empty answer
    with pytest.raises(BackendUnavailableError, match="no local copy") as caught:
        reader.custom("notes")
    assert isinstance(caught.value, BdcError)


def test_local_cache_off_reads_s3_directly(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    from bdc.cache import Cache

    monkeypatch.setenv("BDC_LOCAL_CACHE", "off")
    cache = Cache(s3.url)
    cache.put("events", typed_rows())
    assert len(cache.get("events", subject_id="0012")) == 2 and len(cache.get("events")) == 5
    assert not (Path(os.environ["BDC_LOCAL_CACHE_DIR"]) / "index.sqlite").exists()


def test_range_arithmetic() -> None:
    from bdc.backends.ranges import coalesce, normalize, subtract, total, union

    assert normalize([(5, 9), (0, 2), (2, 3), (8, 12), (20, 20)]) == [(0, 3), (5, 12)]
    assert subtract([(0, 10), (20, 30)], [(2, 4), (8, 25)]) == [(0, 2), (4, 8), (25, 30)]
    assert subtract([(0, 10)], [(0, 10)]) == []
    assert union([(0, 1)], [(1, 2)]) == [(0, 2)] and total([(0, 3), (2, 5)]) == 5
    assert coalesce([(0, 10), (15, 20), (100, 110)], gap=5) == [(0, 20), (100, 110)]


def test_unreadable_local_copy_is_fetched_again(s3: S3) -> None:
    from bdc.backends.readcache import StaleCacheWarning
    from bdc.cache import Cache

    cache = Cache(s3.url)
    cache.put("assets", typed_rows())
    assert len(cache.get("assets")) == 5
    (path,) = [store().root / p for (p,) in store()._query("SELECT path FROM objects WHERE path LIKE '%assets%'")]
    path.write_bytes(b"truncated")  # a damaged copy (wrong size): never read as data
    s3.server.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleCacheWarning)
        assert len(cache.get("assets")) == 5
    assert len(s3.requests()) == 1
