"""Reading the upstream dynamic-foraging database (the layout of ``aind_dynamic_foraging_database``).

::

    <base>/session_table.parquet                        flat, one row per session
    <base>/trial_table/subject_id=<id>/*.parquet        hive, one row per trial
    <base>/event_table/subject_id=<id>/*.parquet        hive, one row per event

``<base>`` is ``BDC_FORAGING_BASE`` read at call time (a directory, ``file://`` URL or ``s3://``
prefix), by default upstream's public ``PROD_S3_PREFIX``. Everything goes through pyarrow: subject
ids come from the partition folder names as text (``"0012"`` stays ``"0012"``), never from a
type-guessing hive reader, and never get formatted into a glob.

Subject ids are the partition folders' names as upstream writes and reads them: the raw text after
``subject_id=`` (upstream's writer names a folder ``subject_id={subject_id}`` and its
``_partition_subjects`` compares that text), never percent-decoded, so ``a%20b`` is its own subject.

Fingerprints (what an incremental sync compares) hash the base plus each file's name, size and
modification time, and on S3 its ETag too (LastModified has a resolution of one second: a file
rewritten with the same size within the second it was last listed keeps its size and time), so a
partition is rebuilt exactly when one of its files was added, removed, rewritten or touched. An S3
source is listed with one paginated ListObjectsV2 per table (through bdc's S3 backend, whose
listing carries the ETags), the session table with one HeadObject.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bdc_tables_foraging.filesystem import resolve_location, s3_backend, transient_errors

__all__ = [
    "BASE_ENV",
    "SESSION_FILE",
    "TRIAL_TABLE",
    "EVENT_TABLE",
    "PARTITION_KEY",
    "BATCH_ROWS",
    "foraging_base",
    "ForagingSource",
    "SourceFile",
    "PartitionReader",
    "common_type",
    "unified_schema",
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


@dataclass(frozen=True)
class SourceFile:
    """One listed source file: its path in the source's filesystem, name, size, modification time
    (ns since the epoch, ``None`` when unknown) and, on S3, its ETag (``None`` elsewhere)."""

    path: str
    base_name: str
    size: int
    mtime_ns: int | None = None
    etag: str | None = None

    @classmethod
    def of(cls, info: Any) -> SourceFile:
        """From a ``pyarrow.fs.FileInfo`` (no ETag)."""
        return cls(info.path, info.base_name, info.size, info.mtime_ns)


def _file_token(info: Any) -> str:
    """``name<TAB>size<TAB>mtime_ns`` of one listed file, plus ``<TAB>etag`` when it has one (S3)."""
    token = f"{info.base_name}\t{info.size}\t{info.mtime_ns if info.mtime_ns is not None else ''}"
    etag = getattr(info, "etag", None)
    return f"{token}\t{etag}" if etag else token


def _mtime_ns(modified: float | None) -> int | None:
    return None if modified is None else round(modified * 1e9)


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

    @property
    def is_s3(self) -> bool:
        """Whether the database is an ``s3://`` location (listed with its ETags through boto3)."""
        return self.base.startswith("s3://")

    def _s3_key(self, path: str) -> tuple[Any, str]:
        """(bdc's S3 backend on the bucket, the object key) of a path of this S3 source."""
        bucket, _, key = path.partition("/")
        return s3_backend(bucket), key

    # -- the session table -----------------------------------------------------------------

    def session_fingerprint(self) -> str:
        """Fingerprint of ``session_table.parquet`` (size and modification time; on S3 the ETag
        too, from one HeadObject)."""
        if self.is_s3:
            from bdc.errors import ObjectNotFoundError

            backend, key = self._s3_key(self.path(SESSION_FILE))
            try:
                found = backend.info(key)
            except ObjectNotFoundError:
                raise FileNotFoundError(f"No {SESSION_FILE} under {self.base}") from None
            info: Any = SourceFile(self.path(SESSION_FILE), SESSION_FILE, found.size,
                                   _mtime_ns(found.modified), found.etag)
        else:
            import pyarrow.fs as pafs

            with transient_errors():
                info = self.filesystem.get_file_info(self.path(SESSION_FILE))
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

    def _list_files(self, prefix: str) -> list[SourceFile]:
        """Every file below the folder ``prefix`` (recursively): on S3 one paginated
        ListObjectsV2 (its entries carry the ETags), else pyarrow's listing."""
        if self.is_s3:
            backend, key = self._s3_key(prefix)
            bucket = backend.bucket
            return [SourceFile(f"{bucket}/{o.key}", o.key.rsplit("/", 1)[-1], o.size, _mtime_ns(o.modified), o.etag)
                    for o in backend.list(f"{key}/" if key else "")]
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
        with transient_errors():
            infos = self.filesystem.get_file_info(selector)
        return [SourceFile.of(i) for i in infos if i.type == pafs.FileType.File]

    def list_table(self, table: str) -> dict[str, list[SourceFile]]:
        """Partition folder name (``subject_id=<id>``, as stored) → its ``*.parquet`` files
        (:class:`SourceFile`, sorted by path), from one recursive listing of ``table``.

        Only direct children ``subject_id=<id>/<name>.parquet`` count, whatever their names begin
        with (what upstream's glob reads); other files (``_SUCCESS``, ``*.crc``, temp files) are ignored.
        """
        prefix = self.path(table)
        out: dict[str, list[Any]] = {}
        for info in self._list_files(prefix):
            if not info.path.startswith(prefix + "/"):
                continue
            rest = info.path[len(prefix) + 1:].split("/")
            if len(rest) != 2 or not rest[0].startswith(_HIVE_PREFIX) or not _is_data_file(rest[1]):
                continue
            out.setdefault(rest[0], []).append(info)
        for files in out.values():
            files.sort(key=lambda i: i.path)
        return out

    def partition_files(self, table: str, listing: dict[str, list[Any]] | None = None) -> dict[str, list[Any]]:
        """Subject id → its ``*.parquet`` files (:class:`SourceFile`), from one recursive listing
        of ``table`` (``listing``: that of :meth:`list_table`, made already).

        A subject id is its folder's name after ``subject_id=``, as it is: upstream writes raw ids
        into folder names and compares raw folder text, so nothing is percent-decoded (the folder
        ``subject_id=a%20b`` is the subject ``a%20b``, not ``a b``)."""
        out: dict[str, list[Any]] = {}
        for folder, files in (self.list_table(table) if listing is None else listing).items():
            value = folder[len(_HIVE_PREFIX):]
            if value:
                out[value] = sorted(files, key=lambda i: i.path)
        return out

    def partition_fingerprints(self, table: str, listing: dict[str, list[Any]] | None = None) -> dict[str, str]:
        """Subject id → fingerprint of its files in ``table`` (names, sizes, modification times,
        ETags on S3); ``listing``: that of :meth:`list_table`, made already."""
        return {value: _digest(_FORMAT, self.base, table, value, *map(_file_token, files))
                for value, files in self.partition_files(table, listing).items()}

    def absent_fingerprint(self, table: str) -> str:
        """The fingerprint of a subject that has no files in ``table``."""
        return _digest(_FORMAT, self.base, table, "absent")

    def partition(self, table: str, subject_id: str, listing: dict[str, list[Any]] | None = None,
                  declared: Any = None) -> PartitionReader:
        """A reader of one subject's files in ``table`` (no files: an empty reader): those of the
        folder ``subject_id=<subject_id>`` (the raw id, as upstream names it). ``listing``: that
        of :meth:`list_table`, made already (else the subject's folder is listed now);
        ``declared``: the table's declared columns (a ``pyarrow.Schema``), see
        :class:`PartitionReader`."""
        import pyarrow.fs as pafs

        folder = f"{_HIVE_PREFIX}{subject_id}"
        if listing is not None:
            paths = sorted(i.path for i in listing.get(folder) or ())
        else:
            selector = pafs.FileSelector(self.path(table, folder), allow_not_found=True)
            with transient_errors():
                infos = self.filesystem.get_file_info(selector)
            paths = sorted(i.path for i in infos if i.type == pafs.FileType.File and _is_data_file(i.base_name))
        return PartitionReader(self.filesystem, paths, subject_id, declared=declared)


