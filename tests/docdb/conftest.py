"""Emulator fixtures for the DocDB tests: the four real records and a running emulator."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bdc_tables_docdb.emulator import DocDBEmulator

RECORDS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "docdb-records"


@pytest.fixture(scope="session")
def _docdb_records_pristine() -> list[dict[str, Any]]:
    """The real DocDB records of tests/fixtures/docdb-records, parsed once per session."""
    paths = sorted(RECORDS_DIR.glob("*.json"))
    assert len(paths) == 4, f"expected four real records in {RECORDS_DIR}, found {len(paths)}"
    return [json.loads(p.read_text()) for p in paths]


@pytest.fixture
def docdb_records(_docdb_records_pristine: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A fresh deep copy of the four real DocDB records (one per fixture file)."""
    return copy.deepcopy(_docdb_records_pristine)


@pytest.fixture
def emulator(docdb_records: list[dict[str, Any]]) -> Iterator[DocDBEmulator]:
    """A running DocDB emulator (v2, default cap 500) seeded with the four real records."""
    with DocDBEmulator(docdb_records) as emu:
        yield emu
