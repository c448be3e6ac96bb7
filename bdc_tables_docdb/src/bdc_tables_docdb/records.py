"""Null-safe access to DocDB records.

DocDB records mix "missing", explicit JSON ``null`` and wrong types at every level of a path
(``"acquisition": null``, investigators given as strings, ...). Every table reads records through
:func:`get_path`, which treats all three the same way, so one odd record never aborts a build.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_path", "as_list", "as_dict", "as_str"]

_MISSING = object()


def get_path(record: Any, path: str, default: Any = None) -> Any:
    """Return the value at dotted ``path`` in ``record``, or ``default``.

    A missing key, a ``None`` anywhere along the way, or a non-dict where a dict is expected all
    give ``default``. A final value of ``None`` also gives ``default``.

    >>> get_path({"a": {"b": 1}}, "a.b")
    1
    >>> get_path({"a": None}, "a.b", "x")
    'x'
    """
    current = record
    for part in path.split("."):
        if not isinstance(current, dict):
            return default
        current = current.get(part, _MISSING)
        if current is _MISSING or current is None:
            return default
    return current


def as_list(value: Any) -> list:
    """``value`` if it is a list, else ``[]`` (``None`` and wrong types alike)."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict:
    """``value`` if it is a dict, else ``{}``."""
    return value if isinstance(value, dict) else {}


def as_str(value: Any) -> str | None:
    """``value`` if it is a non-empty string; numbers become their text; anything else ``None``."""
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return str(value)
    return None
