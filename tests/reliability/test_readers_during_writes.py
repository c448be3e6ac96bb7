"""Readers during writes (issue #5, scenario 3): reader threads and a reader process read the
tables a sync keeps rewriting; bdc readers never see an error or a partial result.

A sync switches its source between states, over and over:

* phase ``same`` (file backend): A ↔ A — every sync builds both tables again and finds the bytes
  they hold: nothing is rewritten, so even plain DuckDB reads of the layout see no error;
* phase ``rows`` (file backend): A ↔ B — every partition of ``rw_sessions`` gets other rows (other
  values and labels, another number of rows), and so does the unpartitioned ``rw_subjects``;
* phase ``partitions`` (file backend): A ↔ C — C drops four partitions, adds four, and changes the
  rows of the four it keeps (and ``rw_subjects``);
* phase ``s3`` (moto's S3 server): A ↔ B, read through the local read cache with a TTL of 0, so
  every read revalidates the registry and its copies against the store.

(A quarter of a second between two syncs: see :data:`GAP`.)

Readers loop over every kind of read meanwhile: three threads and one process on the file cache,
two threads on S3. Every answer is compared with answers precomputed from caches built cleanly in
each state:

* ``bdc.get`` (the whole table, one partition, a partition C lacks, a projection with a filter, the
  unpartitioned table) and ``bdc.sql`` over one table (an aggregate): exactly one state's answer —
  a whole-table snapshot, never a mix, never an error;
* ``bdc.sql`` joining the two tables: each table is a snapshot, and a sync publishes its tables
  one at a time, so the join may pair ``rw_subjects`` of one state with ``rw_sessions`` of the
  other (counted as such in the figures: the answer of a cache between two table publications);
* plain DuckDB over the layout, without the registry (``read_parquet('<cache>/bdc-vX.Y/rw_sessions/
  */*.pqt')`` and ``rw_subjects.pqt``): every file read whole and each partition's rows those of
  one state (partitions may differ: files are promoted one by one); in phases ``same`` and ``rows``
  no partition missing or extra. In phase ``same`` no plain read may fail. In the others, plain
  reads that fail because a file was replaced or removed while DuckDB read it (DuckDB opens a
  parquet file more than once per read: a file renamed over in between is read as two files) are
  counted as observations, not hidden: that is the limit of reading the layout without the
  registry while files change, and the reason bdc readers check what they read.

A read that spans a phase switch may give the answers of either phase. The figures (reads per
kind, answers per state, syncs, errors, observations) go to
``$BDC_RELIABILITY_FIGURES_DIR/readers.json`` (default: a temporary folder) and are printed.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from bdc.hookspecs import hookimpl
from bdc.spec import TableSpec

#: Subjects of states A and B (numeric-looking ids: they must stay text end to end).
SUBJECTS = tuple(f"{7 * i:04d}" for i in range(1, 9))
#: Subjects of state C: the last four of A's, and four new ones.
MOVED = SUBJECTS[4:] + tuple(f"{7 * i:04d}" for i in range(9, 13))
#: state → (variant of the rows, subjects).
STATES = {"A": ("a", SUBJECTS), "B": ("b", SUBJECTS), "C": ("c", MOVED)}
#: phase → the two states its sync alternates between (every phase starts and ends at A).
PHASES = {"same": ("A", "A"), "rows": ("A", "B"), "partitions": ("A", "C"), "s3": ("A", "B")}
KEPT = SUBJECTS[5]  # a partition of every state
DROPPED = SUBJECTS[0]  # a partition C does not have

JOIN_SQL = ("SELECT s.subject_id, s.species, s.revision, count(*) AS n, sum(x.value) AS total, max(x.label) AS last "
            "FROM rw_subjects AS s JOIN rw_sessions AS x ON s.subject_id = x.subject_id "
            "GROUP BY s.subject_id, s.species, s.revision")
AGG_SQL = ("SELECT subject_id, count(*) AS n, sum(value) AS total, min(label) AS first, max(session) AS last "
           "FROM rw_sessions GROUP BY subject_id")

#: The reads of bdc readers, by kind (``api``: the ``bdc`` module, or a :class:`bdc.Cache`).
BDC_READS: dict[str, Callable[[Any], Any]] = {
    "get_all": lambda api: api.get("rw_sessions"),
    "get_partition": lambda api: api.get("rw_sessions", subject_id=KEPT),
    "get_dropped_partition": lambda api: api.get("rw_sessions", subject_id=DROPPED),
    "get_projection": lambda api: api.get("rw_sessions", columns=["subject_id", "label"], where={"session": [1, 2, 3]}),
    "get_table": lambda api: api.get("rw_subjects"),
    "sql_aggregate": lambda api: api.sql(AGG_SQL),
    "sql_join": lambda api: api.sql(JOIN_SQL),
}
#: The reads of plain DuckDB over the layout.
GLOB_READS = ("glob_partitions", "glob_table")
SECONDS = {"same": 4.0, "rows": 8.0, "partitions": 6.0, "s3": 9.0}
#: Idle seconds between two syncs. A bdc read that finds a file it reads replaced or removed starts
#: again (after a pause), at most 10 times: syncs of these small tables back to back (one every
#: ~0.1 s, each replacing both tables) would starve the longest reads (a join under load).
GAP = 0.25
SOAK_SECONDS = {"same": 60.0, "rows": 120.0, "partitions": 120.0, "s3": 120.0}


# -- the tables -------------------------------------------------------------------------------------


def write_state(root: str | os.PathLike[str], state: str) -> None:
    """Switch the source to ``state`` (atomically)."""
    path = Path(root) / "state.json"
    tmp = path.with_name(f".state-{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(json.dumps({"state": state}))
    os.replace(tmp, path)


def _current(root: str) -> tuple[str, tuple[str, ...]]:
    return STATES[json.loads((Path(root) / "state.json").read_text())["state"]]


def session_rows(subject_id: str, variant: str) -> list[dict[str, Any]]:
    """The sessions of one subject in one variant: another number of rows, other values, other labels."""
    sid = int(subject_id)
    shift = {"a": 0, "b": 7, "c": 3}[variant]
    n = 120 + 30 * (sid % 5) + shift
    return [{"subject_id": subject_id, "session": s, "value": (sid * 31 + s * 7 + 11 * shift) % 1009,
             "label": f"{variant}-{sid}-{s:04d}"} for s in range(1, n + 1)]


def subject_rows(variant: str, subjects: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per subject (a file of another size in each variant)."""
    species = ("mouse", "rat", "macaque")
    revision = ord(variant) - 96
    return [{"subject_id": sid, "species": f"{species[i % 3]}-{variant * revision}", "revision": revision}
            for i, sid in enumerate(subjects)]


