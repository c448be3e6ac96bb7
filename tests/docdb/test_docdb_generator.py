"""Tests of the demo record generator (bdc_tables_docdb.demo) and of the shipped demo sample.

Schema validity: each record's ``data_description``, ``subject``, ``processing`` and ``quality_control`` are
validated against the aind-data-schema 2.7 JSON Schemas in tests/fixtures/aind-data-schema. The four *real*
DocDB records break three rules of those schemas, so the validator relaxes exactly these (and
``test_real_records_need_exactly_these_relaxations`` proves each one is needed and that nothing else is):

1. ``schema_version`` is a ``const`` of the 2.7 release (data_description 2.3.3, subject 2.3.0, processing
   2.2.7, quality_control 2.4.1); stored records carry the version they were written with (2.0.13 ...
   2.4.0). Relaxed to "any string".
2. ``QCMetric.tags`` must be an object; records written before quality_control 2.4 hold a list of strings
   (``v2_record.json``: ``["Motion Correction FOV Quality VISp_0"]``). Relaxed to "object or list of
   strings".
3. ``format: date-time`` (RFC 3339, checked by rfc3339-validator) rejects a space between date and time;
   real records hold ``"2025-04-22 20:50:47-07:00"`` (creation_time) and ``"2025-04-23
   00:38:48.368044+00:00"`` (status timestamps). Relaxed to "ISO 8601 with an explicit offset".

Records the generator makes messy on purpose (recognised by ``messy_kinds``) skip only the core file their
messiness breaks.
"""

from __future__ import annotations

import copy
import datetime as dt
import gzip
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bdc_tables_docdb.demo import generator as gen
from bdc_tables_docdb.demo import sample

jsonschema = pytest.importorskip("jsonschema")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RECORDS_DIR = FIXTURES / "docdb-records"
SCHEMA_DIR = FIXTURES / "aind-data-schema"
CORE_FILES = ("data_description", "subject", "processing", "quality_control")
NOW = "2026-11-01T00:00:00Z"
DERIVED_NAME = re.compile(r"^(?P<raw>.+)_(?P<word>processed|stitched|fused)_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
Z_MICRO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
LOCAL_MICRO = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}-0[78]:00$")
MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


# ------------------------------------------------------------------------------------------------ helpers


def get(record: Any, path: str) -> Any:
    """Null-safe dotted get (missing, null and wrong type all give None)."""
    cur = record
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def abbreviations(record: dict) -> list[str]:
    mods = get(record, "data_description.modalities")
    return [m["abbreviation"] for m in mods or [] if isinstance(m, dict) and "abbreviation" in m]


def level(record: dict) -> str | None:
    return get(record, "data_description.data_level")


def parse_time(value: str) -> dt.datetime:
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    parsed = dt.datetime.fromisoformat(text)
    assert parsed.tzinfo is not None, value
    return parsed


def lenient_date_time(value: object) -> bool:
    """Relaxation 3: any ISO 8601 date-time with an explicit offset (space or ``T`` separator)."""
    if not isinstance(value, str):
        return True
    parse_time(value)
    return True


def make_validator(name: str, *, versions: bool = True, list_tags: bool = True, spaced_times: bool = True):
    schema = json.loads((SCHEMA_DIR / f"{name}_schema.json").read_text())
    if versions:
        schema["properties"]["schema_version"] = {"type": "string"}
    if list_tags:
        for definition in ("QCMetric", "CurationMetric"):
            if definition in schema.get("$defs", {}):
                props = schema["$defs"][definition]["properties"]
                props["tags"] = {"anyOf": [props["tags"], {"type": "array", "items": {"type": "string"}}]}
    checker = jsonschema.FormatChecker()
    if spaced_times:
        checker.checks("date-time", raises=(ValueError, AssertionError))(lenient_date_time)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=checker)


@pytest.fixture(scope="module")
def validators() -> dict[str, Any]:
    return {name: make_validator(name) for name in CORE_FILES}


