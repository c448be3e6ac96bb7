"""Sample tables shared by the framework tests (a module of its own: ``conftest`` is ambiguous)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bdc.testing import make_spec

UTC = dt.timezone.utc

#: Every column type the real tables use.
TYPED_COLUMNS = [
    ("name", "string", "asset name"),
    ("subject_id", "string", "numeric-looking id that must stay text"),
    ("n_files", "int64", "a count"),
    ("score", "float64", "a measurement"),
    ("is_ok", "bool", "a flag"),
    ("created", "timestamp[us, tz=UTC]", "creation time"),
    ("tags", "list<string>", "free tags"),
]


def typed_rows() -> list[dict[str, Any]]:
    """Rows covering every type, with nulls everywhere a null can be, and ids like ``"0012"``."""
    t0 = dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    return [
        {"name": "a1", "subject_id": "0012", "n_files": 3, "score": 1.5, "is_ok": True,
         "created": t0, "tags": ["x", "y"]},
        {"name": "a2", "subject_id": "0012", "n_files": None, "score": None, "is_ok": None,
         "created": None, "tags": None},
        {"name": "a3", "subject_id": "692478", "n_files": -(2**40), "score": -0.25, "is_ok": False,
         "created": t0 + dt.timedelta(days=400, microseconds=1), "tags": []},
        {"name": None, "subject_id": "692478", "n_files": 0, "score": float("inf"), "is_ok": True,
         "created": t0, "tags": ["it's", 'a "quote"', None]},
        {"name": "ünïcødé ✓", "subject_id": "a b", "n_files": 7, "score": 2.0, "is_ok": False,
         "created": t0, "tags": ["z"]},
    ]


def typed_specs() -> list[Any]:
    """An unpartitioned and a partitioned table with :data:`TYPED_COLUMNS`."""
    return [
        make_spec("assets", TYPED_COLUMNS, aliases=["ast"], kind="asset", description="Every type, whole"),
        make_spec("events", TYPED_COLUMNS, partition_key="subject_id", aliases=["ev"],
                  description="Every type, partitioned by subject", depends_on=["assets"]),
    ]
