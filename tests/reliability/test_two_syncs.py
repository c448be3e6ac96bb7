"""Two syncs at once (issue #5, scenario 4): real ``bdc-sync`` processes on one cache, on local disk
and on S3 (moto's server).

Exactly one runs; the other exits non-zero at once naming the holder (pid, host, run, since); what
is published equals one clean run; the next sync runs fine. A holder killed by SIGKILL leaves a
lock that recovers: on disk at once (the kernel drops the OS lock), on S3 once the lock object
expires (taken over by a conditional put on the expired object's ETag, so two syncs that both saw
it expire cannot both take it).
"""

from __future__ import annotations

import calendar
import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import syncplugin
from bdc.cache import Cache
from bdc.errors import LockHeldError
from bdc.layout import LOCK_KEY
from bdc.runner import lock as lockmod
from bdc.runner.lock import SyncLock

FRAMEWORK_TESTS = Path(syncplugin.__file__).resolve().parent
SCRIPT = Path(sys.executable).with_name("bdc-sync")
#: Seconds the holder's slowest table takes: long enough that two processes started together overlap.
HOLD = 4.0
#: Expiry of the S3 lock object in the crash test (seconds).
CRASH_TTL = 4.0
TABLES = ("sync_subjects", "sync_sessions", "sync_summary", "platform_alpha", "platform_beta")


@pytest.fixture
def source(tmp_path: Path) -> syncplugin.Source:
    """A fresh synthetic source (6 subjects, 5 tables)."""
    return syncplugin.make_source(tmp_path / "source")


@pytest.fixture
def plugin(source: syncplugin.Source, bdc_plugin: Callable[..., str]) -> str:
    """The same tables registered in this process, to read the results back with ``Cache.get``."""
    return bdc_plugin(syncplugin.SyncPlugin(source), name="syncplugin-two", distribution="bdc-syncplugin-test")