@pytest.fixture(scope="module")
def real_records() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(RECORDS_DIR.glob("*.json"))]


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """The same generation as the shipped sample (without its real records)."""
    return gen.generate_records(3000, seed=7, now=NOW)


def schema_errors(validator: Any, doc: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(doc)]


# ------------------------------------------------------------------------------------- determinism, speed


def test_same_seed_same_records_other_seed_other_records() -> None:
    first = gen.generate_records(250, seed=3)
    assert first == gen.generate_records(250, seed=3)
    assert len(first) == 250
    other = gen.generate_records(250, seed=4)
    assert [r["_id"] for r in other] != [r["_id"] for r in first]
    assert gen.generate_records(0) == []


def test_prefix_stable_and_no_global_random_state() -> None:
    import random

    random.seed(1)
    a = gen.generate_records(60, seed=9)
    random.seed(2)
    b = gen.generate_records(60, seed=9)
    assert a == b
    state = random.getstate()
    gen.generate_records(30, seed=9)
    assert random.getstate() == state, "the generator must not touch the global random state"


def test_generator_is_fast() -> None:
    t0 = time.perf_counter()
    out = gen.generate_records(5000, seed=1)
    elapsed = time.perf_counter() - t0
    assert len(out) == 5000
    # 20,000 records must take well under 10 s; a quarter of that gets a quarter of the budget (loaded CI).
    assert elapsed < 2.5, f"5,000 records took {elapsed:.2f} s"


# ------------------------------------------------------------------------------------ shape and lineage


def test_counts_proportions_and_lineage(records: list[dict]) -> None:
    assert len(records) == 3000
    levels = Counter(level(r) for r in records)
    assert 0.38 < levels["raw"] / len(records) < 0.6
    assert 0.4 < levels["derived"] / len(records) < 0.62
    names = Counter(r["name"] for r in records)
    raw_names = {r["name"] for r in records if level(r) != "derived"}
    children: Counter[str] = Counter()
    seen: set[str] = set()
    for r in records:  # order: every derived asset comes after its sources
        sources = get(r, "data_description.source_data")
        if level(r) == "derived":
            assert isinstance(sources, list) and sources, r["name"]
            for source in sources:
                assert source in raw_names, (r["name"], source)
                assert source in seen, f"{r['name']} listed before its source {source}"
                children[source] += 1
            match = DERIVED_NAME.match(r["name"])
            assert match and match["raw"] == sources[0], r["name"]
            if match["word"] == "stitched":
                assert r["name"].startswith("SmartSPIM_")
            if match["word"] == "fused":
                assert r["name"].startswith("exaSPIM_")
        elif level(r) == "raw":
            assert sources in (None, []), r["name"]
            assert not DERIVED_NAME.match(r["name"]), r["name"]
        else:
            assert "data_description_null" in gen.messy_kinds(r)
        seen.add(r["name"])
    assert sum(1 for c in children.values() if c >= 2) > 50, "raw assets with several derived children"
    assert sum(1 for c in children.values() if c >= 3) > 10
    assert any("stitched" in n for n in names) and any("fused" in n for n in names)
    assert any(len(get(r, "data_description.source_data") or []) == 2 for r in records), "multi-source derived"
    # re-processing: one raw asset, the same pipeline twice
    by_source_pipeline = Counter(
        (get(r, "data_description.source_data")[0], (get(r, "processing.pipelines") or [{}])[0].get("name"))
        for r in records
        if level(r) == "derived" and get(r, "processing.pipelines")
    )
    assert any(c >= 2 for c in by_source_pipeline.values())


