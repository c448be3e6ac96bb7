"""Sources as upstream's database really holds them, beyond the generator's clean files: an S3 file
rewritten within the second of the last listing, declared columns missing or with other types,
undeclared columns whose types differ between files, subjects without files, subject ids the
framework cannot take as partition values, and ids holding a literal ``%xx``. Each is mirrored the
way upstream's reader (DuckDB ``union_by_name`` over ``subject_id=<raw id>`` folders) reads it, or
fails or is reported visibly."""

from __future__ import annotations

import datetime as dt
import io
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import aind_dynamic_foraging_database as adfd
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bdc_tables_foraging.tables import EVENTS, SESSIONS, TRIALS
from test_copy_path import sync

TABLES = (SESSIONS, TRIALS, EVENTS)
FOLDERS = {TRIALS: "trial_table", EVENTS: "event_table"}


# -- editing a generated source ------------------------------------------------------------------


def folder(root: str | Path, table: str, sid: str) -> Path:
    return Path(root) / table / f"subject_id={sid}"


def files_of(root: str | Path, table: str, sid: str) -> list[Path]:
    return sorted(folder(root, table, sid).glob("*.parquet"))


def split_in_two(root: str | Path, table: str, sid: str) -> tuple[pa.Table, pa.Table]:
    """Replace a subject's files of ``table`` by nothing; return its rows in two halves (to write
    back, changed, as two files)."""
    paths = files_of(root, table, sid)
    rows = pa.concat_tables([pq.read_table(p) for p in paths], promote_options="permissive")
    for p in paths:
        p.unlink()
    half = rows.num_rows // 2
    return rows.slice(0, half), rows.slice(half)


def replace(table: pa.Table, name: str, values: Any) -> pa.Table:
    """``table`` with column ``name`` replaced by ``values`` (an array), where it stands."""
    return table.set_column(table.column_names.index(name), name, values)


def clone_subject(root: str | Path, template: str, new_id: str, folder_name: str | None = None) -> None:
    """Add subject ``new_id`` to the source: ``template``'s sessions, trials and events under the
    new id (in ``subject_id`` and the session keys), its files in ``subject_id=<folder_name>``
    (default: the raw id, as upstream's writer names folders)."""
    root = Path(root)

    def renamed(table: pa.Table, key: str) -> pa.Table:
        table = replace(table, "subject_id", pa.array([new_id] * table.num_rows, pa.string()))
        keys = [new_id + s[len(template):] for s in table.column(key).to_pylist()]
        return replace(table, key, pa.array(keys, pa.string()))

    sessions = pq.read_table(root / "session_table.parquet")
    mine = sessions.filter(pc.equal(sessions["subject_id"], template))
    pq.write_table(pa.concat_tables([sessions, renamed(mine, "_session_id")]), root / "session_table.parquet")
    for table in FOLDERS.values():
        target = folder(root, table, folder_name if folder_name is not None else new_id)
        target.mkdir(parents=True)
        for path in files_of(root, table, template):
            pq.write_table(renamed(pq.read_table(path), "session_id"), target / path.name)


def plain_subject(db: Any) -> str:
    """A leading-zero subject that is not the drift subject."""
    return next(s for s in db.leading_zero_subjects if s != db.drift_subject)


def upstream_sessions(base: str, sid: str, con: Any) -> pd.DataFrame:
    """One subject's sessions as upstream's helpers select them from the session table at ``base``."""
    adfd.clear_caches()
    return adfd.select_sessions(subjects=[sid], base=base, con=con)


def upstream_trials(root: str, base: str, sid: str) -> pd.DataFrame:
    """One subject's trials (its sessions from the source ``root``) as upstream's helpers read
    them from a trial table at ``base``."""
    con = duckdb.connect()
    sel = upstream_sessions(f"{root}/session_table.parquet", sid, con)
    return adfd.fetch_trials(sel, columns="*", base=base, con=con)


def canon(df: pd.DataFrame) -> pd.DataFrame:
    df = df[sorted(df.columns)]
    return df.sort_values(["session_id", "trial"]).reset_index(drop=True)


# -- D7: an S3 source's ETags -------------------------------------------------------------------


def _at_start_of_a_second() -> None:
    time.sleep(1 - (time.time() % 1) + 0.01)


def _versions(body: bytes) -> tuple[bytes, bytes]:
    """Two versions of a parquet file with the same rows and the same size, other bytes (as an
    upstream rebuild of the file can be)."""
    table = pq.read_table(io.BytesIO(body))
    out = []
    for version in ("1", "2"):
        sink = io.BytesIO()
        pq.write_table(table.replace_schema_metadata({"build": version}), sink)
        out.append(sink.getvalue())
    assert len(out[0]) == len(out[1]) and out[0] != out[1]
    return out[0], out[1]


