"""S3 read-path figures of bdc, printed as ``name: value`` lines (context lines start with ``#``).

    python bench/s3.py [--runs N] [--latency SECONDS]

On moto's S3 server on loopback, with ``--latency`` (default 20 ms) slept before every request
(a bucket far from the notebook), requests counted on the server's side; the same tables in a
``file://`` cache for comparison; bdc's local read cache in a temporary folder:

* ``warm_get_vs_local``: a second ``bdc.get(name)`` of a 100k-row table shaped like asset_basics
  on the S3 cache ÷ ``get(name)`` on the file cache holding the same table (target ≤ 1.3);
* ``cold_partition_requests``: S3 requests of a cold ``bdc.get(name, subject_id=X)`` on a table
  of 2,000 partitions (≤ 3, no listing);
* ``warm_requests``: S3 requests of a warm repeat of that read (≤ 1).

Timings are medians of at least 5 runs (after one warm-up run), alternating the two sides of a
ratio so that both see the same machine state.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests" / "framework")]  # read.py's tables, the counting server

BUCKET = "bdc-bench"


def _ms(fn: Callable[[], Any], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def publish(cache: Any, basics: Any, parts: Any, subjects: list[str], basics_data: Any, workers: int = 8) -> None:
    """The two bench tables into ``cache`` (partitions written in parallel)."""
    from concurrent.futures import ThreadPoolExecutor

    from read import PARTITION_ROWS, partition_table

    cache.put(basics.name, basics_data)

    def one(subject: str) -> dict[str, int]:
        rnd = random.Random(subject)
        return cache.write_partition(parts, subject, partition_table(subject, PARTITION_ROWS, rnd))

    stats = {"rows": 0, "bytes": 0, "files": 0}
    with ThreadPoolExecutor(workers) as pool:
        for result in pool.map(one, subjects):
            for key, value in result.items():
                stats[key] += value
    cache.publish(parts, {**stats, "partitions": len(subjects)})


def main(argv: list[str] | None = None) -> int:
    """Start the server, publish, time and count the reads, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="timed runs per figure (at least 5)")
    parser.add_argument("--latency", type=float, default=0.020, help="seconds slept before each S3 request")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    runs = max(5, args.runs)

    root = Path(tempfile.mkdtemp(prefix="bdc-bench-s3-"))
    from s3counting import CountingS3Server

    server = CountingS3Server()
    endpoint = server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint, "NO_PROXY": "127.0.0.1,localhost",
        "AWS_CONFIG_FILE": str(root / "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-creds"),
        "BDC_LOCAL_CACHE_DIR": str(root / "local-objects"), "BDC_LOAD_PLUGINS": "",
        "BDC_CACHE": f"s3://{BUCKET}/data-asset-cache",
    }
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "BDC_LOCAL_CACHE_TTL", "BDC_LOCAL_CACHE_MAX", "BDC_LOCAL_CACHE"):
        os.environ.pop(name, None)
    os.environ.update(env)
    try:
        import boto3
        import duckdb

        import bdc
        from bdc import plugins
        from bdc.backends.readcache import get_store
        from bdc.cache import Cache
        from bdc.testing import make_spec, specs_plugin
        from read import BASICS_COLUMNS, BASICS_ROWS, PART_COLUMNS, PARTITION_ROWS, PARTITIONS, basics_table

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        basics = make_spec("bench_basics", BASICS_COLUMNS, description="asset_basics-shaped, 100k rows")
        parts = make_spec("bench_parts", PART_COLUMNS, partition_key="subject_id",
                          description="2,000 partitions of 500 rows")
        plugins.register(specs_plugin([basics, parts]), name="bench", distribution="bench")
        rnd = random.Random(2)
        subjects = sorted({f"{rnd.randrange(600000, 800000)}" for _ in range(PARTITIONS * 2)})[:PARTITIONS]
        subject = subjects[len(subjects) // 2]

        start = time.perf_counter()
        data = basics_table(BASICS_ROWS)
        s3_cache = bdc.default_cache()
        file_cache = Cache((root / "file-cache").as_uri())
        publish(s3_cache, basics, parts, subjects, data)
        publish(file_cache, basics, parts, subjects, data)
        size = s3_cache.registry_entry("bench_basics")["files"][0]["size"]
        print(f"# data: {BASICS_ROWS:,} asset_basics-shaped rows ({size / 1e6:.1f} MB); {PARTITIONS:,} partitions x "
              f"{PARTITION_ROWS} rows; published to moto S3 and a file cache in {time.perf_counter() - start:.1f} s")
        print(f"# python {sys.version.split()[0]}, duckdb {duckdb.__version__}, {os.cpu_count()} cpus, "
              f"{runs} runs per figure, {args.latency * 1000:.0f} ms slept before every S3 request")
        store = get_store()
        store.clear()
        server.latency = args.latency

        # -- a whole table: cold, then warm ----------------------------------------------------
        server.reset()
        start = time.perf_counter()
        bdc.get("bench_basics")
        cold_ms = (time.perf_counter() - start) * 1000
        print(f"# cold bdc.get(bench_basics): {cold_ms:.0f} ms, {server.count()} S3 request(s)")
        server.reset()
        samples_s3, samples_file = [], []
        file_cache.get("bench_basics")
        for _ in range(runs):
            t = time.perf_counter()
            bdc.get("bench_basics")
            samples_s3.append(time.perf_counter() - t)
            t = time.perf_counter()
            file_cache.get("bench_basics")
            samples_file.append(time.perf_counter() - t)
        ms_s3, ms_file = statistics.median(samples_s3) * 1000, statistics.median(samples_file) * 1000
        print(f"# warm bdc.get(bench_basics) on S3: {ms_s3:.1f} ms ({server.count()} S3 requests in {runs} reads); "
              f"get on the file cache: {ms_file:.1f} ms")
        print(f"warm_get_vs_local: {ms_s3 / ms_file:.2f}")

        os.environ["BDC_LOCAL_CACHE_TTL"] = "0"  # every read revalidates (as after the freshness window)
        server.reset()
        stale_ms = _ms(lambda: bdc.get("bench_basics"), runs)
        print(f"# after the freshness window: {stale_ms:.1f} ms, {server.count() / runs:.0f} conditional "
              f"request(s) (304) per read")
        os.environ.pop("BDC_LOCAL_CACHE_TTL")

        # -- one partition of 2,000 -----------------------------------------------------------------
        store.clear()
        server.reset()
        start = time.perf_counter()
        part = bdc.get("bench_parts", subject_id=subject)
        cold_part_ms = (time.perf_counter() - start) * 1000
        assert len(part) == PARTITION_ROWS
        requests = server.snapshot()
        listings = sum(r.is_listing for r in requests)
        print(f"# cold bdc.get(bench_parts, subject_id={subject}): {cold_part_ms:.0f} ms; requests: "
              + ", ".join(f"{r.method} {r.path.rsplit('/', 2)[-2]}/{r.path.rsplit('/', 1)[-1]}" for r in requests)
              + f"; listings: {listings}")
        print(f"cold_partition_requests: {len(requests)}")
        server.reset()
        warm_part_ms = _ms(lambda: bdc.get("bench_parts", subject_id=subject), runs)
        warm = server.count() / runs
        part_path = file_cache.backend.local_path(file_cache.layout.partition_key(parts, subject))
        direct_ms = _ms(lambda: duckdb.read_parquet(part_path).df(), runs)
        print(f"# warm repeat: {warm_part_ms:.2f} ms (DuckDB on the partition file directly: {direct_ms:.2f} ms)")
        print(f"warm_requests: {warm:g}")
        os.environ["BDC_LOCAL_CACHE_TTL"] = "0"
        server.reset()
        bdc.get("bench_parts", subject_id=subject)
        print(f"# the same after the freshness window: {server.count()} request(s) "
              f"({', '.join('conditional GET' if r.if_none_match else r.method for r in server.snapshot())})")
        os.environ.pop("BDC_LOCAL_CACHE_TTL")
        server.reset()
        missing = bdc.get("bench_parts", subject_id="no-such-subject")
        print(f"# a partition that does not exist: {len(missing)} rows, {server.count()} requests "
              f"(its 404 and the registry, no listing)")

        # -- a projection of the big table: byte ranges only ---------------------------------------
        store.clear()
        server.reset()
        start = time.perf_counter()
        bdc.get("bench_basics", columns=["subject_id", "project_name"])
        proj_ms = (time.perf_counter() - start) * 1000
        info = store.info()
        print(f"# cold bdc.get(bench_basics, columns=[subject_id, project_name]): {proj_ms:.0f} ms, "
              f"{server.count()} ranged requests, {info['bytes'] / 1e6:.2f} of {size / 1e6:.1f} MB downloaded")

        # -- the whole partitioned table --------------------------------------------------------
        store.clear()
        server.reset()
        start = time.perf_counter()
        whole = bdc.get("bench_parts")
        whole_ms = (time.perf_counter() - start) * 1000
        print(f"# cold bdc.get(bench_parts), {len(whole):,} rows: {whole_ms / 1000:.1f} s, {server.count()} requests "
              f"(the registry, then {PARTITIONS:,} GETs, 16 at a time; listings: "
              f"{sum(r.is_listing for r in server.snapshot())})")
        server.reset()
        warm_whole_ms = _ms(lambda: bdc.get("bench_parts"), 3)
        file_whole_ms = _ms(lambda: file_cache.get("bench_parts"), 3)
        print(f"# warm: {warm_whole_ms:.0f} ms, {server.count()} requests (the file cache: {file_whole_ms:.0f} ms)")
        os.environ["BDC_LOCAL_CACHE_TTL"] = "0"
        server.reset()
        start = time.perf_counter()
        bdc.get("bench_parts")
        print(f"# the same after the freshness window: {(time.perf_counter() - start) * 1000:.0f} ms, "
              f"{server.count()} request(s) (the registry's 304; its ETags vouch for every partition)")
        os.environ.pop("BDC_LOCAL_CACHE_TTL")
        print("# (moto serves from this process: its per-request CPU competes with the reader's on these cpus)")
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
