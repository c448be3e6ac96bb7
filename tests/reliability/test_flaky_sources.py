"""Flaky sources (issue #5, scenario 2): a sync through failing sources and a failing S3 cache
completes, equals a fault-free run, and its report counts the retries.

Faults, all seeded, each drawn from the request it answers (not from one sequence), so the
parallel sync's thread interleaving does not change them:

* DocDB: the emulator answers 10% 5xx (500/502/503/504), 5% 429 (``Retry-After``) and drops 2%
  of connections without a byte (``FaultConfig(keyed=True)``): the same faults on every run.
* S3: the cache (moto on loopback) sits behind :class:`faultproxy.FaultProxy`, which answers
  ``503 SlowDown`` or ``500 InternalError`` (S3's XML errors) instead of forwarding 10% + 5% of
  the requests; besides, the first attempt of every data file upload meets a ``SlowDown``, so
  every table is certain to retry. (Staged object names carry the run id, so which S3 requests
  fail varies a little from run to run; the proxy faults one request at most twice in a row,
  below botocore's 4 attempts.) A foraging *source* in S3 goes through the same proxy (read by
  pyarrow).

What is counted where (see :mod:`bdc.runner.retry`): DocDB faults are retried by the run's
``RetryPolicy`` (``ctx.call``) and counted in the table that made the request; S3 faults are
retried by botocore itself, and each botocore retry made inside a ``ctx.call`` is reported to it
(so the table counts it too); botocore retries made outside any ``ctx.call`` (the runner reading a
table's state, the sync lock, the run report) or in s3transfer's own threads (the server-side
copies that promote staged files) are only in :func:`bdc.runner.retry.library_retries`. pyarrow's S3
filesystem (the foraging source) retries in C++ without telling anyone: those are visible only
in the proxy's numbers, unless pyarrow gives up and ``ctx.call`` retries (then counted).

botocore waits 0.5 s on average before retrying a throttled request; the tests shrink its
backoff (not its logic) to keep the suite fast.
"""

from __future__ import annotations

import contextvars
import json
import math
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import attrs
import pytest

from bdc.runner.retry import LibraryRetry, RetryPolicy, is_transient, library_retries, retry_after
from faultproxy import FaultProxy

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop is deprecated")

#: Records of the generated DocDB (a few hundred keep the sync to seconds).
RECORDS = 400
#: Records per DocDB find request (small pages: more requests, more faults).
PAGE_SIZE = 40
#: The DocDB faults of scenario 2.
DOCDB_RATES = dict(error_5xx_rate=0.10, error_429_rate=0.05, drop_rate=0.02)
#: The S3 faults: share of requests answered 503 SlowDown / 500 InternalError.
S3_SLOWDOWN, S3_INTERNAL = 0.10, 0.05
SEED = 5


# -- fixtures and helpers ------------------------------------------------------------------------


def _fast_botocore_backoff(mp: pytest.MonkeyPatch) -> None:
    """botocore's standard backoff at 1/100 of its scale (1 s for throttling, 50 ms otherwise)."""
    from botocore.retries.standard import ExponentialBackoff

    mp.setattr(ExponentialBackoff, "_DEFAULT_BACKOFF_CONFIG",
               {"throttling_base_scale": 0.01, "non_throttling_base_scale": 0.0005})