def test_field_coverage(records: list[dict]) -> None:
    mods = Counter(m for r in records for m in abbreviations(r))
    for needed in ("pophys", "behavior", "behavior-videos", "fib", "SPIM", "slap2", "ecephys"):
        assert mods[needed] > 20, needed
    for r in records:
        for m in get(r, "data_description.modalities") or []:
            if isinstance(m, dict) and "abbreviation" in m:
                assert set(m) == {"name", "abbreviation"}

    projects = Counter(get(r, "data_description.project_name") for r in records if get(r, "data_description"))
    assert len([p for p in projects if p]) >= 5
    assert 0 < projects[None] < 0.1 * len(records)

    subject_ids = {get(r, "subject.subject_id") for r in records} - {None}
    assert all(isinstance(s, str) for s in subject_ids)
    assert any(re.fullmatch(r"\d{6}", s) for s in subject_ids)
    assert any(s.startswith("00") and s.isdigit() for s in subject_ids), "leading-zero subject ids"
    details = [get(r, "subject.subject_details") for r in records if get(r, "subject.subject_details")]
    mice = [d for d in details if d["object_type"] == "Mouse subject"]
    humans = [d for d in details if d["object_type"] == "Human subject"]
    assert mice and humans
    assert all(d.get("genotype") and d.get("date_of_birth") for d in mice)
    assert all(isinstance(d.get("year_of_birth"), int) for d in humans)
    assert len({d["genotype"] for d in mice}) > 10

    acq_types = {get(r, "acquisition.acquisition_type") for r in records}
    assert {"AindVrForaging", "Uncoupled Baiting", "Coupled Without Baiting"} <= acq_types
    instruments = {get(r, "acquisition.instrument_id") for r in records}
    for shape in ("323_EPHYS1_20231003", "447-3-B_20240115", "SmartSPIM2-2_20240101", "FIP_1_230815", "4A",
                  "13A", "exaSPIM_01_20240301"):
        assert shape in instruments, shape
    experimenters = [e for r in records for e in get(r, "acquisition.experimenters") or []]
    strings = {e for e in experimenters if isinstance(e, str)}
    assert {"huy.nguyen", "Smith, John", "JOHN"} <= strings
    assert any(isinstance(e, dict) and "name" in e for e in experimenters)
    assert any(isinstance(e, dict) and "name" not in e for e in experimenters)

    processes = [p for r in records for p in get(r, "processing.data_processes") or []]
    assert any(get(r, "processing.data_processes") == [] for r in records)
    assert any(" " in (p.get("start_date_time") or "") for p in processes), "space-separated process times"
    pipelines = [get(r, "processing.pipelines") for r in records if get(r, "processing")]
    assert None in pipelines and [] in pipelines
    assert any(isinstance(p, list) and p and p[0].get("name") for p in pipelines)

    other = [r.get("other_identifiers") for r in records]
    assert sum(isinstance(o, dict) and len(o.get("Code Ocean", [])) == 1 for o in other) > 0.9 * len(records)
    assert all(UUID4.match(x) for o in other if o for x in o["Code Ocean"])
    locations = Counter(r["location"].split("/")[2] for r in records)
    assert locations[gen.OPEN_DATA_BUCKET] > 0.85 * len(records) and locations[gen.CODE_OCEAN_BUCKET] > 0
    assert all(r["location"] == f"s3://{gen.OPEN_DATA_BUCKET}/{r['name']}" for r in records
               if r["location"].startswith(f"s3://{gen.OPEN_DATA_BUCKET}/"))
    assert len({r["_id"] for r in records}) == len(records)
    assert all(UUID4.match(r["_id"]) for r in records)
    assert all(MS_Z.match(r["_last_modified"]) and MS_Z.match(r["_created"]) for r in records)
    assert all(r["_created"] <= r["_last_modified"] <= "2026-11-01T00:00:00.000Z" for r in records)


