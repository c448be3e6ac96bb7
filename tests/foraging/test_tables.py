"""The dynamic-foraging mirrors: discovery, mirror and read back, incremental syncs, string ids,
schema drift, interop with the upstream helpers, on local disk and on S3 (moto) as source and cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import aind_dynamic_foraging_database as adfd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bdc_tables_foraging.demo import generator as gen
from bdc_tables_foraging.demo import modify_foraging_db
from bdc_tables_foraging.tables import EVENTS, SESSIONS, TRIALS

TABLES = (SESSIONS, TRIALS, EVENTS)


def sync(cache: Any, **options: Any) -> Any:
    """Sync the three foraging tables (and only them) into ``cache``."""
    import bdc

    report = bdc.sync(cache, only=list(TABLES), progress="none", **options)
    assert report.ok, report.summary()
    return report


def built(report: Any) -> dict[str, tuple[int, int]]:
    """Per partitioned table: (partitions built, partitions deleted)."""
    return {n: (report.table(n).partitions_built, report.table(n).partitions_deleted) for n in (TRIALS, EVENTS)}


def canon(df: pd.DataFrame) -> pd.DataFrame:
    """Columns sorted by name, rows sorted by every column: compare row sets, not orders."""
    df = df[sorted(df.columns)]
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def upstream_read(con: Any, sessions: str, trials: str, events: str) -> tuple[pd.DataFrame, ...]:
    """What a scientist gets from the upstream helpers pointed (``base=``) at three locations."""
    adfd.clear_caches()
    sel = adfd.select_sessions(columns=["nwb_suffix", "task", "foraging_eff"], base=sessions, con=con)
    lz = sorted(s for s in sel["subject_id"].unique() if s.startswith("0"))
    one = adfd.select_sessions(subjects=lz[:1], base=sessions, con=con)
    return (
        sel,
        adfd.fetch_trials(sel, columns="*", base=trials, con=con),
        adfd.fetch_events(sel, columns="*", base=events, con=con),
        adfd.fetch_events(one, events=["left_lick_time"], base=events, con=con),
    )


def bdc_locations(cache: Any) -> tuple[str, str, str]:
    """Where the upstream helpers find bdc's three published tables."""
    return tuple(cache.location(name).rstrip("/") for name in TABLES)  # type: ignore[return-value]


def source_locations(base: str) -> tuple[str, str, str]:
    """Where the upstream helpers find the source's three tables."""
    return f"{base}/session_table.parquet", f"{base}/trial_table", f"{base}/event_table"


def source_files(db: Any, table: str, sid: str) -> list[Path]:
    """A subject's source files in ``table`` (``trial_table``/``event_table``), in name order."""
    return sorted((Path(db.root) / table / f"subject_id={sid}").glob("*.parquet"))


def partition_names(n: int) -> list[str]:
    """The names of a partition of ``n`` files, in the order of the source files they copy (which
    is also their names' sort order: readers listing the folder read rows in source order)."""
    names = ["data.parquet"] if n == 1 else [f"data-{i:04d}.parquet" for i in range(n)]
    assert names == sorted(names)
    return names


# ------------------------------------------------------------------------------------------
# discovery and declaration
# ------------------------------------------------------------------------------------------


def test_tables_come_from_the_entry_point():
    import bdc
    from bdc import plugins

    record = plugins.plugin_records()["foraging"]
    assert (record.source, record.distribution) == ("entry point", "bdc-tables-foraging")
    specs = {s.name: s for s in bdc.Cache.tables()}
    assert set(specs) == set(TABLES)
    cache = bdc.Cache("memory://foraging-specs")
    for alias, name in (("df_sessions", SESSIONS), ("df_trials", TRIALS), ("df_events", EVENTS)):
        spec = cache.spec(alias)
        assert spec.name == name and spec.kind == "platform" and spec.extra_columns
        assert spec.plugin == "bdc-tables-foraging"
    assert specs[SESSIONS].partition_key is None and specs[SESSIONS].columns[0].name == "_session_id"
    for name in (TRIALS, EVENTS):
        spec = specs[name]
        assert spec.partition_key == "subject_id" and spec.file_name == "data.parquet"
        assert spec.depends_on == (SESSIONS,) and spec.incremental
        assert {c.name: c.type for c in spec.columns}["subject_id"] == "string"
        assert all(c.description for c in spec.columns)
    assert sorted(c.name for c in specs[EVENTS].columns) == sorted(gen.EVENT_COLUMNS)
    assert len(specs[SESSIONS].columns) == 36 and len(specs[TRIALS].columns) == 20


