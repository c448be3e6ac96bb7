"""The copy path of the trial and event mirrors: a subject whose source files already are what the
table publishes (declared columns with their declared types, ``subject_id`` as text equal to the
folder's value in every row group's statistics) is published as a byte copy of those files, one
published file per source file; any other subject is rewritten as one conformed file. On local
disk and on S3 (moto), as the source and as the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bdc_tables_foraging.demo import modify_foraging_db
from bdc_tables_foraging.tables import EVENTS, SESSIONS, TRIALS

TABLES = (SESSIONS, TRIALS, EVENTS)
FOLDERS = {TRIALS: "trial_table", EVENTS: "event_table"}


def sync(cache: Any, **options: Any) -> Any:
    import bdc

    report = bdc.sync(cache, only=list(TABLES), progress="none", **options)
    assert report.ok, report.summary()
    return report


def source_files(root: str | Path, name: str, sid: str) -> list[Path]:
    """A subject's source files of table ``name``, in the order a partition build lists them."""
    return sorted((Path(root) / FOLDERS[name] / f"subject_id={sid}").glob("*.parquet"))


def published(cache: Any, name: str, sid: str) -> list[bytes]:
    """The bytes of a partition's published files in their order (``data.parquet``,
    ``data-0001.parquet``, …), after checking that the partition holds exactly those files."""
    spec = cache.spec(name)
    stored = sorted(info.key for info in cache.backend.list(cache.layout.partition_prefix(spec, sid)))
    keys = cache.layout.partition_keys(spec, sid, len(stored))
    assert stored == sorted(keys), stored
    listed = [f"{cache.layout.version_folder}/{f['path']}" for f in cache.registry_entry(name)["files"]
              if f["value"] == sid]
    assert sorted(listed) == sorted(keys)  # the registry lists exactly those files
    return [cache.backend.read_bytes(k) for k in keys]


def assert_copied(cache: Any, root: str | Path, name: str, sid: str) -> None:
    """The partition is the subject's source files, byte for byte, in order."""
    assert published(cache, name, sid) == [p.read_bytes() for p in source_files(root, name, sid)]


def assert_rewritten(cache: Any, name: str, sid: str, rows: int) -> pa.Table:
    """The partition is one conformed file: ``subject_id`` text equal to ``sid`` in every row."""
    (data,) = published(cache, name, sid)
    table = pq.read_table(pa.BufferReader(data))
    assert table.num_rows == rows
    assert table.schema.field("subject_id").type == pa.string()
    assert table.column("subject_id").unique().to_pylist() == [sid]
    declared = cache.spec(name).arrow_schema()
    assert all(table.schema.field(f.name).type == f.type for f in declared)
    return table


def upstream_reads(con: Any, sessions: str, trials: str, events: str) -> list[pd.DataFrame]:
    """Every session's trials and events, through the upstream helpers (``base=`` locations)."""
    import aind_dynamic_foraging_database as adfd

    adfd.clear_caches()
    sel = adfd.select_sessions(columns=["nwb_suffix", "task"], base=sessions, con=con)
    out = [adfd.fetch_trials(sel, columns="*", base=trials, con=con),
           adfd.fetch_events(sel, columns="*", base=events, con=con)]
    return [df[sorted(df.columns)].sort_values(sorted(df.columns)).reset_index(drop=True) for df in out]


def assert_upstream_agrees(cache: Any, root: str | Path) -> None:
    """The upstream helpers return the same rows from bdc's tables as from the source."""
    con = duckdb.connect()
    expected = upstream_reads(con, f"{root}/session_table.parquet", f"{root}/trial_table", f"{root}/event_table")
    got = upstream_reads(con, *(cache.location(n).rstrip("/") for n in TABLES))
    for a, b in zip(expected, got):
        pd.testing.assert_frame_equal(a, b)


def rewrite_file(path: Path, change: Any, **write_options: Any) -> None:
    """Replace a source file by ``change(table)`` written with ``write_options``."""
    table = change(pq.read_table(path, partitioning=None))
    path.unlink()
    pq.write_table(table, path, **write_options)