def _aws_env(mp: pytest.MonkeyPatch, tmp: Path, endpoint: str) -> None:
    """Dummy credentials, ``endpoint`` for every S3 client, nothing from the user's AWS files."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3",
                 "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        mp.delenv(name, raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    mp.setenv("AWS_ENDPOINT_URL", endpoint)
    mp.setenv("AWS_CONFIG_FILE", str(tmp / "no-aws-config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "no-aws-credentials"))
    mp.setenv("NO_PROXY", "127.0.0.1,localhost")
    mp.setenv("BDC_LOCAL_CACHE_DIR", str(tmp / f"bdc-local-objects-{uuid.uuid4().hex[:6]}"))


def _only_plugin(mp: pytest.MonkeyPatch, name: str, tmp: Path) -> None:
    """Only the installed ``name`` plugin, a fresh plugin manager and API cache."""
    from bdc import api, plugins

    mp.setenv("BDC_LOAD_PLUGINS", name)
    for var in ("BDC_DISABLE_PLUGINS", "BDC_STRICT_PLUGINS", "BIODATA_CACHE_BACKEND", "BDC_FORAGING_BASE",
                "BDC_NEUROGLASS_URL", "BDC_NEUROGLANCER_URL", "BDC_UPGRADE_STATUS_TABLE"):
        mp.delenv(var, raising=False)
    mp.setenv("BDC_CACHE", (tmp / "default-cache").as_uri())
    plugins.reset()
    api._caches.clear()


def _data_upload(method: str, path: str, headers: Any) -> bool:
    """A data file arriving in a bucket: an upload, or a server-side copy from another bucket (a
    mirror's S3 source copied into an S3 cache), not a copy inside one bucket (promotion). Its
    first attempt meets a SlowDown."""
    if method != "PUT" or not path.endswith((".pqt", ".parquet")):
        return False
    source = next((v for k, v in headers.items() if k.lower() == "x-amz-copy-source"), None)
    if source is None:
        return True
    return unquote(source).lstrip("/").split("/", 1)[0] != path.lstrip("/").split("/", 1)[0]


def _files_written(report: Any, name: str) -> int:
    """Data files a table's build uploaded: one per partition built, or its one file."""
    table = report.table(name)
    return table.partitions_built if table.partitions else 1


def _bucket(endpoint: str) -> str:
    import boto3

    name = f"bdc-flaky-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def _data_objects(endpoint: str, bucket: str, prefix: str) -> dict[str, list[str]]:
    """Published data files by folder → their MD5s (ETags): ``*.pqt``/``*.parquet`` outside ``_*`` folders."""
    import boto3

    out: dict[str, list[str]] = {}
    pages = boto3.client("s3", endpoint_url=endpoint).get_paginator("list_objects_v2")
    for page in pages.paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for item in page.get("Contents", []):
            rel = item["Key"][len(prefix) + 1:]
            parts = rel.split("/")
            if not rel.endswith((".pqt", ".parquet")) or any(p.startswith("_") for p in parts):
                continue
            folder = "/".join(parts[:-1]) if len(parts) > 2 else rel  # a whole table is its own file
            out.setdefault(folder, []).append(item["ETag"].strip('"'))
    return {k: sorted(v) for k, v in sorted(out.items())}


def _plain(value: Any) -> Any:
    """A cell as a JSON-able, comparable value (arrays → lists, NaN/NaT/NA → None)."""
    import numpy as np
    import pandas as pd

    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _rows(frame: Any) -> tuple[list[str], list[str]]:
    """(columns, every row as JSON text, sorted): two frames with the same rows in any order compare equal."""
    rows = sorted(json.dumps([_plain(v) for v in row], default=str, sort_keys=True)
                  for row in frame.itertuples(index=False, name=None))
    return list(frame.columns), rows


_current_table: contextvars.ContextVar[str | None] = contextvars.ContextVar("flaky_current_table", default=None)


def _table_of(args: tuple[Any, ...]) -> str | None:
    """The table a ``ctx.call`` works for: from its BuildContext or TableSpec argument (a side table
    counts for the table producing it, as the run report counts it)."""
    from bdc.build import BuildContext
    from bdc.spec import TableSpec

    for arg in args[:1]:
        spec = arg.spec if isinstance(arg, BuildContext) else arg if isinstance(arg, TableSpec) else None
        if spec is not None:
            return spec.produced_by or spec.name
    return None


@attrs.frozen
class CountingPolicy(RetryPolicy):
    """A retry policy that also counts, per table, every retry its ``on_retry`` is told of: its own
    and those libraries report (botocore) while it runs. What each table's report should say."""

    heard: Counter[str] = attrs.field(factory=Counter)
    kinds: Counter[str] = attrs.field(factory=Counter)
    lock: Any = attrs.field(factory=threading.Lock)

    def call(self, fn: Any, *args: Any, on_retry: Any = None, **kwargs: Any) -> Any:
        if on_retry is None:  # the runner's own housekeeping: counted by nobody
            return super().call(fn, *args, **kwargs)
        table = _current_table.get() or _table_of(args) or "?"
        token = _current_table.set(table)

        def counted(attempt: int, exc: BaseException) -> None:
            with self.lock:
                self.heard[table] += 1
                self.kinds["botocore" if isinstance(exc, LibraryRetry) else type(exc).__name__] += 1
            on_retry(attempt, exc)

        try:
            return super().call(fn, *args, on_retry=counted, **kwargs)
        finally:
            _current_table.reset(token)


@pytest.fixture(scope="module")
def s3_upstream(s3_server: str) -> str:
    """moto's S3 server (the session's): where the fault proxy forwards to."""
    return s3_server


# -- DocDB tables: flaky DocDB and a flaky S3 cache ---------------------------------------------------


@dataclass
class FlakyRun:
    """One sync through faults and one without, and what each side saw."""

    report: Any
    clean_report: Any
    docdb: dict[str, Any]
    proxy: dict[str, Any]
    botocore_faults: int
    library: dict[str, int]
    policy: CountingPolicy
    tables: list[str]
    producers: list[str]
    objects: dict[str, list[str]]
    clean_objects: dict[str, list[str]]
    rows: dict[str, Any] = field(default_factory=dict)
    clean_rows: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def docdb_flaky_run(s3_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlakyRun]:
    """The DocDB tables synced into S3 through DocDB and S3 faults, then again without faults."""
    import bdc
    from bdc import api, plugins
    from bdc.cache import Cache
    from bdc.catalog import get_catalog

    from bdc_tables_docdb.demo.generator import generate_records
    from bdc_tables_docdb.emulator import DocDBEmulator, FaultConfig

    tmp = tmp_path_factory.mktemp("flaky-docdb")
    records = generate_records(RECORDS, seed=6)
    with pytest.MonkeyPatch.context() as mp, FaultProxy(s3_upstream) as proxy, DocDBEmulator(records) as emulator:
        _fast_botocore_backoff(mp)
        _aws_env(mp, tmp, proxy.url)
        faulty_bucket, clean_bucket = _bucket(s3_upstream), _bucket(s3_upstream)
        _only_plugin(mp, "docdb", tmp)
        (tmp / "no-open-data").mkdir()
        mp.setenv("BDC_OPEN_DATA_URL", (tmp / "no-open-data").as_uri())
        mp.setenv("BDC_DOCDB_URL", emulator.url)
        mp.setenv("BDC_DOCDB_PAGE_SIZE", str(PAGE_SIZE))
        tables = [s.name for s in get_catalog() if s.plugin == "bdc-tables-docdb"]
        producers = [s.name for s in get_catalog() if s.plugin == "bdc-tables-docdb" and not s.produced_by]

        emulator.set_faults(FaultConfig(**DOCDB_RATES, seed=SEED, keyed=True))
        proxy.configure(slowdown_rate=S3_SLOWDOWN, error_rate=S3_INTERNAL, seed=SEED, first_attempt=_data_upload)
        policy = CountingPolicy(base=0.01, cap=0.05)  # the default 5 attempts, short waits
        before = library_retries()
        report = bdc.sync(f"s3://{faulty_bucket}/cache", retry=policy, progress="none")
        after = library_retries()
        docdb, proxy_stats, botocore_faults = emulator.stats, proxy.stats, proxy.faults_of("botocore")

        emulator.set_faults(None)
        proxy.configure()
        clean_report = bdc.sync(f"s3://{clean_bucket}/cache", progress="none")
        run = FlakyRun(report, clean_report, docdb, proxy_stats, botocore_faults,
                       {k: after[k] - before[k] for k in after}, policy, tables, producers,
                       _data_objects(s3_upstream, faulty_bucket, "cache"),
                       _data_objects(s3_upstream, clean_bucket, "cache"))
        mp.setenv("AWS_ENDPOINT_URL", s3_upstream)  # read back without the proxy
        faulty, clean = Cache(f"s3://{faulty_bucket}/cache"), Cache(f"s3://{clean_bucket}/cache")
        for name in tables:
            run.rows[name] = _rows(faulty.get(name)) if report.table(name).status == "ok" else None
            run.clean_rows[name] = _rows(clean.get(name))
        plugins.reset()
        api._caches.clear()
    print(f"\nflaky DocDB run: DocDB {docdb['requests']} requests, faults 5xx={docdb['faults_5xx']} "
          f"429={docdb['faults_429']} drop={docdb['faults_drop']}; S3 {proxy_stats['requests']} requests, "
          f"faults SlowDown={proxy_stats['slowdown']} (of which first attempts of uploads "
          f"{proxy_stats['first_attempt']}) InternalError={proxy_stats['internal']}; "
          f"botocore retries {run.library}; report retries {report.retries} "
          f"{ {t.name: t.retries for t in report.tables if t.retries} }; heard {dict(policy.heard)} "
          f"by kind {dict(policy.kinds)}; {report.seconds:.1f} s")
    yield run


def test_docdb_sync_through_flaky_docdb_and_s3_completes(docdb_flaky_run: FlakyRun) -> None:
    run = docdb_flaky_run
    assert run.report.ok, run.report.summary()
    assert {t.name for t in run.report.tables} == set(run.tables)
    # every kind of fault was injected, on both sides
    assert run.docdb["faults_5xx"] > 0 and run.docdb["faults_429"] > 0 and run.docdb["faults_drop"] > 0, run.docdb
    assert run.proxy["slowdown"] > 0 and run.proxy["internal"] > 0, run.proxy
    assert run.proxy["upstream_errors"] == 0
    assert run.clean_report.ok and run.clean_report.retries == 0


def test_docdb_tables_equal_a_fault_free_run(docdb_flaky_run: FlakyRun) -> None:
    run = docdb_flaky_run
    # byte for byte: the same data files (by MD5), folder by folder
    assert run.objects == run.clean_objects
    assert len(run.objects) > len(run.tables)  # partitioned tables have one folder per partition
    # and row for row through bdc.get
    for name in run.tables:
        assert run.rows[name] == run.clean_rows[name], name
        assert run.report.table(name).rows == run.clean_report.table(name).rows, name
    assert len(run.rows["asset_basics"][1]) == RECORDS
    from reliability_figures import write_figures

    lost = sum(abs(run.clean_report.table(n).rows - run.report.table(n).rows) for n in run.tables)
    write_figures("flaky_sources", {
        "tables": len(run.tables), "docdb_requests": run.docdb["requests"],
        "docdb_faults": {k: run.docdb[f"faults_{k}"] for k in ("5xx", "429", "drop")},
        "s3_requests": run.proxy["requests"],
        "s3_faults": {"SlowDown": run.proxy["slowdown"], "InternalError": run.proxy["internal"]},
        "retries_reported": run.report.retries, "rows": sum(run.report.table(n).rows for n in run.tables),
        "rows_lost": lost, "equal_to_fault_free_run": run.objects == run.clean_objects})


def test_docdb_run_report_counts_the_retries(docdb_flaky_run: FlakyRun) -> None:
    run = docdb_flaky_run
    docdb_faults = run.docdb["faults_5xx"] + run.docdb["faults_429"] + run.docdb["faults_drop"]
    # every S3 fault was retried by botocore (and seen by bdc's hook): none reached the run
    assert run.library["total"] == run.botocore_faults == run.proxy["faults"] > 0
    # every retry made inside a build, write or publish reached the table's ctx.call: each DocDB
    # fault once (the policy's retry), each botocore retry made there once
    heard = run.policy.heard
    assert sum(heard.values()) == docdb_faults + run.library["attributed"]
    assert run.policy.kinds["botocore"] == run.library["attributed"] > 0
    assert set(heard) <= set(run.tables)
    # the report: DocDB retries all counted (they happen in the builds), S3 retries too (> 0)
    assert run.report.retries > docdb_faults > 0
    assert run.report.retries == sum(t.retries for t in run.report.tables)
    for t in run.report.tables:
        assert 0 <= t.retries <= heard[t.name], (t.name, t.retries, heard[t.name])
    # per table: each data file upload met a SlowDown, and that retry is in its table's count
    assert run.proxy["first_attempt"] >= len(run.producers)
    for name in run.producers:
        assert run.report.table(name).retries >= _files_written(run.report, name) > 0, name


def test_docdb_run_report_counts_every_retry_in_the_table_that_made_it(docdb_flaky_run: FlakyRun) -> None:
    run = docdb_flaky_run
    assert {t.name: t.retries for t in run.report.tables} == {n: run.policy.heard[n] for n in run.tables}


# -- foraging tables: a flaky S3 source and a flaky S3 cache -------------------------------------------


def test_foraging_sync_through_flaky_s3_source_and_cache_equals_clean_run(
        s3_upstream: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aind_dynamic_foraging_database as adfd
    import boto3

    import bdc
    from bdc.cache import Cache
    from bdc.catalog import get_catalog
    from bdc_tables_foraging.demo import generate_foraging_db
    from bdc_tables_foraging.filesystem import clear_filesystems

    _fast_botocore_backoff(monkeypatch)
    _aws_env(monkeypatch, tmp_path, s3_upstream)
    _only_plugin(monkeypatch, "foraging", tmp_path)
    adfd.clear_caches()
    clear_filesystems()
    db = generate_foraging_db(tmp_path / "db", subjects=6, sessions_per_subject=3, trials_per_session=40,
                              leading_zero_subjects=2, seed=7)
    source, faulty_bucket, clean_bucket = _bucket(s3_upstream), _bucket(s3_upstream), _bucket(s3_upstream)
    s3 = boto3.client("s3", endpoint_url=s3_upstream)
    for path in sorted(Path(db.root).rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), source, f"foraging/{path.relative_to(db.root).as_posix()}")
    monkeypatch.setenv("BDC_FORAGING_BASE", f"s3://{source}/foraging")
    tables = [s.name for s in get_catalog() if s.plugin == "bdc-tables-foraging"]
    try:
        with FaultProxy(s3_upstream, slowdown_rate=S3_SLOWDOWN, error_rate=S3_INTERNAL, seed=SEED,
                        first_attempt=_data_upload) as proxy:
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
            clear_filesystems()
            policy = CountingPolicy(base=0.01, cap=0.05)  # the default 5 attempts, short waits
            before = library_retries()
            report = bdc.sync(f"s3://{faulty_bucket}/cache", retry=policy, progress="none")
            after = library_retries()
            stats = proxy.stats
            faults = {client: proxy.faults_of(client) for client in ("botocore", "aws-sdk-cpp")}
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_upstream)
        clear_filesystems()
        clean_report = bdc.sync(f"s3://{clean_bucket}/cache", progress="none")
        assert report.ok, report.summary()
        assert clean_report.ok and clean_report.retries == 0
        # the source (pyarrow) and the cache (botocore) both answered errors
        assert faults["aws-sdk-cpp"] > 0 and faults["botocore"] > 0, stats
        assert stats["slowdown"] > 0 and stats["internal"] > 0
        library = {k: after[k] - before[k] for k in after}
        assert library["total"] == faults["botocore"]  # every cache fault: one botocore retry, counted
        assert sum(policy.heard.values()) >= library["attributed"] > 0
        for t in report.tables:  # every table's data uploads met a SlowDown: counted in its report
            assert 0 < _files_written(report, t.name) <= t.retries <= policy.heard[t.name], t.name
        # equal to the clean run: the same data files, the same rows
        assert _data_objects(s3_upstream, faulty_bucket, "cache") == _data_objects(s3_upstream, clean_bucket, "cache")
        faulty, clean = Cache(f"s3://{faulty_bucket}/cache"), Cache(f"s3://{clean_bucket}/cache")
        for name in tables:
            assert _rows(faulty.get(name)) == _rows(clean.get(name)), name
        assert report.table("platform_dynamic_foraging_trials").rows == db.n_trials
        print(f"\nflaky foraging run: S3 {stats['requests']} requests, faults {faults} (SlowDown={stats['slowdown']} "
              f"InternalError={stats['internal']}); botocore retries {library}; report retries {report.retries} "
              f"{ {t.name: t.retries for t in report.tables} }; pyarrow's own retries (not counted): "
              f"{faults['aws-sdk-cpp']}")
    finally:
        adfd.clear_caches()
        clear_filesystems()


