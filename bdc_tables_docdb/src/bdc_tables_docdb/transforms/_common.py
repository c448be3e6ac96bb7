"""Small private helpers shared by the transforms (not part of the public API)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bdc_tables_docdb.records import as_str, get_path

__all__ = ["text", "note", "record_label", "cell_list", "is_missing"]


def text(value: Any) -> str | None:
    """A string cell: text as-is (``""`` → ``None``), numbers as text, Extended JSON ``{"$date"|"$oid": x}``
    unwrapped, anything else ``None``."""
    if isinstance(value, dict) and len(value) == 1:
        inner = value.get("$date", value.get("$oid"))
        if inner is not None:
            return as_str(inner)
    if isinstance(value, float) and value != value:  # NaN from a pandas cell
        return None
    return as_str(value)


def record_label(record: Any) -> str:
    """How a record is named in problem notes: its ``_id``, else its ``name``, else ``?``."""
    return text(get_path(record, "_id")) or text(get_path(record, "name")) or "?"


def note(problems: list[str] | None, record: Any, message: str) -> None:
    """Append ``"<record>: <message>"`` to ``problems`` when a list was given."""
    if problems is not None:
        problems.append(f"{record_label(record)}: {message}")


def is_missing(value: Any) -> bool:
    """``None`` or a pandas/numpy missing scalar (NaN, NaT, NA)."""
    if value is None:
        return True
    if isinstance(value, (str, bytes, list, tuple, dict)):
        return False
    try:
        import pandas as pd

        result = pd.isna(value)
        return bool(result) if isinstance(result, bool) or getattr(result, "ndim", 1) == 0 else False
    except (TypeError, ValueError):
        return False


def cell_list(value: Any) -> list[Any]:
    """A list from a table cell: list/tuple/numpy array as a list, a lone string as ``[s]``,
    missing values and other scalars as ``[]``."""
    if is_missing(value):
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, (bytes, dict)):
        return list(value)
    return []
