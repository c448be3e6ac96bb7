"""Fixtures of the reliability tests: isolated plugins, a snapshot of a folder tree, the synthetic plugin."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# the synthetic sync plugin lives with the framework tests; make it importable from here too
_FRAMEWORK_TESTS = str(Path(__file__).resolve().parent.parent / "framework")
if _FRAMEWORK_TESTS not in sys.path:
    sys.path.insert(0, _FRAMEWORK_TESTS)


@pytest.fixture(autouse=True)
def _isolated_bdc(isolated_bdc: None) -> None:
    """Every test here runs isolated (see ``isolated_bdc`` in tests/conftest.py)."""


def tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` (relative path → size): compare before/after to prove nothing
    was written, moved or removed."""
    out = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            out[str(path.relative_to(root))] = path.stat().st_size
    return out
