"""Publishing parquet files that already exist (a mirror's source files) by copying their bytes.

A build that returns :class:`bdc.build.ParquetFiles` gets its files copied as they are when their
footers show they already are what the table publishes (:func:`conforming`): the declared columns
with their declared types, the partition key as text equal to the partition value in every row
group. Copying is a byte copy (``sendfile`` between local files), no decoding or encoding; any
other case is rewritten through the normal conform-and-encode path.

Files of a pyarrow ``S3FileSystem`` copied into an S3 cache on the same S3 service are copied
server-side (CopyObject: the bytes never pass through this machine, see
:func:`_copy_server_side`); where the service refuses that (access denied, not supported), the
files are streamed through this process as from any other remote source, and this process
remembers not to ask again for that source and cache bucket.

Per file, the work is kept to what the check needs: a local file is opened once (its footer is
read through the descriptor its copy then uses), the verdict on a file's columns is made once per
distinct schema (:class:`_Checker`), and copies between local files run one per CPU at a time
(:func:`local_slot`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from bdc.errors import BackendUnavailableError, ObjectNotFoundError
from bdc.spec import TableSpec

__all__ = ["CheckedFiles", "check_files", "conforming", "copy_files", "local_slot", "read_files"]

_CHUNK = 8 * 1024 * 1024
#: Bytes read from the end of a local file for its footer (parquet's own first read).
_FOOTER_READ = 64 * 1024
#: Descriptors of checked local files kept open for their copy, over all partitions being
#: written (beyond, a file is opened again to be copied).
_KEEP_OPEN = 64


def _local(filesystem: Any) -> bool:
    """Whether ``filesystem`` names local paths (``None`` or pyarrow's ``LocalFileSystem``): those
    files are read and copied with the operating system's own calls (``sendfile``)."""
    if filesystem is None:
        return True
    import pyarrow.fs as pafs

    return isinstance(filesystem, pafs.LocalFileSystem)


def _slots() -> int:
    """How many local copies run at once: the CPUs this process may use (``BDC_LOCAL_COPIES``
    overrides)."""
    value = os.environ.get("BDC_LOCAL_COPIES", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


#: Stores whose writes are local (a store that writes over the network is not limited).
_LOCAL_STORES = ("file", "memory")


@functools.lru_cache(maxsize=None)
def _gate(slots: int) -> threading.BoundedSemaphore:
    """The process's one semaphore of ``slots`` places (one per setting of :func:`_slots`)."""
    return threading.BoundedSemaphore(slots)


def local_slot(filesystem: Any, backend: Any) -> Any:
    """A context holding one of the :func:`_slots` places of copies from local files into a
    local store, else (remote source or store: network-bound) a no-op context.

    Checking footers and copying between local files keeps a CPU busy (parsing, the kernel's
    copy, creating files); a sync runs many partitions at once, for remote stores' sake. Beyond
    one per CPU, local copies only wait for each other: switching between them (the GIL, the
    kernel) costs more CPU than it overlaps.
    """
    if getattr(backend, "scheme", None) not in _LOCAL_STORES or not _local(filesystem):
        return contextlib.nullcontext()
    return _gate(_slots())


def _open_footer(filesystem: Any, path: str) -> Any:
    import pyarrow.parquet as pq

    if _local(filesystem):
        return pq.ParquetFile(path)
    return pq.ParquetFile(filesystem.open_input_file(path))


def _read_footer(filesystem: Any, path: str) -> tuple[Any, Any]:
    """``(parquet metadata, reader)`` of one file, reading only its footer; the reader gives the
    file's Arrow schema (``reader.schema_arrow``, from the metadata: the file may be closed).

    Uses pyarrow's footer reader directly: ``pq.ParquetFile`` also maps every leaf column to its
    path in a Python loop, which for a mirror's 100-column files costs a third of the footer
    read and, unlike parsing the footer, holds the GIL. (``pq.ParquetFile`` if that reader moves.)
    """
    import pyarrow as pa

    return _parse_footer(pa.OSFile(path) if _local(filesystem) else filesystem.open_input_file(path))


def _remote_footer(checked: CheckedFiles, filesystem: Any, path: str) -> tuple[Any, Any]:
    """:func:`_read_footer` of a file of a remote filesystem, keeping its size in ``checked`` (the
    bytes a server-side copy reports): known once the file is open (S3 answers it to the open's
    HeadObject), no request more."""
    source = filesystem.open_input_file(path)
    try:
        size = source.size()
    except BaseException:
        source.close()
        raise
    checked.sizes[len(checked.metas)] = size
    return _parse_footer(source)


def _parse_footer(source: Any) -> tuple[Any, Any]:
    """``(parquet metadata, reader)`` of the parquet file open as ``source`` (see
    :func:`_read_footer`), reading only its footer; closes ``source``."""
    try:
        try:
            from pyarrow._parquet import ParquetReader
        except ImportError:  # pragma: no cover - another pyarrow layout
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(source)
            return parquet.metadata, parquet
        reader = ParquetReader()
        reader.open(source, pre_buffer=False)  # nothing but the footer is read
        return reader.metadata, reader
    finally:
        source.close()


class _Checker:
    """The schema half of the footer check for one spec, remembered per distinct file schema.

    Whether a file's columns conform (and which parquet leaf holds the partition key) depends
    only on its Arrow schema, which pyarrow derives from the parquet schema and the
    ``ARROW:schema`` footer entry alone. A mirror's files mostly share one schema: the verdict
    made from the first one's Arrow schema holds for every file whose parquet schema (its full
    text, and leaf by leaf) and ``ARROW:schema`` entry are the same, without deriving the Arrow
    schema again (a quarter of reading a 100-column footer) or checking it column by column.
    """

    _LIMIT = 64  # distinct schemas remembered per spec (then forgotten, and learnt again)

    def __init__(self, spec: TableSpec):
        self.columns = spec.columns
        self.extra_columns = spec.extra_columns
        self.partition_key = spec.partition_key
        self.declared = tuple((c.name, c.arrow_type()) for c in spec.columns)
        self.names = frozenset(name for name, _type in self.declared)
        #: (ARROW:schema entry, parquet schema text) -> [(parquet schema, verdict)]
        self._seen: dict[tuple[Any, str], list[tuple[Any, tuple[bool, int | None]]]] = {}

    def fits(self, spec: TableSpec) -> bool:
        """Whether ``spec`` declares what this checker checks."""
        return ((spec.columns is self.columns or spec.columns == self.columns)
                and spec.extra_columns == self.extra_columns and spec.partition_key == self.partition_key)

    def verdict(self, meta: Any, reader: Any) -> tuple[bool, int | None]:
        """``(columns conform, parquet leaf of the partition key when it is text, else None)``."""
        parquet = meta.schema
        text = repr(parquet)
        newline = text.find("\n")  # the first line names the Python object, the rest is the schema
        key = ((meta.metadata or {}).get(b"ARROW:schema"), text[newline:] if newline >= 0 else text)
        known = self._seen.get(key)
        if known is not None:
            for schema, found in known:
                if parquet.equals(schema):
                    return found
        found = self._judge(meta, reader.schema_arrow)
        if len(self._seen) >= self._LIMIT:
            self._seen.clear()
        self._seen.setdefault(key, []).append((parquet, found))
        return found

    def _judge(self, meta: Any, schema: Any) -> tuple[bool, int | None]:
        import pyarrow as pa

        present = schema.names
        index = {name: i for i, name in enumerate(present)}
        if len(index) != len(present):
            return False, None
        for name, type_ in self.declared:
            i = index.get(name)
            if i is None or not _same_type(schema.field(i).type, type_):
                return False, None
        if not self.extra_columns and index.keys() - self.names:
            return False, None
        column = self.partition_key or ""
        i = index.get(column)
        if i is None:
            return True, None
        key_type = schema.field(i).type
        if not (pa.types.is_string(key_type) or pa.types.is_large_string(key_type)):
            return True, None
        return True, _leaf(meta, index, column)


def _checker(spec: TableSpec) -> _Checker:
    """The :class:`_Checker` of ``spec`` (made once per spec)."""
    found = _checkers.get(spec.name)
    if found is None or not found.fits(spec):
        found = _checkers[spec.name] = _Checker(spec)
    return found


_checkers: dict[str, _Checker] = {}


def conforming(spec: TableSpec, value: str | None, filesystem: Any, paths: Sequence[str]) -> list[Any] | None:
    """The parquet metadata of each file if every one can be published as it is, else ``None``.

    Reads only the footers. A file conforms when it has every declared column with the declared
    Arrow type (text may be ``large_string``, see :func:`_same_type`), no undeclared column unless
    the spec allows extras, no column name twice, and (``value``) the partition key column as text
    whose statistics show exactly ``value`` and no nulls in every row group.
    """
    checked = check_files(spec, value, filesystem, paths)
    if checked is None:
        return None
    checked.close()
    return checked.metas


def check_files(spec: TableSpec, value: str | None, filesystem: Any, paths: Sequence[str]) -> CheckedFiles | None:
    """:func:`conforming`, keeping what the copy needs: ``None`` unless every file conforms, else
    the files' :class:`CheckedFiles` (close it, or copy it with :meth:`CheckedFiles.copy`).

    Local files are opened once: the footer is read from the descriptor the copy then uses.
    """
    import pyarrow as pa

    checker = _checker(spec)
    local = _local(filesystem)
    checked = CheckedFiles(filesystem, paths)
    try:
        for path in paths:
            try:
                if local:
                    meta, reader = _local_footer(checked, path)
                else:
                    meta, reader = _remote_footer(checked, filesystem, path)
                ok, leaf = checker.verdict(meta, reader)
            except (OSError, pa.ArrowInvalid):
                checked.close()
                return None  # unreadable here: the rewrite path reports it properly
            if not ok or (value is not None and (leaf is None or not _only_value(meta, leaf, value))):
                checked.close()
                return None
            checked.metas.append(meta)
    except BaseException:
        checked.close()
        raise
    return checked


class CheckedFiles:
    """Files :func:`check_files` found conforming: the metadata of their footers and, for local
    files, the descriptors their footers were read through (kept for the copy, up to
    :data:`_KEEP_OPEN`), for remote files their sizes; :meth:`copy` copies and closes them,
    :meth:`close` only closes them."""

    def __init__(self, filesystem: Any, paths: Sequence[str]):
        self.filesystem = filesystem
        self.paths = list(paths)
        self.metas: list[Any] = []
        #: path index -> (open descriptor, size) of local files kept open
        self.open: dict[int, tuple[int, int]] = {}
        #: path index -> size of remote files (read with their footers)
        self.sizes: dict[int, int] = {}
        #: how many files :meth:`copy` copied server-side (S3 to S3)
        self.server_side = 0

    @property
    def rows(self) -> int:
        """Rows over all files (from the footers)."""
        return sum(m.num_rows for m in self.metas)

    def copy(self, backend: Any, keys: Sequence[str], staged: bool = False) -> int:
        """Copy each file to the matching key of ``backend``, byte for byte (then close the
        descriptors); returns the bytes copied. ``staged``: the keys are a sync run's staging
        (written with the backend's ``open_write_staged``). Files of an S3 filesystem go
        server-side into an S3 backend of the same service (counted in :attr:`server_side`)
        unless the service refuses it (see :func:`_copy_server_side`)."""
        try:
            if len(keys) != len(self.paths):
                raise ValueError(f"{len(self.paths)} files, {len(keys)} keys")
            total = 0
            open_write = _writer(backend, staged)
            service = _server_side(self.filesystem, backend) if len(self.sizes) == len(self.paths) else None
            for i, (path, key) in enumerate(zip(self.paths, keys)):
                if service is not None and _copy_server_side(backend, service, path, key):
                    total += self.sizes[i]
                    self.server_side += 1
                    continue
                held = self.open.get(i)
                if held is None:
                    total += copy_files(backend, [key], self.filesystem, [path], staged)
                    continue
                with open_write(key) as out:
                    total += _copy_fd(held[0], held[1], out)
            return total
        finally:
            self.close()

    def keep(self, fd: int, size: int) -> bool:
        """Keep ``fd`` open for the copy (the current file's), if the process-wide budget allows."""
        global _kept
        with _kept_lock:
            if _kept >= _KEEP_OPEN:
                return False
            _kept += 1
        self.open[len(self.metas)] = (fd, size)
        return True

    def close(self) -> None:
        """Close the descriptors still open."""
        global _kept
        held, self.open = self.open, {}
        if held:
            with _kept_lock:
                _kept -= len(held)
        for fd, _size in held.values():
            os.close(fd)

    def __enter__(self) -> CheckedFiles:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _local_footer(checked: CheckedFiles, path: str) -> tuple[Any, Any]:
    """:func:`_read_footer` of a local file through a descriptor kept in ``checked`` for the copy:
    the file's last bytes (parquet's own first read) parsed from memory. A file whose last bytes
    do not end with an unencrypted parquet footer is read by :func:`_read_footer` (whose error,
    if any, the caller reports as for any other file)."""
    import pyarrow as pa

    try:
        from pyarrow._parquet import ParquetReader  # see _read_footer
    except ImportError:  # pragma: no cover - another pyarrow layout
        return _read_footer(None, path)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        n = min(size, _FOOTER_READ)
        tail = os.pread(fd, n, size - n) if n >= 12 else b""
        length = int.from_bytes(tail[-8:-4], "little") if len(tail) == n and tail[-4:] == b"PAR1" else -1
        if 0 <= length and n < length + 8 <= size:  # a footer larger than the first read
            tail = os.pread(fd, length + 8, size - length - 8)
        if length < 0 or len(tail) < length + 8:
            os.close(fd)
            fd = -1
            return _read_footer(None, path)
        reader = ParquetReader()
        reader.open(pa.BufferReader(tail), pre_buffer=False)
        meta = reader.metadata
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    if not checked.keep(fd, size):
        os.close(fd)
    return meta, reader


_kept_lock = threading.Lock()
_kept = 0  # descriptors kept open by CheckedFiles, over all threads


def _same_type(found: Any, declared: Any) -> bool:
    """Whether a file's column type publishes as the declared one: equal, or text / bytes with
    64-bit offsets (``large_string``, what pandas 3 writes for text) where ``string`` / ``binary``
    is declared: the same values, read back by DuckDB as the same VARCHAR / BLOB."""
    import pyarrow as pa

    if found.equals(declared):
        return True
    return (pa.types.is_large_string(found) and pa.types.is_string(declared)) or (
        pa.types.is_large_binary(found) and pa.types.is_binary(declared))


def _leaf(meta: Any, index: dict[str, int], column: str) -> int | None:
    """The parquet leaf column of the top-level Arrow column ``column``: its Arrow index when the
    schema is flat (one leaf per column, the usual case), else found by path."""
    i = index.get(column)
    if i is not None and meta.num_columns == len(index) and meta.schema.column(i).path == column:
        return i
    return next((j for j in range(meta.num_columns) if meta.schema.column(j).path == column), None)


def _only_value(meta: Any, leaf: int, value: str) -> bool:
    """Whether every row group's statistics show the parquet leaf column ``leaf`` holding exactly
    ``value``, no nulls."""
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        if group.num_rows == 0:
            continue
        stats = group.column(leaf).statistics
        if stats is None or not stats.has_min_max or stats.null_count != 0:
            return False
        low, high = stats.min, stats.max
        if isinstance(low, bytes):
            low, high = low.decode("utf-8", "replace"), high.decode("utf-8", "replace")
        if low != value or high != value:
            return False
    return True


def _writer(backend: Any, staged: bool) -> Any:
    """The backend's ``open_write``, or its ``open_write_staged`` for keys of a sync's staging."""
    return backend.open_write_staged if staged else backend.open_write


def copy_files(backend: Any, keys: Sequence[str], filesystem: Any, paths: Sequence[str],
               staged: bool = False) -> int:
    """Copy each of ``paths`` to the matching key of ``backend``, byte for byte; returns bytes.
    ``staged``: see :meth:`CheckedFiles.copy`."""
    total = 0
    open_write = _writer(backend, staged)
    for path, key in zip(paths, keys, strict=True):
        with open_write(key) as out:
            if _local(filesystem):
                fd = os.open(path, os.O_RDONLY)
                try:
                    total += _copy_fd(fd, os.fstat(fd).st_size, out)
                finally:
                    os.close(fd)
            else:
                with filesystem.open_input_stream(path) as src:
                    while True:
                        chunk = src.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        total += len(chunk)
    return total


def _server_side(filesystem: Any, backend: Any) -> str | None:
    """The S3 service of ``backend`` when files of ``filesystem`` can be copied into it
    server-side (``filesystem`` a pyarrow ``S3FileSystem``, ``backend`` an S3 backend, both on
    the same S3 service: see :meth:`bdc.backends.s3.S3Backend.same_service`), else ``None``."""
    if _local(filesystem):
        return None
    from bdc.backends.s3 import S3Backend

    if not isinstance(backend, S3Backend) or not backend.same_service(filesystem):
        return None
    return backend.service


#: (S3 service, source bucket, cache bucket) where server-side copies were refused: streamed.
_refused: set[tuple[str, str, str]] = set()
_refused_lock = threading.Lock()


def _copy_server_side(backend: Any, service: str, path: str, key: str) -> bool:
    """Copy the S3 filesystem's ``path`` (``bucket/key``) to ``key`` of ``backend`` server-side;
    ``False`` when it is to be streamed instead: the service refused it (:func:`_refusal`; then
    this process streams every later file from that bucket into the cache's bucket, see
    :func:`_refuse`), or the object was not found (the stream reports it). Transient failures
    (throttling, 5xx, an unreachable endpoint) are raised: the run's retry policy retries them."""
    bucket, _, source_key = path.removeprefix("s3://").partition("/")
    where = (service, bucket, backend.bucket)
    if not bucket or not source_key or where in _refused:
        return False
    try:
        backend.copy_from(bucket, source_key, key)
    except ObjectNotFoundError:
        return False  # streamed: the stream reports the missing file
    except Exception as exc:
        if not _refusal(exc):
            raise
        _refuse(where, exc)
        return False
    return True


def _refusal(exc: BaseException) -> bool:
    """Whether a failed server-side copy is a refusal (AccessDenied, NoSuchBucket, NotImplemented,
    InvalidRequest, ...: the copy is made by streaming instead), not a transient failure (what
    :func:`bdc.runner.retry.is_transient` retries, or an unreachable endpoint)."""
    from bdc.runner.retry import is_transient

    return not isinstance(exc, BackendUnavailableError) and not is_transient(exc)


def _refuse(where: tuple[str, str, str], exc: BaseException) -> None:
    """Remember that ``where``'s server-side copies are refused; the first time, say so and why."""
    with _refused_lock:
        first = where not in _refused
        _refused.add(where)
    if first:
        import logging

        service, source, target = where
        logging.getLogger(__name__).warning(
            "server-side copies from s3://%s into s3://%s (%s) failed, streaming the files through "
            "this machine instead: %s", source, target, service, exc)


def _copy_fd(fd: int, size: int, out: Any) -> int:
    """The first ``size`` bytes of the local file open as ``fd`` into ``out``: ``sendfile`` into a
    local file (kernel copy), else a chunked copy. Reads at offsets: ``fd``'s own offset is not used."""
    try:
        out_fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        out_fd = None
    if out_fd is not None and hasattr(os, "sendfile"):
        sent = 0
        try:
            while sent < size:
                n = os.sendfile(out_fd, fd, sent, size - sent)
                if n == 0:
                    break
                sent += n
            out.seek(sent)
            return sent
        except OSError:
            out.seek(0)
            out.truncate()
    total = 0
    while total < size:
        chunk = os.pread(fd, min(_CHUNK, size - total), total)
        if not chunk:
            break
        out.write(chunk)
        total += len(chunk)
    return total


def read_files(filesystem: Any, paths: Sequence[str]) -> Iterator[Any]:
    """The files' record batches, every batch with the union (by name) of the files' schemas."""
    import pyarrow as pa

    files = [_open_footer(filesystem, p) for p in paths]
    if not files:
        return
    schema = pa.unify_schemas([f.schema_arrow for f in files], promote_options="permissive")
    for parquet in files:
        for batch in parquet.iter_batches():
            columns = []
            for field in schema:
                index = batch.schema.get_field_index(field.name)
                column = batch.column(index) if index >= 0 else pa.nulls(batch.num_rows, field.type)
                columns.append(column if column.type.equals(field.type) else column.cast(field.type))
            yield pa.RecordBatch.from_arrays(columns, schema=schema)