def to_large_strings(table: pa.Table) -> pa.Table:
    """Every text column as ``large_string``: what upstream's writer produces under pandas 3."""
    return table.cast(pa.schema([pa.field(f.name, pa.large_string()) if f.type == pa.string() else f
                                 for f in table.schema]))


def pick(db: Any) -> dict[str, str]:
    """Subjects of the small database by layout: per-session (several files) and coalesced (one)."""
    many = [s for s in db.subject_ids if s != db.drift_subject and len(source_files(db.root, TRIALS, s)) > 1]
    one = [s for s in db.subject_ids if s != db.drift_subject and len(source_files(db.root, TRIALS, s)) == 1]
    assert len(many) >= 2 and len(one) >= 3, (many, one)
    return {"many": many[0], "many2": many[1], "one": one[0], "one2": one[1], "one3": one[2]}


# ------------------------------------------------------------------------------------------
# local disk
# ------------------------------------------------------------------------------------------


def test_conforming_subjects_are_copied_byte_for_byte(source_db, file_cache):
    report = sync(file_cache)
    drift = source_db.drift_subject
    for name in (TRIALS, EVENTS):
        total = sum(len(source_files(source_db.root, name, s)) for s in source_db.subject_ids)
        # every event file conforms; the drift subject's old trial file has int32 auto-water
        # columns (upstream's canonical type is int64), so its trials are rewritten
        rewritten = len(source_files(source_db.root, name, drift)) if name == TRIALS else 0
        assert report.table(name).counters["files_copied"] == total - rewritten
        assert report.table(name).counters["source_files"] == total
        for sid in source_db.subject_ids:
            if name == TRIALS and sid == drift:
                assert_rewritten(file_cache, name, sid, source_db.trials_per_subject[sid])
            else:
                assert_copied(file_cache, source_db.root, name, sid)
    # a partition of several copied files reads as one (unioned by name)
    sid = pick(source_db)["many"]
    trials = file_cache.get("df_trials", subject_id=sid)
    assert len(trials) == source_db.trials_per_subject[sid] and trials.shape[1] == 103
    assert set(trials["subject_id"]) == {sid}
    assert file_cache.sql("SELECT count(*) FROM df_events").iloc[0, 0] == source_db.n_events
    assert_upstream_agrees(file_cache, source_db.root)


def test_nonconforming_subjects_are_rewritten(source_db, file_cache):
    """Files that are not what the table publishes are decoded and written again, as one file."""
    root = Path(source_db.root)
    chosen = pick(source_db)
    large, bare, unkeyed = chosen["many"], chosen["one"], chosen["one2"]
    lz = next(s for s in source_db.leading_zero_subjects if s not in (bare, source_db.drift_subject))
    # text as large_string in one of several files (upstream's writer under pandas 3)
    rewrite_file(source_files(root, TRIALS, large)[1], to_large_strings)
    # no column statistics: nothing shows which subject the file holds
    rewrite_file(source_files(root, EVENTS, bare)[0], lambda t: t, write_statistics=False)
    # subject_id missing from the file (the folder names it)
    rewrite_file(source_files(root, TRIALS, unkeyed)[0], lambda t: t.drop_columns(["subject_id"]))
    # subject_id holding the id without its leading zeros (a reader typed it as a number)
    rewrite_file(source_files(root, EVENTS, lz)[0],
                 lambda t: t.set_column(t.schema.get_field_index("subject_id"), "subject_id",
                                        pa.array([str(int(lz))] * t.num_rows)))

    report = sync(file_cache)
    odd = {(EVENTS, bare), (TRIALS, unkeyed), (EVENTS, lz), (TRIALS, source_db.drift_subject)}
    for name in (TRIALS, EVENTS):
        rows = source_db.trials_per_subject if name == TRIALS else source_db.events_per_subject
        for sid in source_db.subject_ids:
            if (name, sid) in odd:
                assert_rewritten(file_cache, name, sid, rows[sid])
            else:
                assert_copied(file_cache, root, name, sid)
        total = sum(len(source_files(root, name, s)) for s in source_db.subject_ids)
        skipped = sum(len(source_files(root, name, s)) for n, s in odd if n == name)
        assert report.table(name).counters["files_copied"] == total - skipped
    # large_string text is the same text (DuckDB reads both as VARCHAR): copied as it is
    assert_copied(file_cache, root, TRIALS, large)
    got = file_cache.get("df_trials", subject_id=large)
    assert len(got) == source_db.trials_per_subject[large] and set(got["subject_id"]) == {large}
    assert_upstream_agrees(file_cache, root)
    assert {s: len(file_cache.get("df_events", subject_id=s)) for s in (bare, lz)} == \
        {s: source_db.events_per_subject[s] for s in (bare, lz)}


