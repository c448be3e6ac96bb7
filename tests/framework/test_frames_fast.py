"""The fast pandas → Arrow conversion and conform of :mod:`bdc.frames` give what the plain ones give.

``_from_pandas`` reads a frame's column values without making a Series per column, and
:func:`bdc.frames.conform` skips the rebuild when a table already has the declared schema: the
references below are the straightforward versions (a Series per column; a cast and a rebuild for
every column), and every kind of column a build may return must come out the same, down to the
parquet bytes.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from bdc import frames
from bdc.errors import SchemaMismatchError
from bdc.spec import TableSpec


def reference_from_pandas(frame: pd.DataFrame) -> pa.Table:
    """A Series per column, converted as pyarrow converts a Series (the previous implementation)."""
    names = list(frame.columns)
    if all(type(n) is str for n in names) and len(set(names)) == len(names):
        try:
            arrays = {}
            for name, series in frame.items():
                values = series.array
                arrays[name] = pa.array(values if hasattr(values, "__arrow_array__") else series, from_pandas=True)
            return pa.table(arrays)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
            pass
    return pa.Table.from_pandas(frame, preserve_index=False)


def reference_conform(spec: TableSpec, data: Any, partition_value: str | None = None) -> pa.Table:
    """Every column cast (when its type differs) and the table rebuilt with the declared schema."""
    table = reference_from_pandas(data) if isinstance(data, pd.DataFrame) else frames.to_arrow(data, spec)
    if table.num_columns == 0:
        table = frames.empty_table(spec)
    if spec.partitioned and partition_value is not None and spec.partition_key not in table.column_names:
        table = table.append_column(spec.partition_key, pa.array([partition_value] * table.num_rows, pa.string()))
    extra = [c for c in table.column_names if c not in spec.column_names]
    arrays, fields = [], []
    for col in spec.columns:
        arrays.append(frames._cast(spec, col.name, table.column(col.name), col.arrow_type()))
        fields.append(pa.field(col.name, col.arrow_type()))
    for name in extra:
        arrays.append(table.column(name))
        fields.append(table.schema.field(name))
    out = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    if spec.partitioned and partition_value is not None and out.num_rows:
        wrong = pc.sum(pc.not_equal(out.column(spec.partition_key), pa.scalar(partition_value))).as_py()
        if wrong:
            raise SchemaMismatchError(f"{wrong} rows carry another key")
    return out


def _zones() -> list[Any]:
    zones: list[Any] = ["UTC", "Europe/Paris", dt.timezone.utc, dt.timezone(dt.timedelta(hours=-5))]
    try:
        import zoneinfo

        zones.append(zoneinfo.ZoneInfo("America/New_York"))
    except Exception:  # pragma: no cover - no tz database
        pass
    try:
        import pytz

        zones.append(pytz.timezone("Asia/Tokyo"))
    except ImportError:  # pragma: no cover
        pass
    return zones


def frames_to_check() -> dict[str, pd.DataFrame]:
    """Frames with every kind of column a build may hand back."""
    n = 7
    base = pd.Timestamp("2024-03-01 12:00:00")
    out: dict[str, pd.DataFrame] = {
        "text (default str dtype)": pd.DataFrame({"a": [f"x{i}" for i in range(n)], "b": ["y"] * n}),
        "text with missing": pd.DataFrame({"a": ["x", None, "z", np.nan, "w", "v", None]}),
        "object text": pd.DataFrame({"a": np.array([f"x{i}" for i in range(n)], dtype=object)}),
        "object mixed none": pd.DataFrame({"a": np.array(["x", None, "z", None, "w", "v", "u"], dtype=object)}),
        "ints": pd.DataFrame({"i8": np.arange(n, dtype="int8"), "i64": np.arange(n), "u32": np.arange(n, dtype="uint32")}),
        "floats with nan": pd.DataFrame({"f": [1.5, np.nan, 3.0, np.inf, -0.0, 2.0, np.nan],
                                         "f32": np.arange(n, dtype="float32")}),
        "nullable ints and bools": pd.DataFrame({"I": pd.array([1, None, 3, 4, None, 6, 7], dtype="Int64"),
                                                 "B": pd.array([True, None, False] + [True] * 4, dtype="boolean")}),
        "bools": pd.DataFrame({"b": np.array([True, False] * 3 + [True])}),
        "naive datetimes ns": pd.DataFrame({"t": pd.date_range(base, periods=n, freq="h")}),
        "naive datetimes us with NaT": pd.DataFrame({"t": pd.to_datetime([base, None, base] * 2 + [base]).as_unit("us")}),
        "dates as objects": pd.DataFrame({"d": [dt.date(2024, 1, i + 1) for i in range(n)]}),
        "timedeltas": pd.DataFrame({"d": pd.to_timedelta(np.arange(n), unit="s")}),
        "categorical": pd.DataFrame({"c": pd.Categorical(["a", "b", "a", "c", "a", "b", "c"])}),
        "lists": pd.DataFrame({"l": [[1, 2], [], None, [3], [4, 5, 6], [7], [8]]}),
        "dicts": pd.DataFrame({"s": [{"k": i, "v": str(i)} for i in range(n)]}),
        "bytes": pd.DataFrame({"y": [b"a", b"bc", None, b"", b"x", b"y", b"z"]}),
        "decimals": pd.DataFrame({"d": [decimal.Decimal("1.10")] * n}),
        "arrow dtypes": pd.DataFrame({"s": pd.array(["a"] * n, dtype="string[pyarrow]"),
                                      "i": pd.array(range(n), dtype="int64[pyarrow]")}),
        "python str dtype": pd.DataFrame({"s": pd.array(["a", None] * 3 + ["b"], dtype="string[python]")}),
        "empty rows": pd.DataFrame({"a": pd.Series([], dtype="str"), "f": pd.Series([], dtype="float64")}),
        "non-default index": pd.DataFrame({"a": list("abcdefg"), "f": np.arange(n) * 1.0}, index=list("ABCDEFG")),
        "mixed object (falls back)": pd.DataFrame({"m": np.array(["x", 1, 2.5, None, "y", "z", "w"], dtype=object)}),
        "periods": pd.DataFrame({"p": pd.period_range("2024-01", periods=n, freq="M")}),
        "intervals": pd.DataFrame({"iv": pd.interval_range(0, n)}),
        "duplicate names": pd.DataFrame(np.arange(2 * n).reshape(n, 2), columns=["a", "a"]),
        "non-text names": pd.DataFrame({0: np.arange(n), 1: list("abcdefg")}),
        "multiindex columns": pd.DataFrame(np.arange(2 * n).reshape(n, 2),
                                           columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")])),
    }
    for i, zone in enumerate(_zones()):
        stamps = pd.date_range(base, periods=n, freq="D", tz=zone)
        out[f"tz-aware {zone!s} ({i})"] = pd.DataFrame({"t": stamps, "tus": stamps.as_unit("us")})
    out["tz-aware with NaT"] = pd.DataFrame({"t": pd.to_datetime([base, None] * 3 + [base], utc=True)})
    # frames whose columns are views, slices or unconsolidated blocks
    wide = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20), "c": [f"s{i}" for i in range(20)]})
    out["row slice"] = wide.iloc[3:10]
    out["strided rows"] = wide.iloc[::3]
    out["column subset"] = wide[["c", "a"]]
    grown = wide.copy()
    for k in range(5):
        grown[f"extra{k}"] = np.arange(20.0) * k  # one block per inserted column
    out["unconsolidated blocks"] = grown
    out["2d block of floats"] = pd.DataFrame(np.random.default_rng(1).random((n, 4)), columns=list("wxyz"))
    return out


FRAMES = frames_to_check()


def _same(left: pa.Table, right: pa.Table) -> None:
    assert left.schema.equals(right.schema, check_metadata=True), (left.schema, right.schema)
    assert left.equals(right)


@pytest.mark.parametrize("label", list(FRAMES))
def test_conversion_matches_a_series_per_column(label: str) -> None:
    frame = FRAMES[label]
    try:
        expected = reference_from_pandas(frame)
    except Exception as exc:  # what the reference refuses, the fast path refuses the same way
        with pytest.raises(type(exc)):
            frames._from_pandas(frame)
        return
    _same(frames._from_pandas(frame), expected)


@pytest.mark.parametrize("label", ["text (default str dtype)", "floats with nan", "tz-aware with NaT", "categorical",
                                   "unconsolidated blocks", "row slice"])
def test_conversion_without_pandas_internals_goes_through_series(label: str, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = FRAMES[label]
    monkeypatch.delattr(type(frame._mgr), "iget_values")
    _same(frames._from_pandas(frame), reference_from_pandas(frame))


def _qc_spec(**extra: Any) -> TableSpec:
    columns = [("subject_id", "string"), ("name", "string"), ("value", "float64"), ("passed", "bool"),
               ("n", "int64"), ("evaluated_at", "timestamp[us, tz=UTC]")]
    return TableSpec("frames_fast_qc", "test table", columns, partition_key="subject_id",
                     partitions=lambda ctx: [], build_partition=lambda ctx, v: None, **extra)


def _qc_frame(rows: int = 50, key: str | None = "0001234") -> pd.DataFrame:
    rng = np.random.default_rng(rows)
    frame = pd.DataFrame({
        "name": [f"n{i}" for i in range(rows)],
        "value": rng.random(rows),
        "passed": rng.random(rows) > 0.5,
        "n": np.arange(rows),
        "evaluated_at": pd.to_datetime(np.datetime64("2024-01-01", "us")
                                       + rng.integers(0, 10**9, rows).astype("timedelta64[us]"), utc=True),
    })
    if key is not None:
        frame.insert(0, "subject_id", np.full(rows, key, dtype=object))
    return frame


VARIANTS: dict[str, Any] = {
    "frame with key": lambda: _qc_frame(),
    "frame without key": lambda: _qc_frame(key=None),
    "columns out of order": lambda: _qc_frame()[["value", "n", "subject_id", "evaluated_at", "passed", "name"]],
    "other types to cast": lambda: _qc_frame().astype({"n": "int32", "value": "float32"}).assign(
        evaluated_at=lambda f: f.evaluated_at.dt.tz_convert("Europe/Paris").dt.as_unit("ns")),
    "arrow table with metadata": lambda: pa.Table.from_pandas(_qc_frame()),
    "arrow table already conformed": lambda: reference_conform(_qc_spec(), _qc_frame(), "0001234"),
    "record batch": lambda: pa.RecordBatch.from_pandas(_qc_frame(), preserve_index=False),
    "row dicts": lambda: _qc_frame().to_dict("records"),
    "empty frame": lambda: _qc_frame(0),
    "empty frame of typed columns": lambda: _qc_frame(0).astype({"name": "str"}),
    "no columns": lambda: pd.DataFrame(),
    "none": lambda: None,
    "key with nulls": lambda: _qc_frame().assign(subject_id=["0001234", None] * 25),
    "non-nullable field": lambda: pa.table(reference_conform(_qc_spec(), _qc_frame(), "0001234").columns,
                                           schema=pa.schema([pa.field(f.name, f.type, nullable=False) for f in
                                                             reference_conform(_qc_spec(), _qc_frame(),
                                                                               "0001234").schema])),
    "field metadata": lambda: (lambda t: t.cast(pa.schema([f.with_metadata({"k": "v"}) for f in t.schema])))(
        reference_conform(_qc_spec(), _qc_frame(), "0001234")),
    "chunked key": lambda: pa.concat_tables([reference_conform(_qc_spec(), _qc_frame(10), "0001234")] * 3),
}


@pytest.mark.parametrize("label", list(VARIANTS))
def test_conform_and_encoded_bytes_match_the_reference(label: str) -> None:
    spec = _qc_spec()
    try:
        expected = reference_conform(spec, VARIANTS[label](), "0001234")
    except SchemaMismatchError:
        with pytest.raises(SchemaMismatchError):
            frames.conform(spec, VARIANTS[label](), "0001234")
        return
    got = frames.conform(spec, VARIANTS[label](), "0001234")
    _same(got, expected)
    rows, payload = frames.conform_encoded(spec, VARIANTS[label](), "0001234")
    assert rows == expected.num_rows
    assert payload.to_pybytes() == frames.encode_parquet(expected).to_pybytes()


def test_extra_columns_kept_in_the_builds_order_with_the_declared_ones_cast_in_place() -> None:
    spec = _qc_spec(extra_columns=True)
    data = _qc_frame().assign(zz=1.5, aa="x").astype({"n": "int32"})
    order = ["zz", "value", "n", "aa", "subject_id", "evaluated_at", "passed", "name"]
    got = frames.conform(spec, data[order], "0001234")
    assert got.column_names == order  # a mirror keeps its source's column order
    expected = reference_conform(spec, _qc_frame().assign(zz=1.5, aa="x"), "0001234")
    _same(got.select(expected.column_names), expected)  # the same columns, types and values
    assert got.schema.field("n").type == pa.int64()
    # without extras, the declared order
    assert frames.conform(_qc_spec(extra_columns=True), _qc_frame()[order[1:3] + order[4:]],
                          "0001234").column_names == expected.column_names[:6]


def test_a_column_name_twice_is_refused() -> None:
    table = pa.Table.from_arrays([pa.array(["0001234"]), pa.array([1.0]), pa.array([2.0])],
                                 names=["subject_id", "zz", "zz"])
    for spec in (_qc_spec(extra_columns=True), _qc_spec()):
        with pytest.raises(SchemaMismatchError, match="column name more than once: zz"):
            frames.conform(spec, table, "0001234")


@pytest.mark.parametrize("data", [
    pytest.param(lambda: _qc_frame().assign(subject_id="0009999"), id="another key everywhere"),
    pytest.param(lambda: _qc_frame().assign(subject_id=["0001234"] * 49 + ["0009999"]), id="one other key"),
])
def test_rows_of_another_partition_are_refused(data: Any) -> None:
    with pytest.raises(SchemaMismatchError, match="carry another subject_id"):
        frames.conform(_qc_spec(), data(), "0001234")


@pytest.mark.parametrize("data,message", [
    (lambda: _qc_frame().drop(columns=["value"]), "without the declared columns: value"),
    (lambda: _qc_frame().assign(zz=1), "undeclared columns: zz"),
    (lambda: _qc_frame().assign(name=np.arange(50) * 0.5), "cannot be stored as string"),
    (lambda: _qc_frame().assign(n=["x"] * 50), "cannot be stored as int64"),
])
def test_schema_errors_are_unchanged(data: Any, message: str) -> None:
    with pytest.raises(SchemaMismatchError, match=message):
        frames.conform(_qc_spec(), data(), "0001234")


def test_the_declared_schema_follows_a_new_spec() -> None:
    """The cached declared columns belong to one spec's column tuple: a new spec gets its own."""
    first = _qc_spec()
    frames.conform(first, _qc_frame(), "0001234")
    columns = [("subject_id", "string"), ("name", "string"), ("value", "float32"), ("passed", "bool"),
               ("n", "int32"), ("evaluated_at", "timestamp[ms, tz=UTC]")]
    second = TableSpec("frames_fast_qc", "test table", columns, partition_key="subject_id",
                       partitions=lambda ctx: [], build_partition=lambda ctx, v: None)
    out = frames.conform(second, _qc_frame(), "0001234")
    assert out.schema.field("value").type == pa.float32()
    assert out.schema.field("evaluated_at").type == pa.timestamp("ms", tz="UTC")
    assert frames.conform(first, _qc_frame(), "0001234").schema.field("value").type == pa.float64()


