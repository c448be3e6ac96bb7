"""Crash mid-sync (issue #5, scenario 1): a real ``bdc-sync`` process killed with ``SIGKILL`` at many
points of a run, on local disk and on S3 (moto's server).

Every trial starts from a cache holding version A of the synthetic tables (:mod:`syncplugin`: an
incremental whole table, a partitioned one depending on it, a dependent aggregate, two independent
tables), with the source changed to B (subjects revised, added and removed: changed, added and
removed partitions, changed unpartitioned tables). A ``bdc-sync`` process starts on it and is
killed at one point. Then:

1. every table reads back, through ``Cache.get`` and ``Cache.sql``, as exactly A or exactly B (the
   snapshots of clean runs into separate caches), never a mix; every parquet file of the version
   folder outside ``_staging`` reads (no torn file);
2. the registry parses and every file it lists exists, with the listed size (and ETag, on S3);
3. the lock is recoverable: on disk it is free at once (the kernel dropped the OS lock); on S3 the
   dead holder's lock object is taken over once it expires (a short ``BDC_SYNC_LOCK_TTL``);
4. the next sync completes and every table equals a clean run of B: rows, registry file lists and
   the bytes of every published data file; no ``_staging`` folder is left;
5. a plain reader of the layout (DuckDB's glob ``{table}/*/*.pqt``, ``hive_partitioning=false``;
   on S3 the same listing read with pyarrow) sees exactly B.

Three kinds of kill points:

* ``stop``: exact points of the publication protocol. The process's plugin module
  (:mod:`crashpoints`) traces the cache mutations and stops the process (``SIGSTOP``) at one: a
  staged partition's temp file filled but not renamed, the registry just switched to the staged
  files, the third promoted file, a state file half written, and so on; the test then kills it.
* ``poll``: the test watches the cache folder (the first file under ``_staging``, the registry
  replaced or listing staged files, a partition file replaced, the state file replaced) and kills
  the process at once.
* ``time``: seeded random offsets across the measured duration of a clean run (half counted from
  the process's start across the whole run, half from its first cache write across its write
  phase).

Double crashes too: killed after publishing or mid-promotion, then the next sync killed while its
recovery finishes the promotion.

The kills survived and rows lost (must be 0) are printed and written as JSON to
``$BDC_RELIABILITY_FIGURES_DIR/crash.json`` (else ``$BDC_RELIABILITY_FIGURES``, a folder; else the
test's tmp folder). The default run makes about 25 kills in well under a minute; the soak variant
(``--soak``) several hundred. ``BDC_CRASH_SEED`` fixes the random offsets (default 5).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import crashpoints
import syncplugin
from bdc.cache import Cache
from bdc.errors import LockHeldError
from bdc.layout import LOCK_KEY
from bdc.runner import lock as lockmod
from bdc.runner import sync
from bdc.runner.lock import SyncLock

HERE = Path(__file__).resolve().parent
FRAMEWORK_TESTS = Path(syncplugin.__file__).resolve().parent
SCRIPT = Path(sys.executable).with_name("bdc-sync")
TABLES = ("sync_subjects", "sync_sessions", "sync_summary", "platform_alpha", "platform_beta")
PARTITIONED = ("sync_sessions",)
#: Expiry of the S3 lock object of the killed processes (seconds): how long the next sync waits.
S3_TTL = 1.5
SEED = int(os.environ.get("BDC_CRASH_SEED", "5"))


def subjects_a(n: int) -> dict[str, dict[str, Any]]:
    """Version A of the source: ``n`` subjects, 2-3 sessions each."""
    return syncplugin.default_subjects(n, sessions=2)


def subjects_b(n: int) -> dict[str, dict[str, Any]]:
    """Version B: a third of A's subjects revised (one with another number of sessions), a quarter
    removed, as many added."""
    subjects = subjects_a(n)
    ids = sorted(subjects)
    for sid in ids[: max(2, n // 3)]:
        subjects[sid] = {**subjects[sid], "revision": 2}
    subjects[ids[0]]["n_sessions"] += 2
    for sid in ids[-max(2, n // 4):]:
        del subjects[sid]
    for i in range(max(2, n // 4)):
        subjects[f"{9000 + i:04d}"] = {"species": "macaque", "revision": 1, "n_sessions": 2 + i % 3}
    return subjects


# -- kill points --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One kill point: ``stop`` (a :mod:`crashpoints` stop spec), ``poll`` (a watched event) or
    ``time`` (a fraction of a clean run's duration after the process started)."""

    name: str
    kind: str
    phase: str
    stop: dict[str, Any] | None = None
    poll: str | None = None
    fraction: float | None = None
    #: For ``time``: counted from the process's start (a fraction of a whole run), or from its
    #: first cache write (a fraction of the write phase).
    anchor: str = "start"
    #: A double crash: the next ``bdc-sync`` is stopped and killed at this point too.
    then: dict[str, Any] | None = None