def test_fiber_photometry_and_rl_fib_inputs(records: list[dict]) -> None:
    fib = [r for r in records if "fib" in abbreviations(r) and get(r, "acquisition.data_streams")]
    assert len(fib) > 100
    rows = 0
    for r in fib:
        implants = {}
        for surgery in get(r, "procedures.subject_procedures") or []:
            for proc in surgery.get("procedures") or []:
                if proc.get("object_type") == "Probe implant":
                    implants[proc["implanted_device"]["name"].replace("_", " ")] = proc
        for stream in get(r, "acquisition.data_streams"):
            cords = {c["source_device"]: c["target_device"] for c in stream.get("connections") or []
                     if c["target_device"] in implants}
            for conf in stream.get("configurations") or []:
                if conf.get("object_type") == "Patch cord config" and conf["device_name"] in cords:
                    rows += len(conf["channels"])
                    assert all("channel_name" in ch and "intended_measurement" in ch for ch in conf["channels"])
    assert rows > 500
    # scientist_rl_fib's DocDB filter finds derived behavior+fib assets at a final stage
    hits = [
        r for r in records
        if {"behavior", "fib"} <= set(abbreviations(r)) and level(r) == "derived"
        and any(get(e, "performance_metrics.output_parameters.task_parameters.stage_in_use")
                in ("STAGE_FINAL", "GRADUATED") for e in get(r, "acquisition.stimulus_epochs") or [])
    ]
    assert len({get(r, "subject.subject_id") for r in hits}) >= 5
    injections = [p for r in hits for s in get(r, "procedures.subject_procedures") or []
                  for p in s.get("procedures") or [] if p.get("object_type") == "Brain injection"]
    materials = [m for p in injections for m in p["injection_materials"]]
    assert any(m["name"] is None and m["tars_identifiers"]["virus_tars_id"] for m in materials)
    assert any(m["name"] for m in materials)
    translations = [t for r in hits for s in get(r, "procedures.subject_procedures") or []
                    for p in s.get("procedures") or [] if p.get("object_type") == "Probe implant"
                    for t in p["device_config"]["transform"] if t["object_type"] == "Translation"]
    assert any(len(t["translation"]) == 4 for t in translations)


def test_quality_control_shapes_and_status(records: list[dict]) -> None:
    qcs = [get(r, "quality_control") for r in records if get(r, "quality_control")]
    metrics = [m for qc in qcs for m in qc["metrics"]]
    assert {m["stage"] for m in metrics} == {"Raw data", "Processing", "Analysis", "Multi-asset"}
    assert {m["object_type"] for m in metrics} == {"QC metric", "Curation metric"}
    value_types = {type(m["value"]).__name__ for m in metrics}
    assert {"NoneType", "bool", "int", "float", "str", "list", "dict"} <= value_types
    assert all(isinstance(m["modality"], dict) and "abbreviation" in m["modality"] for m in metrics)
    for qc in qcs:
        kinds = {type(m["tags"]).__name__ for m in qc["metrics"]}
        assert len(kinds) <= 1, "one tag style per record"
        if kinds == {"dict"}:
            assert qc["schema_version"] >= "2.4"
        if kinds == {"list"}:
            assert qc["schema_version"] < "2.4"
        assert qc["status"] == gen.qc_status(qc["metrics"])
        assert set(qc["status"].values()) <= {"Pass", "Fail", "Pending"}
        for m in qc["metrics"]:
            for s in m["status_history"]:
                assert set(s) == {"object_type", "evaluator", "status", "timestamp"}
    assert any(isinstance(m["tags"], list) for m in metrics) and any(isinstance(m["tags"], dict) for m in metrics)
    assert any(len(m["status_history"]) >= 2 for m in metrics)
    statuses = Counter(v for qc in qcs for v in qc["status"].values())
    assert statuses["Pass"] and statuses["Fail"] and statuses["Pending"]


def test_qc_status_matches_the_real_records(real_records: list[dict]) -> None:
    for r in real_records:
        qc = r.get("quality_control")
        if qc:
            assert gen.qc_status(qc["metrics"]) == qc["status"]  # key order differs upstream; irrelevant


