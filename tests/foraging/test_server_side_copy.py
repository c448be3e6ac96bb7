"""Server-side copies: a foraging source in S3 mirrored into an S3 cache on the same S3 service is
copied by S3 itself (CopyObject from the source bucket into the cache's staging), the bytes never
passing through this process; a source on another S3 service is streamed; a server-side copy the
service refuses (a real ``403 AccessDenied`` from a proxy in front of moto) is streamed instead,
and this process stops asking; a transient failure of one (``503 SlowDown``) is retried, not
streamed. Every published object is byte for byte the source object."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from bdc_tables_foraging.tables import EVENTS, TRIALS
from test_copy_path import published, source_files, sync

PARTITIONED = (TRIALS, EVENTS)


@pytest.fixture(autouse=True)
def _no_refusals_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no refused server-side copies remembered (they are per process)."""
    import bdc.copying as copying

    monkeypatch.setattr(copying, "_refused", set(), raising=False)


def copied(db: Any, name: str) -> list[tuple[str, list[Path]]]:
    """``(subject, source files)`` of the partitions of ``name`` published as byte copies: all but
    the drift subject's trials (its old file has ``int32`` columns: rewritten)."""
    return [(sid, source_files(db.root, name, sid)) for sid in db.subject_ids
            if (name, sid) != (TRIALS, db.drift_subject)]


def files_copied(db: Any, name: str) -> int:
    """How many source files of ``name`` are published as byte copies."""
    return sum(len(paths) for _sid, paths in copied(db, name))


def copied_bytes(db: Any, name: str) -> int:
    """The size of the source files of ``name`` published as byte copies."""
    return sum(p.stat().st_size for _sid, paths in copied(db, name) for p in paths)


def new_cache(client: Any = None) -> Any:
    """A cache in a fresh bucket: of the S3 service the environment names, else of ``client``'s
    (the cache's own S3 client)."""
    import boto3

    from bdc.backends.s3 import S3Backend
    from bdc.cache import Cache

    bucket = f"bdc-cache-{uuid.uuid4().hex[:12]}"
    (client or boto3.client("s3")).create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/data-asset-cache"
    return Cache(url) if client is None else Cache(backend=S3Backend(url, client=client))


def assert_source_objects(cache: Any, db: Any, source: Any, base: str) -> None:
    """Every copied partition's published objects are the source objects (under ``base``, read
    with the boto3 client ``source``): same bodies, same ETags, the cache's headers."""
    from bdc.backends.base import object_headers

    bucket, _, prefix = base[len("s3://"):].partition("/")
    for name in PARTITIONED:
        spec = cache.spec(name)
        for sid, paths in copied(db, name):
            keys = [f"{prefix}/{p.relative_to(db.root).as_posix()}" for p in paths]
            objects = [source.get_object(Bucket=bucket, Key=k) for k in keys]
            assert published(cache, name, sid) == [o["Body"].read() for o in objects], (name, sid)
            for key, obj in zip(cache.layout.partition_keys(spec, sid, len(keys)), objects):
                head = cache.backend.client.head_object(Bucket=cache.backend.bucket, Key=cache.backend._key(key))
                assert head["ETag"] == obj["ETag"]
                assert (head["ContentType"], head["CacheControl"]) == tuple(object_headers(key).values())


