"""Reading published tables with DuckDB: projection and filters pushed down, partitions pruned.

Values are always bound parameters; identifiers are checked and quoted; file lists are passed
as a bound list. Local files are read by DuckDB's own parquet reader; other backends hand DuckDB
Arrow data. A failed read raises; it never becomes an empty DataFrame.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from bdc.errors import BdcError, InvalidNameError, ReadError
from bdc.names import check_column_name, quote_identifier
from bdc.spec import TableSpec

__all__ = ["Source", "cursor", "select", "where_clause", "query_error", "result_arrow"]

_lock = threading.Lock()
_connection: Any = None


def cursor() -> Any:
    """A fresh cursor on the process's DuckDB connection (connecting once costs ~20 ms)."""
    global _connection
    if _connection is None:
        with _lock:
            if _connection is None:
                import duckdb

                connection = duckdb.connect()
                try:
                    # Timestamps are declared in UTC: without this DuckDB hands them back in the
                    # machine's local zone (datetime64[us, America/Los_Angeles], "Etc/UTC", ...).
                    connection.execute("SET GLOBAL TimeZone = 'UTC'")
                except duckdb.Error:  # pragma: no cover - a DuckDB build without ICU
                    pass
                _connection = connection
    return _connection.cursor()


def result_arrow(result: Any) -> Any:
    """A DuckDB relation as a ``pyarrow.Table`` (``to_arrow_table``; ``arrow`` in older DuckDB)."""
    method = getattr(result, "to_arrow_table", None) or result.arrow
    return method()


@attrs.frozen
class Source:
    """What to scan: local parquet files, or an Arrow table (memory, remote)."""

    files: tuple[str, ...] = ()
    arrow: Any = None
    label: str = ""


def where_clause(where: Mapping[str, Any], spec: TableSpec | None) -> tuple[str, list[Any]]:
    """SQL conditions with ``?`` placeholders, and their values.

    A scalar means equality, a list/tuple/set means membership, ``None`` means IS NULL.
    Values for text columns are given as text (``subject_id=692478`` finds ``"692478"``).
    """
    parts: list[str] = []
    params: list[Any] = []
    types = {c.name: c.type for c in spec.columns} if spec is not None else {}
    for column, value in where.items():
        ident = quote_identifier(column)
        as_text = types.get(column) == "string"

        def norm(v: Any) -> Any:
            if isinstance(v, str) and "\x00" in v:
                raise InvalidNameError(f"Filter value for {column!r} contains a NUL character")
            return str(v) if as_text and isinstance(v, (int,)) and not isinstance(v, bool) else v

        if value is None:
            parts.append(f"{ident} IS NULL")
        elif isinstance(value, (list, tuple, set, frozenset)):
            values = [norm(v) for v in value]
            if not values:
                parts.append("FALSE")
            else:
                parts.append(f"{ident} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
        else:
            parts.append(f"{ident} = ?")
            params.append(norm(value))
    return " AND ".join(parts), params


def check_columns(spec: TableSpec, names: Sequence[str], label: str = "column") -> None:
    """Raise a helpful error for names that are not declared columns of a strict spec."""
    if not spec.columns or spec.extra_columns:
        for n in names:
            check_column_name(n)
        return
    declared = spec.column_names
    for n in names:
        check_column_name(n)
        if n not in declared:
            close = difflib.get_close_matches(n, declared, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise InvalidNameError(f"Table {spec.name!r} has no {label} {n!r}.{hint} Columns: {', '.join(declared)}")


def query_error(exc: Exception, label: str) -> BdcError:
    """Wrap a DuckDB/Arrow failure as a :class:`ReadError` naming what was read."""
    return ReadError(f"Reading {label} failed: {type(exc).__name__}: {exc}")


def select(
    source: Source,
    *,
    columns: Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
    limit: int | None = None,
    spec: TableSpec | None = None,
    arrow: bool = False,
    absent: Callable[[list[str]], Any] | None = None,
) -> Any:
    """Run the projection/filter/limit over ``source``; a pandas DataFrame (or Arrow table).

    ``absent``: for a table whose files differ in their columns (a partition written before a
    column existed), given the names the query touches that ``source`` lacks, it returns those
    the table has as a ``pyarrow.Schema`` (they read as nulls) and raises for the others. It is
    asked only when DuckDB cannot bind a name, so a read whose files all have its columns costs
    nothing more.
    """
    import duckdb

    cols = ", ".join(quote_identifier(c) for c in columns) if columns else "*"
    condition, params = where_clause(where or {}, spec)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise BdcError(f"limit must be a non-negative integer, not {limit!r}")
    cur = cursor()
    try:
        if source.arrow is not None:
            cur.register("__bdc_source", source.arrow)
            from_sql, from_params = "__bdc_source", []
        else:
            from_sql = "read_parquet(?, union_by_name = true, hive_partitioning = false)"
            from_params = [list(source.files)]

        def run(scan: str) -> Any:
            sql = f"SELECT {cols} FROM {scan}"
            if condition:
                sql += f" WHERE {condition}"
            values = [*from_params, *params]
            if limit is not None:
                sql += " LIMIT ?"
                values.append(limit)
            result = cur.sql(sql, params=values)
            return result_arrow(result) if arrow else result.df()

        try:
            return run(from_sql)
        except duckdb.BinderException as exc:
            touched = list(dict.fromkeys([*(columns or ()), *(where or {})]))
            present = set(cur.sql(f"SELECT * FROM {from_sql} LIMIT 0", params=from_params).columns)
            lacking = [c for c in touched if c not in present]
            if absent is None or not lacking:
                raise InvalidNameError(f"{source.label}: {exc}") from exc
            # the table's columns these files lack: an empty table of them, unioned by name, makes
            # them columns of nulls (of the type the table has them in)
            cur.register("__bdc_absent", absent(lacking).empty_table())
            return run(f"(SELECT * FROM {from_sql} UNION ALL BY NAME SELECT * FROM __bdc_absent)")
    except duckdb.BinderException as exc:
        raise InvalidNameError(f"{source.label}: {exc}") from exc
    except duckdb.Error as exc:
        raise query_error(exc, source.label) from exc
    finally:
        cur.close()
