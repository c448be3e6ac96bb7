"""Validation of everything a user can put into a path or a query.

Table, custom and column names and partition values are checked here before they reach a
storage key or SQL; partition values are percent-encoded into keys. Nothing user-given is ever
formatted into query text (filter values are bound parameters; identifiers are checked and quoted).
"""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import quote

from bdc.errors import InvalidNameError
from bdc.spec import NAME_PATTERN

__all__ = [
    "check_table_name",
    "check_column_name",
    "check_partition_value",
    "encode_partition_value",
    "quote_identifier",
    "MAX_VALUE_LENGTH",
]

MAX_VALUE_LENGTH = 256
_FORBIDDEN = {"/": "a slash", "\\": "a backslash", "'": "a quote", '"': "a quote", "`": "a backtick"}


def check_table_name(name: Any, what: str = "table name") -> str:
    """Return ``name`` if it is a valid table/custom name (letters, digits, ``_``), else raise."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidNameError(
            f"Invalid {what} {name!r}: use a letter followed by letters, digits or '_' "
            f"(at most 128 characters)"
        )
    return name


def check_column_name(name: Any) -> str:
    """Return ``name`` if it can be used as a column identifier (quoted), else raise."""
    if not isinstance(name, str) or not name or len(name) > 256:
        raise InvalidNameError(f"Invalid column name {name!r}")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidNameError(f"Invalid column name {name!r}: control characters")
    return name


def check_partition_value(value: Any, key: str = "partition") -> str:
    """Return ``value`` as a string if it may become a partition folder, else raise.

    Numbers are accepted and turned into text (ids stay strings end to end). Rejected: empty text,
    ``..``, slashes, backslashes, quotes, control characters (NUL included), over-long values.
    """
    if isinstance(value, bool) or value is None:
        raise InvalidNameError(f"Invalid {key} value {value!r}")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidNameError(f"Invalid {key} value {value!r}: expected text")
    if not value or value.strip() != value:
        raise InvalidNameError(f"Invalid {key} value {value!r}: empty or padded with spaces")
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidNameError(f"Invalid {key} value: longer than {MAX_VALUE_LENGTH} characters")
    if value in (".", "..") or ".." in value:
        raise InvalidNameError(f"Invalid {key} value {value!r}: '..' is not allowed")
    for ch, label in _FORBIDDEN.items():
        if ch in value:
            raise InvalidNameError(f"Invalid {key} value {value!r}: contains {label}")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        raise InvalidNameError(f"Invalid {key} value {value!r}: contains control characters")
    return value


def encode_partition_value(value: str) -> str:
    """Percent-encode a checked partition value for use in a storage key (``a b`` → ``a%20b``)."""
    return quote(value, safe="-_.~@+,")


def quote_identifier(name: str) -> str:
    """Quote a checked column name as a SQL identifier."""
    return '"' + check_column_name(name).replace('"', '""') + '"'
