"""platform_fib (``fib``): one row per (fiber-photometry asset, fiber, channel) — TABLES.md §2.11.

Build: :func:`select_fib_assets` picks the asset names from asset_basics; the builder fetches them
from DocDB v2 in batches of :data:`BATCH_SIZE` with ``{"name": {"$in": [...]}}`` and
:data:`PROJECTION`; :func:`fib_table` turns the records into the table (:func:`fib_rows` per record).

Rules:
- Fiber → structure: every ``procedures.subject_procedures[*].procedures[*]`` with
  ``object_type == "Probe implant"``; key ``implanted_device.name`` canonicalized (``_`` → space,
  ``Fiber_0`` → ``Fiber 0``), value ``device_config.primary_targeted_structure.acronym`` with
  missing/``root`` → ``"missing"``; a later implant of the same fiber wins.
- Per ``acquisition.data_streams[*]`` (map rebuilt per stream): patch cord → fiber from
  ``connections[*]`` (``source_device`` → canonical ``target_device``), keeping known fibers only;
  every ``"Patch cord config"`` configuration whose cord has a fiber gives one row per channel.
- Every column is a string, ``"missing"`` instead of null.
- Duplicate asset names (DocDB allows them) keep the newest record by ``_last_modified`` (D21).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..records import as_dict, as_list, as_str, get_path
from ._platform_common import ColumnSpec, frame_from_rows, modality_list, newest_by_name

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PROJECTION",
    "COLUMNS",
    "BATCH_SIZE",
    "MISSING",
    "canonical_fiber",
    "select_fib_assets",
    "fiber_structures",
    "fib_rows",
    "fib_table",
]

MISSING = "missing"
BATCH_SIZE = 100

PROJECTION: dict[str, int] = {
    "_id": 1,
    "_last_modified": 1,
    "name": 1,
    "procedures.subject_procedures": 1,
    "acquisition.data_streams": 1,
}

COLUMNS: list[ColumnSpec] = [
    ("asset_name", "string", "Name of the fiber photometry data asset"),
    ("fiber", "string", "Implanted fiber name, canonical form with spaces (e.g. 'Fiber 0')"),
    ("patch_cord", "string", "Patch cord connected to the fiber during acquisition ('missing' if unnamed)"),
    ("channel", "string", "Acquisition channel name (e.g. 'Fiber_0_Green'; 'missing' if absent)"),
    ("intended_measurement", "string", "Intended measurement of the channel (e.g. 'calcium'; 'missing' if absent)"),
    ("targeted_structure", "string", "CCF acronym of the fiber's primary targeted structure ('missing' if absent or root)"),
]


def canonical_fiber(name: Any) -> str | None:
    """Canonical fiber name: ``_`` replaced by a space (``Fiber_0`` → ``Fiber 0``); ``None`` if empty."""
    text = as_str(name)
    return text.replace("_", " ") if text is not None else None


def select_fib_assets(basics_df: pd.DataFrame) -> list[str]:
    """Distinct asset names (basics order) whose lowercased modality abbreviation contains ``fib``."""
    if basics_df is None or len(basics_df) == 0 or "name" not in basics_df.columns:
        return []
    modalities = basics_df["modalities"] if "modalities" in basics_df.columns else [None] * len(basics_df)
    names: dict[str, None] = {}
    for name, cell in zip(basics_df["name"], modalities):
        if not isinstance(name, str) or not name:
            continue
        if any("fib" in m.lower() for m in modality_list(cell)):
            names.setdefault(name, None)
    return list(names)


def _structure(acronym: Any) -> str:
    text = as_str(acronym)
    if text is None or text == "root":
        return MISSING
    return text


def fiber_structures(record: Mapping[str, Any]) -> dict[str, str]:
    """Canonical fiber name → targeted structure acronym, from the record's probe implants."""
    structures: dict[str, str] = {}
    for surgery in as_list(get_path(record, "procedures.subject_procedures")):
        for procedure in as_list(get_path(surgery, "procedures")):
            if get_path(procedure, "object_type") != "Probe implant":
                continue
            fiber = canonical_fiber(get_path(procedure, "implanted_device.name"))
            if fiber is None:
                continue
            structures[fiber] = _structure(get_path(procedure, "device_config.primary_targeted_structure.acronym"))
    return structures


def fib_rows(record: Mapping[str, Any]) -> list[dict[str, str]]:
    """The platform_fib rows of one DocDB record (possibly none)."""
    asset_name = as_str(get_path(record, "name")) or MISSING
    structures = fiber_structures(record)
    rows: list[dict[str, str]] = []
    if not structures:
        return rows
    for stream in as_list(get_path(record, "acquisition.data_streams")):
        cord_to_fiber: dict[str, str] = {}
        for connection in as_list(get_path(stream, "connections")):
            source = as_str(get_path(connection, "source_device"))
            target = canonical_fiber(get_path(connection, "target_device"))
            if source is not None and target is not None and target in structures:
                cord_to_fiber[source] = target
        for config in as_list(get_path(stream, "configurations")):
            if get_path(config, "object_type") != "Patch cord config":
                continue
            cord = as_str(get_path(config, "device_name")) or MISSING
            fiber = cord_to_fiber.get(cord)
            if fiber is None:
                continue
            for channel in as_list(get_path(config, "channels")):
                channel = as_dict(channel)
                rows.append(
                    {
                        "asset_name": asset_name,
                        "fiber": fiber,
                        "patch_cord": cord,
                        "channel": as_str(channel.get("channel_name")) or MISSING,
                        "intended_measurement": as_str(channel.get("intended_measurement")) or MISSING,
                        "targeted_structure": structures[fiber],
                    }
                )
    return rows


def fib_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The platform_fib table from fetched records (newest record per name; declared schema if empty)."""
    rows: list[dict[str, str]] = []
    for record in newest_by_name(records).values():
        rows.extend(fib_rows(record))
    return frame_from_rows(rows, COLUMNS)