def test_a_changed_file_count_leaves_exactly_the_new_files(source_db, file_cache):
    """Per-session files coalesced into one, one file split by a new session: after the resync
    each partition holds exactly the new files (no stale ``data-000N.parquet``)."""
    root = Path(source_db.root)
    chosen = pick(source_db)
    many, one = chosen["many"], chosen["one"]
    sync(file_cache)
    n_many = len(source_files(root, TRIALS, many))
    assert len(published(file_cache, TRIALS, many)) == n_many > 1

    coalesced = modify_foraging_db(root, change_subjects=[many], add_subjects=0, remove_subjects=0,
                                   coalesce=True, seed=11)
    assert len(source_files(root, TRIALS, many)) == 1
    report = sync(file_cache)
    assert report.table(TRIALS).partitions_built == report.table(EVENTS).partitions_built == 1
    for name in (TRIALS, EVENTS):
        assert len(published(file_cache, name, many)) == 1
        assert_copied(file_cache, root, name, many)
    assert len(file_cache.get("df_trials", subject_id=many)) == coalesced.info.trials_per_subject[many]

    split = modify_foraging_db(root, change_subjects=[one], add_subjects=0, remove_subjects=0, seed=12)
    assert len(source_files(root, TRIALS, one)) == 2
    sync(file_cache)
    for name in (TRIALS, EVENTS):
        assert len(published(file_cache, name, one)) == 2
        assert_copied(file_cache, root, name, one)
    assert len(file_cache.get("df_events", subject_id=one)) == split.info.events_per_subject[one]
    assert len(file_cache.get("df_trials")) == split.info.n_trials
    # on disk too: the partition folders hold nothing else (no stale copies, no staging left)
    folder = Path(file_cache.location(TRIALS)) / f"subject_id={many}"
    assert [p.name for p in folder.iterdir()] == ["data.parquet"]
    version = Path(file_cache.location(TRIALS)).parent
    assert not (version / "_staging").exists()
    assert_upstream_agrees(file_cache, root)


def test_footer_check_reads_the_schema_and_statistics(tmp_path, file_cache):
    """The footer check behind the copy path, on hand-made files."""
    from bdc.copying import conforming
    from bdc.testing import make_spec

    spec = make_spec("copied", [("subject_id", "string"), ("x", "int64")], partition_key="subject_id",
                     extra_columns=True)
    strict = make_spec("copied_strict", [("subject_id", "string"), ("x", "int64")], partition_key="subject_id")

    def write(name: str, table: pa.Table, **options: Any) -> str:
        path = tmp_path / name
        pq.write_table(table, path, **options)
        return str(path)

    ok = write("ok.parquet", pa.table({"x": [1, 2], "subject_id": ["0012", "0012"], "extra": [0.5, None]}))
    nested = write("nested.parquet", pa.table({"s": [{"a": 1, "b": "x"}] * 2, "x": [1, 2],
                                               "subject_id": ["0012"] * 2}))
    groups = write("groups.parquet", pa.table({"x": list(range(10)), "subject_id": ["0012"] * 10}),
                   row_group_size=3)
    large = write("large.parquet", pa.table({"x": [1], "subject_id": pa.array(["0012"], pa.large_string())}))
    assert [m.num_rows for m in conforming(spec, "0012", None, [ok, nested, groups, large])] == [2, 2, 10, 1]
    assert conforming(spec, "0013", None, [ok]) is None  # another subject's rows
    assert conforming(strict, "0012", None, [ok]) is None  # an undeclared column
    for bad in (
        write("int32.parquet", pa.table({"x": pa.array([1], pa.int32()), "subject_id": ["0012"]})),
        write("nostats.parquet", pa.table({"x": [1], "subject_id": ["0012"]}), write_statistics=False),
        write("null.parquet", pa.table({"x": [1, 2], "subject_id": ["0012", None]})),
        write("mixed.parquet", pa.table({"x": [1, 2], "subject_id": ["0012", "0013"]})),
        write("nokey.parquet", pa.table({"x": [1]})),
        write("twice.parquet", pa.Table.from_arrays([pa.array([1]), pa.array(["0012"]), pa.array([2])],
                                                    names=["x", "subject_id", "x"])),
    ):
        assert conforming(spec, "0012", None, [ok, bad]) is None, bad
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    assert conforming(spec, "0012", None, [str(tmp_path / "broken.parquet")]) is None
    # a pyarrow LocalFileSystem names local files too (copied with sendfile)
    import pyarrow.fs as pafs

    assert conforming(spec, "0012", pafs.LocalFileSystem(), [ok]) is not None


