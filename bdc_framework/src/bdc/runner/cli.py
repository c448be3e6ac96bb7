"""``bdc-sync``: build every installed table into a cache.

Exit status: 0 when every table succeeded, 1 when a table failed or was skipped, 2 on a usage or
configuration error, 3 when another sync holds the cache's lock.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bdc-sync``."""
    p = argparse.ArgumentParser(
        prog="bdc-sync",
        description="Build every installed bdc table into a cache: in dependency order, in parallel, incrementally.",
    )
    p.add_argument("--cache", metavar="URL", help="cache URL (default: BDC_CACHE or the local-disk cache)")
    p.add_argument("--version", dest="cache_version", metavar="X.Y", help="version folder to build (default: this release)")
    p.add_argument("--only", action="append", metavar="TABLE", help="build only this table (and what it depends on); repeatable, globs allowed")
    p.add_argument("--exclude", action="append", metavar="PATTERN", help="skip tables matching this glob; repeatable")
    p.add_argument("--no-deps", action="store_true", help="with --only: do not pull in dependencies")
    p.add_argument("--full", action="store_true", help="ignore incremental state and rebuild from scratch")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--executor", default="threads", help="threads (default), processes, dask, or a plugin's executor")
    p.add_argument("--scheduler", metavar="ADDRESS", help="with --executor dask: an existing scheduler (tcp://host:8786)")
    p.add_argument("--workers", type=int, metavar="N", help="parallel partition builds (default: 8 per core, at most 32); processes, dask: worker processes (default: one per core)")
    from bdc.runner.pinning import PINNING_MODES  # (standard library imports only)

    p.add_argument("--pin-threads", choices=PINNING_MODES, help="threads executor: run the build threads on one core while that is measurably faster (auto, the default: Python-bound builds), always (on) or never (off)")
    p.add_argument("--report", metavar="FILE", help="also write the run report here: JSON, or a self-contained HTML page (timeline, rows, bytes) when FILE ends in .html")
    p.add_argument("--report-html", metavar="FILE", help="also write the run report as a self-contained HTML page here")
    p.add_argument("--json", action="store_true", help="structured JSON log lines instead of the live display")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--demo", action="store_true", help="start the installed plugins' offline demo sources (bundled data, no network) first")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bdc-sync``.

    Everything the run shows goes through one :class:`bdc.runner.progress.Progress`: with
    ``--json`` every line on stderr is a JSON event (the demo sources started, the warnings and
    errors logged by the framework and the plugins, the run's events, a usage error); with
    ``--quiet`` only the demo sources started, the run's own warnings and an error that stops the
    run (the warnings of tables' builds are not shown: the run report has their outcomes and
    counters).
    """
    args = build_parser().parse_args(argv)
    import contextlib

    from bdc.errors import BdcError, LockHeldError
    from bdc.runner.progress import JsonProgress, capture_logs, make_progress

    progress = make_progress("none" if args.quiet else ("json" if args.json else "auto"))

    def fail(exc: BdcError, code: int, label: str = "") -> int:
        if isinstance(progress, JsonProgress):
            progress.error(str(exc), code)
        else:
            print(f"bdc-sync: {label}{exc}", file=sys.stderr)
        return code

    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(capture_logs(progress))
            if args.dry_run:
                # what a run would refuse, a dry run refuses too (an executor is made lazily:
                # making one starts no worker)
                from bdc.runner import executor_options, open_executor

                options = executor_options(args.executor, args.scheduler, args.pin_threads)
                open_executor(args.executor, args.workers, **options).close()
            if args.demo:
                from bdc.catalog import get_catalog

                demos = get_catalog().demos
                if not demos:
                    raise BdcError("No installed plugin offers demo sources (install bdc-tables-docdb or bdc-tables-foraging)")
                for demo in demos:
                    progress.demo_started(demo.name, demo.description)
                    stack.enter_context(demo.start())
            from bdc.runner import sync

            result = sync(
                args.cache, only=args.only, exclude=args.exclude, no_deps=args.no_deps, full=args.full,
                dry_run=args.dry_run, executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                pin_threads=args.pin_threads,
                report=args.report, report_html=args.report_html, progress=progress, version=args.cache_version,
            )
    except LockHeldError as exc:
        return fail(exc, 3)
    except BdcError as exc:
        return fail(exc, 2, "error: ")
    from bdc.runner.plan import Plan

    if isinstance(result, Plan):
        print(result.describe())
        return 0
    if not args.json:
        print(result.summary())
    return 0 if result.ok else 1
