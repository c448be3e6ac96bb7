"""The HTML run report: self-contained, complete, written by ``bdc-sync``, and rendered by a real browser.

A sync of the synthetic tables (tests/framework/syncplugin.py) with injected faults gives a run
with every case the page draws: built and partitioned tables, retries (transient errors), a failed
table and the dependent it skips. The last test renders the page in headless Chromium (Debian's
``chromium`` package; .ci/run installs it) and decodes the screenshot: skipped, saying why, when
no Chromium is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

import syncplugin
from bdc.cache import Cache
from bdc.runner import RetryPolicy, RunReport, sync
from bdc.runner.html import STATUS_COLOURS, render_html, write_html

FAST_RETRY = RetryPolicy(attempts=4, base=0.005, cap=0.02)
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium")


@pytest.fixture
def faulty_run(tmp_path: Path, bdc_plugin: Callable[..., str]) -> tuple[RunReport, Cache]:
    """A finished sync with retries on a table and a partition, a failed table and a skipped dependent."""
    source = syncplugin.make_source(tmp_path / "source", syncplugin.default_subjects(8))
    syncplugin.set_faults(source.root, transient={"platform_alpha": 2, "sync_sessions:0014": 1},
                          delay={"platform_beta": 0.05, "sync_sessions": 0.02})
    bdc_plugin(syncplugin.SyncPlugin(source, broken=True), name="syncplugin-html", distribution="bdc-test-sync")
    cache = Cache((tmp_path / "cache").as_uri())
    report = sync(cache, retry=FAST_RETRY, workers=4)
    assert isinstance(report, RunReport)
    return report, cache


def test_page_has_a_bar_per_table_and_partition_and_marks_retries_and_failures(
        faulty_run: tuple[RunReport, Cache]) -> None:
    report, _ = faulty_run
    assert report.table("sync_broken").status == "failed"
    assert report.table("sync_broken_child").status == "skipped"
    assert report.table("platform_alpha").retries == 2
    page = render_html(report)

    ran = [t for t in report.tables if t.started_at is not None]
    assert len(re.findall(r'class="bar table-bar"', page)) == len(ran)
    spans = sum(len(t.spans) for t in report.tables)
    assert spans == report.table("sync_sessions").partitions == 8
    assert len(re.findall(r'class="bar partition-bar"', page)) == spans
    assert 'sync_sessions subject_id=0014' in page                    # partitions are named, with their key
    rows = {m[0]: m[1] for m in re.findall(r'<g class="row" data-table="(\w+)" data-status="(\w+)"', page)}
    assert rows == {t.name: t.status for t in report.tables}
    # retries: a marker with the count on the bar, and the count in the table
    retried = [t for t in report.tables if t.retries]
    assert {t.name for t in retried} >= {"platform_alpha", "sync_sessions"}
    assert len(re.findall(r'class="retry-mark"', page)) == len(retried)
    assert re.search(r'<title>2 retries \(transient errors', page)
    # failure: marked on the timeline, the error in the table; the skipped table says why
    assert len(re.findall(r'class="failure-mark"', page)) == 1
    assert "PermanentSourceError: sync_broken is broken on purpose" in page
    assert "skipped: dependency failed: sync_broken" in page
    # rows and bytes per table
    for t in report.tables:
        if t.status == "ok":
            assert f"{t.rows:,}" in page
    assert f'<span class="status" style="background:{STATUS_COLOURS["failed"]}">failed</span></h1>' in page


def test_page_is_self_contained(faulty_run: tuple[RunReport, Cache]) -> None:
    """No script, no stylesheet or image link, no font: nothing is fetched to show the page."""
    page = render_html(faulty_run[0])
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    lowered = page.lower()
    for needle in ("<script", "<link", "<img", "<iframe", "@import", "url(", "src=", "@font-face"):
        assert needle not in lowered, needle
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls               # the SVG namespace names, never fetches


def test_text_is_escaped(faulty_run: tuple[RunReport, Cache]) -> None:
    report, _ = faulty_run
    data = report.to_dict()
    data["tables"][0]["error"] = "<script>alert('x')</script> & more"
    data["cache"] = "file:///tmp/<b>"
    page = render_html(data)
    assert "<script>" not in page and "&lt;script&gt;" in page and "file:///tmp/&lt;b&gt;" in page


def test_a_report_read_back_from_json_renders_the_same(faulty_run: tuple[RunReport, Cache]) -> None:
    """The JSON report in the cache (``_runs/{run_id}.json``) draws the same page as the live report."""
    report, cache = faulty_run
    stored = json.loads(cache.backend.read_bytes(cache.layout.run_report_key(report.run_id)))
    assert render_html(stored) == render_html(report)


def test_sync_and_bdc_sync_write_the_page(faulty_run: tuple[RunReport, Cache], tmp_path: Path) -> None:
    """``report=*.html``, ``report_html=``, and the command's ``--report run.html`` / ``--report-html``."""
    from bdc.runner.cli import main

    _, cache = faulty_run
    out = tmp_path / "out"
    out.mkdir()
    report = sync(cache, only=["platform_beta"], report=str(out / "run.html"), report_html=str(out / "also.html"))
    assert report.ok
    for name in ("run.html", "also.html"):
        page = (out / name).read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>") and f"bdc-sync run {report.run_id}" in page

    code = main(["--cache", cache.url, "--only", "platform_beta", "--quiet",
                 "--report", str(out / "cli.json"), "--report-html", str(out / "cli.html")])
    assert code == 0
    run = json.loads((out / "cli.json").read_text())
    assert run["ok"] and f"bdc-sync run {run['run_id']}" in (out / "cli.html").read_text()
    assert main(["--cache", cache.url, "--only", "platform_beta", "--quiet", "--report", str(out / "c.HTML")]) == 0
    assert (out / "c.HTML").read_text().startswith("<!DOCTYPE html>")