def assert_reads_back(cache: Any, db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bdc.get`` (the cache as the default one) reads the source's rows."""
    import pandas as pd
    import pyarrow.parquet as pq

    import bdc
    from bdc import api
    from bdc.config import default_cache_url

    monkeypatch.setenv("BDC_CACHE", cache.url)
    api._caches.clear()
    api._caches[default_cache_url()] = cache  # with its own S3 client
    assert len(bdc.get("df_trials")) == db.n_trials
    assert len(bdc.get("df_events")) == db.n_events
    sid, paths = max(copied(db, EVENTS), key=lambda item: len(item[1]))
    got = bdc.get("df_events", subject_id=sid)
    expected = pd.concat([pq.read_table(p, partitioning=None).to_pandas() for p in paths], ignore_index=True)
    columns = sorted(expected.columns)
    assert sorted(got.columns) == columns
    pd.testing.assert_frame_equal(got[columns].sort_values(columns).reset_index(drop=True),
                                  expected[columns].sort_values(columns).reset_index(drop=True),
                                  check_dtype=False)


def test_s3_to_s3_mirror_copies_server_side(s3_source, monkeypatch):
    """Source and cache in two buckets of one S3 service: every conforming file is a server-side
    copy of the source object; the report counts them and the bytes they hold."""
    import boto3

    db, base = s3_source
    cache = new_cache()
    report = sync(cache)
    for name in PARTITIONED:
        counters = report.table(name).counters
        assert counters["files_copied_server_side"] == counters["files_copied"] == files_copied(db, name)
    # every event file is copied: the table's bytes are the source files' (from their footer reads)
    assert report.table(EVENTS).bytes == copied_bytes(db, EVENTS)
    assert_source_objects(cache, db, boto3.client("s3"), base)
    assert_reads_back(cache, db, monkeypatch)


def test_a_source_on_another_s3_service_is_streamed(s3_source, other_s3_server, monkeypatch):
    """The source on one S3 endpoint, the cache on another: no server-side copy (the cache's
    service cannot see the source bucket), the files are streamed, byte for byte."""
    import boto3

    from bdc_tables_foraging.filesystem import resolve_location

    db, base = s3_source
    cache = new_cache(boto3.client("s3", endpoint_url=other_s3_server, region_name="us-east-1"))
    assert not cache.backend.same_service(resolve_location(base)[0])
    report = sync(cache)
    for name in PARTITIONED:
        counters = report.table(name).counters
        assert counters["files_copied"] == files_copied(db, name)
        assert "files_copied_server_side" not in counters
    assert report.table(EVENTS).bytes == copied_bytes(db, EVENTS)
    assert_source_objects(cache, db, boto3.client("s3"), base)
    assert_reads_back(cache, db, monkeypatch)


def _cross_bucket_copy(method: str, path: str, headers: Any) -> bool:
    """A CopyObject (PUT with ``x-amz-copy-source``) from another bucket than its target's."""
    source = unquote(headers.get("x-amz-copy-source", "")).lstrip("/").split("/", 1)[0]
    return method == "PUT" and bool(source) and source != path.lstrip("/").split("/", 1)[0]


@pytest.fixture
def s3_proxy(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The fault proxy of the reliability tests in front of moto, faults off, as every S3 client's
    endpoint (the foraging source's pyarrow filesystem and the cache's boto3 client alike)."""
    from bdc_tables_foraging.filesystem import clear_filesystems

    reliability = str(Path(__file__).resolve().parent.parent / "reliability")
    if reliability not in sys.path:
        sys.path.insert(0, reliability)
    from faultproxy import FaultProxy

    with FaultProxy(s3_env) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        clear_filesystems()
        yield proxy


def test_a_refused_server_side_copy_is_streamed_and_not_asked_again(s3_source, s3_proxy, monkeypatch, caplog):
    """S3 answers ``403 AccessDenied`` to CopyObject from the source bucket: that file is streamed
    instead, the process remembers it and streams every later file at once (one warning, one
    refused request), and the published objects are still the source's bytes."""
    import boto3

    db, base = s3_source
    s3_proxy.configure(refuse=_cross_bucket_copy)
    cache = new_cache()
    with caplog.at_level(logging.WARNING, logger="bdc.copying"):
        report = sync(cache, workers=1)  # one copy at a time: exactly one is refused
    assert s3_proxy.stats["denied"] == 1
    for name in PARTITIONED:
        counters = report.table(name).counters
        assert counters["files_copied"] == files_copied(db, name)
        assert "files_copied_server_side" not in counters
    warnings = [r.getMessage() for r in caplog.records if r.name == "bdc.copying"]
    assert len(warnings) == 1 and "AccessDenied" in warnings[0] and "streaming" in warnings[0], warnings
    assert report.table(EVENTS).bytes == copied_bytes(db, EVENTS)
    assert_source_objects(cache, db, boto3.client("s3"), base)
    assert_reads_back(cache, db, monkeypatch)
    # the same process, another cache bucket: asked again (remembered per source and cache bucket)
    sync(new_cache(), workers=1)
    assert s3_proxy.stats["denied"] == 2


def _first_copy_of_a_partition(method: str, path: str, headers: Any) -> bool:
    """A partition's first server-side copy (into ``data.parquet`` or ``data-0000.parquet``; a
    staged name joins folder and file name with an escaped ``/``)."""
    return _cross_bucket_copy(method, path, headers) and unquote(path).endswith(("data.parquet", "data-0000.parquet"))


def test_a_transient_server_side_copy_failure_is_retried_not_streamed(s3_source, s3_proxy, monkeypatch, caplog):
    """A ``503 SlowDown`` answered to a server-side copy (botocore told not to retry) reaches the
    run's retry policy: the partition is written again, server-side; nothing falls back."""
    import boto3

    db, base = s3_source
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3_proxy.configure(first_attempt=_first_copy_of_a_partition)
    cache = new_cache()
    with caplog.at_level(logging.WARNING, logger="bdc.copying"):
        report = sync(cache)
    partitions = {name: len(copied(db, name)) for name in PARTITIONED}
    assert s3_proxy.stats["first_attempt"] == sum(partitions.values())
    for name in PARTITIONED:
        table = report.table(name)
        assert table.counters["files_copied_server_side"] == table.counters["files_copied"] == files_copied(db, name)
        assert table.retries >= partitions[name]
    assert not [r for r in caplog.records if r.name == "bdc.copying"]
    assert_source_objects(cache, db, boto3.client("s3"), base)
