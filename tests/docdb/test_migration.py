"""The reference's one-liners (``from bdc import qc``) over the DocDB tables and the core ones
(``custom``, ``get_cache_registry``, ``get_cache_versions``), against a cache filled by a real sync
from the DocDB emulator (the four real records plus a few generated ones), and the migration
table of docs/migration.md: both of its columns run and agree."""

from __future__ import annotations

import copy
import importlib
import os
import re
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

import bdc
from bdc import TableNotBuiltError, api, plugins
from bdc.cache import Cache
from bdc.catalog import get_catalog
from bdc.legacy import CacheRegistry
from bdc_tables_docdb.demo.generator import generate_open_data_objects, generate_records
from bdc_tables_docdb.emulator import DocDBEmulator

MIGRATION_DOC = Path(__file__).resolve().parents[2] / "docs" / "migration.md"
#: From the real records: a subject with QC, a raw asset with a derived child, that child.
SUBJECT = "808054"
FIBER_ASSET = "808054_2026-04-16_19-38-24_processed_2026-04-17_15-47-55"
RAW = "828418_2026-02-13_18-31-13"
DERIVED = "828418_2026-02-13_18-31-13_processed_2026-02-14_12-44-45"
V2_PROCESSED_ID = "1750a84b-f873-4845-bd21-13b6520235fb"  # fiber_example3.json
DOCDB_TABLES = ["asset_basics", "unique_project_names", "unique_subject_ids", "unique_genotypes", "source_data",
                "metadata_core", "quality_control", "qc_tag_status", "platform_qc", "time_to_qc",
                "platform_smartspim", "platform_exaspim", "metadata_upgrade", "platform_fib",
                "behavior_curriculum", "scientist_rl_fib"]
ONE_LINERS = ["unique_project_names", "unique_subject_ids", "unique_genotypes", "asset_basics", "source_data",
              "metadata_core", "qc", "platform_qc", "platform_fib", "platform_smartspim", "assets_smartspim",
              "platform_exaspim", "behavior_curriculum", "time_to_qc", "scientist_rl_fib", "metadata_upgrade",
              "raw_to_derived"]
CORE = ["custom", "get_cache_registry", "get_cache_versions"]
#: DuckDB's ``.df()`` trips a pandas 3.1 deprecation inside DuckDB itself: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop is deprecated")


