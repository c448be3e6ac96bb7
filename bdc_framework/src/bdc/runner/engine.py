"""Running a plan: tables in dependency order, independent ones together, partitions in parallel.

Per table: data first, then the registry entry, then the incremental state. A failed table keeps
its previous data and registry entry; its dependents are skipped; everything else still runs.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

import attrs

from bdc.backends import ObjectInfo
from bdc.build import UNCHANGED, BuildContext, BuildResult, Delta, ParquetFiles
from bdc.cache import Cache
from bdc.hookspecs import hookimpl
from bdc.names import check_partition_value
from bdc.spec import TableSpec
from bdc.runner.executors import Executor
from bdc.runner.plan import Plan
from bdc.runner.progress import Progress
from bdc.runner.report import RunReport, TableReport, utc_now
from bdc.runner.retry import RetryPolicy

__all__ = ["Runner", "PartitionTask", "PartitionOutcome", "run_partition", "new_run_id"]


def new_run_id() -> str:
    """A sortable, unique run id: ``20261124T101500.123456Z-1a2b3c`` (microseconds, then a random tag)."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1_000_000):06d}Z"
    return stamp + "-" + uuid.uuid4().hex[:6]


def _unpack(result: Any) -> tuple[Any, Mapping[str, Any] | None, Mapping[str, Any]]:
    if isinstance(result, BuildResult):
        return result.data, result.state, result.side
    return result, None, {}


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@attrs.frozen
class PartitionTask:
    """Partitions to build and write (one, or a batch for ``build_partitions``); picklable when the spec's functions are."""

    spec: TableSpec
    values: tuple[str, ...]
    cache_url: str
    version: str
    full: bool
    state: Mapping[str, Any]
    retry: RetryPolicy
    run_id: str
    side_specs: tuple[TableSpec, ...] = ()
    #: For workers in other processes: the specs the build may read (its own, its dependencies'),
    #: declared there if the worker's catalog lacks them (plugins registered in-process).
    known_specs: tuple[TableSpec, ...] = ()
    #: The files published under each of the task's partitions when the run listed the table
    #: (table name → partition value → files; a side table's too), so a write can tell without a
    #: request whether the published file already holds its bytes. ``None``: not listed.
    published: Mapping[str, Mapping[str, tuple[ObjectInfo, ...]]] | None = None


@attrs.frozen
class PartitionOutcome:
    """What building one partition produced."""

    value: str
    rows: int
    bytes: int
    retries: int
    started: float
    finished: float
    side_rows: dict[str, int] = attrs.field(factory=dict)
    counters: dict[str, int] = attrs.field(factory=dict)


class RemoteError(Exception):
    """Stands in for a worker's exception that cannot be pickled back to the runner."""

    def __init__(self, type_name: str, message: str):
        super().__init__(type_name, message)
        self.type_name = type_name
        self.message = message

    def __str__(self) -> str:
        return self.message


class PartitionError(Exception):
    """Partitions failed; carries their values, the error and the retries spent.

    Picklable, since it travels back from worker processes and Dask workers (an exception whose
    ``__init__`` takes other arguments than its message is not, by default); an error that
    itself cannot be pickled travels as a :class:`RemoteError` with the same text.
    """

    def __init__(self, values: tuple[str, ...], error: BaseException, retries: int):
        self.values = tuple(values)
        self.error = error
        self.retries = retries
        self.error_text = (f"{error.type_name}: {error.message}" if isinstance(error, RemoteError)
                           else _error_text(error))
        super().__init__(f"partitions {', '.join(self.values)}: {self.error_text}")

    def __reduce__(self) -> tuple[Any, ...]:
        import pickle

        error: BaseException = self.error
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:
            error = RemoteError(type(error).__name__, str(error))
        return (PartitionError, (self.values, error, self.retries))


_worker_caches: dict[tuple[str, str], Cache] = {}


def _worker_cache(url: str, version: str) -> Cache:
    key = (url, version)
    if key not in _worker_caches:
        _worker_caches[key] = Cache(url, version=version)
    return _worker_caches[key]


