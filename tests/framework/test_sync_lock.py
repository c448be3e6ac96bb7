"""One sync at a time per cache: an OS lock on local disk, a lock object with expiry on S3."""

from __future__ import annotations

import calendar
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import syncplugin
from bdc.cache import Cache
from bdc.errors import LockHeldError
from bdc.layout import LOCK_KEY
from bdc.runner import RetryPolicy, RunReport, sync
from bdc.runner.cli import main as sync_main
from bdc.runner.lock import SyncLock

FAST_RETRY = RetryPolicy(attempts=3, base=0.005, cap=0.01)

#: Holds the sync lock of the cache given as argv[1] until its standard input closes.
HOLDER = """
import sys
from bdc.cache import Cache
from bdc.runner.lock import SyncLock
lock = SyncLock(Cache(sys.argv[1]).backend)
lock.acquire()
print("held", flush=True)
sys.stdin.read()
lock.release()
"""


@pytest.fixture
def source(tmp_path: Path) -> syncplugin.Source:
    """A fresh synthetic source folder."""
    return syncplugin.make_source(tmp_path / "source")


@pytest.fixture
def plugin(source: syncplugin.Source, bdc_plugin: Callable[..., str]) -> str:
    """The synthetic tables, registered in-process for this test."""
    return bdc_plugin(syncplugin.SyncPlugin(source), name="syncplugin-lock", distribution="bdc-test-sync")


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    """An empty cache on local disk."""
    return Cache((tmp_path / "cache").as_uri())


def since_of(message: str) -> float:
    """The epoch seconds of the ``since YYYY-mm-dd HH:MM:SS UTC`` in a lock message."""
    match = re.search(r"since (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", message)
    assert match, message
    return calendar.timegm(time.strptime(match[1], "%Y-%m-%d %H:%M:%S"))


@pytest.mark.usefixtures("plugin")
def test_file_lock_held_by_another_process(cache: Cache, capsys: pytest.CaptureFixture[str]) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, cache.url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        taken = time.time()
        with pytest.raises(LockHeldError) as info:
            sync(cache)
        message = str(info.value)
        assert message.startswith(f"Another bdc-sync is running on {cache.url}: ")
        assert f"pid {holder.pid} on {socket.gethostname()}" in message
        assert taken - 30 <= since_of(message) <= taken + 1

        assert sync_main(["--cache", cache.url, "--quiet"]) == 3
        err = capsys.readouterr().err
        assert err.startswith("bdc-sync: Another bdc-sync is running") and f"pid {holder.pid}" in err
        assert cache.registry() == {"tables": []}  # the refused syncs built nothing
    finally:
        holder.kill()  # no clean release: the kernel drops an OS lock with its process
        holder.wait(timeout=10)
    report = sync(cache, retry=FAST_RETRY)
    assert isinstance(report, RunReport) and report.ok


@pytest.mark.usefixtures("plugin")
def test_a_second_sync_refuses_while_one_runs(cache: Cache, source: syncplugin.Source) -> None:
    syncplugin.set_faults(source.root, delay={"platform_alpha": 1.0})
    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(sync(cache, retry=FAST_RETRY)))
    first.start()
    lock_file = Path(cache.backend.local_path(LOCK_KEY) or "")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (lock_file.exists() and lock_file.read_text()):
        time.sleep(0.01)
    held = json.loads(lock_file.read_text())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    with pytest.raises(LockHeldError, match=f"pid {os.getpid()} on "):
        sync(cache)
    first.join(timeout=30)
    assert len(results) == 1 and results[0].ok  # type: ignore[attr-defined]
    assert lock_file.read_text() == ""  # released: the holder is cleared
    assert sync(cache, retry=FAST_RETRY).ok  # type: ignore[union-attr]


def test_file_lock_within_one_process(cache: Cache) -> None:
    with SyncLock(cache.backend):
        with pytest.raises(LockHeldError, match=f"pid {os.getpid()}"):
            SyncLock(cache.backend).acquire()
    with SyncLock(cache.backend):  # released: taken again
        pass


@pytest.mark.usefixtures("plugin")
def test_s3_lock_object_names_its_holder_and_expiry(s3_url: str) -> None:
    cache = Cache(s3_url)
    holder = SyncLock(cache.backend, ttl=120)
    holder.acquire()
    try:
        doc = json.loads(cache.backend.read_bytes(LOCK_KEY))
        assert doc["pid"] == os.getpid() and doc["host"] == socket.gethostname()
        assert abs(doc["since"] - time.time()) < 30
        assert 100 < doc["expires"] - time.time() <= 120
        with pytest.raises(LockHeldError) as info:
            sync(cache)
        message = str(info.value)
        assert f"Another bdc-sync is running on {s3_url}: pid {os.getpid()} on {socket.gethostname()} since " in message
        expires_in = int(re.search(r"lock expires in (\d+) s", message)[1])  # type: ignore[index]
        assert 100 < expires_in <= 120
    finally:
        holder.release()
    assert not cache.backend.exists(LOCK_KEY)
    report = sync(cache, retry=FAST_RETRY, only=["platform_*"])
    assert isinstance(report, RunReport) and report.ok
    assert not cache.backend.exists(LOCK_KEY)
    assert sorted(e["name"] for e in cache.registry()["tables"]) == ["platform_alpha", "platform_beta"]


@pytest.mark.usefixtures("plugin")
def test_s3_expired_lock_is_taken_over_a_live_one_is_not(s3_url: str) -> None:
    cache = Cache(s3_url)
    stale = {"host": "crashed-host", "pid": 4242, "since": time.time() - 3600, "expires": time.time() - 5,
             "token": "stale"}
    cache.backend.write_bytes(LOCK_KEY, json.dumps(stale).encode())
    report = sync(cache, retry=FAST_RETRY, only=["platform_alpha"])
    assert isinstance(report, RunReport) and report.ok
    assert not cache.backend.exists(LOCK_KEY)

    live = {**stale, "host": "busy-host", "since": time.time() - 60, "expires": time.time() + 300}
    cache.backend.write_bytes(LOCK_KEY, json.dumps(live).encode())
    with pytest.raises(LockHeldError, match=r"pid 4242 on busy-host since .* \(lock expires in \d+ s\)"):
        sync(cache, only=["platform_alpha"])
    assert json.loads(cache.backend.read_bytes(LOCK_KEY)) == live  # another's lock is left alone


def test_s3_lock_is_renewed_while_held(s3_url: str) -> None:
    backend = Cache(s3_url).backend
    lock = SyncLock(backend, ttl=0.6)
    lock.acquire()
    try:
        first = json.loads(backend.read_bytes(LOCK_KEY))["expires"]
        deadline = time.monotonic() + 10
        renewed = json.loads(backend.read_bytes(LOCK_KEY))
        while renewed["expires"] <= first and time.monotonic() < deadline:  # a beat every ttl/3
            time.sleep(0.05)
            renewed = json.loads(backend.read_bytes(LOCK_KEY))
        assert renewed["expires"] > first and renewed["token"] == lock.info["token"]
        with pytest.raises(LockHeldError):
            SyncLock(backend).acquire()
    finally:
        lock.release()
    assert not backend.exists(LOCK_KEY)
