"""Shared helpers of the DocDB table tests (``test_tables_*.py``); this module holds no test.

The table tests run the real sync (``bdc.sync``) against the DocDB emulator on loopback through
the real ``MetadataDbClient``. Import what you need from here::

    from test_tables_support import docdb_plugin_only, serve, sync_ok, rows_of  # noqa: F401

``docdb_plugin_only`` is an autouse fixture: importing it into a test module applies it there.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "docdb_plugin_only",
    "serve",
    "memory_url",
    "sync_ok",
    "rows_of",
    "canonical",
    "docdb_table_names",
    "apply_mutation",
    "Mutation",
    "subject_of",
    "dig",
    "abbreviations",
    "records_by_subject",
    "DOCDB_DISTRIBUTION",
]


@pytest.fixture(autouse=True)
def docdb_plugin_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Only the ``docdb`` plugin, a fresh plugin manager, a default cache under ``tmp_path``,
    and DocDB/open-data settings that point nowhere until a test calls :func:`serve`."""
    from bdc import api, plugins

    monkeypatch.setenv("BDC_LOAD_PLUGINS", "docdb")
    for name in ("BDC_DISABLE_PLUGINS", "BDC_STRICT_PLUGINS", "BIODATA_CACHE_BACKEND", "BDC_DOCDB_PAGE_SIZE",
                 "BDC_NEUROGLASS_URL", "BDC_NEUROGLANCER_URL", "BDC_UPGRADE_STATUS_TABLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BDC_CACHE", (tmp_path / "default-cache").as_uri())
    monkeypatch.setenv("BDC_DOCDB_URL", "http://127.0.0.1:9")  # discard port: a forgotten serve() fails fast
    empty = tmp_path / "no-open-data"
    empty.mkdir()
    monkeypatch.setenv("BDC_OPEN_DATA_URL", empty.as_uri())
    plugins.reset()
    api._caches.clear()
    yield
    plugins.reset()
    api._caches.clear()


def serve(monkeypatch: pytest.MonkeyPatch, emulator: Any, open_data_url: str | None = None) -> None:
    """Point the DocDB tables at ``emulator`` (and the open data at ``open_data_url`` if given)."""
    monkeypatch.setenv("BDC_DOCDB_URL", emulator.url)
    if open_data_url is not None:
        monkeypatch.setenv("BDC_OPEN_DATA_URL", open_data_url)


def memory_url() -> str:
    """A fresh ``memory://`` cache URL."""
    return f"memory://docdb-tables-{uuid.uuid4().hex[:12]}"


def sync_ok(cache: str, **options: Any) -> Any:
    """``bdc.sync`` that must succeed; returns the run report (its summary is the failure text)."""
    import bdc

    options.setdefault("progress", "none")
    report = bdc.sync(cache, **options)
    assert report.ok, report.summary()
    return report


#: The distribution the DocDB tables come from (``TableSpec.plugin``).
DOCDB_DISTRIBUTION = "bdc-tables-docdb"


def docdb_table_names() -> list[str]:
    """Every table the docdb plugin declares (side tables included), in catalog order."""
    from bdc.catalog import get_catalog

    return [spec.name for spec in get_catalog() if spec.plugin == DOCDB_DISTRIBUTION]


def _plain(value: Any) -> Any:
    """A cell as a comparable, hashable Python value (lists → tuples, NaN/NaT → None, times → ISO)."""
    import numpy as np
    import pandas as pd

    if value is None:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _plain(v)) for k, v in value.items()))
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def canonical(frame: Any) -> list[tuple[Any, ...]]:
    """Every row of a DataFrame as a tuple of plain values (columns in frame order), sorted."""
    rows = [tuple(_plain(v) for v in row) for row in frame.itertuples(index=False, name=None)]
    return sorted(rows, key=repr)


def rows_of(cache: str, name: str, **filters: Any) -> list[dict[str, Any]]:
    """A table of ``cache`` as a list of plain dicts (lists as tuples, nulls as ``None``)."""
    from bdc.cache import Cache

    frame = Cache(cache).get(name, **filters)
    return [{c: _plain(v) for c, v in zip(frame.columns, row)} for row in frame.itertuples(index=False, name=None)]


class Mutation:
    """What :func:`apply_mutation` did to the emulator's collection."""

    def __init__(self, before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]):
        old = {r["_id"]: r for r in before}
        new = {r["_id"]: r for r in after}
        self.added = [new[i] for i in new if i not in old]
        self.removed = [old[i] for i in old if i not in new]
        self.changed = [new[i] for i in new if i in old and new[i].get("_last_modified") != old[i].get("_last_modified")]
        self.before = list(before)
        self.after = list(after)

    def touched_subjects(self) -> set[str]:
        """Subjects (non-null ``subject.subject_id``) of every added, removed or changed record, old and new."""
        old = {r["_id"]: r for r in self.before}
        out = set()
        for record in [*self.added, *self.removed, *self.changed, *(old[r["_id"]] for r in self.changed)]:
            subject = record.get("subject")
            if isinstance(subject, dict) and isinstance(subject.get("subject_id"), str):
                out.add(subject["subject_id"])
        return out


def apply_mutation(emulator: Any, before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> Mutation:
    """Make the emulator's collection go from ``before`` to ``after`` with replace/insert/delete."""
    mutation = Mutation(before, after)
    if mutation.changed:
        assert emulator.replace(mutation.changed) == len(mutation.changed)
    if mutation.added:
        emulator.insert(mutation.added)
    if mutation.removed:
        assert emulator.delete([r["_id"] for r in mutation.removed]) == len(mutation.removed)
    assert emulator.count() == len(after)
    return mutation


def dig(record: Any, path: str) -> Any:
    """A null-safe path get: ``None`` as soon as a step is missing, null or not an object."""
    value = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def abbreviations(record: Any) -> list[str]:
    """The modality abbreviations of a record (``data_description.modalities[*].abbreviation``)."""
    return [m["abbreviation"] for m in dig(record, "data_description.modalities") or []
            if isinstance(m, dict) and isinstance(m.get("abbreviation"), str) and m["abbreviation"]]


def subject_of(record: Mapping[str, Any]) -> str | None:
    """``subject.subject_id`` of a record when it is a string, else ``None``."""
    subject = record.get("subject")
    value = subject.get("subject_id") if isinstance(subject, dict) else None
    return value if isinstance(value, str) else None


def records_by_subject(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records grouped by :func:`subject_of` (records without a subject id left out)."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        subject = subject_of(record)
        if subject is not None:
            out.setdefault(subject, []).append(record)
    return out
