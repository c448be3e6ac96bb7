"""The three dynamic-foraging mirrors: their specs and build functions (TABLES.md §2.18).

* ``platform_dynamic_foraging_sessions`` (``df_sessions``): the whole session table, every column
  (the source file copied byte for byte when its footer shows it conforms, else rewritten).
  Its source fingerprint and its subjects are kept in the build state; when the source file did
  not change, the build returns the published table instead of reading the source again.
* ``platform_dynamic_foraging_trials`` / ``_events`` (``df_trials`` / ``df_events``): one partition
  per distinct non-null ``subject_id`` of the freshly built session table, fingerprinted from the
  subject's source files, so an incremental sync rebuilds only subjects whose files changed (the
  runner deletes the partitions of subjects that vanished). A partition build returns the
  subject's files as :class:`bdc.ParquetFiles`: the framework copies them byte for byte when their
  footers show they already are what the table publishes, else writes the streaming
  :class:`~bdc_tables_foraging.source.PartitionReader` (files unioned by name) as one file.
  Partition files are named ``data.parquet`` (``data-0000.parquet``, ``data-0001.parquet``, … when
  copied from several files, in their order), so upstream's helpers (which list
  ``subject_id=*/*.parquet``) read bdc's folders as they read the source. A subject without source
  files gets an empty partition: the declared columns with their declared types, plus the
  undeclared columns of the table's first source file (as far as its footer can be read). A
  subject id the framework refuses as a partition value (a quote, padding spaces, ``..``) gets no
  partition: it is counted (``subjects_refused``) and named in a warning. A partition
  build takes the subject's files from the listing its fingerprint came from (each table is listed
  once per sync run), so what it publishes is what was fingerprinted.

Build functions are module-level (picklable for the process and Dask executors).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from bdc_tables_foraging.columns import EVENT_COLUMNS, SESSION_COLUMNS, TRIAL_COLUMNS
from bdc_tables_foraging.source import (
    EVENT_TABLE,
    PARTITION_KEY,
    SESSION_FILE,
    TRIAL_TABLE,
    ForagingSource,
    foraging_base,
)

__all__ = [
    "SESSIONS",
    "TRIALS",
    "EVENTS",
    "PARTITION_FILE",
    "table_specs",
    "build_sessions",
    "session_subjects",
    "trial_partitions",
    "event_partitions",
    "build_trial_partition",
    "build_event_partition",
]

log = logging.getLogger(__name__)

SESSIONS = "platform_dynamic_foraging_sessions"
TRIALS = "platform_dynamic_foraging_trials"
EVENTS = "platform_dynamic_foraging_events"
#: Partition file name: upstream's helpers read ``subject_id=*/*.parquet``.
PARTITION_FILE = "data.parquet"

# -- sessions ---------------------------------------------------------------------------------


def build_sessions(ctx: Any) -> Any:
    """The whole upstream session table, or :data:`bdc.UNCHANGED` when the source file did not change.

    The table is ``session_table.parquet`` itself as :class:`bdc.ParquetFiles`: the framework
    copies it byte for byte when its footer shows it already is what the table publishes, else
    reads and writes it conformed. Returns a :class:`bdc.BuildResult` whose state holds the
    source fingerprint (base, size, modification time of ``session_table.parquet``, and its ETag on S3) and the
    table's subjects (its ``subject_id`` column alone, read here) with the run that built it (see
    :func:`session_subjects`).
    """
    from bdc.build import UNCHANGED, BuildResult, ParquetFiles

    source = ForagingSource.open()
    fingerprint = ctx.call(source.session_fingerprint)
    state: dict[str, Any] = {"source": source.base, "fingerprint": fingerprint}
    if not ctx.full and ctx.state.get("fingerprint") == fingerprint and ctx.cache.is_published(ctx.spec):
        ctx.count("source_unchanged")
        if "subjects" in ctx.state:  # the published table is the one these subjects came from
            state.update(run_id=ctx.state.get("run_id"), subjects=ctx.state["subjects"])
        return BuildResult(data=UNCHANGED, state=state)
    subjects = _subjects_of(ctx.call(source.read_sessions, [PARTITION_KEY]))
    if subjects is not None and ctx.run_id:
        state.update(run_id=ctx.run_id, subjects=subjects)
    return BuildResult(data=ParquetFiles([source.path(SESSION_FILE)], source.filesystem), state=state)


# -- trials and events ------------------------------------------------------------------------


def _subjects_of(table: Any) -> list[str] | None:
    """Distinct non-null, non-empty ``subject_id`` of a session table (sorted text); ``None`` when
    the column is not text (what the framework publishes of it is then read back instead)."""
    import pyarrow as pa

    if PARTITION_KEY not in table.column_names or not pa.types.is_string(table.schema.field(PARTITION_KEY).type):
        return None
    return sorted({v for v in table.column(PARTITION_KEY).to_pylist() if v is not None and v != ""})


def session_subjects(ctx: Any) -> list[str]:
    """Distinct non-null ``subject_id`` of the session table just built (sorted text).

    The session build saves them in its state with its run id; while the published session
    table is still that run's (its registry entry names the run), they are taken from there, else
    read from the published table.
    """
    sessions = ctx.cache.spec(SESSIONS)
    state = ctx.cache.read_state(sessions)
    entry = ctx.cache.registry_entry(SESSIONS) or {}
    built_by = (entry.get("build") or {}).get("run_id")
    subjects = state.get("subjects")
    if built_by and state.get("run_id") == built_by and isinstance(subjects, list):
        return [str(s) for s in subjects]
    import pyarrow.compute as pc

    column = ctx.read_arrow(SESSIONS, columns=[PARTITION_KEY]).column(PARTITION_KEY)
    return sorted(str(v) for v in pc.unique(column).to_pylist() if v is not None and v != "")


#: (run id, database root, table) → ``(source, listing)``: the listing of the table that run's
#: partition fingerprints came from, which its partition builds (in this process) reuse.
_listings: dict[tuple[str, str, str], tuple[ForagingSource, dict[str, list[Any]]]] = {}
_LISTINGS_KEPT = 8
_listings_lock = threading.Lock()


def _keep(store: dict[Any, Any], key: Any, value: Any) -> None:
    """Put ``value`` in one of the per-run stores, forgetting the oldest beyond :data:`_LISTINGS_KEPT`."""
    with _listings_lock:
        while len(store) >= _LISTINGS_KEPT:
            del store[next(iter(store))]  # the oldest
        store[key] = value


def _remember(ctx: Any, source: ForagingSource, table: str, listing: dict[str, list[Any]]) -> None:
    if ctx.run_id:
        _keep(_listings, (ctx.run_id, source.base, table), (source, listing))


def _partitions(ctx: Any, table: str) -> dict[str, str]:
    """Subject id → fingerprint of its source files (a fixed token when it has none)."""
    from bdc.errors import InvalidNameError
    from bdc.names import check_partition_value

    source = ForagingSource.open()
    listing = ctx.call(source.list_table, table)
    found = source.partition_fingerprints(table, listing)
    _remember(ctx, source, table, listing)
    absent = source.absent_fingerprint(table)
    out: dict[str, str] = {}
    refused: list[tuple[str, str]] = []
    for subject_id in session_subjects(ctx):
        try:
            check_partition_value(subject_id, PARTITION_KEY)
        except InvalidNameError as exc:
            refused.append((subject_id, str(exc)))
            continue
        out[subject_id] = found.get(subject_id, absent)
    if refused:
        _report_refused(ctx, table, refused, found)
    missing = sum(1 for fp in out.values() if fp == absent)
    if missing:
        log.warning("%s: %d subjects of the session table have no files under %s/%s",
                    ctx.spec.name, missing, source.base, table)
    return out


#: How many refused subject ids one warning names (the counter has them all).
_REFUSED_NAMED = 50


def _report_refused(ctx: Any, table: str, refused: list[tuple[str, str]], found: dict[str, str]) -> None:
    """Make the subjects whose ids cannot be partition values visible: the counter
    ``subjects_refused`` in the table's run report, and one warning naming them (with why, and
    whether the source has files for them: their rows are not in the table)."""
    ctx.count("subjects_refused", len(refused))
    with_files = sum(1 for subject_id, _ in refused if subject_id in found)
    named = "; ".join(f"{why} ({'has files' if subject_id in found else 'no files'})"
                      for subject_id, why in refused[:_REFUSED_NAMED])
    more = f"; and {len(refused) - _REFUSED_NAMED} more" if len(refused) > _REFUSED_NAMED else ""
    ctx.log.warning("%s: %d subjects of the session table are left out (their ids cannot be partition "
                    "values; %d of them have files under %s, whose rows are not mirrored): %s%s",
                    ctx.spec.name, len(refused), with_files, table, named, more)


def _build_partition(ctx: Any, table: str, subject_id: str) -> Any:
    """One subject's files as :class:`bdc.ParquetFiles`: copied byte for byte when their footers
    show they already are what the table publishes, else rewritten from the streaming reader
    (files unioned by name, ``subject_id`` the folder's text). No files: an empty partition."""
    from bdc.build import ParquetFiles

    base = foraging_base()
    declared = ctx.spec.arrow_schema()
    known = _listings.get((ctx.run_id, base, table)) if ctx.run_id else None
    if known is not None:  # the files this run fingerprinted, listed once for every subject
        source, listing = known
        reader = source.partition(table, subject_id, listing, declared=declared)
    else:
        source = ForagingSource.open(base)
        reader = ctx.call(source.partition, table, subject_id, declared=declared)
    if not reader.paths:
        ctx.count("subjects_without_source_files")
        return _empty_partition(ctx, source, table, known[1] if known is not None else None)
    ctx.count("source_files", len(reader.paths))
    return ParquetFiles(reader.paths, reader.filesystem, rewrite=reader)


#: (run id, database root, table) → the schema of the empty partitions (subjects without files).
_schemas: dict[tuple[str, str, str], Any] = {}


def _empty_partition(ctx: Any, source: ForagingSource, table: str, listing: dict[str, list[Any]] | None) -> Any:
    """The partition of a subject without source files: no rows, the declared columns with their
    declared types, and the undeclared columns of the table's first source file, in that file's
    order (declared columns it lacks after them), so that it reads like the others.

    Another subject's file never makes it fail: only the undeclared columns' names and types
    come from that file's footer, and when the footer cannot be read (or the run has no listing,
    or the table no file) the partition has the declared columns alone.
    """
    declared = ctx.spec.arrow_schema()
    first = min((files[0].path for files in (listing or {}).values() if files), default=None)
    if first is None or not ctx.run_id:
        return declared.empty_table()
    key = (ctx.run_id, source.base, table)
    with _listings_lock:
        schema = _schemas.get(key)
    if schema is None:
        schema = _empty_schema(ctx, source, first, declared)
        _keep(_schemas, key, schema)
    return schema.empty_table()


def _empty_schema(ctx: Any, source: ForagingSource, path: str, declared: Any) -> Any:
    """The declared schema with the undeclared columns of the file ``path`` (see
    :func:`_empty_partition`); the declared schema alone when that footer cannot be read."""
    import pyarrow as pa

    from bdc.errors import BdcError
    from bdc_tables_foraging.source import PartitionReader

    try:
        found = ctx.call(lambda: PartitionReader(source.filesystem, [path], "").schema)
    except (OSError, pa.ArrowException, BdcError) as exc:
        ctx.log.warning("%s: empty partitions have the declared columns alone: the footer of %s "
                        "cannot be read: %s", ctx.spec.name, path, exc)
        return declared
    types = {field.name: field.type for field in declared}
    fields = [pa.field(f.name, types.get(f.name, f.type)) for f in found]
    fields += [f for f in declared if f.name not in found.names]
    return pa.schema(fields)


def trial_partitions(ctx: Any) -> dict[str, str]:
    """Partitions of the trials table: subject id → fingerprint of ``trial_table/subject_id=<id>/``."""
    return _partitions(ctx, TRIAL_TABLE)


def event_partitions(ctx: Any) -> dict[str, str]:
    """Partitions of the events table: subject id → fingerprint of ``event_table/subject_id=<id>/``."""
    return _partitions(ctx, EVENT_TABLE)


def build_trial_partition(ctx: Any, subject_id: str) -> Any:
    """One subject's trials (every column, files unioned by name)."""
    return _build_partition(ctx, TRIAL_TABLE, subject_id)


def build_event_partition(ctx: Any, subject_id: str) -> Any:
    """One subject's events (every column, files unioned by name), streamed."""
    return _build_partition(ctx, EVENT_TABLE, subject_id)


# -- specs --------------------------------------------------------------------------------------


def table_specs() -> list[Any]:
    """The three :class:`bdc.TableSpec` of the dynamic-foraging mirrors."""
    from bdc.spec import TableSpec

    return [
        TableSpec(
            name=SESSIONS,
            aliases=("df_sessions",),
            kind="platform",
            description=("Dynamic-foraging sessions, one row per session: the upstream session table "
                         "with all of its columns (metrics, curriculum, rig, water, NWB source)."),
            columns=SESSION_COLUMNS,
            extra_columns=True,
            build=build_sessions,
        ),
        _mirror_spec(TRIALS, "df_trials",
                     "Dynamic-foraging trials, one row per trial, partitioned by subject_id; all "
                     "upstream columns. session_id joins to the sessions' _session_id.",
                     TRIAL_COLUMNS, trial_partitions, build_trial_partition),
        _mirror_spec(EVENTS, "df_events",
                     "Dynamic-foraging behavioural events (go cues, licks, rewards, laser), one row "
                     "per event, partitioned by subject_id. session_id joins to _session_id.",
                     EVENT_COLUMNS, event_partitions, build_event_partition),
    ]


def _mirror_spec(name: str, alias: str, description: str, columns: Any, partitions: Any, build: Any) -> Any:
    """A partitioned mirror of one upstream hive table (trials or events), incremental by subject."""
    from bdc import TableSpec

    return TableSpec(
        name=name, aliases=(alias,), kind="platform", description=description, columns=columns,
        extra_columns=True, partition_key=PARTITION_KEY, depends_on=(SESSIONS,), partitions=partitions,
        build_partition=build, incremental=True, file_name=PARTITION_FILE,
    )
