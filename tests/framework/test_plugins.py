"""Plugin discovery through real entry points (dist-info folders on sys.path), no mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bdc.errors import PluginLoadError, TableCollisionError


def plugin_source(table: str, *, alias: str | None = None, counter: bool = False) -> str:
    """A small plugin module declaring one table (``counter``: counts the hook calls)."""
    return textwrap.dedent(f"""
        import bdc

        CALLS = []

        @bdc.hookimpl
        def bdc_tables():
            CALLS.append(1)
            return [bdc.TableSpec(
                name={table!r}, description="from an entry point",
                aliases={[alias] if alias else []!r},
                columns=[("subject_id", "string", "id"), ("value", "float64", "v")],
                build=lambda ctx: [{{"subject_id": "0012", "value": 1.0}}],
            )]
    """)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``site(dist, entry_name, source=None, *, target=None) -> module name``: a real distribution.

    Writes ``{dist}-1.0.dist-info`` (METADATA, entry_points.txt in group ``bdc``) and a module into
    a folder on ``sys.path``, exactly what ``pip install`` leaves in site-packages.
    """
    root = tmp_path / "site-packages"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))

    def make(dist: str, entry_name: str, source: str | None = None, *, target: str | None = None) -> str:
        module = f"bdcplug_{dist.replace('-', '_')}_{root.parent.name[-8:]}".replace("-", "_")
        info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[bdc]\n{entry_name} = {target or module}\n")
        if source is not None:
            (root / f"{module}.py").write_text(source)
        import importlib

        importlib.invalidate_caches()
        return module

    return make


def _load(monkeypatch: pytest.MonkeyPatch, allow: str | None) -> None:
    from bdc import plugins

    if allow is None:
        monkeypatch.delenv("BDC_LOAD_PLUGINS", raising=False)
    else:
        monkeypatch.setenv("BDC_LOAD_PLUGINS", allow)
    plugins.reset()


def test_good_plugin_is_found_through_its_entry_point(site: Any, monkeypatch: pytest.MonkeyPatch,
                                                     bdc_cache: Any) -> None:
    import bdc
    from bdc.plugins import plugin_records

    module = site("lab-good", "good", plugin_source("good_table", alias="gt", counter=True))
    _load(monkeypatch, "lab-good")
    assert module not in sys.modules  # lazily: nothing loaded before a table is needed
    spec = bdc.Cache.spec("gt")
    assert spec.name == "good_table" and spec.plugin == "lab-good"
    assert plugin_records()["good"].source == "entry point"
    assert plugin_records()["good"].distribution == "lab-good"
    bdc_cache.put("good_table", spec.build(None))
    assert bdc_cache.get("gt")["subject_id"].tolist() == ["0012"]
    bdc.tables()
    bdc.tables()
    assert sys.modules[module].CALLS == [1]  # the hook ran once


