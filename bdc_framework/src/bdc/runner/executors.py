"""Where partition builds run: threads (default), processes, or a Dask cluster.

Executors are contributed through the ``bdc_executors`` hook like backends; this module is the
built-in plugin. Every executor offers :meth:`Executor.map_unordered`; work items carry the
table spec and the cache URL, so workers in other processes open the backend themselves and
write their partitions straight to it.
"""

from __future__ import annotations

import abc
import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bdc.hookspecs import hookimpl
from bdc.spec import ExecutorSpec

__all__ = ["Executor", "ThreadExecutor", "ProcessExecutor", "DaskExecutor", "default_workers", "run_chunk",
           "bdc_executors"]


def default_workers() -> int:
    """Partition builds are mostly I/O-bound: several workers per core, at most 32."""
    return min(32, (os.cpu_count() or 1) * 8)


class Executor(abc.ABC):
    """Runs a function over work items, yielding ``(index, result or exception)`` as they finish."""

    #: Whether work runs in the runner's own process (objects are shared, not pickled).
    in_process: bool = False
    #: Whether work items travel with the standard ``pickle`` (so lambdas and local functions in a
    #: table's spec cannot): the runner then fails such a table at once, saying what to do.
    standard_pickle: bool = False

    def __init__(self, workers: int | None = None, **options: Any):
        self.workers = workers or default_workers()
        self.options = options

    @abc.abstractmethod
    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """Run ``fn(item)`` for every item; yield ``(position, result)``, exceptions as results."""

    def close(self) -> None:
        """Release the workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _FuturesExecutor(Executor):
    _pool: Any = None

    def _make_pool(self) -> Any:
        raise NotImplementedError

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """Submit everything, yield as completed."""
        from concurrent.futures import as_completed

        if self._pool is None:
            self._pool = self._make_pool()
        futures = {self._pool.submit(fn, item): i for i, item in enumerate(items)}
        try:
            for future in as_completed(futures):
                exc = future.exception()
                yield futures[future], (exc if exc is not None else future.result())
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        """Shut the pool down."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class ThreadExecutor(_FuturesExecutor):
    """A thread pool in the runner's process (the default).

    A map runs its items in pool threads without a future per item: up to ``workers`` pool
    threads take the next item as they finish one and queue its result, which the caller collects
    every few milliseconds (a batch at a time) instead of being woken for every item. For
    thousands of small partitions, the per-item hand-offs of a future (its locks, the caller's
    wake-up, each taking the GIL) are a measurable share of the runner's CPU.

    ``pinning`` (``auto``, ``on``, ``off``): whether the pool's threads run on one core while
    that is measurably faster, see :mod:`bdc.runner.pinning`.
    """

    in_process = True
    #: How often (seconds) the caller of :meth:`map_unordered` collects finished items, at most
    #: (the last item of a map is handed over at once).
    collect_every = 0.01

    def __init__(self, workers: int | None = None, pinning: str = "auto", **options: Any):
        from bdc.runner.pinning import CorePinning

        super().__init__(workers, **options)
        self._maps: set[_ThreadMap] = set()
        #: Whether the pool's threads run on one core (see :mod:`bdc.runner.pinning`).
        self.pinning = CorePinning(pinning, self.workers)

    def _make_pool(self) -> Any:
        from concurrent.futures import ThreadPoolExecutor

        return ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="bdc-build")

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """Run ``fn`` over the items in the pool's threads; yield ``(position, result)`` in batches."""
        items = list(items)
        if not items:
            return
        if self._pool is None:
            self._pool = self._make_pool()
        run = _ThreadMap(fn, items, self.pinning)
        self._maps.add(run)
        try:
            for _ in range(min(self.workers, len(items))):
                self._pool.submit(run.work)
            yield from run.results(self.collect_every)
        finally:
            run.stop()
            self._maps.discard(run)
            self.pinning.finish(idle=not self._maps)

    def close(self) -> None:
        """Stop the maps in progress from starting items, then shut the pool down."""
        for run in list(self._maps):
            run.stop()
        super().close()


class _ThreadMap:
    """One :meth:`ThreadExecutor.map_unordered`: items taken by pool threads, results queued."""

    def __init__(self, fn: Callable[[Any], Any], items: list[Any], pinning: Any):
        import collections
        import itertools
        import threading

        self.fn = fn
        self.pinning = pinning
        self.total = len(items)
        self._next = iter(enumerate(items)).__next__
        self._take = threading.Lock()
        self._done = collections.deque()  # (position, result); append and popleft are thread-safe
        self._count = itertools.count(1).__next__  # finished items (atomic under the GIL)
        self._finished = threading.Event()  # every item done, or the map stopped
        self._stopped = False

    def work(self) -> None:
        """In a pool thread: run items until none are left."""
        fn, done, pin = self.fn, self._done, self.pinning
        try:
            while not self._stopped:
                with self._take:
                    try:
                        position, item = self._next()
                    except StopIteration:
                        return
                pin.before_item()
                try:
                    result = fn(item)
                except BaseException as exc:  # as a future would hold it: the caller reports it
                    result = exc
                done.append((position, result))
                pin.after_item()
                if self._count() == self.total:
                    self._finished.set()
        finally:
            pin.leave()

    def results(self, every: float) -> Iterator[tuple[int, Any]]:
        """In the caller: the results, as they come, collected every ``every`` seconds at most."""
        left, done = self.total, self._done
        while left:
            while done:
                left -= 1
                yield done.popleft()
            if left:
                self._finished.wait(every)
                if self._stopped and not done:  # the executor was closed under this map
                    from concurrent.futures import CancelledError

                    raise CancelledError(f"the executor was closed with {left} of {self.total} items not done")

    def stop(self) -> None:
        """Start no more items (those running finish)."""
        self._stopped = True
        self._finished.set()


