"""The same sync through the threads, processes and Dask (LocalCluster, 2 workers) executors.

Partition builds run in other processes for ``processes`` and ``dask``, write their partitions
straight to the (file) cache, read their dependency there, retry their own transient errors and
send failures back; the published bytes, registry entries (less timing) and incremental state
must be the same whichever executor built them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import syncplugin
from bdc.cache import Cache
from bdc.errors import BdcError
from bdc.runner import RetryPolicy, RunReport, sync
from bdc.runner.executors import DaskExecutor, ThreadExecutor

FAST_RETRY = RetryPolicy(attempts=4, base=0.005, cap=0.02)
TABLES = ["sync_subjects", "platform_alpha", "platform_beta", "sync_sessions", "sync_summary"]
TIMING = {"seconds", "built_at", "run_id"}
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def dask_executor() -> Iterator[DaskExecutor]:
    """One Dask LocalCluster (2 worker processes) for the module: it takes seconds to start."""
    pytest.importorskip("distributed")
    with pytest.MonkeyPatch.context() as mp:  # what the worker processes inherit
        mp.setenv("BDC_LOAD_PLUGINS", "")
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
        executor = DaskExecutor(workers=2)
        executor.client  # noqa: B018 - starts the cluster now, with this environment
    try:
        yield executor
    finally:
        executor.close()


@pytest.fixture
def source(tmp_path: Path) -> syncplugin.Source:
    """Eight subjects; two partitions and one whole table fail transiently before they succeed."""
    src = syncplugin.make_source(tmp_path / "source", syncplugin.default_subjects(8))
    syncplugin.set_faults(src.root, transient={"sync_sessions:0007": 2, "sync_sessions:0035": 1, "sync_summary": 1})
    return src


@pytest.fixture
def plugin(source: syncplugin.Source, bdc_plugin: Callable[..., str]) -> str:
    """The synthetic tables, registered in-process only (workers get the specs from their tasks)."""
    return bdc_plugin(syncplugin.SyncPlugin(source), name="syncplugin-exec", distribution="bdc-test-sync")


def snapshot(cache: Cache) -> dict[str, Any]:
    """Everything a sync published, comparable across caches: object bytes, rows, registry, state."""
    root = cache.url
    out: dict[str, Any] = {"objects": {}, "rows": {}, "registry": {}, "state": {}}
    for info in cache.backend.list(f"{cache.layout.version_folder}/"):
        if "/_runs/" not in info.key and "/_state/" not in info.key and not info.key.endswith("cache_registry.json"):
            out["objects"][info.key] = cache.backend.read_bytes(info.key)
    for name in TABLES:
        out["rows"][name] = sorted(cache.get(name, arrow=True).to_pylist(), key=lambda r: json.dumps(r, default=str))
        out["state"][name] = cache.read_state(cache.spec(name))
    for entry in cache.registry()["tables"]:
        entry = json.loads(json.dumps(entry).replace(root.removeprefix("file://"), "<root>"))
        entry["build"] = {k: v for k, v in entry["build"].items() if k not in TIMING}
        out["registry"][entry["name"]] = entry
    return out


def build_pids(source: syncplugin.Source, table: str) -> set[int]:
    """The processes that ran a table's build calls."""
    return {s["pid"] for s in syncplugin.spans(source.root, table)}