def _stop(when: str, op: str, match: str, nth: int = 1, after: tuple[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"when": when, "op": op, "match": match, "nth": nth}
    if after is not None:
        spec["after"] = {"op": after[0], "match": after[1]}
    return spec


_STAGED_PART = r"/_staging/[^/]+/sync_sessions/(~[0-9a-f]{2}/)?subject_id="
_FINAL_PART = r"^[^/]+/sync_sessions/subject_id="
_REGISTRY = r"/cache_registry\.json$"

#: The protocol points, in the order a run passes them. ``after``: armed in the thread that made
#: that call (the table's own thread), so a concurrent table's registry write does not count.
STOP_POINTS = [
    Point("staged-partition-torn", "stop", "writing partitions: a staged partition written, its file not closed",
          _stop("pre", "write", _STAGED_PART)),
    Point("staged-partitions-some", "stop", "writing partitions: three partitions staged, the others not yet",
          _stop("post", "write", _STAGED_PART, 3)),
    Point("data-staged-before-registry", "stop", "between data and registry: all partitions staged, sidecar written",
          _stop("post", "write", r"/sync_sessions\.json$")),
    Point("registry-torn", "stop", "the registry's temp file written (listing the staged files), not renamed",
          _stop("pre", "write", _REGISTRY, after=("write", r"/sync_sessions\.json$"))),
    Point("registry-published", "stop", "right after the registry switched to the staged files, before promotion",
          _stop("post", "write", _REGISTRY, after=("write", r"/sync_sessions\.json$"))),
    Point("promotion-first-copy", "stop", "promotion: the first staged partition in its place",
          _stop("post", "copy", _FINAL_PART)),
    Point("promotion-mid-copy", "stop", "promotion: the fourth partition's link made, not renamed into place",
          _stop("pre", "copy", _FINAL_PART, 4)),
    Point("promotion-delete", "stop", "promotion: the first vanished partition removed, the others not",
          _stop("post", "delete", _FINAL_PART)),
    Point("promotion-before-final-registry", "stop", "promotion: files in place, the registry still lists staged paths",
          _stop("pre", "write", _REGISTRY, after=("delete", _FINAL_PART))),
    Point("promoted-before-state", "stop", "between registry and state: promoted and listed, state not written",
          _stop("post", "write", _REGISTRY, after=("delete", _FINAL_PART))),
    Point("state-torn", "stop", "during state writing: the partitioned table's state temp file filled",
          _stop("pre", "write", r"/_state/sync_sessions\.json$")),
    Point("unpartitioned-staged", "stop", "an unpartitioned table staged, nothing published",
          _stop("post", "write", r"/_staging/[^/]+/sync_subjects\.pqt$")),
    Point("unpartitioned-published", "stop", "the registry lists the staged unpartitioned file, its place holds A",
          _stop("post", "write", _REGISTRY, after=("write", r"/sync_subjects\.json$"))),
    Point("unpartitioned-promoted", "stop", "the unpartitioned file replaced, the registry still lists the staged one",
          _stop("post", "copy", r"/sync_subjects\.pqt$")),
    Point("unpartitioned-state-torn", "stop", "during state writing: the incremental table's state temp file filled",
          _stop("pre", "write", r"/_state/sync_subjects\.json$")),
    Point("dependent-promotion", "stop", "the dependent aggregate published, its promotion not made",
          _stop("pre", "copy", r"/sync_summary\.pqt$")),
    Point("staging-cleanup", "stop", "every table done, the staging folder not yet removed",
          _stop("pre", "delete_prefix", r"/_staging/")),
    Point("run-report", "stop", "the run report's temp file filled, not renamed",
          _stop("pre", "write", r"/_runs/")),
]
_STOPS = {p.name: p for p in STOP_POINTS}
#: Double crashes: killed at the first point, then the next sync killed while it recovers.
DOUBLE_POINTS = [
    Point("double-published+recovery-copy", "stop",
          "killed after the registry switched; the next sync killed while its recovery promotes",
          _STOPS["registry-published"].stop, then=_stop("pre", "copy", _FINAL_PART, 3)),
    Point("double-mid-copy+recovery-registry", "stop",
          "killed mid-promotion; the next sync killed as its recovery rewrites the registry",
          _STOPS["promotion-mid-copy"].stop, then=_stop("pre", "write", _REGISTRY)),
]
#: The points the default run stops at (the soak variant: all of them).
DEFAULT_STOPS = ("staged-partition-torn", "staged-partitions-some", "data-staged-before-registry", "registry-torn",
                 "registry-published", "promotion-mid-copy", "promotion-delete", "promoted-before-state",
                 "state-torn", "unpartitioned-published", "unpartitioned-promoted")

POLL_POINTS = [
    Point("poll-first-staged", "poll", "the first file under _staging appeared", poll="first-staged"),
    Point("poll-registry-changed", "poll", "the registry file was replaced", poll="registry-changed"),
    Point("poll-registry-lists-staged", "poll", "the registry lists the partitioned table's staged files",
          poll="registry-lists-staged"),
    Point("poll-partition-promoted", "poll", "a changed partition's file was replaced in place",
          poll="partition-promoted"),
    Point("poll-vanished-removed", "poll", "a removed partition's file is gone", poll="vanished-removed"),
    Point("poll-state-changed", "poll", "the partitioned table's state file was replaced", poll="state-changed"),
    Point("poll-staging-removed", "poll", "the staging folder was removed at the end of the run",
          poll="staging-removed"),
]
DEFAULT_POLLS = ("poll-first-staged", "poll-registry-changed", "poll-registry-lists-staged",
                 "poll-partition-promoted", "poll-state-changed")


# -- what a cache holds ---------------------------------------------------------------------------


def _canon(rows: list[dict[str, Any]]) -> list[str]:
    """Rows as sorted canonical JSON texts (order-free comparison, exact values)."""
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


def table_rows(cache: Cache, name: str, how: str = "get") -> list[str]:
    """A table's rows read back through ``Cache.get`` or ``Cache.sql``."""
    frame = cache.get(name) if how == "get" else cache.sql(f'SELECT * FROM "{name}"')
    return _canon(frame.to_dict("records"))


def listing(cache: Cache) -> dict[str, Any]:
    """Every object of the version folder (one listing): key → its info."""
    return {info.key: info for info in cache.backend.list(cache.layout.version_folder + "/")}


def data_files(cache: Cache, objects: dict[str, Any] | None = None) -> tuple[dict[str, str], list[str]]:
    """Every parquet object of the version folder outside ``_staging``: key → sha256 of its bytes;
    and the problems: those that do not read as parquet (torn files)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    staging = cache.layout.staging_prefix()
    out, problems = {}, []
    for key in sorted(objects if objects is not None else listing(cache)):
        if key.endswith(".pqt") and not key.startswith(staging):
            data = cache.backend.read_bytes(key)
            out[key] = hashlib.sha256(data).hexdigest()
            try:
                pq.read_table(pa.BufferReader(data))
            except Exception as exc:  # noqa: BLE001 - reported
                problems.append(f"torn file {key}: {exc!r}")
    return out, problems


def file_lists(cache: Cache) -> dict[str, list[tuple[str, Any, int]]]:
    """Each registry entry's files: (path, partition value, size)."""
    doc = json.loads(cache.backend.read_bytes(cache.layout.registry_key))
    return {e["name"]: sorted((f["path"], f.get("value"), f["size"]) for f in e.get("files") or [])
            for e in doc["tables"]}


@dataclass
class Snapshot:
    """What a reader sees of a clean run: rows per table, data files, registry file lists."""

    rows: dict[str, list[str]]
    files: dict[str, str]
    lists: dict[str, list[tuple[str, Any, int]]]

    @classmethod
    def of(cls, cache: Cache) -> Snapshot:
        files, torn = data_files(cache)
        assert not torn, torn
        return cls({name: table_rows(cache, name) for name in TABLES}, files, file_lists(cache))


def check_registry(cache: Cache, objects: dict[str, Any]) -> list[str]:
    """(2): the registry parses; every file it lists exists (in ``objects``, one listing of the
    version folder) with the listed size (and ETag)."""
    problems = []
    try:
        doc = json.loads(cache.backend.read_bytes(cache.layout.registry_key))
    except Exception as exc:  # noqa: BLE001 - reported
        return [f"the registry does not parse: {exc!r}"]
    names = {e.get("name") for e in doc.get("tables", [])}
    if names != set(TABLES):
        problems.append(f"the registry lists {sorted(map(str, names))}")
    for entry in doc.get("tables", []):
        for item in entry.get("files") or []:
            info = objects.get(f"{cache.layout.version_folder}/{item['path']}")
            if info is None:
                problems.append(f"{entry['name']}: the registry lists {item['path']}, which is missing")
                continue
            if info.size != item["size"]:
                problems.append(f"{entry['name']}: {item['path']} has {info.size} bytes, the registry says {item['size']}")
            if item.get("etag") and info.etag and item["etag"] != info.etag:
                problems.append(f"{entry['name']}: {item['path']} has ETag {info.etag}, the registry says {item['etag']}")
    return problems


def plain_glob_rows(cache: Cache, table: str) -> list[str]:
    """(5): a partitioned table as a plain reader of the layout sees it: every ``{table}/*/*.pqt``."""
    folder = f"{cache.layout.version_folder}/{table}"
    root = cache.backend.local_path(folder)
    if root is not None:
        import duckdb

        pattern = os.path.join(root, "*", "*.pqt")
        frame = duckdb.sql(f"SELECT * FROM read_parquet('{pattern}', hive_partitioning=false)").df()
        return _canon(frame.to_dict("records"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    shape = re.compile(re.escape(folder) + r"/[^/]+/[^/]+\.pqt$")
    tables = [pq.read_table(pa.BufferReader(cache.backend.read_bytes(i.key)))
              for i in cache.backend.list(folder + "/") if shape.match(i.key)]
    return _canon(pa.concat_tables(tables).to_pylist()) if tables else []


def temp_files(cache: Cache) -> list[str]:
    """Temp files of interrupted writes left in a local cache (the backend's listing hides them)."""
    root = cache.backend.local_path(cache.layout.version_folder)
    if root is None:
        return []
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _s, fs in os.walk(root)
                  for f in fs if ".tmp-" in f)


def _multiset_diff(want: list[str], got: list[str]) -> tuple[int, int]:
    """(rows of ``want`` missing from ``got``, rows of ``got`` not in ``want``)."""
    a, b = collections.Counter(want), collections.Counter(got)
    return sum((a - b).values()), sum((b - a).values())


# -- the processes ------------------------------------------------------------------------------


def child_env(site: Path, source: syncplugin.Source, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A ``bdc-sync`` process whose only plugin is :mod:`crashpoints` (the synthetic tables), found
    through a real entry point of a throw-away distribution."""
    path = [str(site), str(HERE), str(FRAMEWORK_TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "BDC_LOAD_PLUGINS": "syncplugin",
           syncplugin.ENV_SOURCE: source.root}
    for name in (crashpoints.ENV_TRACE, crashpoints.ENV_STOP):
        env.pop(name, None)
    env.update(extra or {})
    return env


def make_site(folder: Path) -> Path:
    info = folder / "bdc_syncplugin_crash-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bdc-syncplugin-crash\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[bdc]\nsyncplugin = crashpoints\n")
    return folder


def launch(url: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    assert SCRIPT.exists(), "the bdc-sync console script is installed with bdc-framework"
    with open(log, "wb") as out:
        return subprocess.Popen([str(SCRIPT), "--cache", url, "--quiet"], env=env, stdout=out, stderr=out)


def read_trace(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip().endswith("}")]


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def kill_when_stopped(proc: subprocess.Popen[bytes], trace: Path, timeout: float = 90) -> bool:
    """Wait for the process to stop itself at its stop point (``SIGSTOP``), then ``SIGKILL`` it.
    ``False``: it finished without reaching the point."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if '"stopped"' in (trace.read_text() if trace.exists() else ""):
            while _proc_state(proc.pid) not in ("T", "t") and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
            proc.send_signal(signal.SIGKILL)
            return True
        time.sleep(0.003)
    proc.send_signal(signal.SIGKILL)
    raise AssertionError(f"bdc-sync neither reached its stop point nor finished in {timeout} s")


def kill_on(proc: subprocess.Popen[bytes], seen: Callable[[], bool], timeout: float = 90) -> bool:
    """Watch for an event, ``SIGKILL`` the process the moment it is seen. ``False``: it finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            hit = seen()
        except (OSError, ValueError):  # a file replaced while we looked: look again
            hit = False
        if hit:
            proc.send_signal(signal.SIGKILL)
            return True
        time.sleep(0.0003)
    proc.send_signal(signal.SIGKILL)
    raise AssertionError(f"bdc-sync did not finish in {timeout} s")


def wait_first_write(proc: subprocess.Popen[bytes], trace: Path, timeout: float = 90) -> bool:
    """Wait until the process made its first cache write (``False``: it finished first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if trace.exists() and '"op": "write"' in trace.read_text():
            return True
        time.sleep(0.001)
    raise AssertionError(f"bdc-sync made no write in {timeout} s")


def kill_after(proc: subprocess.Popen[bytes], started: float, offset: float) -> bool:
    delay = started + offset - time.monotonic()
    if delay > 0:
        try:
            proc.wait(timeout=delay)
            return False
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    return True


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def watcher(event: str, cache: Cache, a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> Callable[[], bool]:
    """A check of the local cache folder that turns true when ``event`` happened."""
    version = Path(cache.backend.local_path(cache.layout.version_folder))  # type: ignore[arg-type]
    staging = version / "_staging"
    registry = str(version / "cache_registry.json")
    changed = sorted(sid for sid in b if sid in a and a[sid] != b[sid])[0]
    removed = sorted(set(a) - set(b))[0]
    partition = str(version / "sync_sessions" / f"subject_id={changed}" / "data.pqt")
    vanished = str(version / "sync_sessions" / f"subject_id={removed}" / "data.pqt")
    state = str(version / "_state" / "sync_sessions.json")
    before = {p: _identity(p) for p in (registry, partition, state)}
    seen_staging = []

    def first_staged() -> bool:
        for _d, _s, files in os.walk(staging):
            if any(".tmp-" not in f for f in files):
                return True
        return False

    def registry_lists_staged() -> bool:
        if _identity(registry) == before[registry]:
            return False
        with open(registry) as fh:
            doc = json.load(fh)
        return any(e["name"] == "sync_sessions" and any(f["path"].startswith("_staging/") for f in e.get("files", []))
                   for e in doc["tables"])

    def staging_removed() -> bool:
        if staging.exists():
            seen_staging.append(True)
            return False
        return bool(seen_staging)

    return {
        "first-staged": first_staged,
        "registry-changed": lambda: _identity(registry) != before[registry],
        "registry-lists-staged": registry_lists_staged,
        "partition-promoted": lambda: _identity(partition) != before[partition],
        "vanished-removed": lambda: not os.path.exists(vanished),
        "state-changed": lambda: _identity(state) != before[state],
        "staging-removed": staging_removed,
    }[event]


def phase_of(events: list[dict[str, Any]], version: str) -> str:
    """Where the killed process was, from the last cache mutation it completed."""
    done = [e for e in events if "op" in e and e["op"] != "start"]
    stopped = next((e for e in events if "stopped" in e), None)
    if stopped is not None:
        return f"stopped {stopped['stopped']} {stopped['op']} {stopped['key'][len(version) + 1:]}"
    if not done:
        return "building (nothing written yet)" if any(e.get("op") == "start" for e in events) else "starting up"
    last = done[-1]
    return f"after {last['op']} {last['key'][len(version) + 1:]}"


# -- the harness ----------------------------------------------------------------------------------


@dataclass
class Harness:
    """A template cache at A, the snapshots of clean runs of A and B, and the trials."""

    tmp: Path
    source: syncplugin.Source
    env: dict[str, str]
    new_url: Callable[[str], str]
    copy_cache: Callable[[str, str], None]
    a: dict[str, dict[str, Any]]
    b: dict[str, dict[str, Any]]
    template: str = ""
    snap_a: Snapshot | None = None
    snap_b: Snapshot | None = None
    remote: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)
    #: Durations of the runs seen finish (the calibration first), and of their write phases (first
    #: to last cache write): the pace of the time-based kills.
    durations: list[float] = field(default_factory=list)
    write_phases: list[float] = field(default_factory=list)

    def prepare(self) -> None:
        """Clean runs: A into the template; B into a copy of it (the reference of every recovery)."""
        syncplugin.write_subjects(self.source.root, self.a)
        self.template = self.new_url("template")
        assert sync(self.template).ok
        self.snap_a = Snapshot.of(Cache(self.template))
        syncplugin.write_subjects(self.source.root, self.b)
        reference = self.new_url("reference-b")
        self.copy_cache(self.template, reference)
        assert sync(reference).ok
        self.snap_b = Snapshot.of(Cache(reference))
        for name in ("sync_subjects", "sync_sessions", "sync_summary"):
            assert self.snap_a.rows[name] != self.snap_b.rows[name], name  # B changes them all

    def calibrate(self) -> dict[str, float]:
        """One clean ``bdc-sync`` of B from A, traced: its duration and write phase (seconds after
        start), for the time-based kills. It must publish exactly the reference B."""
        url = self.new_url("calibration")
        self.copy_cache(self.template, url)
        trace = self.tmp / "calibration.jsonl"
        started, t0 = time.monotonic(), time.time()
        proc = launch(url, {**self.env, crashpoints.ENV_TRACE: str(trace)}, self.tmp / "calibration.log")
        assert proc.wait(timeout=120) == 0, (self.tmp / "calibration.log").read_text()
        duration = time.monotonic() - started
        self.durations.append(duration)
        writes = [e["t"] - t0 for e in read_trace(trace) if e.get("op") not in (None, "start")]
        self.write_phases.append(max(writes) - min(writes))
        cache = Cache(url)
        assert Snapshot.of(cache).__dict__ == self.snap_b.__dict__  # type: ignore[union-attr]
        return {"duration": duration, "first_write": min(writes), "last_write": max(writes)}

    def lock_check(self, cache: Cache, dead_pid: int) -> tuple[list[str], float]:
        """(3): the lock the killed process held is not in the way: free at once on disk; on S3
        taken over once it expires. Returns problems and the seconds waited."""
        backend = cache.backend
        waited = 0.0
        held = None
        if self.remote:
            try:
                held = json.loads(backend.read_bytes(LOCK_KEY))
            except Exception:  # noqa: BLE001 - killed before it took the lock
                held = None
            if held is not None:
                if held.get("pid") != dead_pid:
                    return [f"the lock names {held}, not the killed pid {dead_pid}"], 0.0
                waited = max(0.0, float(held["expires"]) - time.time()) + 0.05
                if waited > S3_TTL + 1:
                    return [f"the killed holder's lock expires in {waited:.1f} s (ttl {S3_TTL})"], 0.0
                time.sleep(waited)
        guard = SyncLock(backend, run_id="crash-check")
        started = time.monotonic()
        try:
            guard.acquire()
        except LockHeldError as exc:
            return [f"the lock was not recoverable: {exc}"], waited
        try:
            if self.remote and held is not None and (guard.took_over or {}).get("pid") != dead_pid:
                return [f"the expired lock was not taken over: {guard.took_over}"], waited
        finally:
            guard.release()
        # nothing waits for the dead holder (on disk the lock is non-blocking; on S3 its object
        # expired): only a machine's load can make taking it slow
        if time.monotonic() - started > 5.0:
            return [f"taking the lock took {time.monotonic() - started:.1f} s"], waited
        return [], waited

    def run_child(self, url: str, point: Point, tag: str, stop: dict[str, Any] | None) -> dict[str, Any]:
        """One ``bdc-sync`` process on ``url``, killed at ``point`` (``stop``: its stop spec)."""
        cache = Cache(url)
        trace = self.tmp / f"trace-{tag}.jsonl"
        env = {**self.env, crashpoints.ENV_TRACE: str(trace)}
        if stop is not None:
            env[crashpoints.ENV_STOP] = json.dumps(stop)
        seen = watcher(point.poll, cache, self.a, self.b) if point.poll and stop is None else None
        offset = None
        if point.fraction is not None and stop is None:
            pace = self.durations if point.anchor == "start" else self.write_phases
            offset = point.fraction * statistics.median(pace)
        log = self.tmp / f"trial-{tag}.log"
        started = time.monotonic()
        proc = launch(url, env, log)
        try:
            if stop is not None:
                killed = kill_when_stopped(proc, trace)
            elif seen is not None:
                killed = kill_on(proc, seen)
            elif point.anchor == "first-write":
                if wait_first_write(proc, trace):
                    killed = kill_after(proc, time.monotonic(), offset or 0.0)
                else:
                    killed = False
            else:
                killed = kill_after(proc, started, offset or 0.0)
        finally:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        seconds = time.monotonic() - started
        killed = killed and proc.returncode == -signal.SIGKILL
        if not killed and proc.returncode == 0:  # a finished run: the time-based offsets follow the machine's pace
            self.durations.append(seconds)
            writes = [e["t"] for e in read_trace(trace) if e.get("op") not in (None, "start")]
            self.write_phases.append(max(writes) - min(writes))
        out = {"killed": killed, "exit": proc.returncode, "pid": proc.pid, "seconds": round(seconds, 3),
               "where": phase_of(read_trace(trace), cache.layout.version_folder), "problems": []}
        if offset is not None:
            out["offset"] = round(offset, 3)
        if stop is not None and not killed:
            out["problems"].append(f"the stop point was not reached (exit {proc.returncode}): {log.read_text()[-2000:]}")
        elif not killed and proc.returncode != 0:
            out["problems"].append(f"bdc-sync failed on its own (exit {proc.returncode}): {log.read_text()[-2000:]}")
        return out

    def inspect(self, url: str) -> tuple[list[str], dict[str, str], list[str]]:
        """(1) and (2) on a cache a killed sync left: problems, which version each table reads as
        (``A``, ``B``, ``A=B`` for a table B leaves as it was, ``mix``), the tables whose registry
        entry lists staged files (published, not promoted)."""
        assert self.snap_a is not None and self.snap_b is not None
        cache = Cache(url)
        problems: list[str] = []
        versions: dict[str, str] = {}
        for name in TABLES:
            for how in ("get", "sql"):
                try:
                    rows = table_rows(cache, name, how)
                except Exception as exc:  # noqa: BLE001 - reported
                    problems.append(f"{name}: the {how} read failed after the kill: {exc!r}")
                    continue
                label = ("A=B" if rows == self.snap_a.rows[name] == self.snap_b.rows[name]
                         else "A" if rows == self.snap_a.rows[name] else "B" if rows == self.snap_b.rows[name]
                         else "mix")
                if label == "mix":
                    lost, extra = _multiset_diff(self.snap_b.rows[name], rows)
                    problems.append(f"{name}: {how} reads neither A nor B ({lost} rows of B missing, {extra} others)")
                versions.setdefault(name, label)
                if versions[name] != label:
                    problems.append(f"{name}: get reads {versions[name]}, sql reads {label}")
        objects = listing(cache)
        problems += data_files(cache, objects)[1]
        problems += check_registry(cache, objects)
        listed = file_lists(cache) if not any("registry does not parse" in p for p in problems) else {}
        staged = sorted(n for n, files in listed.items() if any(p.startswith("_staging/") for p, _v, _s in files))
        return problems, versions, staged

    def recover(self, url: str, cli: bool) -> list[str]:
        """(4), first half: the next sync (``bdc-sync``, or ``bdc.sync`` in this process) completes."""
        if cli:
            done = subprocess.run([str(SCRIPT), "--cache", url, "--quiet"], env=self.env, capture_output=True,
                                  text=True, timeout=120)
            if done.returncode != 0:
                return [f"the recovery sync (bdc-sync) failed: exit {done.returncode}: {done.stderr[-2000:]}"]
            return []
        try:
            report = sync(url)
        except Exception as exc:  # noqa: BLE001 - reported
            return [f"the recovery sync raised {exc!r}"]
        if not report.ok:
            return [f"the recovery sync failed: {[(t.name, t.status, t.error) for t in report.tables]}"]
        return []

    def verify_b(self, url: str) -> tuple[list[str], int, int]:
        """(4), second half, and (5): the cache equals a clean run of B. Returns problems, rows of B
        lost and rows that are not B's."""
        assert self.snap_b is not None
        after = Cache(url)
        problems: list[str] = []
        lost = extra = 0
        for name in TABLES:
            for how in ("get", "sql"):
                try:
                    rows = table_rows(after, name, how)
                except Exception as exc:  # noqa: BLE001 - reported
                    problems.append(f"{name}: the {how} read failed after the recovery sync: {exc!r}")
                    lost += len(self.snap_b.rows[name]) if how == "get" else 0
                    continue
                missing, others = _multiset_diff(self.snap_b.rows[name], rows)
                if how == "get":
                    lost, extra = lost + missing, extra + others
                if missing or others:
                    problems.append(f"{name}: after recovery {how} misses {missing} rows of B, has {others} others")
        objects = listing(after)
        files, torn = data_files(after, objects)
        problems += torn
        problems += check_registry(after, objects)
        if files != self.snap_b.files:
            diff = sorted(set(files.items()) ^ set(self.snap_b.files.items()))
            problems.append(f"after recovery the data files differ from a clean run of B: {diff[:6]}")
        lists = file_lists(after)
        if lists != self.snap_b.lists:
            problems.append(f"after recovery the registry's file lists differ from a clean run of B: "
                            f"{ {n: lists.get(n) for n in TABLES if lists.get(n) != self.snap_b.lists.get(n)} }")
        left = [k for k in objects if k.startswith(after.layout.staging_prefix())]
        if left:
            problems.append(f"a staging folder is left after recovery: {left[:5]}")
        junk = temp_files(after)
        if junk:
            problems.append(f"temp files of the killed writes are left after recovery: {junk[:5]}")
        for name in PARTITIONED:  # (5) a plain reader of the layout sees B
            rows = plain_glob_rows(after, name)
            if rows != self.snap_b.rows[name]:
                missing, others = _multiset_diff(self.snap_b.rows[name], rows)
                problems.append(f"{name}: a plain glob of its folder misses {missing} rows of B, has {others} others")
        return problems, lost, extra

    def trial(self, point: Point, index: int, *, cli_recovery: bool = False) -> dict[str, Any]:
        """Cache at A, source at B: ``bdc-sync`` killed at ``point`` (and, for a double crash, the
        next ``bdc-sync`` killed too, during its recovery), then every check."""
        url = self.new_url(f"trial-{index:03d}")
        self.copy_cache(self.template, url)
        child = self.run_child(url, point, f"{index:03d}", point.stop)
        killed = child["killed"]
        result: dict[str, Any] = {"point": point.name, "kind": point.kind, "phase": point.phase,
                                  **{k: child[k] for k in ("killed", "exit", "seconds", "where")}}
        if "offset" in child:
            result["offset"] = child["offset"]
        problems = list(child["problems"])
        timing = {"child": child["seconds"]}
        clock = time.monotonic()
        found, result["tables"], result["listed_staged"] = self.inspect(url)       # (1), (2)
        problems += found
        lock_problems, waited = self.lock_check(Cache(url), child["pid"])          # (3)
        problems += lock_problems
        result["lock_wait"] = round(waited, 2)
        if point.then is not None and killed:  # the next sync is killed too, while recovering
            second = self.run_child(url, point, f"{index:03d}-2", point.then)
            result["second_kill"] = {k: second[k] for k in ("killed", "exit", "seconds", "where")}
            killed = killed and second["killed"]
            problems += second["problems"]
            found, result["tables_after_second_kill"], _staged = self.inspect(url)
            problems += found
            lock_problems, more = self.lock_check(Cache(url), second["pid"])
            problems += lock_problems
            waited += more
        timing["inspect"] = round(time.monotonic() - clock - waited, 2)
        clock = time.monotonic()
        problems += self.recover(url, cli_recovery)                               # (4)
        result["recovery"] = "bdc-sync" if cli_recovery else "bdc.sync"
        timing["recover"] = round(time.monotonic() - clock, 2)
        clock = time.monotonic()
        found, lost, extra = self.verify_b(url)                                    # (4), (5)
        problems += found
        timing["verify"] = round(time.monotonic() - clock, 2)
        result.update(timing=timing, rows_lost=lost, rows_extra=extra, problems=problems,
                      killed=killed, survived=killed and not problems)
        self.results.append(result)
        return result


def time_points(count: int, seed: int) -> list[Point]:
    """``count`` time-based points at seeded random offsets: half across a whole run (counted from
    the process's start), half across its write phase (counted from its first cache write). Each is
    a fraction of the median duration of the runs (or write phases) seen finish, the clean
    calibration run first, so the offsets follow the machine's pace."""
    rng = random.Random(seed)
    points = []
    for i in range(count):
        anchor = "start" if i % 2 == 0 else "first-write"
        fraction = rng.uniform(0.02, 0.98)
        points.append(Point(f"time-{'run' if anchor == 'start' else 'writes'}-{fraction:.2f}", "time",
                            "a random offset across the " + ("whole run" if anchor == "start" else "write phase"),
                            fraction=fraction, anchor=anchor))
    return points


@pytest.fixture
def figures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the figures go: ``$BDC_RELIABILITY_FIGURES_DIR``, else ``$BDC_RELIABILITY_FIGURES`` (a
    folder, or a file whose folder is used), else one tmp folder for the session (so the local and
    the S3 sections land in one ``crash.json``)."""
    target = os.environ.get("BDC_RELIABILITY_FIGURES_DIR") or os.environ.get("BDC_RELIABILITY_FIGURES")
    if target:
        folder = Path(target).parent if target.endswith(".json") else Path(target)
    else:
        folder = tmp_path_factory.getbasetemp() / "reliability-figures"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def summarize(results: list[dict[str, Any]], seconds: float, **extra: Any) -> dict[str, Any]:
    """The figures of a series of trials (a double crash counts two kills)."""
    kills = [r for r in results if r["killed"]]

    def count(r: dict[str, Any]) -> int:
        return 2 if "second_kill" in r else 1

    return {
        "kills": sum(count(r) for r in kills),
        "kills_survived": sum(count(r) for r in kills if r["survived"]),
        "rows_lost": sum(r["rows_lost"] for r in results),
        "rows_extra": sum(r["rows_extra"] for r in results),
        "trials": len(results),
        "not_killed": [r["point"] for r in results if not r["killed"]],
        "by_kind": dict(collections.Counter(r["kind"] for r in kills)),
        "mid_crash_reads": dict(collections.Counter(f"{n}={v}" for r in kills for n, v in r["tables"].items())),
        "published_but_not_promoted": sum(1 for r in kills if r["listed_staged"]),
        "double_crashes": sum(1 for r in kills if "second_kill" in r),
        "seconds": round(seconds, 1),
        "seed": SEED,
        **extra,
        "points": [{k: r[k] for k in ("point", "kind", "phase", "where", "seconds", "killed", "survived",
                                      "tables", "listed_staged", "recovery", "lock_wait", "rows_lost", "timing", "problems")}
                   | {k: r[k] for k in ("offset", "second_kill", "tables_after_second_kill") if k in r}
                   for r in results],
    }


def record(folder: Path, name: str, section: str, figures: dict[str, Any]) -> Path:
    """Merge ``figures`` into ``folder/name`` as ``section`` (totals over sections kept at the top)."""
    path = folder / name
    try:
        doc = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        doc = {}
    doc.setdefault("sections", {})[section] = figures
    sections = doc["sections"].values()
    for key in ("kills", "kills_survived", "rows_lost", "rows_extra"):
        doc[key] = sum(s[key] for s in sections)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    line = {k: figures[k] for k in ("kills", "kills_survived", "rows_lost", "rows_extra", "by_kind", "seconds")}
    print(f"\ncrash figures [{section}] ({path}): {json.dumps(line)}")
    for r in figures["points"]:
        mark = "ok  " if r["survived"] else ("MISS" if not r["killed"] else "FAIL")
        where = r["where"] + (f" | then {r['second_kill']['where']}" if r.get("second_kill") else "")
        print(f"  {mark} {r['point']:34s} {where[:80]:80s} "
              + " ".join(f"{n.split('_')[-1][:5]}={v}" for n, v in r["tables"].items())
              + f" {r.get('timing')}" + (f" lock wait {r['lock_wait']} s" if r.get("lock_wait") else ""))
    return path


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> syncplugin.Source:
    return syncplugin.make_source(tmp_path / "source")


@pytest.fixture
def plugin(source: syncplugin.Source, bdc_plugin: Callable[..., str]) -> str:
    """The tables in this process too: to read the caches back and run the recovery syncs."""
    return bdc_plugin(syncplugin.SyncPlugin(source), name="syncplugin-crash", distribution="bdc-syncplugin-crash")


def file_harness(tmp_path: Path, source: syncplugin.Source, subjects: int) -> Harness:
    caches = tmp_path / "caches"

    def copy_cache(src: str, dst: str) -> None:
        shutil.copytree(_root(src), _root(dst))

    return Harness(tmp_path, source, child_env(make_site(tmp_path / "site"), source),
                   lambda name: (caches / name).as_uri(), copy_cache, subjects_a(subjects), subjects_b(subjects))


def _root(url: str) -> str:
    from bdc.backends.local import LocalBackend

    return str(LocalBackend(url).root)


def s3_harness(tmp_path: Path, source: syncplugin.Source, s3_url: str, subjects: int) -> Harness:
    base = s3_url.rstrip("/")

    def copy_cache(src: str, dst: str) -> None:
        a, b = Cache(src).backend, Cache(dst).backend
        for info in a.list(""):
            if info.key != LOCK_KEY:
                b.write_bytes(info.key, a.read_bytes(info.key))

    env = child_env(make_site(tmp_path / "site"), source, {lockmod.ENV_TTL: str(S3_TTL)})
    return Harness(tmp_path, source, env, lambda name: f"{base}-{name}", copy_cache,
                   subjects_a(subjects), subjects_b(subjects), remote=True)


def run_trials(harness: Harness, points: list[Point], *, cli_every: int = 4) -> None:
    """Every point in turn (a time-based one that missed, the run having finished first, is tried
    again at most twice, at the pace of the runs seen since); every ``cli_every``-th recovery sync
    is a ``bdc-sync`` process, the others ``bdc.sync`` in this process."""
    index = 0
    for i, point in enumerate(points):
        for _attempt in range(3 if point.kind == "time" else 1):
            result = harness.trial(point, index, cli_recovery=cli_every > 0 and i % cli_every == cli_every - 1)
            index += 1
            if result["killed"]:
                break


def assert_survived(figures: dict[str, Any], minimum_kills: int) -> None:
    failed = [(r["point"], r["where"], r["problems"]) for r in figures["points"] if r["killed"] and not r["survived"]]
    assert not failed, json.dumps(failed, indent=1, default=str)[:20000]
    missed = [(r["point"], r["problems"]) for r in figures["points"] if r["problems"] and not r["killed"]]
    assert not missed, missed
    assert figures["rows_lost"] == 0 and figures["rows_extra"] == 0
    assert figures["kills"] >= minimum_kills, figures["not_killed"]


# -- the tests -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("plugin")
def test_bdc_sync_killed_at_any_point_leaves_a_or_b_and_the_next_sync_publishes_b(
        tmp_path: Path, source: syncplugin.Source, figures_dir: Path) -> None:
    began = time.monotonic()
    h = file_harness(tmp_path, source, subjects=16)
    h.prepare()
    calibration = h.calibrate()
    stops = [p for p in STOP_POINTS if p.name in DEFAULT_STOPS]
    polls = [p for p in POLL_POINTS if p.name in DEFAULT_POLLS]
    points = stops + DOUBLE_POINTS + polls + time_points(5, SEED)
    run_trials(h, points, cli_every=6)
    figures = summarize(h.results, time.monotonic() - began, backend="file", calibration=calibration)
    record(figures_dir, "crash.json", "file", figures)
    # every protocol point was reached and killed there
    assert {r["point"] for r in h.results if r["kind"] == "stop" and r["killed"]} == (
        set(DEFAULT_STOPS) | {p.name for p in DOUBLE_POINTS})
    # the kills landed in every phase: before the registry changed, between publish and promotion, after
    kills = [r for r in h.results if r["killed"]]
    assert any(r["listed_staged"] for r in kills)
    assert any(r["tables"]["sync_sessions"] == "A" for r in kills)
    assert any(r["tables"]["sync_sessions"] == "B" for r in kills)
    assert_survived(figures, minimum_kills=20)


@pytest.mark.usefixtures("plugin")
def test_bdc_sync_killed_on_s3_leaves_a_or_b_and_the_next_sync_takes_over_the_lock(
        tmp_path: Path, source: syncplugin.Source, s3_url: str, figures_dir: Path) -> None:
    began = time.monotonic()
    h = s3_harness(tmp_path, source, s3_url, subjects=6)
    h.prepare()
    names = ("staged-partitions-some", "registry-published", "promotion-mid-copy")
    points = [p for p in STOP_POINTS if p.name in names]
    run_trials(h, points, cli_every=3)
    figures = summarize(h.results, time.monotonic() - began, backend="s3", lock_ttl=S3_TTL)
    record(figures_dir, "crash.json", "s3", figures)
    assert {r["point"] for r in h.results if r["killed"]} == set(names)
    assert_survived(figures, minimum_kills=len(names))


def test_promoting_a_file_again_leaves_no_temp_link(tmp_path: Path) -> None:
    """A promotion made again after a crash links a staged file over its own link: the rename
    does nothing (POSIX), so the temp name must be removed or it stays, hidden, forever."""
    from bdc.backends.local import LocalBackend

    backend = LocalBackend((tmp_path / "store").as_uri())
    backend.write_bytes("v/_staging/run/t/p=1/data.pqt", b"new")
    for _ in range(3):
        backend.copy("v/_staging/run/t/p=1/data.pqt", "v/t/p=1/data.pqt")
    assert sorted(os.listdir(tmp_path / "store" / "v" / "t" / "p=1")) == ["data.pqt"]
    assert backend.read_bytes("v/t/p=1/data.pqt") == b"new"


@pytest.mark.usefixtures("plugin")
def test_recover_removes_the_temp_files_of_killed_writes(tmp_path: Path) -> None:
    """A writer killed between filling a temp file and renaming it leaves the temp file (hidden from
    listings, so never removed by anything else): the next sync's recovery removes them, and the
    folders they leave empty, and nothing else."""
    cache = Cache((tmp_path / "cache").as_uri())
    folder = tmp_path / "cache" / cache.layout.version_folder
    dead = [folder / ".cache_registry.json.tmp-0a1b", folder / "_state" / ".sync_subjects.json.tmp-2c3d",
            folder / "sync_sessions" / "subject_id=0099" / ".data.pqt.tmp-4e5f"]
    kept = [folder / "sync_subjects.pqt", folder / "notes.txt", tmp_path / "cache" / "custom" / ".x.pqt.tmp-6a7b"]
    for path in dead + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    done = cache.recover()
    assert done["removed_temp_files"] == len(dead)
    assert not any(p.exists() for p in dead) and all(p.exists() for p in kept)
    assert not (folder / "sync_sessions").exists()  # the folder only the temp file kept is gone
    assert Cache("memory://crash-recover").recover()["removed_temp_files"] == 0


@pytest.mark.slow
@pytest.mark.usefixtures("plugin")
def test_soak_bdc_sync_killed_hundreds_of_times(tmp_path: Path, source: syncplugin.Source, figures_dir: Path) -> None:
    """The long variant, on a larger table (60 partitions): every protocol point and watched event
    ``BDC_CRASH_SOAK_ROUNDS`` times (3), and ``BDC_CRASH_SOAK_TIME_KILLS`` random offsets (150);
    then a few kills on S3."""
    began = time.monotonic()
    rounds = int(os.environ.get("BDC_CRASH_SOAK_ROUNDS", "3"))
    timed = int(os.environ.get("BDC_CRASH_SOAK_TIME_KILLS", "150"))
    h = file_harness(tmp_path, source, subjects=60)
    h.prepare()
    calibration = h.calibrate()
    points = (STOP_POINTS + DOUBLE_POINTS + POLL_POINTS) * rounds + time_points(timed, SEED + 1)
    run_trials(h, points, cli_every=5)
    figures = summarize(h.results, time.monotonic() - began, backend="file", calibration=calibration)
    record(figures_dir, "crash-soak.json", "file", figures)
    assert_survived(figures, minimum_kills=(len(STOP_POINTS) + len(DOUBLE_POINTS)) * rounds + timed // 2)


@pytest.mark.slow
@pytest.mark.usefixtures("plugin")
def test_soak_bdc_sync_killed_on_s3_at_every_protocol_point(
        tmp_path: Path, source: syncplugin.Source, s3_url: str, figures_dir: Path) -> None:
    """The long S3 variant: every protocol point (and the double crashes) once."""
    began = time.monotonic()
    h = s3_harness(tmp_path, source, s3_url, subjects=12)
    h.prepare()
    run_trials(h, STOP_POINTS + DOUBLE_POINTS, cli_every=4)
    figures = summarize(h.results, time.monotonic() - began, backend="s3", lock_ttl=S3_TTL)
    record(figures_dir, "crash-soak.json", "s3", figures)
    assert {r["point"] for r in h.results if r["killed"]} == {p.name for p in STOP_POINTS + DOUBLE_POINTS}
    assert_survived(figures, minimum_kills=len(STOP_POINTS) + len(DOUBLE_POINTS))
