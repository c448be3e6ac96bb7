"""Where partition builds run: threads (default), processes, or a Dask cluster.

Executors are contributed through the ``bdc_executors`` hook like backends; this module is the
built-in plugin. Every executor offers :meth:`Executor.map_unordered`; work items carry the
table spec and the cache URL, so workers in other processes open the backend themselves and
write their partitions straight to it.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bdc.hookspecs import hookimpl
from bdc.spec import ExecutorSpec

__all__ = ["Executor", "ThreadExecutor", "ProcessExecutor", "DaskExecutor", "default_workers", "bdc_executors"]


def default_workers() -> int:
    """Partition builds are mostly I/O-bound: several workers per core, at most 32."""
    return min(32, (os.cpu_count() or 1) * 8)


class Executor(abc.ABC):
    """Runs a function over work items, yielding ``(index, result or exception)`` as they finish."""

    #: Whether work runs in the runner's own process (objects are shared, not pickled).
    in_process: bool = False

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
    """A thread pool in the runner's process (the default)."""

    in_process = True

    def _make_pool(self) -> Any:
        from concurrent.futures import ThreadPoolExecutor

        return ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="bdc-build")


class ProcessExecutor(_FuturesExecutor):
    """A pool of worker processes (spawned, so no thread state is forked)."""

    def __init__(self, workers: int | None = None, **options: Any):
        super().__init__(workers or (os.cpu_count() or 1), **options)

    def _make_pool(self) -> Any:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))


class DaskExecutor(Executor):
    """Dask distributed: an existing scheduler (``scheduler="tcp://host:8786"``) or a local cluster."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None, **options: Any):
        super().__init__(workers or (os.cpu_count() or 1), **options)
        self.scheduler = scheduler
        self._client: Any = None
        self._cluster: Any = None

    @property
    def client(self) -> Any:
        """The distributed client (a LocalCluster is started when no scheduler is given)."""
        if self._client is None:
            try:
                from distributed import Client, LocalCluster
            except ImportError as exc:  # pragma: no cover - depends on the install
                from bdc.errors import BdcError

                raise BdcError("The dask executor needs: pip install 'bdc-framework[dask]'") from exc
            if self.scheduler:
                self._client = Client(self.scheduler)
            else:
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                             dashboard_address=None)
                self._client = Client(self._cluster)
        return self._client

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[int, Any]]:
        """Submit with ``client.map``; yield as completed."""
        from distributed import as_completed

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


@hookimpl
def bdc_executors() -> list[ExecutorSpec]:
    """threads (default), processes, dask."""
    return [
        ExecutorSpec("threads", ThreadExecutor, "a thread pool (I/O-bound builds)"),
        ExecutorSpec("processes", ProcessExecutor, "worker processes (CPU-bound builds)"),
        ExecutorSpec("dask", DaskExecutor, "Dask distributed (a cluster, or a local one)"),
    ]
