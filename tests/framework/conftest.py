"""Fixtures of the framework tests: an isolated plugin manager, sample tables, every backend."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

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


def pytest_configure(config: pytest.Config) -> None:
    """DuckDB's ``.df()`` trips a pandas 3.1 deprecation inside DuckDB itself: not ours to fix."""
    config.addinivalue_line("filterwarnings", "ignore:The inplace keyword in DataFrame.drop is deprecated")


@pytest.fixture(autouse=True)
def _isolated_bdc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No installed entry-point plugin, a fresh plugin manager, and a default cache under tmp_path."""
    from bdc import api, plugins

    monkeypatch.setenv("BDC_LOAD_PLUGINS", "")
    for name in ("BDC_DISABLE_PLUGINS", "BDC_STRICT_PLUGINS", "BIODATA_CACHE_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BDC_CACHE", (tmp_path / "default-cache").as_uri())
    plugins.reset()
    api._caches.clear()
    yield
    plugins.reset()
    api._caches.clear()


@pytest.fixture
def typed_plugin(bdc_plugin: Callable[..., str]) -> str:
    """Registers the ``assets`` and ``events`` tables; returns the plugin name."""
    return bdc_plugin(typed_specs(), name="typed-tables", distribution="bdc-test-typed")


@pytest.fixture(params=["memory", "file", "s3"])
def any_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A fresh empty cache on each backend (S3: a bucket on the moto server)."""
    from bdc.cache import Cache

    if request.param == "memory":
        return request.getfixturevalue("bdc_cache")
    if request.param == "file":
        return Cache((tmp_path / "cache").as_uri())
    return Cache(request.getfixturevalue("s3_url"))


@pytest.fixture
def unique() -> str:
    """A short unique token (for module and distribution names)."""
    return uuid.uuid4().hex[:10]