@pytest.fixture(scope="module")
def synced(_docdb_records_pristine: list[dict[str, Any]],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """One real sync of every DocDB table (the docdb plugin only) into a local cache, which is
    then the default cache (``BDC_CACHE``) for the module."""
    records = copy.deepcopy(_docdb_records_pristine) + generate_records(30, seed=8)
    root = tmp_path_factory.mktemp("migration")
    for key, data in generate_open_data_objects(records, seed=8).items():
        path = root / "open-data" / "aind-open-data" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    url = (root / "cache").as_uri()
    with pytest.MonkeyPatch.context() as mp, DocDBEmulator(records) as emulator:
        # metadata_upgrade's inputs: DocDB v1 and the upgrade job's custom table
        emulator.load([{"_id": "v1-ok", "name": "old-ok"},
                       {"_id": "v1-failed", "name": "old-failed",
                        "data_description": {"data_level": "raw", "project_name": "Legacy"}}], "v1")
        mp.setenv("BDC_LOAD_PLUGINS", "docdb")
        mp.setenv("BDC_STRICT_PLUGINS", "1")
        mp.setenv("BDC_DOCDB_URL", emulator.url)
        mp.setenv("BDC_OPEN_DATA_URL", (root / "open-data").as_uri())
        mp.setenv("BDC_CACHE", url)
        mp.delenv("BIODATA_CACHE_BACKEND", raising=False)
        plugins.reset()
        api._caches.clear()
        cache = Cache(url)
        cache.custom("metadata_upgrade_status_prod", pd.DataFrame({
            "v1_id": ["v1-ok", "v1-failed"], "v2_id": [V2_PROCESSED_ID, None],
            "upgrader_version": ["1.2.0", "1.2.0"], "status": ["success", "failed"],
            "last_modified": ["2025-01-01T00:00:00Z"] * 2, "upgrade_datetime": ["2025-01-02T00:00:00Z"] * 2}))
        report = bdc.sync(cache, progress="none")
        assert report.ok, report.summary()
        assert sorted(t.name for t in report.tables) == sorted(DOCDB_TABLES)
        yield SimpleNamespace(cache=cache, url=url, records=records)
    plugins.reset()
    api._caches.clear()


@pytest.fixture
def default_cache(synced: SimpleNamespace) -> Cache:
    """The synced cache, opened fresh as the default cache."""
    api._caches.clear()
    assert bdc.default_cache().url == synced.url
    return synced.cache


def _path(record: dict[str, Any], *keys: str) -> Any:
    value: Any = record
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _expected_unique(records: list[dict[str, Any]], *keys: str) -> list[str]:
    return sorted({str(v) for r in records if (v := _path(r, *keys)) is not None})


# -- resolution through bdc.__getattr__ ----------------------------------------------------------


def test_every_one_liner_imports_from_bdc(default_cache: Cache) -> None:
    functions = get_catalog().functions
    assert set(ONE_LINERS) <= set(functions)
    for name in ONE_LINERS:
        namespace: dict[str, Any] = {}
        exec(f"from bdc import {name}", namespace)  # noqa: S102 - the statement a user writes
        assert namespace[name] is functions[name].function
        assert functions[name].plugin == "bdc-tables-docdb" and functions[name].description
        assert namespace[name].__doc__
    for name in CORE:
        assert getattr(bdc, name) is getattr(importlib.import_module("bdc.legacy" if name != "custom" else "bdc.api"), name)
    assert set(ONE_LINERS + CORE) <= set(dir(bdc))
    with pytest.raises(ImportError):
        exec("from bdc import no_such_one_liner", {})  # noqa: S102


def test_importing_a_one_liner_stays_light() -> None:
    code = ("import sys\nimport bdc\nfrom bdc import qc, unique_project_names, get_cache_registry\n"
            "heavy = [m for m in ('pandas', 'pyarrow', 'duckdb', 'boto3', 'numpy') if m in sys.modules]\n"
            "print(','.join(heavy) or 'none')\n")
    env = {**os.environ, "BDC_LOAD_PLUGINS": "docdb"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.stdout.strip() == "none", result.stderr


# -- each one-liner --------------------------------------------------------------------------------


def test_unique_lists(default_cache: Cache, synced: SimpleNamespace) -> None:
    from bdc import unique_genotypes, unique_project_names, unique_subject_ids

    records = synced.records
    assert unique_project_names() == _expected_unique(records, "data_description", "project_name")
    assert unique_subject_ids() == _expected_unique(records, "subject", "subject_id")
    assert unique_genotypes() == _expected_unique(records, "subject", "subject_details", "genotype")
    for values in (unique_project_names(), unique_subject_ids(), unique_genotypes()):
        assert values and values == sorted(values) and all(isinstance(v, str) for v in values)
    assert SUBJECT in unique_subject_ids() and "Cognitive flexibility in patch foraging" in unique_project_names()


@pytest.mark.parametrize("name", ["asset_basics", "source_data", "metadata_core", "platform_fib", "platform_smartspim",
                                  "platform_exaspim", "behavior_curriculum", "time_to_qc", "scientist_rl_fib",
                                  "metadata_upgrade"])
def test_whole_tables_read_the_published_table(default_cache: Cache, name: str) -> None:
    function = getattr(bdc, name)
    frame = function()
    assert isinstance(frame, pd.DataFrame)
    pd.testing.assert_frame_equal(frame, default_cache.get(name))
    assert list(frame.columns)[:len(default_cache.spec(name).column_names)] == default_cache.spec(name).column_names


def test_tables_have_the_rows_of_the_records(default_cache: Cache, synced: SimpleNamespace) -> None:
    from bdc import asset_basics, assets_smartspim, metadata_upgrade, platform_exaspim, platform_fib, platform_smartspim

    assert sorted(asset_basics()["_id"]) == sorted(r["_id"] for r in synced.records)
    fib = platform_fib()
    assert {("Fiber 0", "Fiber_0_Green", "calcium", "PL")} <= set(
        fib[fib["asset_name"] == FIBER_ASSET][["fiber", "channel", "intended_measurement", "targeted_structure"]]
        .itertuples(index=False, name=None))
    pd.testing.assert_frame_equal(assets_smartspim(), platform_smartspim())
    assert len(platform_smartspim()) and len(platform_exaspim())
    upgrade = metadata_upgrade().set_index("_id")
    assert upgrade.loc["v1-ok", "name"] == FIBER_ASSET and upgrade.loc["v1-failed", "project_name"] == "Legacy"


def test_qc(default_cache: Cache) -> None:
    from bdc import qc

    frame = qc(SUBJECT)
    assert isinstance(frame, pd.DataFrame) and len(frame)
    pd.testing.assert_frame_equal(frame, default_cache.get("qc", subject_id=SUBJECT))
    assert set(frame["subject_id"]) == {SUBJECT}
    row = frame[frame["name"] == "ContractTestSuite::test_has_errors_on_load"].iloc[0]
    assert (row["modality"], row["stage"], row["status"]) == ("fib", "Raw data", "Fail")
    pd.testing.assert_frame_equal(qc(int(SUBJECT)), frame)  # ids are strings; an int is accepted
    assert qc("no-such-subject").empty and list(qc("no-such-subject").columns) == list(frame.columns)


def test_qc_asset_names_filter_and_warn(default_cache: Cache) -> None:
    from bdc import qc

    everything = qc(SUBJECT)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a present name does not warn
        one = qc(SUBJECT, FIBER_ASSET)
    assert len(one) == (everything["asset_name"] == FIBER_ASSET).sum() > 0
    pd.testing.assert_frame_equal(qc(SUBJECT, asset_names=[FIBER_ASSET]), one)
    with pytest.warns(UserWarning, match=r"\['not-an-asset'\] have no QC rows for subject '808054'") as caught:
        both = qc(SUBJECT, asset_names=[FIBER_ASSET, "not-an-asset"])
    assert [w.filename for w in caught if "no QC rows" in str(w.message)] == [__file__]  # points at the caller
    pd.testing.assert_frame_equal(both, one)


def test_qc_lazy_returns_the_partition_location(default_cache: Cache) -> None:
    from bdc import qc

    location = qc(SUBJECT, lazy=True)
    assert isinstance(location, str)
    assert location == default_cache.location("quality_control", subject_id=SUBJECT)
    assert location.endswith("/qc/subject_id=808054/data.pqt") and Path(location).is_file()
    pd.testing.assert_frame_equal(pd.read_parquet(location), qc(SUBJECT), check_dtype=False)


def test_raw_to_derived(default_cache: Cache) -> None:
    from bdc import raw_to_derived

    assert raw_to_derived(RAW) == [DERIVED]
    assert raw_to_derived(RAW, latest=True, modality="behavior") == [DERIVED]
    assert raw_to_derived(RAW, True, "BEHAV") == [DERIVED]  # positional, as in the reference
    assert raw_to_derived(RAW, modality="fib") == []
    assert raw_to_derived("no-such-asset") == []
    source = default_cache.get("source_data")
    children = source.groupby("source_data")["name"].apply(list)
    parent = max(children.index, key=lambda k: len(children[k]) if k else 0)
    assert sorted(raw_to_derived(parent)) == sorted(set(children[parent]))


def test_platform_qc(default_cache: Cache) -> None:
    from bdc import platform_qc

    fib = platform_qc("fib")
    pd.testing.assert_frame_equal(fib, default_cache.get("platform_qc", platform="fib"))
    mine = fib[fib["asset_name"] == FIBER_ASSET]
    assert ("Channel:red", "Fail") in set(mine[["tag", "status"]].itertuples(index=False, name=None))
    assert not {"Processing", "Raw data"} & set(mine["tag"])
    assert isinstance(platform_qc("slap2"), pd.DataFrame)
    with pytest.raises(ValueError, match="unknown platform 'ephys'; known: spim, fib, vr, dynamic_foraging, slap2"):
        platform_qc("ephys")


def test_force_update_rebuilds_nothing_and_says_how(default_cache: Cache) -> None:
    from bdc import asset_basics, qc, raw_to_derived, unique_subject_ids

    for call, table in [(lambda: asset_basics(force_update=True), "asset_basics"),
                        (lambda: unique_subject_ids(True), "unique_subject_ids"),
                        (lambda: qc(SUBJECT, force_update=True), "quality_control"),
                        (lambda: raw_to_derived(RAW, force_update=True), "source_data")]:
        with pytest.warns(UserWarning, match=rf"bdc-sync --cache \S+ --only {table}") as caught:
            call()
        assert [w.filename for w in caught if "force_update" in str(w.message)] == [__file__]
    with pytest.warns(UserWarning):
        pd.testing.assert_frame_equal(asset_basics(force_update=True), asset_basics())


def test_reads_never_build(synced: SimpleNamespace) -> None:
    from bdc import asset_basics, qc, raw_to_derived, unique_project_names

    empty = f"memory://bdc-migration-{uuid.uuid4().hex}"
    for call, table in [(lambda: unique_project_names(cache=empty), "unique_project_names"),
                        (lambda: asset_basics(cache=empty), "asset_basics"),
                        (lambda: qc(SUBJECT, cache=empty), "quality_control"),
                        (lambda: qc(SUBJECT, lazy=True, cache=empty), "quality_control"),
                        (lambda: raw_to_derived(RAW, cache=empty), "source_data")]:
        with pytest.raises(TableNotBuiltError, match=rf"Build it with: bdc-sync --cache {empty} --only {table}"):
            call()
    assert Cache(empty).registry() == {"tables": []}  # nothing was built on the way


def test_biodata_cache_backend_is_honoured(monkeypatch: pytest.MonkeyPatch, synced: SimpleNamespace) -> None:
    from bdc import unique_project_names
    from bdc.config import LEGACY_S3_URL, default_cache_url

    monkeypatch.delenv("BDC_CACHE")
    monkeypatch.setenv("BIODATA_CACHE_BACKEND", "S3")
    assert default_cache_url() == LEGACY_S3_URL == "s3://allen-data-views/data-asset-cache"
    monkeypatch.setenv("BIODATA_CACHE_BACKEND", "MEMORY")
    api._caches.clear()
    try:
        assert bdc.default_cache().url.startswith("memory://")
        if not bdc.default_cache().registry()["tables"]:  # the process-wide memory cache is empty
            with pytest.raises(TableNotBuiltError, match="bdc-sync"):
                unique_project_names()
    finally:
        api._caches.clear()


def test_core_one_liners(default_cache: Cache) -> None:
    from bdc import custom, get_cache_registry, get_cache_versions

    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert custom("migration_scratch", df) is df
    pd.testing.assert_frame_equal(custom("migration_scratch"), df)
    with pytest.raises(ValueError, match="No custom table 'never_stored'"):
        custom("never_stored")

    registry = get_cache_registry()
    assert isinstance(registry, CacheRegistry)
    assert set(DOCDB_TABLES) <= set(registry.names())
    qc_entry = registry.table("qc")
    assert (qc_entry.name, qc_entry.partitioned, qc_entry.partition_key, qc_entry.type) == (
        "quality_control", True, "subject_id", "asset")
    assert qc_entry.location == default_cache.location("qc") and qc_entry.location.endswith(
        f"/{default_cache.layout.version_folder}/qc/")
    assert [c.name for c in qc_entry.columns] == default_cache.spec("qc").column_names
    assert registry.tables[0].model_dump()["name"] == registry.tables[0].name
    assert registry.model_dump()["tables"][0]["columns"][0]["name"] == registry.tables[0].columns[0].name
    assert qc_entry.build["rows"] > 0
    with pytest.raises(KeyError):
        registry.table("nope")

    versions = get_cache_versions()
    assert versions == [default_cache.layout.version_folder] and all(isinstance(v, str) for v in versions)


# -- the migration table of docs/migration.md ----------------------------------------------------


def migration_rows() -> list[dict[str, str]]:
    """The rows of the one-liner table of docs/migration.md: old, new, returns, provider."""
    text = MIGRATION_DOC.read_text(encoding="utf-8")
    section = text.split("## One-liners", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not line.startswith("| ") or set(cells[0]) <= {"-"} or cells[0].startswith("biodata-cache"):
            continue
        unquote = (lambda c: c[1:-1] if c.startswith("`") and c.endswith("`") else c)
        rows.append({"old": unquote(cells[0]), "new": unquote(cells[1]), "returns": unquote(cells[2]),
                     "provider": cells[3]})
    assert len(rows) >= 20, rows
    return rows


def function_name(call: str) -> str:
    match = re.match(r"([A-Za-z_]\w*)\(", call)
    assert match, f"not a call: {call!r}"
    return match[1]


RETURNS = {
    "DataFrame": lambda v: isinstance(v, pd.DataFrame),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "str": lambda v: isinstance(v, str),
    "CacheRegistry": lambda v: isinstance(v, CacheRegistry),
}


def assert_same(old: Any, new: Any) -> None:
    if isinstance(new, pd.DataFrame):
        pd.testing.assert_frame_equal(old, new)
    else:
        assert old == new


def test_migration_table_runs_and_agrees(default_cache: Cache) -> None:
    """Every function the table names exists in ``bdc``; both calls of each DocDB and core row
    run against the synced cache, return the listed type and give the same result."""
    rows = migration_rows()
    functions = get_catalog().functions
    assert {r["provider"] for r in rows} == {"bdc-tables-docdb", "bdc-tables-foraging", "bdc-framework"}
    named = {function_name(r["new"]) for r in rows} | {function_name(r["old"]) for r in rows if r["old"] != "— (not exported)"}
    assert set(ONE_LINERS + CORE) <= named  # every one-liner is in the table
    variables = {"subject_id": SUBJECT, "asset_name": RAW, "asset_names": [FIBER_ASSET],
                 "df": pd.DataFrame({"n": [1, 2, 3]})}
    checked = 0
    for row in rows:
        if row["provider"] == "bdc-tables-foraging":
            continue  # tests/foraging/test_foraging_migration.py
        calls = [row["new"]] + ([row["old"]] if row["old"] != "— (not exported)" else [])
        namespace = {**variables, **{function_name(c): getattr(bdc, function_name(c)) for c in calls}}
        for call in calls:
            name = function_name(call)
            if row["provider"] == "bdc-framework":
                assert name in CORE and name in bdc.__dict__.get("_LAZY", {}), name
            else:
                assert functions[name].plugin == row["provider"], name
        results = [eval(call, {"__builtins__": {}}, namespace) for call in calls]  # noqa: S307 - our own doc
        assert RETURNS[row["returns"]](results[0]), (row, type(results[0]))
        for other in results[1:]:
            assert_same(other, results[0])
        checked += 1
    assert checked == len([r for r in rows if r["provider"] != "bdc-tables-foraging"])
