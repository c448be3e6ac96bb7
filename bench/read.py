"""Read-path figures of bdc, printed as ``name: value`` lines (context lines start with ``#``).

    python bench/read.py [--runs N]

On the file backend, in a temporary folder made here:

* ``get_vs_duckdb``: ``bdc.get(name)`` on a 100k-row table shaped like asset_basics ÷
  ``duckdb.read_parquet(path).df()`` on the same file (target ≤ 1.15);
* ``partition_vs_direct``: ``bdc.get(name, subject_id=X)`` on a table of 2,000 partitions × 500
  rows ÷ reading that one partition file directly with DuckDB (≤ 1.5);
* ``partition_vs_full_filter``: reading the whole partitioned table and filtering in pandas ÷
  ``bdc.get(name, subject_id=X)`` (≥ 20);
* ``import_bdc_ms``: ``import bdc`` in a fresh interpreter (median over separate processes, ≤ 150);
* ``cli_help_ms``: ``bdc --help`` wall time, process start to exit (median over processes, ≤ 300).

Timings are medians of at least 5 runs in one process (after one warm-up run), alternating the
two sides of each ratio so that both see the same machine state.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASICS_ROWS = 100_000
PARTITIONS = 2_000
PARTITION_ROWS = 500

#: The asset_basics columns (bdc-tables-docdb), so the file has the real table's shape.
BASICS_COLUMNS = [
    ("_id", "string"), ("_last_modified", "string"), ("modalities", "list<string>"),
    ("project_name", "string"), ("data_level", "string"), ("subject_id", "string"),
    ("acquisition_start_time", "string"), ("acquisition_end_time", "string"),
    ("code_ocean", "list<string>"), ("process_date", "string"), ("genotype", "string"),
    ("age", "int64"), ("acquisition_type", "string"), ("location", "string"), ("name", "string"),
    ("experimenters", "list<string>"), ("experimenters_normalized", "list<string>"),
    ("instrument_id", "string"), ("instrument_id_normalized", "string"),
    ("investigators", "list<string>"), ("investigators_normalized", "list<string>"),
]
#: A quality_control-like partitioned table.
PART_COLUMNS = [
    ("subject_id", "string"), ("name", "string"), ("stage", "string"), ("metric", "string"),
    ("status", "string"), ("value", "float64"), ("passed", "bool"),
    ("evaluated_at", "timestamp[us, tz=UTC]"), ("tags", "list<string>"),
]


def basics_table(rows: int, seed: int = 1) -> Any:
    """A synthetic asset_basics table (realistic cardinalities, nulls and list lengths)."""
    import pyarrow as pa

    rnd = random.Random(seed)
    projects = [f"Project {i} {'Cognitive flexibility' if i % 7 == 0 else 'Foraging'}" for i in range(150)]
    modalities = ["behavior", "ecephys", "fib", "SPIM", "pophys", "behavior-videos"]
    people = [f"Person {i} Surname{i % 50}" for i in range(300)]
    genotypes = [f"Ai{i}/wt" for i in range(40)] + [None]
    subjects = [f"{rnd.randrange(600000, 800000)}" for _ in range(8000)]
    start = dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc)
    cols: dict[str, list[Any]] = {name: [] for name, _ in BASICS_COLUMNS}
    for i in range(rows):
        subject = rnd.choice(subjects)
        when = start + dt.timedelta(minutes=rnd.randrange(0, 1_500_000))
        stamp = when.strftime("%Y-%m-%d_%H-%M-%S")
        mods = rnd.sample(modalities, rnd.choice((1, 1, 2, 3)))
        exps = rnd.sample(people, rnd.choice((0, 1, 2)))
        invs = rnd.sample(people, rnd.choice((1, 2)))
        name = f"{mods[0]}_{subject}_{stamp}" + ("_processed_" + stamp if i % 3 == 0 else "")
        cols["_id"].append(f"{i:08x}-{rnd.getrandbits(64):016x}")
        cols["_last_modified"].append(when.isoformat())
        cols["modalities"].append(mods)
        cols["project_name"].append(rnd.choice(projects))
        cols["data_level"].append("derived" if i % 3 == 0 else "raw")
        cols["subject_id"].append(subject)
        cols["acquisition_start_time"].append(when.isoformat())
        cols["acquisition_end_time"].append((when + dt.timedelta(hours=1)).isoformat())
        cols["code_ocean"].append([f"{rnd.getrandbits(128):032x}"] if i % 4 == 0 else None)
        cols["process_date"].append(when.date().isoformat() if i % 3 == 0 else None)
        cols["genotype"].append(rnd.choice(genotypes))
        cols["age"].append(rnd.randrange(30, 400) if i % 10 else None)
        cols["acquisition_type"].append(rnd.choice(("Uncoupled Baiting", "AindVrForaging", None)))
        cols["location"].append(f"s3://aind-open-data/{name}")
        cols["name"].append(name)
        cols["experimenters"].append(exps)
        cols["experimenters_normalized"].append(exps)
        cols["instrument_id"].append(f"{rnd.randrange(300, 450)}_EPHYS{rnd.randrange(1, 5)}_20240101")
        cols["instrument_id_normalized"].append(f"EPHYS{rnd.randrange(1, 5)}")
        cols["investigators"].append(invs)
        cols["investigators_normalized"].append(invs)
    return pa.table(cols)


def partition_table(subject: str, rows: int, rnd: random.Random) -> Any:
    """One subject's rows of the partitioned table."""
    import pyarrow as pa

    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    return pa.table({
        "subject_id": [subject] * rows,
        "name": [f"behavior_{subject}_{i // 10:04d}" for i in range(rows)],
        "stage": [("raw", "processing", "analysis")[i % 3] for i in range(rows)],
        "metric": [f"metric_{i % 10}" for i in range(rows)],
        "status": [("Pass", "Fail", "Pending")[rnd.randrange(3)] for _ in range(rows)],
        "value": [rnd.random() for _ in range(rows)],
        "passed": [i % 5 != 0 for i in range(rows)],
        "evaluated_at": [t0 + dt.timedelta(seconds=i * 37) for i in range(rows)],
        "tags": [["auto"] if i % 2 else ["manual", "v2"] for i in range(rows)],
    })


