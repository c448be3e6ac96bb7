"""Tests of the seeded foraging-database generator (upstream layout, read by upstream)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import aind_dynamic_foraging_database as adfd
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aind_dynamic_foraging_database import query as adfd_query

from bdc_tables_foraging.demo import generator as gen
from bdc_tables_foraging.demo import (
    ForagingDbInfo,
    describe_foraging_db,
    generate_foraging_db,
    modify_foraging_db,
)

SMALL = dict(subjects=6, sessions_per_subject=3, trials_per_session=40, leading_zero_subjects=3)

DOCUMENTED_SESSION = (
    "_session_id subject_id session_date nwb_suffix task total_trials total_trials_with_autowater "
    "finished_trials ignored_trials finished_rate ignore_rate reward_trials reward_rate foraging_eff "
    "foraging_performance bias_naive autowater_collected autowater_ignored reaction_time_median "
    "early_lick_rate institute hardware rig_type room data_source curriculum_name curriculum_version "
    "current_stage_actual rig trainer PI weight_after water_in_session_total nwb_data_source "
    "co_asset_id co_s3_nwb_uri"
).split()
DOCUMENTED_TRIAL = (
    "session_id subject_id session_date nwb_suffix trial animal_response earned_reward "
    "rewarded_historyL rewarded_historyR reward_probabilityL reward_probabilityR auto_waterL "
    "auto_waterR reward_random_number_left reward_random_number_right goCue_start_time_in_session "
    "choice_time_in_session reward_time_in_session reaction_time nwb_data_source"
).split()
EVENT_10 = [
    "session_id", "subject_id", "session_date", "nwb_suffix", "trial", "timestamps",
    "raw_timestamps", "event", "data", "nwb_data_source",
]


@pytest.fixture(autouse=True)
def _fresh_upstream_caches():
    """Upstream memoizes partition listings per base; keep tests independent."""
    adfd.clear_caches()
    yield
    adfd.clear_caches()


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> ForagingDbInfo:
    return generate_foraging_db(tmp_path_factory.mktemp("fdb") / "db", seed=7, **SMALL)


@pytest.fixture()
def con():
    c = duckdb.connect()
    yield c
    c.close()


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _scalar(con: duckdb.DuckDBPyConnection, sql: str):
    return con.sql(sql).fetchall()[0][0]


def _upstream(root: str) -> dict[str, str]:
    return {"session": f"{root}/session_table.parquet", "trial": f"{root}/trial_table",
            "event": f"{root}/event_table"}


# ------------------------------------------------------------------------------------------
# determinism and layout
# ------------------------------------------------------------------------------------------


def test_deterministic_bytes(tmp_path):
    a = generate_foraging_db(tmp_path / "a", seed=3, **SMALL)
    b = generate_foraging_db(tmp_path / "b", seed=3, **SMALL)
    c = generate_foraging_db(tmp_path / "c", seed=4, **SMALL)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _same_content(a, b)
    assert a.subject_ids != c.subject_ids


def _same_content(a: ForagingDbInfo, b: ForagingDbInfo) -> bool:
    return (a.subject_ids, a.n_sessions, a.n_trials, a.n_events, a.drift_subject,
            dict(a.events_per_subject)) == (b.subject_ids, b.n_sessions, b.n_trials, b.n_events,
                                            b.drift_subject, dict(b.events_per_subject))


def test_refuses_to_overwrite_unless_asked(tmp_path):
    generate_foraging_db(tmp_path, seed=1, **SMALL)
    with pytest.raises(FileExistsError):
        generate_foraging_db(tmp_path, seed=1, **SMALL)
    (tmp_path / "keep.txt").write_text("mine")
    info = generate_foraging_db(tmp_path, seed=2, overwrite=True, **SMALL)
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert describe_foraging_db(tmp_path).subject_ids == info.subject_ids


def test_layout(db):
    root = Path(db.root)
    assert sorted(p.name for p in root.iterdir()) == ["event_table", "session_table.parquet",
                                                      "trial_table"]
    assert db.n_sessions == 6 * 3 and db.n_trials == 6 * 3 * 40
    assert 5 * db.n_trials < db.n_events < 11 * db.n_trials  # ~8 events per trial
    multi_file = 0
    for table, width in (("trial_table", 103), ("event_table", 10)):
        parts = sorted(p.name for p in (root / table).iterdir())
        assert parts == [f"subject_id={s}" for s in db.subject_ids]
        for sid in db.subject_ids:
            files = sorted((root / table / f"subject_id={sid}").iterdir())
            assert files and all(f.suffix == ".parquet" for f in files)
            multi_file += len(files) > 1
            for f in files:
                schema = pq.read_schema(f)
                old = (sid == db.drift_subject and f.name == f"{sid}.parquet"
                       and table == "trial_table")
                assert len(schema) == (width - 1 if old else width), f
                # every partition file carries subject_id as a string (as upstream writes it)
                assert schema.field("subject_id").type == pa.string()
                assert set(pq.read_table(f, columns=["subject_id"]).column(0).to_pylist()) == {sid}
    assert multi_file >= 2  # per-session files and the drift subject
    assert describe_foraging_db(root) == db


def test_column_sets(db):
    root = Path(db.root)
    sessions = pq.read_schema(root / "session_table.parquet")
    assert len(sessions) == 160
    assert set(DOCUMENTED_SESSION) <= set(sessions.names)
    assert len(gen.TRIAL_COLUMNS) == 103 and set(DOCUMENTED_TRIAL) <= set(gen.TRIAL_COLUMNS)
    assert sorted(gen.EVENT_COLUMNS) == sorted(EVENT_10)
    some = next((root / "event_table").rglob("*.parquet"))
    assert pq.read_schema(some).names == list(gen.EVENT_COLUMNS)


def test_ids_stay_strings_and_values_are_realistic(db):
    t = pq.read_table(Path(db.root) / "session_table.parquet")
    assert t.schema.field("subject_id").type == pa.string()
    assert t.schema.field("session_date").type == pa.string()
    assert t.schema.field("nwb_suffix").type == pa.int64()
    ids = set(t.column("subject_id").to_pylist())
    assert ids == set(db.subject_ids)
    lz = db.leading_zero_subjects
    assert len(lz) == 3 and {len(s) for s in lz} == {4, 5, 6} and lz[0] in ids
    df = t.to_pandas()
    for row in df.itertuples():
        assert row._1 == f"{row.subject_id}_{row.session_date}_{row.nwb_suffix}"  # _session_id
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row.session_date)
        hh, mm, ss = row.nwb_suffix // 10000, row.nwb_suffix // 100 % 100, row.nwb_suffix % 100
        assert 0 <= hh < 24 and mm < 60 and ss < 60
    assert df["_session_id"].is_unique
    for col in ("finished_rate", "ignore_rate", "reward_rate", "foraging_eff",
                "foraging_performance"):
        assert df[col].between(0, 1).all(), col
    assert df["bias_naive"].between(-1, 1).all()
    assert set(df["task"]) <= {"Coupled Baiting", "Uncoupled Baiting", "Uncoupled Without Baiting"}
    assert set(df["nwb_data_source"]) <= {"co_asset", "bonsai_s3", "bpod_s3"}
    co = df["nwb_data_source"] == "co_asset"
    assert df.loc[co, "co_asset_id"].notna().all() and df.loc[~co, "co_asset_id"].isna().all()
    assert (df["total_trials_with_autowater"] == 40).all()


def test_session_metrics_match_trials(db, con):
    """Session metrics follow upstream validate_step2's definitions over the trial table."""
    src = adfd.read_trials(None, base=f"{db.root}/trial_table", con=con)
    got = con.sql(f"""
        WITH t AS (
            SELECT session_id, (auto_waterL = 0 AND auto_waterR = 0) AS non_aw,
                   CAST(animal_response AS INTEGER) AS ar,
                   rewarded_historyL OR rewarded_historyR AS rew
            FROM {src}),
        agg AS (
            SELECT session_id, COUNT(*) AS n_all, SUM(non_aw::INT) AS n_total,
                   SUM((non_aw AND ar <> 2)::INT) AS n_finished,
                   SUM((non_aw AND rew)::INT) AS n_reward,
                   SUM((NOT non_aw AND ar <> 2)::INT) AS n_aw_collected
            FROM t GROUP BY session_id)
        SELECT s._session_id, n_all = s.total_trials_with_autowater, n_total = s.total_trials,
               n_finished = s.finished_trials, n_reward = s.reward_trials,
               n_aw_collected = s.autowater_collected
        FROM agg JOIN read_parquet('{db.root}/session_table.parquet') s
          ON agg.session_id = s._session_id
    """).fetchall()
    assert len(got) == db.n_sessions
    assert all(all(r[1:]) for r in got)