def build_subjects(root: str, ctx: Any) -> list[dict[str, Any]]:
    variant, subjects = _current(root)
    return subject_rows(variant, subjects)


def list_sessions(root: str, ctx: Any) -> list[str]:
    return list(_current(root)[1])


def build_session(root: str, ctx: Any, subject_id: str) -> list[dict[str, Any]]:
    return session_rows(subject_id, _current(root)[0])


def tables(root: str) -> list[TableSpec]:
    """``rw_subjects`` (one file) and ``rw_sessions`` (a partition per subject), both rebuilt whole
    by every sync."""
    p = functools.partial
    return [
        TableSpec("rw_subjects", "Subjects (rewritten by every sync)",
                  [("subject_id", "string"), ("species", "string"), ("revision", "int64")],
                  build=p(build_subjects, root), key=["subject_id"]),
        TableSpec("rw_sessions", "Sessions, a partition per subject (rewritten by every sync)",
                  [("subject_id", "string"), ("session", "int64"), ("value", "int64"), ("label", "string")],
                  partition_key="subject_id", partitions=p(list_sessions, root),
                  build_partition=p(build_session, root)),
    ]


class ReadersPlugin:
    """The two tables of one source folder, as an in-process plugin."""

    def __init__(self, root: str):
        self.root = root

    @hookimpl
    def bdc_tables(self) -> list[TableSpec]:
        return tables(self.root)


# -- answers ----------------------------------------------------------------------------------------


def digest(frame: Any) -> str:
    """The rows of a DataFrame, whatever their order (and its columns, by name)."""
    columns = sorted(frame.columns)
    rows = sorted(zip(*(frame[c].tolist() for c in columns))) if columns else []
    return hashlib.sha1(json.dumps([columns, rows], default=str).encode()).hexdigest()


def partition_glob(folder: str) -> str:
    return f"{folder}/rw_sessions/*/*.pqt"


def table_file(folder: str) -> str:
    return f"{folder}/rw_subjects.pqt"