def test_base_is_read_at_call_time(monkeypatch):
    from bdc_tables_foraging.source import ForagingSource, foraging_base

    assert foraging_base() == adfd.PROD_S3_PREFIX
    monkeypatch.setenv("BDC_FORAGING_BASE", "/data/foraging/")
    assert foraging_base() == "/data/foraging"
    assert ForagingSource.open().root == "/data/foraging"
    with pytest.raises(ValueError, match="Unsupported"):
        ForagingSource("gs://bucket/db")


# ------------------------------------------------------------------------------------------
# local disk: mirror, read back, incremental
# ------------------------------------------------------------------------------------------


def test_mirror_and_read_back(source_db, file_cache):
    report = sync(file_cache)
    assert report.table(SESSIONS).rows == source_db.n_sessions
    assert report.table(TRIALS).rows == source_db.n_trials
    assert report.table(EVENTS).rows == source_db.n_events
    assert built(report) == {TRIALS: (8, 0), EVENTS: (8, 0)}

    sessions = file_cache.get("df_sessions", arrow=True)
    source = pq.read_table(Path(source_db.root) / "session_table.parquet")
    assert sessions.shape == (source_db.n_sessions, 160)  # every upstream column kept, as typed
    assert sessions.select(source.column_names).equals(source.replace_schema_metadata(None))

    for sid in source_db.subject_ids:
        trials = file_cache.get("df_trials", subject_id=sid)
        assert len(trials) == source_db.trials_per_subject[sid] and trials.shape[1] == 103
        assert set(trials["subject_id"]) == {sid}
        assert len(file_cache.get("df_events", subject_id=sid)) == source_db.events_per_subject[sid]
    pair = list(source_db.leading_zero_subjects[:2])
    got = file_cache.get("df_events", subject_id=pair, columns=["subject_id", "event"])
    assert sorted(set(got["subject_id"])) == sorted(pair)
    assert len(got) == sum(source_db.events_per_subject[s] for s in pair)

    # the registry documents the declared key columns, with types; files are named data.parquet
    registry = file_cache.registry()
    entries = {e["name"]: e for e in registry["tables"]}
    assert entries[TRIALS]["partition_key"] == "subject_id" and entries[TRIALS]["type"] == "platform"
    assert [c["name"] for c in entries[EVENTS]["columns"]] == list(gen.EVENT_COLUMNS)
    # conforming subjects' files are copied as they are: one published file per source file
    folder = Path(file_cache.location(TRIALS))
    assert sorted(p.name for p in folder.iterdir()) == [f"subject_id={s}" for s in source_db.subject_ids]
    for sid in source_db.subject_ids:
        n = 1 if sid == source_db.drift_subject else len(list(source_files(source_db, "trial_table", sid)))
        assert sorted(f.name for f in (folder / f"subject_id={sid}").iterdir()) == sorted(partition_names(n))


def test_subject_ids_stay_strings(source_db, file_cache):
    sync(file_cache)
    lz = source_db.leading_zero_subjects
    assert len(lz) == 3 and all(s.startswith("0") for s in lz)
    for name in (TRIALS, EVENTS):
        for sid in lz:
            where = file_cache.location(name, subject_id=sid)  # the file, or the folder of several
            files = sorted(Path(where).glob("*.parquet")) if where.endswith("/") else [Path(where)]
            assert files and all(f.parent.name == f"subject_id={sid}" for f in files)
            for path in files:
                table = pq.read_table(path)
                assert table.schema.field("subject_id").type == pa.string()
                assert set(table.column("subject_id").to_pylist()) == {sid}
    # DuckDB would type the hive folder values as BIGINT; bdc reads them as declared: text
    everything = file_cache.get("df_trials", columns=["subject_id"])
    assert set(everything["subject_id"]) == set(source_db.subject_ids)
    assert file_cache.sql("SELECT DISTINCT typeof(subject_id) FROM df_events").iloc[0, 0] == "VARCHAR"