def test_event_semantics(db, con):
    src = f"read_parquet('{db.root}/event_table/*/*.parquet', union_by_name=true)"
    kinds = {r[0] for r in con.sql(f"SELECT DISTINCT event FROM {src}").fetchall()}
    assert {"goCue_start_time", "left_lick_time", "right_lick_time"} <= kinds
    assert kinds <= set(gen.EVENT_TYPES)
    assert _scalar(con, f"SELECT COUNT(*) FROM {src} WHERE trial = -1") > 0
    # trial = index of the last go cue at or before the event; go cues carry their own trial
    bad = _scalar(con, f"""
        WITH g AS (SELECT session_id, trial, timestamps AS t0 FROM {src}
                   WHERE event = 'goCue_start_time')
        SELECT COUNT(*) FROM {src} e JOIN g ON e.session_id = g.session_id AND e.trial = g.trial
        WHERE e.timestamps < g.t0""")
    assert bad == 0
    n_cues = _scalar(con, f"SELECT COUNT(*) FROM {src} WHERE event = 'goCue_start_time'")
    assert n_cues == db.n_trials
    assert {r[0] for r in con.sql(f"SELECT DISTINCT data FROM {src}").fetchall()} <= {
        "1.0", "earned", "auto"}


def test_drift_subject_schemas(db):
    part = Path(db.root) / "trial_table" / f"subject_id={db.drift_subject}"
    files = sorted(part.glob("*.parquet"))
    assert len(files) == 2
    old = pq.read_schema(part / f"{db.drift_subject}.parquet")
    (new_file,) = [f for f in files if f.name != f"{db.drift_subject}.parquet"]
    new = pq.read_schema(new_file)
    assert set(new.names) - set(old.names) == {gen.DRIFT_ADDED_COLUMN}
    for col in gen.DRIFT_WIDENED_COLUMNS:
        assert old.field(col).type == pa.int32() and new.field(col).type == pa.int64()
    assert not db.drift_subject.startswith("0")


