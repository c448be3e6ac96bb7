"""platform_smartspim, platform_exaspim and behavior_curriculum against the open-data bucket.

The objects of :func:`bdc_tables_docdb.demo.generate_open_data_objects` are uploaded to a bucket
named ``aind-open-data`` on the moto S3 server (``BDC_OPEN_DATA_URL=s3://aind-open-data``, the
AWS endpoint pointing at moto), and written to a local copy (``file:///dir``, laid out
``dir/aind-open-data/<key>``). Both must give the same tables, and the tables must say what the
objects say: the expected rows are recomputed here from the records and the objects.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from test_tables_support import (  # noqa: F401 - docdb_plugin_only is an autouse fixture
    abbreviations,
    canonical,
    dig,
    docdb_plugin_only,
    memory_url,
    rows_of,
    serve,
    sync_ok,
)

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop is deprecated")

BUCKET = "aind-open-data"
NEUROGLASS = "https://allen.neuroglass.io/new#!"
NEUROGLANCER = "https://neuroglancer-demo.appspot.com/#!"
OPEN_DATA_TABLES = ["platform_smartspim", "platform_exaspim", "behavior_curriculum"]


@pytest.fixture(scope="module")
def world() -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Generated records with SmartSPIM, exaSPIM and VR-foraging assets, and their open-data objects."""
    from bdc_tables_docdb.demo.generator import generate_records, generate_open_data_objects

    records = generate_records(500, seed=3)
    names = [r["name"] for r in records]
    assert len(names) == len(set(names)), "the expectations below assume unique asset names"
    return records, generate_open_data_objects(records, seed=3)


def upload(objects: dict[str, bytes], endpoint: str) -> None:
    """Put ``objects`` into the ``aind-open-data`` bucket of the moto server (emptied first)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if BUCKET not in existing:
        s3.create_bucket(Bucket=BUCKET)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for entry in page.get("Contents") or []:
            s3.delete_object(Bucket=BUCKET, Key=entry["Key"])
    for key, data in objects.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)


def write_local(objects: dict[str, bytes], root: Path) -> str:
    """Write ``objects`` under ``root/aind-open-data/``; returns the ``file://`` URL of ``root``."""
    for key, data in objects.items():
        path = root / BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root.as_uri()


# -- expectations, recomputed from the records and objects -------------------------------------


def _processing_time(name: str) -> str:
    match = re.search(r"(\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})$", name)
    return match.group(1) if match else ""


def _latest_child(records: list[dict[str, Any]], raw: str, keyword: str) -> dict[str, Any] | None:
    children = [r for r in records if dig(r, "data_description.data_level") == "derived"
                and raw in (dig(r, "data_description.source_data") or []) and keyword in r["name"].lower()]
    return max(children, key=lambda r: (_processing_time(r["name"]), r["name"]), default=None)


def _raw_spim(records: list[dict[str, Any]], exa: bool) -> list[dict[str, Any]]:
    return [r for r in records if dig(r, "data_description.data_level") == "raw"
            and any("SPIM" in a for a in abbreviations(r))
            and ("exa" in (dig(r, "acquisition.instrument_id") or "").lower()) == exa]