# ------------------------------------------------------------------------------------------
# S3 (moto): S3 source into an S3 cache, S3 source into a local cache, local source into S3
# ------------------------------------------------------------------------------------------


def test_s3_source_and_cache_copy_path(s3_source, s3_upload):
    import boto3

    from bdc.cache import Cache

    db, base = s3_source
    root = Path(db.root)
    bucket = base.split("/")[2]
    boto3.client("s3").create_bucket(Bucket="bdc-foraging-copies")
    cache = Cache("s3://bdc-foraging-copies/data-asset-cache")
    chosen = pick(db)
    many, one, large = chosen["many"], chosen["one"], chosen["one3"]
    rewrite_file(source_files(root, EVENTS, large)[0], to_large_strings)
    s3_upload(root, bucket, "foraging")

    report = sync(cache)
    for name in (TRIALS, EVENTS):
        rows = db.trials_per_subject if name == TRIALS else db.events_per_subject
        for sid in db.subject_ids:
            if (name, sid) == (TRIALS, db.drift_subject):
                assert_rewritten(cache, name, sid, rows[sid])
            else:
                assert_copied(cache, root, name, sid)
    assert report.table(EVENTS).counters["files_copied"] == \
        sum(len(source_files(root, EVENTS, s)) for s in db.subject_ids)  # large_string text included
    assert report.table(EVENTS).counters["files_copied_server_side"] == report.table(EVENTS).counters["files_copied"]
    assert len(cache.get("df_trials", subject_id=many)) == db.trials_per_subject[many]

    # file counts change upstream: per-session files coalesced, a single file split
    modify_foraging_db(root, change_subjects=[many], add_subjects=0, remove_subjects=0, coalesce=True, seed=21)
    change = modify_foraging_db(root, change_subjects=[one], add_subjects=0, remove_subjects=0, seed=22)
    s3_upload(root, bucket, "foraging")
    report = sync(Cache(cache.url))
    assert report.table(TRIALS).partitions_built == 2
    for name in (TRIALS, EVENTS):
        assert len(published(cache, name, many)) == 1 and len(published(cache, name, one)) == 2
        assert_copied(cache, root, name, many)
        assert_copied(cache, root, name, one)
    staged = boto3.client("s3").list_objects_v2(Bucket="bdc-foraging-copies", Prefix="data-asset-cache/")
    assert not [o["Key"] for o in staged["Contents"] if "/_staging/" in o["Key"]]
    assert len(cache.get("df_events")) == change.info.n_events


def test_s3_source_into_local_cache_copies_bytes(s3_source, file_cache):
    db, _base = s3_source
    report = sync(file_cache)
    assert report.table(EVENTS).counters["files_copied"] == \
        sum(len(source_files(db.root, EVENTS, s)) for s in db.subject_ids)
    for sid in db.subject_ids:
        assert_copied(file_cache, db.root, EVENTS, sid)


def test_local_source_into_s3_cache_copies_bytes(source_db, s3_url):
    from bdc.cache import Cache

    cache = Cache(s3_url)
    sync(cache)
    for name in (TRIALS, EVENTS):
        for sid in source_db.subject_ids:
            if not (name == TRIALS and sid == source_db.drift_subject):
                assert_copied(cache, source_db.root, name, sid)
    assert len(cache.get("df_trials")) == source_db.n_trials


