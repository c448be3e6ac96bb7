"""Write/read round trips on memory://, file:// and moto's S3, with every column type."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from bdc_samples import TYPED_COLUMNS, typed_rows

pytestmark = pytest.mark.usefixtures("typed_plugin")


def _normal(value: Any) -> Any:
    """Python value of a pandas/numpy cell, for comparisons (NaN/NaT/None → None)."""
    if value is None:
        return None
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NaTType", "NAType"):
        return None
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    return value


def _rows(df: Any) -> list[dict[str, Any]]:
    return [{k: _normal(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def _col(df: Any, name: str) -> list[Any]:
    return [_normal(v) for v in df[name]]


def _by_name(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["subject_id"], r["name"] or ""))


def test_unpartitioned_round_trip_keeps_every_type(any_cache: Any) -> None:
    entry = any_cache.put("assets", typed_rows())
    assert entry["build"]["rows"] == 5
    df = any_cache.get("assets")
    assert list(df.columns) == [c[0] for c in TYPED_COLUMNS]
    assert _rows(df) == typed_rows()
    table = any_cache.get("assets", arrow=True)
    from bdc.arrowtypes import type_text

    assert [type_text(f.type) for f in table.schema] == [c[1] for c in TYPED_COLUMNS]


def test_partitioned_round_trip_ids_stay_strings(any_cache: Any) -> None:
    any_cache.put("events", typed_rows())
    assert sorted(any_cache.partition_objects(any_cache.spec("events"))) == ["0012", "692478", "a b"]
    everything = any_cache.get("events")
    assert _by_name(_rows(everything)) == _by_name(typed_rows())
    one = any_cache.get("ev", subject_id="0012")
    assert one["subject_id"].tolist() == ["0012", "0012"]
    assert _rows(one) == [r for r in typed_rows() if r["subject_id"] == "0012"]
    # an int that looks like the id still finds the text partition; "12" is another subject
    assert _col(any_cache.get("events", subject_id=692478), "subject_id") == ["692478", "692478"]
    assert len(any_cache.get("events", subject_id="12")) == 0
    spaced = any_cache.get("events", subject_id="a b", columns=["name", "tags"])
    assert list(spaced.columns) == ["name", "tags"]
    assert _rows(spaced) == [{"name": "ünïcødé ✓", "tags": ["z"]}]


def test_filters_columns_limit(any_cache: Any) -> None:
    any_cache.put("assets", typed_rows())
    any_cache.put("events", typed_rows())
    assert _col(any_cache.get("assets", where={"is_ok": True}, columns=["name"]), "name") == ["a1", None]
    assert len(any_cache.get("assets", limit=2)) == 2
    assert len(any_cache.get("assets", limit=0)) == 0
    both = any_cache.get("events", subject_id=["0012", "a b"], columns=["subject_id"])
    assert sorted(both["subject_id"]) == ["0012", "0012", "a b"]
    assert _col(any_cache.get("assets", where={"name": None}, columns=["subject_id"]), "subject_id") == ["692478"]
    assert any_cache.get("assets", where={"name": []}).empty
    assert _col(any_cache.get("events", subject_id="0012", where={"n_files": 3}, columns=["name"]), "name") == ["a1"]


def test_sql_sees_tables_aliases_and_params(any_cache: Any) -> None:
    any_cache.put("assets", typed_rows())
    any_cache.put("events", typed_rows())
    df = any_cache.sql("SELECT subject_id, count(*) AS n FROM events GROUP BY 1 ORDER BY 1")
    assert df.to_dict(orient="list") == {"subject_id": ["0012", "692478", "a b"], "n": [2, 2, 1]}
    joined = any_cache.sql(
        "SELECT count(*) AS n FROM ast JOIN ev USING (name) WHERE ev.subject_id = ?", ["0012"])
    assert joined["n"].tolist() == [2]
    any_cache.custom("mine", typed_rows_frame())
    assert _col(any_cache.sql("SELECT count(*) AS n FROM mine"), "n") == [5]


def typed_rows_frame() -> Any:
    import pandas as pd

    return pd.DataFrame(typed_rows())


def test_registry_entry_and_versions(any_cache: Any) -> None:
    any_cache.put("events", typed_rows())
    any_cache.put("assets", typed_rows())
    doc = any_cache.registry()
    names = [e["name"] for e in doc["tables"]]
    assert names == ["assets", "events"]  # the catalog's order (declared so), not the publishing order
    entry = any_cache.registry_entry("ev")
    assert entry["partitioned"] is True and entry["partition_key"] == "subject_id"
    assert entry["type"] == "metadata"
    assert entry["location"] == any_cache.location("events")
    assert entry["build"]["partitions"] == 3 and entry["build"]["rows"] == 5
    assert [c["name"] for c in entry["columns"]] == [c[0] for c in TYPED_COLUMNS]
    assert entry["columns"][5] == {"name": "created", "description": "creation time", "type": "timestamp[us, tz=UTC]"}
    assert any_cache.registry_entry("assets")["type"] == "asset"
    assert any_cache.versions() == ["bdc-v0.36"]


def test_location_points_at_the_objects(any_cache: Any) -> None:
    any_cache.put("events", typed_rows())
    whole = any_cache.location("events")
    part = any_cache.location("ev", subject_id="0012")
    assert whole.endswith("bdc-v0.36/events/")
    assert part == whole + "subject_id=0012/data.pqt"
    assert any_cache.location("events", subject_id="a b").endswith("/subject_id=a%20b/data.pqt")
    assert any_cache.location("assets").endswith("bdc-v0.36/assets.pqt")
    if any_cache.url.startswith("s3://"):
        assert whole.startswith(any_cache.url + "/")


def test_republishing_replaces_partitions(any_cache: Any) -> None:
    any_cache.put("events", typed_rows())
    any_cache.put("events", [r for r in typed_rows() if r["subject_id"] == "0012"])
    assert sorted(any_cache.partition_objects(any_cache.spec("events"))) == ["0012"]
    assert len(any_cache.get("events")) == 2
    assert any_cache.get("events", subject_id="692478").empty


def test_custom_tables_round_trip_and_survive_a_version_bump(any_cache: Any) -> None:
    from bdc.cache import Cache

    df = typed_rows_frame()
    assert any_cache.custom("my_table", df) is df
    back = any_cache.custom("my_table")
    assert _rows(back) == typed_rows()
    assert "my_table" in any_cache.customs()
    bumped = Cache(any_cache.url, version="0.37")
    assert bumped.layout.version_folder == "bdc-v0.37"
    assert _rows(bumped.custom("my_table")) == typed_rows()
    any_cache.custom("my_table", df.head(1))  # overwrite
    assert len(bumped.custom("my_table")) == 1


def test_timestamps_come_back_as_utc(any_cache: Any) -> None:
    any_cache.put("assets", typed_rows())
    created = any_cache.get("assets", columns=["created"])["created"]
    assert str(created.dtype) == "datetime64[us, UTC]"
    assert created.iloc[0].to_pydatetime() == dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.timezone.utc)


def test_default_cache_functions(bdc_env: Any) -> None:
    import bdc

    bdc_env.put("events", typed_rows())
    assert bdc.default_cache().url == bdc_env.url
    assert [s.name for s in bdc.tables()] == ["assets", "events"]
    assert _col(bdc.get("events", subject_id="0012", columns=["name"]), "name") == ["a1", "a2"]
    assert bdc.location("events", subject_id="0012") == bdc_env.location("events", subject_id="0012")
    assert _col(bdc.sql("SELECT count(*) AS n FROM ev WHERE subject_id = $s", {"s": "a b"}), "n") == [1]
    assert bdc.versions() == ["bdc-v0.36"]
    assert bdc.registry()["tables"][0]["name"] == "events"
    bdc.custom("scratch", typed_rows_frame())
    assert len(bdc.custom("scratch")) == 5


def test_a_one_slash_file_url_is_the_absolute_path(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from bdc.cache import Cache
    from bdc.errors import BdcError

    monkeypatch.chdir(tmp_path)  # a relative folder named "file:" would land here
    folder = tmp_path / "one slash"
    Cache(folder.as_uri()).put("assets", typed_rows())
    one = Cache(f"file:{folder}")  # file:/abs/path, as urllib and pathlib read it
    assert one.url == folder.as_uri()
    assert _rows(one.get("assets")) == typed_rows()
    assert not (tmp_path / "file:").exists()
    with pytest.raises(BdcError, match="names a host"):
        Cache("file://otherhost/path")
    with pytest.raises(BdcError, match="not an absolute path"):
        Cache("file:relative/folder")
    # another scheme with one slash is a mistyped URL, not a folder made in the working directory
    for url, scheme in (("s3:/bucket/prefix", "s3"), ("memory:name", "memory"), ("S3:bucket", "S3")):
        with pytest.raises(BdcError, match=f"write {scheme}://"):
            Cache(url)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one slash"]
