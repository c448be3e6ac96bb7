"""Turning what a build returns into Arrow data that matches the table's declared schema.

Builds may return a pandas DataFrame, a pyarrow Table or RecordBatch, an iterable of record
batches (streamed), a list of row dicts, or ``None`` (no rows). :func:`conform` checks the
declared columns (missing or undeclared ones are a :class:`~bdc.errors.SchemaMismatchError`
naming the table and its plugin), casts to the declared types and puts the columns in order.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from bdc.errors import SchemaMismatchError
from bdc.spec import TableSpec

__all__ = ["conform", "conform_batches", "conform_encoded", "encode_parquet", "to_arrow", "empty_table",
           "write_parquet", "parquet_options", "PARQUET_OPTIONS"]

#: How every parquet object is written (and :func:`parquet_options`: which columns get a dictionary).
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_statistics": True}


def _who(spec: TableSpec) -> str:
    return f"table {spec.name!r}" + (f" (plugin {spec.plugin})" if spec.plugin else "")


def to_arrow(data: Any, spec: TableSpec | None = None) -> Any:
    """Any supported build result as a ``pyarrow.Table`` (not conformed yet)."""
    import pyarrow as pa

    if data is None:
        return pa.table({})
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, list):
        if not data:
            return pa.table({})
        if spec is not None and spec.columns and not spec.extra_columns:
            unknown = sorted({k for row in data for k in row} - set(spec.column_names))
            if unknown:
                raise SchemaMismatchError(f"{_who(spec)} returned undeclared columns: {', '.join(unknown)}")
            return pa.Table.from_pylist(data, schema=spec.arrow_schema())
        return pa.Table.from_pylist(data)
    # pandas before the duck-typed ``to_arrow``: ``hasattr(frame, name)`` makes pandas search its columns
    if type(data).__module__.startswith("pandas"):
        if len(data.columns) == 0:
            return pa.table({})
        return _from_pandas(data)
    if hasattr(data, "to_arrow") and not hasattr(data, "columns"):
        return data.to_arrow()
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    raise SchemaMismatchError(
        f"{_who(spec) if spec else 'build'} returned {type(data).__name__}; expected a DataFrame, "
        f"a pyarrow Table, record batches or a list of row dicts"
    )


def _from_pandas(frame: Any) -> Any:
    """A DataFrame as a pyarrow Table, without its index.

    Plain frames (unique text column names) are converted column by column, each column exactly
    as ``pa.array(series, from_pandas=True)`` converts it, but from the frame's column values
    (no Series made per column) and without ``Table.from_pandas``' frame-level bookkeeping (pandas
    metadata that :func:`conform` drops anyway): for a small partition those cost more than the
    conversion itself. Anything else, and any conversion error, goes through
    ``Table.from_pandas`` (whose errors name the column).
    """
    import pyarrow as pa

    names = frame.columns.tolist()  # (``Index.is_unique`` alone costs ~0.1 ms on a text index)
    if all(type(name) is str for name in names) and len(set(names)) == len(names):
        try:
            return pa.Table.from_arrays(_pandas_arrays(frame, len(names)), names=names)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError,
                AttributeError, IndexError, KeyError):  # (the last three: a pandas without these internals)
            pass
    return pa.Table.from_pandas(frame, preserve_index=False)


#: Arrow types of tz-aware pandas datetime dtypes (as ``pa.array(series)`` types them).
_tz_types: dict[Any, Any] = {}


def _pandas_arrays(frame: Any, count: int) -> list[Any]:
    """The ``count`` columns of a frame as Arrow arrays, each as ``pa.array(series, from_pandas=True)``
    would make it (what pyarrow does with a Series, done on the column's values)."""
    import numpy as np
    import pyarrow as pa

    column_values = getattr(getattr(frame, "_mgr", None), "iget_values", None)  # no Series per column
    arrays = []
    for i in range(count):
        values = column_values(i) if column_values is not None else None
        if hasattr(values, "__arrow_array__"):  # arrow-backed and masked columns: their own conversion
            arrays.append(pa.array(values, from_pandas=True))
        elif type(values) is np.ndarray and values.ndim == 1:  # what pyarrow takes from a numpy-backed Series
            arrays.append(pa.array(values, from_pandas=True))
        elif getattr(getattr(values, "dtype", None), "kind", None) in ("M", "m") and getattr(values, "ndim", 0) == 1:
            dtype = values.dtype
            if getattr(values, "tz", None) is None:  # naive: a Series gives pyarrow its numpy values
                arrays.append(pa.array(np.asarray(values), from_pandas=True))
            else:  # tz-aware: pyarrow converts a Series's UTC values, typed with the zone
                typ = _tz_types.get(dtype)
                if typ is None:
                    typ = _tz_types.setdefault(dtype, pa.timestamp(dtype.unit, dtype.tz))
                arrays.append(pa.array(values.to_numpy(f"datetime64[{dtype.unit}]"), type=typ, from_pandas=True))
        else:  # categoricals, periods, intervals...: as pyarrow converts the Series
            series = frame.iloc[:, i]
            values = series.array
            arrays.append(pa.array(values if hasattr(values, "__arrow_array__") else series, from_pandas=True))
    if arrays and any(len(a) != len(frame) for a in arrays):
        raise ValueError("column lengths differ from the frame's")
    return arrays


def empty_table(spec: TableSpec, columns: list[str] | None = None) -> Any:
    """A table with the declared schema (optionally only ``columns``) and no rows."""
    schema = spec.arrow_schema()
    if columns is not None:
        import pyarrow as pa

        schema = pa.schema([schema.field(c) for c in columns if c in schema.names])
    return schema.empty_table()


def _cast(spec: TableSpec, name: str, column: Any, target: Any) -> Any:
    import pyarrow as pa

    if column.type == target:
        return column
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), type=target)
    import pyarrow.compute as pc  # only when a cast is needed (its import costs ~0.1 s)

    try:
        safe = not (pa.types.is_timestamp(target) and pa.types.is_timestamp(column.type))
        if pa.types.is_string(target) and not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            if pa.types.is_floating(column.type):
                raise pa.ArrowInvalid("floats are not ids")
        return pc.cast(column, target, safe=safe)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise SchemaMismatchError(
            f"{_who(spec)}: column {name!r} of type {column.type} cannot be stored as {target}: {exc}"
        ) from exc