@pytest.mark.usefixtures("plugin")
def test_threads_processes_and_dask_publish_the_same_bytes(
        tmp_path: Path, source: syncplugin.Source, dask_executor: DaskExecutor) -> None:
    snapshots, reports = {}, {}
    executors: dict[str, Any] = {"threads": "threads", "processes": "processes", "dask": dask_executor,
                                 "threads-on-one-core": ThreadExecutor(workers=2, pinning="on")}
    for name, executor in executors.items():
        cache = Cache((tmp_path / f"cache-{name}").as_uri())
        syncplugin.set_faults(source.root, transient={"sync_sessions:0007": 2, "sync_sessions:0035": 1,
                                                      "sync_summary": 1})
        syncplugin.clear_spans(source.root)
        report = sync(cache, executor=executor, workers=2, retry=FAST_RETRY)
        assert isinstance(report, RunReport)
        assert report.ok, report.summary()
        pids = build_pids(source, "sync_sessions")
        if name.startswith("threads"):
            assert pids == {os.getpid()}
        else:  # built, and written, by the worker processes
            assert os.getpid() not in pids and 1 <= len(pids) <= 2
        assert build_pids(source, "sync_subjects") == {os.getpid()}  # whole tables: the runner's process
        reports[name], snapshots[name] = report, snapshot(cache)

    assert reports["dask"].executor == "DaskExecutor" and reports["processes"].executor == "processes"
    executors["threads-on-one-core"].close()
    for name in ("processes", "dask", "threads-on-one-core"):
        for table in TABLES:
            mine, theirs = reports[name].table(table), reports["threads"].table(table)
            assert (mine.status, mine.rows, mine.partitions, mine.partitions_built, mine.bytes, mine.retries) == (
                theirs.status, theirs.rows, theirs.partitions, theirs.partitions_built, theirs.bytes, theirs.retries)
        assert snapshots[name]["objects"].keys() == snapshots["threads"]["objects"].keys()
        assert snapshots[name] == snapshots["threads"], name
    assert reports["dask"].table("sync_sessions").retries == 3
    assert reports["dask"].table("sync_summary").retries == 1
    assert len([k for k in snapshots["dask"]["objects"] if k.endswith("/data.pqt")]) == 8


@pytest.mark.usefixtures("plugin")
def test_worker_failures_and_incremental_runs_through_every_executor(
        tmp_path: Path, source: syncplugin.Source, dask_executor: DaskExecutor) -> None:
    syncplugin.set_faults(source.root)
    executors: dict[str, Any] = {"threads": "threads", "processes": "processes", "dask": dask_executor}
    caches = {name: Cache((tmp_path / f"cache-{name}").as_uri()) for name in executors}
    for name, executor in executors.items():
        assert sync(caches[name], executor=executor, workers=2, retry=FAST_RETRY).ok  # type: ignore[union-attr]

    subjects = source.subjects()
    for sid in ("0014", "0021", "0028"):
        subjects[sid]["revision"] += 1
    del subjects["0056"]
    syncplugin.write_subjects(source.root, subjects)
    failed = {}
    for name, executor in executors.items():
        syncplugin.set_faults(source.root, permanent=["sync_sessions:0021"])  # attempts counted from 0
        report = sync(caches[name], executor=executor, workers=2, retry=FAST_RETRY)
        assert isinstance(report, RunReport)
        sess = report.table("sync_sessions")
        assert (sess.status, sess.partitions_built, sess.partitions_failed, sess.retries) == ("failed", 2, 1, 0), name
        assert sess.error == ("1 of 3 partitions failed: subject_id=0021: PermanentSourceError: "
                              "bad record in sync_sessions:0021 (attempt 1)")
        assert report.table("sync_summary").status == "skipped"
        failed[name] = snapshot(caches[name])
        assert "0056" in caches[name].partition_objects(caches[name].spec("sync_sessions"))
    assert failed["processes"] == failed["threads"] and failed["dask"] == failed["threads"]

    syncplugin.set_faults(source.root)
    fixed = {}
    for name, executor in executors.items():
        report = sync(caches[name], executor=executor, workers=2, retry=FAST_RETRY)
        assert isinstance(report, RunReport) and report.ok
        sess = report.table("sync_sessions")
        # nothing of the failed run was published: the three changed partitions are built again
        assert (sess.partitions_built, sess.partitions_deleted) == (3, 1), name
        fixed[name] = snapshot(caches[name])
    assert fixed["processes"] == fixed["threads"] and fixed["dask"] == fixed["threads"]
    assert sorted(fixed["threads"]["state"]["sync_sessions"]["partitions"]) == sorted(subjects)


@pytest.mark.usefixtures("plugin")
def test_out_of_process_executors_need_a_shared_cache(bdc_cache: Cache) -> None:
    report = sync(bdc_cache, executor="processes", workers=1, only=["sync_sessions"], retry=FAST_RETRY)
    assert isinstance(report, RunReport)
    assert report.table("sync_sessions").status == "failed"
    assert "need a shared cache (file:// or s3://), not memory://" in (report.table("sync_sessions").error or "")
    with pytest.raises(BdcError, match="Unknown executor 'nope'"):
        sync(bdc_cache, executor="nope")


