"""Fixtures of the framework tests: an isolated plugin manager, sample tables, every backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bdc_samples import typed_specs


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