class _Declared:
    """A spec's declared columns, in the forms :func:`conform` compares with (made once per spec)."""

    __slots__ = ("columns", "names", "types", "schema", "name_set")

    def __init__(self, columns: tuple[Any, ...]):
        import pyarrow as pa

        self.columns = columns
        self.names = [c.name for c in columns]
        self.types = [c.arrow_type() for c in columns]
        self.schema = pa.schema([pa.field(n, t) for n, t in zip(self.names, self.types)])
        self.name_set = frozenset(self.names)


_declared: dict[int, _Declared] = {}


def _declared_of(spec: TableSpec) -> _Declared:
    """The declared columns of ``spec`` (cached by the identity of its column tuple)."""
    found = _declared.get(id(spec.columns))
    if found is None or found.columns is not spec.columns:
        if len(_declared) > 512:
            _declared.clear()
        found = _declared[id(spec.columns)] = _Declared(spec.columns)
    return found


def conform(spec: TableSpec, data: Any, partition_value: str | None = None) -> Any:
    """Check and cast a build result to the spec's schema; returns a ``pyarrow.Table``.

    The result has the declared columns in the declared order, or, for a spec that keeps
    undeclared columns (``extra_columns``) and got some, every column in the build's order (the
    declared ones cast where they stand): a mirror keeps its source's column order.

    For a partition, the partition column is set to ``partition_value`` (as text) when the build
    left it out (appended last), and checked when it is present.
    """
    import pyarrow as pa

    table = to_arrow(data, spec)
    if not spec.columns:
        return table
    declared = _declared_of(spec)
    if table.num_columns == 0:
        table = declared.schema.empty_table()
    present = table.column_names
    if len(set(present)) != len(present):
        twice = sorted({c for c in present if present.count(c) > 1})
        raise SchemaMismatchError(f"{_who(spec)} returned a column name more than once: {', '.join(twice)}")
    check_key = spec.partitioned and partition_value is not None
    if check_key and spec.partition_key not in present:
        column = pa.repeat(pa.scalar(partition_value, pa.string()), table.num_rows)
        table = table.append_column(spec.partition_key, column)
        present.append(spec.partition_key)
        check_key = False  # made here: nothing to check
    missing = [c for c in declared.names if c not in present]
    if missing:
        raise SchemaMismatchError(f"{_who(spec)} returned data without the declared columns: {', '.join(missing)}")
    extra = [c for c in present if c not in declared.name_set]
    if extra and not spec.extra_columns:
        raise SchemaMismatchError(f"{_who(spec)} returned undeclared columns: {', '.join(extra)}")
    if not extra and present == declared.names and table.schema.equals(declared.schema, check_metadata=True):
        out = table  # already the declared columns, types and order, without metadata
    elif extra:  # a table that keeps undeclared columns keeps the build's column order too
        targets = dict(zip(declared.names, declared.types))
        arrays, fields = [], []
        for i, name in enumerate(present):
            target = targets.get(name)
            if target is None:
                arrays.append(table.column(i))
                fields.append(table.schema.field(i))
            else:
                arrays.append(_cast(spec, name, table.column(i), target))
                fields.append(pa.field(name, target))
        out = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    else:
        arrays = [_cast(spec, name, table.column(name), target) for name, target in zip(declared.names, declared.types)]
        out = pa.Table.from_arrays(arrays, schema=declared.schema)
    if check_key and out.num_rows:
        _check_key(spec, out.column(spec.partition_key), partition_value)
    return out