def test_schema_drift_is_unioned_by_name(source_db, file_cache):
    drift = source_db.drift_subject
    part = Path(source_db.root) / "trial_table" / f"subject_id={drift}"
    schemas = [pq.read_schema(f) for f in sorted(part.glob("*.parquet"))]
    assert len({s.field("auto_waterL").type for s in schemas}) == 2  # int32 and int64
    sync(file_cache)
    trials = file_cache.get("df_trials", subject_id=drift)
    assert len(trials) == source_db.trials_per_subject[drift] and trials.shape[1] == 103
    assert str(trials["auto_waterL"].dtype) == "int64"
    last = trials["session_id"].max()
    assert trials.loc[trials["session_id"] == last, gen.DRIFT_ADDED_COLUMN].notna().all()
    assert trials.loc[trials["session_id"] != last, gen.DRIFT_ADDED_COLUMN].isna().all()
    schema = pq.read_schema(file_cache.location(TRIALS, subject_id=drift))
    assert schema.field("auto_waterL").type == pa.int64() and schema.field("side_bias").type == pa.float64()


def test_incremental_change_add_remove(source_db, file_cache):
    sync(file_cache)
    root = Path(source_db.root)
    keep = [s for s in source_db.subject_ids if s != source_db.drift_subject]
    change = modify_foraging_db(root, change_subjects=[source_db.drift_subject, keep[0]],
                                add_subjects=["0700001"], remove_subjects=[keep[1]], seed=3)
    untouched = sorted(set(source_db.subject_ids) - set(change.changed) - set(change.removed))

    def mtimes() -> dict[str, int]:
        return {s: Path(file_cache.location(TRIALS, subject_id=s)).stat().st_mtime_ns for s in untouched}

    before = mtimes()
    report = sync(file_cache)
    assert built(report) == {TRIALS: (3, 1), EVENTS: (3, 1)}  # 2 changed + 1 added; 1 removed
    assert mtimes() == before  # unchanged subjects were not rewritten
    after = change.info
    assert report.table(SESSIONS).rows == after.n_sessions
    assert report.table(TRIALS).rows == after.n_trials and report.table(EVENTS).rows == after.n_events
    assert len(file_cache.get("df_trials")) == after.n_trials
    assert file_cache.get("df_trials", subject_id=keep[1]).empty
    assert not Path(file_cache.location(TRIALS, subject_id=keep[1])).exists()
    for sid in change.changed + change.added:
        assert len(file_cache.get("df_events", subject_id=sid)) == after.events_per_subject[sid]
    assert set(change.new_session_ids) <= set(file_cache.get("df_sessions")["_session_id"])

    # nothing changed: nothing rebuilt, the session table comes from the cache, not the source
    noop = sync(file_cache)
    assert built(noop) == {TRIALS: (0, 0), EVENTS: (0, 0)}
    assert noop.table(TRIALS).status == noop.table(EVENTS).status == "unchanged"
    assert noop.table(SESSIONS).counters == {"source_unchanged": 1}
    assert noop.table(TRIALS).rows == after.n_trials

    # a touched file (same bytes, new modification time) counts as a change; full rebuilds all
    touched = next((root / "event_table" / f"subject_id={untouched[0]}").glob("*.parquet"))
    stat = touched.stat()
    import os

    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert built(sync(file_cache)) == {TRIALS: (0, 0), EVENTS: (1, 0)}
    full = sync(file_cache, full=True)
    n = len(after.subject_ids)
    assert built(full) == {TRIALS: (n, 0), EVENTS: (n, 0)}
    assert full.table(SESSIONS).counters == {"files_copied": 1}  # the source file, copied as it is


