"""The reference package's dynamic-foraging one-liners, exposed as ``bdc.<name>``.

``from biodata_cache import platform_dynamic_foraging_trials`` becomes
``from bdc import platform_dynamic_foraging_trials``: same arguments, a pandas DataFrame as before.
They read the default cache (or ``cache=``, a URL or :class:`bdc.Cache`) and never build (D23): an
unbuilt table raises :class:`bdc.TableNotBuiltError` naming the ``bdc-sync`` command, and
``force_update=True`` only warns. Subject ids are strings (an int is accepted and turned into one).
Importing this module is light.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bdc.spec import FunctionSpec

__all__ = [
    "platform_dynamic_foraging_sessions",
    "platform_dynamic_foraging_trials",
    "platform_dynamic_foraging_events",
    "function_specs",
]

#: The three tables (as in :mod:`bdc_tables_foraging.tables`, which is heavier to import).
_SESSIONS = "platform_dynamic_foraging_sessions"
_TRIALS = "platform_dynamic_foraging_trials"
_EVENTS = "platform_dynamic_foraging_events"


def _subjects(subject_id: Any) -> str | list[str]:
    """One subject id, or several, as strings (the partition values)."""
    if isinstance(subject_id, (list, tuple, set, frozenset)):
        return [str(s) for s in subject_id]
    return str(subject_id)


def _read(name: str, force_update: bool, cache: Any, **where: Any) -> Any:
    from bdc.legacy import read_table

    return read_table(name, cache=cache, force_update=force_update, where=where, stacklevel=4)


def platform_dynamic_foraging_sessions(force_update: bool = False, *, cache: Any = None) -> Any:
    """The dynamic-foraging session table, one row per session, with all of its upstream columns."""
    return _read(_SESSIONS, force_update, cache)


def platform_dynamic_foraging_trials(
    subject_id: str | int | Sequence[str], force_update: bool = False, *, cache: Any = None
) -> Any:
    """The trials of one subject (or of several: a list), one row per trial, all upstream columns.

    A subject without trials gives an empty frame with the declared columns.
    """
    return _read(_TRIALS, force_update, cache, subject_id=_subjects(subject_id))


def platform_dynamic_foraging_events(
    subject_id: str | int | Sequence[str], force_update: bool = False, *, cache: Any = None
) -> Any:
    """The behavioral events of one subject (or of several: a list), one row per event.

    A subject without events gives an empty frame with the declared columns.
    """
    return _read(_EVENTS, force_update, cache, subject_id=_subjects(subject_id))


def function_specs() -> list[FunctionSpec]:
    """The functions this plugin adds to ``bdc`` (``from bdc import platform_dynamic_foraging_trials``)."""
    return [
        FunctionSpec("platform_dynamic_foraging_sessions", platform_dynamic_foraging_sessions,
                     "the dynamic-foraging session table"),
        FunctionSpec("platform_dynamic_foraging_trials", platform_dynamic_foraging_trials,
                     "the dynamic-foraging trials of one subject"),
        FunctionSpec("platform_dynamic_foraging_events", platform_dynamic_foraging_events,
                     "the dynamic-foraging events of one subject"),
    ]
