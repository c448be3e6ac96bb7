"""A sync that produces the bytes a table already holds leaves its files as they are.

Every partition and whole table a sync builds is compared with what is published under its name
before it is written: the same bytes are not written again (no staged file, no rename on disk; no
upload, copy or delete on S3), the published file stays the same file, and the run report counts
it (``files_unchanged``). Anything else (other rows, a damaged file of the same size, a partition
that had several files) is written and published as before.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bdc.cache import Cache
from bdc.runner import RetryPolicy, RunReport, sync
from bdc.testing import make_spec

FAST_RETRY = RetryPolicy(attempts=3, base=0.005, cap=0.02)
SUBJECTS = ("0007", "0014", "0021", "0028")
PARTS = "uw_sessions"
WHOLE = "uw_subjects"


class Source:
    """What the tables are built from: a revision per subject, changed by the tests."""

    def __init__(self) -> None:
        self.revision = {s: 1 for s in SUBJECTS}
        self.built: list[str] = []

    def sessions(self, ctx: Any, subject_id: str) -> list[dict[str, Any]]:
        self.built.append(subject_id)
        rev = self.revision[subject_id]
        return [{"subject_id": subject_id, "session": i, "value": float(int(subject_id) * i + rev)}
                for i in range(1, 40 + int(subject_id) % 5)]

    def subjects(self, ctx: Any) -> list[dict[str, Any]]:
        return [{"subject_id": s, "revision": self.revision[s]} for s in SUBJECTS]


@pytest.fixture
def source(bdc_plugin: Callable[..., str]) -> Source:
    """The two tables (neither incremental: every sync builds every partition), registered in-process."""
    src = Source()
    specs = [
        make_spec(PARTS, [("subject_id", "string"), ("session", "int64"), ("value", "float64")],
                  partition_key="subject_id", partitions=lambda ctx: list(SUBJECTS), build_partition=src.sessions),
        make_spec(WHOLE, [("subject_id", "string"), ("revision", "int64")], build=src.subjects),
    ]

    class Plugin:
        from bdc.hookspecs import hookimpl

        @hookimpl
        def bdc_tables(self) -> list[Any]:
            return specs

    bdc_plugin(Plugin(), name="unchanged-writes")
    return src


def run(cache: Cache) -> RunReport:
    report = sync(cache, only=[PARTS, WHOLE], retry=FAST_RETRY)
    assert report.ok, report.summary()
    return report


def unchanged(report: RunReport, name: str) -> int:
    return report.table(name).counters.get("files_unchanged", 0)


def rows(cache: Cache, name: str) -> list[tuple[Any, ...]]:
    frame = cache.get(name)
    return sorted(map(tuple, frame.itertuples(index=False)))


def expected_sessions(src: Source) -> list[tuple[Any, ...]]:
    return sorted((r["subject_id"], r["session"], r["value"]) for s in SUBJECTS for r in src.sessions(None, s))


def test_a_sync_that_changes_nothing_rewrites_nothing_on_every_backend(any_cache: Cache, source: Source) -> None:
    first = run(any_cache)
    assert unchanged(first, PARTS) == 0 and unchanged(first, WHOLE) == 0  # nothing was there yet
    second = run(any_cache)
    assert second.table(PARTS).partitions_built == len(SUBJECTS)  # built again (not incremental)...
    assert unchanged(second, PARTS) == len(SUBJECTS)  # ...and found to hold the published bytes
    assert unchanged(second, WHOLE) == 1
    assert rows(any_cache, PARTS) == expected_sessions(source)

    # one subject changes: only its partition and the whole table are written
    source.revision["0014"] = 2
    third = run(any_cache)
    assert unchanged(third, PARTS) == len(SUBJECTS) - 1
    assert unchanged(third, WHOLE) == 0
    assert rows(any_cache, PARTS) == expected_sessions(source)
    assert dict(rows(any_cache, WHOLE)) == {s: (2 if s == "0014" else 1) for s in SUBJECTS}
    # and the registry lists every partition once, under its published name (nothing staged)
    listed = any_cache.registry_entry(PARTS)["files"]
    assert sorted(f["value"] for f in listed) == sorted(SUBJECTS)
    assert not any("_staging" in f["path"] or "/." in f["path"] for f in listed)
    assert any_cache.staged_runs() == {}


def _inode(cache: Cache, key: str) -> tuple[int, int]:
    st = os.stat(cache.backend.local_path(key))
    return st.st_ino, st.st_mtime_ns


def test_on_disk_the_same_file_stays_and_a_damaged_one_is_repaired(tmp_path: Path, source: Source) -> None:
    cache = Cache((tmp_path / "cache").as_uri())
    run(cache)
    spec = cache.spec(PARTS)
    keys = {s: cache.layout.partition_key(spec, s) for s in SUBJECTS}
    table_key = cache.layout.table_key(cache.spec(WHOLE))
    before = {s: _inode(cache, k) for s, k in keys.items()}
    table_before = _inode(cache, table_key)

    run(cache)
    assert {s: _inode(cache, k) for s, k in keys.items()} == before  # not replaced, not touched
    assert _inode(cache, table_key) == table_before

    # a file damaged in place, same size: its bytes differ, so the next sync writes it again
    damaged = Path(cache.backend.local_path(keys["0021"]))
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    report = run(cache)
    assert unchanged(report, PARTS) == len(SUBJECTS) - 1
    assert _inode(cache, keys["0021"]) != before["0021"]
    assert rows(cache, PARTS) == expected_sessions(source)
    assert {s: _inode(cache, k) for s, k in keys.items() if s != "0021"} == {
        s: v for s, v in before.items() if s != "0021"}


def test_a_partition_with_another_file_beside_it_is_written_again(tmp_path: Path, source: Source) -> None:
    cache = Cache((tmp_path / "cache").as_uri())
    run(cache)
    spec = cache.spec(PARTS)
    key = cache.layout.partition_key(spec, "0028")
    extra = cache.layout.partition_keys(spec, "0028", 2)[1]  # a second file of the partition
    cache.backend.write_bytes(extra, cache.backend.read_bytes(key))
    assert len(cache.partition_files(spec)["0028"]) == 2
    report = run(cache)
    assert unchanged(report, PARTS) == len(SUBJECTS) - 1  # the partition is not one file holding the bytes
    assert [i.key for i in cache.partition_files(spec)["0028"]] == [key]  # the stray file is gone
    assert rows(cache, PARTS) == expected_sessions(source)


@pytest.fixture
def counting_s3(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """A moto S3 server counting the requests it serves, with a fresh bucket; (server, cache URL)."""
    import boto3
    from s3counting import CountingS3Server

    with CountingS3Server() as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        bucket = f"bdc-uw-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        yield server, f"s3://{bucket}/data-asset-cache"


def test_on_s3_unchanged_partitions_make_no_upload_copy_or_delete(counting_s3: tuple[Any, str],
                                                                  source: Source) -> None:
    server, url = counting_s3
    cache = Cache(url)
    run(cache)
    etags = {i.key: i.etag for files in cache.partition_files(cache.spec(PARTS)).values() for i in files}

    server.reset()
    report = run(cache)
    assert unchanged(report, PARTS) == len(SUBJECTS) and unchanged(report, WHOLE) == 1
    data_writes = [r for r in server.snapshot()
                   if r.method in ("PUT", "POST", "DELETE") and (f"/{PARTS}/" in r.path or r.path.endswith(f"/{WHOLE}.pqt"))]
    assert data_writes == []  # (the registry, report and state are still written)
    assert {i.key: i.etag for files in cache.partition_files(cache.spec(PARTS)).values() for i in files} == etags

    # a changed partition is uploaded (staged), copied into place and its staged copy deleted
    source.revision["0007"] = 5
    server.reset()
    report = run(cache)
    assert unchanged(report, PARTS) == len(SUBJECTS) - 1
    touched = {r.path.rsplit("/", 2)[-2] for r in server.snapshot()
               if r.method == "PUT" and f"/{PARTS}/" in r.path and "_staging" not in r.path}
    assert touched == {"subject_id=0007"}
    assert rows(cache, PARTS) == expected_sessions(source)
