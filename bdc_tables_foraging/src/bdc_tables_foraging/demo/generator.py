"""Seeded generator of a dynamic-foraging database in the upstream layout.

Upstream is ``aind_dynamic_foraging_database``.

The generated tree is exactly what the upstream query helpers read (``base=`` a local dir)::

    <root>/session_table.parquet                         flat, one row per session, 160 columns
    <root>/trial_table/subject_id=<id>/<file>.parquet    hive, 103 columns, one row per trial
    <root>/event_table/subject_id=<id>/<file>.parquet    hive, 10 columns, one row per event

Layout decisions (mirroring ``aind_dynamic_foraging_database.build.parquet_builder``):

* **Every partition file holds a ``subject_id`` column, as a string** (upstream sets it on each
  per-session frame and casts it to ``str`` before writing). It is one of the 103 trial / 10 event
  columns. When a reader turns on ``hive_partitioning`` (as all upstream helpers do), DuckDB
  *replaces* that column with the value from the ``subject_id=<id>`` directory and infers its type
  from every partition value in the read's scope: ``BIGINT`` when all of them are digits without a
  leading zero, ``VARCHAR`` as soon as one has a leading zero (``"0412"``). The type of
  ``subject_id`` in ``read_trials(...)`` therefore depends on *which* subjects are in scope.
  ``fetch_trials`` / ``fetch_events`` are unaffected: they take ``subject_id`` from the session
  table (string) and join on ``session_id``.
* File names follow upstream: per-session files ``<session_id>.parquet`` (the state right after a
  build) and coalesced per-subject files ``<subject_id>.parquet`` (after
  ``postprocess.coalesce_partitions``). Most subjects are coalesced; every third subject keeps one
  file per session.
* The *drift subject* (``drift_subject=True``) has a coalesced ``<subject_id>.parquet`` for all but
  its last session written with an older schema (``auto_waterL``/``auto_waterR`` as ``int32``, no
  ``side_bias`` column) and a newer ``<session_id>.parquet`` for the last session with the current
  schema (``int64``, ``side_bias`` present): readers need ``union_by_name``.
* Events: ``trial`` is the index of the last go cue at or before the event, ``-1`` before the first
  go cue; ``data`` is a string (upstream canonical type): ``"1.0"`` for licks/go cues/laser,
  ``"earned"``/``"auto"`` for reward deliveries. Files are sorted by ``timestamps`` within a session.
* Session metrics are computed from the generated trials with the definitions of upstream's
  ``validate_step2`` (``total_trials`` excludes autowater trials, ``finished_trials`` = non-autowater
  trials with a response, ``bias_naive = 2 * (n_right / finished - 0.5)``, ...).
* Every session of a run has exactly ``trials_per_session`` trials; events vary (~8 per trial).

Writes go through a temporary name and an atomic rename, subject by subject, so memory stays bounded
(one subject's frames at a time) whatever the size of the database.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import shutil
import sys
import time
import uuid
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "SESSION_TABLE",
    "TRIAL_COLUMNS",
    "TRIAL_TABLE",
    "EVENT_TABLE",
    "DRIFT_ADDED_COLUMN",
    "DRIFT_WIDENED_COLUMNS",
    "ForagingDbChange",
    "ForagingDbInfo",
    "describe_foraging_db",
    "generate_foraging_db",
    "main",
    "modify_foraging_db",
]

SESSION_TABLE = "session_table.parquet"
TRIAL_TABLE = "trial_table"
EVENT_TABLE = "event_table"

EVENT_TYPES = (
    "goCue_start_time",
    "left_lick_time",
    "right_lick_time",
    "left_reward_delivery_time",
    "right_reward_delivery_time",
    "optogenetics_time",
)
_EV_GOCUE, _EV_LLICK, _EV_RLICK, _EV_LREW, _EV_RREW, _EV_OPTO = range(6)
_EVENT_DATA = ("1.0", "earned", "auto")

# Identity columns upstream appends to every trial/event frame (in this order) before writing.
_IDENTITY_FIELDS = [
    ("subject_id", pa.string()),
    ("session_date", pa.string()),
    ("nwb_suffix", pa.int64()),
    ("session_id", pa.string()),
    ("nwb_data_source", pa.string()),
]

# 98 reader columns (AIND create_df_trials vocabulary) + 5 identity columns = 103.
_TRIAL_READER_FIELDS = [
    ("trial", pa.int64()),
    ("animal_response", pa.float64()),
    ("rewarded_historyL", pa.bool_()),
    ("rewarded_historyR", pa.bool_()),
    ("reward_probabilityL", pa.float64()),
    ("reward_probabilityR", pa.float64()),
    ("reward_random_number_left", pa.float64()),
    ("reward_random_number_right", pa.float64()),
    ("left_valve_open_time", pa.float64()),
    ("right_valve_open_time", pa.float64()),
    ("block_beta", pa.float64()),
    ("block_min", pa.int64()),
    ("block_max", pa.int64()),
    ("min_reward_each_block", pa.int64()),
    ("delay_beta", pa.float64()),
    ("delay_min", pa.float64()),
    ("delay_max", pa.float64()),
    ("delay_duration", pa.float64()),
    ("ITI_beta", pa.float64()),
    ("ITI_min", pa.float64()),
    ("ITI_max", pa.float64()),
    ("ITI_duration", pa.float64()),
    ("response_duration", pa.float64()),
    ("reward_consumption_duration", pa.float64()),
    ("reward_delay", pa.float64()),
    ("auto_waterL", pa.int64()),
    ("auto_waterR", pa.int64()),
    ("laser_on_trial", pa.float64()),
    ("laser_wavelength", pa.float64()),
    ("laser_location", pa.string()),
    ("laser_power", pa.float64()),
    ("laser_on_probability", pa.float64()),
    ("laser_duration", pa.float64()),
    ("laser_condition", pa.string()),
    ("laser_condition_probability", pa.float64()),
    ("laser_start", pa.string()),
    ("laser_start_offset", pa.float64()),
    ("laser_end", pa.string()),
    ("laser_end_offset", pa.float64()),
    ("laser_protocol", pa.string()),
    ("laser_frequency", pa.float64()),
    ("laser_rampingdown", pa.float64()),
    ("laser_pulse_duration", pa.float64()),
    ("session_wide_control", pa.string()),
    ("fraction_of_session", pa.float64()),
    ("session_start_with", pa.string()),
    ("session_alternation", pa.string()),
    ("minimum_opto_interval", pa.float64()),
    ("auto_train_engaged", pa.string()),
    ("auto_train_curriculum_name", pa.string()),
    ("auto_train_curriculum_version", pa.string()),
    ("auto_train_curriculum_schema_version", pa.string()),
    ("auto_train_stage", pa.string()),
    ("auto_train_stage_overridden", pa.string()),
    ("lickspout_position_x", pa.float64()),
    ("lickspout_position_y", pa.float64()),
    ("lickspout_position_z", pa.float64()),
    ("lickspout_position_z1", pa.float64()),
    ("lickspout_position_z2", pa.float64()),
    ("reward_size_left", pa.float64()),
    ("reward_size_right", pa.float64()),
    ("goCue_start_time_in_session", pa.float64()),
    ("goCue_start_time_raw", pa.float64()),
    ("goCue_start_time_in_trial", pa.float64()),
    ("choice_time_in_session", pa.float64()),
    ("choice_time_in_trial", pa.float64()),
    ("reward_time_in_session", pa.float64()),
    ("reward_time_in_trial", pa.float64()),
    ("reward_outcome_time_in_session", pa.float64()),
    ("reward_outcome_time_in_trial", pa.float64()),
    ("delay_start_time_in_session", pa.float64()),
    ("start_time", pa.float64()),
    ("stop_time", pa.float64()),
    ("start_time_in_session", pa.float64()),
    ("stop_time_in_session", pa.float64()),
    ("earned_reward", pa.bool_()),
    ("extra_reward", pa.bool_()),
    ("reward_non_autowater", pa.bool_()),
    ("non_autowater_trial", pa.int64()),
    ("non_autowater_finished_trial", pa.bool_()),
    ("left_lick_count", pa.int64()),
    ("right_lick_count", pa.int64()),
    ("reaction_time", pa.float64()),
    ("bait_left", pa.float64()),
    ("bait_right", pa.float64()),
    ("base_reward_probability_sum", pa.float64()),
    ("left_reward_type", pa.string()),
    ("right_reward_type", pa.string()),
    ("block_id", pa.int64()),
    ("block_length", pa.int64()),
    ("side_bias", pa.float64()),
    ("side_bias_confidence_lower", pa.float64()),
    ("side_bias_confidence_upper", pa.float64()),
    ("lick_spout_retraction", pa.bool_()),
    ("warmup", pa.string()),
    ("randomness", pa.string()),
    ("ses_idx", pa.string()),
    ("trial_duration", pa.float64()),
]
_TRIAL_SCHEMA = pa.schema(_TRIAL_READER_FIELDS + _IDENTITY_FIELDS)
TRIAL_COLUMNS: tuple[str, ...] = tuple(_TRIAL_SCHEMA.names)

# The drift subject's older file: one column missing, two columns narrower.
DRIFT_ADDED_COLUMN = "side_bias"
DRIFT_WIDENED_COLUMNS = ("auto_waterL", "auto_waterR")

_EVENT_SCHEMA = pa.schema(
    [
        ("timestamps", pa.float64()),
        ("data", pa.string()),
        ("event", pa.string()),
        ("raw_timestamps", pa.float64()),
        ("trial", pa.int64()),
    ]
    + _IDENTITY_FIELDS
)
EVENT_COLUMNS: tuple[str, ...] = tuple(_EVENT_SCHEMA.names)

# --------------------------------------------------------------------------------------------
# Session table schema: 36 documented key columns + plausible metric / metadata columns = 160.
# --------------------------------------------------------------------------------------------

_DURATION_PERIODS = ("gocue_stop", "delay_period", "iti", "trial")
_STATS = ("mean", "median", "std", "min", "max")
_LOGISTIC_PARAMS = {
    "Su2022": ("RewC_amp", "RewC_tau", "UnrC_amp", "UnrC_tau", "bias", "score_mean", "score_std"),
    "Bari2019": ("RewC_amp", "RewC_tau", "ChoiceKernel_amp", "ChoiceKernel_tau", "bias",
                 "score_mean", "score_std"),
    "Hattori2019": ("RewC_amp", "RewC_tau", "UnrC_amp", "UnrC_tau", "ChoiceKernel_amp",
                    "ChoiceKernel_tau", "bias", "score_mean", "score_std"),
    "Miller2021": ("ChoiceKernel_amp", "ChoiceKernel_tau", "RewC_amp", "RewC_tau", "bias",
                   "score_mean", "score_std"),
}


def _random_float_spec() -> dict[str, tuple[float, float]]:
    """Extra session metrics drawn uniformly per session: name -> (low, high)."""
    spec: dict[str, tuple[float, float]] = {
        **{f"lickspout_movement_range_{a}": (0.0, 2000.0) for a in "xyz"},
        **{f"lickspout_initial_pos_{a}": (0.0, 15000.0) for a in "xyz"},
        **{f"lickspout_median_pos_{a}": (0.0, 15000.0) for a in "xyz"},
        **{f"double_dipping_rate_finished_{k}": (0.0, 0.6)
           for k in ("trials", "reward_trials", "noreward_trials")},
        **{f"lick_consistency_mean_finished_{k}": (0.3, 1.0)
           for k in ("trials", "reward_trials", "noreward_trials")},
        "early_lick_rate": (0.0, 0.5),
        "early_lick_rate_left": (0.0, 0.5),
        "early_lick_rate_right": (0.0, 0.5),
        "invalid_lick_ratio": (0.0, 0.2),
        "water_in_session_manual": (0.0, 0.3),
        "water_after_session": (0.0, 1.0),
        "laser_1_calibration_power": (0.0, 10.0),
        "laser_2_calibration_power": (0.0, 10.0),
    }
    fixed = {"bias": (-1.5, 1.5), "score_mean": (0.5, 0.95), "score_std": (0.0, 0.1)}
    for model, params in _LOGISTIC_PARAMS.items():
        for p in params:
            if p.endswith("_tau"):
                spec[f"logistic_{model}_{p}"] = (0.5, 10.0)
            elif p.endswith("_amp"):
                spec[f"logistic_{model}_{p}"] = (-1.0, 3.0)
            else:
                spec[f"logistic_{model}_{p}"] = fixed[p]
    return spec


_RANDOM_FLOATS = _random_float_spec()

_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
_SESSION_FIELDS: list[tuple[str, pa.DataType]] = [
    # documented key columns
    ("_session_id", _S), ("subject_id", _S), ("session_date", _S), ("nwb_suffix", _I),
    ("task", _S), ("total_trials", _I), ("total_trials_with_autowater", _I),
    ("finished_trials", _I), ("ignored_trials", _I), ("finished_rate", _F), ("ignore_rate", _F),
    ("reward_trials", _I), ("reward_rate", _F), ("foraging_eff", _F),
    ("foraging_performance", _F), ("bias_naive", _F), ("autowater_collected", _I),
    ("autowater_ignored", _I), ("reaction_time_median", _F), ("early_lick_rate", _F),
    ("institute", _S), ("hardware", _S), ("rig_type", _S), ("room", _S), ("data_source", _S),
    ("curriculum_name", _S), ("curriculum_version", _S), ("current_stage_actual", _S),
    ("rig", _S), ("trainer", _S), ("PI", _S), ("weight_after", _F),
    ("water_in_session_total", _F), ("nwb_data_source", _S), ("co_asset_id", _S),
    ("co_s3_nwb_uri", _S),
    # session metadata
    ("session", _I), ("user_name", _S), ("experimenter", _S), ("experiment_description", _S),
    ("notes", _S), ("session_start_time", _S), ("session_end_time", _S),
    ("session_run_time_in_min", _F), ("has_video", _B), ("has_ephys", _B),
    ("commit_ID", _S), ("repo_url", _S), ("current_branch", _S),
    ("curriculum_schema_version", _S), ("current_stage_suggested", _S),
    ("next_stage_suggested", _S), ("decision", _S), ("if_overriden_by_trainer", _B),
    ("if_closed_loop", _B), ("laser_1_target_areas", _S), ("laser_2_target_areas", _S),
    # water / weight
    ("water_in_session_foraging", _F), ("water_day_total", _F), ("base_weight", _F),
    ("target_weight", _F), ("target_weight_ratio", _F), ("weight_after_ratio", _F),
    # computed performance metrics
    ("finished_trials_with_autowater", _I), ("finished_rate_with_autowater", _F),
    ("ignore_rate_with_autowater", _F), ("reaction_time_mean", _F),
    ("avg_trial_length_in_seconds", _F), ("reward_volume_left_mean", _F),
    ("reward_volume_right_mean", _F), ("foraging_eff_random_seed", _F),
    ("foraging_performance_random_seed", _F), ("abs(bias_naive)", _F),
    ("n_left_choices", _I), ("n_right_choices", _I), ("block_number", _I),
    *[(f"effective_block_length_{s}", _F) for s in _STATS],
    *[(f"duration_{p}_{s}", _F) for p in _DURATION_PERIODS for s in _STATS],
    *[(f"p_reward_sum_{s}", _F) for s in ("mean", "std", "median")],
    ("p_reward_contrast_mean", _F), ("p_reward_contrast_median", _F),
    ("p_reward_contrast_std", _F),
]
_SESSION_FIELDS += [(name, _F) for name in _RANDOM_FLOATS if name not in dict(_SESSION_FIELDS)]
_SESSION_FIELDS.append(("abs(logistic_Su2022_bias)", _F))
_SESSION_SCHEMA = pa.schema(_SESSION_FIELDS)
SESSION_COLUMNS: tuple[str, ...] = tuple(_SESSION_SCHEMA.names)

# --------------------------------------------------------------------------------------------
# Vocabularies
# --------------------------------------------------------------------------------------------

_CURRICULA = {
    # curriculum name -> (version, [(stage, task), ...])
    "Uncoupled Baiting": ("2.3", [
        ("STAGE_1_WARMUP", "Coupled Baiting"), ("STAGE_1", "Coupled Baiting"),
        ("STAGE_2", "Uncoupled Baiting"), ("STAGE_3", "Uncoupled Baiting"),
        ("STAGE_FINAL", "Uncoupled Baiting"), ("GRADUATED", "Uncoupled Baiting"),
    ]),
    "Uncoupled Without Baiting": ("2.0", [
        ("STAGE_1_WARMUP", "Coupled Baiting"), ("STAGE_1", "Coupled Baiting"),
        ("STAGE_2", "Uncoupled Without Baiting"), ("STAGE_3", "Uncoupled Without Baiting"),
        ("STAGE_4", "Uncoupled Without Baiting"), ("STAGE_FINAL", "Uncoupled Without Baiting"),
    ]),
    "Coupled Baiting": ("1.0", [
        ("STAGE_1", "Coupled Baiting"), ("STAGE_2", "Coupled Baiting"),
        ("STAGE_3", "Coupled Baiting"), ("STAGE_FINAL", "Coupled Baiting"),
    ]),
}
_CURRICULUM_NAMES = tuple(_CURRICULA)
_TRAINERS = ("Avalon Amaya", "Ella Hilton", "Katrina Nguyen", "Bowen Tan", "Madeline Tom",
             "Lucas Kinsey", "Margaret Lee", "Huy Nguyen")
_PIS = ("Jeremiah Cohen", "Karel Svoboda", "Shuo Chen", "Alex Piet", "Han Hou")
_ROOMS = ("323", "322", "446", "447", "347")
_COUPLED_RATIOS = (8.0, 6.0, 3.0, 1.0)
_UNCOUPLED_PROBS = np.array([0.1, 0.5, 0.9])
_CO_BUCKET = "s3://codeocean-s3datasetsbucket-1u41qdg42ur9"
_FIRST_DAY = _dt.date(2023, 1, 2).toordinal()
_LAST_FIRST_DAY = _dt.date(2025, 3, 1).toordinal()


# --------------------------------------------------------------------------------------------
# Public result types
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ForagingDbInfo:
    """What a generated (or modified) foraging database holds.

    Attributes
    ----------
    root:
        The database root (holds ``session_table.parquet``, ``trial_table/``, ``event_table/``).
    subject_ids:
        Sorted subject ids (strings; some with leading zeros).
    n_sessions, n_trials, n_events:
        Row counts of the session, trial and event tables.
    drift_subject:
        The subject whose trial partition holds two files with different schemas, or ``None``.
    trials_per_subject, events_per_subject:
        Row counts per subject partition (``subject_id -> rows``).
    """

    root: str
    subject_ids: tuple[str, ...]
    n_sessions: int
    n_trials: int
    n_events: int
    drift_subject: str | None
    trials_per_subject: Mapping[str, int] = dataclasses.field(
        default_factory=dict, hash=False, repr=False)
    events_per_subject: Mapping[str, int] = dataclasses.field(
        default_factory=dict, hash=False, repr=False)

    @property
    def leading_zero_subjects(self) -> tuple[str, ...]:
        """Subject ids that start with ``"0"`` (they must survive as strings end to end)."""
        return tuple(s for s in self.subject_ids if s.startswith("0"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (per-subject counts included)."""
        out = dataclasses.asdict(self)
        out["subject_ids"] = list(self.subject_ids)
        out["trials_per_subject"] = dict(self.trials_per_subject)
        out["events_per_subject"] = dict(self.events_per_subject)
        return out


