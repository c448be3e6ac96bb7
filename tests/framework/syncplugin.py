"""A synthetic bdc plugin for the sync-runner tests.

Every build function is a module-level function, bound to its source with :func:`functools.partial`,
so that worker processes (the ``processes`` executor, Dask workers) can unpickle the specs by
reference. Everything the builds read or record lives in one *source folder* on disk, so it is
shared by the runner, its worker processes and a ``bdc-sync`` subprocess:

``subjects.json``
    The upstream records: ``{subject_id: {"species", "revision", "n_sessions"}}``. Tests edit it
    (:func:`write_subjects`) to change, add or remove subjects between runs.
``faults.json``
    Injected faults (:func:`set_faults`): ``transient`` = ``{target: n}`` makes the first ``n``
    attempts of a target fail with a transient error (HTTP 503, connection reset, S3 SlowDown,
    HTTP 429, timeout, in turn); ``permanent`` = targets that always fail with a permanent
    error; ``delay`` = ``{table: seconds}`` each build of the table sleeps. A target is a table
    name (for a partitioned table: each of its partitions) or ``table:value`` (one partition).
``attempts/``
    One file per table or partition (``table:value``) with faults configured; every attempt appends one byte (atomic across processes), so the
    number of attempts is the file's size (:func:`attempts`).
``spans/``
    One JSON file per finished build call: table, partition, pid, start and end time
    (:func:`spans`), to prove what ran where and what overlapped.

Tables (``tables(source)``):

* ``sync_subjects`` — whole table, incremental: returns a :class:`bdc.Delta` of the subjects whose
  revision changed (and deletes the vanished ones), saving ``{subject_id: revision}`` as state.
* ``sync_sessions`` — partitioned by ``subject_id`` (ids like ``"0007"`` stay text), depends on
  ``sync_subjects``; the partition listing reads the dependency and returns fingerprints (the
  revision), each partition build reads its subject row from the published dependency.
* ``sync_summary`` — whole table, depends on ``sync_sessions`` (aggregates it).
* ``platform_alpha``, ``platform_beta`` — independent whole tables (for parallelism and
  ``--exclude 'platform_*'``).
* with ``broken=True``: ``sync_broken`` (always fails permanently) and ``sync_broken_child``
  (depends on it, so it is skipped).

For a ``bdc-sync`` subprocess, the module itself is a plugin: its :func:`bdc_tables` hook declares
the tables of the source folder named by ``BDC_SYNCPLUGIN_SOURCE`` (nothing when unset).
"""

from __future__ import annotations

import functools
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from bdc.build import BuildContext, BuildResult, Delta
from bdc.hookspecs import hookimpl
from bdc.spec import TableSpec

__all__ = [
    "ENV_SOURCE",
    "Source",
    "SyncPlugin",
    "PermanentSourceError",
    "SourceHTTPError",
    "TRANSIENT_KINDS",
    "tables",
    "default_subjects",
    "make_source",
    "write_subjects",
    "set_faults",
    "attempts",
    "spans",
    "clear_spans",
    "session_rows",
    "bdc_tables",
]

#: Environment variable naming the source folder for the module-level hook (subprocess runs).
ENV_SOURCE = "BDC_SYNCPLUGIN_SOURCE"
#: The transient failures injected, in turn, by a flaky target.
TRANSIENT_KINDS = ("http503", "reset", "slowdown", "http429", "timeout")


class PermanentSourceError(ValueError):
    """A permanent failure of the synthetic source (bad data): never worth a retry."""


class _Response:
    """The bit of a ``requests.Response`` that :func:`bdc.runner.is_transient` looks at."""

    def __init__(self, status_code: int):
        self.status_code = status_code


class SourceHTTPError(Exception):
    """An HTTP error of the synthetic source, carrying ``response.status_code`` like requests' errors."""

    def __init__(self, status_code: int, message: str = ""):
        super().__init__(status_code, message)
        self.response = _Response(status_code)

    def __str__(self) -> str:
        return f"HTTP {self.args[0]} {self.args[1]}".rstrip()


