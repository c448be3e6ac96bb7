"""``bdc-sync`` usage errors and output modes: what fails before any table runs, and what
``--json`` / ``--quiet`` print."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import syncplugin
from bdc.build import BuildContext
from bdc.cache import Cache
from bdc.hookspecs import hookimpl
from bdc.runner.cli import main
from bdc.spec import DemoSpec, TableSpec


@pytest.fixture
def plugin(tmp_path: Path, bdc_plugin: Callable[..., str]) -> syncplugin.Source:
    """The synthetic sync tables, registered in-process; returns their source."""
    source = syncplugin.make_source(tmp_path / "source", syncplugin.default_subjects(3))
    bdc_plugin(syncplugin.SyncPlugin(source), name="syncplugin-cli", distribution="bdc-test-sync")
    return source


@pytest.mark.usefixtures("plugin")
def test_dask_without_distributed_is_a_usage_error_before_any_table_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # ``import distributed`` raises ImportError
    cache = Cache((tmp_path / "cache").as_uri())
    assert main(["--cache", cache.url, "--executor", "dask", "--quiet", "--only", "sync_sessions"]) == 2
    err = capsys.readouterr().err
    assert "The dask executor needs: pip install 'bdc-framework[dask]'" in err
    assert "Traceback" not in err
    assert not cache.is_published(cache.spec("sync_subjects"))
    assert not cache.backend.list(f"{cache.layout.version_folder}/_runs/")  # no run started


@pytest.mark.usefixtures("plugin")
@pytest.mark.parametrize("output", [[], ["--json"], ["--quiet"]])
@pytest.mark.parametrize("bad, message", [(["--executor", "threds"], "Unknown executor 'threds'"),
                                          (["--workers", "0"], "workers must be a whole number of at least 1")])
def test_a_dry_run_refuses_what_a_run_refuses(bad: list[str], message: str, output: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cache", "memory://", "--dry-run", *bad, *output]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no plan printed
    if output == ["--json"]:
        event = json.loads(err)
        assert event["event"] == "error" and message in event["message"] and event["exit_status"] == 2
    else:
        assert f"bdc-sync: error: {message}" in err
    # a valid one still prints the plan
    assert main(["--cache", "memory://", "--dry-run", "--executor", "processes", "--workers", "2"]) == 0
    assert "sync_sessions" in capsys.readouterr().out


class NoisyPlugin:
    """A table whose build logs through its context's logger, a module logger of the plugin and
    ``warnings.warn``, and a demo source that logs while it starts."""

    @hookimpl
    def bdc_tables(self) -> list[TableSpec]:
        """The ``noisy`` table."""
        return [TableSpec("noisy", "Logs while it builds", [("x", "int64")], build=_build_noisy)]

    @hookimpl
    def bdc_demo_sources(self) -> list[DemoSpec]:
        """A demo source that logs a warning as it starts."""
        return [DemoSpec("noisy-demo", _noisy_demo, "an offline source")]


def _build_noisy(ctx: BuildContext) -> list[dict[str, int]]:
    ctx.log.warning("asset %s: unreadable", "a1")
    logging.getLogger("noisy_plugin.source").error("the source said %d", 503)
    warnings.warn("a deprecated option", DeprecationWarning, stacklevel=1)
    return [{"x": 1}]


@contextlib.contextmanager
def _noisy_demo() -> Iterator[None]:
    logging.getLogger("noisy_plugin.demo").warning("demo data is old")
    yield


@pytest.fixture
def noisy(bdc_plugin: Callable[..., str]) -> str:
    """The noisy plugin, registered in-process."""
    return bdc_plugin(NoisyPlugin(), name="noisy-plugin", distribution="bdc-test-noisy")


@pytest.mark.usefixtures("noisy")
def test_json_mode_prints_json_lines_only_with_the_runs_log_records(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cache", (tmp_path / "cache").as_uri(), "--demo", "--json"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    events = [json.loads(line) for line in err.splitlines()]  # every line is a JSON event
    kinds = [e["event"] for e in events]
    assert kinds[0] == "demo_started" and events[0]["demo"] == "noisy-demo"
    assert kinds[-1] == "run_finished"
    logs = {e["message"]: e for e in events if e["event"] == "log"}
    assert logs["demo data is old"] == {**logs["demo data is old"], "level": "warning",
                                        "logger": "noisy_plugin.demo", "table": None}
    assert logs["asset a1: unreadable"] == {**logs["asset a1: unreadable"], "level": "warning",
                                            "logger": "bdc.build.noisy", "table": "noisy"}
    assert logs["the source said 503"] == {**logs["the source said 503"], "level": "error",
                                           "logger": "noisy_plugin.source", "table": "noisy"}
    assert any("a deprecated option" in m for m in logs)


@pytest.mark.usefixtures("noisy")
@pytest.mark.parametrize("mode", ["--quiet", "plain"])
def test_quiet_prints_no_log_lines_and_plain_prints_them_as_its_lines(
        mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cache", (tmp_path / "cache").as_uri(), "--demo", *([mode] if mode != "plain" else [])]) == 0
    _out, err = capsys.readouterr()
    if mode == "--quiet":
        # which sources the run used, and the run's own warnings (not those of a table's build:
        # the report has them)
        assert sorted(err.splitlines()) == ["demo: starting noisy-demo (an offline source)",
                                            "warning: noisy_plugin.demo: demo data is old"]
    else:
        lines = err.splitlines()
        # a line per record, the display's clock first (a warning's source line may follow, indented)
        assert all(re.match(r"\[\d\d:\d\d:\d\d\] |  ", line) for line in lines), "\n".join(lines)
        assert any(line.endswith("] warning: bdc.build.noisy: asset a1: unreadable") for line in lines)
        assert any(line.endswith("] demo: starting noisy-demo (an offline source)") for line in lines)
