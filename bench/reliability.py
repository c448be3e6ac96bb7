"""Run the reliability suite and print its figures as ``name: value`` lines (issue 5).

::

    python bench/reliability.py                 # the CI variants (a few minutes)
    python bench/reliability.py --soak          # the long variants too (10 min of load, ~230 kills)
    python bench/reliability.py --docs          # also rewrite the figures block of docs/reliability.md
    python bench/reliability.py --from DIR      # only collect figures an earlier run left in DIR

The tests under ``tests/reliability/`` write what they measured as JSON into
``$BDC_RELIABILITY_FIGURES_DIR``; this script points that at a fresh folder, runs pytest, and
sums the files up: scenarios run, faults injected, kills survived, hostile inputs tried, rows lost,
reader latency under load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["collect", "render_markdown", "main"]

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def collect(folder: Path) -> dict[str, Any]:
    """The headline figures from the JSON files in ``folder`` (absent scenarios are left out)."""
    out: dict[str, Any] = {}
    crash = _load(folder, "crash")
    if crash:
        out["kills"] = crash.get("kills", 0)
        out["kills_survived"] = crash.get("kills_survived", 0)
        out["crash_rows_lost"] = crash.get("rows_lost", 0)
        kinds: dict[str, int] = {}
        for section in (crash.get("sections") or {}).values():
            for kind, n in (section.get("by_kind") or {}).items():
                kinds[kind] = kinds.get(kind, 0) + n
        out["kills_by_kind"] = kinds
        out["crash_backends"] = sorted((crash.get("sections") or {}).keys())
    flaky = _load(folder, "flaky_sources")
    if flaky:
        out["docdb_faults"] = sum((flaky.get("docdb_faults") or {}).values())
        out["docdb_requests"] = flaky.get("docdb_requests")
        out["s3_faults"] = sum((flaky.get("s3_faults") or {}).values())
        out["s3_requests"] = flaky.get("s3_requests")
        out["flaky_retries_reported"] = flaky.get("retries_reported")
        out["flaky_rows_lost"] = flaky.get("rows_lost")
        out["flaky_equal_to_clean_run"] = flaky.get("equal_to_fault_free_run")
    readers = _load(folder, "readers")
    if readers:
        out["readers_reads"] = readers.get("reads_total")
        out["readers_errors"] = readers.get("errors")
        out["readers_syncs_meanwhile"] = sum((readers.get("syncs_completed") or {}).values())
        out["readers_bdc_reads_started_again"] = sum((readers.get("bdc_reads_started_again") or {}).values())
        out["readers_plain_glob_observations"] = readers.get("plain_duckdb_observations") or {}
    hostile = _load(folder, "hostile_input")
    records = _load(folder, "hostile_records")
    tried = 0
    if hostile:
        tried += int(hostile.get("cases", 0)) + int(hostile.get("generated_values", 0))
    if records:
        tried += sum(v for k, v in records.items() if isinstance(v, int) and ("example" in k or "hostile" in k))
    if hostile or records:
        out["hostile_inputs_tried"] = tried
    for name in ("load", "load-soak"):
        load = _load(folder, name)
        if load:
            key = name.replace("-", "_")
            out[f"{key}_reads"] = load.get("reads")
            out[f"{key}_errors"] = load.get("errors")
            out[f"{key}_seconds"] = load.get("seconds")
            for kind, numbers in (load.get("kinds") or {}).items():
                if numbers.get("reads"):
                    out[f"{key}_{kind}_p50_ms"] = numbers.get("p50_ms")
                    out[f"{key}_{kind}_p99_ms"] = numbers.get("p99_ms")
    lost = [out.get(k) for k in ("crash_rows_lost", "flaky_rows_lost") if out.get(k) is not None]
    out["rows_lost"] = sum(lost) if lost else None
    return out


def _load_average() -> str:
    """The 1-minute load average."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:  # pragma: no cover - not on every platform
        return "?"


def render_markdown(figures: dict[str, Any], *, command: str, summary: str) -> str:
    """The figures block of docs/reliability.md."""
    lines = [BEGIN, "", f"Last run: {time.strftime('%Y-%m-%d', time.gmtime())}, `{command}` "
             f"({platform.python_version()}, {os.cpu_count()} CPUs): {summary}.", "",
             "| figure | value |", "|---|---|"]
    for key, value in figures.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) if all(
                not isinstance(v, (dict, list)) for v in value.values()) else json.dumps(value)
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        lines.append(f"| `{key}` | {value} |")
    lines += ["", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the suite (or read an earlier run's figures) and print them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak", action="store_true", help="also run the long variants")
    parser.add_argument("--docs", action="store_true", help="rewrite the figures block of docs/reliability.md")
    parser.add_argument("--from", dest="source", help="collect the figures left in this folder; run nothing")
    args = parser.parse_args(argv)

    summary = "figures collected from an earlier run"
    command = "python bench/reliability.py" + (" --soak" if args.soak else "")
    if args.source:
        folder = Path(args.source)
    else:
        folder = Path(tempfile.mkdtemp(prefix="bdc-reliability-"))
        env = {**os.environ, "BDC_RELIABILITY_FIGURES_DIR": str(folder), "BDC_RELIABILITY_FIGURES": str(folder)}
        cmd = [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider"]
        if args.soak:
            cmd.append("--soak")
        started, load = time.monotonic(), _load_average()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        tail = (proc.stdout.strip().splitlines() or ["?"])[-1].strip("= ")
        counts = re.sub(r" in [\d.]+s( \([\d:]+\))?$", "", tail)  # pytest's own time: ours is below
        summary = (f"{counts} in {time.monotonic() - started:.0f} s, load average {load} before and "
                   f"{_load_average()} after (other work on the 2 cores skews the latencies)")
        print(f"# {' '.join(cmd[2:])}: {tail} (exit {proc.returncode}); figures in {folder}")
        if proc.returncode != 0:
            print(proc.stdout[-5000:], file=sys.stderr)
            return proc.returncode
    figures = collect(folder)
    for key, value in figures.items():
        print(f"{key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    if args.docs:
        text = DOCS.read_text()
        start, end = text.index(BEGIN), text.index(END) + len(END)
        DOCS.write_text(text[:start] + render_markdown(figures, command=command, summary=summary) + text[end:])
        print(f"# wrote the figures into {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
