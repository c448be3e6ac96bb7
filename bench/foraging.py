"""Benchmark of the dynamic-foraging mirrors on a generated source, printing ``name: value`` lines.

::

    python bench/foraging.py                      # 100 subjects x 20 sessions x 300 trials
    python bench/foraging.py --subjects 10 --sessions 4 --trials 100 --keep /tmp/fb

Figures (targets from issue 7):

* ``mirror_vs_copy``: full mirror time / ``shutil.copytree`` of the source tree (target <= 3), the
  medians of three turns each (copy, mirror, copy, mirror…, each into a fresh folder);
* ``noop_resync_s``: a resync with nothing changed (target <= 2 s);
* ``peak_rss_mb``: peak RSS of the process running the full mirror, the highest of the three
  (target <= 1500).

Context, not a target: ``cli_mirror_vs_copy`` is the same comparison between whole commands, as
an operator runs them: ``bdc-sync --only 'platform_dynamic_foraging_*' --full`` (interpreter
start-up, imports, plugin discovery, the lock, the report) ÷ ``cp -r`` of the source tree (medians
of three turns each).

Each timed turn starts after ``os.sync()`` (the previous turns' writes on disk) and turns remove
nothing until the end, so no turn pays for another's writeback or removals (see ``_settle``).
On a shared machine the wall times are noisy (the copy as much as the mirror: ``copy_s_range``,
``load_avg``); ``mirror_cpu_s`` (the mirror process's CPU time) is the steadier measure of the
work done. Creating files is most of the copy's work and costs the kernel more or less from one
minute to the next (``copy_cpu_s``, the copy's own CPU time, and ``mirror_sys_s`` follow it).
``mirror_files_copied`` counts the source files published as byte copies (the rest of the
subjects are rewritten).

Each sync runs in a child process (``--child``), so its peak RSS is the child's own
(``os.wait4``); the times are of the ``bdc.sync`` call inside it, without interpreter start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "run_child", "timed_child"]

TABLES = ("platform_dynamic_foraging_sessions", "platform_dynamic_foraging_trials",
          "platform_dynamic_foraging_events")


def run_child(source: str, cache: str, full: bool, workers: int | None = None) -> dict[str, Any]:
    """Sync the three foraging tables from ``source`` into ``cache``; returns times and counts."""
    os.environ["BDC_FORAGING_BASE"] = source
    os.environ["BDC_LOAD_PLUGINS"] = "foraging"
    started = time.perf_counter()
    import bdc

    imported = time.perf_counter()
    report = bdc.sync(cache, only=list(TABLES), full=full, workers=workers, progress="none")
    finished = time.perf_counter()
    if not report.ok:
        raise SystemExit(report.summary())
    return {
        "sync_s": finished - imported,
        "import_s": imported - started,
        "tables": {t.name: {"status": t.status, "rows": t.rows, "built": t.partitions_built,
                            "partitions": t.partitions, "seconds": t.seconds, "counters": t.counters}
                   for t in report.tables},
    }


def timed_child(source: Path, cache: Path, full: bool = False, workers: int | None = None
                ) -> tuple[dict[str, Any], float]:
    """Run :func:`run_child` in a fresh interpreter; returns its result and its peak RSS (MB).

    The result also holds ``cpu_s``: the child's user + system CPU time (start-up included).
    """
    cmd = [sys.executable, __file__, "--child", str(source), cache.as_uri()] + (["--full"] if full else [])
    if workers:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {out}")
    result = json.loads(out)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    result["sys_s"] = usage.ru_stime
    return result, usage.ru_maxrss / 1024  # KiB on Linux


def _loadavg() -> list[str]:
    """The 1, 5 and 15 minute load averages (wall times on a busy machine are not comparable)."""
    try:
        with open("/proc/loadavg") as fh:
            return fh.read().split()[:3]
    except OSError:
        return ["?"]


def _settle() -> None:
    """Put what earlier turns wrote on disk (``os.sync``) before a timed turn, so that no turn
    pays for another's writeback.

    Turns remove nothing either: on ext4 without a journal, creating a file skips every inode
    freed in the last 60 s (300 s while its inode block is unwritten), checking them one by one
    (``recently_deleted``; seen with ``perf``: a fifth of a sync's CPU after large removals), so
    a turn run after removals would pay for them."""
    if hasattr(os, "sync"):
        os.sync()


def _copy_command(source: Path, target: Path) -> list[str]:
    """``cp -r source target`` (a Python ``shutil.copytree`` process where there is no ``cp``)."""
    cp = shutil.which("cp")
    if cp:
        return [cp, "-r", str(source), str(target)]
    return [sys.executable, "-c", "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2])",
            str(source), str(target)]


def _sync_command(cache: Path, workers: int | None) -> list[str]:
    """``bdc-sync`` of the three foraging tables into ``cache``, as an operator runs it."""
    script = Path(sys.executable).with_name("bdc-sync")
    head = [str(script)] if script.exists() else [
        sys.executable, "-c", "import sys; from bdc.runner.cli import main; sys.exit(main())"]
    return head + ["--cache", cache.as_uri(), "--only", "platform_dynamic_foraging_*", "--full", "--quiet"] + (
        ["--workers", str(workers)] if workers else [])


def _timed_command(cmd: list[str], **env: str) -> float:
    """Wall seconds of a command, from its start to its exit (which must be 0)."""
    started = time.perf_counter()
    done = subprocess.run(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    """Generate the source, copy it, mirror it, resync it; print the figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subjects", type=int, default=100)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", help="work directory to use and keep (default: a temp dir, removed)")
    p.add_argument("--workers", type=int, default=None,
                   help="partition builds in parallel (default: the sync's default, 8 per core)")
    p.add_argument("--child", nargs=2, metavar=("SOURCE", "CACHE"), help=argparse.SUPPRESS)
    p.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child[0], args.child[1], args.full, args.workers)))
        return 0

    from bdc_tables_foraging.demo.generator import generate_foraging_db

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bdc-bench-foraging-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        source = work / "source"
        shape = dict(subjects=args.subjects, sessions_per_subject=args.sessions,
                     trials_per_session=args.trials, seed=args.seed)
        t0 = time.perf_counter()
        info = generate_foraging_db(source, overwrite=True, **shape)
        print(f"generate_s: {time.perf_counter() - t0:.2f}")
        print(f"source_trials: {info.n_trials}")
        print(f"source_events: {info.n_events}")
        print(f"source_mb: {_tree_bytes(source) / 1e6:.1f}")

        # the copy and the mirror take turns, three times each, each into a fresh folder; nothing
        # is removed until the end (see _settle: a removal slows the file creations after it)
        copies, copy_cpu, mirrors = [], [], []
        runs = work / "runs"
        shutil.rmtree(runs, ignore_errors=True)
        runs.mkdir()
        for i in range(3):
            target = runs / f"copy{i}"
            _settle()
            t0, c0 = time.perf_counter(), os.times()
            shutil.copytree(source, target)
            copies.append(time.perf_counter() - t0)
            c1 = os.times()
            copy_cpu.append(c1.user - c0.user + c1.system - c0.system)
            cache = runs / f"cache{i}"
            _settle()
            mirrors.append(timed_child(source, cache, full=True, workers=args.workers))
        copy_s = statistics.median(copies)
        print(f"copy_s: {copy_s:.3f}")
        print(f"copy_s_range: {min(copies):.3f}..{max(copies):.3f}")
        print(f"copy_cpu_s: {statistics.median(copy_cpu):.2f}")

        full = sorted((m[0] for m in mirrors), key=lambda m: m["sync_s"])[1]  # the median run
        rss = max(m[1] for m in mirrors)
        tables = full["tables"]
        assert tables[TABLES[1]]["rows"] == info.n_trials, tables
        assert tables[TABLES[2]]["rows"] == info.n_events, tables
        print(f"mirror_s_range: {min(m[0]['sync_s'] for m in mirrors):.3f}..{max(m[0]['sync_s'] for m in mirrors):.3f}")
        print(f"mirror_s: {full['sync_s']:.3f}")
        for name in TABLES:
            print(f"mirror_{name.rsplit('_', 1)[1]}_s: {tables[name]['seconds']:.3f}")
        print(f"mirror_cpu_s: {full['cpu_s']:.2f}")
        print(f"mirror_sys_s: {full['sys_s']:.2f}")
        counters = [tables[name].get("counters", {}) for name in TABLES[1:]]
        print(f"mirror_files_copied: {sum(c.get('files_copied', 0) for c in counters)} of "
              f"{sum(c.get('source_files', 0) for c in counters)}")
        print(f"mirror_vs_copy: {full['sync_s'] / copy_s:.2f}")
        print(f"peak_rss_mb: {rss:.0f}")
        print(f"cache_mb: {_tree_bytes(cache) / 1e6:.1f}")

        cli_copies, cli_mirrors = [], []
        for i in range(3):  # the same, as whole commands: process start-up, imports, plugins, lock, report
            _settle()
            cli_copies.append(_timed_command(_copy_command(source, runs / f"cli-copy{i}")))
            _settle()
            cli_mirrors.append(_timed_command(_sync_command(runs / f"cli-cache{i}", args.workers),
                                              BDC_FORAGING_BASE=str(source)))
        cli_copy, cli_mirror = statistics.median(cli_copies), statistics.median(cli_mirrors)
        print(f"cli_copy_s: {cli_copy:.3f}")
        print(f"cli_mirror_s: {cli_mirror:.3f}")
        print(f"cli_mirror_vs_copy: {cli_mirror / cli_copy:.2f}")

        noop, noop_rss = timed_child(source, cache, workers=args.workers)
        built = sum(t["built"] for t in noop["tables"].values())
        assert built == 0, noop
        print(f"noop_resync_s: {noop['sync_s']:.3f}")
        print(f"noop_resync_with_imports_s: {noop['sync_s'] + noop['import_s']:.3f}")
        print(f"noop_peak_rss_mb: {noop_rss:.0f}")
        print(f"load_avg: {' '.join(_loadavg())}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
