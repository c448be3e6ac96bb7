"""Turn transform output (row dicts or DataFrames) into Arrow tables with a declared schema.

``COLUMNS`` in each transform module is a list of ``(name, type text, description)``. The type
texts are the ones the framework understands (``"string"``, ``"int64"``, ``"bool"``,
``"list<string>"``, ``"timestamp[us, tz=UTC]"``, ...), parsed by :func:`bdc.arrowtypes.arrow_type`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["Columns", "arrow_type", "arrow_schema", "column_names", "to_arrow", "to_frame"]

Columns = Sequence[tuple[str, str, str]]
"""A table's declared columns: ``(name, arrow type text, description)`` in table order."""

def arrow_type(text: str) -> pa.DataType:
    """Parse a type text (``"list<string>"``, ``"timestamp[us, tz=UTC]"``, ...) to a pyarrow type."""
    from bdc.arrowtypes import arrow_type as parse

    return parse(text)


def arrow_schema(columns: Columns) -> pa.Schema:
    """The declared columns as a ``pyarrow.Schema`` (descriptions kept as field metadata)."""
    import pyarrow as pa

    return pa.schema(
        [pa.field(name, arrow_type(type_), metadata={"description": desc}) for name, type_, desc in columns]
    )


def column_names(columns: Columns) -> list[str]:
    """The column names of ``columns``, in order."""
    return [name for name, _, _ in columns]


def to_arrow(data: Iterable[Mapping[str, Any]] | pd.DataFrame, columns: Columns) -> pa.Table:
    """Build a ``pyarrow.Table`` with exactly ``columns`` (order and types) from rows or a frame.

    Missing keys/columns become nulls; extra keys are ignored. An empty input gives an empty
    table with the declared schema.
    """
    import pandas as pd
    import pyarrow as pa

    def cell(value: Any, dtype: pa.DataType) -> Any:
        # One cell for ``pa.array``: pandas/numpy missing values become ``None``.
        if value is None:
            return None
        if pa.types.is_list(dtype):
            if isinstance(value, (str, bytes)):
                return [value]
            if isinstance(value, Iterable):
                return [cell(v, dtype.value_type) for v in value]
            return None
        try:
            if pd.isna(value):
                return None
        except (TypeError, ValueError):
            pass
        return value

    schema = arrow_schema(columns)
    if isinstance(data, pd.DataFrame):
        n = len(data)
        getters = {
            f.name: (list(data[f.name]) if f.name in data.columns else [None] * n) for f in schema
        }
    else:
        rows = list(data)
        getters = {f.name: [row.get(f.name) for row in rows] for f in schema}
    arrays = [pa.array([cell(v, f.type) for v in getters[f.name]], type=f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def to_frame(data: Iterable[Mapping[str, Any]] | pd.DataFrame, columns: Columns) -> pd.DataFrame:
    """Like :func:`to_arrow`, returned as a pandas DataFrame (list cells become numpy arrays)."""
    return to_arrow(data, columns).to_pandas()