class _CarriedTables:
    """A plugin, in a worker process, declaring the table specs a task carried from the runner."""

    def __init__(self, specs: list[TableSpec]):
        self.specs = specs

    @hookimpl
    def bdc_tables(self) -> list[TableSpec]:
        """The carried specs."""
        return list(self.specs)


_carried_lock = threading.Lock()


def _ensure_catalog(specs: tuple[TableSpec, ...]) -> None:
    """Declare, in this (worker) process, the carried specs its catalog does not know.

    A worker finds entry-point plugins itself, but not a plugin the runner's process registered
    in-process (a notebook, a test): without this, ``ctx.read(dependency)`` in a partition build
    would fail there with an unknown table.
    """
    if not specs:
        return
    from bdc import plugins
    from bdc.catalog import get_catalog

    with _carried_lock:
        catalog = get_catalog()
        missing = [s for s in specs if s.name not in catalog]
        by_plugin: dict[str, list[TableSpec]] = {}
        for spec in missing:
            spec = attrs.evolve(spec, aliases=tuple(a for a in spec.aliases if a not in catalog))
            by_plugin.setdefault(spec.plugin or "bdc-runner-carried", []).append(spec)
        for dist, group in by_plugin.items():
            plugins.register(_CarriedTables(group), name=f"bdc-carried-{uuid.uuid4().hex[:12]}", distribution=dist)


#: A partition write's stats -> the table's counters: files published as byte copies, and of
#: them those S3 copied itself (server-side, from an S3 source into an S3 cache).
_WRITE_COUNTERS = (("copied", "files_copied"), ("copied_server_side", "files_copied_server_side"),
                   ("unchanged", "files_unchanged"))


def _count_copies(counters: dict[str, int], stats: Mapping[str, Any]) -> None:
    """Add what a write did besides encoding (its ``stats``: files copied as they are, files
    left as they were because they already held the bytes) to a table's ``counters``."""
    for stat, counter in _WRITE_COUNTERS:
        if stats.get(stat):
            counters[counter] = counters.get(counter, 0) + stats[stat]


def run_partition(task: PartitionTask, cache: Cache | None = None) -> list[PartitionOutcome]:
    """Build a task's partitions and write them (and their side tables') straight to the backend."""
    if cache is None:
        try:
            _ensure_catalog(task.known_specs)
            cache = _worker_cache(task.cache_url, task.version)
        except Exception as exc:  # reported per partition, like any other failure
            raise PartitionError(task.values, exc, 0) from exc
    ctx = BuildContext(cache, task.spec, full=task.full, state=task.state, retry=task.retry, run_id=task.run_id)
    spec = task.spec
    started = time.time()
    try:
        if spec.build_partitions is not None:
            results = ctx.call(spec.build_partitions, ctx, list(task.values))
            results = dict(results.items() if isinstance(results, Mapping) else results)
            unknown = set(results) - set(task.values)
            if unknown:
                raise ValueError(f"build_partitions returned partitions it was not asked for: {sorted(unknown)[:5]}")
        else:
            results = {task.values[0]: ctx.call(spec.build_partition, ctx, task.values[0])}
    except Exception as exc:
        raise PartitionError(task.values, exc, ctx.retries) from exc
    outcomes = []
    write_partition = _StagedWrites(cache, task.run_id)
    for value in task.values:
        begun = time.time() if outcomes else started
        retries_before = ctx.retries
        try:
            data, _state, side = _unpack(results.get(value))
            # a one-shot stream cannot be written twice: retry only re-iterable data
            write = ctx.call if not _one_shot(data) else (lambda fn, *a, **k: fn(*a, **k))
            stats = write(write_partition, spec, value, data, _listed(task, spec, value))
            side_rows = {}
            for side_spec in task.side_specs:
                side_stats = ctx.call(write_partition, side_spec, value, side.get(side_spec.name),
                                      _listed(task, side_spec, value))
                side_rows[side_spec.name] = side_stats["rows"]
        except Exception as exc:
            outcomes.append(PartitionError((value,), exc, ctx.retries - retries_before))
            continue
        counters = dict(ctx.counters) if not outcomes else {}
        _count_copies(counters, stats)
        outcomes.append(PartitionOutcome(value, stats["rows"], stats["bytes"], ctx.retries - retries_before, begun,
                                         time.time(), side_rows, counters))
    # retries spent on the shared fetch are counted once, on the first partition
    first = outcomes[0] if outcomes else None
    if isinstance(first, PartitionOutcome):
        fetch_retries = ctx.retries - sum(o.retries for o in outcomes)  # type: ignore[union-attr]
        if fetch_retries:
            outcomes[0] = attrs.evolve(first, retries=first.retries + fetch_retries)
    return outcomes


