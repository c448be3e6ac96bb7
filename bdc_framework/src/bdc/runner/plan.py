"""Planning a sync: which tables, in which order, in which waves.

Dependencies form a DAG; a cycle or a dependency on a table nobody declares is an error naming
the tables. ``only`` pulls in what the selected tables depend on unless ``no_deps``; side tables
(``produced_by``) always travel with their producer.

A table name two plugins declare (see :mod:`bdc.catalog`) is not built: the plan lists it in
``failed`` with the collision's message naming both distributions, and the tables that depend on
it (or on a contested alias) in ``skipped``; every other table is planned as usual. The runner
reports both, so the run fails (exit status 1) while the rest publishes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

import attrs

from bdc.catalog import Catalog
from bdc.errors import BdcError, TableCollisionError
from bdc.spec import TableSpec

__all__ = ["Plan", "PlanError", "Refused", "make_plan"]


class PlanError(BdcError):
    """The tables cannot be ordered (a cycle, a missing dependency, an unknown name)."""


@attrs.frozen
class Refused:
    """A selected table the plan cannot build: ``failed`` (its name is contested) or ``skipped``
    (it needs a table that failed so)."""

    name: str
    status: str
    error: str
    plugin: str | None = None


@attrs.frozen
class Plan:
    """The tables to build, in dependency order, grouped into waves that may run together.

    ``refused``: selected tables that cannot be built (name collisions and their dependents), by
    name; the runner reports them as failed or skipped.
    """

    waves: tuple[tuple[TableSpec, ...], ...]
    side_tables: dict[str, tuple[TableSpec, ...]] = attrs.field(factory=dict)
    refused: dict[str, Refused] = attrs.field(factory=dict)

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
                extra = ", incremental" if spec.incremental else ""
                deps = f" <- {', '.join(spec.depends_on)}" if spec.depends_on else ""
                sides = self.side_tables.get(spec.name, ())
                side = f" (+ {', '.join(s.name for s in sides)})" if sides else ""
                lines.append(f"  {spec.name}{side}: {kind}{extra}{deps}")
        if self.refused:
            lines.append("not built:")
            lines.extend(f"  {r.name}: {r.status} — {r.error}" for r in self.refused.values())
        return "\n".join(lines)


def _matches(spec: TableSpec, patterns: Iterable[str]) -> bool:
    labels = (spec.name, *spec.aliases)
    return any(fnmatch.fnmatchcase(label, p) for p in patterns for label in labels)


def _collision_text(error: TableCollisionError) -> str:
    return (f"{type(error).__name__}: {error}; neither is built until one of them is disabled "
            f"(BDC_DISABLE_PLUGINS)")


def _refusals(catalog: Catalog, specs: dict[str, TableSpec]) -> dict[str, Refused]:
    """Every table that cannot be built because of a name collision: the contested names
    (failed), producers whose side table is contested (failed), and what depends on any of
    them, side tables included (skipped, or failed with their producer)."""
    blocked = catalog.collisions
    out: dict[str, Refused] = {}
    for name, claimants in catalog.excluded.items():
        error = blocked[name]
        out[name] = Refused(name, "failed", _collision_text(error), ", ".join(error.providers))
        for claimant in claimants:  # a contested side table: its producer would write it
            producer = specs.get(claimant.produced_by or "")
            if producer is not None and producer.name not in out:
                out[producer.name] = Refused(producer.name, "failed",
                                             f"its side table {name!r}: {_collision_text(error)}", producer.plugin)
    changed = True
    while changed:  # dependents, transitively
        changed = False
        for spec in specs.values():
            if spec.name in out:
                continue
            why = None
            if spec.produced_by is not None and spec.produced_by in out:
                status = out[spec.produced_by].status
                why = (status, f"producer {spec.produced_by} {'failed' if status == 'failed' else 'was skipped'}")
            for d in spec.depends_on:
                if why is not None:
                    break
                if d in blocked:
                    error = blocked[d]
                    why = ("skipped", f"dependency failed: {d} ({type(error).__name__}: {error})")
                    continue
                target = catalog.get(d)
                owner = None if target is None else (target.produced_by or target.name)
                if owner in out:
                    why = ("skipped", f"dependency failed: {owner}")
            if why is not None:
                out[spec.name] = Refused(spec.name, why[0], why[1], spec.plugin)
                changed = True
    return out


def make_plan(
    catalog: Catalog,
    *,
    only: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    no_deps: bool = False,
) -> Plan:
    """Select and order tables from ``catalog``."""
    specs = {s.name: s for s in catalog}
    refusals = _refusals(catalog, specs)
    blocked = catalog.collisions
    sides: dict[str, list[TableSpec]] = {}
    for spec in specs.values():
        if spec.produced_by is not None and spec.name not in refusals:
            if spec.produced_by not in specs:
                raise PlanError(f"Side table {spec.name!r} is produced by {spec.produced_by!r}, which is not installed")
            sides.setdefault(spec.produced_by, []).append(spec)
    buildable = {n: s for n, s in specs.items() if s.produced_by is None and n not in refusals}
    for spec in buildable.values():
        missing = [d for d in spec.depends_on if catalog.get(d) is None]
        if missing:
            raise PlanError(f"Table {spec.name!r} depends on {', '.join(map(repr, missing))}, which no plugin declares")

    def dep_names(spec: TableSpec) -> list[str]:
        """What ``spec`` depends on: buildable producers and refused tables (contested aliases left out)."""
        out = []
        for d in spec.depends_on:
            if d in blocked:
                if blocked[d].name in refusals:
                    out.append(blocked[d].name)
                continue
            target = catalog.get(d)
            if target is not None:
                out.append(target.produced_by or target.name)
        return out

    def refused_labels(name: str) -> list[str]:
        claimants = catalog.excluded.get(name) or ((specs[name],) if name in specs else ())
        return list(dict.fromkeys([name, *(a for c in claimants for a in c.aliases)]))

    def refused_matches(name: str, patterns: Iterable[str]) -> bool:
        return any(fnmatch.fnmatchcase(label, p) for p in patterns for label in refused_labels(name))

    # the refused side tables travel with their (refused) producer, like built ones
    top_refused = [n for n in refusals if n not in specs or specs[n].produced_by is None]
    if only:
        selected: set[str] = set()
        selected_refused: set[str] = set()
        for pattern in only:
            hits = [s.name for s in buildable.values() if _matches(s, [pattern])]
            refused_hits = [n for n in top_refused if refused_matches(n, [pattern])]
            if not hits and not refused_hits:
                side_hit = [s.produced_by for s in specs.values() if s.produced_by and _matches(s, [pattern])]
                hits = [h for h in side_hit if h in buildable]
                refused_hits = [h for h in side_hit if h in refusals]
            if not hits and not refused_hits:
                catalog.resolve(pattern)  # raises UnknownTableError with suggestions (or the collision)
            selected.update(hits)
            selected_refused.update(refused_hits)
        if not no_deps:
            stack = [specs[n] for n in selected | selected_refused if n in specs]
            while stack:
                for d in dep_names(stack.pop()):
                    if d in buildable and d not in selected:
                        selected.add(d)
                        stack.append(buildable[d])
                    elif d in refusals and d not in selected_refused:
                        selected_refused.add(d)
                        if d in specs:
                            stack.append(specs[d])
    else:
        selected = set(buildable)
        selected_refused = set(top_refused)
    if exclude:
        selected = {n for n in selected if not _matches(buildable[n], exclude)}
        selected_refused = {n for n in selected_refused if not refused_matches(n, exclude)}
    refused = {n: r for n, r in refusals.items()
               if n in selected_refused or (n in specs and specs[n].produced_by in selected_refused)}

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
    return Plan(tuple(waves), {k: tuple(v) for k, v in sides.items() if k in selected}, refused)