def test_session_table_is_the_source_file_when_it_conforms_else_rewritten(source_db, file_cache):
    """A session table whose footer shows the declared columns and types is published byte for byte
    (counter ``files_copied``); one that does not (``nwb_suffix`` as int32, say an older writer's)
    is read and written with the declared types, every other column and value kept."""
    source = Path(source_db.root) / "session_table.parquet"
    report = sync(file_cache)
    assert report.table(SESSIONS).counters == {"files_copied": 1}
    assert Path(file_cache.location(SESSIONS)).read_bytes() == source.read_bytes()

    table = pq.read_table(source)
    i = table.schema.get_field_index("nwb_suffix")
    narrow = table.set_column(i, pa.field("nwb_suffix", pa.int32()), table.column(i).cast(pa.int32()))
    pq.write_table(narrow, source)
    report = sync(file_cache)
    assert report.table(SESSIONS).status == "ok" and "files_copied" not in report.table(SESSIONS).counters
    published = file_cache.get("df_sessions", arrow=True)
    assert published.schema.field("nwb_suffix").type == pa.int64()
    assert published.column_names == table.column_names  # the source's column order
    assert published.select(table.column_names).equals(table.replace_schema_metadata(None))
    assert built(report) == {TRIALS: (0, 0), EVENTS: (0, 0)}  # same subjects, same files


def test_a_table_with_a_key_cannot_be_built_from_parquet_files(bdc_cache, tmp_path):
    """ParquetFiles are written as they are: a table whose rows the framework would reorder (a
    key) or change (finalize) gets a clear error, and nothing is published."""
    import bdc
    from bdc import plugins
    from bdc.build import ParquetFiles
    from bdc.spec import TableSpec

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"k": ["b", "a"]}), path)

    class Plugin:
        @bdc.hookimpl
        def bdc_tables(self):
            return [TableSpec("keyed_files", "rows from a file", [("k", "string", "key")], key="k",
                              build=lambda ctx: ParquetFiles([str(path)]))]

    name = plugins.register(Plugin(), name="keyed-files")
    try:
        report = bdc.sync(bdc_cache, only=["keyed_files"])
    finally:
        plugins.unregister(name)
    table = report.table("keyed_files")
    assert table.status == "failed" and "cannot be built from ParquetFiles" in (table.error or "")
    assert "keyed_files" not in {e.get("name") for e in bdc_cache.registry()["tables"]}


def test_session_subjects_come_from_the_session_build(source_db, file_cache):
    """The session build saves its subjects with its run id; trials and events take them from
    there while the published session table is that run's, else read the published table."""
    from bdc.build import BuildContext
    from bdc_tables_foraging.tables import session_subjects

    report = sync(file_cache)
    spec = file_cache.spec(SESSIONS)
    state = file_cache.read_state(spec)
    assert state["subjects"] == sorted(source_db.subject_ids)
    assert state["run_id"] == report.run_id == file_cache.registry_entry(SESSIONS)["build"]["run_id"]
    ctx = BuildContext(file_cache, file_cache.spec(TRIALS))
    assert session_subjects(ctx) == sorted(source_db.subject_ids)

    # a state of another run (or none): the published table is read instead
    file_cache.write_state(spec, {**state, "run_id": "another-run", "subjects": ["999"]})
    assert session_subjects(ctx) == sorted(source_db.subject_ids)
    file_cache.write_state(spec, {})
    assert session_subjects(ctx) == sorted(source_db.subject_ids)

    # an unchanged session table keeps the subjects of the build that published it
    file_cache.write_state(spec, state)
    noop = sync(file_cache)
    assert noop.table(SESSIONS).status == "unchanged"
    assert file_cache.read_state(spec) == state
    # and a changed one records the new set
    change = modify_foraging_db(source_db.root, change_subjects=0, add_subjects=["0700002"],
                                remove_subjects=[source_db.subject_ids[0]], seed=4)
    again = sync(file_cache)
    assert file_cache.read_state(spec)["subjects"] == sorted(change.info.subject_ids)
    assert file_cache.read_state(spec)["run_id"] == again.run_id
    assert built(again) == {TRIALS: (1, 1), EVENTS: (1, 1)}


