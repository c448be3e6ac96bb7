"""The ``bdc`` command: behaviour through ``main(argv)``, start-up cost through real processes."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bdc.cli import main
from bdc_samples import typed_rows

pytestmark = pytest.mark.usefixtures("typed_plugin")


@pytest.fixture
def built(bdc_env: Any) -> Any:
    """The default cache (BDC_CACHE) with both sample tables published."""
    bdc_env.put("assets", typed_rows(), finished_at="2024-05-02T03:00:00Z", seconds=1.25)
    bdc_env.put("events", typed_rows())
    return bdc_env


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_tables_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "tables")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "aliases", "kind", "partition", "key", "description"]
    assert lines[2].split()[:3] == ["assets", "ast", "asset"]
    assert lines[3].split()[:4] == ["events", "ev", "metadata", "subject_id"]
    code, out, _ = run(capsys, "tables", "--json")
    doc = json.loads(out)
    assert [t["name"] for t in doc] == ["assets", "events"]
    assert doc[1]["partition_key"] == "subject_id" and doc[1]["aliases"] == ["ev"]
    assert doc[0]["columns"][5] == {"name": "created", "type": "timestamp[us, tz=UTC]", "description": "creation time"}


def test_show_not_built_tells_how_to_build(bdc_env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "ev")
    assert code == 0
    assert out.startswith("events: Every type, partitioned by subject")
    assert "partition key:  subject_id" in out and "depends on:     assets" in out
    assert "plugin:         bdc-test-typed" in out
    assert "created     timestamp[us, tz=UTC]  creation time" in out
    assert f"not built in cache {bdc_env.url}" in out
    assert f"bdc-sync --cache {bdc_env.url} --only events" in out


def test_not_built_hint_keeps_the_version_asked_for(bdc_env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import shlex

    from bdc.cache import Cache
    from bdc.runner.cli import build_parser

    code, _, err = run(capsys, "--cache", bdc_env.url, "--version", "0.35", "get", "assets")
    assert code == 2
    assert f"Build it with: bdc-sync --cache {bdc_env.url} --version 0.35 --only assets" in err
    code, out, _ = run(capsys, "--cache", bdc_env.url, "--version", "0.35", "show", "ev")
    hint = next(line for line in out.splitlines() if line.startswith("Build it with: "))
    command = shlex.split(hint.removeprefix("Build it with: "))
    assert command[0] == "bdc-sync"
    # the suggested command builds the folder that was read, of the cache that was read
    args = build_parser().parse_args(command[1:])
    target = Cache(args.cache, version=args.cache_version)
    assert (target.url, target.layout.version_folder, args.only) == (bdc_env.url, "bdc-v0.35", ["events"])
    # the default version needs no --version
    code, _, err = run(capsys, "--cache", bdc_env.url, "get", "assets")
    assert f"Build it with: bdc-sync --cache {bdc_env.url} --only assets" in err


def test_show_built_table(built: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "assets")
    assert code == 0
    assert "rows:           5" in out
    assert re.search(r"^size:\s+\d+(\.\d)? (B|KB)$", out, re.M)
    assert re.search(r"^build finished_at:\s*2024-05-02T03:00:00Z$", out, re.M)
    assert re.search(r"^build seconds:\s*1.25$", out, re.M)
    assert "sample (5 rows):" in out and "ünïcødé ✓" in out
    code, out, _ = run(capsys, "show", "ev")
    assert "sample (subject_id=0012, 5 rows):" in out and "a2" in out and "692478" not in out
    code, out, _ = run(capsys, "show", "events")
    assert "partitions:     3" in out
    code, out, _ = run(capsys, "show", "events", "--json")
    doc = json.loads(out)
    assert doc["published"]["build"]["partitions"] == 3 and doc["spec"]["name"] == "events"


def test_get_defaults_to_csv_when_not_a_tty(built: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "get", "events", "--subject-id", "0012")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["subject_id"] for r in rows] == ["0012", "0012"]
    assert rows[0]["tags"] == '["x", "y"]' and rows[1]["tags"] == ""
    assert rows[0]["created"].startswith("2024-05-01 12:30:15.123456")
    assert rows[0]["n_files"] == "3" and rows[1]["n_files"] == ""


def test_get_json_columns_where_limit(built: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "get", "assets", "--format", "json", "--columns", "name,subject_id,created",
                       "--where", "is_ok=true", "--where", "n_files=3", "--where", "n_files=0")
    assert code == 0
    assert json.loads(out) == [
        {"name": "a1", "subject_id": "0012", "created": "2024-05-01T12:30:15.123456+00:00"},
        {"name": None, "subject_id": "692478", "created": "2024-05-01T12:30:15.123456+00:00"},
    ]
    code, out, _ = run(capsys, "get", "ev", "--partition", "subject_id=a b", "--format", "json")
    assert [r["name"] for r in json.loads(out)] == ["ünïcødé ✓"]
    code, out, _ = run(capsys, "get", "assets", "--limit", "2", "--format", "json", "--columns", "name")
    assert len(json.loads(out)) == 2
    code, out, _ = run(capsys, "get", "assets", "--format", "json", "--where", "name=' OR '1'='1")
    assert json.loads(out) == []


def test_get_table_format(built: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "get", "assets", "--format", "table", "--columns", "name,n_files")
    assert code == 0
    assert out.splitlines()[0].split() == ["name", "n_files"]
    assert "-1099511627776" in out and "(5 rows)" in out
    assert "3.0" not in out  # integers with nulls stay integers


def test_get_to_files(built: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq

    target = tmp_path / "out.pqt"
    code, _, err = run(capsys, "get", "events", "--subject-id", "0012", "-o", str(target))
    assert code == 0 and "wrote 2 rows" in err
    table = pq.read_table(target)
    assert table.column("subject_id").to_pylist() == ["0012", "0012"]
    assert str(table.schema.field("created").type) == "timestamp[us, tz=UTC]"
    code, _, _ = run(capsys, "get", "assets", "--format", "csv", "-o", str(tmp_path / "a.txt"))
    assert (tmp_path / "a.txt").read_text().startswith('"name","subject_id"')
    code, _, _ = run(capsys, "get", "assets", "-o", str(tmp_path / "a.json"))
    assert len(json.loads((tmp_path / "a.json").read_text())) == 5


def test_sql_with_params(built: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "sql", "SELECT subject_id, count(*) AS n FROM ev WHERE subject_id <> ? GROUP BY 1 ORDER BY 1",
                       "--param", "a b", "--format", "json")
    assert code == 0
    assert json.loads(out) == [{"subject_id": "0012", "n": 2}, {"subject_id": "692478", "n": 2}]


def test_versions_registry_location(built: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "versions")
    assert code == 0 and out == "bdc-v0.36  (selected)\n"
    code, out, _ = run(capsys, "registry")
    assert [t["name"] for t in json.loads(out)["tables"]] == ["assets", "events"]
    code, out, _ = run(capsys, "location", "events", "--subject-id", "0012")
    assert out.strip() == built.location("events", subject_id="0012")
    code, out, _ = run(capsys, "location", "assets")
    assert out.strip().endswith("bdc-v0.36/assets.pqt")


def test_global_cache_and_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bdc.cache import Cache

    url = (tmp_path / "other").as_uri()
    Cache(url, version="0.35").put("assets", typed_rows())
    code, out, err = run(capsys, "--cache", url, "get", "assets", "--format", "json")
    assert code == 2 and "has not been built" in err and "bdc-v0.36" in err
    code, out, _ = run(capsys, "--cache", url, "--version", "0.35", "get", "assets", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 5
    code, out, _ = run(capsys, "--cache", url, "versions")
    assert out == "bdc-v0.35\n"


@pytest.mark.parametrize("argv, message", [
    (["get", "asets"], "error: Unknown table 'asets'. Did you mean 'assets'"),
    (["get", "assets"], "has not been built"),
    (["get", "assets", "--format", "parquet"], "error: --format parquet needs an output file"),
    (["get", "events", "--subject-id", "../x"], "error: Invalid subject_id value"),
    (["get", "assets", "--where", "n_files=many"], "error: --where n_files='many': not a valid int64"),
    (["get", "assets", "--where", "nonsense"], "error: --where expects COLUMN=VALUE"),
    (["get", "assets", "--partition", "subject_id=1"], "is not partitioned"),
    (["get", "assets", "--columns", "nope"], "has no column 'nope'"),
    (["show", "nope"], "error: Unknown table 'nope'"),
    (["sql", "SELECT * FROM assets"], "has not been built"),
    (["--cache", "gopher://x", "versions"], "error: No backend for URL scheme 'gopher'"),
])
def test_errors_exit_2_without_traceback(bdc_env: Any, capsys: pytest.CaptureFixture[str],
                                         argv: list[str], message: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and err.startswith("error: ")
    assert "Traceback" not in err and out == ""


def test_read_error_exits_2(built: Any, capsys: pytest.CaptureFixture[str]) -> None:
    key = built.layout.table_key(built.spec("assets"))
    built.backend.write_bytes(key, b"PAR1 broken")
    code, out, err = run(capsys, "get", "assets")
    assert code == 2 and err.startswith("error: Reading table 'assets'")


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: bdc" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["-V"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("bdc 0.36")


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, result


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    env = {**os.environ, "BDC_LOAD_PLUGINS": ""}
    script = Path(sys.executable).with_name("bdc")
    argv = [str(script), "--help"] if script.exists() else [sys.executable, "-m", "bdc.cli", "--help"]
    timings = []
    for _ in range(3):
        seconds, result = _timed(argv, env)
        assert result.returncode == 0 and "usage: bdc" in result.stdout
        timings.append(seconds)
    assert min(timings) < 0.3, timings
    code = ("import sys\nfrom bdc.cli import main\ntry:\n    main(['get', '--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('pandas', 'pyarrow', 'duckdb', 'boto3', 'numpy') if m in sys.modules]\n"
            "print(','.join(heavy) or 'none', file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.stderr.strip() == "none"


def test_table_format_shows_the_first_rows_of_a_long_result(bdc_env: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [dict(typed_rows()[0], name=f"row{i:03d}") for i in range(100)]
    bdc_env.put("assets", rows)
    code, out, _ = run(capsys, "get", "assets", "--format", "table", "--columns", "name")
    assert code == 0
    assert "row059" in out and "row060" not in out
    assert out.rstrip().endswith("(100 rows, first 60 shown; use --format csv or -o FILE for all)")


def test_default_format_is_a_table_on_a_terminal(built: Any, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, _ = run(capsys, "get", "events", "--subject-id", "0012", "--columns", "name,n_files")
    assert code == 0
    assert out.splitlines()[0].split() == ["name", "n_files"] and "<NA>" in out and out.endswith("(2 rows)\n")


def test_no_submodule_shadows_a_function_of_the_api() -> None:
    # importing a submodule binds it on the package: one named like an API function would
    # replace that function (``bdc.describe`` became a module once ``Cache.describe`` ran)
    import pkgutil

    import bdc

    submodules = {m.name for m in pkgutil.iter_modules(bdc.__path__)}
    assert not submodules & set(bdc.__all__), sorted(submodules & set(bdc.__all__))
    bdc.Cache("memory://no-shadow").describe  # noqa: B018
    import bdc.tableinfo  # noqa: F401

    assert callable(bdc.describe) and callable(bdc.get) and callable(bdc.sync)


def test_describe_reads_well_in_a_terminal_and_a_notebook(bdc_env):
    """bdc.describe gives the spec and the last build; TableSpec has a one-line repr."""
    import bdc

    spec = bdc.Cache.spec("events")
    assert repr(spec).startswith("<TableSpec events (ev): metadata, partitioned by subject_id")
    info = bdc.describe("events")
    assert not info.built and "not built" in repr(info) and "bdc-sync --cache" in repr(info)
    assert "<table>" in info._repr_html_() and "<code>subject_id</code>" in info._repr_html_()
