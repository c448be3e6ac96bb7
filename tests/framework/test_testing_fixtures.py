"""The fixtures bdc ships to plugin authors (``bdc.testing``, loaded through the pytest11 entry point)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from bdc.testing import make_spec

_seen_urls: list[str] = []


@pytest.mark.parametrize("round_", [1, 2])
def test_bdc_cache_is_fresh_and_unique(bdc_cache: Any, bdc_plugin: Any, round_: int) -> None:
    assert bdc_cache.url.startswith("memory://bdc-test-")
    assert bdc_cache.url not in _seen_urls
    _seen_urls.append(bdc_cache.url)
    bdc_plugin(make_spec("things", [("id", "string"), ("n", "int64")]))
    assert bdc_cache.versions() == []
    bdc_cache.put("things", [{"id": "0012", "n": round_}])
    assert bdc_cache.get("things")["n"].tolist() == [round_]


def test_memory_store_is_dropped_after_the_test() -> None:
    from bdc.backends import memory

    assert len(_seen_urls) == 2
    assert not {url.split("://", 1)[1] for url in _seen_urls} & set(memory._stores)


def test_bdc_file_cache(bdc_file_cache: Any, bdc_plugin: Any, tmp_path: Any) -> None:
    assert bdc_file_cache.url == (tmp_path / "bdc-cache").as_uri()
    bdc_plugin([make_spec("a"), make_spec("b", [("k", "string")], partition_key="k")])
    bdc_file_cache.put("b", [{"k": "x"}, {"k": "y"}])
    assert (tmp_path / "bdc-cache" / "bdc-v0.36" / "b" / "k=y" / "data.pqt").is_file()


def test_make_spec() -> None:
    spec = make_spec("things", [("subject_id", "string", "who")], partition_key="subject_id",
                     aliases=["th"], kind="event")
    assert spec.partitioned and spec.aliases == ("th",) and spec.kind == "event"
    assert spec.columns[0].description == "who" and spec.description == "Test table things"
    assert spec.partitions(None) == [] and spec.build_partition(None, "x") is None
    assert make_spec("plain").build(None) is None


def test_bdc_testing_imports_nothing_heavy() -> None:
    code = ("import sys, pytest, bdc.testing\n"
            "print(','.join(m for m in ('pandas', 'pyarrow', 'duckdb', 'boto3', 'bdc.cache') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