def _is_data_file(name: str) -> bool:
    """Whether a file of a subject's folder is one of its data files: any ``*.parquet``, names
    beginning with ``.`` or ``_`` included, as upstream's reader (DuckDB's glob) reads them."""
    return name.endswith(".parquet")


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


_UNITS = ("s", "ms", "us", "ns")


def _plain(typ: Any) -> Any:
    """A dictionary type's value type; any other type as it is."""
    import pyarrow as pa

    return typ.value_type if pa.types.is_dictionary(typ) else typ


def _text_castable(typ: Any) -> bool:
    """Whether values of ``typ`` have a text form a reader would recognise (numbers, booleans,
    text, dates and times, decimals): the types DuckDB turns into VARCHAR when nothing else fits."""
    import pyarrow as pa

    return (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ)
            or pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_temporal(typ)
            or pa.types.is_decimal(typ))


def common_type(types: Sequence[Any]) -> Any:
    """The type a column takes when files hold it with ``types``, as DuckDB's ``union_by_name``
    (upstream's reader) unifies them; ``None`` when no common type exists.

    Null-typed columns (all-null in a file) do not count; dictionaries count as their values;
    timestamps take the finest unit, with no zone when none has one, else their one zone, else
    UTC (a naive timestamp is read as UTC); then pyarrow's permissive promotion (``int32`` +
    ``int64`` → ``int64``, ``int64`` + ``double`` → ``double``, ``string`` + ``large_string`` →
    ``large_string``); else text when every type has a text form (``string`` + ``int64`` →
    ``string``, as DuckDB's VARCHAR).

    >>> import pyarrow as pa
    >>> common_type([pa.string(), pa.int64()])
    DataType(string)
    """
    import pyarrow as pa

    found = [t for t in dict.fromkeys(types) if not pa.types.is_null(t)]
    if not found:
        return pa.null()
    if len(found) == 1:
        return found[0]
    plain = list(dict.fromkeys(_plain(t) for t in found))
    if len(plain) == 1:
        return plain[0]
    if all(pa.types.is_timestamp(t) for t in plain):
        unit = max((t.unit for t in plain), key=_UNITS.index)
        zones = {t.tz for t in plain}
        if zones == {None}:
            return pa.timestamp(unit)
        aware = zones - {None}
        return pa.timestamp(unit, aware.pop() if len(aware) == 1 and None not in zones else "UTC")
    try:
        schemas = [pa.schema([pa.field("x", t)]) for t in plain]
        return pa.unify_schemas(schemas, promote_options="permissive").field("x").type
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if all(_text_castable(t) for t in plain):
        return pa.string()
    return None