def test_timestamps_in_both_formats(records: list[dict]) -> None:
    starts = [get(r, "acquisition.acquisition_start_time") for r in records if get(r, "acquisition")]
    assert sum(bool(Z_MICRO.match(s)) for s in starts) > 0.2 * len(starts)
    assert sum(bool(LOCAL_MICRO.match(s)) for s in starts) > 0.1 * len(starts)
    assert all(Z_MICRO.match(s) or LOCAL_MICRO.match(s) for s in starts)
    now = parse_time(NOW)
    for r in records:
        acq = get(r, "acquisition")
        if acq:
            assert parse_time(acq["acquisition_start_time"]) < parse_time(acq["acquisition_end_time"]) <= now
    # a local-time name clock matches a local-time acquisition start (like v2_record.json)
    local = [r for r in records if level(r) == "raw" and LOCAL_MICRO.match(get(r, "acquisition.acquisition_start_time") or "")]
    assert local and all(get(r, "acquisition.acquisition_start_time")[:10] in r["name"] for r in local)
    # age is computable: date of birth before the first acquisition
    for r in records:
        dob = get(r, "subject.subject_details.date_of_birth")
        start = get(r, "acquisition.acquisition_start_time")
        if dob and start:
            assert dt.date.fromisoformat(dob) < parse_time(start).date()


# ------------------------------------------------------------------------------------------------ messiness


def test_messy_cases_exist(records: list[dict]) -> None:
    kinds = Counter(k for r in records for k in gen.messy_kinds(r))
    for kind in gen.MESSY_KINDS:
        assert kinds[kind] > 0, kind
    assert 0.01 <= kinds["quality_control_null"] / len(records) <= 0.035
    assert kinds["investigators_string"] < 0.02 * len(records)
    messy = sum(1 for r in records if set(gen.messy_kinds(r)) - {"experimenters_dict", "project_name_null"})
    assert messy < 0.12 * len(records)
    assert any(c > 1 for c in Counter(r["name"] for r in records).values()), "duplicate names"
    # investigators as strings: a list with a plain string, or one plain string
    shapes = {type(get(r, "data_description.investigators")).__name__ for r in records
              if "investigators_string" in gen.messy_kinds(r)}
    assert shapes <= {"list", "str"}


def test_messy_kinds_on_real_records(real_records: list[dict]) -> None:
    by_name = {r["name"]: gen.messy_kinds(r) for r in real_records}
    assert by_name["828418_2026-02-13_18-31-13"] == ["quality_control_null"]
    assert sum(bool(k) for k in by_name.values()) == 1


# -------------------------------------------------------------------------------------------- schema validity


def test_real_records_need_exactly_these_relaxations(real_records: list[dict]) -> None:
    """Document the rules the real records break (see the module docstring)."""
    relaxed = {name: make_validator(name) for name in CORE_FILES}
    for r in real_records:
        for name in CORE_FILES:
            if r.get(name) is not None:
                assert schema_errors(relaxed[name], r[name]) == [], (r["name"], name)

    def failures(**kwargs: bool) -> set[tuple[str, str]]:
        vals = {name: make_validator(name, **kwargs) for name in CORE_FILES}
        return {(r["name"], name) for r in real_records for name in CORE_FILES
                if r.get(name) is not None and not vals[name].is_valid(r[name])}

    no_versions = failures(versions=False)
    assert len(no_versions) == 15  # every non-null core file of every real record
    pophys = "multiplane-ophys_692478_2023-09-29_08-53-45_processed_2025-04-22_20-50-47"
    assert failures(list_tags=False) == {(pophys, "quality_control")}
    assert failures(spaced_times=False) == {(pophys, "data_description"), (pophys, "quality_control")}


def _validation_subset(records: list[dict], per_group: int = 15, per_kind: int = 6) -> list[dict]:
    """Up to ``per_group`` records per (platform, level, tag style, species), ``per_kind`` per messy kind."""
    groups: Counter[tuple] = Counter()
    chosen = []
    for r in records:
        name = r["name"]
        platform = "vr" if name[:1].isdigit() else name.split("_")[0]
        tags = {type(m.get("tags")).__name__ for m in get(r, "quality_control.metrics") or []}
        keys = [(platform, level(r), tuple(sorted(tags)), get(r, "subject.subject_details.object_type"))]
        keys += [("messy", kind) for kind in gen.messy_kinds(r)]
        if any(groups[key] < (per_kind if key[0] == "messy" else per_group) for key in keys):
            groups.update(keys)
            chosen.append(r)
    return chosen