def glob_files(con: Any, folder: str) -> dict[str, str]:
    """Plain DuckDB over the partition files of ``rw_sessions``: file → digest of its rows."""
    frame = con.execute("SELECT * FROM read_parquet(?, hive_partitioning = false, filename = true)",
                        [partition_glob(folder)]).df()
    return {name: digest(rows.drop(columns=["filename"])) for name, rows in frame.groupby("filename", sort=False)}


def glob_table(con: Any, folder: str) -> str:
    """Plain DuckDB over the file of the unpartitioned ``rw_subjects``."""
    return digest(con.execute("SELECT * FROM read_parquet(?)", [table_file(folder)]).df())


def layout_files(folder: str, kind: str) -> dict[str, Any]:
    """The files a plain read of ``kind`` reads, as they are now: path → (inode, size, mtime)."""
    paths = sorted(glob.glob(partition_glob(folder))) if kind == "glob_partitions" else [table_file(folder)]
    out = {}
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            out[path] = None
            continue
        out[path] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def file_partition(path: str) -> tuple[str, str]:
    """(partition value, file name) of a partition file's path."""
    parent, name = os.path.split(path)
    key, _, value = os.path.basename(parent).partition("=")
    assert key == "subject_id", path
    return unquote(value), name


def expected_answers(clean: dict[str, Any]) -> dict[str, Any]:
    """Every answer a reader may get, from caches built cleanly in each state (``clean``: state →
    :class:`bdc.Cache`): per bdc read kind and state; for the join, per pair of states (of
    ``rw_subjects`` + of ``rw_sessions``); for plain reads, per partition and state, and per state."""
    import duckdb

    out: dict[str, Any] = {"bdc": {}, "join": {}, "parts": {}, "table": {}}
    for kind, read in BDC_READS.items():
        out["bdc"][kind] = {state: digest(read(cache)) for state, cache in clean.items()}
    arrow = {state: (cache.get("rw_subjects", arrow=True), cache.get("rw_sessions", arrow=True))
             for state, cache in clean.items()}
    for subjects_state in clean:
        for sessions_state in clean:
            con = duckdb.connect()
            con.register("rw_subjects", arrow[subjects_state][0])
            con.register("rw_sessions", arrow[sessions_state][1])
            out["join"][f"{subjects_state}+{sessions_state}"] = digest(con.execute(JOIN_SQL).df())
            con.close()
    con = duckdb.connect()
    for state, cache in clean.items():
        folder = cache.backend.local_path(cache.layout.version_folder)
        for path, found in glob_files(con, folder).items():
            value, name = file_partition(path)
            assert name == "data.pqt"
            out["parts"].setdefault(value, {})[state] = found
        out["table"][state] = glob_table(con, folder)
    con.close()
    # the states differ in every kind of read and in every partition they share
    for kind, answers in out["bdc"].items():
        assert len(set(answers.values())) == len(answers), kind
    for value, answers in out["parts"].items():
        assert len(set(answers.values())) == len(answers), value
    assert sorted(out["parts"]) == sorted(set(SUBJECTS) | set(MOVED))
    return out


# -- checking reads ---------------------------------------------------------------------------------