def test_s3_fingerprints_hold_the_etag_from_one_listing(s3_source, monkeypatch):
    """S3's LastModified has a resolution of one second: a same-size rewrite within that second
    changes only the ETag, which the partition and session fingerprints include. A table is
    listed with one ListObjectsV2 (no HeadObject per file), the session table with a HeadObject."""
    import boto3
    import botocore.client

    from bdc_tables_foraging.source import TRIAL_TABLE, ForagingSource

    db, base = s3_source
    bucket = base.split("/")[2]
    sid = plain_subject(db)
    key = f"foraging/trial_table/subject_id={sid}/{files_of(db.root, 'trial_table', sid)[0].name}"
    session_key = "foraging/session_table.parquet"
    client = boto3.client("s3")
    old, new = _versions(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    old_sessions, new_sessions = _versions(client.get_object(Bucket=bucket, Key=session_key)["Body"].read())
    source = ForagingSource(base)
    calls: list[str] = []
    make_call = botocore.client.BaseClient._make_api_call

    def recorded(self: Any, operation: str, params: Any) -> Any:
        calls.append(operation)
        return make_call(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recorded)
    for _attempt in range(5):
        _at_start_of_a_second()
        client.put_object(Bucket=bucket, Key=key, Body=old)
        client.put_object(Bucket=bucket, Key=session_key, Body=old_sessions)
        calls.clear()
        before = source.partition_fingerprints(TRIAL_TABLE, source.list_table(TRIAL_TABLE))
        session_before = source.session_fingerprint()
        requests = list(calls)
        times = [client.head_object(Bucket=bucket, Key=k)["LastModified"] for k in (key, session_key)]
        client.put_object(Bucket=bucket, Key=key, Body=new)
        client.put_object(Bucket=bucket, Key=session_key, Body=new_sessions)
        after = source.partition_fingerprints(TRIAL_TABLE, source.list_table(TRIAL_TABLE))
        session_after = source.session_fingerprint()
        if [client.head_object(Bucket=bucket, Key=k)["LastModified"] for k in (key, session_key)] == times:
            break  # same size, same LastModified: only the ETags tell the versions apart
    else:
        pytest.skip("could not put and list the objects twice within one second")
    assert after[sid] != before[sid]
    assert {s: fp for s, fp in after.items() if s != sid} == {s: fp for s, fp in before.items() if s != sid}
    assert session_after != session_before
    assert requests == ["ListObjectsV2", "HeadObject"]  # a small table: one page


def test_s3_same_size_rewrite_in_the_same_second_is_mirrored(s3_source, file_cache):
    """End to end: sync, rewrite a subject's file with the same size within the same second (as
    an upstream rebuild can), sync again: the partition is the new file."""
    import boto3

    from test_copy_path import published

    db, base = s3_source
    bucket = base.split("/")[2]
    sid = plain_subject(db)
    paths = files_of(db.root, "trial_table", sid)
    key = f"foraging/trial_table/subject_id={sid}/{paths[0].name}"
    client = boto3.client("s3")
    old, new = _versions(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    sync(file_cache)  # warm: imports, every other subject
    for _attempt in range(5):
        _at_start_of_a_second()
        client.put_object(Bucket=bucket, Key=key, Body=old)
        first = client.head_object(Bucket=bucket, Key=key)["LastModified"]
        sync(file_cache)
        client.put_object(Bucket=bucket, Key=key, Body=new)
        if client.head_object(Bucket=bucket, Key=key)["LastModified"] == first:
            break
    else:
        pytest.skip("the sync took more than a second five times")
    assert published(file_cache, TRIALS, sid)[0] == old
    report = sync(file_cache)
    assert report.table(TRIALS).partitions_built == 1
    assert published(file_cache, TRIALS, sid)[0] == new


# -- D3: a declared column missing from every file ------------------------------------------------


def test_a_declared_column_missing_from_every_file_is_null(source_db, file_cache):
    sid = plain_subject(source_db)
    a, b = split_in_two(source_db.root, "trial_table", sid)
    pq.write_table(a.drop(["auto_waterL"]), folder(source_db.root, "trial_table", sid) / "a.parquet")
    pq.write_table(b.drop(["auto_waterL"]), folder(source_db.root, "trial_table", sid) / "b.parquet")
    sync(file_cache)
    got = file_cache.get("df_trials", subject_id=sid, arrow=True)
    assert got.num_rows == source_db.trials_per_subject[sid]
    assert got.schema.field("auto_waterL").type == pa.int64() and got["auto_waterL"].null_count == got.num_rows
    # as upstream's reader has it: the same rows (there without the column, which no file has)
    expected = upstream_trials(source_db.root, f"{source_db.root}/trial_table", sid)
    assert "auto_waterL" not in expected.columns
    mirrored = upstream_trials(source_db.root, file_cache.location(TRIALS).rstrip("/"), sid)
    assert mirrored["auto_waterL"].isna().all()
    pd.testing.assert_frame_equal(canon(expected), canon(mirrored.drop(columns="auto_waterL")))


# -- D4: the empty partition of a subject without files ------------------------------------------


@pytest.mark.parametrize("variant", ["lacks-a-declared-column", "declared-column-int32"])
def test_an_empty_partition_has_the_declared_columns_whatever_the_first_file(source_db, file_cache, variant):
    """A subject without files gets the declared columns with their declared types, never the
    failure of another subject's (old-schema) first file; the undeclared columns come along."""
    root = source_db.root
    first = sorted(p.name for p in (Path(root) / "trial_table").iterdir())[0][len("subject_id="):]
    victim = next(s for s in source_db.subject_ids if s not in (first, source_db.drift_subject))
    shutil.rmtree(folder(root, "trial_table", victim))
    a, b = split_in_two(root, "trial_table", first)
    if variant == "lacks-a-declared-column":
        a = a.drop(["auto_waterL"])
    else:
        a = replace(a, "auto_waterL", a["auto_waterL"].cast(pa.int32()))
    pq.write_table(a, folder(root, "trial_table", first) / "0-old.parquet")
    pq.write_table(b, folder(root, "trial_table", first) / "1-new.parquet")
    report = sync(file_cache)
    assert report.table(TRIALS).counters["subjects_without_source_files"] == 1
    empty = file_cache.get("df_trials", subject_id=victim, arrow=True)
    assert empty.num_rows == 0
    declared = file_cache.spec("df_trials").arrow_schema()
    for field in declared:
        assert empty.schema.field(field.name).type == field.type, field.name
    assert set(empty.column_names) == set(b.column_names)  # the undeclared ones too
    assert len(file_cache.get("df_trials", subject_id=first)) == source_db.trials_per_subject[first]


# -- D8: subject ids that cannot be partition values --------------------------------------------


def test_refused_subject_ids_are_counted_and_named(source_db, file_cache, caplog):
    template = plain_subject(source_db)
    refused = ["o'neil", " 12", "a..b"]
    for sid in refused:
        clone_subject(source_db.root, template, sid)
    with caplog.at_level(logging.WARNING):
        report = sync(file_cache)
    for name in (TRIALS, EVENTS):
        assert report.table(name).counters["subjects_refused"] == 3
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and name in r.getMessage()
                    and "left out" in r.getMessage()]
        assert len(warnings) == 1
        for sid in refused:
            assert repr(sid) in warnings[0]
    assert set(file_cache.get("df_sessions")["subject_id"]) >= set(refused)  # the sessions keep them
    assert set(file_cache.get("df_trials", columns=["subject_id"])["subject_id"]) == set(source_db.subject_ids)


# -- D5: types that differ between a subject's files ---------------------------------------------


def _ts(tz: str | None, unit: str) -> Any:
    return lambda n: pa.array([dt.datetime(2024, 1, 1, 12, 0, i % 60) for i in range(n)], pa.timestamp(unit, tz))


EXTRA_VARIANTS = {
    "timestamp-naive-vs-utc": (_ts(None, "ms"), _ts("UTC", "us")),
    "timestamp-zones": (_ts("America/New_York", "us"), _ts("UTC", "ns")),
    "string-vs-int64": (lambda n: pa.array([f"v{i}" for i in range(n)]), lambda n: pa.array(range(n), pa.int64())),
    "int64-vs-double": (lambda n: pa.array(range(n), pa.int64()), lambda n: pa.array([i / 2 for i in range(n)])),
    "double-vs-string": (lambda n: pa.array([i / 4 for i in range(n)]), lambda n: pa.array(["x"] * n)),
}


@pytest.mark.parametrize("variant", sorted(EXTRA_VARIANTS))
def test_rewritten_files_with_differing_extra_column_types_read_as_upstream(source_db, file_cache, variant):
    """A subject rewritten (one file has ``trial`` as int32) whose files hold an undeclared column
    with types pyarrow's unify cannot merge: read as DuckDB's ``union_by_name`` (upstream) reads
    them (a common supertype, else text)."""
    sid = plain_subject(source_db)
    first, second = EXTRA_VARIANTS[variant]
    a, b = split_in_two(source_db.root, "trial_table", sid)
    a = replace(a, "trial", a["trial"].cast(pa.int32())).append_column("x", first(a.num_rows))
    b = b.append_column("x", second(b.num_rows))
    pq.write_table(a, folder(source_db.root, "trial_table", sid) / "a.parquet")
    pq.write_table(b, folder(source_db.root, "trial_table", sid) / "b.parquet")
    report = sync(file_cache)
    assert report.table(TRIALS).counters.get("files_copied", 0) < report.table(TRIALS).counters["source_files"]
    expected = upstream_trials(source_db.root, f"{source_db.root}/trial_table", sid)
    got = upstream_trials(source_db.root, file_cache.location(TRIALS).rstrip("/"), sid)
    pd.testing.assert_frame_equal(canon(expected), canon(got))
    assert len(file_cache.get("df_trials", subject_id=sid)) == source_db.trials_per_subject[sid]


def test_a_declared_column_double_in_one_file_and_text_in_another(source_db, file_cache):
    """events.data (declared text) written as double by an older build: text, as DuckDB writes
    a double ('1.0'), equal to what upstream's reader gives on the source."""
    sid = plain_subject(source_db)
    a, b = split_in_two(source_db.root, "event_table", sid)
    doubles = pc.cast(pc.if_else(pc.equal(a["data"], "1.0"), a["data"], "2.5"), pa.float64())
    pq.write_table(replace(a, "data", doubles), folder(source_db.root, "event_table", sid) / "a.parquet")
    pq.write_table(b, folder(source_db.root, "event_table", sid) / "b.parquet")
    sync(file_cache)
    got = file_cache.get("df_events", subject_id=sid, arrow=True)
    assert got.schema.field("data").type == pa.string()
    assert got.num_rows == source_db.events_per_subject[sid]
    con = duckdb.connect()
    sel = upstream_sessions(f"{source_db.root}/session_table.parquet", sid, con)
    keys = ["session_id", "timestamps", "event"]
    expected = adfd.fetch_events(sel, columns="*", base=f"{source_db.root}/event_table", con=con)
    adfd.clear_caches()
    mirrored = adfd.fetch_events(sel, columns="*", base=file_cache.location(EVENTS).rstrip("/"), con=con)
    assert set(expected["data"]) >= {"1.0", "2.5"}
    pd.testing.assert_frame_equal(expected.sort_values(keys).reset_index(drop=True)[sorted(expected.columns)],
                                  mirrored.sort_values(keys).reset_index(drop=True)[sorted(mirrored.columns)])


def test_a_declared_column_that_cannot_take_its_type_fails_naming_subject_file_and_column(source_db, file_cache):
    import bdc

    sid = plain_subject(source_db)
    a, b = split_in_two(source_db.root, "trial_table", sid)
    pq.write_table(a, folder(source_db.root, "trial_table", sid) / "a.parquet")
    bad = replace(b, "nwb_suffix", pa.array([120000.5] * b.num_rows))
    pq.write_table(bad, folder(source_db.root, "trial_table", sid) / "b.parquet")
    report = bdc.sync(file_cache, only=list(TABLES), progress="none")
    trials = report.table(TRIALS)
    assert trials.status == "failed" and trials.partitions_failed == 1
    text = trials.error or ""
    assert f"subject_id={sid}" in text and "'nwb_suffix'" in text
    assert str(folder(source_db.root, "trial_table", sid) / "b.parquet") in text
    assert report.table(EVENTS).status == "ok"


def test_nan_in_a_declared_integer_column_is_null(source_db, file_cache):
    """pandas writes a missing integer as NaN in a double column: a null, not a failure."""
    sid = plain_subject(source_db)
    a, b = split_in_two(source_db.root, "trial_table", sid)
    suffix = [float(v) for v in a["nwb_suffix"].to_pylist()]
    suffix[0] = float("nan")
    pq.write_table(replace(a, "nwb_suffix", pa.array(suffix)), folder(source_db.root, "trial_table", sid) / "a.parquet")
    pq.write_table(b, folder(source_db.root, "trial_table", sid) / "b.parquet")
    sync(file_cache)
    got = file_cache.get("df_trials", subject_id=sid, arrow=True)
    assert got.schema.field("nwb_suffix").type == pa.int64() and got["nwb_suffix"].null_count == 1


def test_common_type_follows_duckdb():
    from bdc_tables_foraging.source import common_type

    assert common_type([pa.int32(), pa.int64()]) == pa.int64()
    assert common_type([pa.int64(), pa.float64()]) == pa.float64()
    assert common_type([pa.string(), pa.int64()]) == pa.string()
    assert common_type([pa.bool_(), pa.int64()]) == pa.string()
    assert common_type([pa.timestamp("ms"), pa.timestamp("us", "UTC")]) == pa.timestamp("us", "UTC")
    assert common_type([pa.timestamp("ms", "Europe/Paris"), pa.timestamp("s", "UTC")]) == pa.timestamp("ms", "UTC")
    assert common_type([pa.timestamp("ms", "UTC"), pa.timestamp("us", "UTC")]) == pa.timestamp("us", "UTC")
    assert common_type([pa.null(), pa.float64()]) == pa.float64()
    assert common_type([pa.dictionary(pa.int32(), pa.string()), pa.string()]) == pa.string()
    assert common_type([pa.list_(pa.int64()), pa.string()]) is None


def test_undeclared_columns_without_a_common_type_fail_clearly(tmp_path):
    from bdc.errors import SchemaMismatchError
    from bdc_tables_foraging.source import ForagingSource

    part = tmp_path / "trial_table" / "subject_id=0042"
    part.mkdir(parents=True)
    pq.write_table(pa.table({"trial": [0], "x": pa.array([[1, 2]])}), part / "a.parquet")
    pq.write_table(pa.table({"trial": [1], "x": ["text"]}), part / "b.parquet")
    with pytest.raises(SchemaMismatchError, match=r"subject_id='0042': column 'x' .*a\.parquet.*b\.parquet"):
        ForagingSource(str(tmp_path)).partition("trial_table", "0042").read_all()


# -- D2: subject ids holding a literal percent escape -------------------------------------------


def test_a_literal_percent_escape_in_an_id_is_its_own_folder(source_db, file_cache):
    """Upstream names folders ``subject_id={subject_id}`` and compares raw folder text: the folder
    ``subject_id=a%20b`` is subject ``a%20b`` (fingerprinted, so a change of its files is
    mirrored), and ``a b`` (listed, without a folder) gets none of its rows."""
    template = plain_subject(source_db)
    clone_subject(source_db.root, template, "a%20b")
    clone_subject(source_db.root, template, "a b")
    for table in FOLDERS.values():
        shutil.rmtree(folder(source_db.root, table, "a b"))
    rows = source_db.trials_per_subject[template]
    report = sync(file_cache)
    assert report.table(TRIALS).counters["subjects_without_source_files"] == 1  # 'a b' alone
    assert len(file_cache.get("df_trials", subject_id="a%20b")) == rows
    assert file_cache.get("df_trials", subject_id="a b").empty
    assert file_cache.get("df_events", subject_id="a b").empty
    total = sum(pq.read_metadata(p).num_rows for p in (Path(source_db.root) / "trial_table").rglob("*.parquet"))
    assert len(file_cache.get("df_trials")) == total  # no folder published twice

    # upstream's builder appends a session to the subject: the resync mirrors it
    path = files_of(source_db.root, "trial_table", "a%20b")[0]
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table]), path)
    report = sync(file_cache)
    assert report.table(TRIALS).partitions_built == 1
    assert len(file_cache.get("df_trials", subject_id="a%20b")) == rows + table.num_rows


def test_files_named_with_a_dot_or_underscore_first_are_read_as_upstream_reads_them(source_db, file_cache):
    """Upstream's reader (DuckDB over ``subject_id=<id>/*.parquet``) reads every ``.parquet`` file of a
    subject's folder, ``_extra.parquet`` and ``.hidden.parquet`` included: the mirror takes them too
    (other files, ``_SUCCESS``, ``*.crc``, are still left out)."""
    sid = plain_subject(source_db)
    first = files_of(source_db.root, "trial_table", sid)[0]
    for name in ("_extra.parquet", ".hidden.parquet"):
        shutil.copyfile(first, first.with_name(name))
    (first.parent / "_SUCCESS").write_bytes(b"")
    (first.parent / ".part.parquet.crc").write_bytes(b"\x00")
    sync(file_cache)
    con = duckdb.connect()
    upstream = con.execute("SELECT count(*) FROM read_parquet(?, union_by_name = true)",
                           [str(first.parent / "*.parquet")]).fetchone()[0]
    assert upstream == source_db.trials_per_subject[sid] + 2 * pq.read_metadata(first).num_rows
    assert len(file_cache.get("df_trials", subject_id=sid)) == upstream
