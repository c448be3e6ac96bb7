"""Load (issue #5, scenario 8): 8 reader threads and 4 reader processes hammer ``bdc.get`` on one
partitioned table of 2,000 partitions (local disk) at once.

Reads mix whole-partition reads (``bdc.get(name, subject_id=...)``), column projections over a few
partitions, and now and then a whole-table read (all columns, or one column). Every read must
succeed and return exactly the rows and columns it asked for; the latencies (p50/p99 per kind of
read) are printed and written as JSON to ``$BDC_RELIABILITY_FIGURES`` (a folder: ``load.json``,
``load-soak.json``; or a ``.json`` file path) or, when unset, to the test's tmp folder.

The default run hammers for 30 s (``BDC_LOAD_SECONDS`` overrides it); the soak variant (marked
``slow``, run with ``--soak``) for 10 minutes.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import bdc
from bdc.spec import TableSpec

TABLE = "load_sessions"
#: Partitions (subjects) and rows per partition.
PARTITIONS = 2000
ROWS = 5
THREADS = 8
PROCESSES = 4
#: Seconds of hammering in the default run and in the soak variant.
CI_SECONDS = float(os.environ.get("BDC_LOAD_SECONDS", "30"))
SOAK_SECONDS = 600.0
#: Each reader reads the whole table about this often (seconds): "a few" whole-table reads.
WHOLE_TABLE_EVERY = 10.0
#: Share of the other reads that are multi-partition column projections (the rest: one partition).
PROJECTION_SHARE = 0.3
HERE = Path(__file__).resolve().parent


def subject(i: int) -> str:
    """The i-th partition value: numeric-looking text that must stay text (``"000123"``)."""
    return f"{i:06d}"


def _no_build(*_args: Any) -> Any:
    raise AssertionError("the load table is written with Cache.put, never built")


def load_spec() -> TableSpec:
    """The table under load: partitioned by ``subject_id``."""
    return TableSpec(TABLE, "Load test: sessions per subject",
                     [("subject_id", "string"), ("session", "int64"), ("value", "float64"), ("label", "string")],
                     partition_key="subject_id", partitions=_no_build, build_partition=_no_build)


class LoadPlugin:
    """Declares the load table (in the test process and in each reader process)."""

    @bdc.hookimpl
    def bdc_tables(self) -> list[TableSpec]:
        """The load table."""
        return [load_spec()]


def table_data() -> Any:
    """Every row: ``value`` is the row number, so any read can be checked exactly."""
    import pyarrow as pa

    n = PARTITIONS * ROWS
    return pa.table({
        "subject_id": [subject(i // ROWS) for i in range(n)],
        "session": [i % ROWS for i in range(n)],
        "value": [float(i) for i in range(n)],
        "label": [f"s{i % ROWS}" for i in range(n)],
    })


# -- one reader ----------------------------------------------------------------------------------


def _check_partitions(df: Any, values: list[str], columns: list[str]) -> str | None:
    if list(df.columns) != columns:
        return f"columns {list(df.columns)} != {columns}"
    if len(df) != ROWS * len(values):
        return f"{len(df)} rows != {ROWS * len(values)}"
    expected = sorted(float(int(v) * ROWS + s) for v in values for s in range(ROWS))
    if sorted(df["value"].tolist()) != expected:
        return "wrong values"
    if "subject_id" in columns and sorted(set(df["subject_id"].tolist())) != sorted(values):
        return f"subject ids {sorted(set(df['subject_id'].tolist()))[:5]} != {values[:5]}"
    return None


def _check_table(df: Any, columns: list[str]) -> str | None:
    n = PARTITIONS * ROWS
    if list(df.columns) != columns:
        return f"columns {list(df.columns)} != {columns}"
    if len(df) != n:
        return f"{len(df)} rows != {n}"
    if float(df["value"].sum()) != n * (n - 1) / 2:
        return "wrong value total"
    if "subject_id" in columns and df["subject_id"].nunique() != PARTITIONS:
        return f"{df['subject_id'].nunique()} subjects != {PARTITIONS}"
    return None


def hammer(start: float, seconds: float, seed: int) -> dict[str, Any]:
    """Read ``bdc.get`` from wall time ``start`` for ``seconds``; latencies (s) per kind, errors."""
    rng = random.Random(seed)
    latencies: dict[str, list[float]] = {"partition": [], "projection": [], "table": [], "table_column": []}
    errors: list[str] = []
    error_count = 0
    columns_all = ["subject_id", "session", "value", "label"]
    every = min(WHOLE_TABLE_EVERY, seconds / 3)  # short runs (BDC_LOAD_SECONDS) read whole tables too
    time.sleep(max(0.0, start - time.time()))
    end = start + seconds
    next_whole = start + rng.uniform(0.1, every)
    whole_kinds = ["table", "table_column"]
    rng.shuffle(whole_kinds)
    while time.time() < end:
        now = time.time()
        check: Callable[[Any], str | None]
        if now >= next_whole and now < end - every / 2:  # none left running long after the end
            kind = whole_kinds[len(latencies["table"]) + len(latencies["table_column"]) & 1]
            next_whole = now + every
            if kind == "table":
                read = lambda: bdc.get(TABLE)  # noqa: E731
                check = lambda df: _check_table(df, columns_all)  # noqa: E731
            else:
                read = lambda: bdc.get(TABLE, columns=["value"])  # noqa: E731
                check = lambda df: _check_table(df, ["value"])  # noqa: E731
        elif rng.random() < PROJECTION_SHARE:
            kind = "projection"
            values = sorted({subject(rng.randrange(PARTITIONS)) for _ in range(rng.randint(2, 5))})
            read = lambda: bdc.get(TABLE, subject_id=values, columns=["session", "value"])  # noqa: E731
            check = lambda df: _check_partitions(df, values, ["session", "value"])  # noqa: E731
        else:
            kind = "partition"
            value = subject(rng.randrange(PARTITIONS))
            read = lambda: bdc.get(TABLE, subject_id=value)  # noqa: E731
            check = lambda df: _check_partitions(df, [value], columns_all)  # noqa: E731
        began = time.perf_counter()
        try:
            df = read()
        except Exception as exc:  # every failure counts; the first few are kept verbatim
            problem: str | None = f"{type(exc).__name__}: {exc}"
        else:
            elapsed = time.perf_counter() - began
            problem = check(df)
            if problem is None:
                latencies[kind].append(round(elapsed, 6))
        if problem is not None:
            error_count += 1
            if len(errors) < 20:
                errors.append(f"{kind}: {problem}")
    return {"latencies": latencies, "errors": errors, "error_count": error_count}


def reader_process() -> None:
    """A reader process: declares the table, says ``ready``, reads the start time from stdin,
    hammers, prints its results as one JSON line."""
    from bdc import plugins

    plugins.register(LoadPlugin(), name="load-plugin", distribution="bdc-load-test")
    seconds, seed = float(sys.argv[1]), int(sys.argv[2])
    import duckdb  # noqa: F401  (imported before the start, like the test process has it)

    print("ready", flush=True)
    start = float(sys.stdin.readline())
    bdc.get(TABLE, subject_id=subject(0))  # the cache and a connection opened before the start
    print(json.dumps(hammer(start, seconds, seed)), flush=True)


# -- the figures ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summarize(results: list[tuple[str, dict[str, Any]]], seconds: float, build_seconds: float) -> dict[str, Any]:
    """The figures: reads, errors, and p50/p99/max latency (ms) per kind of read, overall and per mode."""
    def figures(latencies: dict[str, list[float]]) -> dict[str, Any]:
        out = {}
        for kind, values in latencies.items():
            if values:
                out[kind] = {"reads": len(values), "p50_ms": round(statistics.median(values) * 1000, 2),
                             "p99_ms": round(percentile(values, 0.99) * 1000, 2),
                             "max_ms": round(max(values) * 1000, 2)}
            else:
                out[kind] = {"reads": 0}
        return out

    merged: dict[str, list[float]] = {}
    by_mode: dict[str, dict[str, list[float]]] = {}
    for mode, result in results:
        for kind, values in result["latencies"].items():
            merged.setdefault(kind, []).extend(values)
            by_mode.setdefault(mode, {}).setdefault(kind, []).extend(values)
    reads = sum(len(v) for v in merged.values())
    return {
        "scenario": "load",
        "table": {"partitions": PARTITIONS, "rows_per_partition": ROWS, "backend": "file",
                  "build_seconds": round(build_seconds, 2)},
        "readers": {"threads": THREADS, "processes": PROCESSES},
        "seconds": seconds,
        "cpus": os.cpu_count(),
        "reads": reads,
        "reads_per_second": round(reads / seconds, 1),
        "errors": sum(r["error_count"] for _, r in results),
        "kinds": figures(merged),
        "by_mode": {mode: figures(lat) for mode, lat in by_mode.items()},
    }


def figures_path(tmp_path: Path, variant: str) -> Path:
    """Where the figures go: ``$BDC_RELIABILITY_FIGURES`` (a folder, or a ``.json`` file), else tmp."""
    name = "load.json" if variant == "ci" else f"load-{variant}.json"
    target = os.environ.get("BDC_RELIABILITY_FIGURES")
    if not target:
        return tmp_path / "figures" / name
    path = Path(target)
    if path.suffix == ".json":
        return path if variant == "ci" else path.with_name(f"{path.stem}-{variant}.json")
    return path / name


def _log(tmp_path: Path, i: int) -> str:
    """The end of reader process ``i``'s standard error."""
    return (tmp_path / f"reader-{i}.log").read_text()[-4000:]


