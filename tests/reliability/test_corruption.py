"""Corrupt published objects: a clear ReadError naming the object (never an empty DataFrame), and
``bdc.sync`` repairs a synthetic table on the next run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import syncplugin
from bdc.cache import Cache
from bdc.errors import ReadError
from bdc.runner import sync
from bdc.testing import make_spec

GARBAGE = b"this is not parquet at all\x00\xff" * 7


def _corrupt(path: Path, how: str) -> None:
    """Damage a file in place: ``truncate`` keeps its first half, ``garbage`` replaces its bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncate" else GARBAGE)


@pytest.fixture
def things(bdc_plugin: Any) -> None:
    """Declares ``things`` (whole) and ``parts`` (partitioned by ``sid``)."""
    bdc_plugin([make_spec("things", [("id", "string"), ("n", "int64")]),
                make_spec("parts", [("sid", "string"), ("n", "int64")], partition_key="sid")],
               name="corrupt-tables", distribution="bdc-test-corrupt")


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_corrupt_table_file_is_a_read_error_naming_it(things: None, bdc_file_cache: Cache, how: str) -> None:
    bdc_file_cache.put("things", [{"id": "a", "n": 1}, {"id": "b", "n": 2}])
    path = Path(bdc_file_cache.backend.local_path(bdc_file_cache.layout.table_key(bdc_file_cache.spec("things"))))
    _corrupt(path, how)
    with pytest.raises(ReadError, match="things") as info:
        bdc_file_cache.get("things")
    assert str(path) in str(info.value) or path.name in str(info.value)
    with pytest.raises(ReadError):
        bdc_file_cache.get("things", id="a")


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_corrupt_partition_is_a_read_error_on_memory_and_file(things: None, bdc_cache: Cache,
                                                              bdc_file_cache: Cache, how: str) -> None:
    for cache in (bdc_cache, bdc_file_cache):
        cache.put("parts", [{"sid": "0007", "n": 1}, {"sid": "0014", "n": 2}])
        spec = cache.spec("parts")
        key = cache.layout.partition_key(spec, "0014")
        data = cache.backend.read_bytes(key)
        cache.backend.write_bytes(key, data[: len(data) // 2] if how == "truncate" else GARBAGE)
        with pytest.raises(ReadError, match="parts") as info:
            cache.get("parts", sid="0014")
        assert "sid=0014" in str(info.value) or cache.backend.uri(key) in str(info.value)
        with pytest.raises(ReadError):
            cache.get("parts")
        assert cache.get("parts", sid="0007")["n"].tolist() == [1]  # the intact partition still reads


def test_registry_that_is_not_json_is_named_and_never_reset(things: None, bdc_file_cache: Cache) -> None:
    bdc_file_cache.put("things", [{"id": "a", "n": 1}])
    key = bdc_file_cache.layout.registry_key
    bdc_file_cache.backend.write_bytes(key, b"{not json")
    with pytest.raises(ReadError, match="cache_registry.json.*not valid JSON"):
        bdc_file_cache.registry()
    with pytest.raises(ReadError, match="cache_registry.json"):
        bdc_file_cache.publish(bdc_file_cache.spec("things"))
    assert bdc_file_cache.backend.read_bytes(key) == b"{not json"  # a failed read never resets it
    bdc_file_cache.backend.write_bytes(key, b'{"tables": 3}')
    with pytest.raises(ReadError, match="not a bdc registry"):
        bdc_file_cache.registry()


def test_version_index_that_is_not_json_is_named(bdc_file_cache: Cache) -> None:
    bdc_file_cache.backend.write_bytes("cache_versions.json", b"\x89PNG garbage")
    with pytest.raises(ReadError, match="cache_versions.json"):
        bdc_file_cache.versions()


def test_missing_partition_on_s3_is_a_read_error_naming_the_uri(things: None, s3_url: str) -> None:
    cache = Cache(s3_url)
    cache.put("parts", [{"sid": "0007", "n": 1}, {"sid": "0014", "n": 2}])
    key = cache.layout.partition_key(cache.spec("parts"), "0014")
    cache.backend.delete_prefix(cache.layout.partition_prefix(cache.spec("parts"), "0014"))
    with pytest.raises(ReadError, match="does not exist") as info:
        Cache(s3_url).get("parts")
    assert cache.backend.uri(key) in str(info.value)


# -- the sync runner repairs ------------------------------------------------------------------


@pytest.fixture
def synced(tmp_path: Path, bdc_plugin: Any) -> tuple[Cache, Any]:
    """The synthetic tables, synced once into a file cache; returns (cache, first report)."""
    source = syncplugin.make_source(tmp_path / "source")
    bdc_plugin(syncplugin.SyncPlugin(source), name="syncplugin-reliability", distribution="bdc-test-sync")
    cache = Cache((tmp_path / "cache").as_uri())
    report = sync(cache, workers=2)
    assert report.ok
    return cache, report


def _partition_path(cache: Cache, value: str) -> Path:
    """The local file of one ``sync_sessions`` partition."""
    return Path(cache.backend.local_path(cache.layout.partition_key(cache.spec("sync_sessions"), value)))


@pytest.mark.parametrize("how", ["missing", "truncate", "garbage"])
def test_sync_rebuilds_a_damaged_partition_of_an_incremental_table(synced: tuple[Cache, Any], how: str) -> None:
    cache, _ = synced
    expected = cache.get("sync_sessions")
    path = _partition_path(cache, "0014")
    if how == "missing":
        path.unlink()
    else:
        _corrupt(path, how)
        with pytest.raises(ReadError, match="sync_sessions"):
            cache.get("sync_sessions", subject_id="0014")
    report = sync(cache, workers=2)
    assert report.ok, report.to_json()
    sessions = report.table("sync_sessions")
    assert sessions.partitions_built == 1 and sessions.status == "ok"
    assert cache.get("sync_sessions").equals(expected)
    # and the repaired state is stable: the next run rebuilds nothing
    assert sync(cache, workers=2).table("sync_sessions").partitions_built == 0


@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_sync_reports_a_corrupt_whole_table_then_full_sync_repairs_it(synced: tuple[Cache, Any], how: str) -> None:
    cache, _ = synced
    expected = cache.get("platform_alpha")
    subjects = cache.get("sync_subjects")
    for name in ("platform_alpha", "sync_subjects"):
        _corrupt(Path(cache.backend.local_path(cache.layout.table_key(cache.spec(name)))), how)
    report = sync(cache, workers=2)
    # a non-incremental table is simply rebuilt
    assert report.table("platform_alpha").status == "ok"
    assert cache.get("platform_alpha").equals(expected)
    # an incremental table merging into its corrupt previous data fails loudly, naming the file
    subj = report.table("sync_subjects")
    assert subj.status == "failed", subj
    assert "sync_subjects.pqt" in subj.error and "ReadError" in subj.error and "bdc-test-sync" in subj.error
    assert report.table("sync_sessions").status == "skipped"
    assert report.table("sync_summary").status == "skipped"
    report = sync(cache, workers=2, full=True)
    assert report.ok, report.to_json()
    assert cache.get("sync_subjects").equals(subjects)