def _check_key(spec: TableSpec, column: Any, value: str) -> None:
    """Every row of a partition carries its value (rows with no value are let through)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(column) == 0:
        return
    if column.null_count == 0:
        # min and max: no array built from a Python value (that imports pandas, ~0.2 s holding
        # the GIL, for the first partition that needs it)
        low_high = pc.min_max(column)
        if low_high["min"].as_py() == value and low_high["max"].as_py() == value:
            return

    wrong = pc.sum(pc.not_equal(column, pa.scalar(value))).as_py()
    if wrong:
        raise SchemaMismatchError(
            f"{_who(spec)}: {wrong} rows of partition {spec.partition_key}={value!r} carry another {spec.partition_key}"
        )


def conform_batches(spec: TableSpec, batches: Iterable[Any], partition_value: str | None = None) -> Iterator[Any]:
    """Conform a stream of record batches one by one (for large partitions)."""
    for batch in batches:
        table = conform(spec, batch, partition_value)
        yield from table.to_batches()


#: Tables up to this many rows (in) and bytes (out) are conformed and encoded one at a time per process.
SMALL_ROWS = 100_000
SMALL_BYTES = 8 * 1024 * 1024
_small_turns = threading.RLock()


def encode_parquet(table: Any) -> Any:
    """A table as the bytes of a parquet file (a ``pyarrow.Buffer``), written with :func:`parquet_options`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **parquet_options(table.schema))
    return sink.getvalue()


def parquet_options(schema: Any) -> dict[str, Any]:
    """:data:`PARQUET_OPTIONS`, with dictionary encoding for the text and binary columns only.

    Numbers, times and booleans are stored plainly (then compressed): a dictionary of mostly
    distinct values (measurements, timestamps) costs more to build than the column's encoding and
    makes the file bigger. (A schema with nested columns keeps dictionaries on every column: its
    leaves are named by their paths.)
    """
    import pyarrow as pa

    dictionary = []
    for field in schema:
        typ = field.type
        if pa.types.is_nested(typ):
            return PARQUET_OPTIONS
        if (pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_binary(typ)
                or pa.types.is_large_binary(typ) or pa.types.is_dictionary(typ)):
            dictionary.append(field.name)
    return {**PARQUET_OPTIONS, "use_dictionary": dictionary}


def conform_encoded(spec: TableSpec, data: Any, partition_value: str | None = None) -> tuple[int, Any]:
    """:func:`conform` then :func:`encode_parquet`: ``(rows, parquet bytes)``, ready to store.

    Small tables (a typical partition) take turns here, one thread at a time: their conversion is
    Python-bound (it holds the GIL), so threads interleaving it only multiply GIL hand-offs, which
    cost more CPU than the work itself (measured: ~1/3 more wall time for 500-row partitions on
    16 threads). Encoding and storing the bytes happen after, in parallel (parquet compression
    releases the GIL).
    """
    try:
        small = len(data) <= SMALL_ROWS
    except TypeError:  # None or a lazy object: decide on the conformed size
        small = False
    with _small_turns if small else contextlib.nullcontext():
        table = conform(spec, data, partition_value)
    return table.num_rows, encode_parquet(table)  # the encoder releases the GIL: in parallel


def write_parquet(table_or_batches: Any, fh: Any, schema: Any = None) -> int:
    """Write a table (or a stream of batches with ``schema``) as parquet to ``fh``; returns rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(table_or_batches, pa.Table):
        # encode into Arrow's own buffer, then one write: with a Python file as the sink, the
        # encoder calls back into Python (taking the GIL) for every page
        fh.write(encode_parquet(table_or_batches))
        return table_or_batches.num_rows
    rows = 0
    writer = None
    try:
        for batch in table_or_batches:
            if writer is None:
                schema = schema or batch.schema
                writer = pq.ParquetWriter(fh, schema, **parquet_options(schema))
            if batch.schema != schema:
                batch = batch.cast(schema)
            writer.write_batch(batch)
            rows += batch.num_rows
        if writer is None:
            if schema is None:
                raise ValueError("an empty stream needs a schema to write")
            writer = pq.ParquetWriter(fh, schema, **parquet_options(schema))
    finally:
        if writer is not None:
            writer.close()
    return rows