def test_generated_records_validate(records: list[dict], validators: dict[str, Any]) -> None:
    subset = _validation_subset(records)
    assert 250 < len(subset) < 700
    checked = Counter()
    seen_subjects: set[str] = set()
    problems = []
    for r in subset:
        broken = {gen.MESSY_KINDS[k] for k in gen.messy_kinds(r)}
        for name in CORE_FILES:
            doc = r.get(name)
            if name in broken:
                if doc is not None:  # messy on purpose: must really fail the schema
                    assert not validators[name].is_valid(doc), (r["name"], name, gen.messy_kinds(r))
                continue
            if name == "subject":
                key = json.dumps(doc, sort_keys=True)
                if key in seen_subjects:
                    continue
                seen_subjects.add(key)
            errors = schema_errors(validators[name], doc)
            if errors:
                problems.append((r["name"], name, errors[:3]))
            checked[name] += 1
    assert problems == []
    assert min(checked.values()) > 100


def test_mutated_and_added_records_validate(records: list[dict], validators: dict[str, Any]) -> None:
    old = {r["_id"]: r for r in records}
    out = gen.mutate(records, changed=0.02, added=0.02, removed=0.0, seed=5)
    touched = [r for r in out if r["_id"] not in old or r is not old[r["_id"]]]
    assert len(touched) == 120
    for r in touched[::2]:
        broken = {gen.MESSY_KINDS[k] for k in gen.messy_kinds(r)}
        for name in CORE_FILES:
            if name not in broken:
                assert schema_errors(validators[name], r[name]) == [], (r["name"], name)


# ---------------------------------------------------------------------------------------------------- mutate


def test_mutate_changes_adds_and_removes_requested_fractions(records: list[dict]) -> None:
    before = json.dumps(records)
    out = gen.mutate(records, changed=0.05, added=0.02, removed=0.03, seed=11)
    assert json.dumps(records) == before, "mutate must not modify its input"
    old = {r["_id"]: r for r in records}
    new_ids = {r["_id"] for r in out}
    removed = set(old) - new_ids
    added = [r for r in out if r["_id"] not in old]
    kept = [r for r in out if r["_id"] in old]
    assert len(removed) == round(0.03 * len(records))
    assert len(added) == round(0.02 * len(records))
    assert len(out) == len(records) - len(removed) + len(added)
    changed = [r for r in kept if r != old[r["_id"]]]
    assert len(changed) == round(0.05 * len(records))
    for r in kept:
        o = old[r["_id"]]
        if r in changed:
            assert r is not o
            assert r["_last_modified"] > o["_last_modified"]
            diff = {k for k in r if r[k] != o.get(k)} - {"_last_modified"}
            assert diff & {"quality_control", "data_description", "acquisition", "subject", "other_identifiers"}
        else:
            assert r is o and r["_last_modified"] == o["_last_modified"]
    # added: new ids and names, raw before derived, some on existing subjects, some new subjects
    assert all(UUID4.match(r["_id"]) for r in added)
    old_names = {r["name"] for r in records}
    assert not {r["name"] for r in added} & old_names
    old_subjects = {get(r, "subject.subject_id") for r in records}
    added_subjects = {get(r, "subject.subject_id") for r in added}
    assert added_subjects & old_subjects and added_subjects - old_subjects
    assert max(r["_last_modified"] for r in added) > max(r["_last_modified"] for r in records)
    # lineage still holds
    names = {r["name"] for r in out}
    assert all(s in names for r in out for s in get(r, "data_description.source_data") or [])
    # same seed, same result; QC status stays consistent after a status change
    assert out == gen.mutate(records, changed=0.05, added=0.02, removed=0.03, seed=11)
    for r in changed:
        qc = get(r, "quality_control")
        if qc:
            assert qc["status"] == gen.qc_status(qc["metrics"])


