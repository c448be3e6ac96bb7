"""Sync-runner figures of bdc, printed as ``name: value`` lines (context lines start with ``#``).

    python bench/sync.py [--partitions N] [--rows N] [--sleep-ms MS] [--runs N]

On the file backend, in a temporary folder made here, with a synthetic table shaped like a
quality-control table (one partition per subject, ids like ``"0001234"`` kept as text):

* ``speedup_vs_sequential``: a plain sequential loop that builds each partition (sleep
  ``--sleep-ms``, as a source round trip, then a 500-row pandas frame) and writes it with
  ``DataFrame.to_parquet`` to the partition path, as the reference package does ÷ ``bdc.sync``
  with default settings (threads; they measure whether they run faster on one core, see
  :mod:`bdc.runner.pinning`, and a ``#`` line says what they measured) building the same table
  (target ≥ 6);
* ``speedup_vs_sequential_threads_free``: the same with ``pin_threads="off"`` (context: the
  threads as they were before they could measure one core);
* ``speedup_vs_sequential_processes``: the same with ``executor="processes"`` (context, not a
  target: one worker process per core, each running its share of the default threads, so the
  build's pandas work is spread over one GIL per core instead of queueing for one);
* ``speedup_vs_sequential_ready_frames``: the same comparison for a build that only waits (sleep,
  then a frame made beforehand): the runner's share of the work alone, without the build's own
  pandas work, which threads in one interpreter cannot spread over cores;
* ``overhead_ms_per_partition``: (sync wall time − time spent inside the build function) per
  partition, with a no-op build that returns a ready-made 500-row frame: what the runner adds
  (listing, scheduling, conforming, writing the parquet object, publishing, state) (≤ 3);
* ``noop_resync_s``: a second sync right after a first one, nothing changed, of an incremental
  table of 2,000 fingerprinted partitions (≤ 2).

Timings are medians over ``--runs`` runs (default 3), each into a fresh cache folder, after a small
untimed warm-up sync; the long sequential loop runs once, between the first and the second sync.
CPU seconds and the load average are printed as context: other work on the 2 cores skews the
ratio (the sync is CPU-bound, the sequential loop mostly sleeps).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import attrs

from bdc.hookspecs import hookimpl

#: A quality_control-like partitioned table.
COLUMNS = [
    ("subject_id", "string"), ("name", "string"), ("stage", "string"), ("metric", "string"),
    ("status", "string"), ("value", "float64"), ("passed", "bool"), ("evaluated_at", "timestamp[us, tz=UTC]"),
]
STAGES = ("raw", "processing", "analysis")
STATUSES = ("Pass", "Fail", "Pending")


@attrs.frozen
class Workload:
    """What a partition build does: how many rows it returns and how long its source round trip takes."""

    partitions: int
    rows: int
    sleep_s: float


@attrs.define
class BuildClock:
    """Seconds spent inside build functions (summed over threads)."""

    seconds: float = 0.0
    calls: int = 0
    lock: Any = attrs.field(factory=threading.Lock)

    def add(self, seconds: float) -> None:
        """Count one build call."""
        with self.lock:
            self.seconds += seconds
            self.calls += 1


def subject_ids(n: int) -> list[str]:
    """``n`` numeric-looking subject ids with leading zeros."""
    return [f"{600000 + 7 * i:07d}" for i in range(n)]


def partition_frame(subject_id: str, rows: int) -> Any:
    """One partition's rows as a pandas DataFrame (deterministic per subject)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(int(subject_id))
    base = np.datetime64("2024-01-01T00:00:00", "us")
    return pd.DataFrame({
        "subject_id": np.full(rows, subject_id, dtype=object),
        "name": [f"behavior_{subject_id}_{i:04d}" for i in range(rows)],
        "stage": np.array(STAGES, dtype=object)[rng.integers(0, len(STAGES), rows)],
        "metric": np.array([f"metric_{k}" for k in range(40)], dtype=object)[rng.integers(0, 40, rows)],
        "status": np.array(STATUSES, dtype=object)[rng.integers(0, len(STATUSES), rows)],
        "value": rng.random(rows),
        "passed": rng.random(rows) > 0.1,
        "evaluated_at": pd.to_datetime(base + rng.integers(0, 10**12, rows).astype("timedelta64[us]"), utc=True),
    })


# -- the table's build functions (module level: what a plugin would declare) -------------------


def list_partitions(work: Workload, ctx: Any) -> list[str]:
    """Every subject."""
    return subject_ids(work.partitions)


def list_fingerprinted(work: Workload, ctx: Any) -> dict[str, str]:
    """Every subject with a fingerprint (unchanged between runs)."""
    return {sid: "v1" for sid in subject_ids(work.partitions)}


