"""Fixtures of the reliability tests: isolated plugins, a snapshot of a folder tree, the synthetic plugin."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# the synthetic sync plugin lives with the framework tests; make it importable from here too
_FRAMEWORK_TESTS = str(Path(__file__).resolve().parent.parent / "framework")
if _FRAMEWORK_TESTS not in sys.path:
    sys.path.insert(0, _FRAMEWORK_TESTS)


def pytest_configure(config: pytest.Config) -> None:
    """DuckDB's ``.df()`` trips a pandas deprecation inside DuckDB itself: not ours to fix."""
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


def tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` (relative path → size): compare before/after to prove nothing
    was written, moved or removed."""
    out = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            out[str(path.relative_to(root))] = path.stat().st_size
    return out