class Tally:
    """What the readers of one process did: reads per phase and kind, answers per kind and state,
    errors (none may happen), and observations of plain reads."""

    def __init__(self, expected: dict[str, Any]):
        self.expected = expected
        self.lock = threading.Lock()
        self.reads: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.answers: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.errors: list[str] = []
        self.observed: collections.Counter[str] = collections.Counter()
        self.samples: dict[str, str] = {}

    @staticmethod
    def states(phases: set[str]) -> set[str]:
        return {s for p in phases for s in PHASES[p]}

    def error(self, phases: set[str], kind: str, text: str) -> None:
        with self.lock:
            self.errors.append(f"[{'+'.join(sorted(phases))}] {kind}: {text}")

    def observe(self, what: str, sample: str | None = None) -> None:
        with self.lock:
            self.observed[what] += 1
            if sample is not None:
                self.samples.setdefault(what, sample[:300])

    def count(self, phases: set[str], kind: str, answer: str | None = None) -> None:
        with self.lock:
            self.reads["+".join(sorted(phases))][kind] += 1
            if answer is not None:
                self.answers[kind][answer] += 1

    def check_bdc(self, phases: set[str], kind: str, frame: Any) -> None:
        """A bdc read's answer is exactly one state's (the join: one pair of states')."""
        found = digest(frame)
        allowed = self.states(phases)
        if kind == "sql_join":
            answers = {pair: d for pair, d in self.expected["join"].items() if set(pair.split("+")) <= allowed}
        else:
            answers = {s: d for s, d in self.expected["bdc"][kind].items() if s in allowed}
        match = [name for name, d in answers.items() if d == found]
        if not match:
            self.error(phases, kind, f"a result that is none of {sorted(answers)} ({len(frame)} rows)")
            return
        self.count(phases, kind, match[0])

    def check_glob(self, phases: set[str], files: dict[str, str]) -> None:
        """A plain glob: every file one state's whole partition; in phase ``rows`` every partition,
        once; in phase ``partitions``, what it saw of the partition set is recorded."""
        allowed = self.states(phases)
        parts = self.expected["parts"]
        per_value: dict[str, list[str]] = collections.defaultdict(list)
        bad = []
        for path, found in files.items():
            value, name = file_partition(path)
            states = [s for s, d in parts.get(value, {}).items() if s in allowed and d == found]
            if name != "data.pqt" or len(states) != 1:
                bad.append(f"subject_id={value}/{name}")
                continue
            per_value[value].append(states[0])
        if bad:
            self.error(phases, "glob_partitions", f"files that are no state's whole partition: {bad}")
            return
        values = set(per_value)
        if any(len(states) > 1 for states in per_value.values()):
            self.error(phases, "glob_partitions", "a partition read twice")
            return
        if phases in ({"rows"}, {"same"}) and values != set(SUBJECTS):
            self.error(phases, "glob_partitions", f"partitions missing or extra: {sorted(values ^ set(SUBJECTS))}")
            return
        if phases == {"partitions"}:
            sets = {s: set(STATES[s][1]) for s in PHASES["partitions"]}
            exact = [s for s, members in sets.items() if values == members]
            if exact:
                self.observe(f"glob_partition_set_of_{exact[0]}")
            elif any(values > members for members in sets.values()):
                self.observe("glob_partition_set_more_than_a_state",
                             f"{len(values)} partitions: removed ones not yet deleted beside added ones")
            else:
                self.error(phases, "glob_partitions", f"a partition set missing some of every state's: {sorted(values)}")
                return
        if len({s for states in per_value.values() for s in states}) > 1:
            self.observe("glob_partitions_of_two_states")
        self.count(phases, "glob_partitions")

    def check_glob_table(self, phases: set[str], found: str) -> None:
        match = [s for s, d in self.expected["table"].items() if s in self.states(phases) and d == found]
        if not match:
            self.error(phases, "glob_table", "rw_subjects.pqt read as none of the states' files")
            return
        self.count(phases, "glob_table", match[0])

    def plain_read_failed(self, phases: set[str], kind: str, exc: BaseException,
                          before: dict[str, Any], after: dict[str, Any]) -> None:
        """A plain read failed: an observation when a file it read was removed or renamed over
        meanwhile, else an error (always in phase ``same``: its syncs must leave every file as it is)."""
        text = f"{type(exc).__name__}: {exc}"
        if phases == {"same"}:
            self.error(phases, kind, f"while syncs changed nothing: {text[:500]}")
            return
        removed = [p for p in before if after.get(p) is None]
        replaced = [p for p in before if after.get(p) is not None and after[p] != before[p]]
        if removed:
            self.observe(f"{kind}_failed_file_removed_while_read", text)
        elif replaced:
            self.observe(f"{kind}_failed_file_replaced_while_read", text)
        else:
            self.error(phases, kind, text[:500])

    def figures(self) -> dict[str, Any]:
        return {"reads": {p: dict(c) for p, c in sorted(self.reads.items())},
                "answers": {k: dict(sorted(c.items())) for k, c in sorted(self.answers.items())},
                "errors": list(self.errors), "observed": dict(sorted(self.observed.items())),
                "observed_samples": dict(self.samples)}


class Phase:
    """The phase now (readers note it before and after each read); also in a file, for the
    reader process."""

    def __init__(self, name: str, path: Path | None = None):
        self.path = path
        self.set(name)

    def set(self, name: str) -> None:
        self.name = name
        if self.path is not None:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(name)
            os.replace(tmp, self.path)

    def now(self) -> str:
        return self.name