def build_partition(work: Workload, ctx: Any, subject_id: str) -> Any:
    """A source round trip (sleep), then the partition's frame."""
    time.sleep(work.sleep_s)
    return partition_frame(subject_id, work.rows)


def ready_partition(frames: dict[str, Any], work: Workload, ctx: Any, subject_id: str) -> Any:
    """A source round trip (sleep), then a frame made beforehand: a build that only waits."""
    time.sleep(work.sleep_s)
    return frames[subject_id]


def noop_partition(frames: dict[str, Any], clock: BuildClock, ctx: Any, subject_id: str) -> Any:
    """Hands back a frame made beforehand (timed, to subtract it)."""
    started = time.perf_counter()
    frame = frames[subject_id]
    clock.add(time.perf_counter() - started)
    return frame


def make_spec(name: str, partitions: Any, build: Any, *, incremental: bool = False) -> Any:
    """The bench table's spec."""
    from bdc.spec import TableSpec

    return TableSpec(name, "Synthetic quality-control-like table", COLUMNS, partition_key="subject_id",
                     partitions=partitions, build_partition=build, incremental=incremental)


class BenchPlugin:
    """An in-process plugin declaring the bench tables."""

    def __init__(self, specs: list[Any]):
        self.specs = specs

    @hookimpl
    def bdc_tables(self) -> list[Any]:
        """The bench tables."""
        return list(self.specs)


# -- the measurements ---------------------------------------------------------------------------


def sequential(root: Path, work: Workload, build: Any = None) -> tuple[float, float]:
    """The reference: build each partition and write it with pandas, one after the other.

    ``build(ctx, subject_id)`` defaults to :func:`build_partition`. Returns (wall seconds, CPU seconds).
    """
    build = build or functools.partial(build_partition, work)
    started, cpu = time.perf_counter(), time.process_time()
    for sid in subject_ids(work.partitions):
        frame = build(None, sid)
        folder = root / "bdc-v0.36" / "bench_seq" / f"subject_id={sid}"
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(folder / "data.pqt", index=False)
    return time.perf_counter() - started, time.process_time() - cpu


def timed_sync(url: str, table: str, **options: Any) -> tuple[float, Any, float]:
    """``bdc.sync`` of one table; returns (wall seconds, report, CPU seconds)."""
    import bdc

    started, cpu = time.perf_counter(), time.process_time()
    report = bdc.sync(url, only=[table], **options)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if not report.ok:
        raise SystemExit(f"sync of {table} failed:\n{report.summary()}")
    return seconds, report, cpu


def phases(runs: list[tuple[float, Any, float]], table: str) -> str:
    """Where the syncs' time went: before the first partition, writing partitions (first start to
    last end), after the last one (publication of the table), and outside the table (the run's own
    work: staging tidy-up, report)."""
    parts: dict[str, list[float]] = {"before": [], "partitions": [], "publishing": [], "outside the table": []}
    for seconds, run, _cpu in runs:
        tr = run.table(table)
        if not tr.spans or tr.started_at is None or tr.finished_at is None:
            return "no partition spans in the report"
        first, last = min(s[1] for s in tr.spans), max(s[2] for s in tr.spans)
        parts["before"].append(first - tr.started_at)
        parts["partitions"].append(last - first)
        parts["publishing"].append(tr.finished_at - last)
        parts["outside the table"].append(seconds - (tr.finished_at - tr.started_at))
    return ", ".join(f"{name} {median(values):.2f} s" for name, values in parts.items())


