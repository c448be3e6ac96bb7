"""Seeded generator of realistic DocDB v2 asset records and matching open-data S3 objects.

The records follow the shape of the four real records in ``tests/fixtures/docdb-records`` (aind-data-schema
2.x, as stored in DocDB) and cover every field the tables of TABLES.md read:

- raw assets and derived assets with lineage: a derived asset is named
  ``<raw name>_processed_YYYY-MM-DD_HH-MM-SS`` (SmartSPIM stitching products use ``_stitched_``, exaSPIM
  fusion products ``_fused_``, so that the platform tables can find them), carries
  ``data_description.data_level == "derived"`` and ``data_description.source_data == [raw name]``. Some raw
  assets have several derived children (re-processings, several pipelines), some none, and a few derived
  assets combine two raw assets of the same subject;
- platforms: VR foraging (``AindVrForaging``, with and without fiber photometry), dynamic foraging
  (``Uncoupled Baiting`` & co., with and without fiber photometry), stand-alone FIP, multiplane ophys,
  SmartSPIM, exaSPIM, SLAP2, extracellular ephys and a few human behaviour sessions;
- mixed timestamp formats (``2026-02-13T18:31:13.061848Z`` and ``2023-09-29 08:53:23.654198-07:00``),
  messy experimenter strings, instrument ids in many shapes, QC metrics with dict tags (schema >= 2.4) and
  list tags (older records), a ``quality_control.status`` computed as upstream does (:func:`qc_status`);
- deliberate messiness, recognisable with :func:`messy_kinds`: null core fields, null project names,
  null modalities, investigators given as strings, empty ``status_history``, processes without a start
  time, experimenters given as dicts, missing ``other_identifiers`` and duplicate asset names.

Everything is drawn from ``random.Random`` instances created here (no global random state), so the same
arguments always give the same records. Nothing is read or written at import time.

Command line (regenerates the shipped demo sample)::

    python -m bdc_tables_docdb.demo.generator --n 3000 --seed 7 --out DIR
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import datetime as dt
import functools
import gc
import gzip
import io
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

__all__ = [
    "DEFAULT_NOW",
    "OPEN_DATA_BUCKET",
    "CODE_OCEAN_BUCKET",
    "MESSY_KINDS",
    "REAL_RECORD_IDS",
    "generate_records",
    "generate_open_data_objects",
    "mutate",
    "messy_kinds",
    "qc_status",
    "build_sample_records",
    "write_sample",
    "main",
]

DEFAULT_NOW = "2026-11-01T00:00:00Z"
"""Default "now" of the generator: every generated timestamp is at or before it."""

OPEN_DATA_BUCKET = "aind-open-data"
"""Bucket of the open-data objects (keys of :func:`generate_open_data_objects` are relative to it)."""

CODE_OCEAN_BUCKET = "codeocean-s3datasetsbucket-1u41qdg42ur9"
"""Bucket used for the locations of the assets that live in Code Ocean instead of the open-data bucket."""

PRIVATE_BUCKET = "aind-private-data-prod-o5171v"

REAL_RECORD_IDS = (
    "c9888108-f413-41cc-9a1d-418937a04410",  # v2_record.json (pophys derived)
    "ad668ba9-326a-4b5d-abc1-63ddefaf0a41",  # v2_raw.json (VR foraging raw)
    "3b3cad8f-774b-42a1-bdce-a84269078db2",  # v2_derived.json (VR foraging derived)
    "1750a84b-f873-4845-bd21-13b6520235fb",  # fiber_example3.json (fib derived)
)
"""``_id`` of the four real DocDB records shipped in the demo sample."""

MESSY_KINDS: dict[str, str | None] = {
    "quality_control_null": "quality_control",
    "quality_control_missing": "quality_control",
    "acquisition_null": "acquisition",
    "processing_null": "processing",
    "subject_null": "subject",
    "data_description_null": "data_description",
    "project_name_null": "data_description",
    "modalities_null": "data_description",
    "modality_without_abbreviation": None,  # schema-valid: the modality models default the abbreviation
    "investigators_string": "data_description",
    "status_history_empty": "quality_control",
    "process_without_start": "processing",
    "experimenters_dict": "acquisition",
    "other_identifiers_missing": None,
}
"""Every kind of deliberate messiness :func:`messy_kinds` recognises, with the core field it breaks
(``None`` when it breaks no core-file schema). Duplicate names are a property of a record *list*; find
them with a ``Counter`` over ``name``."""

_UTC = dt.timezone.utc
_DESCRIBED = "https://raw.githubusercontent.com/AllenNeuralDynamics/aind-data-schema/main/src/aind_data_schema/core/"
_ORCID = "Open Researcher and Contributor ID (ORCID)"
_ROR = "Research Organization Registry (ROR)"
_NCBI = "National Center for Biotechnology Information (NCBI)"

_MODALITY_NAMES = {
    "behavior": "Behavior",
    "behavior-videos": "Behavior videos",
    "fib": "Fiber photometry",
    "pophys": "Planar optical physiology",
    "SPIM": "Selective plane illumination microscopy",
    "slap2": "Random access projection microscopy",
    "ecephys": "Extracellular electrophysiology",
}

_AIND = {
    "name": "Allen Institute for Neural Dynamics",
    "abbreviation": "AIND",
    "registry": _ROR,
    "registry_identifier": "04szwah67",
}
_AIBS = {
    "name": "Allen Institute for Brain Science",
    "abbreviation": "AIBS",
    "registry": _ROR,
    "registry_identifier": "00dcv1019",
}
_ORG_AI = {"name": "Allen Institute", "abbreviation": "AI", "registry": _ROR, "registry_identifier": "03cpe7c52"}
_ORG_JAX = {"name": "Jackson Laboratory", "abbreviation": "JAX", "registry": _ROR, "registry_identifier": "021sy4w91"}
_ORG_UNKNOWN = {"name": "Unknown", "abbreviation": "UNKNOWN", "registry": None, "registry_identifier": None}
_SIMONS = {"name": "Simons Foundation", "abbreviation": None, "registry": _ROR, "registry_identifier": "01cmst727"}

# ---------------------------------------------------------------------------------------------------
# Platform catalogue
# ---------------------------------------------------------------------------------------------------

_DF_TASKS = ("Uncoupled Baiting", "Coupled Baiting", "Uncoupled Without Baiting", "Coupled Without Baiting")
_DF_STAGES = ("STAGE_1_WARMUP", "STAGE_1", "STAGE_2", "STAGE_3", "STAGE_FINAL", "GRADUATED")

_VR_CURRICULA: dict[str, tuple[str, ...]] = {
    "template": ("learn_to_run", "learn_to_stop", "patch_foraging_easy", "patch_foraging", "graduated"),
    "depletion": ("habituation", "single_site", "depletion_easy", "depletion_hard", "depletion_final"),
    "cognitive_flexibility": ("shaping", "odor_discrimination", "reversal_1", "reversal_2", "reversal_final"),
}


@dataclass(frozen=True)
class _Platform:
    key: str
    weight: float
    sessions: tuple[int, int]
    first: str  # earliest acquisition date (ISO)
    gap_days: tuple[float, float]
    prefix: str
    projects: tuple[str, ...]
    investigators: tuple[str, ...]
    experimenters: tuple[str, ...]
    instruments: tuple[str, ...]
    genotypes: tuple[str, ...]


_PLATFORMS: tuple[_Platform, ...] = (
    _Platform(
        "vr_foraging", 0.10, (3, 18), "2025-01-13", (0.8, 3.0), "",
        ("Cognitive flexibility in patch foraging",),
        ("Bruno Cruz", "Cindy Poo", "Tiffany Ona"),
        ("huy.nguyen", "Huy Nguyen", "olivia.unokesan", "Olivia Unokesan", "tiffany.ona", "Bruno", "bruno.cruz"),
        ("4A", "4B", "5A", "5B", "13A", "13B"),
        ("wt/wt", "wt/wt", "Dbh-Cre-KI/wt", "Chat-IRES-Cre-neo/wt"),
    ),
    _Platform(
        "dynamic_foraging", 0.12, (3, 24), "2023-06-05", (0.8, 2.5), "behavior_",
        ("Discovery-Neuromodulator circuit dynamics during foraging", "Behavior Platform",
         "Thalamus in the middle"),
        ("Avery Kim", "Morgan Reyes", "Cindy Lee"),
        ("Smith, John", "john smith", "JOHN", "Jane Doe, jane", "maria.garcia", "Maria Garcia", "Avery Kim",
         "Cindy", "o'brien-smith; X"),
        ("447-3-B_20240115", "447-2-A_20231120", "447-1-C_2024-05-02", "323_EPHYS1_20231003",
         "322_BEH5_240301", "446-8-D_20250212"),
        ("wt/wt", "Dbh-Cre-KI/wt", "Th-Cre/wt", "Chat-IRES-Cre-neo/wt", "Slc6a4-Cre/wt", "Drd1-Cre/wt"),
    ),
    _Platform(
        "fip", 0.04, (3, 10), "2023-06-05", (1.0, 4.0), "FIP_",
        ("Discovery-Neuromodulator circuit dynamics during foraging",),
        ("Morgan Reyes", "Kai Tanaka"),
        ("Kai Tanaka", "kai.tanaka", "Lee, Dana", "DANA LEE"),
        ("FIP_1_230815", "FIP_2_240110", "FIP_3_250301"),
        ("Dbh-Cre-KI/wt", "Th-Cre/wt", "Slc6a4-Cre/wt"),
    ),
    _Platform(
        "pophys", 0.08, (3, 12), "2023-03-01", (1.0, 5.0), "multiplane-ophys_",
        ("Learning mFISH-V1omFISH", "OpenScope", "V1 Omnibus"),
        ("Priya Natarajan", "Elena Petrova", "Tomas Berg"),
        ("unknown user", "Kelly Tran", "kelly.tran", "ramon.ortiz", "Ramon Ortiz"),
        ("429-mesoscope-20220321", "MESO.2", "MESO.1_20240110", "CCF-MESO.1_2025-02-03"),
        ("Slc32a1-IRES-Cre/wt;Oi1(TIT2L-jGCaMP8s-WPRE-ICL-IRES-tTA2)/wt",
         "Slc17a7-IRES2-Cre/wt;Camk2a-tTA/wt;Ai93(TITL-GCaMP6f)/wt",
         "Sst-IRES-Cre/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt", "Vip-IRES-Cre/wt;Ai148(TIT2L-GC6f-ICL-tTA2)/wt"),
    ),
    _Platform(
        "smartspim", 0.30, (1, 2), "2023-03-01", (20.0, 90.0), "SmartSPIM_",
        ("Thalamus in the middle", "Cell Type LUT", "MSMA Platform"),
        ("Nikhil Rao", "Cindy Lee", "Grace Okafor"),
        ("Cindy Lee", "cindy", "Nikhil Rao", "nikhil.rao", "grace.okafor"),
        ("SmartSPIM2-2_20240101", "SmartSPIM1-1_20231005", "SmartSPIM3-2_20240601", "SmartSPIM2-1_250115"),
        ("wt/wt", "Pvalb-IRES-Cre/wt", "Sst-IRES-Cre/wt", "Slc17a6-IRES-Cre/wt", "Vglut2-Cre/wt;Ai14(RCL-tdT)/wt"),
    ),
    _Platform(
        "exaspim", 0.10, (1, 1), "2023-09-01", (30.0, 90.0), "exaSPIM_",
        ("Single-neuron computations within brain-wide circuits (SCBC)", "MSMA Platform"),
        ("Grace Okafor", "Hugo Lindqvist"),
        ("hugo.lindqvist", "Hugo Lindqvist", "grace.okafor"),
        ("exaSPIM_01_20240301", "exaSPIM_02_20240815", "exaSPIM-01_2025-03-01"),
        ("wt/wt", "Tlx3-Cre_PL56/wt", "Sim1-Cre_KJ18/wt"),
    ),
    _Platform(
        "slap2", 0.06, (2, 8), "2024-03-01", (1.0, 6.0), "slap2_",
        ("Brain Computer Interface", "Neurobiology of Action"),
        ("Ravi Menon", "Sofia Marquez"),
        ("Ravi Menon", "ravi.menon", "Cindy", "sofia.marquez"),
        ("SLAP2_1_20240501", "SLAP2_2_20250110", "slap2-rig-2"),
        ("wt/wt", "Slc17a7-IRES2-Cre/wt", "Cux2-CreERT2/wt"),
    ),
    _Platform(
        "ecephys", 0.18, (1, 4), "2023-03-01", (1.0, 10.0), "ecephys_",
        ("Ephys Platform", "Thalamus in the middle", "Neurobiology of Action"),
        ("Sam Patel", "Dana Lee", "Jonas Weber"),
        ("Sam Patel", "sam.patel", "Lee, Dana", "DANA LEE", "jonas.weber", "Jonas"),
        ("323_EPHYS1_20231003", "323_EPHYS2-RF_2024-01-18", "NP3_2025-01-01", "327_NP2_240401", "NP.1"),
        ("wt/wt", "Pvalb-IRES-Cre/wt;Ai32(RCL-ChR2(H134R)_EYFP)/wt", "Sst-IRES-Cre/wt", "Vip-IRES-Cre/wt"),
    ),
    _Platform(
        "human", 0.02, (1, 3), "2024-06-01", (5.0, 30.0), "behavior_",
        ("Human Psychophysics Pilot",),
        ("Tomas Berg",),
        ("Tomas Berg", "tomas.berg"),
        ("HPS-1", "HPS-2_20250110"),
        ("",),
    ),
)
_PLATFORM_BY_KEY = {p.key: p for p in _PLATFORMS}

_ACQ_TYPES = {
    "pophys": ("OPHYS_2_images_A_passive", "OPHYS_1_images_A", "OPHYS_3_images_B", "OPHYS_5_images_B_passive"),
    "smartspim": ("SmartSPIM", "SmartSPIM whole brain"),
    "exaspim": ("exaSPIM",),
    "slap2": ("SLAP2 dendritic imaging", "SLAP2 BCI"),
    "ecephys": ("Passive receptive field mapping", "Spontaneous activity", "Optotagging", "Dynamic foraging ephys"),
    "fip": ("FIP", "FIP passive"),
    "human": ("Human psychophysics",),
}

_STRUCTURES = (  # acronym, CCF id, name
    ("PL", "972", "Prelimbic area"),
    ("ACB", "56", "Nucleus accumbens"),
    ("VTA", "749", "Ventral tegmental area"),
    ("DR", "872", "Dorsal nucleus raphe"),
    ("LC", "147", "Locus ceruleus"),
    ("MOs", "993", "Secondary motor area"),
    ("ORBl", "723", "Orbital area, lateral part"),
    ("CP", "672", "Caudoputamen"),
    ("root", "997", "root"),
)
_VIRUSES = ("VIR32017_PHPeB", "VIR32294_PHPeB", "VIR30533_PHPeB", "VIR31904_AAV9", "VIR32566_PHPeB",
            "VIR32701_AAV1", "VIR30118_PHPeB")
_VIRUS_NAMES = ("AAV9-hSyn-GRAB-DA2m", "AAV-hSyn-GRAB-NE2m", "AAV9-hSyn-GRAB-ACh3.0", "AAV-Syn-jGCaMP8m")
_SPIM_CHANNELS = ("Ex_445_Em_469", "Ex_488_Em_525", "Ex_561_Em_600", "Ex_639_Em_680")
_PROBES = ("ProbeA", "ProbeB", "ProbeC", "ProbeD", "ProbeE", "ProbeF")
_CAMERAS = ("FaceCamera", "SideCamera", "BottomCamera", "BodyCamera")
_QC_REVIEWERS = ("Kelly Tran", "Sam Patel", "Avery Kim", "Nikhil Rao", "Olivia Unokesan", "Dana Lee")
_PROCESS_EXPERIMENTERS = ("Ahad Bawany", "Johannes Friedrich", "Kai Tanaka", "Grace Okafor", "Jonas Weber")


@dataclass
class _Subject:
    subject_id: str
    platform: _Platform
    species: str  # "mouse" | "human"
    sex: str
    dob: dt.date | None
    year_of_birth: int | None
    genotype: str
    source: dict
    strain: dict | None
    breeding: dict | None
    housing: dict | None
    project: str | None
    investigators: list[str]
    experimenters: list[str]
    has_fib: bool
    implants: list[dict] = field(default_factory=list)  # fiber, structure (tuple|None), translation
    injections: list[dict] = field(default_factory=list)  # structure, materials [(name, tars)]
    surgery_date: dt.date | None = None
    curriculum: str | None = None
    df_task: str | None = None
    subject_schema: str = "2.0.14"


@dataclass
class _Session:
    subject: _Subject
    index: int
    start: dt.datetime
    end: dt.datetime
    fmt: str  # "z" | "local"
    raw_name: str
    modalities: list[str]
    acquisition_type: str | None
    instrument_id: str | None
    experimenters: list[Any]
    fib_streams: list[dict]
    stage_in_use: str | None
    trials: int
    spim_channels: tuple[str, ...]
    probes: tuple[str, ...]


class _Ctx:
    """Generation state shared by one :func:`generate_records` or :func:`mutate` call."""

    def __init__(self, rng: random.Random, now: dt.datetime) -> None:
        self.rng = rng
        self.now = now
        self.subject_ids: set[str] = set(_RESERVED_SUBJECT_IDS)
        self.names: set[str] = set()
        self.ids: set[str] = set()

    def uuid(self) -> str:
        """A fresh uuid4 string drawn from the context RNG (never repeated within the context)."""
        while True:
            value = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            if value not in self.ids:
                self.ids.add(value)
                return value


_RESERVED_SUBJECT_IDS = frozenset({"828418", "808054", "692478"})

# ---------------------------------------------------------------------------------------------------
# Time helpers
# ---------------------------------------------------------------------------------------------------


def _parse_time(value: str) -> dt.datetime:
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_UTC)
    return parsed.astimezone(_UTC)


@functools.lru_cache(maxsize=64)
def _dst_bounds(year: int) -> tuple[dt.datetime, dt.datetime]:
    march = dt.date(year, 3, 1)
    dst_start = march + dt.timedelta(days=(6 - march.weekday()) % 7 + 7)
    november = dt.date(year, 11, 1)
    dst_end = november + dt.timedelta(days=(6 - november.weekday()) % 7)
    return (dt.datetime(year, 3, dst_start.day, 10, tzinfo=_UTC), dt.datetime(year, 11, dst_end.day, 9, tzinfo=_UTC))


def _pacific_offset(t: dt.datetime) -> int:
    """UTC offset in hours of US Pacific time at ``t`` (DST: 2nd Sunday of March to 1st Sunday of Nov)."""
    start, end = _dst_bounds(t.year)
    return -7 if start <= t < end else -8


def _ts(t: dt.datetime, fmt: str, micro: bool = True) -> str:
    """Format an aware UTC datetime in one of the DocDB styles."""
    if fmt == "z":
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")
    if fmt == "local":
        off = _pacific_offset(t)
        local = t + dt.timedelta(hours=off)
        return local.strftime("%Y-%m-%d %H:%M:%S.%f" if micro else "%Y-%m-%d %H:%M:%S") + f"{off:+03d}:00"
    if fmt == "space_utc":
        return t.strftime("%Y-%m-%d %H:%M:%S.%f+00:00" if micro else "%Y-%m-%d %H:%M:%S+00:00")
    raise ValueError(fmt)


def _ms_z(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _name_clock(t: dt.datetime, fmt: str) -> str:
    if fmt == "local":
        t = t + dt.timedelta(hours=_pacific_offset(t))
    return t.strftime("%Y-%m-%d_%H-%M-%S")


def _minutes(rng: random.Random, lo: float, hi: float) -> dt.timedelta:
    return dt.timedelta(seconds=rng.uniform(lo * 60.0, hi * 60.0))


# ---------------------------------------------------------------------------------------------------
# Small builders
# ---------------------------------------------------------------------------------------------------


def _person(name: str) -> dict:
    return {"object_type": "Person", "name": name, "registry": _ORCID, "registry_identifier": None}


def _modality(abbreviation: str) -> dict:
    return {"name": _MODALITY_NAMES[abbreviation], "abbreviation": abbreviation}


def _code(url: str, version: str | None, name: str | None = None, parameters: dict | None = None) -> dict:
    return {
        "object_type": "Code",
        "url": url,
        "name": name,
        "version": version,
        "container": None,
        "run_script": None,
        "language": None,
        "language_version": None,
        "input_data": None,
        "parameters": parameters,
        "core_dependency": None,
    }


def _weighted(rng: random.Random, pairs: Sequence[tuple[Any, float]]) -> Any:
    total = sum(w for _, w in pairs)
    x = rng.random() * total
    for value, w in pairs:
        x -= w
        if x < 0:
            return value
    return pairs[-1][0]


# ---------------------------------------------------------------------------------------------------
# Subjects and sessions
# ---------------------------------------------------------------------------------------------------


def _new_subject_id(ctx: _Ctx, human: bool) -> str:
    rng = ctx.rng
    while True:
        if human:
            sid = f"H{rng.randrange(1000, 9999)}"
        elif rng.random() < 0.04:
            sid = f"00{rng.randrange(10000, 99999)}"  # leading zeros: must stay a string
        else:
            sid = str(rng.randrange(600000, 850000))
        if sid not in ctx.subject_ids:
            ctx.subject_ids.add(sid)
            return sid


def _draw_subject(ctx: _Ctx, platform: _Platform | None = None) -> _Subject:
    rng = ctx.rng
    if platform is None:
        platform = _weighted(rng, [(p, p.weight) for p in _PLATFORMS])
    human = platform.key == "human"
    sid = _new_subject_id(ctx, human)
    project = None if rng.random() < 0.04 else rng.choice(platform.projects)
    investigators = list(platform.investigators)
    if len(investigators) > 1 and rng.random() < 0.3:
        investigators = investigators[: rng.randint(1, len(investigators))]
    experimenters = rng.sample(platform.experimenters, k=min(len(platform.experimenters), rng.randint(1, 3)))
    has_fib = platform.key == "fip" or (
        platform.key in ("vr_foraging", "dynamic_foraging") and rng.random() < 0.4
    )
    source_pick = rng.random()
    source = _ORG_AI if source_pick < 0.75 else (_ORG_JAX if source_pick < 0.92 else _ORG_UNKNOWN)
    subject = _Subject(
        subject_id=sid,
        platform=platform,
        species="human" if human else "mouse",
        sex=rng.choice(("Male", "Female")),
        dob=None,
        year_of_birth=rng.randrange(1955, 2003) if human else None,
        genotype="" if human else rng.choice(platform.genotypes),
        source=source,
        strain=None,
        breeding=None,
        housing=None,
        project=project,
        investigators=investigators,
        experimenters=experimenters,
        has_fib=has_fib,
        subject_schema=rng.choice(("2.0.13", "2.0.14", "2.3.0")),
    )
    if not human:
        strain_pick = rng.random()
        if strain_pick < 0.55:
            subject.strain = {"name": "C57BL/6J", "species": "Mus musculus",
                              "registry": "Mouse Genome Informatics (MGI)", "registry_identifier": "MGI:3028467"}
        elif strain_pick < 0.6:
            subject.strain = {"name": "BALB/c", "species": "Mus musculus",
                              "registry": "Mouse Genome Informatics (MGI)", "registry_identifier": "MGI:2159737"}
        else:
            subject.strain = {"name": "Unknown", "species": "Mus musculus", "registry": None,
                              "registry_identifier": None}
        if source is _ORG_AI and rng.random() < 0.8:
            subject.breeding = {
                "object_type": "Breeding info",
                "breeding_group": rng.choice(("", "unknown", f"BG-{rng.randrange(100, 999)}")),
                "maternal_id": str(rng.randrange(600000, 850000)),
                "maternal_genotype": subject.genotype,
                "paternal_id": str(rng.randrange(600000, 850000)),
                "paternal_genotype": "wt/wt",
            }
        if rng.random() < 0.8:
            subject.housing = {
                "object_type": "Housing",
                "cage_id": str(rng.randrange(8000000, 8400000)),
                "room_id": rng.choice(("221", "223", "145")),
                "light_cycle": None,
                "home_cage_enrichment": [],
                "cohoused_subjects": [],
            }
    if has_fib:
        n_fibers = rng.randint(1, 4)
        structures = rng.sample(_STRUCTURES[:8], k=rng.randint(1, min(2, n_fibers)))
        for k in range(n_fibers):
            structure: tuple[str, str, str] | None = structures[k % len(structures)]
            roll = rng.random()
            if roll < 0.04:
                structure = _STRUCTURES[-1]  # root -> "missing"
            elif roll < 0.07:
                structure = None  # no primary targeted structure
            ap = round(rng.uniform(-5.5, 2.8), 1)
            ml = round(rng.choice((-1, 1)) * rng.uniform(0.3, 2.5), 1)
            depth = round(rng.uniform(1.0, 4.8), 1)
            tr_roll = rng.random()
            if tr_roll < 0.05:
                translation: list[Any] | None = [ap, ml, depth]  # too short -> coordinates "missing"
            elif tr_roll < 0.08:
                translation = [None, ml, 0, depth]
            elif tr_roll < 0.1:
                translation = None
            else:
                translation = [ap, ml, 0, depth]
            subject.implants.append({"fiber": f"Fiber_{k}", "structure": structure, "translation": translation,
                                     "angle": rng.choice((0, 5, 10))})
        targeted = []
        for imp in subject.implants:
            if imp["structure"] is not None and imp["structure"] not in targeted:
                targeted.append(imp["structure"])
        for structure in targeted:
            if structure[0] == "root" or rng.random() < 0.1:
                continue
            materials = []
            for _ in range(rng.randint(1, 2)):
                tars = rng.choice(_VIRUSES)
                name = rng.choice(_VIRUS_NAMES) if rng.random() < 0.15 else None
                materials.append((name, tars))
            subject.injections.append({"structure": structure, "materials": materials})
        if rng.random() < 0.1:  # an injection elsewhere, not paired with an implant
            subject.injections.append({"structure": rng.choice(_STRUCTURES[:8]),
                                       "materials": [(None, rng.choice(_VIRUSES))]})
    elif platform.key in ("smartspim", "exaspim") and rng.random() < 0.7:
        structure = rng.choice(_STRUCTURES[:8])
        subject.injections.append({"structure": structure, "materials": [(None, rng.choice(_VIRUSES))]})
    if platform.key == "vr_foraging":
        subject.curriculum = rng.choice(tuple(_VR_CURRICULA))
    if platform.key == "dynamic_foraging":
        subject.df_task = rng.choice(_DF_TASKS)
    return subject


def _session_instrument(rng: random.Random, subject: _Subject) -> str | None:
    if subject.platform.key not in ("smartspim", "exaspim") and rng.random() < 0.01:
        return None
    return rng.choice(subject.platform.instruments)


def _experimenters(rng: random.Random, subject: _Subject, start: dt.datetime) -> list[Any]:
    people: list[Any] = list(rng.sample(subject.experimenters, k=rng.randint(1, len(subject.experimenters))))
    if start.year <= 2023 and rng.random() < 0.15:  # older metadata: Person dicts
        idx = rng.randrange(len(people))
        if rng.random() < 0.15:
            people[idx] = {"object_type": "Person"}  # no name at all -> ""
        else:
            people[idx] = {"object_type": "Person", "name": str(people[idx])}
    return people


def _draw_session(ctx: _Ctx, subject: _Subject, index: int, start: dt.datetime) -> _Session:
    rng = ctx.rng
    key = subject.platform.key
    if key in ("smartspim", "exaspim"):
        duration = _minutes(rng, 240, 1800)
    elif key == "ecephys":
        duration = _minutes(rng, 60, 180)
    else:
        duration = _minutes(rng, 30, 95)
    end = start + duration
    p_local = 0.7 if start < dt.datetime(2025, 1, 1, tzinfo=_UTC) else 0.12
    fmt = "local" if rng.random() < p_local else "z"
    modalities: list[str]
    acquisition_type: str | None
    stage = None
    if key == "vr_foraging":
        modalities = ["behavior", "behavior-videos"] + (["fib"] if subject.has_fib else [])
        acquisition_type = "AindVrForaging"
    elif key == "dynamic_foraging":
        modalities = ["behavior", "behavior-videos"] + (["fib"] if subject.has_fib else [])
        acquisition_type = subject.df_task if rng.random() > 0.05 else rng.choice(_DF_TASKS)
        if subject.has_fib:
            stage = _weighted(rng, [("STAGE_2", 0.08), ("STAGE_3", 0.17), ("STAGE_FINAL", 0.5), ("GRADUATED", 0.25)])
        else:
            stage = _DF_STAGES[min(len(_DF_STAGES) - 1, max(0, index // 3 + rng.randint(-1, 1)))]
    elif key == "fip":
        modalities = ["fib", "behavior"] if rng.random() < 0.6 else ["fib"]
        acquisition_type = rng.choice(_ACQ_TYPES["fip"])
    elif key == "pophys":
        modalities = ["pophys", "behavior-videos"] if rng.random() < 0.8 else ["pophys"]
        acquisition_type = rng.choice(_ACQ_TYPES["pophys"])
    elif key in ("smartspim", "exaspim"):
        modalities = ["SPIM"]
        acquisition_type = rng.choice(_ACQ_TYPES[key])
    elif key == "slap2":
        modalities = ["slap2", "behavior"] if rng.random() < 0.4 else ["slap2"]
        acquisition_type = rng.choice(_ACQ_TYPES["slap2"])
    elif key == "ecephys":
        modalities = ["ecephys", "behavior-videos"] if rng.random() < 0.7 else ["ecephys"]
        if rng.random() < 0.15:
            modalities.append("behavior")
        acquisition_type = rng.choice(_ACQ_TYPES["ecephys"])
    else:  # human
        modalities = ["behavior"]
        acquisition_type = _ACQ_TYPES["human"][0]
    if rng.random() < 0.02 and key not in ("vr_foraging", "dynamic_foraging"):
        acquisition_type = None
    fib_streams: list[dict] = []
    if "fib" in modalities:
        for imp in subject.implants:
            k = int(imp["fiber"].split("_")[1])
            quirk = rng.random()
            target: str | None = f"Fiber {k}"
            if quirk < 0.04:
                target = None  # patch cord without connection: skipped by platform_fib
            elif quirk < 0.06:
                target = f"Fiber {k + 5}"  # connection to a fiber that was never implanted
            green = rng.choice(("calcium", "dopamine", "norepinephrine", "acetylcholine", "serotonin"))
            red = _weighted(rng, [(None, 0.5), ("acetylcholine", 0.15), ("dopamine", 0.15), ("calcium", 0.2)])
            fib_streams.append({"cord": f"Patch Cord {k}", "target": target, "green": green, "red": red,
                                "iso": "control" if rng.random() > 0.03 else None})
    prefix = subject.platform.prefix
    name_time = start + (dt.timedelta(seconds=rng.randint(0, 30)) if fmt == "local" else dt.timedelta(0))
    raw_name = f"{prefix}{subject.subject_id}_{_name_clock(name_time, fmt)}"
    while raw_name in ctx.names:
        name_time += dt.timedelta(seconds=1)
        raw_name = f"{prefix}{subject.subject_id}_{_name_clock(name_time, fmt)}"
    ctx.names.add(raw_name)
    channels: tuple[str, ...] = ()
    if key in ("smartspim", "exaspim"):
        channels = tuple(sorted(rng.sample(_SPIM_CHANNELS, k=rng.randint(1, 3))))
    probes: tuple[str, ...] = ()
    if key == "ecephys":
        probes = tuple(_PROBES[: rng.randint(1, 4)])
    return _Session(
        subject=subject,
        index=index,
        start=start,
        end=end,
        fmt=fmt,
        raw_name=raw_name,
        modalities=modalities,
        acquisition_type=acquisition_type,
        instrument_id=_session_instrument(rng, subject),
        experimenters=_experimenters(rng, subject, start),
        fib_streams=fib_streams,
        stage_in_use=stage,
        trials=rng.randint(150, 700),
        spim_channels=channels,
        probes=probes,
    )


def _session_starts(ctx: _Ctx, subject: _Subject, latest: dt.datetime) -> list[dt.datetime]:
    rng = ctx.rng
    platform = subject.platform
    first = dt.datetime.fromisoformat(platform.first).replace(tzinfo=_UTC)
    if first >= latest:
        first = latest - dt.timedelta(days=30)
    span = (latest - first).total_seconds()
    start = first + dt.timedelta(seconds=rng.random() * span)
    count = rng.randint(*platform.sessions)
    starts = []
    for _ in range(count):
        # daytime in Pacific time: 15:00-02:00 UTC
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        moment = day + dt.timedelta(hours=15, seconds=rng.randint(0, 11 * 3600), microseconds=rng.randrange(10**6))
        if moment > latest:
            break
        starts.append(moment)
        start = moment + dt.timedelta(days=rng.uniform(*platform.gap_days))
    if not starts:
        starts.append(latest - dt.timedelta(days=rng.uniform(0, 20), seconds=rng.randint(0, 36000)))
    return starts


# ---------------------------------------------------------------------------------------------------
# Core-file builders
# ---------------------------------------------------------------------------------------------------


def _subject_doc(subject: _Subject) -> dict:
    if subject.species == "human":
        details: dict[str, Any] = {
            "object_type": "Human subject",
            "species": {"name": "Homo sapiens", "common_name": "Human", "registry": _NCBI,
                        "registry_identifier": "NCBI:txid9606"},
            "sex": subject.sex,
            "year_of_birth": subject.year_of_birth,
            "source": dict(_ORG_AI),
        }
    else:
        details = {
            "object_type": "Mouse subject",
            "sex": subject.sex,
            "date_of_birth": subject.dob.isoformat() if subject.dob else None,
            "strain": dict(subject.strain or {}),
            "species": {"name": "Mus musculus", "common_name": "House mouse", "registry": _NCBI,
                        "registry_identifier": "NCBI:txid10090"},
            "alleles": [],
            "genotype": subject.genotype,
            "breeding_info": dict(subject.breeding) if subject.breeding else None,
            "wellness_reports": [],
            "housing": dict(subject.housing) if subject.housing else None,
            "source": dict(subject.source),
            "restrictions": None,
            "rrid": None,
        }
    return {
        "object_type": "Subject",
        "describedBy": _DESCRIBED + "subject.py",
        "schema_version": subject.subject_schema,
        "subject_id": subject.subject_id,
        "subject_details": details,
        "notes": None,
    }


def _structure_doc(structure: tuple[str, str, str]) -> dict:
    return {"atlas": "CCFv3", "name": structure[2], "acronym": structure[0], "id": structure[1]}


def _procedures_doc(subject: _Subject) -> dict | None:
    if subject.species == "human":
        return None
    procs: list[dict] = [{
        "object_type": "Headframe", "headframe_type": "AI Straight bar", "headframe_part_number": None,
        "headframe_material": None, "well_type": "No Well", "well_part_number": None, "protocol_id": None,
    }]
    for inj in subject.injections:
        structure = inj["structure"]
        procs.append({
            "object_type": "Brain injection",
            "coordinate_system_name": "BREGMA_ARID",
            "coordinates": [],
            "dynamics": [{"object_type": "Injection dynamics", "profile": "Bolus", "volume": 200,
                          "volume_unit": "nanoliter"}],
            "injection_materials": [
                {
                    "object_type": "Viral material",
                    "name": name,
                    "tars_identifiers": {"object_type": "Tars virus identifiers", "virus_tars_id": tars,
                                         "plasmid_tars_alias": None, "prep_lot_number": f"VT{tars[3:7]}G",
                                         "prep_date": None, "prep_type": "Purified", "prep_protocol": "SOP#VC003"},
                    "addgene_id": None,
                    "titer": 2500000000000,
                    "titer_unit": "gc/mL",
                }
                for name, tars in inj["materials"]
            ],
            "targeted_structure": _structure_doc(structure),
            "relative_position": ["Left"],
            "protocol_id": None,
        })
    for imp in subject.implants:
        transform: list[dict] = []
        if imp["translation"] is not None:
            transform.append({"object_type": "Translation", "translation": list(imp["translation"])})
        transform.append({"object_type": "Rotation", "angles": [imp["angle"], 0, 0, 0], "angles_unit": "degrees"})
        procs.append({
            "object_type": "Probe implant",
            "protocol_id": None,
            "implanted_device": {
                "object_type": "Fiber probe", "name": imp["fiber"], "core_diameter": 200,
                "core_diameter_unit": "micrometer", "numerical_aperture": 0.37, "ferrule_material": "Ceramic",
                "total_length": "2.0", "length_unit": "millimeter",
                "manufacturer": {"name": "Neurophotometrics", "abbreviation": None, "registry": None,
                                 "registry_identifier": None},
            },
            "device_config": {
                "object_type": "Probe config",
                "device_name": imp["fiber"],
                "primary_targeted_structure": _structure_doc(imp["structure"]) if imp["structure"] else None,
                "other_targeted_structure": [],
                "atlas_coordinate": None,
                "transform": transform,
            },
        })
    surgery = {
        "object_type": "Surgery",
        "start_date": subject.surgery_date.isoformat() if subject.surgery_date else None,
        "experimenters": ["NSB-949"],
        "ethics_review_id": "2414",
        "protocol_id": "dx.doi.org/10.17504/protocols.io.kqdg392o7g25/v2",
        "animal_weight_prior": None,
        "animal_weight_post": None,
        "weight_unit": "gram",
        "procedures": procs,
        "notes": None,
    }
    return {
        "object_type": "Procedures",
        "describedBy": _DESCRIBED + "procedures.py",
        "schema_version": "2.0.34",
        "subject_id": subject.subject_id,
        "subject_procedures": [surgery],
        "specimen_procedures": [],
        "coordinate_system": None,
        "notes": None,
    }


def _fib_stream(sess: _Session) -> dict:
    connections = []
    configurations: list[dict] = [
        {"object_type": "Light emitting diode config", "device_name": led, "power": 20, "power_unit": "percent",
         "power_measured_at": None}
        for led in ("415nm LED", "470nm LED", "560nm LED")
    ]
    for fs in sess.fib_streams:
        if fs["target"] is not None:
            connections.append({"object_type": "Connection", "source_device": fs["cord"],
                                "target_device": fs["target"], "source_port": None, "target_port": None,
                                "send_and_receive": False})
        fiber = fs["cord"].replace("Patch Cord ", "Fiber_")
        channels = []
        for suffix, measurement, detector, led, wavelength in (
            ("Green", fs["green"], "Green CMOS", "470nm LED", 520),
            ("Isosbestic", fs["iso"], "Green CMOS", "415nm LED", 520),
            ("Red", fs["red"], "Red CMOS", "560nm LED", 590),
        ):
            channels.append({
                "object_type": "Channel",
                "channel_name": f"{fiber}_{suffix}",
                "intended_measurement": measurement,
                "detector": {"object_type": "Detector config", "device_name": detector, "exposure_time": 15.65,
                             "exposure_time_unit": "millisecond", "trigger_type": "Internal", "compression": None},
                "light_sources": [{"object_type": "Light emitting diode config", "device_name": led, "power": 20,
                                   "power_unit": "percent"}],
                "emission_wavelength": wavelength,
                "emission_wavelength_unit": "nanometer",
            })
        configurations.append({"object_type": "Patch cord config", "device_name": fs["cord"], "channels": channels})
    active = ["415nm LED", "470nm LED", "560nm LED", "Green CMOS", "Red CMOS"]
    for fs in sess.fib_streams:
        active += [fs["cord"], fs["cord"].replace("Patch Cord", "Fiber")]
    return {
        "object_type": "Data stream",
        "stream_start_time": _ts(sess.start + dt.timedelta(seconds=30), sess.fmt),
        "stream_end_time": _ts(sess.end - dt.timedelta(seconds=10), sess.fmt),
        "modalities": [_modality("fib")],
        "code": [_code("https://github.com/AllenNeuralDynamics/FIP_DAQ_Control", "1.4.0")],
        "active_devices": active,
        "configurations": configurations,
        "connections": connections,
        "notes": None,
    }


def _stimulus_epochs(sess: _Session) -> list[dict]:
    key = sess.subject.platform.key
    start = _ts(sess.start, sess.fmt)
    end = _ts(sess.end, sess.fmt)
    epoch: dict[str, Any] = {
        "object_type": "Stimulus epoch",
        "stimulus_name": sess.acquisition_type or "Stimulus",
        "stimulus_start_time": start,
        "stimulus_end_time": end,
        "stimulus_modalities": ["Auditory"],
        "code": None,
        "active_devices": [],
        "configurations": [],
        "training_protocol_name": None,
        "curriculum_status": None,
        "notes": None,
        "performance_metrics": None,
    }
    trials = sess.trials
    if key == "vr_foraging":
        epoch["stimulus_modalities"] = ["Auditory", "Visual", "Virtual reality", "Wheel friction"]
        epoch["curriculum_status"] = "True"
        epoch["performance_metrics"] = {
            "object_type": "Performance metrics",
            "output_parameters": {
                "n_choices": trials // 3,
                "n_patches_visited": trials // 20,
                "n_reward_sites_traveled": trials,
                "total_water_consumed": round(trials / 1000, 3),
            },
            "reward_consumed_during_epoch": None, "reward_consumed_unit": None,
            "trials_finished": None, "trials_rewarded": None, "trials_total": None,
        }
    elif key == "dynamic_foraging":
        finished = int(trials * 0.9)
        epoch["stimulus_name"] = "The behavior auditory go cue"
        epoch["training_protocol_name"] = sess.subject.df_task
        epoch["curriculum_status"] = "True" if sess.stage_in_use else "False"
        epoch["performance_metrics"] = {
            "object_type": "Performance metrics",
            "output_parameters": {
                "meta": {"box": sess.instrument_id, "session_end_time": end, "session_run_time_in_min": 60},
                "task_parameters": {
                    "task": sess.acquisition_type,
                    "stage_in_use": sess.stage_in_use,
                    "curriculum_name": sess.subject.df_task,
                    "curriculum_version": "2.3",
                    "curriculum_schema_version": "1.0",
                },
                "foraging_efficiency": round(0.55 + (trials % 40) / 100, 3),
            },
            "reward_consumed_during_epoch": None, "reward_consumed_unit": "milliliter",
            "trials_finished": finished, "trials_rewarded": finished // 2, "trials_total": trials,
        }
    elif key in ("fip", "pophys", "slap2", "ecephys", "human"):
        epoch["stimulus_modalities"] = ["Visual"] if key != "fip" else ["None"]
    else:
        return []
    return [epoch]


def _acquisition_doc(sess: _Session) -> dict:
    subject = sess.subject
    streams = []
    if "fib" in sess.modalities:
        streams.append(_fib_stream(sess))
    other = [m for m in sess.modalities if m != "fib"]
    if other:
        streams.append({
            "object_type": "Data stream",
            "stream_start_time": _ts(sess.start, sess.fmt),
            "stream_end_time": _ts(sess.end, sess.fmt),
            "modalities": [_modality(m) for m in other],
            "code": None,
            "active_devices": (list(sess.probes) or [c for c in sess.spim_channels] or ["FaceCamera", "SideCamera"]),
            "configurations": [],
            "connections": [],
            "notes": None,
        })
    return {
        "object_type": "Acquisition",
        "describedBy": _DESCRIBED + "acquisition.py",
        "schema_version": "2.2.3" if sess.fmt == "z" else "2.2.0",
        "subject_id": subject.subject_id,
        "specimen_id": f"{subject.subject_id}-S1" if subject.platform.key in ("smartspim", "exaspim") else None,
        "acquisition_start_time": _ts(sess.start, sess.fmt),
        "acquisition_end_time": _ts(sess.end, sess.fmt),
        "experimenters": [dict(e) if isinstance(e, dict) else e for e in sess.experimenters],
        "protocol_id": None,
        "ethics_review_id": ["2414"],
        "instrument_id": sess.instrument_id,
        "acquisition_type": sess.acquisition_type,
        "notes": None,
        "coordinate_system": None,
        "calibrations": [],
        "maintenance": [],
        "data_streams": streams,
        "stimulus_epochs": _stimulus_epochs(sess),
        "manipulations": [],
        "subject_details": {
            "object_type": "Acquisition subject details",
            "mouse_platform_name": "wheel" if subject.platform.key == "vr_foraging" else "disc",
            "animal_weight_prior": None,
            "animal_weight_post": None,
            "weight_unit": "gram",
            "anaesthesia": None,
            "reward_consumed_total": None,
            "reward_consumed_unit": "milliliter",
        } if subject.species == "mouse" else None,
    }


def _instrument_doc(sess: _Session) -> dict | None:
    if sess.instrument_id is None or (sess.start.year == 2023 and sess.index % 4 == 0):
        return None
    return {
        "object_type": "Instrument",
        "describedBy": _DESCRIBED + "instrument.py",
        "schema_version": "2.0.36",
        "instrument_id": sess.instrument_id,
        "location": None,
        "modification_date": (sess.start - dt.timedelta(days=40)).date().isoformat(),
        "modalities": [_modality(m) for m in sess.modalities],
        "calibrations": None,
        "coordinate_system": None,
        "temperature_control": None,
        "notes": None,
        "connections": [],
        "components": [],
    }


def _data_description(
    sess: _Session, name: str, level: str, creation: str, modalities: list[str], source: list[str] | None,
    dd_schema: str, institution: dict,
) -> dict:
    subject = sess.subject
    investigators = [_person(n) for n in subject.investigators]
    funding = [{"object_type": "Funding", "funder": dict(_ORG_AI), "grant_number": None,
                "fundee": [_person(n) for n in subject.investigators]}]
    if subject.platform.key == "vr_foraging":
        funding.append({"object_type": "Funding", "funder": dict(_SIMONS), "grant_number": "Simons863738",
                        "fundee": [_person(n) for n in subject.investigators[1:]] or None})
    group = {"pophys": "ophys", "ecephys": "ephys", "smartspim": "MSMA", "exaspim": "MSMA",
             "dynamic_foraging": "behavior", "vr_foraging": None}.get(subject.platform.key)
    return {
        "object_type": "Data description",
        "describedBy": _DESCRIBED + "data_description.py",
        "schema_version": dd_schema,
        "license": "CC-BY-4.0",
        "subject_id": subject.subject_id,
        "creation_time": creation,
        "tags": None,
        "name": name,
        "institution": dict(institution),
        "funding_source": funding,
        "data_level": level,
        "group": group,
        "investigators": investigators,
        "project_name": subject.project,
        "restrictions": None,
        "modalities": [_modality(m) for m in modalities],
        "source_data": source,
        "data_summary": None,
    }


# --- QC -----------------------------------------------------------------------------------------------

_DROPDOWNS = {
    "mc": (["Motion correction successful", "No motion correction applied", "Motion correction failed",
            "Motion correction partially successful"], ["Pass", "Fail", "Fail", "Fail"]),
    "fov": (["Quality is sufficient", "Timeseries shuffled between planes", "Field of view associated with "
             "incorrect area and/or depth"], ["Pass", "Fail", "Fail"]),
    "stitch": (["No misalignment", "Minor misalignment", "Severe misalignment"], ["Pass", "Pass", "Fail"]),
}


def _metric_value(rng: random.Random, kind: str) -> Any:
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.85
    if kind == "int":
        return rng.randrange(0, 5000)
    if kind == "float":
        return round(rng.uniform(0, 1.5), 3)
    if kind == "str":
        return rng.choice(("ok", "Session ended early", "Low lick rate", ""))
    if kind == "list_int":
        return [rng.randrange(0, 20) for _ in range(rng.randint(0, 3))]
    if kind == "list_float":
        return [round(rng.uniform(0, 100), 1) for _ in range(3)]
    if kind == "dict_small":
        return {"value": round(rng.uniform(0, 10), 2), "threshold": 5, "unit": "Hz"}
    if kind == "dict_baseline":
        return {"channel": ["G", "Iso", "R"], "b_inf": [round(rng.uniform(20, 300), 2) for _ in range(3)],
                "t_slow": [round(rng.uniform(100, 150000)), None, round(rng.uniform(100, 150000))]}
    if kind.startswith("dropdown_"):
        options, statuses = _DROPDOWNS[kind[len("dropdown_"):]]
        value = rng.choice(options) if rng.random() < 0.6 else None
        return {"value": value, "options": list(options), "status": list(statuses), "type": "dropdown"}
    raise ValueError(kind)


def _metric_templates(sess: _Session, modality: str, stage: str) -> list[tuple[str, dict, str, bool]]:
    """(name, tags, value kind, manual?) candidates for one modality at one stage."""
    key = sess.subject.platform.key
    out: list[tuple[str, dict, str, bool]] = []
    if modality == "fib":
        if stage == "Raw data":
            for ch in ("green", "iso", "red"):
                out.append(("CsvTestSuite::test_infer_missing_headers", {"Channel": ch}, "bool", False))
                out.append(("CsvTestSuite::test_is_not_empty", {"Channel": ch}, "none", False))
            out.append(("ContractTestSuite::test_has_errors_on_load", {"Dataset_Contract": "Contract tests"},
                        "none", False))
            out.append(("DatasetTestSuite::test_sampling_rate", {"Dataset_Contract": "Dataset tests"}, "bool", False))
        else:
            for fs in sess.fib_streams:
                k = fs["cord"].rsplit(" ", 1)[1]
                out.append((f"Baseline correction of ROI {k} using method 'bright'", {"Fiber ROI": f"Fiber ROI {k}"},
                            "dict_baseline", True))
                out.append((f"Motion correction of ROI {k} using method 'bright'", {"Fiber ROI": f"Fiber ROI {k}"},
                            "float", True))
    elif modality == "behavior" and key == "vr_foraging":
        for device, suite in (("HarpBehavior", "HarpDeviceTestSuite"), ("HarpLickometer", "HarpDeviceTestSuite"),
                              ("HarpTreadmill", "HarpTreadmillTestSuite"), ("FaceCamera", "CameraTestSuite"),
                              ("Data contract", "ContractTestSuite"), ("VrForaging", "VrForagingQcSuite")):
            out.append((f"{suite}::test_has_whoami", {device: suite}, "bool", False))
            out.append((f"{suite}::test_read_dump_is_complete", {device: suite}, "int", False))
        out.append(("HarpTreadmillTestSuite::test_torque", {"HarpTreadmill": "HarpTreadmillTestSuite"},
                    "dict_small", False))
    elif modality == "behavior":
        out += [
            ("Foraging efficiency", {"Behavior": "Performance"}, "float", False),
            ("Side bias", {"Behavior": "Performance"}, "float", False),
            ("Lick interval violations", {"Behavior": "Licks"}, "int", False),
            ("Reward delivery", {"Behavior": "Hardware"}, "bool", False),
            ("Session notes", {"Behavior": "Annotations"}, "str", True),
        ]
    elif modality == "behavior-videos":
        for cam in _CAMERAS[:2]:
            out += [
                ("Video frame count", {"Camera": cam}, "int", False),
                ("Dropped frames", {"Camera": cam}, "list_int", False),
                ("Camera frame rate", {"Camera": cam}, "float", False),
            ]
    elif modality == "pophys":
        for k in range(2):
            out += [
                (f"VISp_{k} Registration Summary", {"Motion Correction Registration Summary": f"VISp_{k}"},
                 "dropdown_mc", True),
                (f"VISp_{k} FOV Quality", {"Motion Correction FOV Quality": f"VISp_{k}"}, "dropdown_fov", True),
                (f"VISp_{k} ROI count", {"Segmentation": f"VISp_{k}"}, "int", False),
            ]
    elif modality == "SPIM":
        for ch in sess.spim_channels:
            if stage == "Raw data":
                out.append((f"Saturation {ch}", {"Channel": ch}, "float", False))
            else:
                out.append((f"Stitching quality {ch}", {"Channel": ch}, "dropdown_stitch", True))
                out.append((f"Cell count {ch}", {"Channel": ch}, "int", False))
        out.append(("Tile coverage" if stage == "Raw data" else "Atlas alignment",
                    {"Registration": "CCF"} if stage != "Raw data" else {"Acquisition": "Tiles"},
                    "list_float" if stage == "Raw data" else "bool", stage != "Raw data"))
    elif modality == "ecephys":
        for probe in sess.probes:
            if stage == "Raw data":
                out.append((f"Raw LFP power {probe}", {"probe": probe}, "list_float", False))
                out.append((f"Saturation events {probe}", {"probe": probe}, "none", False))
            else:
                out.append((f"Probe drift {probe}", {"probe": probe}, "float", True))
                out.append((f"Noise level {probe}", {"probe": probe}, "dict_small", False))
    elif modality == "slap2":
        for k in (1, 2):
            out.append((f"Motion correction quality DMD{k}", {"DMD": f"DMD{k}"}, "float", True))
            out.append((f"Frame rate DMD{k}", {"DMD": f"DMD{k}"}, "float", False))
    return out


def _status_entry(evaluator: str, status: str, timestamp: str) -> dict:
    return {"object_type": "QC status", "evaluator": evaluator, "status": status, "timestamp": timestamp}


def _status_history(
    rng: random.Random, manual: bool, t: dt.datetime, stamp: str, fmt: str, limit: dt.datetime
) -> list[dict]:
    """Status history of one metric. ``stamp`` is ``t`` formatted: metrics of one run share it."""
    if manual:
        history = [_status_entry("Pending review", "Pending", stamp)]
        if rng.random() < 0.5:
            t2 = t + dt.timedelta(hours=rng.uniform(1, 24 * 20))
            if t2 < limit:
                history.append(_status_entry(rng.choice(_QC_REVIEWERS),
                                             _weighted(rng, _REVIEW_OUTCOMES), _ts(t2, fmt)))
        return history
    status = _weighted(rng, _AUTO_OUTCOMES)
    history = [_status_entry("Automated", status, stamp)]
    if status == "Fail" and rng.random() < 0.1:
        t2 = t + dt.timedelta(hours=rng.uniform(1, 24 * 5))
        if t2 < limit:
            history.append(_status_entry(rng.choice(_QC_REVIEWERS), "Pass", _ts(t2, fmt)))
    return history


_REVIEW_OUTCOMES = (("Pass", 0.8), ("Fail", 0.2))
_AUTO_OUTCOMES = (("Pass", 0.75), ("Fail", 0.2), ("Pending", 0.05))


def _tag_key(k: str, v: str) -> str:
    return f"{k}:{v}"


def qc_status(metrics: Any) -> dict[str, str]:
    """Compute a ``quality_control.status`` mapping the way upstream does.

    Every metric with a non-empty ``status_history`` contributes its latest status to each of its keys: its
    tags (``"key:value"`` for dict tags, the bare string for list tags), its modality abbreviation and its
    stage. A key is ``Fail`` if any contribution fails, else ``Pending`` if any is pending, else ``Pass``.
    Tag keys come first (in first-seen order), then modalities, then stages, as in the real records.
    Metrics whose ``status_history`` is empty are ignored. Non-list input gives ``{}``.
    """
    if not isinstance(metrics, list):
        return {}
    tags: dict[str, list[str]] = {}
    mods: dict[str, list[str]] = {}
    stages: dict[str, list[str]] = {}
    for metric in metrics:
        if not isinstance(metric, dict):
            continue
        history = metric.get("status_history")
        if not isinstance(history, list) or not history or not isinstance(history[-1], dict):
            continue
        status = history[-1].get("status")
        metric_tags = metric.get("tags")
        if isinstance(metric_tags, dict):
            for k, v in metric_tags.items():
                tags.setdefault(_tag_key(k, v), []).append(status)
        elif isinstance(metric_tags, list):
            for t in metric_tags:
                tags.setdefault(str(t), []).append(status)
        modality = metric.get("modality")
        if isinstance(modality, dict) and modality.get("abbreviation"):
            mods.setdefault(modality["abbreviation"], []).append(status)
        if metric.get("stage"):
            stages.setdefault(metric["stage"], []).append(status)
    out: dict[str, str] = {}
    for group in (tags, mods, stages):
        for key, statuses in group.items():
            out[key] = "Fail" if "Fail" in statuses else ("Pending" if "Pending" in statuses else "Pass")
    return out


def _quality_control(
    ctx: _Ctx, sess: _Session, modalities: list[str], stages: list[str], t0: dt.datetime, list_tags: bool,
    related: list[str],
) -> dict:
    rng = ctx.rng
    fmt = "space_utc" if list_tags and rng.random() < 0.6 else "z"
    metrics: list[dict] = []
    stamp = _ts(t0, fmt)  # one QC run: every metric shares its first timestamp, as in the real records
    for stage in stages:
        for modality in modalities:
            templates = _metric_templates(sess, modality, stage)
            if not templates:
                continue
            k = min(len(templates), rng.randint(1, 2 if stage == "Raw data" else 3))
            for name, tags, kind, manual in rng.sample(templates, k=k):
                metric = {
                    "object_type": "QC metric",
                    "name": name,
                    "modality": _modality(modality),
                    "stage": stage,
                    "value": _metric_value(rng, kind),
                    "status_history": _status_history(rng, manual, t0, stamp, fmt, ctx.now),
                    "description": None if rng.random() < 0.8 else f"Automated check: {name}",
                    "reference": None,
                    "tags": [f"{k2} {v2}" for k2, v2 in tags.items()] if list_tags else dict(tags),
                    "evaluated_assets": None,
                }
                metrics.append(metric)
    if "ecephys" in modalities and "Processing" in stages:
        for probe in sess.probes[:1]:
            t = t0 + dt.timedelta(minutes=rng.uniform(5, 300))
            if t > ctx.now:
                continue
            metrics.append({
                "object_type": "Curation metric",
                "name": f"Unit curation {probe}",
                "modality": _modality("ecephys"),
                "stage": "Processing",
                "value": [{"unit_id": u, "label": rng.choice(("good", "mua", "noise"))} for u in range(3)],
                "type": "ephys unit labels",
                "status_history": [_status_entry("Automated", "Pass", _ts(t, fmt))],
                "curation_history": [{"object_type": "Curation history", "curator": rng.choice(_QC_REVIEWERS),
                                      "timestamp": _ts(t, fmt)}],
                "description": None,
                "reference": None,
                "tags": [f"probe {probe}"] if list_tags else {"probe": probe},
                "evaluated_assets": None,
            })
    if metrics and rng.random() < 0.05:
        metric = dict(metrics[0])
        metric["name"] = "Reviewer annotation"
        metric["stage"] = "Analysis"
        metric["value"] = rng.choice((True, "looks fine", 3, None))
        t2 = t0 + dt.timedelta(days=2)
        metric["status_history"] = _status_history(rng, True, t2, _ts(t2, fmt), fmt, ctx.now)
        metrics.append(metric)
    if metrics and related and rng.random() < 0.08:
        metric = dict(metrics[0])
        metric["name"] = "Cross-session consistency"
        metric["stage"] = "Multi-asset"
        metric["value"] = {"matched_sessions": len(related), "score": round(rng.random(), 3)}
        metric["evaluated_assets"] = list(related)
        metric["status_history"] = _status_history(rng, False, t0, stamp, fmt, ctx.now)
        metrics.append(metric)
    if list_tags:
        grouping: list[Any] = []
        for m in metrics:
            for t in m["tags"]:
                if t not in grouping:
                    grouping.append(t)
    else:
        keys: list[str] = []
        for m in metrics:
            for k in m["tags"]:
                if k not in keys:
                    keys.append(k)
        grouping = ["modality", keys]
    return {
        "object_type": "Quality control",
        "describedBy": _DESCRIBED + "quality_control.py",
        "schema_version": rng.choice(("2.1.1", "2.2.0")) if list_tags else rng.choice(("2.4.0", "2.4.1")),
        "metrics": metrics,
        "key_experimenters": None,
        "notes": None,
        "default_grouping": grouping,
        "allow_tag_failures": [],
        "status": qc_status(metrics),
    }


# --- Processing ---------------------------------------------------------------------------------------

_PRODUCT_PROCESSES = {
    "behavior": (("Pipeline",), "https://github.com/AllenNeuralDynamics/aind-vr-foraging-processing"),
    "df_behavior": (("File format conversion",), "https://github.com/AllenNeuralDynamics/aind-dynamic-foraging-nwb"),
    "fib": (("dF/F estimation",), "https://github.com/AllenNeuralDynamics/aind-fip-dff"),
    "pophys": (("Video motion correction", "Video plane decrosstalk", "Video ROI segmentation",
                "Video ROI timeseries extraction", "dF/F estimation"),
               "https://github.com/AllenNeuralDynamics/aind-ophys-pipeline"),
    "stitched": (("Image tile alignment", "Image tile fusing", "Image cell segmentation",
                  "Image cell quantification", "Image atlas alignment"),
                 "https://github.com/AllenNeuralDynamics/aind-smartspim-pipeline"),
    "spim_processed": (("Image destriping", "Image flat-field correction"),
                       "https://github.com/AllenNeuralDynamics/aind-smartspim-destripe"),
    "fused": (("Image tile alignment", "Image tile fusing"), "https://github.com/AllenNeuralDynamics/exaspim-pipeline"),
    "slap2": (("Video motion correction", "Video ROI timeseries extraction"),
              "https://github.com/AllenNeuralDynamics/slap2-pipeline"),
    "ecephys": (("Ephys preprocessing", "Spike sorting", "Ephys postprocessing", "Ephys curation"),
                "https://github.com/AllenNeuralDynamics/aind-ephys-pipeline"),
}

_PIPELINE_NAMES = {
    "behavior": ("", "VR Foraging Processing"),
    "df_behavior": ("Dynamic Foraging NWB Packaging",),
    "fib": ("Fiberphotometry Schema 2.0 Processing Pipeline",),
    "pophys": ("Multiplane Ophys Processing Pipeline",),
    "stitched": ("SmartSPIM Pipeline",),
    "spim_processed": ("SmartSPIM Destriping",),
    "fused": ("exaSPIM Fusion Pipeline",),
    "slap2": ("SLAP2 Processing Pipeline",),
    "ecephys": ("Ephys Processing Pipeline (Kilosort 2.5)", "Ephys Processing Pipeline (Kilosort 4)"),
}


def _process_doc(process_type: str, url: str, version: str, start: str | None, end: str | None,
                 pipeline_name: str | None, experimenters: list[str]) -> dict:
    doc = {
        "object_type": "Data process",
        "process_type": process_type,
        "name": process_type,
        "stage": "Processing",
        "code": _code(url, version),
        "experimenters": experimenters,
        "pipeline_name": pipeline_name,
        "start_date_time": start,
        "end_date_time": end,
        "output_path": "/results",
        "output_parameters": None,
        "notes": None,
        "resources": None,
    }
    return doc


def _processing_doc(
    rng: random.Random, product: str | None, t_start: dt.datetime, t_end: dt.datetime, fmt: str, schema: str,
    pipeline_name: str | None, version: str = "1.0",
) -> dict:
    if product is None:  # raw asset: upload transforms
        mid = t_start + (t_end - t_start) / 3
        secs = rng.random() < 0.7
        processes = [
            _process_doc("Other", "https://github.com/AllenNeuralDynamics/aind-data-transfer-service", "1.12.0",
                         _ts(t_start, "z", micro=not secs), _ts(mid, "z", micro=not secs), None, ["AIND Scientific Computing"]),
            _process_doc("Compression", "https://github.com/AllenNeuralDynamics/aind-data-transformation", "0.16.1",
                         _ts(mid, "z", micro=not secs), _ts(t_end, "z", micro=not secs), None,
                         ["AIND Scientific Computing"]),
        ]
        pipelines: list[dict] | None = [{
            "object_type": "Code", "url": "https://github.com/AllenNeuralDynamics/aind-airflow-dags",
            "name": "transform_and_upload_v2", "version": "0.37.0", "language": "Python",
            "language_version": "3.9.18", "parameters": {"job_type": "default"},
        }] if rng.random() < 0.8 else None
        return {
            "object_type": "Processing",
            "describedBy": _DESCRIBED + "processing.py",
            "schema_version": schema,
            "data_processes": processes,
            "pipelines": pipelines,
        }
    types, url = _PRODUCT_PROCESSES[product]
    roll = rng.random()
    processes = []
    if roll < 0.04:
        types = ()  # no processes recorded (like the real pophys record)
    elif len(types) > 2:
        types = types[: rng.randint(1, 3)]
    people = rng.sample(_PROCESS_EXPERIMENTERS, k=rng.randint(1, 2))
    span = (t_end - t_start) / max(1, len(types))
    space = rng.random() < 0.15  # "2025-04-22 20:50:47-07:00": the TABLES D4 case
    for i, ptype in enumerate(types):
        s = t_start + span * i
        e = s + span
        start_s = _ts(s, "local", micro=False) if space else _ts(s, fmt)
        end_s: str | None = _ts(e, "local", micro=False) if space else _ts(e, fmt)
        if rng.random() < 0.05:
            end_s = None
        processes.append(_process_doc(ptype, url, version, start_s, end_s, pipeline_name or None, people))
    pick = rng.random()
    if pick < 0.12:
        pipelines = None
    elif pick < 0.18:
        pipelines = []
    else:
        pipelines = [_code(url, version, name=pipeline_name)]
    return {
        "object_type": "Processing",
        "describedBy": _DESCRIBED + "processing.py",
        "schema_version": schema,
        "data_processes": processes,
        "pipelines": pipelines,
        "notes": None,
        "dependency_graph": {t: [t] for t in types} if types else {},
    }


# --- Records ------------------------------------------------------------------------------------------


def _location(ctx: _Ctx, name: str, derived: bool, co_id: str | None) -> str:
    roll = ctx.rng.random()
    if derived and co_id and roll < 0.08:
        return f"s3://{CODE_OCEAN_BUCKET}/{co_id}"
    if not derived and roll < 0.015:
        return f"s3://{PRIVATE_BUCKET}/{name}"
    return f"s3://{OPEN_DATA_BUCKET}/{name}"


def _other_identifiers(ctx: _Ctx) -> tuple[dict | None, str | None]:
    co = ctx.uuid()
    if ctx.rng.random() < 0.05:
        return {"Code Ocean": [co, ctx.uuid()]}, co
    return {"Code Ocean": [co]}, co


def _record(
    ctx: _Ctx, sess: _Session, name: str, level: str, created: dt.datetime, dd: dict, processing: dict | None,
    qc: dict | None, derived: bool,
) -> dict:
    rng = ctx.rng
    other, co_id = _other_identifiers(ctx)
    last_modified = created
    if rng.random() < 0.4:
        last_modified = min(ctx.now, created + dt.timedelta(hours=rng.uniform(0.1, 24 * 120)))
    return {
        "_id": ctx.uuid(),
        "object_type": "Metadata",
        "describedBy": _DESCRIBED + "metadata.py",
        "schema_version": rng.choice(("2.2.1", "2.2.2", "2.7.0")) if sess.fmt == "z" else rng.choice(("2.0.0", "2.2.1")),
        "name": name,
        "location": _location(ctx, name, derived, co_id),
        "other_identifiers": other,
        "subject": _subject_doc(sess.subject),
        "data_description": dd,
        "procedures": _procedures_doc(sess.subject),
        "instrument": _instrument_doc(sess),
        "processing": processing,
        "acquisition": _acquisition_doc(sess),
        "quality_control": qc,
        "model": None,
        "_created": _ms_z(created),
        "_last_modified": _ms_z(last_modified),
    }


def _raw_record(ctx: _Ctx, sess: _Session) -> tuple[dict, dt.datetime]:
    rng = ctx.rng
    creation = sess.end + _minutes(rng, 5, 600)
    proc_start = creation + _minutes(rng, 1, 30)
    proc_end = proc_start + _minutes(rng, 5, 600)
    created = proc_end + _minutes(rng, 1, 30)
    list_tags = created < dt.datetime(2025, 6, 1, tzinfo=_UTC)
    dd = _data_description(sess, sess.raw_name, "raw", _ts(creation, sess.fmt), sess.modalities, None,
                           "2.3.0" if not list_tags else rng.choice(("2.2.0", "2.2.1")),
                           _AIBS if sess.subject.platform.key == "smartspim" and rng.random() < 0.2 else _AIND)
    processing = _processing_doc(rng, None, proc_start, proc_end, sess.fmt,
                                 "2.2.0" if not list_tags else "2.1.4", None)
    qc = _quality_control(ctx, sess, sess.modalities, ["Raw data"], proc_end, list_tags, [])
    return _record(ctx, sess, sess.raw_name, "raw", created, dd, processing, qc, derived=False), created


def _products(ctx: _Ctx, sess: _Session) -> list[tuple[str, list[str], str]]:
    """(product, modalities, suffix word) for each derived child of a session (re-processings repeat)."""
    rng = ctx.rng
    key = sess.subject.platform.key
    out: list[tuple[str, list[str], str]] = []

    def repeat(product: str, modalities: list[str], word: str, p_any: float, p_more: float) -> None:
        if rng.random() >= p_any:
            return
        out.append((product, modalities, word))
        while rng.random() < p_more and len(out) < 6:
            out.append((product, modalities, word))

    if key == "vr_foraging":
        repeat("behavior", ["behavior"], "processed", 0.85, 0.15)
        if "fib" in sess.modalities:
            repeat("fib", ["fib"], "processed", 0.85, 0.2)
    elif key == "dynamic_foraging":
        product = "fib" if "fib" in sess.modalities else "df_behavior"
        repeat(product, list(sess.modalities), "processed", 0.85, 0.18)
    elif key == "fip":
        repeat("fib", list(sess.modalities), "processed", 0.8, 0.15)
    elif key == "pophys":
        repeat("pophys", list(sess.modalities), "processed", 0.85, 0.25)
    elif key == "smartspim":
        repeat("stitched", ["SPIM"], "stitched", 0.8, 0.25)
        if rng.random() < 0.1:
            out.append(("spim_processed", ["SPIM"], "processed"))
    elif key == "exaspim":
        repeat("fused", ["SPIM"], "fused", 0.65, 0.2)
    elif key == "slap2":
        repeat("slap2", list(sess.modalities), "processed", 0.5, 0.1)
    elif key == "ecephys":
        repeat("ecephys", list(sess.modalities), "processed", 0.8, 0.35)
    else:
        repeat("behavior", ["behavior"], "processed", 0.6, 0.0)
    return out


def _derived_records(ctx: _Ctx, sess: _Session, raw_created: dt.datetime, earlier_raws: list[str]) -> list[dict]:
    rng = ctx.rng
    records = []
    limit = ctx.now - dt.timedelta(minutes=30)
    t = raw_created
    counts: Counter[str] = Counter()
    for product, modalities, word in _products(ctx, sess):
        counts[product] += 1
        if counts[product] == 1:
            t = t + dt.timedelta(hours=rng.uniform(0.2, 48))
        else:  # re-processing, days to months later
            t = t + dt.timedelta(days=rng.uniform(1, 120))
        proc_start = t
        proc_end = proc_start + _minutes(rng, 3, 900 if product in ("stitched", "fused") else 120)
        created = proc_end + _minutes(rng, 1, 20)
        if created > limit:
            break
        fmt = "local" if (proc_end.year < 2025 and rng.random() < 0.5) else "z"
        name = f"{sess.raw_name}_{word}_{_name_clock(proc_end, fmt)}"
        if name in ctx.names:
            continue
        ctx.names.add(name)
        sources = [sess.raw_name]
        if earlier_raws and rng.random() < 0.01:
            sources.append(rng.choice(earlier_raws))  # a derived asset combining two sessions
        list_tags = created < dt.datetime(2025, 6, 1, tzinfo=_UTC)
        names = _PIPELINE_NAMES[product]
        pipeline_name = names[min(counts[product] - 1, len(names) - 1)] if len(names) > 1 and product == "ecephys" \
            else rng.choice(names)
        dd = _data_description(sess, name, "derived", _ts(proc_end, fmt), modalities, sources,
                               rng.choice(("2.2.0", "2.2.1")) if list_tags else rng.choice(("2.3.0", "2.3.3")),
                               _AIND)
        processing = _processing_doc(rng, product, proc_start, proc_end, fmt,
                                     "2.1.4" if list_tags else rng.choice(("2.1.2", "2.2.0", "2.2.7")),
                                     pipeline_name, f"{proc_end.year - 2019}.{proc_end.month}.0")
        stages = ["Processing"]
        if product == "fib" and rng.random() < 0.5:
            stages = ["Raw data", "Processing"]
        qc = _quality_control(ctx, sess, modalities, stages, proc_end, list_tags, earlier_raws[-2:])
        records.append(_record(ctx, sess, name, "derived", created, dd, processing, qc, derived=True))
        t = created
    return records


def _subject_records(ctx: _Ctx, subject: _Subject, latest: dt.datetime | None = None) -> list[dict]:
    rng = ctx.rng
    latest = latest or (ctx.now - dt.timedelta(days=3))
    starts = _session_starts(ctx, subject, latest)
    if subject.species == "mouse":
        subject.dob = (starts[0] - dt.timedelta(days=rng.randint(55, 220))).date()
        subject.surgery_date = (starts[0] - dt.timedelta(days=rng.randint(7, 40))).date()
    records: list[dict] = []
    raws: list[str] = []
    for index, start in enumerate(starts):
        sess = _draw_session(ctx, subject, index, start)
        raw, created = _raw_record(ctx, sess)
        records.append(raw)
        if rng.random() < 0.003:  # the same asset registered twice: duplicate name, new _id
            dup = copy.deepcopy(raw)
            dup["_id"] = ctx.uuid()
            later = created + dt.timedelta(days=rng.uniform(1, 60))
            if later < ctx.now:
                dup["_created"] = dup["_last_modified"] = _ms_z(later)
                records.append(dup)
        records.extend(_derived_records(ctx, sess, created, raws))
        raws.append(sess.raw_name)
    return records


# ---------------------------------------------------------------------------------------------------
# Messiness
# ---------------------------------------------------------------------------------------------------


def messy_kinds(record: Any) -> list[str]:
    """Return the kinds of deliberate messiness found in one record (keys of :data:`MESSY_KINDS`).

    Recognises both the messiness :func:`generate_records` injects and the same shapes in real records
    (``v2_raw.json`` gives ``["quality_control_null"]``). An empty list means the record is "clean": its
    ``data_description``, ``subject``, ``processing`` and ``quality_control`` are expected to validate against
    aind-data-schema (with the relaxations the real records need, see the tests).
    """
    kinds: list[str] = []
    if not isinstance(record, dict):
        return ["data_description_null", "subject_null", "acquisition_null", "processing_null",
                "quality_control_missing"]
    if "quality_control" not in record:
        kinds.append("quality_control_missing")
    elif record["quality_control"] is None:
        kinds.append("quality_control_null")
    for fieldname in ("subject", "data_description", "acquisition", "processing"):
        if record.get(fieldname) is None:
            kinds.append(f"{fieldname}_null")
    dd = record.get("data_description")
    if isinstance(dd, dict):
        if dd.get("project_name") is None:
            kinds.append("project_name_null")
        modalities = dd.get("modalities")
        if modalities is None:
            kinds.append("modalities_null")
        elif not isinstance(modalities, list) or any(
            not isinstance(m, dict) or "abbreviation" not in m for m in modalities
        ):
            kinds.append("modality_without_abbreviation")
        investigators = dd.get("investigators")
        if not isinstance(investigators, list) or any(not isinstance(i, dict) for i in investigators):
            kinds.append("investigators_string")
    qc = record.get("quality_control")
    if isinstance(qc, dict) and isinstance(qc.get("metrics"), list):
        if any(isinstance(m, dict) and not m.get("status_history") for m in qc["metrics"]):
            kinds.append("status_history_empty")
    processing = record.get("processing")
    if isinstance(processing, dict) and isinstance(processing.get("data_processes"), list):
        if any(isinstance(p, dict) and not p.get("start_date_time") for p in processing["data_processes"]):
            kinds.append("process_without_start")
    acquisition = record.get("acquisition")
    if isinstance(acquisition, dict) and isinstance(acquisition.get("experimenters"), list):
        if any(isinstance(e, dict) for e in acquisition["experimenters"]):
            kinds.append("experimenters_dict")
    if not record.get("other_identifiers"):
        kinds.append("other_identifiers_missing")
    return kinds


def _apply_messiness(ctx: _Ctx, records: list[dict]) -> None:
    """Break a few records on purpose (in place). Counts scale with ``len(records)``."""
    rng = ctx.rng
    n = len(records)
    if n == 0:
        return
    referenced = set()
    for r in records:
        for s in (r.get("data_description") or {}).get("source_data") or []:
            referenced.add(s)
    leaves = [i for i, r in enumerate(records) if r["name"] not in referenced]
    used: set[int] = set()

    def pick(rate: float, pool: Sequence[int] | None = None) -> list[int]:
        candidates = [i for i in (pool if pool is not None else range(n)) if i not in used]
        k = round(rate * n)
        if k == 0 and n >= 200 and rate > 0:
            k = 1
        chosen = sorted(rng.sample(candidates, k=min(k, len(candidates))))
        used.update(chosen)
        return chosen

    for i in pick(0.02):
        records[i]["quality_control"] = None
    for i in pick(0.003):
        del records[i]["quality_control"]
    for i in pick(0.01):
        records[i]["acquisition"] = None
    for i in pick(0.01):
        records[i]["processing"] = None
    for i in pick(0.002, leaves):
        records[i]["data_description"] = None
    for i in pick(0.002, leaves):
        records[i]["subject"] = None
    for i in pick(0.005):
        records[i]["data_description"]["modalities"] = None
    for i in pick(0.002):
        mods = records[i]["data_description"]["modalities"]
        mods.append({"name": "Behavior videos"})
    for i in pick(0.005):
        dd = records[i]["data_description"]
        names = [p["name"] for p in dd["investigators"]]
        if rng.random() < 0.5:
            dd["investigators"] = [names[0]] + [_person(x) for x in names[1:]]
        else:
            dd["investigators"] = ", ".join(names)
    with_qc = [i for i, r in enumerate(records) if isinstance(r.get("quality_control"), dict)
               and r["quality_control"]["metrics"]]
    for i in pick(0.005, with_qc):
        qc = records[i]["quality_control"]
        qc["metrics"][rng.randrange(len(qc["metrics"]))]["status_history"] = []
        qc["status"] = qc_status(qc["metrics"])
    with_proc = [i for i, r in enumerate(records) if isinstance(r.get("processing"), dict)
                 and r["processing"]["data_processes"]]
    for i in pick(0.003, with_proc):
        records[i]["processing"]["data_processes"][-1]["start_date_time"] = None
    for i in pick(0.01):
        records[i]["other_identifiers"] = rng.choice((None, {}))
    qc_empty = [i for i in with_qc if i not in used]
    for i in pick(0.003, qc_empty):  # QC present but no metrics yet
        qc = records[i]["quality_control"]
        qc["metrics"] = []
        qc["default_grouping"] = []
        qc["status"] = {}


# ---------------------------------------------------------------------------------------------------
# Public API: records
# ---------------------------------------------------------------------------------------------------


def generate_records(n: int, seed: int = 0, *, now: str = DEFAULT_NOW) -> list[dict]:
    """Generate ``n`` realistic DocDB v2 asset records, deterministically from ``seed``.

    Records are grouped by subject, sessions in time order, each raw asset followed by its derived assets
    (DocDB's natural order carries no meaning, and this one compresses well): every derived asset comes after
    the raw asset(s) it names in ``data_description.source_data``, and every source name exists in the list.
    ``now`` (ISO 8601) bounds every timestamp. About 48% of the records are raw and 52% derived; a few
    percent carry deliberate messiness (see :func:`messy_kinds` and :data:`MESSY_KINDS`).

    Cost is linear: 20,000 records take a few seconds (the cyclic garbage collector is paused meanwhile,
    since the records hold no reference cycles; its previous state is restored).

    >>> recs = generate_records(20, seed=1)
    >>> len(recs), recs == generate_records(20, seed=1)
    (20, True)
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    ctx = _Ctx(random.Random(seed), _parse_time(now))
    records: list[dict] = []
    with _gc_paused():
        while len(records) < n:
            records.extend(_subject_records(ctx, _draw_subject(ctx)))
        del records[n:]
        _apply_messiness(ctx, records)
    return records


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building many small acyclic dicts (it would rescan them again and again)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _find_platform(record: dict) -> _Platform | None:
    name = record.get("name") or ""
    acq = record.get("acquisition") if isinstance(record.get("acquisition"), dict) else {}
    if acq.get("acquisition_type") == "AindVrForaging":
        return _PLATFORM_BY_KEY["vr_foraging"]
    for platform in _PLATFORMS:
        if platform.prefix and name.startswith(platform.prefix):
            if platform.key in ("dynamic_foraging", "human"):
                subject = record.get("subject") or {}
                human = (subject.get("subject_details") or {}).get("object_type") == "Human subject"
                return _PLATFORM_BY_KEY["human" if human else "dynamic_foraging"]
            return platform
    return None


def _subject_from_record(ctx: _Ctx, record: dict) -> _Subject | None:
    """Rebuild a generator subject from an existing record, so new sessions keep its identity."""
    platform = _find_platform(record)
    subject_doc = record.get("subject")
    if platform is None or not isinstance(subject_doc, dict) or not subject_doc.get("subject_id"):
        return None
    template = _draw_subject(ctx, platform)  # fresh draws for whatever the record does not say
    ctx.subject_ids.discard(template.subject_id)
    details = subject_doc.get("subject_details") or {}
    template.subject_id = subject_doc["subject_id"]
    template.subject_schema = subject_doc.get("schema_version") or template.subject_schema
    if details.get("object_type") == "Mouse subject":
        template.genotype = details.get("genotype") or template.genotype
        template.sex = details.get("sex") or template.sex
        template.strain = details.get("strain") or template.strain
        template.source = details.get("source") or template.source
        template.breeding = details.get("breeding_info")
        template.housing = details.get("housing")
        try:
            template.dob = dt.date.fromisoformat(details.get("date_of_birth") or "")
        except ValueError:
            template.dob = None
    elif details.get("object_type") == "Human subject":
        template.year_of_birth = details.get("year_of_birth") or template.year_of_birth
    template.implants = _implants_from_procedures(record.get("procedures"))
    if platform.key != "fip":  # keep recording fib only for subjects that had fib sessions and implants
        template.has_fib = bool(template.implants) and "fib" in _abbreviations(record)
    dd = record.get("data_description") if isinstance(record.get("data_description"), dict) else {}
    if "project_name" in dd:
        template.project = dd.get("project_name")
    names = [p.get("name") for p in dd.get("investigators") or [] if isinstance(p, dict) and p.get("name")]
    if names:
        template.investigators = names
    return template


def _implants_from_procedures(procedures: Any) -> list[dict]:
    """Fiber implants (generator form) described by a record's ``procedures``."""
    implants: list[dict] = []
    if not isinstance(procedures, dict):
        return implants
    for surgery in procedures.get("subject_procedures") or []:
        if not isinstance(surgery, dict):
            continue
        for proc in surgery.get("procedures") or []:
            if not isinstance(proc, dict) or proc.get("object_type") != "Probe implant":
                continue
            name = (proc.get("implanted_device") or {}).get("name")
            if not isinstance(name, str) or not name.startswith("Fiber_") or not name[6:].isdigit():
                continue
            config = proc.get("device_config") or {}
            target = config.get("primary_targeted_structure") or None
            structure = (target.get("acronym"), target.get("id"), target.get("name")) if isinstance(target, dict) else None
            translation = next((t.get("translation") for t in config.get("transform") or []
                                if isinstance(t, dict) and t.get("object_type") == "Translation"), None)
            implants.append({"fiber": name, "structure": structure, "translation": translation, "angle": 0})
    return implants


def _add_records(ctx: _Ctx, records: list[dict], count: int) -> list[dict]:
    rng = ctx.rng
    added: list[dict] = []
    latest = ctx.now - dt.timedelta(days=1)
    existing = [r for r in records if isinstance(r, dict) and isinstance(r.get("subject"), dict) and
                (r.get("data_description") or {}).get("data_level") == "raw"]
    attempts = 0
    while len(added) < count and attempts < 10 * count + 100:
        attempts += 1
        subject: _Subject | None = None
        template_record: dict | None = None
        if existing and rng.random() < 0.5:
            template_record = rng.choice(existing)
            subject = _subject_from_record(ctx, template_record)
            if subject is None:
                template_record = None
        if subject is None:
            subject = _draw_subject(ctx)
        # new sessions start recently: between 30 days before "now" and "latest"
        first = max(latest - dt.timedelta(days=30), dt.datetime.fromisoformat(subject.platform.first)
                    .replace(tzinfo=_UTC))
        moment = first + dt.timedelta(seconds=rng.random() * max(1.0, (latest - first).total_seconds()))
        moment = moment.replace(hour=15, minute=0) + dt.timedelta(seconds=rng.randint(0, 11 * 3600))
        if moment > latest:
            moment = latest - dt.timedelta(hours=rng.uniform(2, 20))
        if subject.species == "mouse" and subject.dob is None:
            subject.dob = (moment - dt.timedelta(days=rng.randint(55, 220))).date()
            subject.surgery_date = (moment - dt.timedelta(days=rng.randint(7, 40))).date()
        sess = _draw_session(ctx, subject, rng.randint(0, 10), moment)
        raw, created = _raw_record(ctx, sess)
        if created > ctx.now:
            continue
        batch = [raw] + _derived_records(ctx, sess, created, [])
        for r in batch:
            if template_record is not None:  # same subject: identical subject and procedures documents
                r["subject"] = copy.deepcopy(template_record["subject"])
                r["procedures"] = copy.deepcopy(template_record.get("procedures"))
            if len(added) < count:
                added.append(r)
    return added


def _bump(t_old: str | None, ctx: _Ctx) -> str:
    old = _parse_time(t_old) if isinstance(t_old, str) else None
    new = ctx.now - dt.timedelta(seconds=ctx.rng.uniform(0, 3600))
    if old is not None and new <= old:
        new = old + dt.timedelta(milliseconds=ctx.rng.randint(1, 999))
    return _ms_z(new)


def _change_record(ctx: _Ctx, record: dict) -> None:
    """Change one field a table reads (in place, on a copy)."""
    rng = ctx.rng
    ops = ["qc_status", "project_name", "experimenters", "instrument_id", "investigators", "genotype"]
    rng.shuffle(ops)
    ops.append("other_identifiers")
    for op in ops:
        if op == "qc_status":
            qc = record.get("quality_control")
            metrics = qc.get("metrics") if isinstance(qc, dict) else None
            candidates = [m for m in metrics or [] if isinstance(m, dict) and isinstance(m.get("status_history"), list)]
            if not candidates:
                continue
            metric = rng.choice(candidates)
            previous = metric["status_history"][-1].get("status") if metric["status_history"] else None
            status = rng.choice([s for s in ("Pass", "Fail", "Pending") if s != previous])
            metric["status_history"].append(_status_entry(rng.choice(_QC_REVIEWERS), status,
                                                          _ts(ctx.now - dt.timedelta(hours=2), "z")))
            qc["status"] = qc_status(metrics)
            return
        if op == "project_name":
            dd = record.get("data_description")
            if not isinstance(dd, dict):
                continue
            choices = [p for pl in _PLATFORMS for p in pl.projects if p != dd.get("project_name")]
            dd["project_name"] = rng.choice(choices)
            return
        if op == "experimenters":
            acq = record.get("acquisition")
            if not isinstance(acq, dict):
                continue
            pool = [e for pl in _PLATFORMS for e in pl.experimenters]
            acq["experimenters"] = list(acq.get("experimenters") or []) + [rng.choice(pool)]
            return
        if op == "instrument_id":
            acq = record.get("acquisition")
            if not isinstance(acq, dict) or not acq.get("instrument_id"):
                continue
            value = acq["instrument_id"]
            if "exa" in value.lower() or "spim" in value.lower():
                continue  # keep SmartSPIM/exaSPIM classification stable
            acq["instrument_id"] = value + "-B" if not value.endswith("-B") else value[:-2]
            return
        if op == "investigators":
            dd = record.get("data_description")
            if not isinstance(dd, dict) or not isinstance(dd.get("investigators"), list):
                continue
            dd["investigators"] = list(dd["investigators"]) + [_person(rng.choice(_QC_REVIEWERS))]
            return
        if op == "genotype":
            subject = record.get("subject")
            details = subject.get("subject_details") if isinstance(subject, dict) else None
            if not isinstance(details, dict) or details.get("object_type") != "Mouse subject":
                continue
            details["genotype"] = rng.choice([g for g in _PLATFORMS[1].genotypes if g != details.get("genotype")])
            return
        if op == "other_identifiers":
            record["other_identifiers"] = {"Code Ocean": [ctx.uuid()]}
            return


def mutate(
    records: Sequence[dict],
    *,
    changed: float = 0.01,
    added: float = 0.01,
    removed: float = 0.01,
    seed: int = 1,
    now: str | None = None,
) -> list[dict]:
    """Return a new record list simulating DocDB activity since ``records`` were fetched.

    - ``round(changed * len(records))`` records get a new ``_last_modified`` and a change to one field a
      table reads (a QC status, the project name, experimenters, the instrument, investigators, the
      genotype or the Code Ocean id). Changed records are deep copies; the input is never modified.
    - ``round(removed * len(records))`` records disappear, preferring leaves (derived assets and raw assets
      no derived asset names), so lineage stays consistent.
    - ``round(added * len(records))`` new records are appended (raw assets first, then their derived
      assets): sessions of new subjects and new sessions of existing subjects.

    Unchanged records are returned as the same objects, with the same ``_last_modified``. ``now`` defaults to
    one day after the newest ``_last_modified`` in ``records``, so repeated mutations move forward in time.
    """
    n = len(records)
    if now is None:
        newest = max((r.get("_last_modified") for r in records if isinstance(r.get("_last_modified"), str)),
                     default=DEFAULT_NOW)
        now_dt = _parse_time(newest) + dt.timedelta(days=1)
    else:
        now_dt = _parse_time(now)
    ctx = _Ctx(random.Random(f"bdc-demo-mutate:{seed}"), now_dt)
    for r in records:
        if isinstance(r.get("_id"), str):
            ctx.ids.add(r["_id"])
        if isinstance(r.get("name"), str):
            ctx.names.add(r["name"])
        subject = r.get("subject")
        if isinstance(subject, dict) and isinstance(subject.get("subject_id"), str):
            ctx.subject_ids.add(subject["subject_id"])
    rng = ctx.rng
    n_removed = min(n, round(removed * n))
    n_changed = round(changed * n)
    n_added = round(added * n)

    referenced: set[str] = set()
    for r in records:
        dd = r.get("data_description")
        if isinstance(dd, dict) and isinstance(dd.get("source_data"), list):
            referenced.update(s for s in dd["source_data"] if isinstance(s, str))
    leaves = [i for i, r in enumerate(records) if r.get("name") not in referenced]
    if len(leaves) >= n_removed:
        removed_idx = set(rng.sample(leaves, k=n_removed))
    else:
        others = [i for i in range(n) if i not in set(leaves)]
        removed_idx = set(leaves) | set(rng.sample(others, k=n_removed - len(leaves)))
    remaining = [i for i in range(n) if i not in removed_idx]
    changed_idx = set(rng.sample(remaining, k=min(n_changed, len(remaining))))

    out: list[dict] = []
    for i in remaining:
        record = records[i]
        if i in changed_idx:
            record = copy.deepcopy(record)
            _change_record(ctx, record)
            record["_last_modified"] = _bump(record.get("_last_modified"), ctx)
        out.append(record)
    new_records = _add_records(ctx, list(records), n_added)
    new_records.sort(key=lambda r: r["_created"])
    out.extend(new_records)
    return out


# ---------------------------------------------------------------------------------------------------
# Public API: open-data objects
# ---------------------------------------------------------------------------------------------------


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=1).encode()


