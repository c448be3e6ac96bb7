"""Reading the upstream dynamic-foraging database (the layout of ``aind_dynamic_foraging_database``).

::

    <base>/session_table.parquet                        flat, one row per session
    <base>/trial_table/subject_id=<id>/*.parquet        hive, one row per trial
    <base>/event_table/subject_id=<id>/*.parquet        hive, one row per event

``<base>`` is ``BDC_FORAGING_BASE`` read at call time (a directory, ``file://`` URL or ``s3://``
prefix), by default upstream's public ``PROD_S3_PREFIX``. Everything goes through pyarrow: subject
ids come from the partition folder names as text (``"0012"`` stays ``"0012"``), never from a
type-guessing hive reader, and never get formatted into a glob.

Fingerprints (what an incremental sync compares) hash the base plus each file's name, size and
modification time, so a partition is rebuilt exactly when one of its files was added, removed,
rewritten or touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote, unquote

from bdc_tables_foraging.filesystem import resolve_location, transient_errors

__all__ = [
    "BASE_ENV",
    "SESSION_FILE",
    "TRIAL_TABLE",
    "EVENT_TABLE",
    "PARTITION_KEY",
    "BATCH_ROWS",
    "foraging_base",
    "ForagingSource",
    "PartitionReader",
]

#: The environment variable naming the database root.
BASE_ENV = "BDC_FORAGING_BASE"
SESSION_FILE = "session_table.parquet"
TRIAL_TABLE = "trial_table"
EVENT_TABLE = "event_table"
PARTITION_KEY = "subject_id"
#: Rows per record batch when a partition is streamed.
BATCH_ROWS = 128 * 1024
#: Bumped when what a mirror writes for the same source files changes (forces a rebuild).
_FORMAT = "bdc-foraging-1"
_HIVE_PREFIX = f"{PARTITION_KEY}="


def foraging_base() -> str:
    """The database root: ``BDC_FORAGING_BASE`` if set, else upstream's ``PROD_S3_PREFIX``."""
    value = os.environ.get(BASE_ENV, "").strip()
    if value:
        return value.rstrip("/") or value
    from aind_dynamic_foraging_database import PROD_S3_PREFIX

    return PROD_S3_PREFIX


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _file_token(info: Any) -> str:
    """``name<TAB>size<TAB>mtime_ns`` of one listed file."""
    return f"{info.base_name}\t{info.size}\t{info.mtime_ns if info.mtime_ns is not None else ''}"