def _check_picklable(spec: TableSpec, sides: tuple[TableSpec, ...]) -> None:
    """Fail a table whose specs cannot travel to worker processes, with what to do about it."""
    import pickle

    from bdc.errors import BdcError

    for one in (spec, *sides):
        try:
            pickle.dumps(one)
        except Exception as exc:  # PicklingError, AttributeError (local objects), TypeError...
            raise BdcError(
                f"Table {one.name!r} cannot build in worker processes: its spec does not pickle ({exc}). "
                "Define its functions at module level (not lambdas or local functions), or use the "
                "threads executor"
            ) from exc


def _listed(task: PartitionTask, spec: TableSpec, value: str) -> tuple[ObjectInfo, ...] | None:
    """The files published under partition ``value`` of ``spec`` when the run listed it (else ``None``)."""
    if task.published is None or spec.name not in task.published:
        return None
    return task.published[spec.name].get(value, ())


class _StagedWrites:
    """``cache.write_partition`` into run ``run_id``'s staging, each partition written whole: a
    write made again (a retry) first deletes what the earlier attempt staged for the partition,
    so files of an attempt that wrote another number of them are not published with the new."""

    def __init__(self, cache: Cache, run_id: str | None):
        self.cache = cache
        self.run_id = run_id
        self._written: set[tuple[str, str]] = set()

    def __call__(self, spec: TableSpec, value: str, data: Any,
                 current: tuple[ObjectInfo, ...] | None = None) -> dict[str, int]:
        """Write one partition (after dropping an earlier attempt's staged files); its stats.
        ``current``: its published files, as the run listed them."""
        if self.run_id is not None:
            if (spec.name, value) in self._written:
                self.cache.drop_staged_partition(spec, value, self.run_id)
            self._written.add((spec.name, value))
        return self.cache.write_partition(spec, value, data, run_id=self.run_id, current=current)


