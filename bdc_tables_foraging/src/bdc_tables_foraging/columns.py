"""The documented key columns of the three foraging tables: name, Arrow type, meaning.

These are published in the registry and checked (and cast) on every build; every other upstream
column is kept as it comes (the specs set ``extra_columns=True``). Types follow upstream's
parquet files; ids, dates and the partition key are text.
"""

from __future__ import annotations

__all__ = ["SESSION_COLUMNS", "TRIAL_COLUMNS", "EVENT_COLUMNS"]

#: platform_dynamic_foraging_sessions: one row per session (upstream has ~160 columns).
SESSION_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("_session_id", "string",
     "Session key: subject_id_session-date_nwb-suffix; joins to session_id of trials and events"),
    ("subject_id", "string", "Subject (mouse) id, as text"),
    ("session_date", "string", "Session date, YYYY-MM-DD"),
    ("nwb_suffix", "int64", "Session start time of day as an integer HHMMSS (tells same-day sessions apart)"),
    ("task", "string", "Foraging task (Coupled Baiting, Uncoupled Baiting, Uncoupled Without Baiting, ...)"),
    ("total_trials", "int64", "Trials excluding autowater trials"),
    ("total_trials_with_autowater", "int64", "All trials, autowater trials included"),
    ("finished_trials", "int64", "Non-autowater trials with a response (not ignored)"),
    ("ignored_trials", "int64", "Non-autowater trials without a response"),
    ("finished_rate", "float64", "finished_trials / total_trials"),
    ("ignore_rate", "float64", "ignored_trials / total_trials"),
    ("reward_trials", "int64", "Non-autowater trials that were rewarded"),
    ("reward_rate", "float64", "reward_trials / finished_trials"),
    ("foraging_eff", "float64", "Foraging efficiency: rewards earned relative to an ideal observer"),
    ("foraging_performance", "float64", "foraging_eff multiplied by finished_rate"),
    ("bias_naive", "float64", "Naive side bias, 2 * (right choices / finished - 0.5), in [-1, 1]"),
    ("autowater_collected", "int64", "Autowater trials with a response"),
    ("autowater_ignored", "int64", "Autowater trials without a response"),
    ("reaction_time_median", "float64", "Median reaction time (s)"),
    ("early_lick_rate", "float64", "Fraction of trials with a lick before the go cue"),
    ("institute", "string", "Institute where the session ran"),
    ("hardware", "string", "Rig hardware (bonsai, bpod)"),
    ("rig_type", "string", "Rig type"),
    ("room", "string", "Room of the rig"),
    ("data_source", "string", "Combined institute / hardware / rig type / room label"),
    ("curriculum_name", "string", "Auto-training curriculum name"),
    ("curriculum_version", "string", "Auto-training curriculum version"),
    ("current_stage_actual", "string", "Curriculum stage the session actually ran"),
    ("rig", "string", "Rig name"),
    ("trainer", "string", "Trainer who ran the session"),
    ("PI", "string", "Principal investigator"),
    ("weight_after", "float64", "Animal weight after the session (g)"),
    ("water_in_session_total", "float64", "Water received in the session (ml)"),
    ("nwb_data_source", "string", "Where the session's NWB came from (co_asset, bonsai_s3, bpod_s3)"),
    ("co_asset_id", "string", "Code Ocean asset id of the NWB (co_asset sessions)"),
    ("co_s3_nwb_uri", "string", "S3 URI of the NWB in Code Ocean (co_asset sessions)"),
)

#: platform_dynamic_foraging_trials: one row per trial (upstream has 103 columns).
TRIAL_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("session_id", "string", "Session key; joins to the session table's _session_id"),
    ("subject_id", "string", "Subject id (the partition key), as text"),
    ("session_date", "string", "Session date, YYYY-MM-DD"),
    ("nwb_suffix", "int64", "Session start time of day, HHMMSS"),
    ("trial", "int64", "Trial index within the session, from 0"),
    ("animal_response", "float64", "Choice: 0 left, 1 right, 2 ignored"),
    ("earned_reward", "bool", "Whether the choice earned a reward"),
    ("rewarded_historyL", "bool", "Left reward delivered on this trial"),
    ("rewarded_historyR", "bool", "Right reward delivered on this trial"),
    ("reward_probabilityL", "float64", "Left reward probability"),
    ("reward_probabilityR", "float64", "Right reward probability"),
    ("auto_waterL", "int64", "Left autowater given (1) or not (0)"),
    ("auto_waterR", "int64", "Right autowater given (1) or not (0)"),
    ("reward_random_number_left", "float64", "Random draw deciding the left reward"),
    ("reward_random_number_right", "float64", "Random draw deciding the right reward"),
    ("goCue_start_time_in_session", "float64", "Go cue time (s from session start)"),
    ("choice_time_in_session", "float64", "Choice (first lick) time (s from session start)"),
    ("reward_time_in_session", "float64", "Reward delivery time (s from session start)"),
    ("reaction_time", "float64", "Choice time minus go cue time (s)"),
    ("nwb_data_source", "string", "Where the session's NWB came from"),
)

#: platform_dynamic_foraging_events: one row per behavioural event (all 10 upstream columns,
#: in upstream's file order).
EVENT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("timestamps", "float64", "Event time (s from session start)"),
    ("data", "string", "Event value: '1.0' for licks, go cues and laser; 'earned' or 'auto' for rewards"),
    ("event", "string",
     "Event type: goCue_start_time, left_lick_time, right_lick_time, left_reward_delivery_time, "
     "right_reward_delivery_time or optogenetics_time"),
    ("raw_timestamps", "float64", "Event time on the acquisition clock (s)"),
    ("trial", "int64", "Index of the last go cue at or before the event; -1 before the first go cue"),
    ("subject_id", "string", "Subject id (the partition key), as text"),
    ("session_date", "string", "Session date, YYYY-MM-DD"),
    ("nwb_suffix", "int64", "Session start time of day, HHMMSS"),
    ("session_id", "string", "Session key; joins to the session table's _session_id"),
    ("nwb_data_source", "string", "Where the session's NWB came from"),
)