def _transient_error(kind: str, target: str) -> Exception:
    """The transient exception of one ``kind`` (see :data:`TRANSIENT_KINDS`)."""
    if kind == "http503":
        return SourceHTTPError(503, f"Service Unavailable ({target})")
    if kind == "http429":
        return SourceHTTPError(429, f"Too Many Requests ({target})")
    if kind == "reset":
        return ConnectionResetError(104, f"Connection reset by peer ({target})")
    if kind == "timeout":
        return TimeoutError(f"read timed out ({target})")
    if kind == "slowdown":
        from botocore.exceptions import ClientError

        return ClientError({"Error": {"Code": "SlowDown", "Message": f"Please reduce your request rate ({target})"},
                            "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject")
    raise ValueError(f"unknown transient kind {kind!r}")


# -- the source folder --------------------------------------------------------------------------


@attrs.frozen
class Source:
    """The synthetic upstream: a folder (see the module docstring). Picklable; holds only a path."""

    root: str

    @property
    def path(self) -> Path:
        """The folder as a :class:`~pathlib.Path`."""
        return Path(self.root)

    def subjects(self) -> dict[str, dict[str, Any]]:
        """The upstream subject records."""
        return json.loads((self.path / "subjects.json").read_text())

    def faults(self) -> dict[str, Any]:
        """The injected faults (none when the file is absent)."""
        try:
            return json.loads((self.path / "faults.json").read_text())
        except FileNotFoundError:
            return {}


def default_subjects(n: int = 6, *, sessions: int = 3) -> dict[str, dict[str, Any]]:
    """``n`` subjects with numeric-looking ids (``"0007"``), revision 1, ``sessions`` sessions each."""
    species = ("mouse", "rat", "macaque")
    return {f"{7 * (i + 1):04d}": {"species": species[i % 3], "revision": 1, "n_sessions": sessions + i % 2}
            for i in range(n)}


def write_subjects(root: str | os.PathLike[str], subjects: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace the upstream subject records (atomically)."""
    path = Path(root) / "subjects.json"
    tmp = path.with_name(f".subjects-{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(subjects, sort_keys=True))
    os.replace(tmp, path)


def set_faults(
    root: str | os.PathLike[str],
    *,
    transient: Mapping[str, int] | None = None,
    permanent: list[str] | tuple[str, ...] = (),
    delay: Mapping[str, float] | None = None,
    reset_attempts: bool = True,
) -> None:
    """Configure injected faults and delays (see the module docstring); clears attempt counts."""
    path = Path(root)
    doc = {"transient": dict(transient or {}), "permanent": list(permanent), "delay": dict(delay or {})}
    tmp = path / f".faults-{uuid.uuid4().hex}"
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path / "faults.json")
    if reset_attempts:
        for item in (path / "attempts").glob("*"):
            item.unlink()


def make_source(root: str | os.PathLike[str], subjects: Mapping[str, Mapping[str, Any]] | None = None) -> Source:
    """Create a source folder with ``subjects`` (default: :func:`default_subjects`) and no faults."""
    path = Path(root)
    for sub in ("attempts", "spans"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    write_subjects(path, default_subjects() if subjects is None else subjects)
    set_faults(path)
    return Source(str(path))


def attempts(root: str | os.PathLike[str], target: str) -> int:
    """How many times ``target`` (``table`` or ``table:value``) was attempted since the last reset."""
    try:
        return (Path(root) / "attempts" / _target_file(target)).stat().st_size
    except FileNotFoundError:
        return 0


def spans(root: str | os.PathLike[str], table: str | None = None) -> list[dict[str, Any]]:
    """The recorded build calls (optionally of one table), ordered by start time."""
    out = []
    for item in (Path(root) / "spans").glob("*.json"):
        span = json.loads(item.read_text())
        if table is None or span["table"] == table:
            out.append(span)
    return sorted(out, key=lambda s: s["start"])


def clear_spans(root: str | os.PathLike[str]) -> None:
    """Forget the recorded build calls."""
    for item in (Path(root) / "spans").glob("*.json"):
        item.unlink()


def _target_file(target: str) -> str:
    return target.replace(":", "__")


def _count_attempt(source: Source, target: str) -> int:
    """Append one byte to the target's attempt file; returns the attempt number (1-based)."""
    fd = os.open(source.path / "attempts" / _target_file(target), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b".")
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


@contextmanager
def _build_call(source: Source, table: str, value: str | None = None) -> Iterator[None]:
    """Apply the injected faults to one build call, sleep its delay and record its span."""
    faults = source.faults()
    target = table if value is None else f"{table}:{value}"
    start = time.time()
    transient = faults.get("transient", {})
    permanent = faults.get("permanent", [])
    limit = transient.get(target, transient.get(table))
    failing = target in permanent or table in permanent
    if limit is not None or failing:
        attempt = _count_attempt(source, target)  # per partition, so it works across processes
        if failing:
            raise PermanentSourceError(f"bad record in {target} (attempt {attempt})")
        if attempt <= int(limit):
            raise _transient_error(TRANSIENT_KINDS[(attempt - 1) % len(TRANSIENT_KINDS)], target)
    delay = float(faults.get("delay", {}).get(table, 0))
    if delay:
        time.sleep(delay)
    yield
    span = {"table": table, "value": value, "pid": os.getpid(), "start": start, "end": time.time()}
    name = uuid.uuid4().hex
    tmp = source.path / "spans" / f".{name}.tmp"
    tmp.write_text(json.dumps(span))
    os.replace(tmp, tmp.with_name(f"{name}.json"))  # readers never see half a span


# -- the build functions -----------------------------------------------------------------------


def session_rows(subject_id: str, revision: int, n_sessions: int) -> list[dict[str, Any]]:
    """The sessions of one subject at one revision (deterministic)."""
    return [{"subject_id": subject_id, "session": s, "value": ((int(subject_id) * 31 + s * 7 + revision) % 997) / 10,
             "label": f"s{s}-r{revision}"} for s in range(1, n_sessions + 1)]


def build_subjects(source: Source, ctx: BuildContext) -> BuildResult:
    """``sync_subjects``: a Delta of the changed and vanished subjects (all of them on a first/full build)."""
    with _build_call(source, "sync_subjects"):
        subjects = source.subjects()
        seen = {sid: int(rec["revision"]) for sid, rec in subjects.items()}
        previous_seen: dict[str, int] | None = ctx.state.get("seen")
        if previous_seen is None or ctx.previous(columns=["subject_id"]) is None:
            changed, gone = sorted(subjects), []
        else:
            changed = sorted(sid for sid, rev in seen.items() if previous_seen.get(sid) != rev)
            gone = sorted(set(previous_seen) - set(seen))
        ctx.count("upserts", len(changed))
        ctx.count("deletes", len(gone))
        rows = [{"subject_id": sid, "species": subjects[sid]["species"], "revision": seen[sid]} for sid in changed]
        return BuildResult(data=Delta(upserts=rows, deletes=gone), state={"seen": seen})


def list_sessions(source: Source, ctx: BuildContext) -> dict[str, str]:
    """``sync_sessions`` partitions: one per published subject, fingerprinted by its revision."""
    subjects = ctx.read("sync_subjects", columns=["subject_id", "revision"])
    return {sid: f"r{rev}" for sid, rev in zip(subjects["subject_id"], subjects["revision"])}


def build_session_partition(source: Source, ctx: BuildContext, subject_id: str) -> list[dict[str, Any]]:
    """One ``sync_sessions`` partition; reads its subject row from the published dependency."""
    with _build_call(source, "sync_sessions", subject_id):
        subject = ctx.read("sync_subjects", subject_id=subject_id)
        if len(subject) != 1:
            raise PermanentSourceError(f"subject {subject_id!r} is not published in sync_subjects")
        n_sessions = int(source.subjects()[subject_id]["n_sessions"])
        return session_rows(subject_id, int(subject["revision"].iloc[0]), n_sessions)


def build_summary(source: Source, ctx: BuildContext) -> Any:
    """``sync_summary``: sessions and total value per subject, from the published ``sync_sessions``."""
    with _build_call(source, "sync_summary"):
        sessions = ctx.read("sync_sessions")
        grouped = sessions.groupby("subject_id", sort=True).agg(n_sessions=("session", "count"),
                                                                 total=("value", "sum"))
        return grouped.reset_index()


def build_platform(source: Source, name: str, ctx: BuildContext) -> list[dict[str, Any]]:
    """``platform_*``: a few rows, after the table's configured delay."""
    with _build_call(source, name):
        return [{"platform": name, "slot": i} for i in range(4)]


def build_broken(source: Source, ctx: BuildContext) -> None:
    """``sync_broken``: always fails, permanently."""
    with _build_call(source, "sync_broken"):
        raise PermanentSourceError("sync_broken is broken on purpose")


def build_broken_child(source: Source, ctx: BuildContext) -> Any:
    """``sync_broken_child``: would read its (broken) dependency."""
    return ctx.read("sync_broken")


def tables(source: Source, *, broken: bool = False) -> list[TableSpec]:
    """The synthetic tables of ``source`` (see the module docstring)."""
    p = functools.partial
    specs = [
        TableSpec("sync_subjects", "Subjects, incremental by revision",
                  [("subject_id", "string"), ("species", "string"), ("revision", "int64")],
                  build=p(build_subjects, source), incremental=True, key=["subject_id"], aliases=["subj"]),
        TableSpec("sync_sessions", "Sessions per subject, one partition per subject",
                  [("subject_id", "string"), ("session", "int64"), ("value", "float64"), ("label", "string")],
                  partition_key="subject_id", partitions=p(list_sessions, source),
                  build_partition=p(build_session_partition, source), incremental=True,
                  depends_on=["subj"], kind="asset"),
        TableSpec("sync_summary", "Sessions and total value per subject",
                  [("subject_id", "string"), ("n_sessions", "int64"), ("total", "float64")],
                  build=p(build_summary, source), depends_on=["sync_sessions"], key=["subject_id"]),
        TableSpec("platform_alpha", "An independent platform table",
                  [("platform", "string"), ("slot", "int64")], build=p(build_platform, source, "platform_alpha"),
                  kind="platform"),
        TableSpec("platform_beta", "Another independent platform table",
                  [("platform", "string"), ("slot", "int64")], build=p(build_platform, source, "platform_beta"),
                  kind="platform"),
    ]
    if broken:
        specs += [
            TableSpec("sync_broken", "Always fails", [("x", "int64")], build=p(build_broken, source)),
            TableSpec("sync_broken_child", "Depends on the broken table", [("x", "int64")],
                      build=p(build_broken_child, source), depends_on=["sync_broken"]),
        ]
    return specs


class SyncPlugin:
    """An in-process plugin declaring :func:`tables` of one source."""

    def __init__(self, source: Source, *, broken: bool = False):
        self.source = source
        self.broken = broken

    @hookimpl
    def bdc_tables(self) -> list[TableSpec]:
        """The synthetic tables."""
        return tables(self.source, broken=self.broken)


@hookimpl
def bdc_tables() -> list[TableSpec]:
    """The module as a plugin (entry point ``syncplugin``): the tables of ``$BDC_SYNCPLUGIN_SOURCE``.

    ``BDC_SYNCPLUGIN_BROKEN=1`` adds the failing tables.
    """
    root = os.environ.get(ENV_SOURCE)
    if not root:
        return []
    return tables(Source(root), broken=os.environ.get("BDC_SYNCPLUGIN_BROKEN") == "1")
