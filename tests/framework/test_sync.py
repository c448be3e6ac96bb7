"""The sync runner (``bdc.sync`` / ``bdc-sync``) on the synthetic plugin of :mod:`syncplugin`.

Covered here: the plan (DAG, waves, ``--only``/``--no-deps``/``--exclude``, cycles and missing
dependencies, ``--dry-run``), dependency order, parallel tables and partitions, incremental builds
(a Delta for a whole table, fingerprints for partitions, deletions; a full rebuild gives the same
bytes), retries of transient errors and none for permanent ones, failure isolation, the registry
keeping the last successful build, the run report (in the cache and at ``--report``), progress
output and the exit codes of ``bdc-sync`` (in-process and through the console script).
Locks are in ``test_sync_lock.py``, executors in ``test_sync_executors.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

import syncplugin
from bdc.cache import Cache
from bdc.runner import PlanError, RetryPolicy, RunReport, is_transient, sync
from bdc.runner.cli import main as sync_main
from bdc.runner.progress import JsonProgress, LiveProgress, PlainProgress, make_progress
from bdc.testing import make_spec

#: Fast backoff so tests that retry stay quick (the policy itself is the production one).
FAST_RETRY = RetryPolicy(attempts=4, base=0.005, cap=0.02)
ALL_TABLES = ["sync_subjects", "platform_alpha", "platform_beta", "sync_sessions", "sync_summary"]
HERE = Path(__file__).resolve().parent


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> syncplugin.Source:
    """A fresh synthetic source folder with six subjects and no faults."""
    return syncplugin.make_source(tmp_path / "source")


@pytest.fixture
def plugin(source: syncplugin.Source, bdc_plugin: Callable[..., str]) -> str:
    """The synthetic tables of ``source``, registered in-process for this test."""
    return bdc_plugin(syncplugin.SyncPlugin(source), name="syncplugin-test", distribution="bdc-test-sync")


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    """An empty cache on local disk."""
    return Cache((tmp_path / "cache").as_uri())


def run(cache: Cache, **options: Any) -> RunReport:
    """``bdc.sync`` with fast retries; returns the report."""
    options.setdefault("retry", FAST_RETRY)
    report = sync(cache, **options)
    assert isinstance(report, RunReport)
    return report


def rows_of(cache: Cache, name: str) -> list[dict[str, Any]]:
    """A published table's rows, sorted (row-for-row comparisons)."""
    table = cache.get(name, arrow=True)
    return sorted(table.to_pylist(), key=lambda r: json.dumps(r, sort_keys=True, default=str))


