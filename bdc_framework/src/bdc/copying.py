"""Publishing parquet files that already exist (a mirror's source files) by copying their bytes.

A build that returns :class:`bdc.build.ParquetFiles` gets its files copied as they are when their
footers show they already are what the table publishes (:func:`conforming`): the declared columns
with their declared types, the partition key as text equal to the partition value in every row
group. Copying is a byte copy (``sendfile`` between local files), no decoding or encoding; any
other case is rewritten through the normal conform-and-encode path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from bdc.spec import TableSpec

__all__ = ["conforming", "copy_files", "read_files"]

_CHUNK = 8 * 1024 * 1024


def _local(filesystem: Any) -> bool:
    """Whether ``filesystem`` names local paths (``None`` or pyarrow's ``LocalFileSystem``): those
    files are read and copied with the operating system's own calls (``sendfile``)."""
    if filesystem is None:
        return True
    import pyarrow.fs as pafs

    return isinstance(filesystem, pafs.LocalFileSystem)


def _open_footer(filesystem: Any, path: str) -> Any:
    import pyarrow.parquet as pq

    if _local(filesystem):
        return pq.ParquetFile(path)
    return pq.ParquetFile(filesystem.open_input_file(path))


def _read_footer(filesystem: Any, path: str) -> tuple[Any, Any]:
    """``(parquet metadata, Arrow schema)`` of one file, reading only its footer.

    Uses pyarrow's footer reader directly: ``pq.ParquetFile`` also maps every leaf column to its
    path in a Python loop, which for a mirror's 100-column files costs a third of the footer
    read and, unlike parsing the footer, holds the GIL. (``pq.ParquetFile`` if that reader moves.)
    """
    import pyarrow as pa

    source = pa.OSFile(path) if _local(filesystem) else filesystem.open_input_file(path)
    try:
        try:
            from pyarrow._parquet import ParquetReader
        except ImportError:  # pragma: no cover - another pyarrow layout
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(source)
            return parquet.metadata, parquet.schema_arrow
        reader = ParquetReader()
        reader.open(source)
        return reader.metadata, reader.schema_arrow
    finally:
        source.close()


def _declared(spec: TableSpec) -> tuple[tuple[str, Any], ...]:
    """``(name, Arrow type)`` of each declared column (made once per spec)."""
    found = _declared_cache.get(spec.name)
    if found is None or found[0] is not spec.columns:
        found = (spec.columns, tuple((c.name, c.arrow_type()) for c in spec.columns))
        _declared_cache[spec.name] = found
    return found[1]


_declared_cache: dict[str, tuple[Any, tuple[tuple[str, Any], ...]]] = {}


def conforming(spec: TableSpec, value: str | None, filesystem: Any, paths: Sequence[str]) -> list[Any] | None:
    """The parquet metadata of each file if every one can be published as it is, else ``None``.

    Reads only the footers. A file conforms when it has every declared column with the declared
    Arrow type (text may be ``large_string``, see :func:`_same_type`), no undeclared column unless the spec allows extras, no column name twice, and
    (``value``) the partition key column as text whose statistics show exactly ``value`` and no
    nulls in every row group.
    """
    import pyarrow as pa

    declared = _declared(spec)
    names = {name for name, _type in declared}
    found = []
    for path in paths:
        try:
            meta, schema = _read_footer(filesystem, path)
        except (OSError, pa.ArrowInvalid):
            return None  # unreadable here: the rewrite path reports it properly
        present = schema.names
        index = {name: i for i, name in enumerate(present)}
        if len(index) != len(present):
            return None
        for name, type_ in declared:
            i = index.get(name)
            if i is None or not _same_type(schema.field(i).type, type_):
                return None
        if not spec.extra_columns and index.keys() - names:
            return None
        if value is not None and not _only_value(meta, schema, index, spec.partition_key or "", value):
            return None
        found.append(meta)
    return found


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


def _only_value(meta: Any, schema: Any, index: dict[str, int], column: str, value: str) -> bool:
    """Whether every row group's statistics show ``column`` holding exactly ``value``, no nulls."""
    import pyarrow as pa

    i = index.get(column)
    if i is None or not (pa.types.is_string(schema.field(i).type) or pa.types.is_large_string(schema.field(i).type)):
        return False
    leaf = _leaf(meta, index, column)
    if leaf is None:
        return False
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


def copy_files(backend: Any, keys: Sequence[str], filesystem: Any, paths: Sequence[str]) -> int:
    """Copy each of ``paths`` to the matching key of ``backend``, byte for byte; returns bytes."""
    total = 0
    for path, key in zip(paths, keys, strict=True):
        with backend.open_write(key) as out:
            if _local(filesystem):
                with open(path, "rb") as src:
                    total += _copy_local(src, out)
            else:
                with filesystem.open_input_stream(path) as src:
                    while True:
                        chunk = src.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        total += len(chunk)
    return total


def _copy_local(src: Any, out: Any) -> int:
    """``sendfile`` from one local file to another (kernel copy), else a chunked copy."""
    try:
        out_fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        out_fd = None
    if out_fd is not None and hasattr(os, "sendfile"):
        size = os.fstat(src.fileno()).st_size
        sent = 0
        try:
            while sent < size:
                n = os.sendfile(out_fd, src.fileno(), sent, size - sent)
                if n == 0:
                    break
                sent += n
            out.seek(sent)
            return sent
        except OSError:
            src.seek(0)
            out.seek(0)
            out.truncate()
    total = 0
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            return total
        out.write(chunk)
        total += len(chunk)


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