def _open_data_key(location: Any) -> str | None:
    prefix = f"s3://{OPEN_DATA_BUCKET}/"
    if isinstance(location, str) and location.startswith(prefix) and len(location) > len(prefix):
        return location[len(prefix):].rstrip("/")
    return None


def _abbreviations(record: dict) -> list[str]:
    dd = record.get("data_description")
    mods = dd.get("modalities") if isinstance(dd, dict) else None
    return [m["abbreviation"] for m in mods or [] if isinstance(m, dict) and isinstance(m.get("abbreviation"), str)]


def _trainer_state(rng: random.Random, curriculum: str, stage_index: int) -> dict:
    stages = _VR_CURRICULA[curriculum]
    nodes = {str(i): {"name": s, "task": {"name": "AindVrForaging", "version": "0.6.1"}, "start_policies": []}
             for i, s in enumerate(stages)}
    stage_name = stages[min(stage_index, len(stages) - 1)]
    if rng.random() < 0.05:
        stage_name = "manual_override"  # a stage that is not in the graph
    return {
        "curriculum": {
            "pkg_location": f"aind_behavior_vr_foraging.curricula.{curriculum}",
            "name": curriculum,
            "version": "0.2.0",
            "graph": {"nodes": nodes, "graph": {str(i): [[i + 1, 0]] for i in range(len(stages) - 1)}},
        },
        "stage": {"name": stage_name, "task": {"name": "AindVrForaging", "version": "0.6.1"}},
        "is_on_curriculum": True,
        "active_policies": None,
    }