def _encodings(payload: Any) -> dict[str, set[str]]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(pa.BufferReader(payload)).metadata
    group = meta.row_group(0)
    return {group.column(i).path_in_schema: set(group.column(i).encodings) for i in range(group.num_columns)}


def test_only_text_columns_get_a_dictionary() -> None:
    spec = _qc_spec()
    _rows, payload = frames.conform_encoded(spec, _qc_frame(), "0001234")
    encodings = _encodings(payload)
    dictionary = {name for name, found in encodings.items() if any("DICTIONARY" in e for e in found)}
    assert dictionary == {"subject_id", "name"}
    import pyarrow.parquet as pq

    assert pq.read_table(pa.BufferReader(payload)).equals(frames.conform(spec, _qc_frame(), "0001234"))


def test_nested_columns_keep_dictionaries_everywhere() -> None:
    table = pa.table({"tags": pa.array([["a", "b"], ["a"]]), "n": pa.array([1, 2])})
    assert frames.parquet_options(table.schema) == frames.PARQUET_OPTIONS
    encodings = _encodings(frames.encode_parquet(table))
    assert all(any("DICTIONARY" in e for e in found) for found in encodings.values())


# -- the thread executor's map (no future per item, results collected in batches) -------------


def test_thread_map_returns_every_result_and_error_with_its_position() -> None:
    from bdc.runner.executors import ThreadExecutor

    def work(i: int) -> int:
        if i % 7 == 3:
            raise ValueError(f"bad {i}")
        return i * i

    with ThreadExecutor(workers=4) as pool:
        got = dict(pool.map_unordered(work, range(200)))
        assert list(pool.map_unordered(work, [])) == []
        again = dict(pool.map_unordered(work, range(5)))  # the pool is reused
    assert sorted(got) == list(range(200))
    for i, result in got.items():
        if i % 7 == 3:
            assert isinstance(result, ValueError) and str(result) == f"bad {i}"
        else:
            assert result == i * i
    assert again[4] == 16