def _median_ms(fn: Callable[[], Any], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def paired(a: Callable[[], Any], b: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median milliseconds of ``a`` and ``b``, measured alternately after a warm-up of each."""
    a()
    b()
    sa, sb = [], []
    for _ in range(runs):
        start = time.perf_counter()
        a()
        sa.append(time.perf_counter() - start)
        start = time.perf_counter()
        b()
        sb.append(time.perf_counter() - start)
    return statistics.median(sa) * 1000, statistics.median(sb) * 1000


def cold_process_ms(argv: list[str], runs: int, env: dict[str, str], inner: bool = False) -> float:
    """Median over fresh processes: wall time, or (``inner``) the time the process reports."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
        wall = time.perf_counter() - start
        samples.append(float(result.stdout.strip().splitlines()[-1]) if inner else wall * 1000)
    return statistics.median(samples)


def setup_caches(root: Path) -> tuple[Any, Any, str]:
    """Register the bench tables in-process and publish them into a file cache under ``root``."""
    import pyarrow as pa

    import bdc
    from bdc import plugins
    from bdc.testing import make_spec, specs_plugin

    basics = make_spec("bench_basics", BASICS_COLUMNS, description="asset_basics-shaped, 100k rows")
    parts = make_spec("bench_parts", PART_COLUMNS, partition_key="subject_id",
                      description="2,000 partitions of 500 rows")
    plugins.register(specs_plugin([basics, parts]), name="bench", distribution="bench")
    cache = bdc.default_cache()
    cache.put("bench_basics", basics_table(BASICS_ROWS))
    rnd = random.Random(2)
    subjects = sorted({f"{rnd.randrange(600000, 800000)}" for _ in range(PARTITIONS * 2)})[:PARTITIONS]
    stats = {"rows": 0, "bytes": 0, "files": 0}
    for subject in subjects:
        for key, value in cache.write_partition(parts, subject, partition_table(subject, PARTITION_ROWS, rnd)).items():
            stats[key] += value
    cache.publish(parts, {**stats, "partitions": len(subjects)})
    del pa
    return cache, parts, subjects[len(subjects) // 2]


def main(argv: list[str] | None = None) -> int:
    """Generate the data, time the reads, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="timed runs per figure (at least 5)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary cache folder")
    args = parser.parse_args(argv)
    runs = max(5, args.runs)

    root = Path(tempfile.mkdtemp(prefix="bdc-bench-"))
    os.environ["BDC_CACHE"] = (root / "cache").as_uri()
    os.environ["BDC_LOAD_PLUGINS"] = ""  # only the bench's own tables
    try:
        import duckdb

        import bdc

        start = time.perf_counter()
        cache, parts_spec, subject = setup_caches(root)
        print(f"# data: {BASICS_ROWS:,} asset_basics-shaped rows; {PARTITIONS:,} partitions x {PARTITION_ROWS} rows "
              f"(generated and published in {time.perf_counter() - start:.1f} s under {root})")
        print(f"# python {sys.version.split()[0]}, duckdb {duckdb.__version__}, {os.cpu_count()} cpus, {runs} runs per figure")

        basics_path = cache.backend.local_path(cache.layout.table_key(cache.spec("bench_basics")))
        ms_bdc, ms_duck = paired(lambda: bdc.get("bench_basics"), lambda: duckdb.read_parquet(basics_path).df(), runs)
        print(f"# bdc.get(bench_basics): {ms_bdc:.1f} ms; duckdb.read_parquet(path).df(): {ms_duck:.1f} ms "
              f"({os.path.getsize(basics_path) / 1e6:.1f} MB)")
        print(f"get_vs_duckdb: {ms_bdc / ms_duck:.2f}")

        part_path = cache.backend.local_path(cache.layout.partition_key(parts_spec, subject))
        ms_part, ms_direct = paired(lambda: bdc.get("bench_parts", subject_id=subject),
                                    lambda: duckdb.read_parquet(part_path).df(), max(runs, 21))
        print(f"# bdc.get(bench_parts, subject_id={subject}): {ms_part:.2f} ms; "
              f"duckdb.read_parquet(partition file).df(): {ms_direct:.2f} ms")
        print(f"partition_vs_direct: {ms_part / ms_direct:.2f}")

        def full_then_filter() -> Any:
            df = bdc.get("bench_parts")
            return df[df["subject_id"] == subject]

        check = full_then_filter()
        assert len(check) == PARTITION_ROWS == len(bdc.get("bench_parts", subject_id=subject))
        ms_full, ms_part2 = paired(full_then_filter, lambda: bdc.get("bench_parts", subject_id=subject), runs)
        print(f"# whole table ({PARTITIONS * PARTITION_ROWS:,} rows) then pandas filter: {ms_full:.1f} ms; "
              f"bdc.get(..., subject_id=X): {ms_part2:.2f} ms")
        print(f"partition_vs_full_filter: {ms_full / ms_part2:.1f}")

        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPROFILE")}
        import_code = "import time; t = time.perf_counter(); import bdc; print((time.perf_counter() - t) * 1000)"
        import_ms = cold_process_ms([sys.executable, "-c", import_code], runs, env, inner=True)
        bare_ms = cold_process_ms([sys.executable, "-c", "pass"], runs, env)
        print(f"# bare interpreter start: {bare_ms:.0f} ms (not included in import_bdc_ms)")
        print(f"import_bdc_ms: {import_ms:.1f}")

        script = Path(sys.executable).with_name("bdc")
        help_argv = [str(script), "--help"] if script.exists() else [sys.executable, "-m", "bdc.cli", "--help"]
        help_env = {k: v for k, v in env.items() if k != "BDC_LOAD_PLUGINS"}
        print(f"cli_help_ms: {cold_process_ms(help_argv, runs, help_env):.0f}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
