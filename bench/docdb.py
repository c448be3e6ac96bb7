"""DocDB table figures of bdc, printed as ``name: value`` lines (context lines start with ``#``).

    python bench/docdb.py [--n 20000] [--seed 3] [--page-cap 500] [--changed 0.01] [--qc-sample 0]

A DocDB emulator on loopback (:class:`bdc_tables_docdb.emulator.DocDBEmulator`, mongomock behind
a real HTTP server, ``page_cap`` records per find) serves ``--n`` generated records
(:func:`bdc_tables_docdb.demo.generate_records`); every request goes through the real
``MetadataDbClient``. The cache is a file cache in a temporary folder made here.

* ``asset_basics_full_requests``: HTTP requests of ``bdc.sync(url, only=["asset_basics"], full=True)``
  (target ≤ 2 × ⌈N/page_cap⌉ + 5);
* ``asset_basics_incremental_ratio``: time of an incremental asset_basics sync after
  ``--changed`` of the records changed (:func:`~bdc_tables_docdb.demo.mutate`, replaced in the
  emulator) ÷ time of the full build (≤ 0.15); ``asset_basics_incremental_requests`` its requests
  as a fraction of the full build's (≤ 0.10);
* ``qc_requests_per_subject``: requests of a full quality_control build (asset_basics already
  built) ÷ the number of subjects (≤ 0.05);
* ``qc_speedup_vs_per_subject``: the reference's way — one
  ``client.retrieve_docdb_records(filter_query={"subject.subject_id": s}, projection=QC projection)``
  per subject with the real client, then the same rows built from the records — ÷ bdc's
  quality_control build on the same emulator (≥ 10). With ``--qc-sample K`` the per-subject loop
  runs on K random subjects and its time is scaled to all subjects (said so in a ``#`` line).

The ``#`` lines say where the time goes: ``emulator busy`` is the wall time during which the
emulator was answering at least one request (measured around its request dispatch, from outside:
the bench wraps the method, the emulator is not modified); the rest is bdc's own work (decoding,
building rows, writing parquet) and the client.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "per_subject_reference", "BusyMeter"]


class BusyMeter:
    """Wall time during which the emulator answers at least one request (overlaps counted once)."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._active = 0
        self._since = 0.0
        self.seconds = 0.0

    def install(self) -> bool:
        """Wrap ``DocDBEmulator._dispatch`` (class-wide, this process only); ``False`` if it is not there."""
        import functools

        from bdc_tables_docdb.emulator import server

        original = getattr(server.DocDBEmulator, "_dispatch", None)
        if original is None:
            return False
        meter = self

        @functools.wraps(original)
        def dispatch(emulator: Any, *args: Any, **kwargs: Any) -> Any:
            meter._enter()
            try:
                return original(emulator, *args, **kwargs)
            finally:
                meter._leave()

        server.DocDBEmulator._dispatch = dispatch
        return True

    def _enter(self) -> None:
        with self._lock:
            if self._active == 0:
                self._since = time.perf_counter()
            self._active += 1

    def _leave(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self.seconds += time.perf_counter() - self._since

    def take(self) -> float:
        """Seconds measured since the last call."""
        with self._lock:
            value, self.seconds = self.seconds, 0.0
        return value


def _sync(cache: str, **options: Any) -> Any:
    """``bdc.sync`` that fails loudly."""
    import bdc

    report = bdc.sync(cache, progress="none", **options)
    if not report.ok:
        raise SystemExit(report.summary())
    return report


def per_subject_reference(client: Any, subjects: list[str]) -> tuple[int, int, float]:
    """The reference's quality_control fetch: one paged find per subject, rows built from the records.

    Returns ``(qc rows, qc_tag_status rows, seconds)``.
    """
    from bdc_tables_docdb.transforms.quality_control import PROJECTION, qc_rows, qc_tag_status_rows

    rows = tags = 0
    started = time.perf_counter()
    for subject in subjects:
        records = client.retrieve_docdb_records(filter_query={"subject.subject_id": subject}, projection=PROJECTION)
        rows += sum(len(qc_rows(r)) for r in records)
        tags += sum(len(qc_tag_status_rows(r)) for r in records)
    return rows, tags, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Generate the records, serve them, build, mutate, rebuild; print the figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000, help="generated records (default 20000)")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--page-cap", type=int, default=500, help="records per find response (default 500)")
    p.add_argument("--changed", type=float, default=0.01, help="fraction of records changed (default 0.01)")
    p.add_argument("--qc-sample", type=int, default=0,
                   help="run the per-subject reference on this many random subjects and scale (0 = all)")
    p.add_argument("--keep", help="cache folder to use and keep (default: a temp dir, removed)")
    args = p.parse_args(argv)

    os.environ["BDC_LOAD_PLUGINS"] = "docdb"
    from bdc_tables_docdb.client import make_client
    from bdc_tables_docdb.demo.generator import generate_records, mutate
    from bdc_tables_docdb.emulator import DocDBEmulator

    t0 = time.perf_counter()
    records = generate_records(args.n, seed=args.seed)
    print(f"# generated {len(records)} records in {time.perf_counter() - t0:.1f} s")
    meter = BusyMeter()
    metered = meter.install()
    t0 = time.perf_counter()
    emulator = DocDBEmulator(records, page_cap=args.page_cap)
    print(f"# emulator loaded in {time.perf_counter() - t0:.1f} s (page cap {args.page_cap})")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bdc-bench-docdb-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = (work / "cache").as_uri()
    try:
        with emulator:
            os.environ["BDC_DOCDB_URL"] = emulator.url
            os.environ["BDC_OPEN_DATA_URL"] = (work / "no-open-data").as_uri()

            # -- asset_basics: full build -----------------------------------------------------
            emulator.reset_stats()
            meter.take()
            t0 = time.perf_counter()
            _sync(cache, only=["asset_basics"], full=True)
            full_s = time.perf_counter() - t0
            busy = meter.take()
            full = emulator.stats
            pages = math.ceil(args.n / args.page_cap)
            print(f"asset_basics_full_requests: {full['requests']}")
            print(f"# target <= {2 * pages + 5} (2 x ceil({args.n}/{args.page_cap}) + 5); "
                  f"find {full['find']}, aggregate {full['aggregate']}, {full['records_returned']} records sent")
            print(f"asset_basics_full_s: {full_s:.2f}")
            print(f"# {_busy(metered, busy, full_s)}; {busy / max(1, full['requests']):.2f} s per page "
                  f"(each find sorts the matching ids of the whole collection, then copies one page)")

            # -- asset_basics: incremental after a few changes ---------------------------------
            before = {r.get("_id"): r.get("_last_modified") for r in records}
            changed = [r for r in mutate(records, changed=args.changed, added=0, removed=0, seed=args.seed)
                       if r.get("_last_modified") != before.get(r.get("_id"))]
            emulator.replace(changed)
            emulator.reset_stats()
            meter.take()
            t0 = time.perf_counter()
            report = _sync(cache, only=["asset_basics"])
            inc_s = time.perf_counter() - t0
            busy = meter.take()
            inc = emulator.stats
            counters = report.table("asset_basics").counters
            print(f"asset_basics_incremental_ratio: {inc_s / full_s:.3f}")
            print(f"# incremental {inc_s:.2f} s / full {full_s:.2f} s after {len(changed)} records changed; "
                  f"fetched {counters.get('records_fetched')} records; target <= 0.15")
            print(f"asset_basics_incremental_requests: {inc['requests'] / full['requests']:.3f}")
            print(f"# {inc['requests']} requests (aggregate {inc['aggregate']}, find {inc['find']}) "
                  f"vs {full['requests']}; target <= 0.10")
            print(f"# incremental: {_busy(metered, busy, inc_s)} (the _id/_last_modified listing of every "
                  f"record, then one $in lookup); the rest reads, merges, re-finalizes and writes the table")

            # -- quality_control: batched vs one request per subject --------------------------
            import bdc

            subjects = sorted(set(bdc.Cache(cache).get("asset_basics", columns=["subject_id"])["subject_id"].dropna()))
            emulator.reset_stats()
            meter.take()
            t0 = time.perf_counter()
            report = _sync(cache, only=["quality_control"], no_deps=True, full=True)
            qc_s = time.perf_counter() - t0
            busy = meter.take()
            qc = emulator.stats
            tr = report.table("quality_control")
            print(f"qc_requests_per_subject: {qc['requests'] / len(subjects):.4f}")
            print(f"# {qc['requests']} requests for {len(subjects)} subjects ({tr.partitions_built} partitions, "
                  f"{tr.rows} rows) in {qc_s:.2f} s; target <= 0.05")
            print(f"# quality_control: {_busy(metered, busy, qc_s)}; the rest decodes, builds rows and writes "
                  f"{2 * tr.partitions_built} parquet partitions (qc + qc_tag_status)")

            sample = subjects
            if args.qc_sample and args.qc_sample < len(subjects):
                sample = sorted(random.Random(args.seed).sample(subjects, args.qc_sample))
            client = make_client(emulator.url)
            emulator.reset_stats()
            meter.take()
            ref_rows, ref_tags, ref_s = per_subject_reference(client, sample)
            ref_busy = meter.take()
            ref_requests = emulator.stats["requests"]
            scale = len(subjects) / len(sample)
            if scale != 1:
                print(f"# per-subject reference run on {len(sample)} of {len(subjects)} subjects, "
                      f"time scaled by {scale:.2f}")
            else:
                qc_tags = report.table("qc_tag_status").rows
                if (ref_rows, ref_tags) != (tr.rows, qc_tags):
                    raise SystemExit(f"row counts differ: per-subject {ref_rows}/{ref_tags}, bdc {tr.rows}/{qc_tags}")
                print(f"# same rows both ways: {ref_rows} qc rows, {ref_tags} tag-status rows")
            print(f"qc_speedup_vs_per_subject: {ref_s * scale / qc_s:.1f}")
            print(f"# per-subject {ref_s * scale:.2f} s ({ref_requests} requests for {len(sample)} subjects, "
                  f"{ref_s / max(1, ref_requests) * 1000:.0f} ms each) vs bdc {qc_s:.2f} s; target >= 10")
            print(f"# per-subject: {_busy(metered, ref_busy, ref_s)} (every find filters the whole collection; "
                  f"half the requests are the empty page that ends each subject's paging)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _busy(metered: bool, busy: float, total: float) -> str:
    """``emulator busy X s of Y s (Z%)`` (or a note that it was not measured)."""
    if not metered:
        return "emulator time not measured"
    return f"emulator busy {busy:.2f} s of {total:.2f} s ({100 * busy / max(total, 1e-9):.0f}%)"


if __name__ == "__main__":
    sys.exit(main())