def test_thread_maps_from_several_threads_share_the_pool() -> None:
    import threading

    from bdc.runner.executors import ThreadExecutor

    results: dict[str, dict[int, Any]] = {}
    with ThreadExecutor(workers=3) as pool:
        def one(name: str, n: int) -> None:
            results[name] = dict(pool.map_unordered(lambda i: (name, i), range(n)))

        threads = [threading.Thread(target=one, args=(f"t{k}", 50 + k)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    for k in range(4):
        assert results[f"t{k}"] == {i: (f"t{k}", i) for i in range(50 + k)}


def test_a_thread_map_left_early_starts_no_more_items() -> None:
    import threading
    import time

    from bdc.runner.executors import ThreadExecutor

    started = []
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            started.append(i)
        time.sleep(0.01)
        return i

    with ThreadExecutor(workers=2) as pool:
        results = pool.map_unordered(work, range(100))
        next(results)
        results.close()
        time.sleep(0.1)
        count = len(started)
        time.sleep(0.1)
        assert len(started) == count < 10


def test_closing_the_executor_under_a_map_fails_it() -> None:
    import threading
    import time
    from concurrent.futures import CancelledError

    from bdc.runner.executors import ThreadExecutor

    pool = ThreadExecutor(workers=2)
    results = pool.map_unordered(lambda i: time.sleep(0.02) or i, range(100))
    next(results)
    threading.Timer(0.05, pool.close).start()
    with pytest.raises(CancelledError):
        for _ in results:
            pass
