"""scientist_rl_fib: cohort summary of dynamic-foraging fiber mice at the final stage — TABLES.md §2.16.

Build: one DocDB v2 find with :data:`FILTER` and :data:`PROJECTION` (limit 0), then
:func:`scientist_rl_fib_table`.

What a row means: "mice with a fiber implanted in ``targeted_structure`` and expressing
``indicator`` injected into that same structure". Implants pair with injections by equal CCF
acronym.

Fixes of the reference (§4 D19):
- ``indicator`` = the injection material ``name``, else ``tars_identifiers.virus_tars_id`` (real
  records carry only the TARS id, so the reference's table was empty).
- ``session_count`` counts distinct *sessions*: the distinct source raw assets
  (``data_description.source_data``) of the subject's qualifying derived assets, so re-processings
  of one session count once. A record without source_data counts as its own session.
- Procedures come from the subject's newest record by ``_last_modified`` (that has any
  ``subject_procedures``), not an arbitrary one.
- ``"missing"`` structures never pair (an implant with unknown target does not match an injection
  with unknown target).

Grouping (judgment call, following the table's documented intent): rows are grouped by
``(targeted_structure, indicator)`` only — **not** by coordinates as the reference did. The
coordinates of all implants of that group become the sorted distinct list ``coordinates``
(``list<string>``), e.g. ``["AP=1, ML=-2.2, D=4.1", "AP=1, ML=2.2, D=4.1"]``. Rows are sorted by
``(targeted_structure, indicator)``. Records without a subject id are skipped (they cannot be
attributed to a mouse) instead of being lumped into a fake ``"missing"`` mouse.

Coordinates string: from the first ``device_config.transform[*]`` with ``object_type ==
"Translation"`` and at least 4 values: ``AP=<t0>, ML=<float(t1)>, D=<t3>`` (null parts ``?``; index
2 ignored), else ``"missing"``. ``fiber_example3`` Fiber_0 gives ``AP=2, ML=-0.8, D=1.6``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..records import as_list, as_str, clean_text, get_path
from ._platform_common import ColumnSpec, frame_from_rows, recency_key

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FILTER",
    "PROJECTION",
    "COLUMNS",
    "MISSING",
    "Implant",
    "Injection",
    "implant_coordinates",
    "indicator_name",
    "subject_implants",
    "subject_injections",
    "scientist_rl_fib_table",
]

MISSING = "missing"

FILTER: dict[str, Any] = {
    "data_description.modalities.abbreviation": {"$all": ["behavior", "fib"]},
    "data_description.data_level": "derived",
    "acquisition.stimulus_epochs.performance_metrics.output_parameters.task_parameters.stage_in_use": {
        "$in": ["STAGE_FINAL", "GRADUATED"]
    },
}

PROJECTION: dict[str, int] = {
    "_id": 1,
    "_last_modified": 1,
    "name": 1,
    "subject.subject_id": 1,
    "data_description.source_data": 1,
    "procedures.subject_procedures": 1,
}

COLUMNS: list[ColumnSpec] = [
    ("targeted_structure", "string", "CCF acronym targeted by both the fiber implant and the injection"),
    ("coordinates", "list<string>", "Sorted distinct implant coordinates 'AP=.., ML=.., D=..' (mm) in this group"),
    ("indicator", "string", "Injected material: its name, else its TARS virus id"),
    ("mouse_ids", "list<string>", "Sorted subject ids of the mice in this group"),
    ("mouse_count", "int64", "Number of mice in this group"),
    ("session_count", "int64", "Distinct final-stage sessions (source raw assets) summed over the group's mice"),
]


@dataclass(frozen=True)
class Implant:
    """One fiber implant: targeted structure acronym and coordinate string."""

    structure: str
    coordinates: str


@dataclass(frozen=True)
class Injection:
    """One brain injection: targeted structure acronym and the distinct indicators injected."""

    structure: str
    indicators: tuple[str, ...]


def _structure(acronym: Any) -> str:
    text = as_str(acronym)
    return MISSING if text is None or text == "root" else text


def _part(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return "?"
    return clean_text(str(value))


def _float_part(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return "?"
    try:
        return str(float(value))
    except (TypeError, ValueError):
        return "?"


def implant_coordinates(device_config: Any) -> str:
    """``AP=<t0>, ML=<float(t1)>, D=<t3>`` from the first 4-value Translation, else ``"missing"``."""
    for transform in as_list(get_path(device_config, "transform")):
        if get_path(transform, "object_type") != "Translation":
            continue
        translation = as_list(get_path(transform, "translation"))
        if len(translation) >= 4:
            return f"AP={_part(translation[0])}, ML={_float_part(translation[1])}, D={_part(translation[3])}"
    return MISSING


def indicator_name(material: Any) -> str | None:
    """The indicator of one injection material: ``name``, else ``tars_identifiers.virus_tars_id``."""
    return as_str(get_path(material, "name")) or as_str(get_path(material, "tars_identifiers.virus_tars_id"))


def _procedures(record: Mapping[str, Any]) -> list[dict]:
    out: list[dict] = []
    for surgery in as_list(get_path(record, "procedures.subject_procedures")):
        out.extend(p for p in as_list(get_path(surgery, "procedures")) if isinstance(p, dict))
    return out


def subject_implants(record: Mapping[str, Any]) -> list[Implant]:
    """Every ``Probe implant`` of a record as (structure, coordinates)."""
    return [
        Implant(
            _structure(get_path(p, "device_config.primary_targeted_structure.acronym")),
            implant_coordinates(get_path(p, "device_config")),
        )
        for p in _procedures(record)
        if p.get("object_type") == "Probe implant"
    ]


def subject_injections(record: Mapping[str, Any]) -> list[Injection]:
    """Every ``Brain injection`` with at least one indicator, as (structure, distinct indicators)."""
    injections: list[Injection] = []
    for p in _procedures(record):
        if p.get("object_type") != "Brain injection":
            continue
        indicators: dict[str, None] = {}
        for material in as_list(p.get("injection_materials")):
            name = indicator_name(material)
            if name is not None:
                indicators.setdefault(name, None)
        if indicators:
            injections.append(Injection(_structure(get_path(p, "targeted_structure.acronym")), tuple(indicators)))
    return injections


def _sessions(record: Mapping[str, Any]) -> set[str]:
    sources = {s for s in (as_str(v) for v in as_list(get_path(record, "data_description.source_data"))) if s}
    if sources:
        return sources
    name = as_str(get_path(record, "name"))
    return {name} if name else set()


def scientist_rl_fib_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The scientist_rl_fib table from the records matched by :data:`FILTER` (declared schema if empty)."""
    sessions: dict[str, set[str]] = {}
    newest: dict[str, Mapping[str, Any]] = {}
    for record in records:
        if not isinstance(record, Mapping):
            continue
        subject = as_str(get_path(record, "subject.subject_id"))
        if subject is None:
            continue
        sessions.setdefault(subject, set()).update(_sessions(record))
        if not as_list(get_path(record, "procedures.subject_procedures")):
            continue
        current = newest.get(subject)
        if current is None or recency_key(record.get("_last_modified")) > recency_key(current.get("_last_modified")):
            newest[subject] = record

    groups: dict[tuple[str, str], dict[str, set[str]]] = {}
    for subject, record in newest.items():
        injections = subject_injections(record)
        for implant in subject_implants(record):
            if implant.structure == MISSING:
                continue
            for injection in injections:
                if injection.structure != implant.structure:
                    continue
                for indicator in injection.indicators:
                    group = groups.setdefault((implant.structure, indicator), {"mice": set(), "coords": set()})
                    group["mice"].add(subject)
                    group["coords"].add(implant.coordinates)

    rows = []
    for (structure, indicator), group in sorted(groups.items()):
        mice = sorted(group["mice"])
        rows.append(
            {
                "targeted_structure": structure,
                "coordinates": sorted(group["coords"]),
                "indicator": indicator,
                "mouse_ids": mice,
                "mouse_count": len(mice),
                "session_count": sum(len(sessions.get(m, ())) for m in mice),
            }
        )
    return frame_from_rows(rows, COLUMNS)