@pytest.mark.parametrize("name", [TRIALS, EVENTS])
def test_unchanged_copied_partitions_are_not_copied_again(source_db, file_cache, name):
    sync(file_cache)
    sid = pick(source_db)["many"]
    folder = Path(file_cache.location(name)) / f"subject_id={sid}"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    report = sync(file_cache)
    assert report.table(name).partitions_built == 0 and "files_copied" not in report.table(name).counters
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


# ------------------------------------------------------------------------------------------
# the footer check's shortcuts: one verdict per schema, one open per file, one copy per CPU
# ------------------------------------------------------------------------------------------


def _open_fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


def test_verdicts_are_remembered_per_schema_never_across_schemas(tmp_path):
    """A verdict on a file's columns serves the next files of the same parquet schema and
    ``ARROW:schema`` entry only: a duration stored like an int64 (same parquet schema, another
    Arrow type) is judged on its own, and the same file without its Arrow schema conforms."""
    from bdc.copying import conforming
    from bdc.testing import make_spec

    spec = make_spec("remembered", [("subject_id", "string"), ("x", "int64")], partition_key="subject_id",
                     extra_columns=True)

    def write(name: str, x: pa.Array, **options: Any) -> str:
        path = tmp_path / name
        pq.write_table(pa.table({"x": x, "subject_id": ["0012"] * len(x)}), path, **options)
        return str(path)

    ints = [write(f"int{i}.parquet", pa.array([i, i + 1])) for i in range(3)]
    durations = write("duration.parquet", pa.array([1, 2], pa.duration("ns")))
    bare = write("bare.parquet", pa.array([1, 2], pa.duration("ns")), store_schema=False)
    assert pq.read_metadata(durations).schema.equals(pq.read_metadata(ints[0]).schema)
    for _ in range(2):  # the second time, every verdict is a remembered one
        assert [m.num_rows for m in conforming(spec, "0012", None, ints)] == [2, 2, 2]
        assert conforming(spec, "0012", None, [*ints, durations]) is None
        assert conforming(spec, "0012", None, [durations]) is None
        assert conforming(spec, "0012", None, [*ints, bare]) is not None  # read back as int64
        assert conforming(spec, "0013", None, ints) is None  # statistics are per file, never remembered
    # the same name declaring other columns: judged by what it declares now
    renamed = make_spec("remembered", [("subject_id", "string"), ("x", "float64")], partition_key="subject_id",
                        extra_columns=True)
    assert conforming(renamed, "0012", None, [write("float.parquet", pa.array([0.5, 1.5]))]) is not None
    assert conforming(renamed, "0012", None, ints) is None
    assert conforming(spec, "0012", None, ints) is not None
    # a nested column with a leaf of the key's name does not pass for the key column
    nested = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"x": [1], "g": [{"subject_id": "0012"}]}), nested)
    assert conforming(spec, "0012", None, [ints[0], str(nested)]) is None