# ------------------------------------------------------------------------------------------
# the upstream package reads the generated database
# ------------------------------------------------------------------------------------------


def test_upstream_reads_everything(db, con):
    b = _upstream(db.root)
    sel = adfd.select_sessions(base=b["session"], con=con)
    assert len(sel) == db.n_sessions
    assert sel["subject_id"].map(type).eq(str).all()
    trials = adfd.fetch_trials(sel, base=b["trial"], con=con)
    assert len(trials) == db.n_trials
    events = adfd.fetch_events(sel, base=b["event"], con=con)
    assert len(events) == db.n_events
    licks = adfd.fetch_events(sel, events=["left_lick_time"], base=b["event"], con=con)
    assert 0 < len(licks) < db.n_events
    status = adfd.status(prefix=db.root, con=con, verbose=False).iloc[0]
    assert (status["n_sessions"], status["n_subjects"]) == (db.n_sessions, len(db.subject_ids))


@pytest.mark.parametrize("which", ["drift", "leading_zero"])
def test_upstream_reads_one_subject(db, con, which):
    sid = db.drift_subject if which == "drift" else db.leading_zero_subjects[0]
    b = _upstream(db.root)
    sel = adfd.select_sessions(subjects=[sid], base=b["session"], con=con)
    assert len(sel) == 3 and set(sel["subject_id"]) == {sid}
    trials = adfd.fetch_trials(sel, columns="*", base=b["trial"], con=con)
    assert len(trials) == db.trials_per_subject[sid] == 3 * 40
    assert trials.shape[1] == 103  # subject_id/session_date/session_id/trial lead, rest follow
    assert set(trials["subject_id"]) == {sid}  # from the session table: a string, zeros kept
    events = adfd.fetch_events(sel, base=b["event"], con=con)
    assert len(events) == db.events_per_subject[sid]
    if which == "drift":
        last = sel["_session_id"].iloc[-1]
        added = trials[gen.DRIFT_ADDED_COLUMN]
        assert added[trials["session_id"] == last].notna().all()
        assert added[trials["session_id"] != last].isna().all()
        assert str(trials["auto_waterL"].dtype) == "int64"


def test_upstream_hive_typing_of_subject_id(db, con):
    """DuckDB replaces the in-file subject_id with the hive value and types it from the scope."""
    base = _upstream(db.root)["trial"]
    normal = next(s for s in db.subject_ids if not s.startswith("0"))
    lz = db.leading_zero_subjects[0]

    def types(subjects):
        src = adfd.read_trials(subjects, base=base, con=con)
        return con.sql(f"SELECT DISTINCT typeof(subject_id), CAST(subject_id AS VARCHAR) "
                       f"FROM {src}").fetchall()

    assert types([normal]) == [("BIGINT", normal)]
    assert types([lz]) == [("VARCHAR", lz)]
    assert {t for t, _ in types([normal, lz])} == {"VARCHAR"}
    # DuckDB auto-detects hive paths; only with hive_partitioning=false is the file column
    # (always the string) what you get
    src = f"read_parquet('{base}/subject_id={normal}/*.parquet')"
    assert con.sql(f"SELECT DISTINCT typeof(subject_id) FROM {src}").fetchall() == [("BIGINT",)]
    src = f"read_parquet('{base}/subject_id={normal}/*.parquet', hive_partitioning=false)"
    assert con.sql(f"SELECT DISTINCT typeof(subject_id) FROM {src}").fetchall() == [("VARCHAR",)]


