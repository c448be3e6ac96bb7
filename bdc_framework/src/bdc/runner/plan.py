"""Planning a sync: which tables, in which order, in which waves.

Dependencies form a DAG; a cycle or a dependency on a table nobody declares is an error naming
the tables. ``only`` pulls in what the selected tables depend on unless ``no_deps``; side tables
(``produced_by``) always travel with their producer.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

import attrs

from bdc.catalog import Catalog
from bdc.errors import BdcError
from bdc.spec import TableSpec

__all__ = ["Plan", "PlanError", "make_plan"]


class PlanError(BdcError):
    """The tables cannot be ordered (a cycle, a missing dependency, an unknown name)."""


@attrs.frozen
class Plan:
    """The tables to build, in dependency order, grouped into waves that may run together."""

    waves: tuple[tuple[TableSpec, ...], ...]
    side_tables: dict[str, tuple[TableSpec, ...]] = attrs.field(factory=dict)

    @property
    def tables(self) -> list[TableSpec]:
        """Every table to build, in order."""
        return [spec for wave in self.waves for spec in wave]

    def describe(self) -> str:
        """A readable plan (what ``--dry-run`` prints)."""
        lines = []
        for i, wave in enumerate(self.waves, 1):
            lines.append(f"wave {i}:")
            for spec in wave:
                kind = f"partitioned by {spec.partition_key}" if spec.partitioned else "whole table"
                extra = f", incremental" if spec.incremental else ""
                deps = f" <- {', '.join(spec.depends_on)}" if spec.depends_on else ""
                sides = self.side_tables.get(spec.name, ())
                side = f" (+ {', '.join(s.name for s in sides)})" if sides else ""
                lines.append(f"  {spec.name}{side}: {kind}{extra}{deps}")
        return "\n".join(lines)


def _matches(spec: TableSpec, patterns: Iterable[str]) -> bool:
    labels = (spec.name, *spec.aliases)
    return any(fnmatch.fnmatchcase(label, p) for p in patterns for label in labels)


def make_plan(
    catalog: Catalog,
    *,
    only: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    no_deps: bool = False,
) -> Plan:
    """Select and order tables from ``catalog``."""
    specs = {s.name: s for s in catalog}
    sides: dict[str, list[TableSpec]] = {}
    for spec in specs.values():
        if spec.produced_by is not None:
            if spec.produced_by not in specs:
                raise PlanError(f"Side table {spec.name!r} is produced by {spec.produced_by!r}, which is not installed")
            sides.setdefault(spec.produced_by, []).append(spec)
    buildable = {n: s for n, s in specs.items() if s.produced_by is None}
    for spec in buildable.values():
        missing = [d for d in spec.depends_on if catalog.get(d) is None]
        if missing:
            raise PlanError(f"Table {spec.name!r} depends on {', '.join(map(repr, missing))}, which no plugin declares")

    def dep_names(spec: TableSpec) -> list[str]:
        out = []
        for d in spec.depends_on:
            target = catalog.resolve(d)
            out.append(target.produced_by or target.name)
        return out

    if only:
        selected: set[str] = set()
        for pattern in only:
            hits = [s.name for s in buildable.values() if _matches(s, [pattern])]
            if not hits:
                side_hit = [s.produced_by for s in specs.values() if s.produced_by and _matches(s, [pattern])]
                hits = [h for h in side_hit if h]
            if not hits:
                catalog.resolve(pattern)  # raises UnknownTableError with suggestions
            selected.update(hits)
        if not no_deps:
            stack = list(selected)
            while stack:
                for d in dep_names(buildable[stack.pop()]):
                    if d not in selected:
                        selected.add(d)
                        stack.append(d)
    else:
        selected = set(buildable)
    if exclude:
        selected = {n for n in selected if not _matches(buildable[n], exclude)}

    remaining = {n: {d for d in dep_names(buildable[n]) if d in selected} for n in selected}
    order = [n for n in buildable if n in selected]  # declaration order breaks ties
    waves: list[tuple[TableSpec, ...]] = []
    done: set[str] = set()
    while remaining:
        ready = [n for n in order if n in remaining and remaining[n] <= done]
        if not ready:
            raise PlanError(f"Dependency cycle among tables: {', '.join(sorted(remaining))}")
        waves.append(tuple(buildable[n] for n in ready))
        done.update(ready)
        for n in ready:
            del remaining[n]
    return Plan(tuple(waves), {k: tuple(v) for k, v in sides.items() if k in selected})