def test_empty_and_unstarted_reports_render() -> None:
    """A run that built nothing, and tables that never started, still give a page."""
    empty = RunReport("r0", "memory://x", "bdc-v0.36", "threads", 1, status="ok")
    assert "<svg" in render_html(empty)
    data = empty.to_dict()
    data["tables"] = [{"name": "t", "status": "skipped", "error": "dependency failed: u"}]
    page = render_html(data)
    assert 'data-table="t" data-status="skipped"' in page and "dependency failed: u" in page
    with pytest.raises(TypeError):
        render_html(42)


# -- rendered by a browser -------------------------------------------------------------------


def _chromium() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _chromium_command(binary: str, profile: Path) -> list[str]:
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1200,900"]


def decode_png(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """A tiny PNG decoder (8-bit grey, RGB or RGBA, not interlaced): width, height, channels, rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
        pos += 12 + length
    assert header is not None, "no IHDR"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0 and colour in (0, 2, 6), header
    channels = {0: 1, 2: 3, 6: 4}[colour]
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous))
        elif kind == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = previous[i]
                c = previous[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, channels, rows


def _colours(rows: list[bytes], channels: int) -> dict[tuple[int, int, int], int]:
    counts: dict[tuple[int, int, int], int] = {}
    for row in rows:
        for i in range(0, len(row), channels):
            pixel = (row[i], row[i + 1], row[i + 2]) if channels >= 3 else (row[i],) * 3
            counts[pixel] = counts.get(pixel, 0) + 1
    return counts


def _near(counts: dict[tuple[int, int, int], int], hex_colour: str, tolerance: int = 10) -> int:
    target = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return sum(n for c, n in counts.items() if all(abs(a - b) <= tolerance for a, b in zip(c, target)))


def test_page_renders_in_headless_chromium(faulty_run: tuple[RunReport, Cache], tmp_path: Path) -> None:
    """Chromium draws the bars (they are in its DOM) and the screenshot shows them in their colours."""
    binary = _chromium()
    if binary is None:
        pytest.skip("no Chromium to render the page with (Debian: apt-get install chromium; .ci/run installs it)")
    page = tmp_path / "run.html"
    write_html(faulty_run[0], page)
    profile = tmp_path / "chromium-profile"
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
           "XDG_CACHE_HOME": str(tmp_path / "xdg-cache")}

    dom = subprocess.run([*_chromium_command(binary, profile), "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, env=env)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<svg" in dom.stdout
    assert len(re.findall(r'class="bar table-bar"', dom.stdout)) == sum(
        1 for t in faulty_run[0].tables if t.started_at is not None)
    assert len(re.findall(r'class="bar partition-bar"', dom.stdout)) == 8

    shot = tmp_path / "run.png"
    done = subprocess.run([*_chromium_command(binary, profile), f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    width, height, channels, rows = decode_png(shot.read_bytes())
    assert (width, height) == (1200, 900)
    counts = _colours(rows, channels)
    assert len(counts) > 50, f"a nearly blank screenshot: {len(counts)} colours"
    white = counts.get((255, 255, 255), 0)
    assert white < 0.95 * width * height, "the screenshot is (almost) all white"
    for status in ("ok", "failed"):
        assert _near(counts, STATUS_COLOURS[status]) > 200, f"no {status} bar in the screenshot"
    assert _near(counts, "#e8890c") > 50, "no retry marker in the screenshot"
    assert _near(counts, "#86cfa1") > 50, "no partition bars in the screenshot"