def expected_subjects(subjects: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``sync_subjects`` as it must be published for these source records."""
    rows = [{"subject_id": sid, "species": rec["species"], "revision": rec["revision"]} for sid, rec in subjects.items()]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def expected_sessions(subjects: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``sync_sessions`` as it must be published for these source records."""
    rows = [row for sid, rec in subjects.items()
            for row in syncplugin.session_rows(sid, rec["revision"], rec["n_sessions"])]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def expected_summary(subjects: dict[str, dict[str, Any]]) -> dict[str, tuple[int, float]]:
    """``sync_summary`` by subject: (sessions, total value)."""
    out = {}
    for sid, rec in subjects.items():
        rows = syncplugin.session_rows(sid, rec["revision"], rec["n_sessions"])
        out[sid] = (len(rows), sum(r["value"] for r in rows))
    return out


def files_of(cache: Cache, name: str) -> dict[str, bytes]:
    """The published data objects of a table: key → bytes."""
    spec = cache.spec(name)
    if spec.partitioned:
        return {info.key: cache.backend.read_bytes(info.key) for info in cache.partition_objects(spec).values()}
    key = cache.layout.table_key(spec)
    return {key: cache.backend.read_bytes(key)}


def overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """How long two time intervals overlap (0 when they do not)."""
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def max_concurrency(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


# -- the plan ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("plugin")
def test_plan_waves_selection_and_dry_run(cache: Cache, capsys: pytest.CaptureFixture[str]) -> None:
    plan = sync(cache, dry_run=True)
    waves = [[s.name for s in wave] for wave in plan.waves]
    assert waves == [["sync_subjects", "platform_alpha", "platform_beta"], ["sync_sessions"], ["sync_summary"]]

    only = sync(cache, dry_run=True, only=["sync_summary"])
    assert [[s.name for s in w] for w in only.waves] == [["sync_subjects"], ["sync_sessions"], ["sync_summary"]]
    assert [s.name for s in sync(cache, dry_run=True, only=["sync_summary"], no_deps=True).tables] == ["sync_summary"]
    assert [s.name for s in sync(cache, dry_run=True, only=["subj"]).tables] == ["sync_subjects"]  # an alias
    assert "platform" not in " ".join(s.name for s in sync(cache, dry_run=True, exclude=["platform_*"]).tables)

    assert sync_main(["--cache", cache.url, "--dry-run", "--exclude", "platform_*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "wave 1:" and out[1].startswith("  sync_subjects: whole table, incremental")
    assert out[2] == "wave 2:" and out[3].startswith("  sync_sessions: partitioned by subject_id, incremental <- subj")
    assert out[4] == "wave 3:" and out[5].startswith("  sync_summary: whole table <- sync_sessions")
    assert len(out) == 6
    assert cache.registry() == {"tables": []} and cache.backend.list("") == []  # a dry run writes nothing


def test_plan_errors_name_the_tables(cache: Cache, bdc_plugin: Callable[..., str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    bdc_plugin([make_spec("t_one", depends_on=["t_two"]), make_spec("t_two", depends_on=["t_three"]),
                make_spec("t_three", depends_on=["t_one"]), make_spec("t_free")], name="cyclic")
    with pytest.raises(PlanError, match="cycle") as info:
        sync(cache, dry_run=True)
    assert all(name in str(info.value) for name in ("t_one", "t_two", "t_three"))
    assert "t_free" not in str(info.value)
    assert sync_main(["--cache", cache.url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cycle" in err and "t_one" in err

    bdc_plugin([make_spec("t_orphan", depends_on=["t_nowhere"])], name="orphan")
    with pytest.raises(PlanError, match="t_orphan.*t_nowhere"):
        sync(cache, dry_run=True, only=["t_orphan"])


# -- order and parallelism ----------------------------------------------------------------------


@pytest.mark.usefixtures("plugin")
def test_builds_follow_dependencies_and_publish_what_the_source_says(
        cache: Cache, source: syncplugin.Source) -> None:
    report = run(cache)
    assert report.ok and report.status == "ok"
    assert {t.name: t.status for t in report.tables} == dict.fromkeys(ALL_TABLES, "ok")
    t = {x.name: x for x in report.tables}
    for dependency, dependent in [("sync_subjects", "sync_sessions"), ("sync_sessions", "sync_summary")]:
        assert t[dependency].finished_at <= t[dependent].started_at
        last = max(s["end"] for s in syncplugin.spans(source.root, dependency))
        first = min(s["start"] for s in syncplugin.spans(source.root, dependent))
        assert last <= first

    subjects = source.subjects()
    assert rows_of(cache, "sync_subjects") == expected_subjects(subjects)
    assert rows_of(cache, "sync_sessions") == expected_sessions(subjects)
    summary = cache.get("sync_summary")
    got = {sid: (n, total) for sid, n, total in zip(summary["subject_id"], summary["n_sessions"], summary["total"])}
    want = expected_summary(subjects)
    assert got.keys() == want.keys()
    assert all(got[k][0] == want[k][0] and got[k][1] == pytest.approx(want[k][1]) for k in want)
    # numeric-looking partition values stay text, one folder per subject
    assert sorted(cache.partition_objects(cache.spec("sync_sessions"))) == sorted(subjects)
    assert all(len(sid) == 4 and sid.startswith("00") for sid in summary["subject_id"])


@pytest.mark.usefixtures("plugin")
def test_independent_tables_and_partitions_run_at_the_same_time(cache: Cache, source: syncplugin.Source) -> None:
    delay = 0.3
    syncplugin.set_faults(source.root, delay={"platform_alpha": delay, "platform_beta": delay,
                                              "sync_sessions": delay})
    started = time.monotonic()
    report = run(cache, workers=4)
    wall = time.monotonic() - started
    assert report.ok

    alpha = syncplugin.spans(source.root, "platform_alpha")[0]
    beta = syncplugin.spans(source.root, "platform_beta")[0]
    assert overlap((alpha["start"], alpha["end"]), (beta["start"], beta["end"])) > delay / 2
    ta, tb = report.table("platform_alpha"), report.table("platform_beta")
    assert overlap((ta.started_at, ta.finished_at), (tb.started_at, tb.finished_at)) > delay / 2

    parts = syncplugin.spans(source.root, "sync_sessions")
    assert len(parts) == 6
    assert max_concurrency([(s["start"], s["end"]) for s in parts]) >= 3  # 4 workers, 6 partitions
    spans = report.table("sync_sessions").spans
    assert sorted(v for v, _, _ in spans) == sorted(source.subjects())
    assert max_concurrency([(s, e) for _, s, e in spans]) >= 3
    # one after the other, the partitions alone would take 6 delays; 4 at a time, 2
    assert report.table("sync_sessions").seconds < 6 * delay * 0.85
    assert wall < 8 * delay  # the whole run: less than its builds' delays one after the other


# -- incremental builds -------------------------------------------------------------------------


@pytest.mark.usefixtures("plugin")
def test_incremental_delta_and_fingerprints_then_full_rebuild_gives_the_same_bytes(
        cache: Cache, source: syncplugin.Source, tmp_path: Path) -> None:
    first = run(cache)
    assert first.ok
    assert first.table("sync_subjects").counters == {"upserts": 6, "deletes": 0}
    assert first.table("sync_sessions").partitions_built == 6
    before = files_of(cache, "sync_sessions")
    mtimes = {info.key: info.etag for info in cache.partition_objects(cache.spec("sync_sessions")).values()}

    subjects = source.subjects()
    changed, removed = "0014", "0028"
    subjects[changed]["revision"] = 2
    subjects[changed]["n_sessions"] = 5
    del subjects[removed]
    subjects["0099"] = {"species": "mouse", "revision": 1, "n_sessions": 2}
    syncplugin.write_subjects(source.root, subjects)
    syncplugin.clear_spans(source.root)
    events: list[tuple[str, str, bool]] = []
    removed_key = cache.layout.partition_key(cache.spec("sync_sessions"), removed)
    publish, promote = cache.publish, cache.promote

    def publishing(spec: Any, *args: Any, **kwargs: Any) -> Any:
        events.append(("publish", spec.name, cache.backend.exists(removed_key)))
        return publish(spec, *args, **kwargs)

    def promoting(spec: Any) -> Any:
        events.append(("promote", spec.name, cache.backend.exists(removed_key)))
        done = promote(spec)
        events.append(("promoted", spec.name, cache.backend.exists(removed_key)))
        return done

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cache, "publish", publishing)
        patch.setattr(cache, "promote", promoting)
        second = run(cache)
    assert second.ok
    sessions_events = [e for e in events if e[1].startswith("sync_sessions")]
    # the vanished partition goes only after the new set is published (its file still there until
    # then), when the staged files are promoted to their places
    assert sessions_events == [("publish", "sync_sessions", True), ("promote", "sync_sessions", True),
                               ("promoted", "sync_sessions", False)]
    assert not any(cache.backend.list(cache.layout.staging_prefix()))  # no staging left behind
    subj = second.table("sync_subjects")
    assert subj.counters == {"upserts": 2, "deletes": 1}  # the build returned only what changed
    assert rows_of(cache, "sync_subjects") == expected_subjects(subjects)
    sess = second.table("sync_sessions")
    assert (sess.status, sess.partitions, sess.partitions_built, sess.partitions_deleted) == ("ok", 6, 2, 1)
    assert sorted(s["value"] for s in syncplugin.spans(source.root, "sync_sessions")) == ["0014", "0099"]
    assert sess.rows == len(expected_sessions(subjects))
    assert rows_of(cache, "sync_sessions") == expected_sessions(subjects)
    after = cache.partition_objects(cache.spec("sync_sessions"))
    assert removed not in after and sorted(after) == sorted(subjects)
    listed = cache.registry_entry("sync_sessions").get("files")
    if listed is not None:  # a registry that lists the files lists the new set only
        assert sorted(f["value"] for f in listed) == sorted(subjects)
    assert not Path(cache.backend.local_path(cache.layout.partition_prefix(cache.spec("sync_sessions"), removed))).exists()
    for value in sorted(set(subjects) - {changed, "0099"}):  # untouched partitions are not rewritten
        key = cache.layout.partition_key(cache.spec("sync_sessions"), value)
        assert after[value].etag == mtimes[key] and cache.backend.read_bytes(key) == before[key]
    summary = cache.get("sync_summary")
    assert dict(zip(summary["subject_id"], summary["n_sessions"])) == {k: v[0] for k, v in expected_summary(subjects).items()}

    # nothing changed: nothing rebuilt
    third = run(cache)
    assert third.ok
    # (the merged table holds the published bytes: the file is left as it is)
    assert third.table("sync_subjects").counters == {"upserts": 0, "deletes": 0, "files_unchanged": 1}
    assert third.table("sync_sessions").status == "unchanged"
    assert third.table("sync_sessions").partitions_built == 0

    # a full rebuild into a fresh cache publishes exactly the same bytes
    fresh = Cache((tmp_path / "fresh").as_uri())
    full = run(fresh, full=True)
    assert full.ok and full.table("sync_subjects").counters == {"upserts": len(subjects), "deletes": 0}
    for name in ALL_TABLES:
        assert rows_of(fresh, name) == rows_of(cache, name), name
        assert files_of(cache, name) == files_of(fresh, name), name  # keys are relative to each root
    # and --full on the incremental cache rebuilds every partition, to the same bytes
    spec = cache.spec("sync_sessions")
    inodes = {v: os.stat(cache.backend.local_path(cache.layout.partition_key(spec, v))).st_ino for v in subjects}
    rebuilt = run(cache, full=True)
    assert rebuilt.table("sync_sessions").partitions_built == len(subjects)
    assert files_of(cache, "sync_sessions") == files_of(fresh, "sync_sessions")
    # ... and leaves each file that already held those bytes as it was: the same file, not a copy
    assert rebuilt.table("sync_sessions").counters.get("files_unchanged") == len(subjects)
    assert {v: os.stat(cache.backend.local_path(cache.layout.partition_key(spec, v))).st_ino
            for v in subjects} == inodes


def test_fingerprints_compare_as_the_state_stores_them(cache: Cache, bdc_plugin: Callable[..., str]) -> None:
    built: list[str] = []

    def listing(ctx: Any) -> dict[str, Any]:
        return {"a": ("rev", 1), "b": dt.date(2024, 5, 1), "c": 3}

    def build(ctx: Any, value: str) -> list[dict[str, Any]]:
        built.append(value)
        return [{"k": value, "n": len(built)}]

    bdc_plugin(make_spec("fp_table", [("k", "string"), ("n", "int64")], partition_key="k", partitions=listing,
                         build_partition=build, incremental=True), name="fingerprints")
    assert run(cache).ok and sorted(built) == ["a", "b", "c"]
    again = run(cache)
    assert again.ok and again.table("fp_table").status == "unchanged"
    assert sorted(built) == ["a", "b", "c"]  # a tuple or a date fingerprint is not "changed" after a JSON trip
    assert cache.read_state(cache.spec("fp_table"))["partitions"] == {"a": ["rev", 1], "b": "2024-05-01", "c": 3}


# -- retries and failures ------------------------------------------------------------------------


def _client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "PutObject")


@pytest.mark.parametrize(("error", "transient"), [
    (syncplugin.SourceHTTPError(429, "Too Many Requests"), True),
    (syncplugin.SourceHTTPError(503, "Service Unavailable"), True),
    (syncplugin.SourceHTTPError(500, "Internal Server Error"), True),
    (syncplugin.SourceHTTPError(404, "Not Found"), False),
    (syncplugin.SourceHTTPError(400, "Bad Request"), False),
    (ConnectionResetError(104, "Connection reset by peer"), True),
    (TimeoutError("timed out"), True),
    (_client_error("SlowDown", 503), True),
    (_client_error("AccessDenied", 403), False),
    (syncplugin.PermanentSourceError("bad record"), False),
    (KeyError("field"), False),
])
def test_transient_or_permanent(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def _asked_to_wait(value: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {
        "HTTPStatusCode": 503, "HTTPHeaders": {"retry-after": value}}}, "GetObject")


def test_a_retry_after_in_seconds_or_as_an_http_date_is_read() -> None:
    import email.utils

    from bdc.runner.retry import retry_after

    assert retry_after(_asked_to_wait("7")) == 7.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)  # "Tue, 24 Nov 2026 19:59:00 GMT"
    assert 25 <= (retry_after(_asked_to_wait(later)) or 0) <= 31
    assert retry_after(_asked_to_wait(email.utils.formatdate(time.time() - 60, usegmt=True))) == 0.0
    assert retry_after(_asked_to_wait("soon, maybe")) is None
    assert retry_after(KeyError("no response")) is None


@attrs.frozen
class _RecordingPolicy(RetryPolicy):
    """A retry policy that notes every wait it chooses (and still sleeps it)."""

    waits: list[float] = attrs.field(factory=list)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        wait = super().delay(attempt, rng)
        self.waits.append(wait)
        return wait


def test_backoff_is_exponential_with_full_jitter_and_bounded() -> None:
    policy = RetryPolicy(attempts=5, base=0.1, cap=0.5)
    rng = random.Random(7)
    for attempt in range(1, 6):
        upper = min(0.5, 0.1 * 2 ** (attempt - 1))
        waits = [policy.delay(attempt, rng) for _ in range(500)]
        assert all(0 <= w <= upper for w in waits)
        assert min(waits) < 0.1 * upper and max(waits) > 0.9 * upper  # jitter spreads over the whole range

    quick = _RecordingPolicy(attempts=5, base=0.01, cap=0.03)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionResetError(104, "reset")
        return "done"

    started = time.monotonic()
    assert quick.call(flaky) == "done" and len(calls) == 4
    assert time.monotonic() - started >= sum(quick.waits)  # it did wait
    assert len(quick.waits) == 3 and all(0 <= w <= min(0.03, 0.01 * 2 ** i) for i, w in enumerate(quick.waits))

    calls.clear()
    quick.waits.clear()

    def down() -> None:
        calls.append(1)
        raise syncplugin.SourceHTTPError(503, "down")

    with pytest.raises(syncplugin.SourceHTTPError):
        quick.call(down)
    assert len(calls) == quick.attempts and len(quick.waits) == quick.attempts - 1  # bounded

    calls.clear()
    quick.waits.clear()

    def broken() -> None:
        calls.append(1)
        raise syncplugin.PermanentSourceError("bad")

    with pytest.raises(syncplugin.PermanentSourceError):
        quick.call(broken)
    assert len(calls) == 1 and quick.waits == []  # permanent: no retry, no wait


@pytest.mark.usefixtures("plugin")
def test_transient_errors_are_retried_with_backoff_and_counted(cache: Cache, source: syncplugin.Source) -> None:
    syncplugin.set_faults(source.root, transient={"sync_sessions": 2, "platform_alpha": 3})
    stream = _Stream()
    report = run(cache, progress=JsonProgress(stream))
    assert report.ok
    assert report.table("platform_alpha").retries == 3
    assert syncplugin.attempts(source.root, "platform_alpha") == 4
    sess = report.table("sync_sessions")
    assert sess.retries == 2 * 6 and sess.partitions_built == 6
    assert all(syncplugin.attempts(source.root, f"sync_sessions:{sid}") == 3 for sid in source.subjects())
    assert report.retries == 3 + 12
    assert rows_of(cache, "sync_sessions") == expected_sessions(source.subjects())
    # the whole table's retries were shown as they happened: HTTP 503, a reset, S3 SlowDown
    retries = [e for e in stream.events() if e["event"] == "retry"]
    assert [e["attempt"] for e in retries] == [1, 2, 3]
    assert [e["error"].split(":")[0] for e in retries] == ["SourceHTTPError", "ConnectionResetError", "ClientError"]
    assert "SlowDown" in retries[2]["error"]
    assert json.loads(json.dumps(cache.registry_entry("platform_alpha")["build"]))["retries"] == 3


@pytest.mark.usefixtures("plugin")
def test_retries_are_bounded_and_permanent_errors_are_not_retried(cache: Cache, source: syncplugin.Source) -> None:
    syncplugin.set_faults(source.root, transient={"sync_sessions:0021": 99}, permanent=["platform_beta"])
    started = time.monotonic()
    report = run(cache)
    assert time.monotonic() - started < 5
    assert not report.ok and report.status == "failed"
    beta = report.table("platform_beta")
    assert (beta.status, beta.retries) == ("failed", 0)
    assert syncplugin.attempts(source.root, "platform_beta") == 1  # failed at once
    assert beta.error.startswith("PermanentSourceError: bad record in platform_beta")
    assert "(plugin bdc-test-sync)" in beta.error
    sess = report.table("sync_sessions")
    assert sess.status == "failed"
    assert syncplugin.attempts(source.root, "sync_sessions:0021") == FAST_RETRY.attempts
    assert sess.retries == FAST_RETRY.attempts - 1
    assert (sess.partitions_built, sess.partitions_failed) == (5, 1)
    assert sess.error.startswith("1 of 6 partitions failed: subject_id=0021: ")
    assert report.table("sync_summary").status == "skipped"
    assert report.table("sync_summary").error == "dependency failed: sync_sessions"
    assert {report.table(n).status for n in ("sync_subjects", "platform_alpha")} == {"ok"}


def test_a_failure_skips_dependents_only_and_exits_non_zero(
        cache: Cache, source: syncplugin.Source, bdc_plugin: Callable[..., str],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bdc_plugin(syncplugin.SyncPlugin(source, broken=True), name="syncplugin-broken")
    out_report = tmp_path / "out" / "report.json"
    out_report.parent.mkdir()
    code = sync_main(["--cache", cache.url, "--report", str(out_report)])
    assert code == 1
    captured = capsys.readouterr()
    assert "failed    sync_broken: 0 rows" in captured.out
    assert "skipped   sync_broken_child: 0 rows, 0.00 s — dependency failed: sync_broken" in captured.out
    assert "sync_broken: failed" in captured.err  # plain progress lines (not a terminal)
    doc = json.loads(out_report.read_text())
    status = {t["name"]: t["status"] for t in doc["tables"]}
    assert status == {**dict.fromkeys(ALL_TABLES, "ok"), "sync_broken": "failed", "sync_broken_child": "skipped"}
    assert doc["ok"] is False and doc["status"] == "failed"
    published = {e["name"] for e in cache.registry()["tables"]}
    assert published == set(ALL_TABLES)

    # excluding the broken tables: everything succeeds, exit 0
    assert sync_main(["--cache", cache.url, "--quiet", "--exclude", "sync_broken*"]) == 0
    # only the broken child, without its dependency: it fails on its own (nothing to read)
    assert sync_main(["--cache", cache.url, "--quiet", "--only", "sync_broken_child", "--no-deps"]) == 1


@pytest.mark.usefixtures("plugin")
def test_failed_tables_keep_their_last_successful_build(cache: Cache, source: syncplugin.Source) -> None:
    first = run(cache)
    assert first.ok
    entries = {e["name"]: e for e in cache.registry()["tables"]}
    assert {n: entries[n]["build"]["run_id"] for n in ALL_TABLES} == dict.fromkeys(ALL_TABLES, first.run_id)
    summary_bytes = files_of(cache, "sync_summary")
    sessions_before = files_of(cache, "sync_sessions")
    spec = cache.spec("sync_sessions")

    subjects = source.subjects()
    for rec in subjects.values():
        rec["revision"] += 1
    gone = "0042"
    del subjects[gone]
    syncplugin.write_subjects(source.root, subjects)
    syncplugin.set_faults(source.root, permanent=["sync_sessions:0014", "platform_alpha"])

    second = run(cache)
    assert not second.ok
    status = {t.name: t.status for t in second.tables}
    assert status == {"sync_subjects": "ok", "platform_alpha": "failed", "platform_beta": "ok",
                      "sync_sessions": "failed", "sync_summary": "skipped"}
    after = {e["name"]: e for e in cache.registry()["tables"]}
    for name in ("platform_alpha", "sync_sessions", "sync_summary"):
        assert after[name] == entries[name], name  # the last successful build, untouched
    assert after["sync_subjects"]["build"]["run_id"] == second.run_id
    assert files_of(cache, "sync_summary") == summary_bytes
    assert rows_of(cache, "platform_alpha") == [{"platform": "platform_alpha", "slot": i} for i in range(4)]
    failed_key = cache.layout.partition_key(spec, "0014")
    assert cache.backend.read_bytes(failed_key) == sessions_before[failed_key]  # the failed partition: old data
    assert gone in cache.partition_objects(spec)  # nothing is deleted by a failed build

    syncplugin.set_faults(source.root)
    third = run(cache)
    assert third.ok
    sess = third.table("sync_sessions")
    # the failed run published nothing of the table (no mix of versions): every changed partition
    # is built again, and its staged files were dropped
    assert (sess.partitions_built, sess.partitions_deleted) == (len(subjects), 1)
    assert not any(cache.backend.list(cache.layout.staging_prefix()))
    assert gone not in cache.partition_objects(spec)
    assert rows_of(cache, "sync_sessions") == expected_sessions(subjects)
    final = {e["name"]: e for e in cache.registry()["tables"]}
    assert all(final[n]["build"]["run_id"] == third.run_id for n in ALL_TABLES)


# -- the report ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("plugin")
def test_run_report_in_the_cache_and_at_the_report_path(cache: Cache, source: syncplugin.Source,
                                                         tmp_path: Path) -> None:
    syncplugin.set_faults(source.root, transient={"sync_summary": 1})
    path = tmp_path / "report.json"
    report = run(cache, report=str(path))
    doc = json.loads(path.read_text())
    key = cache.layout.run_report_key(report.run_id)
    assert key == f"bdc-v0.36/_runs/{report.run_id}.json"
    assert json.loads(cache.backend.read_bytes(key)) == doc
    assert doc["run_id"] == report.run_id and doc["cache"] == cache.url and doc["version_folder"] == "bdc-v0.36"
    assert doc["executor"] == "threads" and doc["workers"] >= 1 and doc["ok"] is True
    assert doc["retries"] == 1

    tables = {t["name"]: t for t in doc["tables"]}
    assert list(tables) == [t.name for t in report.tables] and set(tables) == set(ALL_TABLES)
    for name, t in tables.items():
        assert {"status", "rows", "partitions", "bytes", "seconds", "retries", "error"} <= set(t)
        assert t["status"] == "ok" and t["error"] is None and t["seconds"] >= 0
        assert t["rows"] == len(rows_of(cache, name))
        assert t["bytes"] == sum(len(b) for b in files_of(cache, name).values())
        entry = cache.registry_entry(name)["build"]
        assert (entry["rows"], entry["bytes"], entry["partitions"], entry["retries"]) == (
            t["rows"], t["bytes"], t["partitions"], t["retries"])
    assert tables["sync_sessions"]["partitions"] == len(source.subjects())
    assert tables["sync_summary"]["retries"] == 1 and tables["sync_subjects"]["retries"] == 0
    assert tables["sync_subjects"]["partitions"] == 0

    again = run(cache)
    runs = sorted(info.key for info in cache.backend.list("bdc-v0.36/_runs/"))
    assert runs == sorted([key, cache.layout.run_report_key(again.run_id)])  # reports are kept


# -- progress and the console script ------------------------------------------------------------


class _Stream:
    """A text stream that may claim to be a terminal; keeps what was written."""

    def __init__(self, tty: bool = False):
        self.parts: list[str] = []
        self.tty = tty

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        """Nothing to flush."""

    def isatty(self) -> bool:
        return self.tty

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.mark.usefixtures("plugin")
def test_progress_live_on_a_terminal_plain_lines_otherwise_and_json(cache: Cache) -> None:
    tty, pipe, structured = _Stream(tty=True), _Stream(), _Stream()
    assert isinstance(make_progress("auto", tty), LiveProgress)
    assert isinstance(make_progress("auto", pipe), PlainProgress)

    run(cache, progress=make_progress("auto", tty), only=["platform_*"])
    assert "\r\x1b[2K" in tty.text and "[2/2 tables]" in tty.text
    assert "ok        platform_alpha (4 rows" in tty.text

    run(cache, progress=make_progress("auto", pipe), only=["platform_*"])
    lines = pipe.text.splitlines()
    assert all(line.startswith("[00:00:0") for line in lines) and "\x1b" not in pipe.text
    assert any(re.fullmatch(r"\[00:00:0\d\] platform_beta: ok \(4 rows, \d+\.\d\d s\)", line) for line in lines)

    run(cache, progress=make_progress("json", structured), only=["sync_subjects"])
    events = structured.events()
    assert [e["event"] for e in events] == ["run_started", "table_started", "table_finished", "run_finished"]
    finished = events[2]
    assert finished["name"] == "sync_subjects" and finished["status"] == "ok" and finished["rows"] == 6


def _entry_point_site(tmp_path: Path) -> Path:
    """A folder with the metadata of a distribution whose ``bdc`` entry point is the ``syncplugin`` module."""
    site = tmp_path / "site"
    info = site / "bdc_syncplugin_test-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bdc-syncplugin-test\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[bdc]\nsyncplugin = syncplugin\n")
    return site


@pytest.mark.usefixtures("plugin")  # to read the results back here
def test_console_script_json_lines_report_and_exit_status(cache: Cache, source: syncplugin.Source,
                                                          tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("bdc-sync")
    assert script.exists(), "the bdc-sync console script is installed with bdc-framework"
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(_entry_point_site(tmp_path)), str(HERE)]),
           "BDC_LOAD_PLUGINS": "syncplugin", syncplugin.ENV_SOURCE: source.root, "BDC_SYNCPLUGIN_BROKEN": "1"}
    report_path = tmp_path / "cli-report.json"
    done = subprocess.run([str(script), "--cache", cache.url, "--json", "--report", str(report_path)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_finished"
    finished = {e["name"]: e for e in events if e["event"] == "table_finished"}
    assert {n: e["status"] for n, e in finished.items()} == {
        **dict.fromkeys(ALL_TABLES, "ok"), "sync_broken": "failed", "sync_broken_child": "skipped"}
    assert finished["sync_broken"]["error"].startswith("PermanentSourceError: sync_broken is broken on purpose")
    assert "(plugin bdc-syncplugin-test)" in finished["sync_broken"]["error"]
    assert done.stdout == ""  # --json: no summary on stdout
    doc = json.loads(report_path.read_text())
    assert doc["run_id"] == events[0]["run_id"] == events[-1]["run_id"]
    assert json.loads(cache.backend.read_bytes(cache.layout.run_report_key(doc["run_id"]))) == doc
    assert rows_of(cache, "sync_subjects") == expected_subjects(source.subjects())

    env["BDC_SYNCPLUGIN_BROKEN"] = "0"
    done = subprocess.run([str(script), "--cache", cache.url, "--quiet"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "unchanged sync_sessions" in done.stdout
