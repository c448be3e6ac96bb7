"""Hostile names and values: each is a clear bdc error or a well-defined row, and nothing is read
or written outside the cache root (file backend: the whole tmp tree is compared before/after)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bdc.cache import Cache
from bdc.errors import InvalidNameError, UnknownTableError
from bdc.testing import make_spec
from conftest import tree
from reliability_figures import write_figures

#: Strings that try to escape a path, break out of a SQL literal or look like a separator.
HOSTILE = [
    "..", "../..", "../../etc/passwd", "a/../../b", "/abs", "a/b", "a\\b", "..\\..\\x", "'", "a'b", '"', 'a"b',
    "x'; DROP TABLE t; --", "1 OR 1=1", "--", "a;b", ";", "a\x00b", "\x00", "x" * 10_000,
    "a\uff0fb", "\u2024\u2024", "\u2024\u2024\uff0fetc", "\uff3c", "`", " lead", "trail ", "", "a\nb",
]
#: Look-alikes that are plain text to the file system: accepted, and stay exactly what they are.
LOOKALIKES = ["a\uff0fb", "\u2024\u2024", "\u2024\u2024\uff0fetc", "\uff3c", "1 OR 1=1", "a;b", "--", ";", "--x"]

LABELS = ["plain", "x'; DROP TABLE t; --", "a\uff0fb", "\u2024\u2024", "..", "a/b", "a\\b", "'", '"', "--", ";",
          "x" * 5000, "1 OR 1=1", "%2e%2e", "NULL"]


#: What this module tried: one per test case, one per hypothesis example (for the docs' figures).
TRIED = {"cases": 0, "generated_values": 0}


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Any:
    yield
    write_figures("hostile_input", {"hostile_strings": len(set(HOSTILE + LOOKALIKES + LABELS)), **TRIED})


@pytest.fixture(autouse=True)
def _count_case() -> None:
    TRIED["cases"] += 1


def _tables(bdc_plugin: Any) -> None:
    """Declare ``labels`` (text column ``label``) and ``parted`` (partitioned by ``sid``)."""
    bdc_plugin([make_spec("labels", [("id", "int64"), ("label", "string")], key=["id"]),
                make_spec("parted", [("sid", "string"), ("n", "int64")], partition_key="sid")],
               name="hostile-tables", distribution="bdc-test-hostile")


@pytest.fixture
def cache(tmp_path: Path, bdc_plugin: Any) -> Cache:
    """A file cache under ``tmp_path/root/cache`` with ``labels`` and ``parted`` published."""
    _tables(bdc_plugin)
    c = Cache((tmp_path / "root" / "cache").as_uri())
    c.put("labels", [{"id": i, "label": v} for i, v in enumerate(LABELS)])
    c.put("parted", [{"sid": "0007", "n": 1}, {"sid": "0014", "n": 2}])
    return c


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_table_and_custom_names_are_refused_and_touch_nothing(cache: Cache, tmp_path: Path,
                                                                      name: str) -> None:
    before = tree(tmp_path)
    with pytest.raises((InvalidNameError, UnknownTableError)):
        cache.get(name)
    with pytest.raises((InvalidNameError, UnknownTableError)):
        cache.location(name)
    with pytest.raises(InvalidNameError, match="custom table name"):
        cache.custom(name, [{"a": 1}])
    with pytest.raises(InvalidNameError, match="custom table name"):
        cache.custom(name)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("value", [v for v in HOSTILE if v not in LOOKALIKES])
def test_hostile_partition_values_are_refused_on_read_and_write(cache: Cache, tmp_path: Path, value: str) -> None:
    before = tree(tmp_path)
    spec = cache.spec("parted")
    with pytest.raises(InvalidNameError, match="sid"):
        cache.get("parted", sid=value)
    with pytest.raises(InvalidNameError, match="sid"):
        cache.get("parted", sid=["0007", value])
    with pytest.raises(InvalidNameError, match="sid"):
        cache.write_partition(spec, value, [{"sid": value, "n": 9}])
    with pytest.raises(InvalidNameError):
        cache.location("parted", sid=value)
    assert tree(tmp_path) == before
    assert cache.get("parted")["sid"].tolist() == ["0007", "0014"]


@pytest.mark.parametrize("value", LOOKALIKES)
def test_lookalike_partition_values_are_plain_text_inside_the_table_folder(cache: Cache, tmp_path: Path,
                                                                           value: str) -> None:
    spec = cache.spec("parted")
    cache.write_partition(spec, value, [{"sid": value, "n": 3}])
    cache.publish(spec)  # readers read what the registry lists
    root = tmp_path / "root" / "cache"
    added = set(tree(tmp_path)) - {str(Path("root/cache") / k) for k in tree(root)}
    assert not added, f"written outside the cache root: {added}"
    folder = root / cache.layout.table_prefix(spec)
    parts = [p for p in folder.iterdir() if p.is_dir()]
    assert len(parts) == 3 and all(p.parent == folder for p in parts)
    # the folder name is percent-encoded: no separator, no '..' for a file system or a URL
    assert all("/" not in p.name and "\\" not in p.name and ".." not in p.name for p in parts)
    assert cache.partition_objects(spec).keys() == {"0007", "0014", value}
    got = cache.get("parted", sid=value)
    assert got.to_dict("records") == [{"sid": value, "n": 3}]
    # it is not the ASCII value it looks like
    assert len(cache.get("parted", sid=["0007", value])) == 2


@pytest.mark.parametrize("label", LABELS)
def test_filter_values_match_literally(cache: Cache, label: str) -> None:
    got = cache.get("labels", label=label)
    assert got.to_dict("records") == [{"id": LABELS.index(label), "label": label}]
    assert len(cache.get("labels", label=[label, "no such label"])) == 1


def test_sql_injection_in_filters_and_columns_is_inert(cache: Cache) -> None:
    assert cache.get("labels", label="' OR '1'='1").empty
    assert cache.get("labels", label="plain' OR 'x'='x").empty
    with pytest.raises(InvalidNameError, match="NUL"):
        cache.get("labels", label="plain\x00")
    for column in ['label" = label OR "1', "label; DROP TABLE t", "x\x00"]:
        with pytest.raises(InvalidNameError):
            cache.get("labels", columns=[column])
        with pytest.raises(InvalidNameError):
            cache.get("labels", **{"where": {column: "plain"}})
    assert len(cache.get("labels")) == len(LABELS)  # nothing was dropped


_text = st.one_of(st.sampled_from(LABELS + HOSTILE), st.text(max_size=40),
                  st.text(alphabet="./\\'\";-\x00 \uff0f\u2024%", max_size=12))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_text)
def test_any_filter_value_matches_literally_or_is_refused(cache: Cache, value: str) -> None:
    TRIED["generated_values"] += 1
    if "\x00" in value:
        with pytest.raises(InvalidNameError):
            cache.get("labels", label=value)
        return
    got = cache.get("labels", label=value)
    assert got["label"].tolist() == [v for v in LABELS if v == value]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_text)
def test_any_partition_value_round_trips_or_is_refused(bdc_plugin: Any, value: str) -> None:
    TRIED["generated_values"] += 1
    from bdc.catalog import get_catalog

    if "parted" not in get_catalog():
        _tables(bdc_plugin)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cache = Cache((base / "cache").as_uri())
        spec = cache.spec("parted")
        try:
            cache.write_partition(spec, value, [{"sid": value, "n": 1}])
        except InvalidNameError:
            assert list(base.iterdir()) == [] or tree(base) == {}
            with pytest.raises(InvalidNameError):
                cache.get("parted", sid=value)
            return
        cache.publish(spec)
        assert [p.name for p in base.iterdir()] == ["cache"]  # nothing beside the cache root
        [key] = [k for k in tree(base / "cache") if k.endswith(".pqt")]
        assert Path(key).parent.parent == Path(cache.layout.table_prefix(spec))
        assert list(cache.partition_objects(spec)) == [value]
        assert cache.get("parted", sid=value).to_dict("records") == [{"sid": value, "n": 1}]