def test_subject_without_source_files(source_db, file_cache):
    victim, other = source_db.subject_ids[0], source_db.subject_ids[1]
    shutil.rmtree(Path(source_db.root) / "event_table" / f"subject_id={victim}")
    shutil.rmtree(Path(source_db.root) / "trial_table" / f"subject_id={other}")
    report = sync(file_cache)
    assert report.table(EVENTS).counters["subjects_without_source_files"] == 1
    assert report.table(TRIALS).counters["subjects_without_source_files"] == 1
    empty = file_cache.get("df_events", subject_id=victim)
    assert empty.empty and list(empty.columns) == list(gen.EVENT_COLUMNS)
    trials = file_cache.get("df_trials", subject_id=victim)
    assert len(trials) == source_db.trials_per_subject[victim]
    # an empty partition has the columns of the table's source files, in their order (all of
    # them, not only the declared ones), so it reads like the others
    no_trials = file_cache.get("df_trials", subject_id=other)
    assert no_trials.empty and list(no_trials.columns) == list(trials.columns)
    assert len(trials.columns) > len(file_cache.spec("df_trials").columns)
    assert built(sync(file_cache)) == {TRIALS: (0, 0), EVENTS: (0, 0)}  # stable until files appear


def test_interop_with_upstream_helpers_and_sql(source_db, file_cache):
    import duckdb

    sync(file_cache)
    con = duckdb.connect()
    expected = upstream_read(con, *source_locations(source_db.root))
    got = upstream_read(con, *bdc_locations(file_cache))
    assert len(expected[1]) == source_db.n_trials and len(expected[2]) == source_db.n_events
    assert 0 < len(expected[3]) < source_db.n_events
    for a, b in zip(expected, got):
        pd.testing.assert_frame_equal(canon(a), canon(b))

    joined = file_cache.sql(
        "SELECT s.subject_id, count(*) AS n FROM df_sessions s "
        "JOIN df_trials t ON t.session_id = s._session_id GROUP BY 1 ORDER BY 1")
    assert dict(zip(joined["subject_id"], joined["n"])) == dict(source_db.trials_per_subject)
    n = file_cache.sql("SELECT count(*) FROM platform_dynamic_foraging_events e "
                       "JOIN platform_dynamic_foraging_sessions s ON e.session_id = s._session_id "
                       "WHERE s.subject_id = ?", [source_db.leading_zero_subjects[0]]).iloc[0, 0]
    assert n == source_db.events_per_subject[source_db.leading_zero_subjects[0]]


# ------------------------------------------------------------------------------------------
# S3 (moto) as the source and as the cache
# ------------------------------------------------------------------------------------------