def _json(objects: dict[str, bytes], key: str) -> dict[str, Any] | None:
    try:
        value = json.loads(objects[key])
    except (KeyError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def expected_smartspim(records: list[dict[str, Any]], objects: dict[str, bytes]) -> set[tuple[Any, ...]]:
    """``{(raw_name, name, processed, channel, raw_link, stitched_link, segmentation_link)}``."""
    out = set()
    for raw in _raw_spim(records, exa=False):
        name = raw["name"]
        link = (_json(objects, f"{name}/SPIM/derivatives/neuroglancer_config.json") or {}).get("ng_link")
        if isinstance(link, str) and "/derivatives/" in link and "/SPIM/derivatives/" not in link:
            link = link.replace("/derivatives/", "/SPIM/derivatives/")
        stitched = _latest_child(records, name, "stitched")
        if stitched is None:
            out.add((name, name, False, None, link, None, None))
            continue
        location = (stitched.get("location") or "").rstrip("/")
        key = location.removeprefix(f"s3://{BUCKET}/") if location.startswith(f"s3://{BUCKET}/") else None
        prefix = f"{key}/image_cell_segmentation/"
        channels = sorted({k[len(prefix):].split("/")[0] for k in objects if key and k.startswith(prefix)})
        stitched_link = f"{NEUROGLASS}{location}/neuroglancer_config.json" if location else None
        for channel in channels or [None]:
            segmentation = (f"{NEUROGLASS}{location}/image_cell_segmentation/{channel}/visualization/"
                            "neuroglancer_config.json") if channel else None
            out.add((name, stitched["name"], True, channel, link, stitched_link, segmentation))
    return out


def expected_exaspim(records: list[dict[str, Any]], objects: dict[str, bytes]) -> set[tuple[Any, ...]]:
    """``{(raw_name, name, processed, raw_link, fused_link)}``."""
    out = set()
    for raw in _raw_spim(records, exa=True):
        name = raw["name"]
        link = next((f"{NEUROGLANCER}s3://{BUCKET}/{name}/{f}" for f in ("neuroglancer.json", "process_output.json")
                     if f"{name}/{f}" in objects), None)
        fused = _latest_child(records, name, "fused")
        fused_link = f"{NEUROGLANCER}{fused['location']}" if fused and fused.get("location") else None
        out.add((name, fused["name"] if fused else name, fused is not None, link, fused_link))
    return out


def expected_curriculum(records: list[dict[str, Any]], objects: dict[str, bytes]) -> dict[str, tuple[Any, ...]]:
    """``{asset_name: (status, curriculum_name, stage_name, stage_node_id)}``; unreadable states left out."""
    out: dict[str, tuple[Any, ...]] = {}
    for record in records:
        if not any("behavior" in a.lower() for a in abbreviations(record)):
            continue
        location = record.get("location") or ""
        if not location.startswith(f"s3://{BUCKET}/"):
            out[record["name"]] = ("not_open_data", None, None, None)
            continue
        key = location.removeprefix(f"s3://{BUCKET}/").strip("/")
        chosen = None
        for prefix in ("behavior/trainer_state", "behavior/Logs/.launcher/TrainerState_"):
            keys = [k for k in objects if k.startswith(f"{key}/{prefix}") and k.endswith(".json")]
            if keys:
                chosen = min(keys)
                break
        if chosen is None:
            out[record["name"]] = ("no_trainer_state", None, None, None)
            continue
        state = _json(objects, chosen)
        if state is None:
            continue  # unreadable: kept out of the table, retried next run (D24)
        curriculum, stage = dig(state, "curriculum.name") or None, dig(state, "stage.name") or None
        node = next((int(k) for k, v in (dig(state, "curriculum.graph.nodes") or {}).items()
                     if isinstance(v, dict) and v.get("name") == stage and stage and k.lstrip("-").isdigit()), None)
        out[record["name"]] = ("ok" if node is not None else "stage_not_in_graph", curriculum, stage, node)
    return out


def _sync_open_data(monkeypatch: pytest.MonkeyPatch, records: list[dict[str, Any]], open_data_url: str) -> tuple[str, Any]:
    from bdc_tables_docdb.emulator import DocDBEmulator

    with DocDBEmulator(records) as emulator:
        serve(monkeypatch, emulator, open_data_url)
        url = memory_url()
        report = sync_ok(url, only=OPEN_DATA_TABLES)
    return url, report


def _smartspim_rows(url: str) -> set[tuple[Any, ...]]:
    return {(r["raw_name"], r["name"], r["processed"], r["channel"], r["raw_link"], r["stitched_link"],
             r["segmentation_link"]) for r in rows_of(url, "platform_smartspim")}


def _exaspim_rows(url: str) -> set[tuple[Any, ...]]:
    return {(r["raw_name"], r["name"], r["processed"], r["raw_link"], r["fused_link"])
            for r in rows_of(url, "platform_exaspim")}


def _curriculum_rows(url: str) -> dict[str, tuple[Any, ...]]:
    return {r["asset_name"]: (r["status"], r["curriculum_name"], r["stage_name"], r["stage_node_id"])
            for r in rows_of(url, "behavior_curriculum")}


def test_open_data_tables_from_moto_s3_and_local_copy(world: tuple[list[dict[str, Any]], dict[str, bytes]],
                                                      s3_env: str, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """s3://aind-open-data on moto and file:// give the same tables, and they match the objects."""
    from bdc.cache import Cache

    records, objects = world
    upload(objects, s3_env)
    s3_cache, s3_report = _sync_open_data(monkeypatch, records, f"s3://{BUCKET}")
    file_cache, _ = _sync_open_data(monkeypatch, records, write_local(objects, tmp_path / "copy"))
    for name in OPEN_DATA_TABLES:
        assert canonical(Cache(s3_cache).get(name)) == canonical(Cache(file_cache).get(name)), name

    smartspim = _smartspim_rows(s3_cache)
    assert smartspim == expected_smartspim(records, objects)
    assert {row[2] for row in smartspim} == {True, False}  # processed and unprocessed assets
    assert any(row[3] for row in smartspim) and any(row[4] for row in smartspim)  # channels, raw links
    assert any(row[2] and row[3] is None for row in smartspim)  # stitched but not segmented

    exaspim = _exaspim_rows(s3_cache)
    assert exaspim == expected_exaspim(records, objects) and exaspim
    curriculum = _curriculum_rows(s3_cache)
    expected = expected_curriculum(records, objects)
    assert curriculum == expected
    statuses = {v[0] for v in curriculum.values()}
    assert {"ok", "no_trainer_state", "not_open_data"} <= statuses
    broken = [r["name"] for r in records if r["name"] not in expected
              and any("behavior" in a.lower() for a in abbreviations(r))]
    assert broken, "the objects include unreadable trainer states"
    assert s3_report.table("behavior_curriculum").counters["asset_errors"] == len(broken)


def test_curriculum_retries_errors_and_reuses_final_answers(world: tuple[list[dict[str, Any]], dict[str, bytes]],
                                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """D24: an unreadable trainer state is left out and read again next run; final rows are kept."""
    from bdc_tables_docdb.emulator import DocDBEmulator

    records, objects = world
    root = tmp_path / "copy"
    open_data = write_local(objects, root)
    expected = expected_curriculum(records, objects)
    broken = sorted(k for k, v in objects.items() if ("trainer_state" in k or "TrainerState_" in k)
                    and k.endswith(".json") and _json(objects, k) is None)
    assert broken
    with DocDBEmulator(records) as emulator:
        serve(monkeypatch, emulator, open_data)
        url = memory_url()
        sync_ok(url, only=["behavior_curriculum"])
        assert _curriculum_rows(url) == expected
        # repair the broken files; delete the files behind an "ok" row (a final answer is not reread)
        state = {"curriculum": {"name": "Repaired", "graph": {"nodes": {"7": {"name": "S7"}}}}, "stage": {"name": "S7"}}
        for key in broken:
            (root / BUCKET / key).write_text(json.dumps(state))
        ok_name, ok_row = next((n, v) for n, v in expected.items() if v[0] == "ok")
        ok_record = next(r for r in records if r["name"] == ok_name)
        ok_key = ok_record["location"].removeprefix(f"s3://{BUCKET}/")
        for path in (root / BUCKET / ok_key).rglob("*"):
            if path.is_file():
                path.unlink()
        report = sync_ok(url, only=["behavior_curriculum"])
    rows = _curriculum_rows(url)
    assert rows[ok_name] == ok_row  # reused from the previous table
    repaired = {n: v for n, v in rows.items() if n not in expected}
    assert repaired and set(repaired.values()) == {("ok", "Repaired", "S7", 7)}
    assert "asset_errors" not in report.table("behavior_curriculum").counters


def test_open_data_errors_stay_per_asset(world: tuple[list[dict[str, Any]], dict[str, bytes]], s3_env: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """D25: an open-data bucket that cannot be read fails assets, not tables; no error is cached as an answer."""
    import boto3

    records, objects = world
    upload({}, s3_env)  # empty it, then remove it: every listing and read answers NoSuchBucket
    boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1").delete_bucket(Bucket=BUCKET)
    url, report = _sync_open_data(monkeypatch, records, f"s3://{BUCKET}")
    for name in OPEN_DATA_TABLES:
        assert report.table(name).counters["asset_errors"] > 0, name
    # every raw SmartSPIM asset still has its row, without the S3-derived fields
    smartspim = rows_of(url, "platform_smartspim")
    assert {r["raw_name"] for r in smartspim} == {r["name"] for r in _raw_spim(records, exa=False)}
    assert all(r["raw_link"] is None and r["channel"] is None for r in smartspim)
    assert {r["raw_link"] for r in rows_of(url, "platform_exaspim")} == {None}
    # behavior assets outside the open-data bucket need no S3 call; the others are left out, retried next run
    expected = expected_curriculum(records, objects)
    rows = _curriculum_rows(url)
    assert rows == {n: v for n, v in expected.items() if v[0] == "not_open_data"} and rows
