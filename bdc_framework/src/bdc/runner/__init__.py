"""The sync runner: discover every installed table and rebuild it, in order, in parallel, incrementally.

>>> report = bdc.runner(cache="memory://demo", only=["asset_basics"])   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bdc.runner.plan import Plan, PlanError, make_plan
from bdc.runner.report import RunReport, TableReport
from bdc.runner.retry import RetryPolicy, TransientError, is_transient

__all__ = ["sync", "write_report", "Plan", "PlanError", "make_plan", "RunReport", "TableReport", "RetryPolicy",
           "TransientError", "is_transient", "open_executor", "executor_options"]


def open_executor(name: str = "threads", workers: int | None = None, **options: Any) -> Any:
    """An executor contributed by a plugin (``threads``, ``processes``, ``dask``, ...)."""
    from bdc.catalog import get_catalog
    from bdc.errors import BdcError

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise BdcError(f"workers must be a whole number of at least 1 (or None for the default), not {workers!r}")
    executors = get_catalog().executors
    if name not in executors:
        raise BdcError(f"Unknown executor {name!r}; installed: {', '.join(sorted(executors))}")
    return executors[name].factory(workers=workers, **options)


def sync(
    cache: Any = None,
    *,
    only: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    no_deps: bool = False,
    full: bool = False,
    dry_run: bool = False,
    executor: Any = "threads",
    workers: int | None = None,
    scheduler: str | None = None,
    pin_threads: str | None = None,
    retry: RetryPolicy | None = None,
    report: str | None = None,
    report_html: str | None = None,
    progress: Any = "none",
    lock: bool = True,
    version: str | None = None,
) -> RunReport | Plan:
    """Build the installed tables into ``cache`` (a URL or :class:`bdc.Cache`; default: the configured one).

    Returns the :class:`RunReport` (or the :class:`Plan` with ``dry_run``). ``only``/``exclude`` take
    names, aliases or glob patterns; ``full`` ignores incremental state; ``executor`` is a name
    (``threads``, ``processes``, ``dask``) or an executor object; ``pin_threads`` (threads
    executor): ``auto`` (default) puts the build threads on one core while that is measurably
    faster, ``on`` always, ``off`` never (see :mod:`bdc.runner.pinning`); ``report`` also writes the
    report to that path: JSON, or the HTML page of :mod:`bdc.runner.html` when the path ends in
    ``.html``/``.htm``; ``report_html`` writes the HTML page too (so one run can leave both). The
    JSON report is always written into the cache as well (``bdc-vX.Y/_runs/{run_id}.json``).
    Holding the cache's lock, a second sync raises :class:`bdc.LockHeldError`. A table name two
    plugins declare is reported as failed (naming both), its dependents as skipped; the other
    tables build as usual.
    """
    from bdc.cache import Cache
    from bdc.catalog import get_catalog
    from bdc.runner.lock import SyncLock
    from bdc.runner.progress import make_progress
    from bdc.runner.engine import Runner, new_run_id

    if not isinstance(cache, Cache):
        cache = Cache(cache, version=version)
    plan = make_plan(get_catalog(), only=only, exclude=exclude, no_deps=no_deps)
    if dry_run:
        return plan
    name = executor if isinstance(executor, str) else type(executor).__name__
    options = executor_options(executor, scheduler, pin_threads)
    pool = open_executor(executor, workers, **options) if isinstance(executor, str) else executor
    run_id = new_run_id()  # named by the lock, so a refused sync can tell which run holds it
    guard = SyncLock(cache.backend, run_id=run_id) if lock else None
    try:
        if guard is not None:
            guard.acquire()
        runner = Runner(cache, plan, executor=pool, executor_name=name, full=full, retry=retry,
                        progress=make_progress(progress), run_id=run_id,
                        recover=lock)  # tidying others' staging is only safe holding the lock
        # tables the plan refused (a name two plugins declare, and their dependents): reported as
        # failed/skipped, so the run fails while every other table builds and publishes
        runner.report.tables.extend(TableReport(r.name, status=r.status, error=r.error, plugin=r.plugin)
                                    for r in plan.refused.values())
        result = runner.run()
    finally:
        if guard is not None:
            guard.release()
        if isinstance(executor, str):
            pool.close()
    write_report(result, report, report_html)
    return result


def executor_options(executor: Any, scheduler: str | None = None, pin_threads: str | None = None) -> dict[str, Any]:
    """The options :func:`open_executor` gets for these :func:`sync` arguments (checked)."""
    from bdc.errors import BdcError
    from bdc.runner.pinning import PINNING_MODES

    options: dict[str, Any] = {"scheduler": scheduler} if scheduler else {}
    if pin_threads is not None:
        if pin_threads not in PINNING_MODES:
            raise BdcError(f"pin_threads {pin_threads!r}: expected one of {', '.join(PINNING_MODES)}")
        if executor != "threads":
            raise BdcError(f"pin_threads applies to the threads executor, not {executor!r}")
        options["pinning"] = pin_threads
    return options


def write_report(result: RunReport, path: str | None = None, html_path: str | None = None) -> None:
    """Write the run report to ``path`` (HTML if it ends in ``.html``/``.htm``, else JSON) and as HTML to ``html_path``."""
    from bdc.runner.html import write_html

    if path:
        if str(path).lower().endswith((".html", ".htm")):
            write_html(result, path)
        else:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(result.to_json())
    if html_path:
        write_html(result, html_path)