class ProcessExecutor(_FuturesExecutor):
    """A pool of worker processes (spawned, so no thread state is forked), each running several
    items at once in its own threads.

    ``workers`` processes (default: one per core) with ``threads`` threads each (default: the
    threads executor's :func:`default_workers` shared among them). Each process has its own GIL,
    so builds whose Python work (making frames, converting them) would queue for one interpreter's
    GIL spread over the cores, while its threads still overlap the builds' waiting (network, disk).

    Items travel in chunks, a chunk per call into a process (a call per item would cost a
    round trip through the pool's queues each): each chunk's items run on that process's threads,
    and its results come back together when the last one is done.
    """

    standard_pickle = True
    #: A chunk holds up to this many rounds of a process's threads (fewer when there are few items,
    #: so that every process gets several chunks): more rounds, fewer hand-offs; fewer rounds,
    #: less time with idle threads at a chunk's end and more frequent progress.
    rounds_per_chunk = 8

    def __init__(self, workers: int | None = None, threads: int | None = None, **options: Any):
        super().__init__(workers or (os.cpu_count() or 1), **options)
        self.threads = threads or max(1, default_workers() // self.workers)

    def _make_pool(self) -> Any:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))

    def chunk_size(self, count: int) -> int:
        """Items per chunk for a map of ``count`` items."""
        return max(1, min(self.threads * self.rounds_per_chunk, -(-count // (self.workers * 4))))

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """Submit the items in chunks; yield ``(position, result)`` as each chunk comes back."""
        from concurrent.futures import as_completed

        items = list(items)
        if not items:
            return
        size = self.chunk_size(len(items))
        futures = self._submit_chunks(fn, items, size)
        try:
            for future in as_completed(futures):
                start = futures[future]
                exc = future.exception()
                if exc is not None:  # the chunk as a whole failed (a worker died, a result did not pickle)
                    for k in range(min(size, len(items) - start)):
                        yield start + k, exc
                    continue
                for k, result in enumerate(future.result()):
                    yield start + k, result
        finally:
            for future in futures:
                future.cancel()

    def _submit_chunks(self, fn: Callable[[Any], Any], items: list[Any], size: int) -> dict[Any, int]:
        """Submit the chunks (to a new pool if a worker of the old one died: that one takes no more)."""
        from concurrent.futures.process import BrokenProcessPool

        def submit() -> dict[Any, int]:
            return {self._pool.submit(run_chunk, fn, items[i:i + size], self.threads): i
                    for i in range(0, len(items), size)}

        if self._pool is None:
            self._pool = self._make_pool()
        try:
            return submit()
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._make_pool()
            return submit()


#: In a worker process of :class:`ProcessExecutor`: its thread pool (made by the first chunk).
_chunk_pool: Any = None
_chunk_pool_lock = threading.Lock()


def run_chunk(fn: Callable[[Any], Any], items: list[Any], threads: int) -> list[Any]:
    """In a worker process: ``fn`` over a chunk's items on the process's ``threads`` threads; the
    results in the items' order, an exception as the item's result."""
    global _chunk_pool
    with _chunk_pool_lock:
        if _chunk_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _chunk_pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bdc-build")
    if len(items) == 1:
        return [_call(fn, items[0])]
    return list(_chunk_pool.map(functools.partial(_call, fn), items))


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    try:
        return fn(item)
    except Exception as exc:  # as a future would hold it: the caller reports it
        return exc


class DaskExecutor(Executor):
    """Dask distributed: an existing scheduler (``scheduler="tcp://host:8786"``) or a local cluster."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None, **options: Any):
        super().__init__(workers or (os.cpu_count() or 1), **options)
        self.scheduler = scheduler
        self._client: Any = None
        self._cluster: Any = None
        # fail at once, before any table runs, rather than in the first table's build
        self._distributed = _import_distributed()

    @property
    def client(self) -> Any:
        """The distributed client (a LocalCluster is started when no scheduler is given)."""
        if self._client is None:
            Client, LocalCluster = self._distributed.Client, self._distributed.LocalCluster  # noqa: N806
            if self.scheduler:
                self._client = Client(self.scheduler)
            else:
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                             dashboard_address=None)
                self._client = Client(self._cluster)
        return self._client

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """Submit with ``client.map``; yield as completed."""
        as_completed = self._distributed.as_completed
        items = list(items)
        if not items:
            return
        futures = self.client.map(fn, items, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for future in as_completed(futures):
            try:
                result: Any = future.result()
            except Exception as exc:
                result = exc
            yield index[future.key], result

    def close(self) -> None:
        """Close the client (and the local cluster we started)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def _import_distributed() -> Any:
    """The ``distributed`` module, or a :class:`bdc.BdcError` saying what to install.

    Any failure to import it counts (a missing dependency of ``distributed`` itself, or a broken
    install): the dask executor cannot run without it, and no table is to blame.
    """
    try:
        import distributed
    except Exception as exc:
        from bdc.errors import BdcError

        raise BdcError(f"The dask executor needs: pip install 'bdc-framework[dask]' "
                       f"(importing distributed failed: {type(exc).__name__}: {exc})") from exc
    return distributed


@hookimpl
def bdc_executors() -> list[ExecutorSpec]:
    """threads (default), processes, dask."""
    return [
        ExecutorSpec("threads", ThreadExecutor, "a thread pool (I/O-bound builds)"),
        ExecutorSpec("processes", ProcessExecutor, "worker processes (CPU-bound builds)"),
        ExecutorSpec("dask", DaskExecutor, "Dask distributed (a cluster, or a local one)"),
    ]