class Runner:
    """Executes a :class:`~bdc.runner.plan.Plan` against a cache."""

    def __init__(
        self,
        cache: Cache,
        plan: Plan,
        *,
        executor: Executor,
        executor_name: str = "threads",
        full: bool = False,
        retry: RetryPolicy | None = None,
        progress: Progress | None = None,
        run_id: str | None = None,
        table_workers: int | None = None,
        recover: bool = True,
    ):
        self.cache = cache
        self.plan = plan
        self.executor = executor
        self.full = full
        self.retry = retry or RetryPolicy()
        self.progress = progress or Progress()
        self.run_id = run_id or new_run_id()
        self.table_workers = table_workers or max(1, min(8, executor.workers))
        #: Finish interrupted syncs' promotions and drop their staging first (only holding the lock).
        self.recover = recover
        names = [s.name for s in plan.tables]
        for specs in plan.side_tables.values():
            names.extend(s.name for s in specs)
        self.report = RunReport(self.run_id, cache.url, cache.layout.version_folder,
                                executor_name, executor.workers,
                                tables=[TableReport(n) for n in names])
        self._lock = threading.Lock()

    # -- scheduling -----------------------------------------------------------------------------

    def run(self) -> RunReport:
        """Build every table of the plan; returns the report (also written to the cache)."""
        started = time.monotonic()
        self.progress.run_started(self.run_id, self.cache.url, [t.name for t in self.report.tables])
        if self.recover:
            self._tidy_staging("before the run")
        specs = {s.name: s for s in self.plan.tables}
        deps = {s.name: {self._producer(d) for d in s.depends_on} & set(specs) for s in specs.values()}
        pending = dict(specs)
        running: dict[Any, str] = {}
        finished: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=self.table_workers, thread_name_prefix="bdc-table") as pool:
            while pending or running:
                for name in list(pending):
                    needs = deps[name]
                    if any(finished.get(d) in ("failed", "skipped") for d in needs):
                        failed = sorted(d for d in needs if finished.get(d) in ("failed", "skipped"))
                        self._skip(pending.pop(name), f"dependency failed: {', '.join(failed)}")
                        finished[name] = "skipped"
                    elif all(d in finished for d in needs):
                        running[pool.submit(self._run_table, pending.pop(name))] = name
                if not running:
                    continue
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    finished[name] = self.report.table(name).status
        self._tidy_staging("after the run")
        pinning = getattr(self.executor, "pinning", None)
        if pinning is not None:
            self.report.pinning = pinning.measures()
        self.report.seconds = round(time.monotonic() - started, 3)
        self.report.finished_at = utc_now()
        self.report.status = "ok" if self.report.ok else "failed"
        self._write_report()
        self.progress.run_finished(self.report)
        return self.report

    def _tidy_staging(self, when: str) -> None:
        """Promote what an interrupted run published but did not move, drop unreferenced staging
        (:meth:`bdc.cache.Cache.recover`); a failure here is logged, never fatal: the tables are
        still consistent for readers, and the next run tries again."""
        import logging

        log = logging.getLogger(__name__)
        try:
            if when.startswith("after") and self.retry.call(self.cache.drop_staging, self.run_id):
                return  # every table of this run promoted: its staging folder was all there was
            done = self.retry.call(self.cache.recover, keep=() if when.startswith("after") else (self.run_id,))
        except Exception as exc:
            log.warning("tidying the staging folder %s failed: %s", when, _error_text(exc))
            return
        if done["promoted"]:
            log.warning("finished promoting %s, published by an interrupted sync", ", ".join(done["promoted"]))

    def _producer(self, name: str) -> str:
        spec = self.cache.spec(name)
        return spec.produced_by or spec.name

    def _skip(self, spec: TableSpec, why: str) -> None:
        for name in [spec.name, *(s.name for s in self.plan.side_tables.get(spec.name, ()))]:
            tr = self.report.table(name)
            tr.status, tr.error, tr.plugin = "skipped", why, spec.plugin
            self.progress.table_finished(tr)

    def _write_report(self) -> None:
        try:
            self.cache.backend.write_bytes(self.cache.layout.run_report_key(self.run_id), self.report.to_json().encode())
        except Exception as exc:  # the report must not turn a good run into a failure
            import logging

            logging.getLogger(__name__).warning("could not write the run report: %s", exc)

    # -- one table ----------------------------------------------------------------------------

    def _run_table(self, spec: TableSpec) -> None:
        tr = self.report.table(spec.name)
        tr.plugin = spec.plugin
        tr.started_at = time.time()
        self.progress.table_started(spec.name)
        sides = self.plan.side_tables.get(spec.name, ())
        try:
            state = {} if self.full else self.cache.read_state(spec)
            ctx = BuildContext(self.cache, spec, full=self.full, state=state, retry=self.retry, run_id=self.run_id,
                               on_retry=lambda attempt, exc: self.progress.retry(spec.name, attempt, exc))
            if spec.partitioned:
                self._build_partitioned(spec, ctx, tr, sides)
            else:
                self._build_whole(spec, ctx, tr, sides)
        except Exception as exc:
            tr.status = "failed"
            tr.error = f"{_error_text(exc)}" + (f" (plugin {spec.plugin})" if spec.plugin else "")
            for side in sides:
                st = self.report.table(side.name)
                st.status, st.error = "failed", f"producer {spec.name} failed"
        finally:
            tr.finished_at = time.time()
            tr.seconds = round(tr.finished_at - tr.started_at, 3)
            self.progress.table_finished(tr)
            for side in sides:
                st = self.report.table(side.name)
                st.seconds = tr.seconds
                self.progress.table_finished(st)

    def _build_info(self, tr: TableReport) -> dict[str, Any]:
        return {"rows": tr.rows, "partitions": tr.partitions, "files": tr.partitions or 1, "bytes": tr.bytes,
                "run_id": self.run_id,
                "built_at": utc_now(), "seconds": round(time.time() - (tr.started_at or time.time()), 3),
                "retries": tr.retries}

    def _build_whole(self, spec: TableSpec, ctx: BuildContext, tr: TableReport, sides: tuple[TableSpec, ...]) -> None:
        from bdc.errors import SpecError
        from bdc.frames import conform

        data, new_state, side = _unpack(ctx.call(spec.build, ctx))
        if data is UNCHANGED and self.cache.is_published(spec):
            tr.status, tr.retries, tr.counters = "unchanged", ctx.retries, dict(ctx.counters)
            entry = self.cache.registry_entry(spec.name) or {}
            tr.rows = int((entry.get("build") or {}).get("rows", 0))
            for s in sides:
                self.report.table(s.name).status = "unchanged"
            ctx.call(self.cache.write_state, spec, dict(new_state if new_state is not None else ctx.state))
            return
        if data is UNCHANGED:
            raise ValueError(f"{spec.name}: build returned UNCHANGED but the table was never published")
        if isinstance(data, Delta):
            table = self._merge(spec, ctx, data)
        elif isinstance(data, ParquetFiles):  # written as they are when they conform (Cache.write_table)
            if spec.finalize is not None or spec.key:
                raise SpecError(f"{spec.name}: a table with a key or a finalize step cannot be built from "
                                f"ParquetFiles (its rows are reordered or changed); return a table instead")
            table = data
        else:
            table = conform(spec, data)
            if spec.finalize is not None:
                table = conform(spec, spec.finalize(table))
            table = _sorted(spec, table)
        run = self.run_id
        stats = ctx.call(self.cache.write_table, spec, table, run_id=run)
        side_stats = {s.name: ctx.call(self.cache.write_table, s, side.get(s.name), run_id=run) for s in sides}
        tr.rows, tr.bytes, tr.retries, tr.counters = stats["rows"], stats["bytes"], ctx.retries, dict(ctx.counters)
        _count_copies(tr.counters, stats)
        tr.status = "ok"
        ctx.call(self.cache.publish, spec, self._build_info(tr), run_id=run)
        for s in sides:
            st = self.report.table(s.name)
            st.rows, st.bytes, st.status, st.plugin, st.started_at = (
                side_stats[s.name]["rows"], side_stats[s.name]["bytes"], "ok", s.plugin, tr.started_at)
            ctx.call(self.cache.publish, s, self._build_info(st), run_id=run)
        for s in (spec, *sides):
            ctx.call(self.cache.promote, s)
        ctx.call(self.cache.write_state, spec, dict(new_state if new_state is not None else ctx.state))
        tr.retries = ctx.retries  # with those of publishing, promoting and saving the state

    def _merge(self, spec: TableSpec, ctx: BuildContext, delta: Delta) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        from bdc.errors import SpecError
        from bdc.frames import conform

        if not spec.key:
            raise SpecError(f"Table {spec.name!r} returned a Delta but declares no key")
        upserts = conform(spec, delta.upserts)
        previous = ctx.previous()
        if previous is None:
            merged = upserts
        else:
            previous = conform(spec, previous)
            if len(spec.key) == 1:
                key = spec.key[0]
                values = upserts.column(key).to_pylist() + list(delta.deletes)
                remove = pc.is_in(previous.column(key), value_set=pa.array(values, type=previous.schema.field(key).type))
            else:
                wanted = {tuple(k) for k in delta.deletes}
                wanted |= set(zip(*(upserts.column(k).to_pylist() for k in spec.key)))
                existing = zip(*(previous.column(k).to_pylist() for k in spec.key))
                remove = pa.array([tuple(k) in wanted for k in existing], type=pa.bool_())
            kept = previous.filter(pc.invert(pc.fill_null(remove, False)))
            merged = pa.concat_tables([kept, upserts])
        if spec.finalize is not None:
            merged = conform(spec, spec.finalize(merged))
        return _sorted(spec, merged)

    def _known_specs(self, spec: TableSpec, sides: tuple[TableSpec, ...]) -> tuple[TableSpec, ...]:
        """The specs a partition build may read: its own, its side tables' and its dependencies' (transitively)."""
        from bdc.catalog import get_catalog

        catalog = get_catalog()
        found: dict[str, TableSpec] = {}
        stack = [spec, *sides]
        while stack:
            current = stack.pop()
            if current.name in found:
                continue
            found[current.name] = current
            for name in current.depends_on:
                dep = catalog.get(name)
                if dep is not None:
                    stack.append(dep)
                    producer = catalog.get(dep.produced_by) if dep.produced_by else None
                    if producer is not None:
                        stack.append(producer)
        return tuple(found.values())

    def _build_partitioned(self, spec: TableSpec, ctx: BuildContext, tr: TableReport,
                           sides: tuple[TableSpec, ...]) -> None:
        listing = ctx.call(spec.partitions, ctx)
        if isinstance(listing, Mapping):
            # as the state will store them: a tuple comes back as a list, a date as text
            fingerprints = {check_partition_value(str(v) if isinstance(v, int) else v, spec.partition_key or ""):
                            _as_json(fp) for v, fp in listing.items()}
        else:
            fingerprints = {check_partition_value(str(v) if isinstance(v, int) else v, spec.partition_key or ""): None
                            for v in listing}
        objects = self.cache.partition_files(spec)
        existing = set(objects)
        old = ctx.state.get("partitions", {}) if (spec.incremental and not self.full) else {}
        old_rows: dict[str, int] = ctx.state.get("rows", {}) if (spec.incremental and not self.full) else {}
        old_files: dict[str, Any] = ctx.state.get("files", {}) if (spec.incremental and not self.full) else {}
        todo = [v for v, fp in fingerprints.items()
                if fp is None or v not in existing or old.get(v) != fp or _tampered(objects[v], old_files.get(v))]
        vanished = sorted(existing - set(fingerprints))
        tr.partitions = len(fingerprints)
        tr.counters.update(ctx.counters)
        self.progress.partitions_planned(spec.name, len(todo))
        size = spec.batch_size if spec.build_partitions is not None else 1
        known: tuple[TableSpec, ...] = ()
        if self.executor.in_process:
            fn = functools.partial(run_partition, cache=self.cache)
        else:
            from bdc.errors import BdcError

            if self.cache.backend.scheme == "memory":
                raise BdcError("The processes and dask executors need a shared cache (file:// or s3://), not memory://")
            if getattr(self.executor, "standard_pickle", False):
                _check_picklable(spec, sides)
            fn = run_partition
            known = self._known_specs(spec, sides)
        listed = {spec.name: objects, **{s.name: self.cache.partition_files(s) for s in sides}}

        def task(values: tuple[str, ...]) -> PartitionTask:
            published = {name: {v: tuple(files[v]) for v in values if v in files} for name, files in listed.items()}
            return PartitionTask(spec, values, self.cache.url, self.cache.layout.version_folder, self.full, {},
                                 self.retry, self.run_id, sides, known, published)

        tasks = [task(tuple(todo[i:i + size])) for i in range(0, len(todo), size)]
        rows = {v: n for v, n in old_rows.items() if v in fingerprints and v not in todo}
        new_fp = {v: fp for v, fp in old.items() if v in fingerprints and v not in todo}
        # what each kept partition's file looks like now (size, and the ETag once a listing gave one)
        files = {v: _files_record(objects[v], self.cache.backend.remote) for v in new_fp if v in objects}
        old_side: dict[str, dict[str, int]] = ctx.state.get("side_rows", {}) if rows else {}
        side_rows = {s.name: {v: n for v, n in old_side.get(s.name, {}).items() if v in rows} for s in sides}
        errors = []
        for _index, result in self.executor.map_unordered(fn, tasks):
            for outcome in (result if isinstance(result, list) else [result]):
                if isinstance(outcome, BaseException):
                    text = outcome.error_text if isinstance(outcome, PartitionError) else _error_text(outcome)
                    values = outcome.values if isinstance(outcome, PartitionError) else ("?",)
                    tr.retries += getattr(outcome, "retries", 0)
                    tr.partitions_failed += len(values)
                    errors.extend(f"{spec.partition_key}={v}: {text}" for v in values)
                    continue
                rows[outcome.value] = outcome.rows
                new_fp[outcome.value] = fingerprints[outcome.value]
                files[outcome.value] = {"size": outcome.bytes}
                tr.partitions_built += 1
                tr.bytes += outcome.bytes
                tr.retries += outcome.retries
                for k, v in outcome.counters.items():
                    tr.counters[k] = tr.counters.get(k, 0) + v
                for name, n in outcome.side_rows.items():
                    side_rows[name][outcome.value] = n
                tr.spans.append((outcome.value, outcome.started, outcome.finished))
                self.progress.partition_done(spec.name, outcome.rows)
        tr.rows = sum(rows.values())
        tr.retries += ctx.retries
        counted = ctx.retries
        state = {**ctx.state, "partitions": {v: fp for v, fp in new_fp.items()}, "rows": rows,
                 "side_rows": side_rows, "files": files}
        if errors:
            # nothing of this run is published: readers keep the previous version, whose state stays
            tr.status = "failed"
            shown = "; ".join(errors[:3]) + (f"; … {len(errors) - 3} more" if len(errors) > 3 else "")
            tr.error = f"{len(errors)} of {len(todo)} partitions failed: {shown}"
            for side in sides:
                st = self.report.table(side.name)
                st.status, st.error, st.plugin = "failed", f"producer {spec.name} had failed partitions", side.plugin
            return
        tr.status = "ok" if (todo or vanished or not self.cache.is_published(spec)) else "unchanged"
        tr.partitions_deleted = len(vanished) if tr.status == "ok" else 0
        run = self.run_id
        if tr.status == "ok":  # one registry write switches readers to the new set (staged files included)
            ctx.call(self.cache.publish, spec, self._build_info(tr), leaving=vanished, run_id=run)
        for side in sides:
            st = self.report.table(side.name)
            st.status, st.plugin, st.partitions, st.started_at = tr.status, side.plugin, tr.partitions, tr.started_at
            st.partitions_built, st.partitions_deleted = tr.partitions_built, tr.partitions_deleted
            st.rows = sum(side_rows[side.name].values())
            if tr.status == "ok":
                ctx.call(self.cache.publish, side, self._build_info(st), leaving=vanished, run_id=run)
        if tr.status == "ok":
            # then the staged files move to their places and vanished partitions go
            for s in (spec, *sides):
                ctx.call(self.cache.promote, s)
        ctx.call(self.cache.write_state, spec, state)
        tr.retries += ctx.retries - counted  # those of publishing, promoting and saving the state