@pytest.mark.usefixtures("plugin")
@pytest.mark.parametrize("workers", [0, -2, 1.5, True, "4"])
def test_a_worker_count_below_one_or_not_whole_is_refused_before_anything_runs(bdc_cache: Cache, workers: object) -> None:
    with pytest.raises(BdcError, match="workers must be a whole number of at least 1"):
        sync(bdc_cache, workers=workers, only=["sync_sessions"])  # type: ignore[arg-type]
    assert not bdc_cache.is_published(bdc_cache.spec("sync_sessions"))


def test_bdc_sync_refuses_workers_zero_with_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from bdc.runner.cli import main

    assert main(["--cache", "memory://", "--workers", "0", "--quiet"]) == 2
    assert "workers must be a whole number of at least 1" in capsys.readouterr().err


def _timed_item(item: int) -> tuple[int, int, int, float, float]:
    """A worker-process item: (item, pid, thread, start, end) after 50 ms; item 13 fails."""
    import threading
    import time

    started = time.time()
    time.sleep(0.05)
    if item == 13:
        raise ValueError(f"item {item} is unlucky")
    return item, os.getpid(), threading.get_ident(), started, time.time()


def _dies_on_seven(item: int) -> int:
    """A worker-process item that kills its process for item 7."""
    import time

    if item == 7:
        os._exit(3)
    time.sleep(0.01)
    return item


def test_process_executor_runs_chunks_on_each_processs_threads() -> None:
    from bdc.runner.executors import ProcessExecutor

    with ProcessExecutor(workers=2, threads=4) as executor:
        assert executor.chunk_size(40) == 5  # every process gets several chunks
        assert executor.chunk_size(10_000) == 32  # at most 8 rounds of a process's threads
        results = dict(executor.map_unordered(_timed_item, range(40)))
    assert sorted(results) == list(range(40))
    assert isinstance(results[13], ValueError) and str(results[13]) == "item 13 is unlucky"
    done = [r for r in results.values() if not isinstance(r, BaseException)]
    assert all(results[item][0] == item for item in results if item != 13)  # each result at its position
    pids = {pid for _, pid, _, _, _ in done}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    # items of one process overlap in time: its threads ran them at once
    for pid in pids:
        spans = sorted((start, end) for _, p, _, start, end in done if p == pid)
        assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), f"process {pid} ran its items one by one"
        assert 1 < len({t for _, p, t, _, _ in done if p == pid}) <= 4


def test_process_executor_reports_a_dead_worker_for_every_item_it_lost() -> None:
    from concurrent.futures.process import BrokenProcessPool

    from bdc.runner.executors import ProcessExecutor

    with ProcessExecutor(workers=2, threads=2) as executor:
        results = dict(executor.map_unordered(_dies_on_seven, range(24)))
        # the next map (the next table of the run) gets a new pool
        again = dict(executor.map_unordered(_dies_on_seven, range(8, 16)))
    assert sorted(results) == list(range(24))  # every item answered, none hangs
    assert isinstance(results[7], BrokenProcessPool)
    assert all(results[i] == i for i in results if not isinstance(results[i], BaseException))
    assert again == {i: i + 8 for i in range(8)}


def test_a_table_whose_functions_do_not_pickle_fails_with_what_to_do(
        tmp_path: Path, bdc_plugin: Callable[..., str]) -> None:
    import pandas as pd

    from bdc.spec import TableSpec

    spec = TableSpec("lambda_parts", "built by lambdas (a notebook's way)", [("sid", "string"), ("n", "int64")],
                     partition_key="sid", partitions=lambda ctx: ["a", "b"],
                     build_partition=lambda ctx, v: pd.DataFrame({"sid": [v], "n": [1]}))
    bdc_plugin([spec], name="lambda-tables")
    cache = Cache((tmp_path / "cache").as_uri())
    report = sync(cache, executor="processes", workers=1, only=["lambda_parts"], retry=FAST_RETRY)
    assert isinstance(report, RunReport)
    table = report.table("lambda_parts")
    assert table.status == "failed" and table.partitions_built == 0
    assert "Table 'lambda_parts' cannot build in worker processes: its spec does not pickle" in (table.error or "")
    assert "or use the threads executor" in (table.error or "")
    # the same table builds with threads
    assert sync(cache, executor="threads", only=["lambda_parts"], retry=FAST_RETRY).ok  # type: ignore[union-attr]
    assert sorted(cache.get("lambda_parts")["sid"]) == ["a", "b"]
