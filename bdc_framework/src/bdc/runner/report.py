"""The run report: what a sync did, per table, as JSON."""

from __future__ import annotations

import json
import time
from typing import Any

import attrs

__all__ = ["TableReport", "RunReport", "utc_now"]


def utc_now() -> str:
    """The time now as ISO-8601 UTC text."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@attrs.define
class TableReport:
    """One table's outcome: ``ok``, ``unchanged``, ``failed`` or ``skipped``."""

    name: str
    status: str = "pending"
    rows: int = 0
    partitions: int = 0
    partitions_built: int = 0
    partitions_deleted: int = 0
    partitions_failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    retries: int = 0
    error: str | None = None
    plugin: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    counters: dict[str, int] = attrs.field(factory=dict)
    spans: list[tuple[str, float, float]] = attrs.field(factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)


@attrs.define
class RunReport:
    """A whole sync run."""

    run_id: str
    cache: str
    version_folder: str
    executor: str
    workers: int
    started_at: str = attrs.field(factory=utc_now)
    finished_at: str | None = None
    seconds: float = 0.0
    status: str = "running"
    tables: list[TableReport] = attrs.field(factory=list)
    #: The threads executor's measures of its build threads on one core or free (see
    #: :mod:`bdc.runner.pinning`): ``{"measured": "free"|"one core"|"kept", "items_per_s",
    #: "cpu_ms_per_item", "one_core_after"}`` each.
    pinning: list[dict[str, Any]] = attrs.field(factory=list)

    @property
    def ok(self) -> bool:
        """Whether every table succeeded (nothing failed or skipped)."""
        return all(t.status in ("ok", "unchanged") for t in self.tables)

    def table(self, name: str) -> TableReport:
        """The report of one table."""
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def retries(self) -> int:
        """Retries over all tables."""
        return sum(t.retries for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = attrs.asdict(self)
        out["ok"] = self.ok
        out["retries"] = self.retries
        return out

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, default=str)

    def summary(self) -> str:
        """A few readable lines."""
        lines = [f"sync {self.run_id} on {self.cache} ({self.version_folder}): {self.status} in {self.seconds:.1f} s"]
        for t in self.tables:
            extra = f" partitions {t.partitions_built}/{t.partitions}" if t.partitions else ""
            err = f" — {t.error}" if t.error else ""
            lines.append(f"  {t.status:9} {t.name}: {t.rows} rows{extra}, {t.seconds:.2f} s"
                         f"{f', {t.retries} retries' if t.retries else ''}{err}")
        return "\n".join(lines)