def _float_text(column: Any) -> Any:
    """Floats as text the way DuckDB (and Python) write them: ``1.0``, ``0.1``, ``1e+20``, ``nan``."""
    import numpy as np
    import pyarrow as pa

    kind = column.type
    if pa.types.is_float64(kind):
        text = [None if v is None else repr(v) for v in column.to_pylist()]
    else:  # float16/32: their own shortest form, not that of the double they widen to
        dtype = np.float32 if pa.types.is_float32(kind) else np.float16
        text = [None if v is None else str(dtype(v)) for v in column.to_pylist()]
    return pa.array(text, pa.string())


def _cast(column: Any, target: Any) -> Any:
    """``column`` (an array or chunked array) as ``target``: pyarrow's safe cast, except floats
    become text as DuckDB writes them and a float NaN becomes a null integer (pandas writes a
    missing integer as NaN); a fractional float or an overflow still fails."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.type == target:
        return column
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), target)
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
        if column.type == target:
            return column
    source = column.type
    if pa.types.is_floating(source) and (pa.types.is_string(target) or pa.types.is_large_string(target)):
        return pc.cast(_float_text(column), target)
    if pa.types.is_floating(source) and pa.types.is_integer(target):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, source), column)
    return pc.cast(column, target, safe=True)


class PartitionReader:
    """One subject's files of one table, read with one schema: the union of the files' columns.

    Columns are matched by name, in the order they first appear. A column's type is:

    * ``subject_id``: text, the folder's value;
    * a declared column (``declared``, the table's declared schema): its declared type, whatever
      type the files hold it with (a file holding it with a type that does not convert fails
      with a :class:`bdc.errors.SchemaMismatchError` naming the subject, the file and the
      column); a declared column no file has is there too, all null;
    * any other column: the common type of the files' types (:func:`common_type`, as DuckDB's
      ``union_by_name``, upstream's reader, unifies them: ``int32`` + ``int64`` → ``int64``, a
      naive and a UTC timestamp → UTC, ``string`` + ``int64`` → ``string``); missing → null.

    Each file's columns are cast to that schema before the files are concatenated.

    Iterating yields record batches of at most :data:`BATCH_ROWS` rows, one file open at a time,
    so a partition of any size streams in bounded memory. Each ``iter()`` starts again from the
    first file: a retried write re-reads the source instead of writing a consumed stream.
    """

    def __init__(self, filesystem: Any, paths: Sequence[str], subject_id: str, batch_rows: int = BATCH_ROWS,
                 declared: Any = None):
        self.filesystem = filesystem
        self.paths = list(paths)
        self.subject_id = subject_id
        self.batch_rows = batch_rows
        self.declared = declared
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

    def _declared_types(self) -> dict[str, Any]:
        if self.declared is None:
            return {}
        return {field.name: field.type for field in self.declared}

    @property
    def schema(self) -> Any:
        """The unified schema (reads the files' footers on first use)."""
        if self._schema is None:
            schemas = []
            with transient_errors():
                for path in self.paths:
                    with self._open(path) as pf:
                        self._metadata[path] = pf.metadata
                        schemas.append((path, pf.schema_arrow.remove_metadata()))
                        self._key_in_file[path] = _holds_only(pf, PARTITION_KEY, self.subject_id)
            self._schema = unified_schema(self.subject_id, schemas, self._declared_types())
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
                columns.append(column if column.type == field.type else self._cast(column, field, path))
            else:
                columns.append(pa.nulls(n, field.type))
        return columns

    def _cast(self, column: Any, field: Any, path: str) -> Any:
        """One file's column as the unified schema's type, or a clear error naming what failed."""
        import pyarrow as pa

        try:
            return _cast(column, field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            from bdc.errors import SchemaMismatchError

            what = "its declared type" if field.name in self._declared_types() else "the subject's common type"
            raise SchemaMismatchError(
                f"subject_id={self.subject_id!r}: column {field.name!r} of {path} is {column.type} and cannot "
                f"be read as {field.type} ({what}): {exc}") from exc

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


def unified_schema(subject_id: str, schemas: Sequence[tuple[str, Any]], declared: Mapping[str, Any]) -> Any:
    """The schema of one subject's files (``(path, arrow schema)`` each) read together (see
    :class:`PartitionReader`): columns by first appearance, declared ones with their declared
    type (``declared``: name → type; those no file has appended), ``subject_id`` text (appended
    last when no file has it), the others with their :func:`common_type`.

    Raises :class:`bdc.errors.SchemaMismatchError` naming the subject, the column and its types
    in the files when an undeclared column's types have no common type.
    """
    import pyarrow as pa

    by_name: dict[str, dict[Any, list[str]]] = {}
    for path, schema in schemas:
        for field in schema:
            by_name.setdefault(field.name, {}).setdefault(field.type, []).append(path)
    fields = []
    for name, types in by_name.items():
        if name == PARTITION_KEY:
            fields.append(pa.field(name, pa.string()))
        elif name in declared:
            fields.append(pa.field(name, declared[name]))
        else:
            common = common_type(list(types))
            if common is None:
                from bdc.errors import SchemaMismatchError

                seen = "; ".join(f"{t} in {', '.join(paths)}" for t, paths in types.items())
                raise SchemaMismatchError(
                    f"subject_id={subject_id!r}: column {name!r} has types with no common type: {seen}")
            fields.append(pa.field(name, common))
    for name, typ in declared.items():  # declared, in no file: all null
        if name not in by_name and name != PARTITION_KEY:
            fields.append(pa.field(name, typ))
    if PARTITION_KEY not in by_name:
        fields.append(pa.field(PARTITION_KEY, pa.string()))
    return pa.schema(fields)