def test_mutate_existing_subject_keeps_identity(records: list[dict]) -> None:
    out = gen.mutate(records, changed=0, added=0.03, removed=0, seed=3)
    by_subject: dict[str, dict] = {}
    for r in records:
        if get(r, "subject.subject_id"):
            by_subject.setdefault(r["subject"]["subject_id"], r)
    added = [r for r in out[len(records):]]
    same = [r for r in added if get(r, "subject.subject_id") in by_subject]
    assert same
    for r in same:
        assert r["subject"] == by_subject[r["subject"]["subject_id"]]["subject"]


def test_mutate_chains_move_forward(records: list[dict]) -> None:
    small = records[:400]
    once = gen.mutate(small, seed=1, changed=0.05, added=0.02, removed=0.02)
    twice = gen.mutate(once, seed=2, changed=0.05, added=0.02, removed=0.02)
    assert max(r["_last_modified"] for r in twice) > max(r["_last_modified"] for r in once)
    assert len({r["_id"] for r in twice}) == len(twice)


# ------------------------------------------------------------------------------------------------- open data


def test_open_data_objects(records: list[dict]) -> None:
    objects = gen.generate_open_data_objects(records, seed=7)
    assert objects == gen.generate_open_data_objects(records, seed=7)
    assert all(not k.startswith(("s3://", "/")) and isinstance(v, bytes) for k, v in objects.items())
    by_name = {r["name"]: r for r in records}

    # SmartSPIM: channels under the stitched asset's key, raw links (some with the /derivatives/ quirk)
    channel_prefixes = {k.split("/image_cell_segmentation/")[0]: k.split("/")[2]
                        for k in objects if "/image_cell_segmentation/" in k}
    assert len(channel_prefixes) > 20
    for prefix, channel in channel_prefixes.items():
        assert re.fullmatch(r"Ex_\d{3}_Em_\d{3}", channel)
        assert "stitched" in prefix and by_name[prefix]["location"] == f"s3://{gen.OPEN_DATA_BUCKET}/{prefix}"
    links = [k for k in objects if k.endswith("/SPIM/derivatives/neuroglancer_config.json")]
    docs = []
    for k in links:
        try:
            docs.append(json.loads(objects[k]))
        except ValueError:
            pass
    ng = [d["ng_link"] for d in docs if "ng_link" in d]
    assert any("/SPIM/derivatives/" in link for link in ng)
    assert any("/derivatives/" in link and "/SPIM/derivatives/" not in link for link in ng)
    assert len(docs) < len(links) or any("ng_link" not in d for d in docs)
    assert any(not k.endswith(".json") for k in objects), "some binary objects"

    # exaSPIM: neuroglancer.json, or only process_output.json, or nothing
    exa_raw = [r["name"] for r in records if level(r) == "raw" and r["name"].startswith("exaSPIM_")]
    has_ng = [n for n in exa_raw if f"{n}/neuroglancer.json" in objects]
    only_po = [n for n in exa_raw if f"{n}/neuroglancer.json" not in objects and f"{n}/process_output.json" in objects]
    neither = [n for n in exa_raw if f"{n}/neuroglancer.json" not in objects and f"{n}/process_output.json" not in objects]
    assert has_ng and only_po and neither

    # trainer state: new and legacy layouts, curriculum graph with integer keys, stage in the graph (mostly)
    new = [k for k in objects if re.search(r"/behavior/trainer_state[^/]*\.json$", k)]
    legacy = [k for k in objects if "/behavior/Logs/.launcher/TrainerState_" in k]
    assert new and legacy
    parsed = []
    for k in new + legacy:
        try:
            parsed.append(json.loads(objects[k]))
        except ValueError:
            continue
    assert len(parsed) > 50
    in_graph = 0
    for state in parsed:
        nodes = state["curriculum"]["graph"]["nodes"]
        assert state["curriculum"]["name"] and all(key.isdigit() for key in nodes)
        in_graph += any(node["name"] == state["stage"]["name"] for node in nodes.values())
    assert 0 < in_graph < len(parsed)
    for k in new + legacy:
        asset = k.split("/behavior/")[0]
        assert get(by_name[asset], "acquisition.acquisition_type") == "AindVrForaging"