def test_s3_source_and_s3_cache(s3_source, s3_env, s3_upload, monkeypatch):
    import boto3
    import duckdb

    from bdc.cache import Cache
    from bdc_tables_foraging.filesystem import duckdb_connect

    db, base = s3_source
    cache_bucket = "bdc-foraging-cache"
    boto3.client("s3").create_bucket(Bucket=cache_bucket)
    cache = Cache(f"s3://{cache_bucket}/data-asset-cache")
    report = sync(cache)
    assert (report.table(TRIALS).rows, report.table(EVENTS).rows) == (db.n_trials, db.n_events)
    # one S3 service: the source files are copied server-side (what the helpers read below)
    events = report.table(EVENTS).counters
    assert events["files_copied_server_side"] == events["files_copied"] > 0
    lz = db.leading_zero_subjects[0]
    trials = cache.get("df_trials", subject_id=lz)
    assert len(trials) == db.trials_per_subject[lz] and set(trials["subject_id"]) == {lz}
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=cache_bucket)["Contents"]]
    assert f"data-asset-cache/bdc-v0.36/{EVENTS}/subject_id={lz}/data.parquet" in keys
    assert f"data-asset-cache/bdc-v0.36/{SESSIONS}.pqt" in keys

    # interop: the upstream helpers read bdc's tables in S3 and the S3 source alike (no httpfs)
    con = duckdb_connect(base)
    expected = upstream_read(duckdb.connect(), *source_locations(db.root))
    for a, b in zip(expected, upstream_read(con, *source_locations(base))):
        pd.testing.assert_frame_equal(canon(a), canon(b))
    for a, b in zip(expected, upstream_read(duckdb_connect(cache.url), *bdc_locations(cache))):
        pd.testing.assert_frame_equal(canon(a), canon(b))

    # incremental on S3: only re-uploaded partitions are rebuilt, vanished ones deleted
    keep = [s for s in db.subject_ids if s != db.drift_subject]
    change = modify_foraging_db(db.root, change_subjects=[keep[0]], add_subjects=1,
                                remove_subjects=[keep[1]], seed=5)
    assert s3_upload(Path(db.root), base.split("/")[2], "foraging")["deleted"] > 0
    # the standard service-specific endpoint setting works as well as the generic one
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_env)
    cache = Cache(cache.url)
    report = sync(cache)
    assert built(report) == {TRIALS: (2, 1), EVENTS: (2, 1)}
    assert len(cache.get("df_events")) == change.info.n_events
    assert cache.get("df_trials", subject_id=keep[1]).empty
    assert built(sync(cache)) == {TRIALS: (0, 0), EVENTS: (0, 0)}


def test_s3_source_into_local_cache(s3_source, file_cache):
    db, _base = s3_source
    report = sync(file_cache)
    assert report.table(EVENTS).rows == db.n_events
    drift = file_cache.get("df_trials", subject_id=db.drift_subject)
    assert drift[gen.DRIFT_ADDED_COLUMN].isna().any() and drift[gen.DRIFT_ADDED_COLUMN].notna().any()


# ------------------------------------------------------------------------------------------
# the partition reader, errors, demo
# ------------------------------------------------------------------------------------------


def test_partition_reader_streams_and_restarts(pristine_db):
    from bdc_tables_foraging.source import ForagingSource

    source = ForagingSource(pristine_db.root)
    reader = source.partition("trial_table", pristine_db.drift_subject)
    assert len(reader.paths) == 2 and reader.num_rows == pristine_db.trials_per_subject[pristine_db.drift_subject]
    reader.batch_rows = 16
    first = list(reader)
    assert len(first) > 2 and {b.schema for b in first} == {reader.schema}
    assert sum(b.num_rows for b in list(reader)) == reader.num_rows  # a second pass re-reads
    table = reader.read_all()
    assert table.schema == reader.schema
    pd.testing.assert_frame_equal(table.to_pandas(), pa.Table.from_batches(first).to_pandas())
    assert reader.schema.field("subject_id").type == pa.string()
    assert source.partition("trial_table", "999999").paths == []
    fps = source.partition_fingerprints("event_table")
    assert sorted(fps) == sorted(pristine_db.subject_ids) and len(set(fps.values())) == len(fps)


def test_transient_pyarrow_errors_are_retried():
    from bdc.runner.retry import TransientError, is_transient
    from bdc_tables_foraging.filesystem import transient_errors

    with pytest.raises(TransientError) as caught:
        with transient_errors():
            raise OSError("AWS Error NETWORK_CONNECTION during GetObject operation: curl error")
    assert is_transient(caught.value)
    for error in (FileNotFoundError("gone"), OSError("AWS Error ACCESS_DENIED")):
        with pytest.raises(type(error)):
            with transient_errors():
                raise error