def generate_open_data_objects(records: Iterable[dict], seed: int = 0) -> dict[str, bytes]:
    """Generate the ``aind-open-data`` objects the platform tables read for ``records``.

    Keys are relative to the bucket (TABLES.md §2.12-2.14 and §6):

    - stitched SmartSPIM assets in the open-data bucket: ``<stitched key>/neuroglancer_config.json`` and one
      ``<stitched key>/image_cell_segmentation/<channel>/visualization/neuroglancer_config.json`` per
      segmented channel (some stitched assets have none);
    - raw SmartSPIM assets: ``<raw name>/SPIM/derivatives/neuroglancer_config.json`` with ``ng_link``
      (sometimes pointing at ``/derivatives/`` without ``/SPIM/``, sometimes without ``ng_link`` or not
      valid JSON), plus a small binary thumbnail for some;
    - raw exaSPIM assets: ``<raw name>/neuroglancer.json``, or only ``<raw name>/process_output.json``, or
      neither;
    - raw VR-foraging assets: trainer state at ``<key>/behavior/trainer_state.json`` (newer) or
      ``<key>/behavior/Logs/.launcher/TrainerState_<timestamp>.json`` (legacy), with ``curriculum.name``,
      ``stage.name`` and ``curriculum.graph.nodes``; a few also have a non-JSON key that sorts first, a few
      an empty or broken file, a few nothing.

    Each asset's objects depend only on ``seed``, the asset itself and its subject's curriculum, so adding
    records later does not change the objects of existing assets.
    """
    records = [r for r in records if isinstance(r, dict)]
    objects: dict[str, bytes] = {}
    by_source: dict[str, list[dict]] = {}
    for r in records:
        dd = r.get("data_description")
        if isinstance(dd, dict) and dd.get("data_level") == "derived":
            for s in dd.get("source_data") or []:
                if isinstance(s, str):
                    by_source.setdefault(s, []).append(r)
    # session rank per subject for VR curricula
    vr_sessions: dict[str, list[str]] = {}
    for r in records:
        acq = r.get("acquisition") if isinstance(r.get("acquisition"), dict) else {}
        dd = r.get("data_description") if isinstance(r.get("data_description"), dict) else {}
        subject = r.get("subject") if isinstance(r.get("subject"), dict) else {}
        if acq.get("acquisition_type") == "AindVrForaging" and dd.get("data_level") == "raw":
            sid = subject.get("subject_id") or ""
            vr_sessions.setdefault(sid, []).append(r.get("name") or "")
    for sessions in vr_sessions.values():
        sessions.sort()

    seen: set[str] = set()
    for r in records:
        name = r.get("name")
        if not isinstance(name, str) or name in seen:
            continue
        dd = r.get("data_description") if isinstance(r.get("data_description"), dict) else {}
        if dd.get("data_level") != "raw":
            continue
        seen.add(name)
        rng = random.Random(f"{seed}:{name}")
        mods = _abbreviations(r)
        acq = r.get("acquisition") if isinstance(r.get("acquisition"), dict) else {}
        instrument = acq.get("instrument_id") or ""
        if any("SPIM" in m for m in mods) and "exa" not in instrument.lower():
            _smartspim_objects(rng, r, by_source.get(name, []), objects)
        elif any("SPIM" in m for m in mods):
            _exaspim_objects(rng, name, objects)
        if acq.get("acquisition_type") == "AindVrForaging" and any("behavior" in m.lower() for m in mods):
            key = _open_data_key(r.get("location"))
            if key is None:
                continue
            subject = r.get("subject") if isinstance(r.get("subject"), dict) else {}
            sid = subject.get("subject_id") or ""
            ranks = vr_sessions.get(sid, [])
            rank = ranks.index(name) if name in ranks else 0
            curricula = sorted(_VR_CURRICULA)
            curriculum = curricula[random.Random(f"{seed}:curriculum:{sid}").randrange(len(curricula))]
            _trainer_objects(rng, key, acq, curriculum, rank // 3, objects)
    return objects


def _smartspim_objects(rng: random.Random, raw: dict, children: list[dict], objects: dict[str, bytes]) -> None:
    raw_name = raw["name"]
    channels = sorted(rng.sample(_SPIM_CHANNELS[1:], k=rng.randint(1, 3)))
    roll = rng.random()
    if roll < 0.72:
        link_path = f"{raw_name}/SPIM/derivatives/neuroglancer_config.json"
        if rng.random() < 0.25:
            link_path = f"{raw_name}/derivatives/neuroglancer_config.json"  # the legacy quirk
        doc = {
            "ng_link": f"https://neuroglancer-demo.appspot.com/#!s3://{OPEN_DATA_BUCKET}/{link_path}",
            "dimensions": {"x": [1.8e-06, "m"], "y": [1.8e-06, "m"], "z": [2e-06, "m"]},
            "layers": [{"type": "image", "name": ch, "source": f"zarr://s3://{OPEN_DATA_BUCKET}/{raw_name}/"
                        f"SPIM/{ch}.zarr"} for ch in channels],
        }
        objects[f"{raw_name}/SPIM/derivatives/neuroglancer_config.json"] = _json_bytes(doc)
    elif roll < 0.76:
        objects[f"{raw_name}/SPIM/derivatives/neuroglancer_config.json"] = _json_bytes({"layers": []})
    elif roll < 0.78:
        objects[f"{raw_name}/SPIM/derivatives/neuroglancer_config.json"] = b'{"ng_link": "https://neuro'
    if rng.random() < 0.3:
        objects[f"{raw_name}/SPIM/derivatives/thumbnail.png"] = b"\x89PNG\r\n\x1a\n" + bytes(
            rng.randrange(256) for _ in range(24))
    for child in children:
        child_name = child.get("name")
        if not isinstance(child_name, str) or "stitched" not in child_name.lower():
            continue
        key = _open_data_key(child.get("location"))
        if key is None:
            continue
        objects[f"{key}/neuroglancer_config.json"] = _json_bytes({
            "ng_link": f"https://neuroglancer-demo.appspot.com/#!s3://{OPEN_DATA_BUCKET}/{key}/neuroglancer_config.json",
            "layers": [{"type": "image", "name": ch} for ch in channels],
        })
        if rng.random() < 0.2:
            continue  # stitched, but no cell segmentation
        for ch in channels:
            objects[f"{key}/image_cell_segmentation/{ch}/visualization/neuroglancer_config.json"] = _json_bytes({
                "layers": [{"type": "annotation", "name": f"cells {ch}",
                            "source": f"precomputed://s3://{OPEN_DATA_BUCKET}/{key}/image_cell_segmentation/"
                                      f"{ch}/visualization/cell_points_precomputed"}],
            })


def _exaspim_objects(rng: random.Random, raw_name: str, objects: dict[str, bytes]) -> None:
    roll = rng.random()
    if roll < 0.4:
        objects[f"{raw_name}/neuroglancer.json"] = _json_bytes({
            "dimensions": {"x": [7.48e-07, "m"], "y": [7.48e-07, "m"], "z": [1e-06, "m"]},
            "layers": [{"type": "image", "source": f"zarr://s3://{OPEN_DATA_BUCKET}/{raw_name}/exaSPIM.zarr"}],
        })
        if rng.random() < 0.5:
            objects[f"{raw_name}/process_output.json"] = _json_bytes({"status": "done", "tiles": rng.randint(8, 64)})
    elif roll < 0.7:
        objects[f"{raw_name}/process_output.json"] = _json_bytes({"status": "done", "tiles": rng.randint(8, 64)})


def _trainer_objects(
    rng: random.Random, key: str, acq: dict, curriculum: str, stage_index: int, objects: dict[str, bytes]
) -> None:
    roll = rng.random()
    if roll < 0.12:
        return  # no trainer state at all
    start = acq.get("acquisition_start_time")
    try:
        when = _parse_time(start) if isinstance(start, str) else None
    except ValueError:
        when = None
    state = _trainer_state(rng, curriculum, stage_index)
    legacy = (when is not None and when < dt.datetime(2025, 7, 1, tzinfo=_UTC)) or rng.random() < 0.15
    if legacy:
        stamp = (when or dt.datetime(2025, 1, 1, tzinfo=_UTC)).strftime("%Y%m%dT%H%M%S")
        path = f"{key}/behavior/Logs/.launcher/TrainerState_{stamp}.json"
    else:
        path = f"{key}/behavior/trainer_state.json"
        if rng.random() < 0.1:
            objects[f"{key}/behavior/trainer_state.csv"] = b"stage,updated\nlegacy,1\n"  # sorts before .json
    if roll < 0.15:
        objects[path] = b""  # empty file
    elif roll < 0.17:
        objects[path] = b"{not json"
    else:
        objects[path] = _json_bytes(state)


# ---------------------------------------------------------------------------------------------------
# Demo sample
# ---------------------------------------------------------------------------------------------------


def _companion_raw(ctx: _Ctx, derived: dict, raw_name: str) -> dict:
    """A raw record for a real derived record whose source asset is not in the sample."""
    rng = ctx.rng
    raw = copy.deepcopy(derived)
    created = _parse_time(derived["_created"]) - dt.timedelta(hours=rng.uniform(1, 10))
    raw["_id"] = ctx.uuid()
    raw["name"] = raw_name
    raw["location"] = f"s3://{OPEN_DATA_BUCKET}/{raw_name}"
    raw["other_identifiers"] = {"Code Ocean": [ctx.uuid()]}
    dd = raw["data_description"]
    dd["name"] = raw_name
    dd["data_level"] = "raw"
    dd["source_data"] = None
    acq = raw.get("acquisition") or {}
    end = acq.get("acquisition_end_time")
    creation = _parse_time(end) + dt.timedelta(minutes=20) if isinstance(end, str) else created
    dd["creation_time"] = end if isinstance(end, str) else _ms_z(created)
    raw["processing"] = _processing_doc(rng, None, creation, creation + dt.timedelta(hours=1), "z", "2.2.0", None)
    raw["quality_control"] = None
    raw["_created"] = raw["_last_modified"] = _ms_z(created)
    return raw


def build_sample_records(n: int, seed: int, real_records: Sequence[dict]) -> list[dict]:
    """Build the demo sample: ``n`` records in total, the real records included as they are.

    Generates ``n - len(real_records) - k`` records with :func:`generate_records`, where ``k`` synthetic
    raw records stand in for the raw sources of real derived records that are not otherwise present, and
    appends those and the real records, grouped by subject, raw assets first.
    """
    real = [copy.deepcopy(r) for r in real_records]
    names = {r.get("name") for r in real}
    ctx = _Ctx(random.Random(f"bdc-demo-sample:{seed}"), _parse_time(DEFAULT_NOW))
    companions = []
    for r in real:
        dd = r.get("data_description") or {}
        for s in dd.get("source_data") or []:
            if s not in names:
                companions.append(_companion_raw(ctx, r, s))
                names.add(s)
    generated = generate_records(max(0, n - len(real) - len(companions)), seed)
    extra = sorted(companions + real, key=lambda r: ((r.get("subject") or {}).get("subject_id") or "", r["_created"]))
    return generated + extra


def _encode_objects(objects: dict[str, bytes]) -> dict:
    encoded: dict[str, dict[str, str]] = {}
    for key in sorted(objects):
        data = objects[key]
        try:
            encoded[key] = {"text": data.decode("utf-8")}
        except UnicodeDecodeError:
            encoded[key] = {"base64": base64.b64encode(data).decode("ascii")}
    return {"bucket": OPEN_DATA_BUCKET, "objects": encoded}


def _gzip_bytes(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0, filename="") as fh:
        fh.write(data)
    return buffer.getvalue()


def _load_real_records(directory: Path | None) -> list[dict]:
    if directory is not None:
        return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "tests" / "fixtures" / "docdb-records"
        if candidate.is_dir():
            return [json.loads(p.read_text()) for p in sorted(candidate.glob("*.json"))]
    from .sample import load_sample_records  # the shipped sample carries them

    by_id = {r.get("_id"): r for r in load_sample_records()}
    return [by_id[i] for i in REAL_RECORD_IDS if i in by_id]


def write_sample(out: str | Path, *, n: int = 3000, seed: int = 7,
                 real_records: Sequence[dict] | None = None) -> tuple[Path, Path]:
    """Write ``sample_records.jsonl.gz`` and ``sample_open_data.json.gz`` into directory ``out``.

    ``real_records`` defaults to the repository's ``tests/fixtures/docdb-records`` (or, outside a checkout,
    the real records of the currently shipped sample). Output bytes are deterministic (gzip mtime 0).
    Returns the two paths.
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if real_records is None:
        real_records = _load_real_records(None)
    records = build_sample_records(n, seed, real_records)
    lines = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
    records_path = out_dir / "sample_records.jsonl.gz"
    records_path.write_bytes(_gzip_bytes(lines.encode("utf-8")))
    objects = generate_open_data_objects(records, seed=seed)
    open_data_path = out_dir / "sample_open_data.json.gz"
    open_data_path.write_bytes(_gzip_bytes(json.dumps(_encode_objects(objects), separators=(",", ":")).encode()))
    return records_path, open_data_path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: regenerate the demo sample files (``--n``, ``--seed``, ``--out``)."""
    parser = argparse.ArgumentParser(prog="python -m bdc_tables_docdb.demo.generator",
                                     description="Regenerate the bdc DocDB demo sample.")
    parser.add_argument("--n", type=int, default=3000, help="records in total, real records included")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output directory (default: the demo package folder)")
    parser.add_argument("--real-records", type=Path, default=None,
                        help="folder of real DocDB records (*.json) to include as they are")
    args = parser.parse_args(argv)
    real = _load_real_records(args.real_records)
    records_path, open_data_path = write_sample(args.out, n=args.n, seed=args.seed, real_records=real)
    for path in (records_path, open_data_path):
        print(f"{path}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