def test_unset_allow_list_loads_every_entry_point(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import bdc

    site("lab-one", "one", plugin_source("table_one"))
    site("lab-two", "two", plugin_source("table_two"))
    _load(monkeypatch, None)
    names = {s.name for s in bdc.tables()}
    assert {"table_one", "table_two"} <= names


def test_allow_and_deny_lists(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import bdc

    site("lab-one", "one", plugin_source("table_one"))
    site("lab-two", "two", plugin_source("table_two"))
    _load(monkeypatch, "")
    assert not {"table_one", "table_two"} & {s.name for s in bdc.tables()}
    _load(monkeypatch, "one")  # by entry-point name
    assert {s.name for s in bdc.tables()} == {"table_one"}
    _load(monkeypatch, "lab-two, lab-one")  # by distribution name
    assert {s.name for s in bdc.tables()} == {"table_one", "table_two"}
    monkeypatch.setenv("BDC_DISABLE_PLUGINS", "lab-two")
    _load(monkeypatch, "lab-one,lab-two")
    assert {s.name for s in bdc.tables()} == {"table_one"}
    monkeypatch.setenv("BDC_DISABLE_PLUGINS", "one")
    _load(monkeypatch, "lab-one,lab-two")
    assert {s.name for s in bdc.tables()} == {"table_two"}


BROKEN = "import bdc\nraise ImportError('needs a package that is not installed: nowhere_pkg')\n"


def test_broken_plugin_is_reported_and_the_others_work(site: Any, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import bdc
    from bdc.cli import main
    from bdc.plugins import plugin_failures

    site("lab-good", "good", plugin_source("good_table"))
    site("lab-broken", "broken", BROKEN)
    site("lab-missing", "missing", None, target="no_such_module_anywhere:plugin")
    _load(monkeypatch, "lab-good,lab-broken,lab-missing")
    assert [s.name for s in bdc.tables()] == ["good_table"]
    failures = {f.distribution: f for f in plugin_failures()}
    assert set(failures) == {"lab-broken", "lab-missing"}
    assert "lab-broken" in str(failures["lab-broken"]) and "nowhere_pkg" in str(failures["lab-broken"])
    assert "'broken'" in str(failures["lab-broken"])
    assert main(["tables"]) == 0
    out, err = capsys.readouterr()
    assert "good_table" in out
    assert "warning: Plugin 'broken' from distribution 'lab-broken' failed to load" in err


def test_strict_plugins_make_a_broken_plugin_fatal(site: Any, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import bdc
    from bdc.cli import main

    site("lab-good", "good", plugin_source("good_table"))
    site("lab-broken", "broken", BROKEN)
    monkeypatch.setenv("BDC_STRICT_PLUGINS", "1")
    _load(monkeypatch, "lab-good,lab-broken")
    with pytest.raises(PluginLoadError, match="lab-broken"):
        bdc.tables()
    assert main(["tables"]) == 2
    assert "error: Plugin 'broken' from distribution 'lab-broken' failed to load" in capsys.readouterr().err


@pytest.mark.parametrize("alias", [False, True])
def test_colliding_table_names_name_both_distributions(site: Any, monkeypatch: pytest.MonkeyPatch,
                                                       alias: bool) -> None:
    import bdc

    site("lab-first", "first", plugin_source("shared_table"))
    if alias:
        site("lab-second", "second", plugin_source("other_table", alias="shared_table"))
    else:
        site("lab-second", "second", plugin_source("shared_table"))
    site("lab-third", "third", plugin_source("third_table"))
    _load(monkeypatch, "lab-first,lab-second,lab-third")
    # isolated: the contested name is left out (no claimant kept), every other table stays
    names = {t.name for t in bdc.tables()}
    assert names == ({"other_table", "third_table"} if alias else {"third_table"})
    with pytest.raises(TableCollisionError) as info:
        bdc.get("shared_table")
    message = str(info.value)
    assert "'shared_table'" in message and "lab-first" in message and "lab-second" in message
    assert set(info.value.providers) == {"lab-first", "lab-second"}
    # BDC_STRICT_PLUGINS=1: the collision is fatal, as a plugin that fails to load is
    monkeypatch.setenv("BDC_STRICT_PLUGINS", "1")
    _load(monkeypatch, "lab-first,lab-second,lab-third")
    with pytest.raises(TableCollisionError, match="'shared_table'.*(lab-first.*lab-second|lab-second.*lab-first)"):
        bdc.tables()


def test_in_process_plugin_colliding_with_an_entry_point(site: Any, monkeypatch: pytest.MonkeyPatch,
                                                         bdc_plugin: Any) -> None:
    import bdc
    from bdc.testing import make_spec

    site("lab-good", "good", plugin_source("good_table"))
    _load(monkeypatch, "lab-good")
    bdc_plugin(make_spec("good_table"), name="mine", distribution="my-notebook")
    assert "good_table" not in {t.name for t in bdc.tables()}
    with pytest.raises(TableCollisionError, match="(lab-good.*my-notebook|my-notebook.*lab-good)"):
        bdc.get("good_table")
    monkeypatch.setenv("BDC_STRICT_PLUGINS", "1")
    from bdc import catalog

    catalog.invalidate()
    with pytest.raises(TableCollisionError, match="(lab-good.*my-notebook|my-notebook.*lab-good)"):
        bdc.tables()


def test_bdc_plugin_fixture_registers_for_one_test(bdc_plugin: Any) -> None:
    import types

    import bdc
    from bdc.plugins import plugin_records
    from bdc.testing import make_spec

    module = types.ModuleType("my_adhoc_plugin")

    @bdc.hookimpl
    def bdc_tables() -> list[Any]:
        return [make_spec("adhoc", [("subject_id", "string")], partition_key="subject_id")]

    module.bdc_tables = bdc_tables  # type: ignore[attr-defined]
    assert bdc_plugin(module) == "my_adhoc_plugin"
    assert bdc_plugin(module) == "my_adhoc_plugin"  # already registered: left alone
    assert plugin_records()["my_adhoc_plugin"].source == "in-process"
    assert [s.name for s in bdc.tables()] == ["adhoc"]
    assert bdc.Cache.spec("adhoc").partitioned


def test_bdc_plugin_fixture_cleaned_up_after_the_previous_test() -> None:
    import bdc

    assert bdc.tables() == []


def test_plugin_returning_the_wrong_type_is_named(bdc_plugin: Any) -> None:
    import bdc
    from bdc.errors import PluginError

    class Bad:
        @bdc.hookimpl
        def bdc_tables(self) -> list[Any]:
            return [{"name": "not a spec"}]

    bdc_plugin(Bad(), name="bad-plugin", distribution="bad-dist")
    with pytest.raises(PluginError, match="bad-plugin.*bad-dist"):
        bdc.tables()


def test_import_bdc_loads_nothing_heavy_and_no_plugin(site: Any) -> None:
    """``import bdc`` is light; plugins load on first use; ``bdc.tables()`` still needs no pandas."""
    module = site("lab-lazy", "lazy", plugin_source("lazy_table"))
    code = textwrap.dedent(f"""
        import json, sys
        import bdc
        heavy = ("pandas", "pyarrow", "duckdb", "boto3", "botocore", "numpy", "{module}")
        before = sorted(m for m in heavy if m in sys.modules)
        names = [s.name for s in bdc.tables()]
        import bdc.cli
        after = sorted(m for m in heavy if m in sys.modules)
        print(json.dumps({{"before": before, "after": after, "names": names}}))
    """)
    env = {**os.environ, "BDC_LOAD_PLUGINS": "lab-lazy"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    report = json.loads(result.stdout)
    assert report["before"] == []
    assert report["names"] == ["lazy_table"]
    assert report["after"] == [module]


def test_listing_every_installed_table_imports_nothing_heavy(tmp_path: Path) -> None:
    """All the installed plugins (no ``BDC_LOAD_PLUGINS``): listing their tables, functions and demos,
    ``bdc tables`` and the ``bdc-sync --dry-run`` plan import no pandas, pyarrow, numpy, DuckDB or boto3."""
    code = textwrap.dedent("""
        import contextlib, io, json, sys
        import bdc
        from bdc.catalog import get_catalog
        from bdc.cli import main as bdc_main
        from bdc.plugins import plugin_records
        from bdc.runner.cli import main as sync_main

        heavy = ("pandas", "pyarrow", "numpy", "duckdb", "boto3", "botocore")
        loaded = {}
        names = [s.name for s in bdc.tables()]
        loaded["bdc.tables()"] = sorted(m for m in heavy if m in sys.modules)
        catalog = get_catalog()
        functions, demos = sorted(catalog.functions), [d.name for d in catalog.demos]
        loaded["functions, demos"] = sorted(m for m in heavy if m in sys.modules)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            codes = [bdc_main(["tables"]), sync_main(["--dry-run"])]
        loaded["bdc tables, bdc-sync --dry-run"] = sorted(m for m in heavy if m in sys.modules)
        plugins = sorted(r.name for r in plugin_records().values() if r.source == "entry point")
        print(json.dumps({"names": names, "functions": functions, "demos": demos, "plugins": plugins,
                          "codes": codes, "output": out.getvalue(), "loaded": loaded}))
    """)
    env = {name: value for name, value in os.environ.items()
           if name not in ("BDC_LOAD_PLUGINS", "BDC_DISABLE_PLUGINS", "BIODATA_CACHE_BACKEND")}
    env.update(BDC_STRICT_PLUGINS="1", BDC_CACHE=(tmp_path / "cache").as_uri())
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert {"docdb", "foraging"} <= set(report["plugins"])
    assert {"asset_basics", "quality_control", "platform_smartspim", "platform_dynamic_foraging_sessions"} <= set(
        report["names"])
    assert "raw_to_derived" in report["functions"] and "docdb" in report["demos"]
    assert report["codes"] == [0, 0]
    assert "quality_control" in report["output"] and "wave 1:" in report["output"]
    assert report["loaded"] == dict.fromkeys(report["loaded"], []), report["loaded"]


RAISING = textwrap.dedent("""
    import bdc

    @bdc.hookimpl
    def bdc_tables():
        raise RuntimeError("the lab's spec list is broken")
""")


def test_plugin_whose_hook_raises_is_reported_and_the_others_work(site: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import bdc
    from bdc.plugins import plugin_failures

    site("lab-good", "good", plugin_source("good_table"))
    site("lab-raising", "raising", RAISING)
    _load(monkeypatch, "lab-good,lab-raising")
    assert [s.name for s in bdc.tables()] == ["good_table"]
    [failure] = plugin_failures()
    assert failure.distribution == "lab-raising" and "spec list is broken" in str(failure)
    monkeypatch.setenv("BDC_STRICT_PLUGINS", "1")
    _load(monkeypatch, "lab-good,lab-raising")
    with pytest.raises(PluginLoadError, match="lab-raising"):
        bdc.tables()