def _one_shot(data: Any) -> bool:
    """Whether ``data`` is an iterator (a stream that cannot be written twice). Frames and tables
    first: ``hasattr(frame, "__next__")`` makes pandas hash its column names (~25 µs a partition)."""
    if data is None or isinstance(data, (list, tuple, dict, str, bytes)):
        return False
    module = type(data).__module__
    if module.startswith(("pandas", "pyarrow")):
        return type(data).__name__ == "RecordBatchReader"
    return hasattr(data, "__next__")


def _files_record(infos: list[Any], remote: bool) -> dict[str, Any]:
    """What the state remembers of a partition's files: their total size, and on a remote store
    their ETags (a local store's ETag is a modification time: the states of identical builds
    would differ)."""
    record: dict[str, Any] = {"size": sum(int(i.size) for i in infos)}
    if remote and all(i.etag for i in infos):
        record["etag"] = "|".join(i.etag for i in infos)
    return record


def _tampered(infos: list[Any], recorded: Any) -> bool:
    """Whether a partition's files differ from what the last build recorded of them (truncated,
    overwritten, replaced by another object, one missing): the total size differs, or both sides
    know ETags and they differ. Nothing recorded (a state from before files were recorded): not
    tampered."""
    if not isinstance(recorded, Mapping):
        return False
    now = _files_record(infos, True)
    size = recorded.get("size")
    if isinstance(size, int) and size != now["size"]:
        return True
    etag = recorded.get("etag")
    return bool(etag and now.get("etag") and etag != now["etag"])


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (fingerprints are compared with the saved state)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    import json

    return json.loads(json.dumps(value, default=str))


def _sorted(spec: TableSpec, table: Any) -> Any:
    """Order rows by the key, then by the other plain columns: the same data gives the same file."""
    import pyarrow as pa

    if not spec.key or table.num_rows == 0:
        return table
    plain = [f.name for f in table.schema if f.name not in spec.key
             and not (pa.types.is_nested(f.type) or pa.types.is_dictionary(f.type))]
    return table.sort_by([(k, "ascending") for k in (*spec.key, *plain)])