@pytest.fixture
def env(tmp_path: Path, source: syncplugin.Source) -> dict[str, str]:
    """The environment of a ``bdc-sync`` process whose only plugin is ``syncplugin`` (a real entry point)."""
    site = tmp_path / "site"
    info = site / "bdc_syncplugin_test-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bdc-syncplugin-test\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[bdc]\nsyncplugin = syncplugin\n")
    path = [str(site), str(FRAMEWORK_TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "BDC_LOAD_PLUGINS": "syncplugin",
            syncplugin.ENV_SOURCE: source.root}


@pytest.fixture(params=["file", "s3"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(the contested cache, a reference cache for one clean run) on the backend under test."""
    if request.param == "file":
        return (tmp_path / "cache").as_uri(), (tmp_path / "reference").as_uri()
    url = request.getfixturevalue("s3_url")
    return url, url + "-reference"


def start(url: str, env: dict[str, str], report: Path | None = None) -> subprocess.Popen[str]:
    """A ``bdc-sync`` process on ``url``."""
    assert SCRIPT.exists(), "the bdc-sync console script is installed with bdc-framework"
    args = [str(SCRIPT), "--cache", url, "--quiet", *(["--report", str(report)] if report else [])]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(url: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``bdc-sync`` on ``url`` to the end."""
    args = [str(SCRIPT), "--cache", url, "--quiet"]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def since_of(message: str) -> float:
    """The epoch seconds of the ``since YYYY-mm-dd HH:MM:SS UTC`` in a lock message."""
    match = re.search(r"since (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", message)
    assert match, message
    return calendar.timegm(time.strptime(match[1], "%Y-%m-%d %H:%M:%S"))


def lock_holder(cache: Cache) -> dict[str, Any]:
    """Who the cache's lock names now (``{}`` when free)."""
    path = cache.backend.local_path(LOCK_KEY)
    try:
        text = Path(path).read_text() if path else cache.backend.read_bytes(LOCK_KEY).decode()
    except Exception:
        return {}
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {}


def published(cache: Cache) -> dict[str, Any]:
    """Everything a reader sees of the synthetic tables: registry entries (without the run-specific
    ``build`` and the cache's own ``location``) and every table's rows, in a stable order."""
    out: dict[str, Any] = {}
    entries = {e["name"]: e for e in cache.registry()["tables"]}
    assert set(entries) == set(TABLES)
    for name in TABLES:
        entry = {k: v for k, v in entries[name].items() if k not in ("build", "location")}
        rows = cache.get(name).to_dict("records")
        out[name] = (entry, sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str)))
    return out


def run_reports(cache: Cache) -> list[str]:
    """The run reports stored in the cache."""
    folder = cache.layout.run_report_key("x").rsplit("/", 1)[0]
    return sorted(info.key for info in cache.backend.list(folder))


@pytest.mark.usefixtures("plugin")
def test_two_syncs_at_once_one_runs_the_other_refuses_naming_it(
        urls: tuple[str, str], env: dict[str, str], source: syncplugin.Source, tmp_path: Path) -> None:
    url, reference_url = urls
    cache = Cache(url)
    syncplugin.set_faults(source.root, delay={"platform_alpha": HOLD})
    started = time.time()
    procs = [start(url, env, tmp_path / f"report-{i}.json") for i in range(2)]
    exited: dict[int, tuple[float, list[int | None]]] = {}  # index -> (when, the others' state then)
    deadline = time.monotonic() + 120
    while len(exited) < 2 and time.monotonic() < deadline:
        for i, proc in enumerate(procs):
            if i not in exited and proc.poll() is not None:
                exited[i] = (time.time(), [p.poll() for p in procs])
        time.sleep(0.02)
    outputs = [p.communicate(timeout=30) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 3], (codes, outputs)  # exactly one ran; the other was refused (3)
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    # the refused one exited quickly: while the holder was still running
    assert exited[loser][1][winner] is None, "the refused sync only exited after the holder had finished"
    assert exited[loser][0] - started < 30
    message = outputs[loser][1]
    run_id = json.loads((tmp_path / f"report-{winner}.json").read_text())["run_id"]
    assert message.startswith(f"bdc-sync: Another bdc-sync is running on {url}: "), message
    assert f"pid {procs[winner].pid} on {socket.gethostname()} since " in message, message
    assert f", run {run_id}" in message, message
    assert started - 2 <= since_of(message) <= exited[loser][0] + 1
    assert not (tmp_path / f"report-{loser}.json").exists()
    assert outputs[loser][0] == ""  # no summary: it built nothing

    # only the holder built anything: every table and partition exactly once, all in its process
    calls = syncplugin.spans(source.root)
    assert {span["pid"] for span in calls} == {procs[winner].pid}
    counts = collections.Counter((span["table"], span["value"]) for span in calls)
    assert set(counts.values()) == {1} and len(counts) == 4 + len(source.subjects())
    assert run_reports(cache) == [cache.layout.run_report_key(run_id)]
    assert lock_holder(cache) == {}  # released

    # what was published equals one clean run of the same source
    syncplugin.set_faults(source.root)
    done = run(reference_url, env)
    assert done.returncode == 0, done.stderr
    assert published(cache) == published(Cache(reference_url))

    # after the holder finished, a third sync runs fine (and, nothing changed upstream, publishes the same)
    done = run(url, env)
    assert done.returncode == 0, done.stderr
    assert re.match(rf"sync \S+ on {re.escape(url)} \(\S+\): ok in ", done.stdout), done.stdout
    assert "unchanged sync_sessions" in done.stdout  # incremental: its partitions were not rebuilt
    assert lock_holder(cache) == {}
    assert published(cache) == published(Cache(reference_url))


@pytest.mark.usefixtures("plugin")
def test_a_holder_killed_mid_run_leaves_a_recoverable_lock(
        urls: tuple[str, str], env: dict[str, str], source: syncplugin.Source) -> None:
    url, reference_url = urls
    cache = Cache(url)
    remote = cache.backend.local_path(LOCK_KEY) is None
    syncplugin.set_faults(source.root, delay={"platform_alpha": 120})
    env = {**env, lockmod.ENV_TTL: str(CRASH_TTL)}
    holder = start(url, env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                lock_holder(cache).get("pid") == holder.pid and syncplugin.spans(source.root, "sync_subjects")):
            assert holder.poll() is None, holder.communicate()
            time.sleep(0.05)
        held = lock_holder(cache)
        assert held["pid"] == holder.pid and held["run_id"]  # mid-run: a table published, another building
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean release, no finally blocks
        holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    syncplugin.set_faults(source.root)

    if remote:
        # the lock object outlives its holder until it expires: a sync now is refused, naming the dead holder
        # (asked in-process: a bdc-sync's start-up on a busy machine could outlast the short expiry)
        assert lock_holder(cache)["pid"] == holder.pid
        with pytest.raises(LockHeldError) as info:
            SyncLock(cache.backend).acquire()
        message = str(info.value)
        assert f"pid {holder.pid} on {socket.gethostname()}" in message and f"run {held['run_id']}" in message
        expires_in = float(re.search(r"lock expires in (-?\d+) s", message)[1])  # type: ignore[index]
        assert expires_in <= CRASH_TTL
        time.sleep(max(0.0, lock_holder(cache)["expires"] - time.time()) + 0.2)
    # file: the kernel dropped the OS lock with the process, the next sync runs at once;
    # S3: the expired lock is taken over
    done = run(url, env)
    assert done.returncode == 0, done.stderr
    if remote:
        assert "took over the expired sync lock" in done.stderr and f"pid {holder.pid}" in done.stderr
    assert lock_holder(cache) == {}
    done = run(reference_url, env)
    assert done.returncode == 0, done.stderr
    assert published(cache) == published(Cache(reference_url))


def test_s3_two_syncs_that_see_one_expired_lock_cannot_both_take_it(s3_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The takeover is a compare-and-swap on the expired object's ETag: of two syncs that both read
    the expired lock, one replaces it and the other then sees a live lock naming the first."""
    backend = Cache(s3_url).backend
    stale = {"host": "crashed-host", "pid": 4242, "since": time.time() - 3600, "expires": time.time() - 5,
             "token": "stale"}
    backend.write_bytes(LOCK_KEY, json.dumps(stale).encode())
    both_read = threading.Barrier(2, timeout=20)
    original = lockmod._S3ObjectStore.read
    seen: dict[str, int] = collections.defaultdict(int)

    def read_then_wait(self: Any) -> Any:
        """Both contenders read the expired lock before either writes; then ``b`` lags behind ``a``
        (so ``a`` has taken the lock over when ``b`` acts on what it read: the dangerous order)."""
        answer = original(self)
        name = threading.current_thread().name
        seen[name] += 1
        if seen[name] == 1:
            both_read.wait()
            if name == "b":
                time.sleep(0.5)
        return answer

    monkeypatch.setattr(lockmod._S3ObjectStore, "read", read_then_wait)
    locks = {name: SyncLock(backend, ttl=60, run_id=f"run-{name}") for name in ("a", "b")}
    outcome: dict[str, Any] = {}

    def contend(name: str) -> None:
        try:
            locks[name].acquire()
            outcome[name] = "held"
        except LockHeldError as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=contend, args=(n,), name=n) for n in locks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert sorted(str(v) == "held" for v in outcome.values()) == [False, True], outcome
        winner = next(n for n, v in outcome.items() if v == "held")
        loser = "b" if winner == "a" else "a"
        assert locks[winner].took_over == stale
        assert f"run run-{winner}" in str(outcome[loser]) and "lock expires in" in str(outcome[loser])
        assert json.loads(backend.read_bytes(LOCK_KEY))["token"] == locks[winner].info["token"]
    finally:
        for lock in locks.values():
            lock.release()
    assert not backend.exists(LOCK_KEY)


def test_s3_holder_that_overslept_its_lock_neither_renews_nor_removes_the_new_one(s3_url: str) -> None:
    """Renewal and release are conditional on the holder's own last write: a holder paused past its
    expiry, and taken over meanwhile, finds out (``lost``) and leaves the new holder's lock alone."""
    backend = Cache(s3_url).backend
    sleeper = SyncLock(backend, ttl=0.9, run_id="run-sleeper")
    sleeper.acquire()
    with sleeper._beating:  # the sleeper's renewals are stuck (a long pause) until its lock expires
        deadline = time.monotonic() + 10
        while json.loads(backend.read_bytes(LOCK_KEY))["expires"] >= time.time() and time.monotonic() < deadline:
            time.sleep(0.05)
        successor = SyncLock(backend, ttl=60, run_id="run-successor")
        successor.acquire()
        assert successor.took_over is not None and successor.took_over["run_id"] == "run-sleeper"
    try:
        deadline = time.monotonic() + 10
        while not sleeper.lost and time.monotonic() < deadline:  # its next renewal finds the lock changed
            time.sleep(0.05)
        assert sleeper.lost
        sleeper.release()
        held = json.loads(backend.read_bytes(LOCK_KEY))
        assert held["run_id"] == "run-successor" and held["token"] == successor.info["token"]
        with pytest.raises(LockHeldError, match="run run-successor"):
            SyncLock(backend).acquire()
    finally:
        successor.release()
    assert not backend.exists(LOCK_KEY)


def test_memory_store_lock_is_one_at_a_time_and_taken_over_when_expired() -> None:
    backend = Cache("memory://two-syncs-lock").backend
    first = SyncLock(backend, ttl=60, run_id="run-1")
    first.acquire()
    try:
        with pytest.raises(LockHeldError, match=r"pid \d+ on .* since .*, run run-1 \(lock expires in \d+ s\)"):
            SyncLock(backend).acquire()
    finally:
        first.release()
    assert not backend.exists(LOCK_KEY)
    backend.write_bytes(LOCK_KEY, json.dumps({"pid": 1, "host": "gone", "since": 0, "expires": 1}).encode())
    with SyncLock(backend, run_id="run-2") as second:
        assert second.took_over is not None and second.took_over["host"] == "gone"
    assert not backend.exists(LOCK_KEY)


def test_lock_ttl_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from bdc.errors import BdcError

    backend = Cache("memory://two-syncs-ttl").backend
    assert SyncLock(backend).ttl == lockmod.DEFAULT_TTL
    monkeypatch.setenv(lockmod.ENV_TTL, "42")
    assert SyncLock(backend).ttl == 42.0
    monkeypatch.setenv(lockmod.ENV_TTL, "soon")
    with pytest.raises(BdcError, match="BDC_SYNC_LOCK_TTL"):
        SyncLock(backend)