@dataclasses.dataclass(frozen=True)
class ForagingDbChange:
    """What :func:`modify_foraging_db` did, plus the database state afterwards (``info``)."""

    changed: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    new_session_ids: tuple[str, ...]
    info: ForagingDbInfo


# --------------------------------------------------------------------------------------------
# Internals: per-subject profile, session simulation
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Profile:
    """Per-subject constants, derived from the subject id alone (stable across modifications)."""

    curriculum: str
    stage_step: int
    hardware: str
    room: str
    rig: str
    rig_type: str
    trainer: str
    pi: str
    base_weight: float
    bias: float
    skill: float
    opto: bool


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _profile(subject_id: str) -> _Profile:
    r = np.random.default_rng([_crc(subject_id), 0x5EED])
    hardware = "bpod" if r.random() < 0.15 else "bonsai"
    room = _ROOMS[int(r.integers(len(_ROOMS)))]
    rig_type = "ephys" if r.random() < 0.1 else "training"
    box = "ABCD"[int(r.integers(4))]
    return _Profile(
        curriculum=_CURRICULUM_NAMES[int(r.integers(len(_CURRICULUM_NAMES)))],
        stage_step=int(r.integers(1, 4)),
        hardware=hardware,
        room=room,
        rig=f"{room}-{int(r.integers(1, 10))}-{box}" if hardware == "bonsai"
        else f"{room}_bpod_{int(r.integers(1, 5))}",
        rig_type=rig_type,
        trainer=_TRAINERS[int(r.integers(len(_TRAINERS)))],
        pi=_PIS[int(r.integers(len(_PIS)))],
        base_weight=float(np.round(r.uniform(19.0, 30.0), 1)),
        bias=float(r.normal(0.0, 0.4)),
        skill=float(r.uniform(1.5, 6.0)),
        opto=bool(r.random() < 0.2),
    )


