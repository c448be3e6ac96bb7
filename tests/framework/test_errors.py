"""Every error a reader can meet: clear, typed (BdcError), never an empty DataFrame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bdc.errors import BdcError, InvalidNameError, ReadError, TableNotBuiltError, UnknownTableError
from bdc_samples import typed_rows

pytestmark = pytest.mark.usefixtures("typed_plugin")

BAD_VALUES = ["..", "a/../b", "../etc", "a/b", "/abs", "a\\b", "it's", 'say "hi"', "nul\x00byte",
              "tab\tchar", "line\nbreak", "x" * 257, "", " padded", "back`tick", "\u202eRTL"]


def test_unknown_table_suggests_close_matches(bdc_cache: Any) -> None:
    with pytest.raises(UnknownTableError) as info:
        bdc_cache.get("asets")
    message = str(info.value)
    assert "Did you mean 'assets'" in message and "Installed tables: assets, events" in message
    assert isinstance(info.value, BdcError) and isinstance(info.value, KeyError)
    with pytest.raises(UnknownTableError, match="Did you mean 'ev'"):
        bdc_cache.location("evv")


def test_not_built_names_the_cache_and_the_command(any_cache: Any) -> None:
    for name in ("assets", "events"):
        with pytest.raises(TableNotBuiltError) as info:
            any_cache.get(name)
        message = str(info.value)
        assert any_cache.url in message
        assert f"bdc-sync --cache {any_cache.url} --only {name}" in message
    with pytest.raises(TableNotBuiltError):
        any_cache.get("events", subject_id="0012")
    with pytest.raises(TableNotBuiltError):
        any_cache.sql("SELECT * FROM assets")


def test_published_partitioned_table_without_the_partition_is_empty_not_an_error(bdc_cache: Any) -> None:
    bdc_cache.put("events", typed_rows())
    df = bdc_cache.get("events", subject_id="999", columns=["name", "score"])
    assert df.empty and list(df.columns) == ["name", "score"]


def _truncate(cache: Any, key: str) -> None:
    data = cache.backend.read_bytes(key)
    cache.backend.write_bytes(key, data[: len(data) // 2])


def test_truncated_parquet_raises_read_error(any_cache: Any) -> None:
    any_cache.put("assets", typed_rows())
    _truncate(any_cache, any_cache.layout.table_key(any_cache.spec("assets")))
    with pytest.raises(ReadError) as info:
        any_cache.get("assets")
    assert "assets" in str(info.value)
    with pytest.raises(ReadError):
        any_cache.get("assets", columns=["name"], limit=1)


def test_partition_pruning_reads_only_the_requested_partition(any_cache: Any) -> None:
    """A corrupt partition does not matter unless it is read: only the requested files are opened."""
    any_cache.put("events", typed_rows())
    spec = any_cache.spec("events")
    any_cache.backend.write_bytes(any_cache.layout.partition_key(spec, "692478"), b"not parquet at all")
    assert len(any_cache.get("events", subject_id="0012")) == 2
    assert len(any_cache.get("events", subject_id=["0012", "a b"])) == 3
    with pytest.raises(ReadError, match="692478"):
        any_cache.get("events")
    with pytest.raises(ReadError):
        any_cache.get("events", subject_id="692478")


def test_corrupt_custom_table_raises_read_error(bdc_file_cache: Any) -> None:
    import pandas as pd

    bdc_file_cache.custom("mine", pd.DataFrame({"a": [1, 2, 3]}))
    _truncate(bdc_file_cache, "custom/mine.pqt")
    with pytest.raises(ReadError):
        bdc_file_cache.custom("mine")


@pytest.mark.parametrize("value", BAD_VALUES)
def test_invalid_partition_values_are_rejected(bdc_cache: Any, value: str) -> None:
    bdc_cache.put("events", typed_rows())
    with pytest.raises(InvalidNameError):
        bdc_cache.get("events", subject_id=value)
    with pytest.raises(InvalidNameError):
        bdc_cache.location("events", subject_id=value)
    with pytest.raises(InvalidNameError):
        bdc_cache.write_partition(bdc_cache.spec("events"), value, [])


@pytest.mark.parametrize("name", ["../x", "a/b", "a b", "x;drop", "it's", "1abc", "", "n\x00ul", "é", "a" * 129, "_x"])
def test_invalid_custom_names_are_rejected(bdc_cache: Any, name: str) -> None:
    import pandas as pd

    with pytest.raises(InvalidNameError):
        bdc_cache.custom(name, pd.DataFrame({"a": [1]}))
    with pytest.raises(InvalidNameError):
        bdc_cache.custom(name)


def test_custom_name_may_not_shadow_an_installed_table(bdc_cache: Any) -> None:
    import pandas as pd

    for name in ("assets", "ev"):
        with pytest.raises(InvalidNameError, match="installed table"):
            bdc_cache.custom(name, pd.DataFrame({"a": [1]}))


def test_unknown_custom_table(bdc_cache: Any) -> None:
    with pytest.raises(TableNotBuiltError, match=r"bdc.custom\('nothing', df\)"):
        bdc_cache.custom("nothing")


def test_invalid_columns_and_filters(bdc_cache: Any) -> None:
    bdc_cache.put("assets", typed_rows())
    with pytest.raises(InvalidNameError, match="Did you mean 'score'"):
        bdc_cache.get("assets", columns=["scor"])
    with pytest.raises(InvalidNameError, match="filter column"):
        bdc_cache.get("assets", where={"nope": 1})
    with pytest.raises(InvalidNameError):
        bdc_cache.get("assets", columns=['name" FROM x; --'])
    with pytest.raises(BdcError, match="limit"):
        bdc_cache.get("assets", limit=-1)
    with pytest.raises(InvalidNameError, match="NUL"):
        bdc_cache.get("assets", where={"name": "a\x00b"})
    with pytest.raises(InvalidNameError, match="not partitioned"):
        bdc_cache.location("assets", subject_id="0012")


HOSTILE = ["x'; DROP TABLE assets; --", "' OR '1'='1", 'a"b', "--", ";", "%", "_", "\\", "?", "$1"]


@pytest.mark.parametrize("backend", ["memory", "file"])
def test_filter_values_are_bound_and_match_literally(backend: str, tmp_path: Path) -> None:
    from bdc.cache import Cache

    cache = Cache("memory://hostile-" + tmp_path.name if backend == "memory" else (tmp_path / "c").as_uri())
    rows = [dict(typed_rows()[0], name=value) for value in HOSTILE]
    cache.put("assets", rows)
    for value in HOSTILE:
        df = cache.get("assets", where={"name": value}, columns=["name"])
        assert df["name"].tolist() == [value]
    assert cache.get("assets", where={"name": "' OR '1'='1"}, columns=["name"])["name"].tolist() == ["' OR '1'='1"]
    assert cache.get("assets", where={"name": "%"}, columns=["name"])["name"].tolist() == ["%"]
    assert len(cache.get("assets", where={"name": HOSTILE[:3]})) == 3
    assert cache.sql("SELECT count(*) AS n FROM assets WHERE name = ?", [HOSTILE[0]])["n"].tolist() == [1]
    assert len(cache.get("assets")) == len(HOSTILE)  # nothing was dropped


def test_sql_errors_are_bdc_errors(bdc_cache: Any) -> None:
    bdc_cache.put("assets", typed_rows())
    with pytest.raises(BdcError, match="SQL"):
        bdc_cache.sql("SELEC nonsense")
    with pytest.raises(BdcError):
        bdc_cache.sql("SELECT * FROM no_such_table")
    with pytest.raises(BdcError):
        bdc_cache.sql("SELECT no_such_column FROM assets")


def test_bad_urls_and_versions() -> None:
    from bdc.cache import Cache

    with pytest.raises(BdcError, match="No backend for URL scheme 'gopher'"):
        Cache("gopher://x")
    with pytest.raises(BdcError, match="names a host"):
        Cache("file://somehost/path")
    with pytest.raises(BdcError):
        Cache("s3:///no-bucket")
    with pytest.raises(ValueError):
        Cache("memory://v", version="not a version")


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=0, max_size=300))
def test_partition_values_either_rejected_or_kept_inside_the_table(value: str) -> None:
    """Whatever the text, it is rejected, or it becomes exactly one folder below the table's."""
    from urllib.parse import unquote

    from bdc.layout import Layout
    from bdc.testing import make_spec

    spec = make_spec("events", [("subject_id", "string")], partition_key="subject_id")
    layout = Layout("bdc-v0.36")
    try:
        key = layout.partition_key(spec, value)
    except InvalidNameError:
        return
    rest = key[len("bdc-v0.36/events/"):]
    folder, file_name = rest.split("/")
    assert file_name == "data.pqt" and folder.startswith("subject_id=")
    assert ".." not in folder and "\\" not in folder and "\x00" not in folder
    assert layout.partition_value(spec, key) == value == unquote(folder[len("subject_id="):])