# -- the test ------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["ci", pytest.param("soak", marks=pytest.mark.slow)])
def test_concurrent_readers_see_every_read_right(variant: str, bdc_plugin: Callable[..., str], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from bdc.api import default_cache

    seconds = CI_SECONDS if variant == "ci" else SOAK_SECONDS
    bdc_plugin(LoadPlugin(), name="load-plugin", distribution="bdc-load-test")
    began = time.monotonic()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])}
    code = "import test_load; test_load.reader_process()"
    logs = [(tmp_path / f"reader-{i}.log").open("w") for i in range(PROCESSES)]  # never a full pipe
    procs = [subprocess.Popen([sys.executable, "-c", code, str(seconds), str(1000 + i)], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logs[i])
             for i in range(PROCESSES)]  # they start up while the table is written
    try:
        entry = default_cache().put(TABLE, table_data())
        build_seconds = time.monotonic() - began
        assert entry["name"] == TABLE and len(default_cache().partition_objects(load_spec())) == PARTITIONS
        for i, proc in enumerate(procs):  # every process is up: start together
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", _log(tmp_path, i)
        bdc.get(TABLE, subject_id=subject(0))  # this process warmed up too
        start = time.time() + 0.5
        setup_seconds = time.monotonic() - began
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start}\n")
            proc.stdin.flush()
        thread_results: list[dict[str, Any]] = []
        threads = [threading.Thread(target=lambda s=i: thread_results.append(hammer(start, seconds, s)),
                                    name=f"load-reader-{i}") for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 120)
        assert len(thread_results) == THREADS, "a reader thread did not finish"
        process_results = []
        for i, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=seconds + 120)
            assert proc.returncode == 0, _log(tmp_path, i)
            process_results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()

    results = [("threads", r) for r in thread_results] + [("processes", r) for r in process_results]
    figures = summarize(results, seconds, build_seconds)
    figures["setup_seconds"] = round(setup_seconds, 2)  # table written and every reader up
    figures["tail_seconds"] = round(time.time() - start - seconds, 2)  # the last reads finishing
    path = figures_path(tmp_path, variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    with capsys.disabled():
        print(f"\nload figures ({variant}, {path}):")
        print(json.dumps({k: figures[k] for k in ("reads", "reads_per_second", "errors", "setup_seconds",
                                                   "tail_seconds", "kinds")}, indent=1))

    errors = [e for _, r in results for e in r["errors"]]
    assert figures["errors"] == 0, errors
    for kind, numbers in figures["kinds"].items():  # every kind of read was exercised
        assert numbers["reads"] > 0, kind
    for mode, result in results:  # and every reader got its share
        assert sum(len(v) for v in result["latencies"].values()) > 0, mode
