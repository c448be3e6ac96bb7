"""Misbehaving plugins: the right table fails with a message naming its plugin or distribution;
the other tables still publish."""

from __future__ import annotations

import importlib
import json
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


def _dependent_source(table: str, depends_on: str) -> str:
    """A plugin module declaring one table that reads ``depends_on``."""
    return textwrap.dedent(f"""
        import bdc

        def _build(ctx):
            return ctx.read({depends_on!r})[["id", "n"]]

        @bdc.hookimpl
        def bdc_tables():
            return [bdc.TableSpec(name={table!r}, description="reliability, dependent",
                                  columns=[("id", "string"), ("n", "int64")], build=_build,
                                  depends_on=[{depends_on!r}])]
    """)


def _entry(cache: Cache, name: str) -> dict[str, Any] | None:
    """The registry entry of ``name``, read from the registry document (not through the catalog)."""
    return next((e for e in cache.registry()["tables"] if e["name"] == name), None)


def _published_rows(cache: Cache, name: str) -> list[dict[str, Any]]:
    """The rows of a published whole table, read from the file its registry entry names."""
    import pyarrow.parquet as pq
    from urllib.parse import urlparse

    entry = _entry(cache, name)
    assert entry is not None, name
    return pq.read_table(urlparse(entry["location"]).path).to_pylist()


def test_name_collision_fails_that_table_naming_both_and_the_others_publish(
        site: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import bdc
    from bdc.runner.cli import main as sync_main

    site("lab-first", _source("shared_table"))
    site("lab-second", _source("shared_table", 'return [{"id": "b", "n": 2}]'))
    site("lab-bystander", _source("bystander_table"))
    site("lab-reader", _dependent_source("reader_table", "shared_table"))
    cache = Cache((tmp_path / "cache").as_uri())
    # before the collision: lab-first alone publishes shared_table
    _load(monkeypatch, "lab-first")
    assert sync(cache).ok
    before = _entry(cache, "shared_table")
    assert _published_rows(cache, "shared_table") == [{"id": "a", "n": 1}]

    _load(monkeypatch, "lab-first", "lab-second", "lab-bystander", "lab-reader")
    plan = sync(cache, dry_run=True).describe()  # the plan says so up front
    assert "not built:" in plan and "shared_table: failed" in plan and "reader_table: skipped" in plan
    report = sync(cache)
    assert not report.ok and report.status == "failed"
    status = {t.name: t for t in report.tables}
    assert set(status) == {"shared_table", "bystander_table", "reader_table"}
    shared = status["shared_table"]
    assert shared.status == "failed"
    assert "TableCollisionError" in shared.error and "'shared_table'" in shared.error
    assert "lab-first" in shared.error and "lab-second" in shared.error
    assert shared.plugin is not None and "lab-first" in shared.plugin and "lab-second" in shared.plugin
    # the other tables publish; what reads the contested name is skipped, naming why
    assert status["bystander_table"].status == "ok"
    assert cache.get("bystander_table").to_dict("records") == [{"id": "a", "n": 1}]
    reader = status["reader_table"]
    assert reader.status == "skipped" and "shared_table" in reader.error and "lab-second" in reader.error
    assert cache.registry_entry("reader_table") is None
    # no claimant was built: what lab-first published before is left exactly as it was
    assert _entry(cache, "shared_table") == before
    assert _published_rows(cache, "shared_table") == [{"id": "a", "n": 1}]
    # reading the contested name raises the collision, naming both distributions
    for read in (lambda: cache.get("shared_table"), lambda: bdc.get("shared_table"),
                 lambda: cache.sql("SELECT * FROM shared_table")):
        with pytest.raises(TableCollisionError) as info:
            read()
        assert set(info.value.providers) == {"lab-first", "lab-second"}
        assert "lab-first" in str(info.value) and "lab-second" in str(info.value)
    assert {t.name for t in bdc.tables()} == {"bystander_table", "reader_table"}
    # the run report stored in the cache says the same
    stored = json.loads(cache.backend.read_bytes(cache.layout.run_report_key(report.run_id)))
    stored_status = {t["name"]: t for t in stored["tables"]}
    assert stored["ok"] is False and stored_status["shared_table"]["status"] == "failed"
    assert "lab-second" in stored_status["shared_table"]["error"]

    # bdc-sync: the summary lists the failed table with its message; exit status 1
    capsys.readouterr()
    assert sync_main(["--cache", cache.url]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "shared_table" in line and "failed" in line)
    assert "lab-first" in line and "lab-second" in line
    assert sync_main(["--cache", cache.url, "--only", "bystander_table", "--quiet"]) == 0  # not selected: fine
    assert sync_main(["--cache", cache.url, "--only", "reader_table", "--quiet"]) == 1  # needs it: fails

    # BDC_STRICT_PLUGINS=1: the collision is fatal, refused up front, nothing built
    monkeypatch.setenv("BDC_STRICT_PLUGINS", "1")
    _load(monkeypatch, "lab-first", "lab-second", "lab-bystander", "lab-reader")
    with pytest.raises(TableCollisionError):
        sync(cache)
    monkeypatch.delenv("BDC_STRICT_PLUGINS")

    # disabling one of the two resolves it: every table publishes
    monkeypatch.setenv("BDC_DISABLE_PLUGINS", "lab-first")
    _load(monkeypatch, "lab-first", "lab-second", "lab-bystander", "lab-reader")
    report = sync(cache)
    assert report.ok and {t.name for t in report.tables} == {"shared_table", "bystander_table", "reader_table"}
    assert cache.registry_entry("shared_table")["plugin"] == "lab-second"
    assert cache.get("reader_table").to_dict("records") == [{"id": "b", "n": 2}]


def test_alias_collision_fails_the_contested_name_and_keeps_the_other_table(
        site: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import bdc

    site("lab-first", _source("shared_table"))
    site("lab-second", _source("other_table").replace('build=_build)', 'build=_build, aliases=["shared_table"])'))
    _load(monkeypatch, "lab-first", "lab-second")
    cache = Cache((tmp_path / "cache").as_uri())
    report = sync(cache)
    assert not report.ok
    assert report.table("shared_table").status == "failed"
    assert "lab-first" in report.table("shared_table").error and "lab-second" in report.table("shared_table").error
    # the alias is only a shortcut: the other table builds under its own name
    assert report.table("other_table").status == "ok"
    assert cache.get("other_table").to_dict("records") == [{"id": "a", "n": 1}]
    with pytest.raises(TableCollisionError, match="(lab-first.*lab-second|lab-second.*lab-first)"):
        cache.get("shared_table")
    assert {t.name for t in bdc.tables()} == {"other_table"}