def load_average() -> str:
    """The 1-minute load average (other work on the machine skews every figure here)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:  # pragma: no cover - not on every platform
        return "?"


def median(values: list[float]) -> float:
    """The median."""
    return statistics.median(values)


def main(argv: list[str] | None = None) -> None:
    """Run the measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--sleep-ms", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    os.environ["BDC_LOAD_PLUGINS"] = ""  # only the bench's tables, not the installed packages'
    from bdc import plugins
    from bdc.runner.executors import default_workers

    work = Workload(args.partitions, args.rows, args.sleep_ms / 1000)
    noop_work = Workload(args.partitions, args.rows, 0.0)
    clock = BuildClock()
    frames: dict[str, Any] = {}  # filled just before the no-op runs (no extra objects for the GC before)
    p = functools.partial
    specs = [
        make_spec("bench_sleep", p(list_partitions, work), p(build_partition, work)),
        make_spec("bench_noop", p(list_partitions, noop_work), p(noop_partition, frames, clock)),
        make_spec("bench_ready", p(list_partitions, work), p(ready_partition, frames, work)),
        make_spec("bench_incremental", p(list_fingerprinted, work), p(build_partition, work), incremental=True),
        make_spec("bench_warmup", p(list_partitions, Workload(20, args.rows, 0.0)), p(build_partition, work)),
    ]
    name = plugins.register(BenchPlugin(specs), name="bench-sync")
    tmp = Path(tempfile.mkdtemp(prefix="bdc-bench-sync-"))
    try:
        print(f"# {args.partitions} partitions x {args.rows} rows, build sleeps {args.sleep_ms:g} ms; "
              f"file backend in {tmp}; {os.cpu_count()} cores; default workers {default_workers()}; "
              f"load average {load_average()}")

        timed_sync((tmp / "warmup").as_uri(), "bench_warmup")  # imports and first-call costs, not timed
        # the sequential loop runs between the first and the other syncs: both see the same machine
        runs = [timed_sync((tmp / "sleep-0").as_uri(), "bench_sleep")]
        seq, seq_cpu = sequential(tmp / "seq", work)
        runs += [timed_sync((tmp / f"sleep-{i}").as_uri(), "bench_sleep") for i in range(1, args.runs)]
        runner = median([s for s, _, _ in runs])
        report = runs[0][1].table("bench_sleep")
        print(f"# sequential loop (sleep + frame + DataFrame.to_parquet): {seq:.2f} s ({seq_cpu:.2f} s CPU); "
              f"bdc.sync: {runner:.2f} s (median of {args.runs}; "
              f"{median([c for _, _, c in runs]):.2f} s CPU); {report.rows} rows, {report.bytes / 1e6:.1f} MB")
        print(f"# bdc.sync split (medians): {phases(runs, 'bench_sleep')}")
        for i, (seconds, run, _cpu) in enumerate(runs):
            measured = ", ".join(f"{m['measured']} {m['items_per_s']:.0f}/s ({m['cpu_ms_per_item']:.2f} ms CPU each)"
                                 for m in run.pinning) or "nothing"
            on_one = "one core" if run.pinning and run.pinning[-1]["one_core_after"] else "every core"
            print(f"# sync {i}: {seconds:.2f} s; build threads measured {measured}; ended on {on_one}")
        print(f"speedup_vs_sequential: {seq / runner:.2f}")
        free = [timed_sync((tmp / f"free-{i}").as_uri(), "bench_sleep", pin_threads="off") for i in range(args.runs)]
        print(f"# the same sync with the build threads never put on one core (pin_threads='off'): "
              f"{median([s for s, _, _ in free]):.2f} s (median of {args.runs}; "
              f"{median([c for _, _, c in free]):.2f} s CPU)")
        print(f"speedup_vs_sequential_threads_free: {seq / median([s for s, _, _ in free]):.2f}")
        procs = [timed_sync((tmp / f"processes-{i}").as_uri(), "bench_sleep", executor="processes")
                 for i in range(args.runs)]
        in_procs = median([s for s, _, _ in procs])
        print(f"# the same sync with executor='processes' (one process per core, each running its share of "
              f"the default threads; start-up included): {in_procs:.2f} s (median of {args.runs})")
        print(f"speedup_vs_sequential_processes: {seq / in_procs:.2f}")

        frames.update((sid, partition_frame(sid, args.rows)) for sid in subject_ids(args.partitions))
        ready = [timed_sync((tmp / "ready-0").as_uri(), "bench_ready")]
        seq_ready, _ = sequential(tmp / "seq-ready", work, functools.partial(ready_partition, frames, work))
        ready += [timed_sync((tmp / f"ready-{i}").as_uri(), "bench_ready") for i in range(1, args.runs)]
        runner_ready = median([s for s, _, _ in ready])
        print(f"# the same with a build that only sleeps and returns a frame made beforehand (no pandas work "
              f"in the build): sequential {seq_ready:.2f} s, bdc.sync {runner_ready:.2f} s")
        print(f"speedup_vs_sequential_ready_frames: {seq_ready / runner_ready:.2f}")

        overheads = []
        for i in range(args.runs):
            clock.seconds, clock.calls = 0.0, 0
            seconds, _, _ = timed_sync((tmp / f"noop-{i}").as_uri(), "bench_noop")
            overheads.append((seconds - clock.seconds) / args.partitions * 1000)
        print(f"# no-op build: {clock.calls} calls, {clock.seconds * 1000:.1f} ms inside the build in all")
        print(f"overhead_ms_per_partition: {median(overheads):.3f}")
        frames.clear()

        resyncs = []
        for i in range(args.runs):
            url = (tmp / f"incremental-{i}").as_uri()
            first, _, _ = timed_sync(url, "bench_incremental")
            second, again, _ = timed_sync(url, "bench_incremental")
            table = again.table("bench_incremental")
            if table.status != "unchanged" or table.partitions_built:
                raise SystemExit(f"the second sync rebuilt something: {table}")
            resyncs.append(second)
        print(f"# incremental table: first sync {first:.2f} s, second (nothing changed) rebuilt 0 partitions")
        print(f"noop_resync_s: {median(resyncs):.3f}")
        print(f"# load average at the end: {load_average()}")
    finally:
        plugins.unregister(name)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