def test_framework_streams_partitions_with_extra_columns(bdc_cache):
    """A stream whose batches carry undeclared columns is written with them (trials stream)."""
    from bdc.testing import make_spec

    spec = make_spec("streamed", [("subject_id", "string"), ("x", "int64")], partition_key="subject_id",
                     extra_columns=True)
    batches = [pa.record_batch({"x": [1, 2], "extra": [0.5, 1.5]}),
               pa.record_batch({"x": pa.array([3], pa.int32()), "extra": [2.5]})]
    stats = bdc_cache.write_partition(spec, "0012", iter(batches))
    assert stats["rows"] == 3
    path = bdc_cache.layout.partition_key(spec, "0012")
    table = pq.read_table(pa.BufferReader(bdc_cache.backend.read_bytes(path)))
    assert table.column_names == ["x", "extra", "subject_id"]  # the build's order, the key it left out last
    assert table.column("x").to_pylist() == [1, 2, 3]
    assert table.column("subject_id").to_pylist() == ["0012"] * 3


def test_demo_source(monkeypatch):
    import os

    from bdc.catalog import get_catalog

    monkeypatch.setenv("BDC_FORAGING_BASE", "/somewhere/else")
    (demo,) = [d for d in get_catalog().demos if d.name == "foraging"]
    assert "24 subjects" in demo.description
    with demo.start() as info:
        root = Path(os.environ["BDC_FORAGING_BASE"])
        assert root == Path(info.root) and (root / "session_table.parquet").exists()
        assert (len(info.subject_ids), info.n_sessions, info.n_trials) == (24, 96, 96 * 150)
        report = sync("memory://foraging-demo")
        assert report.table(EVENTS).rows == info.n_events
    assert os.environ["BDC_FORAGING_BASE"] == "/somewhere/else"
    assert not root.exists()


def test_run_report_is_json(source_db, file_cache):
    report = sync(file_cache)
    doc = json.loads(report.to_json())
    assert {t["name"] for t in doc["tables"]} == set(TABLES)


def test_subject_id_comes_from_the_folder_as_text(tmp_path):
    """A file without subject_id, one with it as an integer (zeros lost): both read as "0042"."""
    from bdc_tables_foraging.source import ForagingSource

    part = tmp_path / "trial_table" / "subject_id=0042"
    part.mkdir(parents=True)
    pq.write_table(pa.table({"trial": pa.array([0, 1], pa.int32()), "x": [1.0, 2.0]}), part / "a.parquet")
    pq.write_table(pa.table({"trial": pa.array([2], pa.int64()), "subject_id": [42], "y": ["new"]}),
                   part / "b.parquet")
    pq.write_table(pa.table({"trial": [9]}), part / ".c.parquet.tmp")  # a write in progress
    reader = ForagingSource(str(tmp_path)).partition("trial_table", "0042")
    assert [Path(p).name for p in reader.paths] == ["a.parquet", "b.parquet"]
    assert reader.schema.names == ["trial", "x", "subject_id", "y"]
    assert reader.schema.field("trial").type == pa.int64()
    for table in (reader.read_all(), pa.Table.from_batches(list(reader))):
        assert table.to_pydict() == {"trial": [0, 1, 2], "x": [1.0, 2.0, None],
                                     "subject_id": ["0042"] * 3, "y": [None, None, "new"]}


def test_partitions_are_the_source_files_with_a_streaming_rewrite(source_db, file_cache):
    """A partition build names the subject's source files (copied when they conform) and gives
    the streaming reader to rewrite them otherwise (files unioned by name, one pass at a time)."""
    from bdc.build import BuildContext, ParquetFiles
    from bdc_tables_foraging import tables
    from bdc_tables_foraging.source import PartitionReader

    for sid in source_db.subject_ids:
        for name, build, folder in ((EVENTS, tables.build_event_partition, "event_table"),
                                    (TRIALS, tables.build_trial_partition, "trial_table")):
            files = build(BuildContext(file_cache, file_cache.spec(name)), sid)
            assert isinstance(files, ParquetFiles) and isinstance(files.rewrite, PartitionReader)
            assert [Path(p) for p in files.paths] == list(source_files(source_db, folder, sid))
            assert files.rewrite.paths == list(files.paths)
            assert files.filesystem is files.rewrite.filesystem
    drift = tables.build_trial_partition(BuildContext(file_cache, file_cache.spec(TRIALS)), source_db.drift_subject)
    assert drift.rewrite.num_rows == source_db.trials_per_subject[source_db.drift_subject]
