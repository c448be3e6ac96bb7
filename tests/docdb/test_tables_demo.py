"""The offline demo: ``bdc-sync --demo`` builds every DocDB table from the bundled sample, and
``bdc get`` answers from the result.

:func:`bdc_tables_docdb.demo.source.demo_docdb` serves the shipped sample (about 3,000 records,
the four real ones among them) from the emulator on loopback and its open data from a local copy.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from test_tables_support import docdb_plugin_only, docdb_table_names, rows_of  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop is deprecated")

V2_RECORD_NAME = "multiplane-ophys_692478_2023-09-29_08-53-45_processed_2025-04-22_20-50-47"


def _cli_json(argv: list[str]) -> list[dict[str, Any]]:
    """Run ``bdc`` with ``argv`` (``--format json``); returns the parsed rows."""
    from bdc.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        status = main(argv)
    assert status == 0, out.getvalue()
    text = out.getvalue().strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    return data if isinstance(data, list) else data.get("rows", data)


def test_demo_sync_then_bdc_get(tmp_path: Path) -> None:
    """The demo source + bdc.sync into a file cache; ``bdc get quality_control --subject-id 692478`` has rows."""
    import bdc

    from bdc_tables_docdb.demo.sample import load_sample_records
    from bdc_tables_docdb.demo.source import demo_docdb

    cache = (tmp_path / "cache").as_uri()
    with demo_docdb() as url:
        assert url.startswith("http://127.0.0.1:")
        report = bdc.sync(cache, progress="none")
    assert report.ok, report.summary()
    assert {t.name for t in report.tables} == set(docdb_table_names())
    sample = load_sample_records()
    assert report.table("asset_basics").rows == len(sample)
    for name in ("quality_control", "platform_smartspim", "platform_exaspim", "behavior_curriculum", "platform_fib"):
        assert report.table(name).rows > 0, name

    rows = _cli_json(["--cache", cache, "get", "quality_control", "--subject-id", "692478", "--format", "json"])
    expected = [r for r in rows_of(cache, "quality_control", subject_id="692478")]
    assert len(rows) == len(expected) >= 4
    assert {r["subject_id"] for r in rows} == {"692478"}
    assert {r["name"] for r in rows if r["asset_name"] == V2_RECORD_NAME} == {
        "VISp_0 Registration Summary", "VISp_1 Registration Summary", "VISp_0 FOV Quality", "VISp_1 FOV Quality"}
    # curriculum rows were read from the demo's open-data copy
    assert any(r["status"] == "ok" for r in rows_of(cache, "behavior_curriculum"))


def test_bdc_sync_demo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``bdc-sync --demo --only asset_basics --only quality_control`` exits 0 and restores the environment."""
    import os

    from bdc.runner.cli import main

    before = (os.environ.get("BDC_DOCDB_URL"), os.environ.get("BDC_OPEN_DATA_URL"))
    cache = (tmp_path / "cache").as_uri()
    status = main(["--demo", "--cache", cache, "--quiet", "--only", "quality_control"])
    captured = capsys.readouterr()
    assert status == 0, captured.out + captured.err
    assert "demo: starting docdb" in captured.err
    assert "ok" in captured.out and "quality_control" in captured.out
    assert (os.environ.get("BDC_DOCDB_URL"), os.environ.get("BDC_OPEN_DATA_URL")) == before
    rows = _cli_json(["--cache", cache, "get", "qc", "--subject-id", "692478", "--format", "json",
                      "--columns", "name,status,subject_id"])
    assert rows and all(set(r) == {"name", "status", "subject_id"} for r in rows)