def test_open_data_of_an_asset_does_not_depend_on_other_assets(records: list[dict]) -> None:
    full = gen.generate_open_data_objects(records, seed=7)
    spim = [r for r in records if r["name"].startswith("SmartSPIM_")]
    part = gen.generate_open_data_objects(spim, seed=7)
    assert part and all(full[k] == v for k, v in part.items())


# ---------------------------------------------------------------------------------------------------- sample


@pytest.fixture(scope="module")
def sample_records() -> list[dict]:
    return sample.load_sample_records()


def test_sample_loads_and_contains_the_real_records(sample_records: list[dict], real_records: list[dict]) -> None:
    assert 2900 <= len(sample_records) <= 3100
    by_id = {r["_id"]: r for r in sample_records}
    for real in real_records:
        assert by_id[real["_id"]] == real
    assert set(gen.REAL_RECORD_IDS) <= set(by_id)
    names = {r["name"] for r in sample_records}
    missing = [(r["name"], s) for r in sample_records for s in get(r, "data_description.source_data") or []
               if s not in names]
    assert missing == []
    assert len({r["_id"] for r in sample_records}) == len(sample_records)


def test_sample_is_what_the_generator_makes(sample_records: list[dict], real_records: list[dict]) -> None:
    assert gen.build_sample_records(len(sample_records), 7, real_records) == sample_records


def test_sample_open_data(sample_records: list[dict]) -> None:
    objects = sample.load_sample_open_data()
    assert objects == gen.generate_open_data_objects(sample_records, seed=7)
    assert any("/image_cell_segmentation/Ex_561_Em_600/" in k for k in objects)


def test_sample_files_are_small() -> None:
    folder = Path(sample.__file__).resolve().parent
    sizes = [(folder / n).stat().st_size for n in (sample.SAMPLE_RECORDS_FILE, sample.SAMPLE_OPEN_DATA_FILE)]
    assert sum(sizes) < 2_000_000
    with gzip.open(folder / sample.SAMPLE_RECORDS_FILE, "rt") as fh:
        assert fh.readline().startswith("{")


def test_cli_writes_both_files(tmp_path: Path, real_records: list[dict]) -> None:
    assert gen.main(["--n", "60", "--seed", "2", "--out", str(tmp_path), "--real-records", str(RECORDS_DIR)]) == 0
    with gzip.open(tmp_path / "sample_records.jsonl.gz", "rt") as fh:
        lines = [json.loads(line) for line in fh]
    assert len(lines) == 60
    assert {r["_id"] for r in real_records} <= {r["_id"] for r in lines}
    doc = json.loads(gzip.decompress((tmp_path / "sample_open_data.json.gz").read_bytes()))
    assert doc["bucket"] == gen.OPEN_DATA_BUCKET and isinstance(doc["objects"], dict)
    first = (tmp_path / "sample_records.jsonl.gz").read_bytes()
    gen.main(["--n", "60", "--seed", "2", "--out", str(tmp_path), "--real-records", str(RECORDS_DIR)])
    assert (tmp_path / "sample_records.jsonl.gz").read_bytes() == first, "byte-for-byte reproducible"


def test_package_exports() -> None:
    import bdc_tables_docdb.demo as demo

    for name in demo.__all__:
        assert callable(getattr(demo, name)) or isinstance(getattr(demo, name), (dict, tuple))
    for module in (gen, sample):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj):
                assert obj.__doc__, f"{module.__name__}.{name} needs a docstring"
    with pytest.raises(AttributeError):
        demo.no_such_name  # noqa: B018
    copy.deepcopy(gen.MESSY_KINDS)