class ForagingSource:
    """One foraging database: a pyarrow filesystem and the root path of the database in it."""

    def __init__(self, base: str, filesystem: Any = None, root: str | None = None):
        self.base = str(base)
        if filesystem is None or root is None:
            filesystem, root = resolve_location(self.base)
        self.filesystem = filesystem
        self.root = root.rstrip("/") if root != "/" else root

    def __repr__(self) -> str:
        return f"ForagingSource({self.base!r})"

    @classmethod
    def open(cls, base: str | None = None) -> ForagingSource:
        """The database at ``base`` (default: :func:`foraging_base`, read now)."""
        return cls(base if base is not None else foraging_base())

    def path(self, *parts: str) -> str:
        """A path below the root, in the filesystem's terms."""
        return "/".join([self.root, *parts])

    # -- the session table -----------------------------------------------------------------

    def session_fingerprint(self) -> str:
        """Fingerprint of ``session_table.parquet`` (size and modification time)."""
        with transient_errors():
            info = self.filesystem.get_file_info(self.path(SESSION_FILE))
        import pyarrow.fs as pafs

        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"No {SESSION_FILE} under {self.base}")
        return _digest(_FORMAT, self.base, SESSION_FILE, _file_token(info))

    def read_sessions(self, columns: list[str] | None = None) -> Any:
        """The session table as a ``pyarrow.Table``: every column, or those of ``columns`` it has."""
        import pyarrow.parquet as pq

        with transient_errors():
            with self.filesystem.open_input_file(self.path(SESSION_FILE)) as fh:
                parquet = pq.ParquetFile(fh)
                if columns is not None:
                    columns = [c for c in columns if c in parquet.schema_arrow.names]
                return parquet.read(columns=columns, use_threads=False)

    # -- partitions ------------------------------------------------------------------------

    def list_table(self, table: str) -> dict[str, list[Any]]:
        """Partition folder name (``subject_id=<id>``, as stored) → its ``*.parquet`` files
        (``FileInfo``, sorted by path), from one recursive listing of ``table``.

        Only direct children ``subject_id=<id>/<name>.parquet`` count (what upstream reads);
        hidden and temporary files are ignored.
        """
        import pyarrow.fs as pafs

        prefix = self.path(table)
        selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
        with transient_errors():
            infos = self.filesystem.get_file_info(selector)
        out: dict[str, list[Any]] = {}
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            rest = info.path[len(prefix) + 1:].split("/")
            if len(rest) != 2 or not rest[0].startswith(_HIVE_PREFIX) or not _is_data_file(rest[1]):
                continue
            out.setdefault(rest[0], []).append(info)
        for files in out.values():
            files.sort(key=lambda i: i.path)
        return out

    def partition_files(self, table: str, listing: dict[str, list[Any]] | None = None) -> dict[str, list[Any]]:
        """Subject id → its ``*.parquet`` files (``FileInfo``), from one recursive listing of
        ``table`` (``listing``: that of :meth:`list_table`, made already). Folder names are
        percent-decoded."""
        out: dict[str, list[Any]] = {}
        for folder, files in (self.list_table(table) if listing is None else listing).items():
            value = unquote(folder[len(_HIVE_PREFIX):])
            if value:
                out.setdefault(value, []).extend(files)
        for files in out.values():
            files.sort(key=lambda i: i.path)
        return out

    def partition_fingerprints(self, table: str, listing: dict[str, list[Any]] | None = None) -> dict[str, str]:
        """Subject id → fingerprint of its files in ``table`` (names, sizes, modification times);
        ``listing``: that of :meth:`list_table`, made already."""
        return {value: _digest(_FORMAT, self.base, table, value, *map(_file_token, files))
                for value, files in self.partition_files(table, listing).items()}

    def absent_fingerprint(self, table: str) -> str:
        """The fingerprint of a subject that has no files in ``table``."""
        return _digest(_FORMAT, self.base, table, "absent")

    def partition(self, table: str, subject_id: str, listing: dict[str, list[Any]] | None = None) -> PartitionReader:
        """A reader of one subject's files in ``table`` (no files: an empty reader); ``listing``:
        that of :meth:`list_table`, made already (else the subject's folder is listed now)."""
        import pyarrow.fs as pafs

        folders = [f"{_HIVE_PREFIX}{subject_id}", f"{_HIVE_PREFIX}{quote(subject_id, safe='')}"]
        if listing is not None:
            for folder in dict.fromkeys(folders):
                files = listing.get(folder)
                if files:
                    return PartitionReader(self.filesystem, [i.path for i in files], subject_id)
            return PartitionReader(self.filesystem, [], subject_id)
        for folder in dict.fromkeys(folders):
            selector = pafs.FileSelector(self.path(table, folder), allow_not_found=True)
            with transient_errors():
                infos = self.filesystem.get_file_info(selector)
            paths = sorted(i.path for i in infos if i.type == pafs.FileType.File and _is_data_file(i.base_name))
            if paths:
                return PartitionReader(self.filesystem, paths, subject_id)
        return PartitionReader(self.filesystem, [], subject_id)