def read_loop(kinds: tuple[str, ...], tally: Tally, phase: Callable[[], str], stop: Callable[[], bool],
              folder: str | None = None, start: int = 0) -> None:
    """Read ``kinds`` in turn until ``stop()``, checking every answer; bdc reads go through the
    module-level API (``bdc.get``, ``bdc.sql``: the default cache, ``$BDC_CACHE``)."""
    import duckdb

    import bdc

    con = duckdb.connect() if folder is not None else None
    i = start
    while not stop():
        kind = kinds[i % len(kinds)]
        i += 1
        before = phase()
        plain = kind in GLOB_READS
        files = layout_files(folder, kind) if plain else {}  # type: ignore[arg-type]
        try:
            if kind == "glob_partitions":
                result: Any = glob_files(con, folder)  # type: ignore[arg-type]
            elif kind == "glob_table":
                result = glob_table(con, folder)  # type: ignore[arg-type]
            else:
                result = BDC_READS[kind](bdc)
        except Exception as exc:  # noqa: BLE001 - every failure is counted
            phases = {before, phase()}
            if plain:
                tally.plain_read_failed(phases, kind, exc, files, layout_files(folder, kind))  # type: ignore[arg-type]
            else:
                tally.error(phases, kind, f"{type(exc).__name__}: {exc}"[:500])
            continue
        phases = {before, phase()}
        if kind == "glob_partitions":
            tally.check_glob(phases, result)
        elif kind == "glob_table":
            tally.check_glob_table(phases, result)
        else:
            tally.check_bdc(phases, kind, result)
    if con is not None:
        con.close()


def reader_process_main(work: str) -> None:
    """A reader in its own process: imports, says it is ready, waits for its configuration (the
    answers), then reads every kind in turn on the file cache until the stop file appears; its
    tally goes to ``out.json``."""
    import bdc  # noqa: F401 - imported before saying ready
    import duckdb  # noqa: F401
    from bdc import plugins

    folder = Path(work)
    (folder / "ready").write_text(str(os.getpid()))
    config_path = folder / "config.json"
    deadline = time.monotonic() + 120
    while not config_path.exists():
        if time.monotonic() > deadline:
            raise SystemExit("no configuration came")
        time.sleep(0.02)
    config = json.loads(config_path.read_text())
    os.environ["BDC_CACHE"] = config["url"]
    plugins.register(ReadersPlugin(config["source"]), name="readers-during-writes", distribution="bdc-test-readers")
    tally = Tally(config["expected"])
    phase_file, stop_file = folder / "phase", folder / "stop"
    read_loop((*BDC_READS, *GLOB_READS), tally, phase_file.read_text, stop_file.exists, folder=config["folder"])
    tmp = folder / "out.json.tmp"
    tmp.write_text(json.dumps(tally.figures()))
    os.replace(tmp, folder / "out.json")


# -- running it -------------------------------------------------------------------------------------


def synced(url: str, source: str, state: str) -> None:
    """Switch the source to ``state`` and sync it into ``url`` (the run must succeed)."""
    from bdc.runner import sync

    write_state(source, state)
    report = sync(url, progress="none")
    assert report.ok, report.to_json()


def run_phase(name: str, url: str, source: str, phase: Phase, seconds: float, syncs: collections.Counter[str],
              failures: list[str]) -> None:
    """Sync the phase's two states in turn for ``seconds`` (at least four syncs), ending at A."""
    phase.set(name)
    states = PHASES[name]
    deadline = time.monotonic() + seconds
    n = 0
    while n < 4 or n % 2 or time.monotonic() < deadline:
        try:
            synced(url, source, states[(n + 1) % 2])
        except Exception as exc:  # noqa: BLE001 - reported by the test
            failures.append(f"{name}: sync failed: {type(exc).__name__}: {exc}")
            return
        n += 1
        syncs[name] += 1
        time.sleep(GAP)


def start_readers(kinds: tuple[str, ...], tally: Tally, phase: Phase, stop: threading.Event, count: int,
                  folder: str | None = None) -> list[threading.Thread]:
    threads = [threading.Thread(target=read_loop, name=f"bdc-test-reader-{i}", daemon=True,
                                args=(kinds, tally, phase.now, stop.is_set),
                                kwargs={"folder": folder, "start": i * 3})
               for i in range(count)]
    for t in threads:
        t.start()
    return threads


def stop_readers(stop: threading.Event, threads: list[threading.Thread]) -> None:
    stop.set()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), f"{t.name} is stuck"


