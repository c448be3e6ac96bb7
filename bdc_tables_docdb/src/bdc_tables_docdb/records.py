"""Null-safe access to DocDB records.

DocDB records mix "missing", explicit JSON ``null`` and wrong types at every level of a path
(``"acquisition": null``, investigators given as strings, ...). Every table reads records through
:func:`get_path`, which treats all three the same way, so one odd record never aborts a build.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_path", "as_list", "as_dict", "as_str", "clean_text"]

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


def clean_text(value: str) -> str:
    """``value`` as storable text: lone UTF-16 surrogates become U+FFFD.

    JSON may escape a lone surrogate (``"\\ud800"``) and ``json.loads`` keeps it, but such a string
    cannot be encoded as UTF-8, so Arrow and parquet refuse it and the whole table build would
    fail. A well-formed surrogate pair is joined into its character; other text is unchanged.
    """
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def as_str(value: Any) -> str | None:
    """``value`` if it is a non-empty string (see :func:`clean_text`); numbers become their text;
    anything else ``None``."""
    if isinstance(value, str):
        return clean_text(value) if value != "" else None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return str(value)
    return None
