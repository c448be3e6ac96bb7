"""What a table's build function receives and may return.

A build gets a :class:`BuildContext`: the target cache (to read the tables it depends on, already
published in this run), the table's saved incremental state, retries with the run's policy and
counters for the run report. It returns rows, or for incremental tables a :class:`Delta`, or a
:class:`BuildResult` to also save state or feed side tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

__all__ = ["BuildContext", "BuildResult", "Delta", "ParquetFiles", "UNCHANGED"]


class _Unchanged:
    """Returned by a whole-table build whose source did not change: nothing is written or republished."""

    def __repr__(self) -> str:
        return "bdc.UNCHANGED"


#: Return this from ``build(ctx)`` when the published table is still current.
UNCHANGED = _Unchanged()


@attrs.frozen
class Delta:
    """An incremental result: rows to insert or replace (matched on the spec's ``key``) and keys to delete.

    ``deletes`` holds key values (tuples when the key has several columns). The runner merges the
    delta into the previously published table, applies the spec's ``finalize`` and publishes.
    """

    upserts: Any = None
    deletes: Sequence[Any] = ()


@attrs.frozen
class BuildResult:
    """Rows plus extras: ``state`` to save for the next incremental run, ``side`` tables' rows by name."""

    data: Any = None
    state: Mapping[str, Any] | None = None
    side: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ParquetFiles:
    """A partition's data as parquet files that already exist (a mirror's source files).

    When every file already holds the table's declared columns with their declared types, and
    the partition key as text equal to the partition value in every row group (read from the
    footers, nothing else), the runner copies the files' bytes as they are: the partition then
    has one published file per source file (``data.pqt`` alone, else ``data-0000.pqt``,
    ``data-0001.pqt``, … in their order). Otherwise it
    writes ``rewrite`` (any data a build may return: a table, a stream of record batches…) or,
    without one, the files read and unioned by name, as one conformed file.

    ``filesystem`` is a ``pyarrow.fs.FileSystem`` (``None``: local paths).
    """

    paths: Sequence[str]
    filesystem: Any = None
    rewrite: Any = None


class BuildContext:
    """Passed to ``build``, ``partitions`` and ``build_partition`` functions."""

    def __init__(
        self,
        cache: Any,
        spec: Any,
        *,
        full: bool = False,
        state: Mapping[str, Any] | None = None,
        retry: Any = None,
        run_id: str = "",
        on_retry: Callable[[int, BaseException], None] | None = None,
    ):
        from bdc.runner.retry import RetryPolicy

        self.cache = cache
        self.spec = spec
        self.full = full
        self.state: dict[str, Any] = dict(state or {})
        self.retry = retry if retry is not None else RetryPolicy()
        self.run_id = run_id
        self.counters: dict[str, int] = {}
        self.retries = 0
        self._on_retry = on_retry

    @property
    def log(self) -> logging.Logger:
        """The table's logger (``bdc.build.<table>``), looked up when used (not for every partition)."""
        return logging.getLogger(f"bdc.build.{self.spec.name}")

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn``, retrying transient errors (HTTP 429/5xx, resets, timeouts) with backoff."""

        def note(attempt: int, exc: BaseException) -> None:
            self.retries += 1
            if self._on_retry is not None:
                self._on_retry(attempt, exc)

        return self.retry.call(fn, *args, on_retry=note, **kwargs)

    def read(self, name: str, **options: Any) -> Any:
        """Read a (dependency) table from the target cache as a pandas DataFrame."""
        return self.cache.get(name, **options)

    def read_arrow(self, name: str, **options: Any) -> Any:
        """Read a (dependency) table from the target cache as a pyarrow Table."""
        return self.cache.get(name, arrow=True, **options)

    def previous(self, columns: Sequence[str] | None = None) -> Any:
        """The currently published version of this table (pyarrow), or ``None`` on a full build or first build."""
        from bdc.errors import TableNotBuiltError

        if self.full:
            return None
        try:
            return self.cache.get(self.spec.name, columns=columns, arrow=True)
        except TableNotBuiltError:
            return None

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a named counter shown in the run report (``records_skipped``, ...)."""
        self.counters[name] = self.counters.get(name, 0) + n