@contextlib.contextmanager
def counting_scans(monkeypatch: pytest.MonkeyPatch) -> Iterator[collections.Counter[str]]:
    """How many table scans the bdc readers of this process made (a read that starts again because
    a sync published or replaced a file meanwhile scans again): counts ``Cache._scan`` calls."""
    from bdc.cache import Cache

    counter: collections.Counter[str] = collections.Counter()
    original = Cache._scan

    def scan(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter["scans"] += 1
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Cache, "_scan", scan)
        yield counter


def figures_dir() -> Path:
    folder = os.environ.get("BDC_RELIABILITY_FIGURES_DIR")
    path = Path(folder) if folder else Path(tempfile.gettempdir()) / "bdc-reliability-figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_reader_process(work: Path) -> tuple[subprocess.Popen[bytes], Any]:
    """The reader process, started first: its imports overlap the clean builds."""
    here = Path(__file__).resolve().parent
    env = {**os.environ, "BDC_LOAD_PLUGINS": "",
           "PYTHONPATH": os.pathsep.join([str(here), *filter(None, [os.environ.get("PYTHONPATH")])])}
    log = open(work / "log.txt", "wb")  # noqa: SIM115 - closed by the caller
    child = subprocess.Popen([sys.executable, "-c", f"import {Path(__file__).stem} as m; m.reader_process_main({str(work)!r})"],
                             env=env, stdout=log, stderr=subprocess.STDOUT)
    return child, log


