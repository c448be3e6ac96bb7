"""A local DocDB REST emulator for tests and demos.

``DocDBEmulator`` serves the read side of the DocDB REST API (find, aggregate, count_documents)
on loopback, backed by mongomock; ``FaultConfig`` injects latency, 5xx, 429 and dropped
connections. ``DocDBEmulator`` is imported lazily so that ``bdc-docdb-emulator --help`` and
``import bdc_tables_docdb.emulator.faults`` stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .faults import FaultConfig

if TYPE_CHECKING:
    from .server import DocDBEmulator

__all__ = ["DocDBEmulator", "FaultConfig"]


def __getattr__(name: str) -> Any:
    """Import :class:`DocDBEmulator` (and mongomock) on first use."""
    if name == "DocDBEmulator":
        from .server import DocDBEmulator

        return DocDBEmulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