# -- the pieces: botocore retries counted, S3 and HTTP errors classified, Retry-After ------------------


@pytest.fixture
def s3_through_proxy(s3_upstream: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """(an S3Backend in a fresh bucket, reached through a fault proxy with faults off, the proxy)."""
    from bdc.backends.s3 import S3Backend

    _fast_botocore_backoff(monkeypatch)
    with FaultProxy(s3_upstream) as proxy:
        _aws_env(monkeypatch, tmp_path, proxy.url)
        bucket = _bucket(s3_upstream)
        yield S3Backend(f"s3://{bucket}/cache"), proxy


def test_botocore_retries_are_told_to_the_enclosing_retry_call(s3_through_proxy: tuple[Any, Any]) -> None:
    backend, proxy = s3_through_proxy
    proxy.configure(slowdown_rate=1.0, max_consecutive=2)  # each request: 2 SlowDowns, then through
    heard: list[tuple[int, BaseException]] = []
    before = library_retries()
    RetryPolicy(attempts=3, base=0.001, cap=0.001).call(backend.write_bytes, "a.json", b"{}",
                                                        on_retry=lambda n, exc: heard.append((n, exc)))
    assert [n for n, _ in heard] == [2, 3]
    assert all(isinstance(exc, LibraryRetry) and is_transient(exc) for _, exc in heard)
    assert "PutObject" in str(heard[0][1]) and "SlowDown 503" in str(heard[0][1])
    # outside any retry call: botocore still retries, and the process-wide count says so
    assert backend.read_bytes("a.json") == b"{}"
    after = library_retries()
    assert after["total"] - before["total"] == 4 and after["unattributed"] - before["unattributed"] == 2
    # an upload (write_table's path): a small object is sent from the calling thread, so counted
    heard.clear()
    with_upload = RetryPolicy(attempts=3, base=0.001, cap=0.001)

    def upload() -> None:
        with backend.open_write("t.pqt") as fh:
            fh.write(b"x" * 1000)

    with_upload.call(upload, on_retry=lambda n, exc: heard.append((n, exc)))
    assert [n for n, _ in heard] == [2, 3]


def test_s3_errors_botocore_gives_up_on_are_transient_for_the_policy(
        s3_through_proxy: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from bdc.backends.s3 import S3Backend
    from bdc.errors import BackendError

    backend, proxy = s3_through_proxy
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore does not retry: bdc's policy must
    backend = S3Backend(backend.url)
    proxy.configure(slowdown_rate=0.5, error_rate=0.5, seed=1, max_consecutive=3)
    with pytest.raises(BackendError) as info:
        backend.write_bytes("b.json", b"[]")
    assert is_transient(info.value)
    seen: list[BaseException] = []
    RetryPolicy(attempts=5, base=0.001, cap=0.001).call(backend.write_bytes, "b.json", b"[]",
                                                        on_retry=lambda n, exc: seen.append(exc))
    assert 1 <= len(seen) <= 3 and all(isinstance(e, BackendError) and is_transient(e) for e in seen)
    assert {str(e.__cause__).split("(")[1].split(")")[0] for e in seen} <= {"SlowDown", "InternalError"}
    proxy.configure()
    assert backend.read_bytes("b.json") == b"[]"


def test_docdb_429_retry_after_is_honoured_up_to_the_cap() -> None:
    import requests

    from bdc_tables_docdb.client import make_client
    from bdc_tables_docdb.emulator import DocDBEmulator, FaultConfig

    with DocDBEmulator([{"_id": "a"}], faults=FaultConfig(error_429_rate=1.0, retry_after_s=2)) as emulator:
        with pytest.raises(requests.HTTPError) as info:
            make_client(emulator.url)._count_records()
    exc = info.value
    assert is_transient(exc) and retry_after(exc) == 2.0
    assert RetryPolicy(base=0.001, cap=10).wait_for(1, exc) == 2.0  # the server's wait, not 1 ms
    assert RetryPolicy(base=0.001, cap=0.05).wait_for(1, exc) == 0.05  # never beyond the cap
    assert RetryPolicy(base=0.001, cap=10).wait_for(1, ConnectionResetError()) <= 0.001


def _client_error(code: str, status: int, op: str = "PutObject") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, op)


def _wrapped(exc: Exception) -> Exception:
    from bdc.errors import BackendError

    try:
        try:
            raise exc
        except Exception as inner:
            raise BackendError(f"s3://b: writing 'k' failed: {inner}") from inner
    except BackendError as outer:
        return outer


def _raised_while_handling(exc: Exception) -> Exception:
    try:
        try:
            raise exc
        except Exception:
            raise ValueError("bad record")  # noqa: B904 - the point: implicit context only
    except ValueError as outer:
        return outer


@pytest.mark.parametrize(("error", "transient"), [
    (_wrapped(_client_error("SlowDown", 503)), True),
    (_wrapped(_client_error("InternalError", 500)), True),
    (_wrapped(_client_error("503", 503, "HeadObject")), True),  # a HEAD error has no body: code = status
    (_wrapped(_client_error("AccessDenied", 403)), False),
    (_wrapped(_client_error("NoSuchBucket", 404)), False),
    (_raised_while_handling(ConnectionResetError(104, "reset")), False),
    (_raised_while_handling(_client_error("SlowDown", 503)), False),
    (LibraryRetry("botocore", "S3 PutObject after SlowDown 503", 2), True),
])
def test_transient_or_permanent_through_wrappers(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_keyed_docdb_faults_do_not_depend_on_the_order_of_requests() -> None:
    from bdc_tables_docdb.emulator import FaultConfig
    from bdc_tables_docdb.emulator.faults import FaultInjector

    config = FaultConfig(**DOCDB_RATES, seed=SEED, keyed=True)
    sent = [f"GET /v2/metadata_index/data_assets/find?skip={i}&limit=40 {i % 7}" for i in range(300)] * 2

    def decisions(order: list[str]) -> dict[tuple[str, int], Any]:
        injector, seen, out = FaultInjector(config), Counter(), {}
        for request in order:
            out[(request, seen[request])] = injector.decide(request)
            seen[request] += 1
        return out

    forward, backward = decisions(sent), decisions(sent[::-1])
    assert forward == backward  # the same request, the n-th time: the same answer, in any order
    kinds = Counter(d.kind for d in forward.values())
    assert kinds["error_5xx"] and kinds["error_429"] and kinds["drop"] and kinds[None] > 400
    # a repeated request (a retry) draws anew
    assert any(forward[(r, 0)] != forward[(r, 1)] for r in set(sent))