@dataclasses.dataclass
class _Session:
    """One simulated session: its trial and event tables and its session-table row."""

    session_id: str
    trials: pa.Table
    events: pa.Table
    row: dict[str, Any]


def _suffix(seconds: int) -> int:
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return h * 10000 + m * 100 + s


def _hms(suffix: int) -> str:
    s = f"{int(suffix):06d}"
    return f"{s[:2]}-{s[2:4]}-{s[4:]}"


def _carry_bait(g: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Baiting: a scheduled reward stays available until its side is chosen (vectorised)."""
    n = len(g)
    idx = np.where(chosen, np.arange(n), -1)
    last_incl = np.maximum.accumulate(idx)
    start = np.concatenate(([0], last_incl[:-1] + 1))
    cg = np.cumsum(g)
    before = np.where(start > 0, cg[np.maximum(start - 1, 0)], 0)
    return (cg - before) > 0


def _stats(x: np.ndarray) -> list[float]:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return [float("nan")] * 5
    return [float(np.mean(x)), float(np.median(x)), float(np.std(x)), float(np.min(x)),
            float(np.max(x))]


def _const(value: Any, n: int, typ: pa.DataType) -> pa.Array:
    if value is None:
        return pa.nulls(n, typ)
    return pa.repeat(pa.scalar(value, typ), n)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def _simulate_session(rng: np.random.Generator, subject_id: str, prof: _Profile,
                      session_number: int, ordinal: int, n: int) -> _Session:
    """Simulate one session of ``n`` trials (vectorised); return its tables and session row."""
    session_date = _dt.date.fromordinal(ordinal).isoformat()
    suffix = _suffix(int(rng.integers(8 * 3600, 19 * 3600)))
    session_id = f"{subject_id}_{session_date}_{suffix}"
    stages = _CURRICULA[prof.curriculum][1]
    stage_i = min((session_number - 1) // prof.stage_step, len(stages) - 1)
    stage, task = stages[stage_i]
    if prof.hardware == "bpod":
        nwb_source = "bpod_s3"
    else:
        nwb_source = "co_asset" if rng.random() < 0.7 else "bonsai_s3"
    baiting = "Without Baiting" not in task
    coupled = task.startswith("Coupled")
    opto = prof.opto and stage_i >= 2
    trial = np.arange(n, dtype=np.int64)

    # ---- blocks and reward probabilities ----
    block_min, block_max, block_beta = 20, 60, 20.0
    n_blocks = n // block_min + 2
    lens = np.clip(rng.exponential(block_beta, n_blocks).astype(np.int64) + block_min,
                   block_min, block_max)
    block_id = np.repeat(np.arange(n_blocks), lens)[:n]
    block_length = lens[block_id]
    if coupled:
        p_sum = 0.45 if stage_i >= 1 else 0.8
        ratio = np.asarray(_COUPLED_RATIOS)[rng.integers(len(_COUPLED_RATIOS), size=n_blocks)]
        rich = (np.arange(n_blocks) + int(rng.integers(2))) % 2  # alternate the rich side
        p_rich = np.round(p_sum * ratio / (1.0 + ratio), 4)
        pR_b = np.where(rich == 1, p_rich, p_sum - p_rich)
        pL_b = np.round(p_sum - pR_b, 4)
    else:
        pL_b = _UNCOUPLED_PROBS[rng.integers(3, size=n_blocks)]
        pR_b = _UNCOUPLED_PROBS[rng.integers(3, size=n_blocks)]
    pL, pR = pL_b[block_id], pR_b[block_id]

    # ---- autowater: warm-up trials on both sides, then sporadic single-side ----
    n_warm = int(rng.integers(0, 6 if stage_i < 2 else 2))
    sporadic = rng.random(n) < 0.02
    side_l = rng.random(n) < 0.5
    awL = ((trial < n_warm) | (sporadic & side_l)).astype(np.int64)
    awR = ((trial < n_warm) | (sporadic & ~side_l)).astype(np.int64)
    non_aw = (awL == 0) & (awR == 0)

    # ---- choices ----
    ignore_p = float(rng.uniform(0.02, 0.25))
    ignored = rng.random(n) < ignore_p
    p_right = 1.0 / (1.0 + np.exp(-(prof.skill * (pR - pL) + prof.bias)))
    right = rng.random(n) < p_right
    response = np.where(ignored, 2, np.where(right, 1, 0))
    chose_l, chose_r = response == 0, response == 1
    rand_l, rand_r = rng.random(n), rng.random(n)
    g_l, g_r = rand_l < pL, rand_r < pR
    bait_l = _carry_bait(g_l, chose_l) if baiting else g_l
    bait_r = _carry_bait(g_r, chose_r) if baiting else g_r
    rew_l, rew_r = chose_l & bait_l, chose_r & bait_r
    earned = rew_l | rew_r

    # ---- timing ----
    delay = np.clip(rng.exponential(1.0, n) + 0.5, 0.5, 1.0)
    iti = np.clip(rng.exponential(2.0, n) + 1.0, 1.0, 7.0)
    rt = np.minimum(rng.lognormal(np.log(0.35), 0.5, n), 0.99)
    rt[ignored] = np.nan
    response_window = np.where(ignored, 1.0, rt)
    consumption = 3.0
    trial_len = iti + delay + response_window + consumption
    t0 = float(rng.uniform(2.0, 10.0))
    start = t0 + np.concatenate(([0.0], np.cumsum(trial_len)[:-1]))
    stop = start + trial_len
    delay_start = start + iti
    gocue = delay_start + delay
    choice = gocue + rt
    reward_delay = 0.0
    reward_time = np.where(earned, choice + reward_delay, np.nan)
    harp0 = float(rng.uniform(1.0e5, 3.0e6))
    reward_size = float(rng.choice([2.0, 2.5, 3.0]))

    # ---- laser ----
    laser_on = (rng.random(n) < 0.25) if opto else np.zeros(n, dtype=bool)
    laser_start_offset = 0.0

    # ---- events ----
    ev_t, ev_k, ev_d = [gocue], [np.full(n, _EV_GOCUE)], [np.zeros(n, dtype=np.int64)]
    fin = np.flatnonzero(~ignored)
    bout = rng.poisson(5.5, len(fin)) + 1
    k_total = int(bout.sum())
    owner = np.repeat(fin, bout)
    gaps = rng.exponential(0.08, k_total) + 0.06
    cs = np.cumsum(gaps)
    first = np.repeat(np.cumsum(bout) - bout, bout)
    offs = cs - cs[first]
    lick_right = chose_r[owner] ^ (rng.random(k_total) < 0.08)
    ev_t.append(choice[owner] + offs)
    ev_k.append(np.where(lick_right, _EV_RLICK, _EV_LLICK))
    ev_d.append(np.zeros(k_total, dtype=np.int64))
    # spontaneous licks between trials, and before the first go cue (trial = -1)
    m = rng.poisson(1.0, n)
    owner = np.repeat(trial, m)
    nxt = np.concatenate((gocue[1:], [stop[-1] + 5.0]))
    lo = np.where(ignored, gocue + 1.0, choice + 2.5)[owner]
    hi = nxt[owner]
    t_spont = lo + rng.random(len(owner)) * np.maximum(hi - lo, 0.0)
    n_pre = int(rng.poisson(3.0))
    t_pre = rng.random(n_pre) * gocue[0]
    ev_t += [t_spont, t_pre]
    ev_k += [np.where(rng.random(len(owner)) < 0.5, _EV_RLICK, _EV_LLICK),
             np.where(rng.random(n_pre) < 0.5, _EV_RLICK, _EV_LLICK)]
    ev_d += [np.zeros(len(owner), dtype=np.int64), np.zeros(n_pre, dtype=np.int64)]
    # reward deliveries: earned at reward time, autowater at the go cue
    for mask, t, kind, data in (
        (rew_l, reward_time, _EV_LREW, 1), (rew_r, reward_time, _EV_RREW, 1),
        (awL == 1, gocue, _EV_LREW, 2), (awR == 1, gocue, _EV_RREW, 2),
        (laser_on, start + laser_start_offset, _EV_OPTO, 0),
    ):
        sel = np.flatnonzero(mask)
        ev_t.append(t[sel])
        ev_k.append(np.full(len(sel), kind))
        ev_d.append(np.full(len(sel), data, dtype=np.int64))
    ts = np.concatenate(ev_t)
    kinds = np.concatenate(ev_k)
    datas = np.concatenate(ev_d)
    order = np.argsort(ts, kind="stable")
    ts, kinds, datas = ts[order], kinds[order], datas[order]
    ev_trial = np.searchsorted(gocue, ts, side="right").astype(np.int64) - 1
    ne = len(ts)
    licks = (kinds == _EV_LLICK) | (kinds == _EV_RLICK)
    in_trial = licks & (ev_trial >= 0)
    left_lick_count = np.bincount(ev_trial[in_trial & (kinds == _EV_LLICK)], minlength=n)
    right_lick_count = np.bincount(ev_trial[in_trial & (kinds == _EV_RLICK)], minlength=n)

    identity_t = {
        "subject_id": _const(subject_id, n, pa.string()),
        "session_date": _const(session_date, n, pa.string()),
        "nwb_suffix": _const(suffix, n, pa.int64()),
        "session_id": _const(session_id, n, pa.string()),
        "nwb_data_source": _const(nwb_source, n, pa.string()),
    }
    events = pa.table(
        {
            "timestamps": ts,
            "data": pa.array(list(_EVENT_DATA)).take(pa.array(datas)),
            "event": pa.array(list(EVENT_TYPES)).take(pa.array(kinds)),
            "raw_timestamps": ts + harp0,
            "trial": ev_trial,
            "subject_id": _const(subject_id, ne, pa.string()),
            "session_date": _const(session_date, ne, pa.string()),
            "nwb_suffix": _const(suffix, ne, pa.int64()),
            "session_id": _const(session_id, ne, pa.string()),
            "nwb_data_source": _const(nwb_source, ne, pa.string()),
        },
        schema=_EVENT_SCHEMA,
    )

    # ---- trial table ----
    curr_version = _CURRICULA[prof.curriculum][0]
    lick_x = float(rng.uniform(5000, 10000))
    side_bias = np.clip(prof.bias / 2 + rng.normal(0, 0.1, n), -1.0, 1.0)
    reward_type_l = np.where(rew_l, "earned", np.where(awL == 1, "auto", "none"))
    reward_type_r = np.where(rew_r, "earned", np.where(awR == 1, "auto", "none"))
    los = (lambda v, typ=pa.float64(): _const(v if opto else None, n, typ))
    cols: dict[str, Any] = {
        "trial": trial,
        "animal_response": response.astype(np.float64),
        "rewarded_historyL": rew_l,
        "rewarded_historyR": rew_r,
        "reward_probabilityL": pL,
        "reward_probabilityR": pR,
        "reward_random_number_left": rand_l,
        "reward_random_number_right": rand_r,
        "left_valve_open_time": _const(round(reward_size * 0.0125, 4), n, pa.float64()),
        "right_valve_open_time": _const(round(reward_size * 0.0135, 4), n, pa.float64()),
        "block_beta": _const(block_beta, n, pa.float64()),
        "block_min": _const(block_min, n, pa.int64()),
        "block_max": _const(block_max, n, pa.int64()),
        "min_reward_each_block": _const(3, n, pa.int64()),
        "delay_beta": _const(1.0, n, pa.float64()),
        "delay_min": _const(0.5, n, pa.float64()),
        "delay_max": _const(1.0, n, pa.float64()),
        "delay_duration": delay,
        "ITI_beta": _const(2.0, n, pa.float64()),
        "ITI_min": _const(1.0, n, pa.float64()),
        "ITI_max": _const(7.0, n, pa.float64()),
        "ITI_duration": iti,
        "response_duration": _const(1.0, n, pa.float64()),
        "reward_consumption_duration": _const(consumption, n, pa.float64()),
        "reward_delay": _const(reward_delay, n, pa.float64()),
        "auto_waterL": awL,
        "auto_waterR": awR,
        "laser_on_trial": laser_on.astype(np.float64),
        "laser_wavelength": los(473.0),
        "laser_location": los("Both", pa.string()),
        "laser_power": los(float(np.round(rng.uniform(1.0, 8.0), 1))),
        "laser_on_probability": los(0.25),
        "laser_duration": los(2.0),
        "laser_condition": los("Random", pa.string()),
        "laser_condition_probability": los(0.25),
        "laser_start": los("Trial start", pa.string()),
        "laser_start_offset": los(laser_start_offset),
        "laser_end": los("NA", pa.string()),
        "laser_end_offset": los(0.0),
        "laser_protocol": los("Sine", pa.string()),
        "laser_frequency": los(40.0),
        "laser_rampingdown": los(0.1),
        "laser_pulse_duration": los(None),
        "session_wide_control": _const("false", n, pa.string()),
        "fraction_of_session": _const(0.5, n, pa.float64()),
        "session_start_with": _const("on", n, pa.string()),
        "session_alternation": _const("off", n, pa.string()),
        "minimum_opto_interval": _const(0.0, n, pa.float64()),
        "auto_train_engaged": _const(str(prof.hardware == "bonsai"), n, pa.string()),
        "auto_train_curriculum_name": _const(prof.curriculum, n, pa.string()),
        "auto_train_curriculum_version": _const(curr_version, n, pa.string()),
        "auto_train_curriculum_schema_version": _const("1.0", n, pa.string()),
        "auto_train_stage": _const(stage, n, pa.string()),
        "auto_train_stage_overridden": _const("False", n, pa.string()),
        "lickspout_position_x": _const(lick_x, n, pa.float64()),
        "lickspout_position_y": _const(lick_x + 1500.0, n, pa.float64()),
        "lickspout_position_z": _const(lick_x - 2000.0, n, pa.float64()),
        "lickspout_position_z1": _const(None, n, pa.float64()),
        "lickspout_position_z2": _const(None, n, pa.float64()),
        "reward_size_left": _const(reward_size, n, pa.float64()),
        "reward_size_right": _const(reward_size, n, pa.float64()),
        "goCue_start_time_in_session": gocue,
        "goCue_start_time_raw": gocue + harp0,
        "goCue_start_time_in_trial": gocue - start,
        "choice_time_in_session": choice,
        "choice_time_in_trial": choice - start,
        "reward_time_in_session": reward_time,
        "reward_time_in_trial": reward_time - start,
        "reward_outcome_time_in_session": choice,
        "reward_outcome_time_in_trial": choice - start,
        "delay_start_time_in_session": delay_start,
        "start_time": start + harp0,
        "stop_time": stop + harp0,
        "start_time_in_session": start,
        "stop_time_in_session": stop,
        "earned_reward": earned,
        "extra_reward": np.zeros(n, dtype=bool),
        "reward_non_autowater": earned & non_aw,
        "non_autowater_trial": non_aw.astype(np.int64),
        "non_autowater_finished_trial": non_aw & ~ignored,
        "left_lick_count": left_lick_count.astype(np.int64),
        "right_lick_count": right_lick_count.astype(np.int64),
        "reaction_time": rt,
        "bait_left": bait_l.astype(np.float64),
        "bait_right": bait_r.astype(np.float64),
        "base_reward_probability_sum": pL + pR,
        "left_reward_type": pa.array(reward_type_l, pa.string()),
        "right_reward_type": pa.array(reward_type_r, pa.string()),
        "block_id": block_id.astype(np.int64),
        "block_length": block_length.astype(np.int64),
        "side_bias": side_bias,
        "side_bias_confidence_lower": side_bias - 0.2,
        "side_bias_confidence_upper": side_bias + 0.2,
        "lick_spout_retraction": np.zeros(n, dtype=bool),
        "warmup": _const("on" if stage_i == 0 else "off", n, pa.string()),
        "randomness": _const("Exponential", n, pa.string()),
        "ses_idx": _const(f"behavior_{subject_id}_{session_date}_{_hms(suffix)}", n, pa.string()),
        "trial_duration": trial_len,
        **identity_t,
    }
    trials = pa.table([cols[f.name] for f in _TRIAL_SCHEMA], schema=_TRIAL_SCHEMA)

    # ---- session-table row (metrics per upstream validate_step2 definitions) ----
    total = int(non_aw.sum())
    finished = int((non_aw & ~ignored).sum())
    n_right = int((non_aw & chose_r).sum())
    n_left = finished - n_right
    reward_trials = int((non_aw & earned).sum())
    optimal = float(np.maximum(pL, pR)[non_aw].sum())
    foraging_eff = min(1.0, _ratio(reward_trials, optimal)) if optimal else float("nan")
    finished_rate = _ratio(finished, total)
    run_min = float(stop[-1] / 60.0)
    weight_after = round(prof.base_weight * float(rng.uniform(0.8, 0.95)), 1)
    water_foraging = round(float((earned.sum() + awL.sum() + awR.sum()) * reward_size / 1000), 3)
    co_id = str(uuid.UUID(bytes=rng.bytes(16), version=4)) if nwb_source == "co_asset" else None
    start_clock = _dt.datetime.combine(_dt.date.fromordinal(ordinal), _dt.time(
        suffix // 10000, suffix // 100 % 100, suffix % 100))
    p_sum, contrast = pL + pR, np.abs(pL - pR) / np.maximum(pL + pR, 1e-9)
    next_stage = stages[min(stage_i + 1, len(stages) - 1)][0]
    row: dict[str, Any] = {
        "_session_id": session_id, "subject_id": subject_id, "session_date": session_date,
        "nwb_suffix": suffix, "task": task, "total_trials": total,
        "total_trials_with_autowater": n, "finished_trials": finished,
        "ignored_trials": total - finished, "finished_rate": finished_rate,
        "ignore_rate": _ratio(total - finished, total), "reward_trials": reward_trials,
        "reward_rate": _ratio(reward_trials, finished), "foraging_eff": foraging_eff,
        "foraging_performance": foraging_eff * finished_rate,
        "bias_naive": 2.0 * (_ratio(n_right, finished) - 0.5),
        "autowater_collected": int((~non_aw & ~ignored).sum()),
        "autowater_ignored": int((~non_aw & ignored).sum()),
        "reaction_time_median": float(np.nanmedian(rt[non_aw])) if finished else float("nan"),
        "institute": "AIND", "hardware": prof.hardware, "rig_type": prof.rig_type,
        "room": prof.room, "data_source": f"AIND_{prof.rig_type}_{prof.room}_{prof.hardware}",
        "curriculum_name": prof.curriculum, "curriculum_version": curr_version,
        "current_stage_actual": stage, "rig": prof.rig, "trainer": prof.trainer, "PI": prof.pi,
        "weight_after": weight_after,
        "water_in_session_total": None,  # filled below
        "nwb_data_source": nwb_source, "co_asset_id": co_id,
        "co_s3_nwb_uri": (f"{_CO_BUCKET}/{co_id}/nwb/behavior_{subject_id}_{session_date}_"
                          f"{_hms(suffix)}.nwb") if co_id else None,
        "session": session_number, "user_name": prof.trainer, "experimenter": prof.trainer,
        "experiment_description": f"{task} ({prof.curriculum})",
        "notes": "" if rng.random() < 0.8 else "mouse was active",
        "session_start_time": start_clock.isoformat(),
        "session_end_time": (start_clock + _dt.timedelta(seconds=float(stop[-1]))).isoformat(
            timespec="seconds"),
        "session_run_time_in_min": run_min, "has_video": bool(rng.random() < 0.6),
        "has_ephys": prof.rig_type == "ephys",
        "commit_ID": rng.bytes(20).hex(),
        "repo_url": "https://github.com/AllenNeuralDynamics/dynamic-foraging-task.git",
        "current_branch": "main", "curriculum_schema_version": "1.0",
        "current_stage_suggested": stage, "next_stage_suggested": next_stage,
        "decision": "PROGRESS" if next_stage != stage else "STAY",
        "if_overriden_by_trainer": bool(rng.random() < 0.05), "if_closed_loop": True,
        "laser_1_target_areas": "NAc" if opto else None,
        "laser_2_target_areas": "NAc" if opto else None,
        "water_in_session_foraging": water_foraging,
        "base_weight": prof.base_weight, "target_weight": round(prof.base_weight * 0.85, 1),
        "target_weight_ratio": 0.85, "weight_after_ratio": weight_after / prof.base_weight,
        "finished_trials_with_autowater": int((~ignored).sum()),
        "finished_rate_with_autowater": float((~ignored).mean()),
        "ignore_rate_with_autowater": float(ignored.mean()),
        "reaction_time_mean": float(np.nanmean(rt[non_aw])) if finished else float("nan"),
        "avg_trial_length_in_seconds": float(trial_len.mean()),
        "reward_volume_left_mean": reward_size, "reward_volume_right_mean": reward_size,
        "foraging_eff_random_seed": foraging_eff * float(rng.uniform(0.95, 1.05)),
        "foraging_performance_random_seed": foraging_eff * finished_rate
        * float(rng.uniform(0.95, 1.05)),
        "n_left_choices": n_left, "n_right_choices": n_right,
        "block_number": int(block_id[-1]) + 1,
        "p_reward_sum_mean": float(p_sum.mean()), "p_reward_sum_std": float(p_sum.std()),
        "p_reward_sum_median": float(np.median(p_sum)),
        "p_reward_contrast_mean": float(contrast.mean()),
        "p_reward_contrast_median": float(np.median(contrast)),
        "p_reward_contrast_std": float(contrast.std()),
    }
    row["abs(bias_naive)"] = abs(row["bias_naive"])
    for stat, v in zip(_STATS, _stats(np.bincount(block_id).astype(float))):
        row[f"effective_block_length_{stat}"] = v
    for period, arr in zip(_DURATION_PERIODS, (stop - gocue, delay, iti, trial_len)):
        for stat, v in zip(_STATS, _stats(arr)):
            row[f"duration_{period}_{stat}"] = v
    u = rng.random(len(_RANDOM_FLOATS))
    for (name, (lo_v, hi_v)), ui in zip(_RANDOM_FLOATS.items(), u):
        row.setdefault(name, float(lo_v + ui * (hi_v - lo_v)))
    row["water_in_session_total"] = round(water_foraging + row["water_in_session_manual"], 3)
    row["water_day_total"] = round(row["water_in_session_total"] + row["water_after_session"], 3)
    row["abs(logistic_Su2022_bias)"] = abs(row["logistic_Su2022_bias"])
    if rng.random() < 0.05:  # occasionally not weighed
        row["weight_after"] = None
        row["weight_after_ratio"] = None
    return _Session(session_id, trials, events, row)


def _subject_rng(seed: int, subject_id: str, tag: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, _crc(subject_id), int(tag)])


def _simulate_subject(seed: int, subject_id: str, first_session: int, n_sessions: int,
                      n_trials: int, start_ordinal: int | None, tag: int) -> list[_Session]:
    """Simulate ``n_sessions`` consecutive sessions of one subject (one every 1-3 days)."""
    rng = _subject_rng(seed, subject_id, tag)
    prof = _profile(subject_id)
    day = start_ordinal if start_ordinal is not None else int(
        rng.integers(_FIRST_DAY, _LAST_FIRST_DAY))
    out = []
    for k in range(n_sessions):
        if k or start_ordinal is not None:
            day += int(rng.integers(1, 4))
        out.append(_simulate_session(rng, subject_id, prof, first_session + k, day, n_trials))
    return out


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _write_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` through a temporary name and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _old_schema(table: pa.Table) -> pa.Table:
    """The drift subject's older file: no ``side_bias``, auto-water columns as int32."""
    table = table.drop_columns([DRIFT_ADDED_COLUMN])
    for col in DRIFT_WIDENED_COLUMNS:
        i = table.schema.get_field_index(col)
        table = table.set_column(i, pa.field(col, pa.int32()), table.column(i).cast(pa.int32()))
    return table


def _partition_dir(root: Path, table: str, subject_id: str) -> Path:
    return root / table / f"subject_id={subject_id}"


def _write_subject(root: Path, subject_id: str, sessions: list[_Session], layout: str) -> None:
    """Write one subject's trial/event partition files.

    ``layout``: ``"coalesced"`` (one ``<subject_id>.parquet``), ``"per_session"`` (one
    ``<session_id>.parquet`` per session) or ``"drift"`` (coalesced old-schema file for all but
    the last session + the last session in its own, newer-schema file).
    """
    if layout == "per_session":
        groups = [(s.session_id, [s], False) for s in sessions]
    elif layout == "drift" and len(sessions) >= 2:
        groups = [(subject_id, sessions[:-1], True),
                  (sessions[-1].session_id, sessions[-1:], False)]
    else:
        groups = [(subject_id, sessions, False)]
    for name, group, old in groups:
        trials = pa.concat_tables([s.trials for s in group])
        if old:
            trials = _old_schema(trials)
        events = pa.concat_tables([s.events for s in group])
        _write_atomic(trials, _partition_dir(root, TRIAL_TABLE, subject_id) / f"{name}.parquet")
        _write_atomic(events, _partition_dir(root, EVENT_TABLE, subject_id) / f"{name}.parquet")


def _session_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Build the session table (fixed schema) sorted by subject_id, session_date, nwb_suffix."""
    rows = sorted(rows, key=lambda r: (r["subject_id"], r["session_date"], r["nwb_suffix"]))
    return pa.table({f.name: pa.array([r[f.name] for r in rows], f.type)
                     for f in _SESSION_SCHEMA}, schema=_SESSION_SCHEMA)


def _validate_subject_id(subject_id: str) -> str:
    bad = not isinstance(subject_id, str) or not subject_id or ".." in subject_id
    if bad or any(c in subject_id for c in "/\\'\"=*?") or not subject_id.isprintable():
        raise ValueError(f"invalid subject id {subject_id!r}")
    return subject_id


def _new_subject_ids(rng: np.random.Generator, n: int, n_leading_zero: int,
                     exclude: Iterable[str] = ()) -> list[str]:
    """``n`` fresh ids: ``n_leading_zero`` of 4-6 chars starting with ``"0"``, the rest 6 digits."""
    taken = set(exclude)
    out: list[str] = []
    while len(out) < n:
        i = len(out)
        if i < n_leading_zero:
            width = 4 + i % 3  # 4, 5, 6 characters
            sid = "0" + str(int(rng.integers(10 ** (width - 2), 10 ** (width - 1))))
        else:
            sid = str(int(rng.integers(600000, 800000)))
        if sid not in taken:
            taken.add(sid)
            out.append(sid)
    return out


def _layout_for(index: int, subject_id: str, drift: str | None) -> str:
    if subject_id == drift:
        return "drift"
    return "per_session" if index % 3 == 1 else "coalesced"


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate_foraging_db(
    root: str | os.PathLike[str],
    *,
    subjects: int = 30,
    sessions_per_subject: int = 5,
    trials_per_session: int = 300,
    seed: int = 0,
    leading_zero_subjects: int = 3,
    drift_subject: bool = True,
    overwrite: bool = False,
) -> ForagingDbInfo:
    """Generate a seeded foraging database in the upstream layout under ``root``.

    Parameters
    ----------
    root:
        Output directory (created if needed). Receives ``session_table.parquet``,
        ``trial_table/`` and ``event_table/`` and nothing else.
    subjects:
        Number of subjects (including the leading-zero ones).
    sessions_per_subject, trials_per_session:
        Sessions per subject and trials per session (every session has exactly this many).
    seed:
        Seed; the same arguments give byte-identical files.
    leading_zero_subjects:
        How many subject ids start with ``"0"`` (4, 5 and 6 characters in turn).
    drift_subject:
        Give one subject (the first, in sorted order, without a leading zero) two trial files
        with different schemas; needs ``sessions_per_subject >= 2``, otherwise no drift subject.
    overwrite:
        Replace an existing database under ``root`` (only its three entries are removed).
        Without it an existing database raises :class:`FileExistsError`.

    Returns
    -------
    ForagingDbInfo
        Subject ids, row counts and the drift subject.
    """
    if subjects < 1 or sessions_per_subject < 1 or trials_per_session < 1:
        raise ValueError("subjects, sessions_per_subject and trials_per_session must be >= 1")
    if not 0 <= leading_zero_subjects <= subjects:
        raise ValueError("leading_zero_subjects must be between 0 and subjects")
    if leading_zero_subjects > 2000 or subjects - leading_zero_subjects > 100_000:
        raise ValueError("at most 2000 leading-zero and 100000 other subjects")
    root_p = Path(root)
    entries = [root_p / SESSION_TABLE, root_p / TRIAL_TABLE, root_p / EVENT_TABLE]
    if any(e.exists() for e in entries):
        if not overwrite:
            raise FileExistsError(f"a foraging database already exists under {root_p}")
        for e in entries:
            if e.is_dir():
                shutil.rmtree(e)
            elif e.exists():
                e.unlink()
    root_p.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    subject_ids = sorted(_new_subject_ids(rng, subjects, leading_zero_subjects))
    drift = None
    if drift_subject and sessions_per_subject >= 2:
        normal = [s for s in subject_ids if not s.startswith("0")]
        drift = normal[0] if normal else subject_ids[0]
    rows: list[dict[str, Any]] = []
    trials_per: dict[str, int] = {}
    events_per: dict[str, int] = {}
    for i, sid in enumerate(subject_ids):
        sessions = _simulate_subject(seed, sid, 1, sessions_per_subject, trials_per_session,
                                     None, tag=0)
        _write_subject(root_p, sid, sessions, _layout_for(i, sid, drift))
        rows.extend(s.row for s in sessions)
        trials_per[sid] = sum(s.trials.num_rows for s in sessions)
        events_per[sid] = sum(s.events.num_rows for s in sessions)
    _write_atomic(_session_table(rows), root_p / SESSION_TABLE)
    return ForagingDbInfo(
        root=str(root_p), subject_ids=tuple(subject_ids), n_sessions=len(rows),
        n_trials=sum(trials_per.values()), n_events=sum(events_per.values()),
        drift_subject=drift, trials_per_subject=trials_per, events_per_subject=events_per,
    )


def describe_foraging_db(root: str | os.PathLike[str]) -> ForagingDbInfo:
    """Describe an existing database from its files (parquet footers only, no data scan).

    The drift subject is the first subject whose trial files do not all share one schema.
    """
    root_p = Path(root)
    sessions = pq.read_table(root_p / SESSION_TABLE, columns=["subject_id"])
    subject_ids = tuple(sorted(set(sessions.column("subject_id").to_pylist()) - {None}))
    counts: dict[str, dict[str, int]] = {TRIAL_TABLE: {}, EVENT_TABLE: {}}
    drift = None
    for table, per in counts.items():
        for part in sorted((root_p / table).glob("subject_id=*")):
            sid = part.name[len("subject_id="):]
            files = sorted(part.glob("*.parquet"))
            metas = [pq.read_metadata(f) for f in files]
            per[sid] = sum(m.num_rows for m in metas)
            if table == TRIAL_TABLE and drift is None and len(
                    {m.schema.to_arrow_schema().remove_metadata() for m in metas}) > 1:
                drift = sid
    return ForagingDbInfo(
        root=str(root_p), subject_ids=subject_ids, n_sessions=sessions.num_rows,
        n_trials=sum(counts[TRIAL_TABLE].values()), n_events=sum(counts[EVENT_TABLE].values()),
        drift_subject=drift, trials_per_subject=counts[TRIAL_TABLE],
        events_per_subject=counts[EVENT_TABLE],
    )


def _pick(rng: np.random.Generator, spec: int | Iterable[str], pool: Sequence[str],
          what: str) -> list[str]:
    if isinstance(spec, (int, np.integer)):
        if spec < 0 or spec > len(pool):
            raise ValueError(f"cannot {what} {spec} subjects out of {len(pool)}")
        return sorted(str(s) for s in rng.choice(np.asarray(pool, dtype=object), int(spec),
                                                 replace=False)) if spec else []
    chosen = sorted({str(s) for s in spec})
    unknown = [s for s in chosen if s not in pool]
    if unknown:
        raise ValueError(f"cannot {what} unknown subjects {unknown}")
    return chosen


def _coalesce(part: Path, subject_id: str, sort_keys: list[tuple[str, str]]) -> None:
    """Merge a partition's files into ``<subject_id>.parquet`` (like upstream's coalesce)."""
    files = sorted(part.glob("*.parquet"))
    merged = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
    merged = merged.sort_by(sort_keys)
    target = part / f"{subject_id}.parquet"
    _write_atomic(merged, target)
    for f in files:
        if f != target:
            f.unlink()


def modify_foraging_db(
    root: str | os.PathLike[str],
    *,
    change_subjects: int | Iterable[str] = 2,
    add_subjects: int | Iterable[str] = 1,
    remove_subjects: int | Iterable[str] = 1,
    seed: int = 1,
    sessions_per_subject: int | None = None,
    trials_per_session: int | None = None,
    coalesce: bool = False,
) -> ForagingDbChange:
    """Apply an incremental change to a generated database, the way an upstream rebuild would.

    * **changed** subjects get one new session (1-3 days after their last one): a new
      ``<session_id>.parquet`` in their trial and event partitions (merged into
      ``<subject_id>.parquet`` with ``coalesce=True``) and a new session-table row;
    * **added** subjects get ``sessions_per_subject`` sessions in a new (coalesced) partition;
    * **removed** subjects lose their partition directories and their session-table rows.

    ``change_subjects`` / ``remove_subjects`` are a count (picked with ``seed`` among existing
    subjects; the two sets never overlap) or explicit ids; ``add_subjects`` is a count (fresh
    6-digit ids) or explicit new ids. ``sessions_per_subject`` / ``trials_per_session`` default
    to the medians of the existing database. The session table is rewritten atomically last.

    Returns
    -------
    ForagingDbChange
        The changed / added / removed subjects, the new session ids and the state afterwards.
    """
    root_p = Path(root)
    table = pq.read_table(root_p / SESSION_TABLE)
    old_rows = table.to_pylist()
    existing = sorted({r["subject_id"] for r in old_rows if r["subject_id"] is not None})
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xC4A9])
    removed = _pick(rng, remove_subjects, existing, "remove")
    changed = _pick(rng, change_subjects, [s for s in existing if s not in removed], "change")
    if not isinstance(change_subjects, (int, np.integer)) and set(changed) & set(removed):
        raise ValueError("a subject cannot be both changed and removed")
    if isinstance(add_subjects, (int, np.integer)):
        added = sorted(_new_subject_ids(rng, int(add_subjects), 0, exclude=existing))
    else:
        added = sorted({_validate_subject_id(str(s)) for s in add_subjects})
        clash = [s for s in added if s in existing]
        if clash:
            raise ValueError(f"cannot add existing subjects {clash}")
    if trials_per_session is None:
        trials_per_session = int(np.median([r["total_trials_with_autowater"] for r in old_rows]))
    if sessions_per_subject is None:
        per = np.unique([r["subject_id"] for r in old_rows], return_counts=True)[1]
        sessions_per_subject = int(np.median(per)) if len(per) else 1

    new_rows: list[dict[str, Any]] = []
    new_ids: list[str] = []
    for sid in changed:
        mine = [r for r in old_rows if r["subject_id"] == sid]
        last = max(mine, key=lambda r: (r["session_date"], r["nwb_suffix"]))
        n_before = max(int(r["session"] or 0) for r in mine)
        ordinal = _dt.date.fromisoformat(last["session_date"]).toordinal()
        (sess,) = _simulate_subject(seed, sid, n_before + 1, 1, trials_per_session, ordinal,
                                    tag=1 + n_before)
        _write_subject(root_p, sid, [sess], "per_session")
        if coalesce:
            _coalesce(_partition_dir(root_p, TRIAL_TABLE, sid), sid,
                      [("session_date", "ascending"), ("nwb_suffix", "ascending"),
                       ("trial", "ascending")])
            _coalesce(_partition_dir(root_p, EVENT_TABLE, sid), sid,
                      [("session_date", "ascending"), ("nwb_suffix", "ascending"),
                       ("timestamps", "ascending")])
        new_rows.append(sess.row)
        new_ids.append(sess.session_id)
    for sid in added:
        sessions = _simulate_subject(seed, sid, 1, sessions_per_subject, trials_per_session,
                                     None, tag=0)
        _write_subject(root_p, sid, sessions, "coalesced")
        new_rows.extend(s.row for s in sessions)
        new_ids.extend(s.session_id for s in sessions)
    for sid in removed:
        for tbl in (TRIAL_TABLE, EVENT_TABLE):
            part = _partition_dir(root_p, tbl, sid)
            if part.exists():
                shutil.rmtree(part)
    gone = set(removed)
    rows = [r for r in old_rows if r["subject_id"] not in gone] + new_rows
    _write_atomic(_session_table(rows), root_p / SESSION_TABLE)
    return ForagingDbChange(changed=tuple(changed), added=tuple(added), removed=tuple(removed),
                            new_session_ids=tuple(new_ids), info=describe_foraging_db(root_p))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parse_ids(text: str) -> int | list[str]:
    """Up to 3 digits is a count (``"3"`` -> 3); anything else is ids (``"0412,701234"``).

    Subject ids have at least 4 characters, so the two never collide.
    """
    if text.isdigit() and len(text) <= 3:
        return int(text)
    return [t for t in text.split(",") if t]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: generate (or, with ``--modify``, change) a demo foraging database."""
    p = argparse.ArgumentParser(
        prog="python -m bdc_tables_foraging.demo.generator",
        description="Generate a seeded dynamic-foraging database in the upstream layout.")
    p.add_argument("out", help="output directory (the database root)")
    p.add_argument("--subjects", type=int, default=30)
    p.add_argument("--sessions-per-subject", type=int, default=5)
    p.add_argument("--trials-per-session", type=int, default=300)
    p.add_argument("--seed", type=int, default=None,
                   help="seed (default 0 to generate, 1 with --modify)")
    p.add_argument("--leading-zero-subjects", type=int, default=3)
    p.add_argument("--no-drift", action="store_true", help="no schema-drift subject")
    p.add_argument("--overwrite", action="store_true", help="replace an existing database")
    m = p.add_argument_group("incremental change (--modify)")
    m.add_argument("--modify", action="store_true",
                   help="change an existing database instead of generating one")
    m.add_argument("--change", type=_parse_ids, default=2, help="count or comma-separated ids")
    m.add_argument("--add", type=_parse_ids, default=1, help="count or comma-separated ids")
    m.add_argument("--remove", type=_parse_ids, default=1, help="count or comma-separated ids")
    m.add_argument("--coalesce", action="store_true", help="merge changed partitions into one file")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.modify:
        change = modify_foraging_db(
            args.out, change_subjects=args.change, add_subjects=args.add,
            remove_subjects=args.remove, seed=1 if args.seed is None else args.seed,
            coalesce=args.coalesce)
        summary = {"changed": list(change.changed), "added": list(change.added),
                   "removed": list(change.removed),
                   "new_session_ids": list(change.new_session_ids)}
        info = change.info
    else:
        try:
            info = generate_foraging_db(
                args.out, subjects=args.subjects, sessions_per_subject=args.sessions_per_subject,
                trials_per_session=args.trials_per_session,
                seed=0 if args.seed is None else args.seed,
                leading_zero_subjects=args.leading_zero_subjects,
                drift_subject=not args.no_drift, overwrite=args.overwrite)
        except (FileExistsError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        summary = {}
    summary.update({
        "root": info.root, "subjects": len(info.subject_ids), "n_sessions": info.n_sessions,
        "n_trials": info.n_trials, "n_events": info.n_events,
        "drift_subject": info.drift_subject,
        "leading_zero_subjects": list(info.leading_zero_subjects),
        "seconds": round(time.perf_counter() - t0, 2),
    })
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
