"""Fixtures of the framework tests: an isolated plugin manager, sample tables, every backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bdc_samples import typed_specs


@pytest.fixture(autouse=True)
def _isolated_bdc(isolated_bdc: None) -> None:
    """Every test here runs isolated (see ``isolated_bdc`` in tests/conftest.py)."""


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
