"""How a sync publishes: staged files, one registry write as the switch, then promotion.

Also the copy path for partitions given as existing parquet files (:class:`bdc.ParquetFiles`) and
partitions of several files. Every scenario runs on the memory, file and S3 (moto) backends.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import bdc
from bdc.build import ParquetFiles
from bdc.cache import Cache
from bdc.errors import ObjectNotFoundError
from bdc.hookspecs import hookimpl
from bdc.layout import STAGING_BUCKETS
from bdc.runner import sync
from bdc.runner.retry import RetryPolicy
from bdc.testing import make_spec

FAST = RetryPolicy(attempts=2, base=0.0, cap=0.0)
COLUMNS = (("sid", "string"), ("n", "int64"))


def _rows(version: str, sid: str) -> list[dict[str, Any]]:
    return [{"sid": sid, "n": i + (100 if version == "B" else 0)} for i in range(3)]


class Source:
    """What the test tables build: a version letter and a set of subjects, switchable."""

    def __init__(self) -> None:
        self.version = "A"
        self.subjects = ["0001", "0002", "0003"]
        self.fail_on: set[str] = set()
        self.files: dict[str, list[str]] = {}
        self.filesystem: Any = None  # where the files are read (None: local paths)

    def partitions(self, ctx: Any) -> dict[str, str]:
        return {s: self.version for s in self.subjects}

    def build_partition(self, ctx: Any, sid: str) -> Any:
        if sid in self.fail_on:
            raise ValueError(f"bad subject {sid}")
        return _rows(self.version, sid)

    def build_whole(self, ctx: Any) -> Any:
        return [{"sid": s, "n": len(s) + (100 if self.version == "B" else 0)} for s in self.subjects]

    def build_files(self, ctx: Any, sid: str) -> Any:
        return ParquetFiles(self.files[sid], self.filesystem)


class Plugin:
    def __init__(self, source: Source):
        self.source = source

    @hookimpl
    def bdc_tables(self) -> list[Any]:
        s = self.source
        return [
            make_spec("pub_parts", COLUMNS, partition_key="sid", partitions=s.partitions,
                      build_partition=s.build_partition, incremental=True),
            make_spec("pub_whole", COLUMNS, build=s.build_whole),
            make_spec("pub_files", COLUMNS, partition_key="sid", partitions=s.partitions,
                      build_partition=s.build_files, file_name="data.parquet"),
        ]


@pytest.fixture
def cache(any_cache: Cache) -> Cache:
    """A fresh empty cache on each backend (``any_cache`` of tests/framework/conftest.py)."""
    return any_cache


@pytest.fixture
def source(bdc_plugin: Any) -> Source:
    src = Source()
    bdc_plugin(Plugin(src), name="publication-test")
    return src


def _sorted(table: Any) -> list[dict[str, Any]]:
    return sorted(table.to_dict("records"), key=lambda r: (r["sid"], r["n"]))


def _expected(version: str, subjects: list[str]) -> list[dict[str, Any]]:
    return sorted((r for s in subjects for r in _rows(version, s)), key=lambda r: (r["sid"], r["n"]))


def _write_files(folder: Path, sid: str, pieces: int, *, version: str = "A", bad: bool = False) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(pieces):
        rows = [{"sid": sid, "n": 10 * i + j + (100 if version == "B" else 0)} for j in range(2)]
        table = pa.Table.from_pylist(rows, schema=pa.schema([("sid", pa.string()), ("n", pa.int64())]))
        if bad:  # int32 where int64 is declared: not publishable as it is
            table = table.cast(pa.schema([("sid", pa.string()), ("n", pa.int32())]))
        path = folder / f"{sid}-{i}.parquet"
        pq.write_table(table, path)
        paths.append(str(path))
    return paths


def test_a_run_leaves_no_staging_and_lists_final_paths(cache: Cache, source: Source) -> None:
    report = sync(cache, only=["pub_parts", "pub_whole"], retry=FAST)
    assert report.ok, report.summary()
    assert cache.backend.list(cache.layout.staging_prefix()) == []
    for name in ("pub_parts", "pub_whole"):
        files = cache.registry_entry(name)["files"]
        assert files and not any(f["path"].startswith("_staging/") for f in files)
        for f in files:  # the registry matches the stored objects
            assert cache.backend.info(f"{cache.layout.version_folder}/{f['path']}").size == f["size"]
    assert _sorted(cache.get("pub_parts")) == _expected("A", source.subjects)


def test_many_partitions_are_staged_flat_and_promoted_to_their_folders(cache: Cache, source: Source) -> None:
    # enough partitions for a remote store's promotion to use several threads
    source.subjects = [f"{i:04d}" for i in range(60)] + ["a b%2Fc", "x%y"]  # values that need encoding
    staged_keys: list[str] = []
    original = cache.backend.copy

    def noting(src: str, target: str) -> None:
        staged_keys.append(src)
        original(src, target)

    cache.backend.copy = noting  # type: ignore[method-assign]
    report = sync(cache, only=["pub_parts"], retry=FAST)
    assert report.ok, report.summary()
    spec = cache.spec("pub_parts")
    assert len(staged_keys) == len(source.subjects)
    buckets = set()
    for key in staged_keys:  # a few folders per table and run: no folder per partition
        run, final = cache.layout.unstaged_key(key)
        assert run == report.run_id
        bucket, name = key.split("/")[-2:]
        assert re.fullmatch(r"~[0-9a-f]{2}", bucket) and "%2F" in name  # the partition folder joined in
        buckets.add(bucket)
        assert cache.layout.partition_value(spec, final) in source.subjects
    assert 8 <= len(buckets) <= STAGING_BUCKETS  # 62 partitions spread over the folders
    assert sorted(cache.partition_files(spec)) == sorted(source.subjects)
    assert cache.backend.list(cache.layout.staging_prefix()) == []
    files = cache.registry_entry("pub_parts")["files"]
    assert sorted(f["value"] for f in files) == sorted(source.subjects)
    assert not any(f["path"].startswith("_staging/") for f in files)
    assert _sorted(cache.get("pub_parts")) == _expected("A", source.subjects)
    assert _sorted(cache.get("pub_parts", sid="a b%2Fc")) == _expected("A", ["a b%2Fc"])


@pytest.mark.parametrize("value", ["0012", "a b", "x%2Fy", "50%", "~@+,", "é" * 20, "z" * 200, "é" * 120])
def test_a_staged_key_names_its_final_place_whatever_the_value(value: str) -> None:
    from bdc.layout import Layout

    layout = Layout("bdc-v1.0")
    spec = make_spec("pub_parts", COLUMNS, partition_key="sid", partitions=lambda ctx: [],
                     build_partition=lambda ctx, sid: None)
    for key in layout.partition_keys(spec, value, 3):
        staged = layout.staged_key("run-1", key)
        assert staged.startswith("bdc-v1.0/_staging/run-1/pub_parts/")
        assert layout.unstaged_key(staged) == ("run-1", key)
        folder, name = key.rsplit("/", 2)[1:]
        parent, staged_name = staged.rsplit("/", 2)[1:]
        flat = staged_name == f"{folder}%2F{name}" and re.fullmatch(r"~[0-9a-f]{2}", parent) is not None
        # ... unless the joined name would be too long for a file system: then the folder stays
        assert flat == (len(f"{folder}%2F{name}".encode()) <= 255)
        if flat:  # a key staged before the bucket folders (by an interrupted older run) too
            unbucketed = staged.replace(f"/{parent}/", "/")
            assert layout.unstaged_key(unbucketed) == ("run-1", key)
    whole = layout.table_key(make_spec("pub_whole", COLUMNS, build=lambda ctx: []))
    assert layout.unstaged_key(layout.staged_key("run-1", whole)) == ("run-1", whole)
    assert layout.unstaged_key(whole) == (None, whole)


def test_a_failed_copy_of_a_promotion_is_raised_after_the_others_were_made() -> None:
    from bdc.cache import _each

    done: list[int] = []

    def call(i: int) -> None:
        if i == 7:
            raise OSError("disk full")
        done.append(i)

    for threads in (1, 4):
        done.clear()
        with pytest.raises(OSError, match="disk full"):
            _each(call, [(i,) for i in range(40)], threads)
        assert sorted(done) == [i for i in range(40) if i != 7]


def test_between_the_registry_switch_and_promotion_readers_see_the_new_version_whole(
        cache: Cache, source: Source, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sync(cache, only=["pub_parts", "pub_whole"], retry=FAST).ok
    source.version = "B"
    source.subjects = ["0001", "0002", "0004"]  # one changed set: 0003 goes, 0004 comes
    seen: dict[str, Any] = {}

    def interrupted(spec: Any) -> bool:
        # what readers see after the one registry write, before any file moved: then "crash"
        seen[spec.name] = cache.get(spec.name)
        raise RuntimeError("killed before promotion")

    monkeypatch.setattr(cache, "promote", interrupted)
    report = sync(cache, only=["pub_parts"], retry=RetryPolicy(attempts=1))
    assert not report.ok  # the promotion failed after publishing: reported, never half-read
    assert _sorted(seen["pub_parts"]) == _expected("B", source.subjects)
    # the registry still lists the staged files: readers keep the new version whole
    assert _sorted(cache.get("pub_parts")) == _expected("B", source.subjects)
    assert any(f["path"].startswith("_staging/") for f in cache.registry_entry("pub_parts")["files"])
    monkeypatch.undo()

    # the next sync finishes the promotion first, then has nothing to rebuild beyond the state
    report = sync(cache, only=["pub_parts"], retry=FAST)
    assert report.ok, report.summary()
    files = cache.registry_entry("pub_parts")["files"]
    assert sorted({f["value"] for f in files}) == source.subjects
    assert not any(f["path"].startswith("_staging/") for f in files)
    assert cache.backend.list(cache.layout.staging_prefix()) == []
    assert sorted(cache.partition_files(cache.spec("pub_parts"))) == source.subjects  # 0003 removed
    assert _sorted(cache.get("pub_parts")) == _expected("B", source.subjects)


def test_a_failed_partition_publishes_nothing_and_its_staging_is_dropped(cache: Cache, source: Source) -> None:
    assert sync(cache, only=["pub_parts"], retry=FAST).ok
    before = cache.registry_entry("pub_parts")
    source.version, source.fail_on = "B", {"0002"}
    report = sync(cache, only=["pub_parts"], retry=FAST)
    assert report.table("pub_parts").status == "failed"
    assert cache.registry_entry("pub_parts") == before
    assert _sorted(cache.get("pub_parts")) == _expected("A", source.subjects)  # never a mix
    assert cache.backend.list(cache.layout.staging_prefix()) == []
    source.fail_on = set()
    assert sync(cache, only=["pub_parts"], retry=FAST).ok
    assert _sorted(cache.get("pub_parts")) == _expected("B", source.subjects)


def test_conforming_files_are_copied_as_they_are_and_others_rewritten(
        cache: Cache, source: Source, tmp_path: Path) -> None:
    src = tmp_path / "src"
    source.files = {"0001": _write_files(src, "0001", 3), "0002": _write_files(src, "0002", 1),
                    "0003": _write_files(src, "0003", 2, bad=True)}
    report = sync(cache, only=["pub_files"], retry=FAST)
    assert report.ok, report.summary()
    assert report.table("pub_files").counters.get("files_copied") == 4
    spec = cache.spec("pub_files")
    stored = cache.partition_files(spec)
    assert {v: [i.key.rsplit("/", 1)[1] for i in infos] for v, infos in stored.items()} == {
        "0001": ["data-0000.parquet", "data-0001.parquet", "data-0002.parquet"],
        "0002": ["data.parquet"], "0003": ["data.parquet"]}
    # copied byte for byte, in order
    keys = cache.layout.partition_keys(spec, "0001", 3)
    assert [cache.backend.read_bytes(k) for k in keys] == [Path(p).read_bytes() for p in source.files["0001"]]
    # the int32 subject was rewritten with the declared type
    rewritten = pq.read_table(pa.BufferReader(cache.backend.read_bytes(cache.layout.partition_key(spec, "0003"))))
    assert rewritten.schema.field("n").type == pa.int64()
    got = cache.get("pub_files")
    assert len(got) == 12 and sorted(set(got["sid"])) == ["0001", "0002", "0003"]
    # a partition of several files reads back in the source files' order (their names sort so)
    assert list(cache.get("pub_files", sid="0001")["n"]) == [0, 1, 10, 11, 20, 21]
    # its location is its folder; a partition of one file, that file
    assert cache.location("pub_files", sid="0001") == cache.backend.uri(cache.layout.partition_prefix(spec, "0001"))
    assert cache.location("pub_files", sid="0002").endswith("sid=0002/data.parquet")

    # the source coalesces 0001's three files into one: the partition ends with exactly that file
    for p in source.files["0001"]:
        Path(p).unlink()
    source.files["0001"] = _write_files(src / "coalesced", "0001", 1, version="B")
    assert sync(cache, only=["pub_files"], retry=FAST).ok
    assert [i.key.rsplit("/", 1)[1] for i in cache.partition_files(spec)["0001"]] == ["data.parquet"]
    assert sorted(cache.get("pub_files", sid="0001")["n"]) == [100, 101]
    assert len(cache.registry_entry("pub_files")["files"]) == 3


class _FlakyFiles(pafs.FileSystemHandler):
    """Local files through pyarrow's filesystem protocol, failing the calls it is told to: the
    ``n``-th opening of a stream (a copy) with a connection reset, the ``n``-th opening of a file
    (a footer read) with an I/O error."""

    def __init__(self, fail_stream: set[int], fail_file: set[int]):
        self.fs = pafs.LocalFileSystem()
        self.fail_stream, self.fail_file = fail_stream, fail_file
        self.streams = self.files = 0

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    def get_type_name(self) -> str:
        return "flaky-local"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> Any:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: Any) -> Any:
        return self.fs.get_file_info(selector)

    def open_input_stream(self, path: str) -> Any:
        self.streams += 1
        if self.streams in self.fail_stream:
            raise ConnectionResetError(f"reset while reading {path}")
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        self.files += 1
        if self.files in self.fail_file:
            raise OSError(f"I/O error reading {path}")
        return self.fs.open_input_file(path)

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise OSError("read-only")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
    move = copy_file = open_output_stream = open_append_stream = _read_only


def test_a_partition_written_again_publishes_only_what_its_last_attempt_staged(
        cache: Cache, source: Source, tmp_path: Path) -> None:
    # attempt 1 copies the subject's three files and is cut off at the third (a connection reset:
    # retried); attempt 2 cannot read a footer, so it rewrites the files as one: the first
    # attempt's second file must not be published beside it
    source.subjects = ["0001"]
    source.files = {"0001": _write_files(tmp_path / "src", "0001", 3)}
    handler = _FlakyFiles(fail_stream={3}, fail_file={4})
    source.filesystem = pafs.PyFileSystem(handler)
    report = sync(cache, only=["pub_files"], retry=FAST)
    assert report.ok, report.summary()
    assert report.table("pub_files").retries == 1
    assert (handler.streams, handler.files) == (3, 7)  # 3 footers, 3 copies, 1 footer, 3 rewritten
    spec = cache.spec("pub_files")
    assert [i.key.rsplit("/", 1)[1] for i in cache.partition_files(spec)["0001"]] == ["data.parquet"]
    assert [f["path"].rsplit("/", 1)[1] for f in cache.registry_entry("pub_files")["files"]] == ["data.parquet"]
    assert sorted(cache.get("pub_files")["n"]) == [0, 1, 10, 11, 20, 21]


def test_files_that_do_not_hold_the_partition_value_are_rewritten(bdc_file_cache: Cache, source: Source,
                                                                   tmp_path: Path) -> None:
    # a file of subject 0002 offered as subject 0001's: its key column says otherwise
    wrong = _write_files(tmp_path / "src", "0002", 1)
    source.subjects = ["0001"]
    source.files = {"0001": wrong}
    report = sync(bdc_file_cache, only=["pub_files"], retry=FAST)
    assert report.table("pub_files").status == "failed"  # the conform step refuses the foreign rows
    assert "0001" in (report.table("pub_files").error or "")


def test_direct_partition_writes_drop_the_files_they_no_longer_have(bdc_file_cache: Cache, bdc_plugin: Any,
                                                                    tmp_path: Path) -> None:
    spec = make_spec("pub_direct", COLUMNS, partition_key="sid")
    bdc_plugin(spec)
    cache = bdc_file_cache
    paths = _write_files(tmp_path / "src", "0001", 3)
    assert cache.write_partition(spec, "0001", ParquetFiles(paths))["files"] == 3
    assert len(cache.partition_files(spec)["0001"]) == 3
    assert cache.write_partition(spec, "0001", _rows("A", "0001"))["files"] == 1
    assert [i.key.rsplit("/", 1)[1] for i in cache.partition_files(spec)["0001"]] == ["data.pqt"]
    cache.publish(spec)
    assert _sorted(cache.get("pub_direct")) == _expected("A", ["0001"])


def test_reads_follow_the_registry_not_the_folder(bdc_file_cache: Cache, bdc_plugin: Any) -> None:
    spec = make_spec("pub_snap", COLUMNS, partition_key="sid")
    bdc_plugin(spec)
    cache = bdc_file_cache
    cache.put("pub_snap", _rows("A", "0001"))
    # a partition file that appears without being published is not part of the table yet
    cache.write_partition(spec, "0002", _rows("A", "0002"))
    assert sorted(set(cache.get("pub_snap")["sid"])) == ["0001"]
    assert len(cache.get("pub_snap", sid="0002")) == 0
    cache.publish(spec)
    assert sorted(set(cache.get("pub_snap")["sid"])) == ["0001", "0002"]
    # a listed partition whose file disappeared is an error naming it, never silently fewer rows
    Path(cache.backend.local_path(cache.layout.partition_key(spec, "0002"))).unlink()
    with pytest.raises(bdc.ReadError, match="sid=0002"):
        cache.get("pub_snap")


def test_recovery_aborts_multipart_uploads_a_killed_writer_left_on_s3(s3_url: str, bdc_plugin: Any) -> None:
    cache = Cache(s3_url)
    client = cache.backend.client
    key = cache.backend._key(f"{cache.layout.version_folder}/_staging/run1/big/data.pqt")
    upload = client.create_multipart_upload(Bucket=cache.backend.bucket, Key=key)["UploadId"]
    outside = client.create_multipart_upload(Bucket=cache.backend.bucket, Key="elsewhere/x")["UploadId"]
    cache.recover()
    left = {u["UploadId"] for u in client.list_multipart_uploads(Bucket=cache.backend.bucket).get("Uploads", [])}
    assert upload not in left and outside in left  # only under the cache's version folder


def test_local_disk_writes_staged_files_in_place_and_links_promotions(tmp_path: Path) -> None:
    from bdc.backends.local import LocalBackend

    backend = LocalBackend(tmp_path.as_uri())
    folder = tmp_path / "_staging" / "t"
    with backend.open_write_staged("_staging/t/a.bin") as fh:  # a new folder, the file at its name
        fh.write(b"staged")
        fh.flush()
        assert os.listdir(folder) == ["a.bin"]
    with pytest.raises(RuntimeError), backend.open_write_staged("_staging/t/b.bin") as fh:
        fh.write(b"half")
        raise RuntimeError("the build broke")
    assert os.listdir(folder) == ["a.bin"]  # nothing left of the failed write
    with backend.open_write("v/c.bin") as fh:  # a published write appears only when whole
        fh.write(b"whole")
        fh.flush()
        assert not (tmp_path / "v" / "c.bin").exists()
    assert (tmp_path / "v" / "c.bin").read_bytes() == b"whole"

    # a second writer of a staged key while the first still writes (a task run twice): each
    # writes a whole file, the name ends with one of them, and a failing first leaves the other
    with backend.open_write_staged("_staging/t/c.bin") as first:
        first.write(b"first, half")
        with backend.open_write_staged("_staging/t/c.bin") as second:
            second.write(b"second, whole")
        assert (folder / "c.bin").read_bytes() == b"second, whole"
        first.write(b" and the rest")
    assert (folder / "c.bin").read_bytes() == b"second, whole"
    with pytest.raises(RuntimeError), backend.open_write_staged("_staging/t/d.bin") as first:
        with backend.open_write_staged("_staging/t/d.bin") as second:
            second.write(b"second, whole")
        raise RuntimeError("the first attempt broke after the second finished")
    assert (folder / "d.bin").read_bytes() == b"second, whole"
    assert sorted(os.listdir(folder)) == ["a.bin", "c.bin", "d.bin"]  # no temp names left

    # promotion: a new name is a link of the staged file (in a folder made for it) ...
    backend.copy("_staging/t/a.bin", "v/p/a.bin")
    assert os.stat(tmp_path / "v" / "p" / "a.bin").st_ino == os.stat(folder / "a.bin").st_ino
    # ... an existing one is replaced whole, and a promotion made again changes nothing
    backend.write_bytes("v/p/old.bin", b"previous")
    for _ in range(2):
        backend.copy("_staging/t/a.bin", "v/p/old.bin")
        assert (tmp_path / "v" / "p" / "old.bin").read_bytes() == b"staged"
        assert sorted(os.listdir(tmp_path / "v" / "p")) == ["a.bin", "old.bin"]  # no temp names left
    with pytest.raises(ObjectNotFoundError):
        backend.copy("_staging/t/missing.bin", "v/p/x.bin")
    assert sorted(os.listdir(tmp_path / "v" / "p")) == ["a.bin", "old.bin"]