def readers_during_writes(tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch,
                          seconds: dict[str, float], s3_url: str | None) -> dict[str, Any]:
    """Run the phases with their readers; the figures."""
    from bdc.cache import Cache

    started = time.monotonic()
    work = tmp_path / "reader-process"
    work.mkdir()
    child, log = start_reader_process(work)
    syncs: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    tally = Tally({})
    try:
        clean = {}
        for state in STATES:
            clean[state] = Cache((tmp_path / f"clean-{state}").as_uri())
            synced(clean[state].url, source, state)
        expected = expected_answers(clean)
        tally.expected = expected
        cache = Cache((tmp_path / "cache").as_uri())
        synced(cache.url, source, "A")
        folder = str(cache.backend.local_path(cache.layout.version_folder))
        monkeypatch.setenv("BDC_CACHE", cache.url)
        phase = Phase("rows", work / "phase")
        (work / "config.json.tmp").write_text(json.dumps({"url": cache.url, "source": source, "expected": expected,
                                                          "folder": folder}))
        os.replace(work / "config.json.tmp", work / "config.json")
        deadline = time.monotonic() + 60
        while not (work / "ready").exists():
            assert child.poll() is None, (work / "log.txt").read_text()
            assert time.monotonic() < deadline, "the reader process did not start"
            time.sleep(0.02)
        stop = threading.Event()
        with counting_scans(monkeypatch) as scans:
            threads = start_readers(tuple(BDC_READS), tally, phase, stop, 2)
            threads += start_readers(GLOB_READS, tally, phase, stop, 1, folder=folder)
            try:
                for name in ("same", "rows", "partitions"):
                    run_phase(name, cache.url, source, phase, seconds[name], syncs, failures)
            finally:
                stop_readers(stop, threads)
        local_scans = scans["scans"]
    finally:
        (work / "stop").write_text("stop")
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()
    assert child.returncode == 0, (work / "log.txt").read_text()
    process = json.loads((work / "out.json").read_text())

    s3: dict[str, Any] = {}
    if s3_url is not None:
        s3_tally = Tally(expected)
        monkeypatch.setenv("BDC_LOCAL_CACHE_TTL", "0")  # every read revalidates the registry and its copies
        synced(s3_url, source, "A")
        monkeypatch.setenv("BDC_CACHE", s3_url)
        phase = Phase("s3")
        stop = threading.Event()
        with counting_scans(monkeypatch) as scans:
            threads = start_readers(tuple(BDC_READS), s3_tally, phase, stop, 2)
            try:
                run_phase("s3", s3_url, source, phase, seconds["s3"], syncs, failures)
            finally:
                stop_readers(stop, threads)
        s3 = {"tally": s3_tally.figures(), "scans": scans["scans"]}

    parts = {"file_threads": tally.figures(), "file_process": process, **({"s3_threads": s3["tally"]} if s3 else {})}
    reads: collections.Counter[str] = collections.Counter()
    observed: collections.Counter[str] = collections.Counter()
    pairs: collections.Counter[str] = collections.Counter()
    for part in parts.values():
        for kinds in part["reads"].values():
            reads.update(kinds)
        observed.update(part["observed"])
        pairs.update(part["answers"].get("sql_join", {}))
    errors = [e for part in parts.values() for e in part["errors"]] + failures
    out = {
        "scenario": "readers during writes (issue #5, scenario 3)",
        "seconds": round(time.monotonic() - started, 1),
        "syncs_completed": dict(syncs),
        "reads": dict(sorted(reads.items())),
        "reads_total": sum(reads.values()),
        "errors": len(errors),
        "error_samples": errors[:20],
        "sql_join_answers": dict(sorted(pairs.items())),
        "plain_duckdb_observations": dict(sorted(observed.items())),
        # a bdc read that found a file replaced or removed while it read (or the registry changed
        # under it) starts again: how many times that happened, beyond one scan per table read
        "bdc_reads_started_again": {"file_threads": local_scans - scans_needed(parts["file_threads"]),
                                    **({"s3_threads": s3["scans"] - scans_needed(s3["tally"])} if s3 else {})},
        "readers": parts,
    }
    (figures_dir() / "readers.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "readers"}, indent=1))
    return out


def scans_needed(figures: dict[str, Any]) -> int:
    """The table scans of a tally's bdc reads when none starts again (a join scans two tables)."""
    return sum(n * (2 if kind == "sql_join" else 1) for kinds in figures["reads"].values()
               for kind, n in kinds.items() if kind in BDC_READS)


@pytest.fixture
def source(tmp_path: Path, bdc_plugin: Callable[..., str]) -> str:
    """The source folder (state A), its tables registered in this process."""
    root = tmp_path / "source"
    root.mkdir()
    write_state(root, "A")
    bdc_plugin(ReadersPlugin(str(root)), name="readers-during-writes", distribution="bdc-test-readers")
    return str(root)


def check(out: dict[str, Any]) -> None:
    assert out["errors"] == 0, json.dumps(out["error_samples"], indent=1)
    for part, figures in out["readers"].items():
        for kind in BDC_READS:  # every kind of read ran, in every phase its readers saw
            for phase, kinds in figures["reads"].items():
                if "+" not in phase:
                    assert kinds.get(kind, 0) > 0, (part, phase, kind)
    # both states of a phase were read (the readers really overlapped the syncs)
    answers = out["readers"]["file_threads"]["answers"]["get_all"]
    assert answers.get("A") and answers.get("B") and answers.get("C"), answers


def test_readers_during_writes(tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch, s3_url: str) -> None:
    check(readers_during_writes(tmp_path, source, monkeypatch, SECONDS, s3_url))


@pytest.mark.slow
def test_readers_during_writes_soak(tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch, s3_url: str) -> None:
    seconds = float(os.environ.get("BDC_SOAK_SECONDS", "0")) or None
    check(readers_during_writes(tmp_path, source, monkeypatch,
                                {k: seconds or v for k, v in SOAK_SECONDS.items()}, s3_url))


def test_s3_whole_table_read_with_a_registry_copy_older_than_a_sync(tmp_path: Path, source: str, s3_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader's copy of the registry stays fresh for the TTL (60 s by default): when a sync on
    another machine replaced the partitions meanwhile, a whole-table read gets one version — the
    partitions it holds copies of and the ones it downloads now are not mixed."""
    from bdc.cache import Cache

    answers = {}
    for state in ("A", "B"):
        clean = Cache((tmp_path / f"clean-{state}").as_uri())
        synced(clean.url, source, state)
        answers[digest(clean.get("rw_sessions"))] = state
    synced(s3_url, source, "A")
    cache = Cache(s3_url)
    assert len(cache.get("rw_sessions", subject_id=KEPT)) > 0  # the registry and one partition copied here
    with monkeypatch.context() as elsewhere:  # another machine: its own local read cache
        elsewhere.setenv("BDC_LOCAL_CACHE_DIR", str(tmp_path / "other-machine"))
        synced(s3_url, source, "B")
    assert answers.get(digest(cache.get("rw_sessions"))) in ("A", "B")
    assert answers.get(digest(cache.sql("SELECT * FROM rw_sessions"))) in ("A", "B")
