"""Arrow types written as short text (``"list<string>"``), parsed to pyarrow lazily.

Plugins declare column types as text so that declaring a table imports nothing heavy; the text is
turned into a ``pyarrow.DataType`` only when data is written or checked.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from bdc.errors import SpecError

__all__ = ["arrow_type", "type_text", "KNOWN_TYPES"]

KNOWN_TYPES = (
    "string", "large_string", "bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
    "uint32", "uint64", "float32", "float64", "date32", "binary", "json",
    "timestamp[us]", "timestamp[us, tz=UTC]", "timestamp[ns, tz=UTC]", "list<T>", "struct<...>",
)

_TS = re.compile(r"^timestamp\[(s|ms|us|ns)(?:,\s*tz=([^\]]+))?\]$")
_ALIASES = {"str": "string", "text": "string", "boolean": "bool", "int": "int64",
            "float": "float64", "double": "float64", "date": "date32", "json": "string"}


@lru_cache(maxsize=256)
def arrow_type(text: str) -> Any:
    """Parse a type text into a ``pyarrow.DataType``.

    >>> str(arrow_type("list<string>"))
    'list<item: string>'
    """
    import pyarrow as pa

    t = text.strip()
    t = _ALIASES.get(t, t)
    if t.startswith("list<") and t.endswith(">"):
        return pa.list_(arrow_type(t[5:-1]))
    match = _TS.match(t)
    if match:
        return pa.timestamp(match[1], tz=match[2])
    simple = {
        "string": pa.string(), "large_string": pa.large_string(), "bool": pa.bool_(),
        "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
        "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(),
        "float32": pa.float32(), "float64": pa.float64(), "date32": pa.date32(),
        "binary": pa.binary(),
    }
    if t in simple:
        return simple[t]
    raise SpecError(f"Unknown column type {text!r}; use one of {', '.join(KNOWN_TYPES)}")


def type_text(dtype: Any) -> str:
    """The short text of a ``pyarrow.DataType`` (inverse of :func:`arrow_type` where possible)."""
    import pyarrow as pa

    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return f"list<{type_text(dtype.value_type)}>"
    if pa.types.is_timestamp(dtype):
        return f"timestamp[{dtype.unit}, tz={dtype.tz}]" if dtype.tz else f"timestamp[{dtype.unit}]"
    names = {pa.bool_(): "bool", pa.float64(): "float64", pa.float32(): "float32",
             pa.string(): "string", pa.large_string(): "large_string"}
    return names.get(dtype, str(dtype))