def test_footers_are_read_through_the_descriptor_the_copy_uses(tmp_path, monkeypatch):
    """A local file is opened once: its footer (however large) is read from the end of the file
    through the descriptor its copy then uses; descriptors are closed after the copy, after a
    failed check and after an unused check, and only so many are kept open at once."""
    import bdc.copying as copying
    from bdc.backends import open_backend
    from bdc.copying import check_files, conforming
    from bdc.testing import make_spec

    spec = make_spec("described", [("subject_id", "string")], partition_key="subject_id", extra_columns=True)
    wide = pa.table({"subject_id": ["0012"] * 3, **{f"column_{i:04d}_{'x' * 40}": [i] * 3 for i in range(1200)}})
    paths = []
    for i in range(4):
        path = tmp_path / f"f{i}.parquet"
        table = wide if i == 1 else pa.table({"subject_id": ["0012"] * (i + 1), "n": list(range(i + 1))})
        pq.write_table(table, path)
        paths.append(str(path))
    assert pq.read_metadata(paths[1]).serialized_size > copying._FOOTER_READ  # read in two steps
    before = _open_fds()
    metas = conforming(spec, "0012", None, paths)
    assert [m.num_rows for m in metas] == [1, 3, 3, 4]
    assert metas[1].equals(pq.read_metadata(paths[1]))
    assert _open_fds() == before

    monkeypatch.setattr(copying, "_KEEP_OPEN", 2)  # the others are opened again to be copied
    for url in ("memory://described", (tmp_path / "cache").as_uri()):
        backend = open_backend(url)
        checked = check_files(spec, "0012", None, paths)
        assert len(checked.open) == 2 and _open_fds() == before + 2
        with checked:
            size = checked.copy(backend, [f"t/{i}.parquet" for i in range(4)])
        assert _open_fds() == before and copying._kept == 0
        assert [backend.read_bytes(f"t/{i}.parquet") for i in range(4)] == [Path(p).read_bytes() for p in paths]
        assert size == sum(Path(p).stat().st_size for p in paths) and checked.rows == 11

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"subject_id": ["0013"]}), bad)
    assert check_files(spec, "0012", None, [*paths, str(bad)]) is None
    assert _open_fds() == before and copying._kept == 0
    first = Path(paths[0]).read_bytes()
    for name, data in [("empty", b""), ("short", b"PAR1"), ("cut", first[:-9]), ("encrypted", first[:-4] + b"PARE"),
                       ("length", b"PAR1" + bytes(20) + (999).to_bytes(4, "little") + b"PAR1")]:
        (tmp_path / name).write_bytes(data)
        assert conforming(spec, "0012", None, [paths[0], str(tmp_path / name)]) is None, name
    assert _open_fds() == before and copying._kept == 0


def test_local_copies_run_one_per_cpu(source_db, file_cache, monkeypatch):
    """Checking and copying local files into a local store runs in one place per CPU
    (``BDC_LOCAL_COPIES`` sets another count); remote sources and stores are not limited."""
    import threading

    import pyarrow.fs as pafs

    import bdc.copying as copying
    from bdc.backends import open_backend

    assert isinstance(copying.local_slot(None, file_cache.backend), threading.BoundedSemaphore)
    assert isinstance(copying.local_slot(pafs.LocalFileSystem(), open_backend("memory://slots")),
                      threading.BoundedSemaphore)
    remote = type("Remote", (), {"scheme": "s3"})()
    assert not isinstance(copying.local_slot(None, remote), threading.BoundedSemaphore)
    assert not isinstance(copying.local_slot(pafs.S3FileSystem(anonymous=True, region="us-east-1"),
                                             file_cache.backend), threading.BoundedSemaphore)

    monkeypatch.setenv("BDC_LOCAL_COPIES", "1")
    check = copying.check_files
    running, most = [0], [0]
    lock = threading.Lock()

    def counted(*args: Any, **kwargs: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return check(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(copying, "check_files", counted)
    report = sync(file_cache, workers=8)
    assert report.table(TRIALS).partitions_built == len(source_db.subject_ids)
    assert most[0] == 1
    assert_copied(file_cache, source_db.root, EVENTS, pick(source_db)["many"])


def test_partition_builds_take_their_files_from_the_runs_listing(source_db, file_cache, monkeypatch):
    """Each table is listed once per sync: a partition build takes the subject's files from the
    listing its fingerprint came from (without a run, it lists the subject's folder)."""
    from bdc.build import BuildContext
    from bdc_tables_foraging import tables
    from bdc_tables_foraging.source import ForagingSource

    partition, listings = ForagingSource.partition, []

    def recorded(self: Any, table: str, subject_id: str, listing: Any = None, **options: Any) -> Any:
        listings.append(listing is not None)
        return partition(self, table, subject_id, listing, **options)

    monkeypatch.setattr(ForagingSource, "partition", recorded)
    sync(file_cache)
    assert listings and all(listings)
    sid = pick(source_db)["many"]
    assert_copied(file_cache, source_db.root, TRIALS, sid)

    listings.clear()
    data = tables.build_trial_partition(BuildContext(file_cache, file_cache.spec(TRIALS)), sid)
    assert listings == [False]
    assert list(data.paths) == [str(p) for p in source_files(source_db.root, TRIALS, sid)]
