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


def _open_footer(filesystem: Any, path: str) -> Any:
    import pyarrow.parquet as pq

    if filesystem is None:
        return pq.ParquetFile(path)
    return pq.ParquetFile(filesystem.open_input_file(path))


def conforming(spec: TableSpec, value: str | None, filesystem: Any, paths: Sequence[str]) -> list[Any] | None:
    """The parquet metadata of each file if every one can be published as it is, else ``None``.

    Reads only the footers. A file conforms when it has every declared column with the declared
    Arrow type, no undeclared column unless the spec allows extras, and (``value``) the partition
    key column as text whose statistics show exactly ``value`` and no nulls in every row group.
    """
    import pyarrow as pa

    declared = spec.arrow_schema()
    names = set(declared.names)
    found = []
    for path in paths:
        try:
            parquet = _open_footer(filesystem, path)
        except (OSError, pa.ArrowInvalid):
            return None  # unreadable here: the rewrite path reports it properly
        schema = parquet.schema_arrow
        for field in declared:
            index = schema.get_field_index(field.name)
            if index < 0 or not schema.field(index).type.equals(field.type):
                return None
        if not spec.extra_columns and set(schema.names) - names:
            return None
        if len(schema.names) != len(set(schema.names)):
            return None
        meta = parquet.metadata
        if value is not None and not _only_value(parquet, spec.partition_key or "", value):
            return None
        found.append(meta)
    return found


def _only_value(parquet: Any, column: str, value: str) -> bool:
    """Whether every row group's statistics show ``column`` holding exactly ``value``, no nulls."""
    import pyarrow as pa

    schema = parquet.schema_arrow
    index = schema.get_field_index(column)
    if index < 0 or not pa.types.is_string(schema.field(index).type):
        return False
    meta = parquet.metadata
    leaf = next((i for i in range(meta.num_columns) if meta.schema.column(i).path == column), None)
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
            if filesystem is None:
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
