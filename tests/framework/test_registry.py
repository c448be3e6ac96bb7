"""The published documents: cache_registry.json per version and the top-level cache_versions.json."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bdc.errors import ReadError
from bdc_samples import typed_rows

pytestmark = pytest.mark.usefixtures("typed_plugin")


def test_registry_layout_matches_the_existing_deployment(bdc_file_cache: Any) -> None:
    bdc_file_cache.put("assets", typed_rows())
    bdc_file_cache.put("events", typed_rows())
    root = bdc_file_cache.backend.root
    assert (root / "bdc-v0.36" / "assets.pqt").is_file()
    assert (root / "bdc-v0.36" / "events" / "subject_id=0012" / "data.pqt").is_file()
    assert (root / "bdc-v0.36" / "events" / "subject_id=a%20b" / "data.pqt").is_file()
    doc = json.loads((root / "bdc-v0.36" / "cache_registry.json").read_text())
    for entry in doc["tables"]:
        assert {"name", "description", "location", "partitioned", "partition_key", "type", "columns"} <= set(entry)
    assert json.loads((root / "cache_versions.json").read_text()) == ["bdc-v0.36"]
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]


def test_versions_are_sorted_and_deduplicated(any_cache: Any) -> None:
    from bdc.cache import Cache
    from bdc.published import add_version

    any_cache.backend.write_bytes(
        "cache_versions.json", json.dumps(["bdc-v0.9", "bdc-v0.36", "bdc-v0.9", "bdc-v0.10", "legacy"]).encode())
    assert any_cache.versions() == ["bdc-v0.9", "bdc-v0.10", "bdc-v0.36", "legacy"]
    Cache(any_cache.url, version="1.2.3").put("assets", typed_rows())
    any_cache.put("assets", typed_rows())
    assert add_version(any_cache.backend, "bdc-v0.36") == ["bdc-v0.9", "bdc-v0.10", "bdc-v0.36", "bdc-v1.2", "legacy"]
    stored = json.loads(any_cache.backend.read_bytes("cache_versions.json"))
    assert stored == ["bdc-v0.9", "bdc-v0.10", "bdc-v0.36", "bdc-v1.2", "legacy"]
    assert len(Cache(any_cache.url, version="1.2").get("assets")) == 5


def test_versions_of_an_empty_cache(any_cache: Any) -> None:
    assert any_cache.versions() == []
    assert any_cache.registry() == {"tables": []}


@pytest.mark.parametrize("content", [b"{not json", b'{"tables": 3}', b"[1, 2]", b"\xff\xfe"])
def test_corrupt_registry_raises_read_error_naming_the_object(any_cache: Any, content: bytes) -> None:
    any_cache.put("assets", typed_rows())
    any_cache.backend.write_bytes("bdc-v0.36/cache_registry.json", content)
    expected = any_cache.backend.uri("bdc-v0.36/cache_registry.json")
    with pytest.raises(ReadError) as info:
        any_cache.registry()
    assert expected in str(info.value)
    with pytest.raises(ReadError):
        any_cache.registry_entry("assets")


@pytest.mark.parametrize("content", [b"nope", b'{"a": 1}', b'["bdc-v0.36", 3]'])
def test_corrupt_versions_index_raises_read_error(bdc_cache: Any, content: bytes) -> None:
    bdc_cache.backend.write_bytes("cache_versions.json", content)
    with pytest.raises(ReadError, match="cache_versions.json"):
        bdc_cache.versions()


def test_republishing_keeps_the_entry_position(bdc_cache: Any) -> None:
    bdc_cache.put("assets", typed_rows())
    bdc_cache.put("events", typed_rows())
    bdc_cache.put("assets", typed_rows()[:1], note="again")
    entries = bdc_cache.registry()["tables"]
    assert [e["name"] for e in entries] == ["assets", "events"]
    assert entries[0]["build"] == {"rows": 1, "bytes": entries[0]["build"]["bytes"], "files": 1, "note": "again"}


def test_new_entries_take_the_catalogs_order_whatever_finished_first(bdc_cache: Any) -> None:
    from bdc.catalog import get_catalog

    names = [n for n in get_catalog().names() if n in ("assets", "events")]
    assert len(names) == 2
    bdc_cache.put(names[1], typed_rows())  # the later table is published first
    bdc_cache.put(names[0], typed_rows())
    assert [e["name"] for e in bdc_cache.registry()["tables"]] == names
    # an entry of a table no plugin declares (any more) keeps its place; new ones go before it
    bdc_cache._update_registry(lambda tables: tables.insert(1, {"name": "gone_table"}))
    bdc_cache.put(names[0], typed_rows())
    assert [e["name"] for e in bdc_cache.registry()["tables"]] == [names[0], "gone_table", names[1]]


def test_user_duckdb_reads_the_same_rows_as_bdc_get(bdc_file_cache: Any) -> None:
    """DuckDB pointed at a registry location, with hive partitioning, reads what bdc.get reads."""
    import duckdb

    bdc_file_cache.put("events", typed_rows())
    bdc_file_cache.put("assets", typed_rows())
    for name in ("events", "assets"):
        location = bdc_file_cache.registry_entry(name)["location"]
        pattern = location + "**/*.pqt" if location.endswith("/") else location
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        theirs = con.execute(
            "SELECT * FROM read_parquet(?, hive_partitioning = true, union_by_name = true) ORDER BY name",
            [pattern]).df()
        ours = bdc_file_cache.sql(f"SELECT * FROM {name} ORDER BY name")
        assert list(theirs.columns) == list(ours.columns)
        assert theirs["subject_id"].tolist() == ours["subject_id"].tolist()
        assert theirs.astype(str).values.tolist() == ours.astype(str).values.tolist()
        assert len(theirs) == len(bdc_file_cache.get(name)) == 5