def test_upstream_full_glob_path_keeps_leading_zero_subjects(db, con, monkeypatch):
    """Past _SCOPED_MAX subjects upstream filters the full glob on CAST(subject_id AS VARCHAR)."""
    monkeypatch.setattr(adfd_query, "_SCOPED_MAX", 1)
    b = _upstream(db.root)
    sel = adfd.select_sessions(subjects=db.leading_zero_subjects, base=b["session"], con=con)
    trials = adfd.fetch_trials(sel, base=b["trial"], con=con)
    assert len(trials) == sum(db.trials_per_subject[s] for s in db.leading_zero_subjects)


# ------------------------------------------------------------------------------------------
# incremental changes
# ------------------------------------------------------------------------------------------


def test_modify(tmp_path, con):
    root = tmp_path / "db"
    before = generate_foraging_db(root, seed=5, **SMALL)
    keep = before.drift_subject
    victim = before.leading_zero_subjects[1]
    change = modify_foraging_db(root, change_subjects=[keep, before.leading_zero_subjects[0]],
                                add_subjects=1, remove_subjects=[victim], seed=11)
    after = change.info
    assert change.removed == (victim,)
    assert len(change.added) == 1 and change.added[0] not in before.subject_ids
    assert set(after.subject_ids) == set(before.subject_ids) - {victim} | set(change.added)
    assert not (root / "trial_table" / f"subject_id={victim}").exists()
    assert not (root / "event_table" / f"subject_id={victim}").exists()
    assert after.n_sessions == before.n_sessions - 3 + 2 + 3
    assert after.n_trials == after.n_sessions * 40
    assert after.drift_subject == keep
    for sid in change.changed:
        assert after.trials_per_subject[sid] == before.trials_per_subject[sid] + 40
    # new sessions are appended after the subject's last one, as new per-session files
    for sess_id in change.new_session_ids[:2]:
        sid = sess_id.split("_")[0]
        assert (root / "trial_table" / f"subject_id={sid}" / f"{sess_id}.parquet").exists()
    b = _upstream(str(root))
    sel = adfd.select_sessions(base=b["session"], con=con)
    assert len(sel) == after.n_sessions and victim not in set(sel["subject_id"])
    assert set(change.new_session_ids) <= set(sel["_session_id"])
    assert len(adfd.fetch_trials(sel, base=b["trial"], con=con)) == after.n_trials
    assert len(adfd.fetch_events(sel, base=b["event"], con=con)) == after.n_events
    latest = sel[sel["subject_id"] == keep]["session_date"]
    assert latest.is_monotonic_increasing and latest.is_unique


def test_modify_is_deterministic_and_coalesces(tmp_path):
    for name in ("a", "b"):
        generate_foraging_db(tmp_path / name, seed=5, **SMALL)
        modify_foraging_db(tmp_path / name, change_subjects=2, add_subjects=2, remove_subjects=1,
                           seed=2)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    root = tmp_path / "c"
    info = generate_foraging_db(root, seed=5, **SMALL)
    change = modify_foraging_db(root, change_subjects=[info.drift_subject], add_subjects=0,
                                remove_subjects=0, coalesce=True)
    part = root / "trial_table" / f"subject_id={info.drift_subject}"
    assert [p.name for p in part.iterdir()] == [f"{info.drift_subject}.parquet"]
    assert change.info.drift_subject is None  # the coalesced file unifies the schemas
    assert change.info.trials_per_subject[info.drift_subject] == 4 * 40


def test_modify_rejects_bad_requests(tmp_path):
    info = generate_foraging_db(tmp_path, seed=5, **SMALL)
    with pytest.raises(ValueError):
        modify_foraging_db(tmp_path, change_subjects=["999999"], add_subjects=0, remove_subjects=0)
    with pytest.raises(ValueError):
        modify_foraging_db(tmp_path, change_subjects=0, add_subjects=[info.subject_ids[0]],
                           remove_subjects=0)
    with pytest.raises(ValueError):
        modify_foraging_db(tmp_path, change_subjects=0, add_subjects=["../x"], remove_subjects=0)
    assert describe_foraging_db(tmp_path) == info  # nothing written on a rejected request


# ------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert gen.main([str(out), "--subjects", "4", "--sessions-per-subject", "2",
                     "--trials-per-session", "20", "--leading-zero-subjects", "1",
                     "--seed", "9"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_sessions"] == 8 and summary["n_trials"] == 160
    assert len(summary["leading_zero_subjects"]) == 1 and summary["drift_subject"]
    assert gen.main([str(out), "--subjects", "4"]) == 2  # refuses to overwrite
    capsys.readouterr()
    assert gen.main([str(out), "--modify", "--change", "1", "--add",
                     "0700001,0700002", "--remove", "0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["added"] == ["0700001", "0700002"] and summary["n_sessions"] == 8 + 1 + 4
