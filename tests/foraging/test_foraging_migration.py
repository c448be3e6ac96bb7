"""The reference's dynamic-foraging one-liners (``from bdc import platform_dynamic_foraging_trials``)
against a cache filled by a real sync of the generated foraging database, and the foraging rows of
the migration table of docs/migration.md (both columns run and agree).

(Not ``test_migration.py``: test folders are not packages, so basenames must be unique across them,
and tests/docdb/test_migration.py exists.)"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pyarrow.dataset as ds
import pytest

import bdc
from bdc import TableNotBuiltError, api, plugins
from bdc.cache import Cache
from bdc.catalog import get_catalog
from bdc_tables_foraging.tables import EVENTS, SESSIONS, TRIALS

MIGRATION_DOC = Path(__file__).resolve().parents[2] / "docs" / "migration.md"
ONE_LINERS = [SESSIONS, TRIALS, EVENTS]


@pytest.fixture(scope="module")
def synced(pristine_db: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """One real sync of the three foraging tables from the (never modified) generated database."""
    url = (tmp_path_factory.mktemp("foraging-migration") / "cache").as_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BDC_LOAD_PLUGINS", "foraging")
        mp.setenv("BDC_STRICT_PLUGINS", "1")
        mp.setenv("BDC_FORAGING_BASE", str(pristine_db.root))
        plugins.reset()
        report = bdc.sync(url, only=ONE_LINERS, progress="none")
        assert report.ok, report.summary()
        plugins.reset()
    yield SimpleNamespace(cache=Cache(url), url=url, db=pristine_db)


@pytest.fixture
def default_cache(synced: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> Cache:
    """The synced cache as the default cache (``BDC_CACHE``) of this test."""
    monkeypatch.setenv("BDC_CACHE", synced.url)
    api._caches.clear()
    return synced.cache


def test_one_liners_import_from_bdc(default_cache: Cache) -> None:
    functions = get_catalog().functions
    for name in ONE_LINERS:
        namespace: dict[str, Any] = {}
        exec(f"from bdc import {name}", namespace)  # noqa: S102 - the statement a user writes
        assert namespace[name] is functions[name].function
        assert functions[name].plugin == "bdc-tables-foraging" and namespace[name].__doc__
        assert name in dir(bdc)


def test_sessions(default_cache: Cache, synced: SimpleNamespace) -> None:
    from bdc import platform_dynamic_foraging_sessions

    sessions = platform_dynamic_foraging_sessions()
    assert isinstance(sessions, pd.DataFrame) and len(sessions) == synced.db.n_sessions
    pd.testing.assert_frame_equal(sessions, default_cache.get(SESSIONS))
    assert sorted(sessions["subject_id"].unique()) == sorted(synced.db.subject_ids)
    upstream = pd.read_parquet(Path(synced.db.root) / "session_table.parquet")
    assert set(upstream.columns) <= set(sessions.columns)  # every upstream column, not only the declared ones


@pytest.mark.parametrize("name, per_subject", [(TRIALS, "trials_per_subject"), (EVENTS, "events_per_subject")])
def test_trials_and_events_of_one_subject(default_cache: Cache, synced: SimpleNamespace, name: str,
                                          per_subject: str) -> None:
    function = getattr(bdc, name)
    leading_zero = next(s for s in synced.db.subject_ids if s.startswith("0"))
    plain = next(s for s in synced.db.subject_ids if not s.startswith("0"))
    for subject in (leading_zero, plain):
        frame = function(subject)
        assert isinstance(frame, pd.DataFrame)
        assert len(frame) == getattr(synced.db, per_subject)[subject] > 0
        assert set(frame["subject_id"]) == {subject}  # a string, leading zeros kept
        pd.testing.assert_frame_equal(frame, default_cache.get(name, subject_id=subject))
    pd.testing.assert_frame_equal(function(int(plain)), function(plain))  # an int id is accepted
    both = function([leading_zero, plain])
    assert len(both) == len(function(leading_zero)) + len(function(plain))
    missing = function("no-such-subject")
    assert missing.empty and list(missing.columns) == default_cache.spec(name).column_names


def test_trials_match_the_upstream_files(default_cache: Cache, synced: SimpleNamespace) -> None:
    from bdc import platform_dynamic_foraging_trials

    subject = synced.db.subject_ids[0]
    upstream = ds.dataset(Path(synced.db.root) / "trial_table" / f"subject_id={subject}", format="parquet").to_table()
    mine = platform_dynamic_foraging_trials(subject)
    assert len(mine) == upstream.num_rows
    assert set(upstream.column_names) <= set(mine.columns)


def test_reads_never_build_and_force_update_warns(default_cache: Cache, synced: SimpleNamespace) -> None:
    from bdc import platform_dynamic_foraging_events, platform_dynamic_foraging_sessions, platform_dynamic_foraging_trials

    subject = synced.db.subject_ids[0]
    with pytest.warns(UserWarning, match=rf"bdc-sync --cache \S+ --only {TRIALS}") as caught:
        platform_dynamic_foraging_trials(subject, force_update=True)
    assert [w.filename for w in caught if "force_update" in str(w.message)] == [__file__]
    empty = f"memory://bdc-foraging-migration-{uuid.uuid4().hex}"
    for call, table in [(lambda: platform_dynamic_foraging_sessions(cache=empty), SESSIONS),
                        (lambda: platform_dynamic_foraging_trials(subject, cache=empty), TRIALS),
                        (lambda: platform_dynamic_foraging_events(subject, cache=empty), EVENTS)]:
        with pytest.raises(TableNotBuiltError, match=rf"bdc-sync --cache {empty} --only {table}"):
            call()
    assert Cache(empty).registry() == {"tables": []}


def migration_rows() -> list[dict[str, str]]:
    """The rows of the one-liner table of docs/migration.md: old, new, returns, provider."""
    section = MIGRATION_DOC.read_text(encoding="utf-8").split("## One-liners", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and line.startswith("| ") and cells[1].endswith(")") and not set(cells[0]) <= {"-"}:
            rows.append(dict(zip(("old", "new", "returns", "provider"), cells)))
    return rows


def test_migration_table_foraging_rows_run_and_agree(default_cache: Cache, synced: SimpleNamespace) -> None:
    rows = [r for r in migration_rows() if r["provider"] == "bdc-tables-foraging"]
    named = {re.match(r"(\w+)\(", r[c])[1] for r in rows for c in ("old", "new")}  # type: ignore[index]
    assert named == set(ONE_LINERS)
    functions = get_catalog().functions
    variables = {"subject_id": synced.db.subject_ids[0]}
    for row in rows:
        calls = [row["new"], row["old"]]
        namespace = {**variables, **{n: getattr(bdc, n) for n in named}}
        for call in calls:
            assert functions[re.match(r"(\w+)\(", call)[1]].plugin == "bdc-tables-foraging"  # type: ignore[index]
        new, old = (eval(call, {"__builtins__": {}}, namespace) for call in calls)  # noqa: S307 - our own doc
        assert row["returns"] == "DataFrame" and isinstance(new, pd.DataFrame) and len(new)
        pd.testing.assert_frame_equal(old, new)