def _is_data_file(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith((".", "_"))


def _holds_only(pf: Any, column: str, value: str) -> bool:
    """Whether the footer statistics prove that ``column`` holds ``value`` in every row (no nulls)."""
    meta = pf.metadata
    leaves = pf.schema.names  # parquet leaf columns (flat tables: the Arrow columns)
    if column not in leaves or meta.num_row_groups == 0:
        return False
    index = leaves.index(column)
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(index).statistics
        if stats is None or not stats.has_min_max or stats.null_count != 0:
            return False
        if stats.min != value or stats.max != value:
            return False
    return True


def _combine(batches: list[Any], schema: Any) -> Any:
    """One record batch from consecutive batches of one schema."""
    import pyarrow as pa

    if len(batches) == 1:
        return batches[0]
    combined = pa.Table.from_batches(batches, schema=schema).combine_chunks().to_batches()
    return combined[0] if combined else batches[0]


class PartitionReader:
    """One subject's files of one table, read with one schema: the union of the files' columns.

    Columns are matched by name; types are unified with ``pa.unify_schemas(...,
    promote_options="permissive")`` (``int32`` + ``int64`` → ``int64``, missing → null) and every
    batch is cast to that schema. ``subject_id`` is the folder's value, as text.

    Iterating yields record batches of at most :data:`BATCH_ROWS` rows, one file open at a time,
    so a partition of any size streams in bounded memory. Each ``iter()`` starts again from the
    first file: a retried write re-reads the source instead of writing a consumed stream.
    """

    def __init__(self, filesystem: Any, paths: Sequence[str], subject_id: str, batch_rows: int = BATCH_ROWS):
        self.filesystem = filesystem
        self.paths = list(paths)
        self.subject_id = subject_id
        self.batch_rows = batch_rows
        self._schema: Any = None
        self._metadata: dict[str, Any] = {}
        self._key_in_file: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"PartitionReader({self.subject_id!r}, {len(self.paths)} files)"

    @contextlib.contextmanager
    def _open(self, path: str) -> Iterator[Any]:
        """A ``ParquetFile`` on ``path`` (footer reused once read), closed on exit."""
        import pyarrow.parquet as pq

        with self.filesystem.open_input_file(path) as fh:
            yield pq.ParquetFile(fh, metadata=self._metadata.get(path), pre_buffer=True)

    @property
    def schema(self) -> Any:
        """The unified schema (reads the files' footers on first use)."""
        if self._schema is None:
            import pyarrow as pa

            schemas = []
            with transient_errors():
                for path in self.paths:
                    with self._open(path) as pf:
                        self._metadata[path] = pf.metadata
                        schemas.append(pf.schema_arrow.remove_metadata())
                        self._key_in_file[path] = _holds_only(pf, PARTITION_KEY, self.subject_id)
            unified = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
            key = pa.field(PARTITION_KEY, pa.string())
            index = unified.get_field_index(PARTITION_KEY)
            self._schema = unified.set(index, key) if index >= 0 else unified.append(key)
        return self._schema

    @property
    def num_rows(self) -> int:
        """Rows over all files (from the footers)."""
        self.schema  # noqa: B018 - reads the footers
        return sum(self._metadata[p].num_rows for p in self.paths)

    def _align(self, data: Any, path: str) -> list[Any]:
        """The columns of ``data`` (a batch or table of ``path``) in the unified schema's order and types.

        ``subject_id`` is the folder's value: the file's own column when its statistics show it
        holds exactly that text, else a constant column.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        n = data.num_rows
        names = data.schema.names
        columns = []
        for field in self.schema:
            if field.name == PARTITION_KEY:
                if self._key_in_file.get(path) and data.column(field.name).type == field.type:
                    columns.append(data.column(field.name))
                else:
                    columns.append(pc.fill_null(pa.nulls(n, pa.string()), self.subject_id))
            elif field.name in names:
                column = data.column(field.name)
                columns.append(column if column.type == field.type else pc.cast(column, field.type))
            else:
                columns.append(pa.nulls(n, field.type))
        return columns

    def __iter__(self) -> Iterator[Any]:
        import pyarrow as pa

        schema = self.schema
        pending: list[Any] = []
        rows = 0
        for path in self.paths:
            with transient_errors():
                with self._open(path) as pf:
                    for batch in pf.iter_batches(batch_size=self.batch_rows, use_threads=False):
                        pending.append(pa.RecordBatch.from_arrays(self._align(batch, path), schema=schema))
                        rows += batch.num_rows
                        if rows >= self.batch_rows:  # small files are merged into larger batches
                            yield _combine(pending, schema)
                            pending, rows = [], 0
        if pending:
            yield _combine(pending, schema)

    def read_all(self) -> Any:
        """The whole partition as one ``pyarrow.Table`` (each file read once, no extra copy)."""
        import pyarrow as pa

        schema = self.schema
        tables = []
        with transient_errors():
            for path in self.paths:
                with self._open(path) as pf:
                    table = pf.read(use_threads=False)
                tables.append(pa.Table.from_arrays(self._align(table, path), schema=schema))
        if not tables:
            return schema.empty_table()
        return pa.concat_tables(tables)
