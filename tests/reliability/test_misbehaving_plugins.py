"""Misbehaving plugins: the right table fails with a message naming its plugin or distribution;
the other tables still publish."""

from __future__ import annotations

import importlib
import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bdc.cache import Cache
from bdc.errors import TableCollisionError
from bdc.runner import sync


def _source(table: str, body: str = 'return [{"id": "a", "n": 1}]') -> str:
    """A plugin module declaring one table whose build runs ``body``."""
    return textwrap.dedent(f"""
        import bdc

        def _build(ctx):
            {body}

        @bdc.hookimpl
        def bdc_tables():
            return [bdc.TableSpec(name={table!r}, description="reliability",
                                  columns=[("id", "string"), ("n", "int64")], build=_build)]
    """)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``site(dist, source)``: installs a real distribution (dist-info + module) on a tmp ``sys.path``."""
    root = tmp_path / "site-packages"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def make(dist: str, source: str) -> None:
        module = f"relplug_{dist.replace('-', '_')}_{tmp_path.name[-8:]}".replace("-", "_")
        info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[bdc]\n{dist} = {module}\n")
        (root / f"{module}.py").write_text(source)
        importlib.invalidate_caches()

    return make


def _load(monkeypatch: pytest.MonkeyPatch, *dists: str) -> None:
    """Load exactly these distributions' entry points into a fresh plugin manager."""
    from bdc import plugins

    monkeypatch.setenv("BDC_LOAD_PLUGINS", ",".join(dists))
    plugins.reset()


def test_each_misbehaviour_fails_its_own_table_and_the_others_publish(site: Any, monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    from bdc.plugins import plugin_failures

    site("lab-good", _source("good_table"))
    site("lab-import", "import bdc\nimport no_such_dependency_anywhere\n")
    site("lab-raises", _source("raising_table", 'raise RuntimeError("upstream exploded")'))
    site("lab-columns", _source("columns_table", 'return [{"id": "a", "wrong": 1.5}]'))
    site("lab-types", _source("types_table", 'return [{"id": "a", "n": "not a number"}]'))
    _load(monkeypatch, "lab-good", "lab-import", "lab-raises", "lab-columns", "lab-types")
    cache = Cache((tmp_path / "cache").as_uri())
    report = sync(cache, workers=2)
    assert not report.ok
    # the plugin that does not import is reported by name and distribution, its table is absent
    [failure] = plugin_failures()
    assert failure.distribution == "lab-import" and "no_such_dependency_anywhere" in str(failure)
    assert "lab-import" in str(failure)
    status = {t.name: t for t in report.tables}
    assert set(status) == {"good_table", "raising_table", "columns_table", "types_table"}
    assert status["good_table"].status == "ok"
    assert cache.get("good_table").to_dict("records") == [{"id": "a", "n": 1}]
    for name, dist, words in [("raising_table", "lab-raises", "upstream exploded"),
                              ("columns_table", "lab-columns", "wrong"),
                              ("types_table", "lab-types", "n")]:
        t = status[name]
        assert t.status == "failed", name
        assert dist in t.error and words in t.error, t.error
        assert t.plugin == dist
        assert cache.registry_entry(name) is None  # nothing half-published


def test_a_failed_rebuild_keeps_the_previous_data(site: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    flag = tmp_path / "explode"
    site("lab-flaky", _source("flaky_table", f'import os\n            if os.path.exists({str(flag)!r}): '
                                             f'raise ValueError("bad batch")\n            return [{{"id": "a", "n": 1}}]'))
    _load(monkeypatch, "lab-flaky")
    cache = Cache((tmp_path / "cache").as_uri())
    assert sync(cache).ok
    flag.write_text("1")
    report = sync(cache)
    assert report.table("flaky_table").status == "failed" and "lab-flaky" in report.table("flaky_table").error
    assert cache.get("flaky_table").to_dict("records") == [{"id": "a", "n": 1}]


def test_name_collision_names_both_distributions_and_publishes_nothing(site: Any, monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    site("lab-first", _source("shared_table"))
    site("lab-second", _source("shared_table"))
    site("lab-bystander", _source("bystander_table"))
    _load(monkeypatch, "lab-first", "lab-second", "lab-bystander")
    cache = Cache((tmp_path / "cache").as_uri())
    with pytest.raises(TableCollisionError) as info:
        sync(cache)
    message = str(info.value)
    assert "'shared_table'" in message and "lab-first" in message and "lab-second" in message
    assert cache.registry()["tables"] == []  # refused up front: nothing built under an ambiguous name
    # disabling one of the two resolves it, and both remaining tables publish
    monkeypatch.setenv("BDC_DISABLE_PLUGINS", "lab-second")
    from bdc import plugins

    plugins.reset()
    report = sync(cache)
    assert report.ok and {t.name for t in report.tables} == {"shared_table", "bystander_table"}
    assert cache.registry_entry("shared_table")["plugin"] == "lab-first"
