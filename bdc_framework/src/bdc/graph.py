"""The table dependency graph: which table is built from which, as Mermaid or Graphviz DOT.

::

    from bdc.catalog import get_catalog
    from bdc.graph import dependency_graph, to_mermaid, table_status

    specs = list(get_catalog())
    dependency_graph(specs)                 # [Edge("asset_basics", "source_data", "depends_on"), ...]
    print(to_mermaid(specs))                # a flowchart, one box per table, grouped by plugin
    print(to_dot(specs, table_status(cache, specs)))   # with each table's last build status and age

An edge goes from the table that is read to the table built from it: ``depends_on`` edges come
from each spec's ``depends_on`` (aliases resolved to names), ``produces`` edges link a table to the
side tables its build writes (``produced_by``). A dependency that no installed plugin declares is
drawn as a "not installed" node. :func:`dependency_graph`, :func:`to_mermaid`, :func:`to_dot` and
:func:`format_age` are pure; :func:`table_status` reads the cache's registry and latest run report.

Output is deterministic: tables are grouped by plugin (sorted by distribution name; tables without
a plugin first), keep their declaration order within a plugin, and edges follow that order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

if TYPE_CHECKING:  # pragma: no cover
    from bdc.cache import Cache
    from bdc.spec import TableSpec

__all__ = [
    "Edge",
    "TableStatus",
    "FORMATS",
    "dependency_graph",
    "ordered_specs",
    "to_mermaid",
    "to_dot",
    "render",
    "table_status",
    "latest_run_report",
    "format_age",
]

#: The output formats of :func:`render` (and ``bdc graph --format``).
FORMATS = ("mermaid", "dot")

#: Colours of the build states (fill, stroke), shared by both formats.
_STATE_COLOURS = {
    "ok": ("#d9f2d9", "#2e7d32"),
    "unchanged": ("#e3f2fd", "#1565c0"),
    "failed": ("#fde0dc", "#c62828"),
    "skipped": ("#fff3cd", "#b26a00"),
    "not built": ("#eeeeee", "#757575"),
}
_MISSING_COLOURS = ("#ffffff", "#c62828")
#: Words Mermaid's flowchart parser reads as keywords (or edge markers, for a leading o/x).
_MERMAID_RESERVED = {"end", "graph", "subgraph", "flowchart", "style", "class", "classdef", "click",
                     "linkstyle", "direction", "default", "call", "href"}


class Edge(NamedTuple):
    """One dependency: ``target`` is built from ``source`` (``kind``: ``depends_on`` or ``produces``)."""

    source: str
    target: str
    kind: str = "depends_on"


@attrs.frozen
class TableStatus:
    """A table's last build in one cache.

    ``state``: ``ok``, ``unchanged``, ``failed`` or ``skipped`` (its outcome in the latest sync
    run that included it), ``ok`` for a published table the latest run left out, or ``not built``.
    ``built_at`` / ``age_seconds``: when the published data was built (a failed run keeps the
    previous data, so a failed table can still have an age). ``error``: the latest run's error.
    """

    state: str
    built_at: str | None = None
    age_seconds: float | None = None
    rows: int | None = None
    run_id: str | None = None
    error: str | None = None

    def label(self) -> str:
        """``ok, 2 h ago``, ``failed, data from 3 d ago``, ``not built``, ..."""
        if self.age_seconds is None:
            return self.state
        age = format_age(self.age_seconds)
        if self.state in ("failed", "skipped"):
            return f"{self.state}, data from {age} ago"
        return f"{self.state}, {age} ago"


# -- the graph ---------------------------------------------------------------------------------


def ordered_specs(specs: Iterable[TableSpec]) -> list[TableSpec]:
    """The specs in drawing order: tables without a plugin, then each plugin's (by distribution
    name), each plugin's tables in declaration order."""
    specs = list(specs)
    position = {id(s): i for i, s in enumerate(specs)}
    return sorted(specs, key=lambda s: (s.plugin is not None, s.plugin or "", position[id(s)]))


def dependency_graph(specs: Iterable[TableSpec]) -> list[Edge]:
    """Every edge between the tables of ``specs``, in their order (aliases resolved, duplicates dropped).

    A ``depends_on`` name that no spec declares stays as given (a table that is not installed).
    """
    specs = list(specs)
    canonical: dict[str, str] = {}
    for spec in specs:
        for label in (spec.name, *spec.aliases):
            canonical.setdefault(label, spec.name)
    edges: dict[Edge, None] = {}
    for spec in specs:
        if spec.produced_by:
            edges[Edge(canonical.get(spec.produced_by, spec.produced_by), spec.name, "produces")] = None
        for dep in spec.depends_on:
            edges[Edge(canonical.get(dep, dep), spec.name, "depends_on")] = None
    return list(edges)


def _missing(specs: Sequence[TableSpec], edges: Sequence[Edge]) -> list[str]:
    """Sources of edges that no spec declares, in edge order."""
    names = {s.name for s in specs}
    return list(dict.fromkeys(e.source for e in edges if e.source not in names))


def _details(spec: TableSpec) -> str:
    parts = []
    if spec.aliases:
        parts.append(f"({', '.join(spec.aliases)})")
    if spec.partitioned:
        parts.append(f"by {spec.partition_key}")
    return " ".join(parts)


def _state_class(state: str) -> str:
    return state.replace(" ", "_")


# -- Mermaid -------------------------------------------------------------------------------------


def _mermaid_id(name: str) -> str:
    """A node id Mermaid will not misread (a keyword, or a leading ``o``/``x`` after an arrow)."""
    if name.lower() in _MERMAID_RESERVED or name[:1] in ("o", "x"):
        return f"t_{name}"
    return name


def _mermaid_text(text: str) -> str:
    """Text for inside a quoted Mermaid label (quotes and angle brackets as entities)."""
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _mermaid_node(spec: TableSpec, status: TableStatus | None) -> str:
    lines = [_mermaid_text(spec.name)]
    details = _details(spec)
    if details:
        lines.append(_mermaid_text(details))
    if status is not None:
        lines.append(_mermaid_text(status.label()))
    label = "<br/>".join(lines)
    if spec.produced_by:
        shape = f'(["{label}"])'
    elif spec.partitioned:
        shape = f'[["{label}"]]'
    else:
        shape = f'["{label}"]'
    out = f"{_mermaid_id(spec.name)}{shape}"
    if status is not None:
        out += f":::{_state_class(status.state)}"
    return out


def to_mermaid(specs: Iterable[TableSpec], status: Mapping[str, TableStatus] | None = None,
               direction: str = "LR") -> str:
    """The graph as a Mermaid flowchart (no fence): one box per table, a subgraph per plugin.

    Shapes: a box for a table, a double-sided box for a partitioned table, a rounded one for a
    side table. With ``status`` (see :func:`table_status`) each box shows its build state and
    age and is coloured by state.
    """
    specs = ordered_specs(specs)
    edges = dependency_graph(specs)
    lines = [f"flowchart {direction}"]
    current: str | None = None
    for spec in specs:
        if spec.plugin != current:
            if current is not None:
                lines.append("    end")
            current = spec.plugin
            if current is not None:
                group = "".join(ch if ch.isalnum() else "_" for ch in current)
                lines.append(f'    subgraph plugin_{group}["{_mermaid_text(current)}"]')
        indent = "        " if current is not None else "    "
        lines.append(indent + _mermaid_node(spec, status.get(spec.name) if status is not None else None))
    if current is not None:
        lines.append("    end")
    for name in _missing(specs, edges):
        lines.append(f'    {_mermaid_id(name)}["{_mermaid_text(name)}<br/>not installed"]:::missing')
    for edge in edges:
        arrow = "-. produces .->" if edge.kind == "produces" else "-->"
        lines.append(f"    {_mermaid_id(edge.source)} {arrow} {_mermaid_id(edge.target)}")
    used = {status[s.name].state for s in specs if status is not None and s.name in status}
    for state, (fill, stroke) in _STATE_COLOURS.items():
        if state in used:
            lines.append(f"    classDef {_state_class(state)} fill:{fill},stroke:{stroke}")
    if _missing(specs, edges):
        fill, stroke = _MISSING_COLOURS
        lines.append(f"    classDef missing fill:{fill},stroke:{stroke},stroke-dasharray:4 3")
    return "\n".join(lines)


# -- DOT -----------------------------------------------------------------------------------------


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_node(spec: TableSpec, status: TableStatus | None) -> str:
    lines = [spec.name]
    details = _details(spec)
    if details:
        lines.append(details)
    if status is not None:
        lines.append(status.label())
    attributes = [f"label={_dot_quote(chr(10).join(lines))}"]
    styles = ["rounded"]
    if spec.produced_by:
        styles.append("dashed")
    if spec.partitioned:
        attributes.append("peripheries=2")
    if status is not None:
        fill, stroke = _STATE_COLOURS.get(status.state, _STATE_COLOURS["not built"])
        styles.append("filled")
        attributes += [f"fillcolor={_dot_quote(fill)}", f"color={_dot_quote(stroke)}"]
    attributes.insert(1, f"style={_dot_quote(','.join(styles))}")
    return f"{_dot_quote(spec.name)} [{', '.join(attributes)}];"


def to_dot(specs: Iterable[TableSpec], status: Mapping[str, TableStatus] | None = None,
           direction: str = "LR") -> str:
    """The graph in Graphviz DOT (``dot -Tsvg``): a cluster per plugin, the same shapes and
    colours as :func:`to_mermaid` (partitioned tables have a double border)."""
    specs = ordered_specs(specs)
    edges = dependency_graph(specs)
    lines = [
        "digraph bdc_tables {",
        f"    rankdir={direction};",
        '    node [shape=box, style="rounded", fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    current: str | None = None
    for spec in specs:
        if spec.plugin != current:
            if current is not None:
                lines.append("    }")
            current = spec.plugin
            if current is not None:
                lines.append(f"    subgraph {_dot_quote('cluster_' + current)} {{")
                lines.append(f"        label={_dot_quote(current)};")
        indent = "        " if current is not None else "    "
        lines.append(indent + _dot_node(spec, status.get(spec.name) if status is not None else None))
    if current is not None:
        lines.append("    }")
    fill, stroke = _MISSING_COLOURS
    for name in _missing(specs, edges):
        lines.append(f"    {_dot_quote(name)} [label={_dot_quote(name + chr(10) + 'not installed')}, "
                     f'style="rounded,dashed", color={_dot_quote(stroke)}];')
    for edge in edges:
        extra = ' [style=dashed, label="produces"]' if edge.kind == "produces" else ""
        lines.append(f"    {_dot_quote(edge.source)} -> {_dot_quote(edge.target)}{extra};")
    lines.append("}")
    return "\n".join(lines)


def render(specs: Iterable[TableSpec], fmt: str = "mermaid",
           status: Mapping[str, TableStatus] | None = None) -> str:
    """:func:`to_mermaid` or :func:`to_dot` by name (``fmt`` in :data:`FORMATS`)."""
    if fmt == "mermaid":
        return to_mermaid(specs, status)
    if fmt == "dot":
        return to_dot(specs, status)
    raise ValueError(f"unknown graph format {fmt!r}; use one of {', '.join(FORMATS)}")


# -- build status from a cache -------------------------------------------------------------------


def format_age(seconds: float) -> str:
    """A short age: ``45 s``, ``12 min``, ``5 h``, ``3 d``."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{int(seconds)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} d"


def _epoch(text: Any) -> float | None:
    """Seconds since the epoch of an ISO-8601 UTC time (``2026-11-24T10:15:00Z``), or ``None``."""
    if not isinstance(text, str) or not text:
        return None
    import datetime as dt

    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def latest_run_report(cache: Cache) -> dict[str, Any] | None:
    """The newest sync run report of the cache's version (``_runs/{run_id}.json``), or ``None``.

    Run ids start with their UTC start time (to the second; syncs of one cache never overlap),
    and runs started in the same second are told apart by when their report was written. A
    report that is not valid JSON raises :class:`bdc.ReadError`.
    """
    from bdc.errors import ReadError

    prefix = cache.layout.run_report_key("x").rsplit("/", 1)[0] + "/"  # the folder of the reports
    infos = [info for info in cache.backend.list(prefix) if info.key.endswith(".json")]
    if not infos:
        return None
    started = len(prefix) + len("20261124T101500Z")
    key = max(infos, key=lambda i: (i.key[len(prefix):started], i.modified or 0.0, i.key)).key
    data = cache.backend.read_bytes(key)
    try:
        report = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReadError(f"{cache.backend.uri(key)} is not valid JSON: {exc}") from exc
    if not isinstance(report, dict):
        raise ReadError(f"{cache.backend.uri(key)} is not a sync run report")
    return report


def table_status(cache: Cache, specs: Iterable[TableSpec], now: float | None = None) -> dict[str, TableStatus]:
    """Each table's last build in ``cache``: from its registry entry's ``build`` summary (when the
    published data was built, rows, run) and the latest run report (the outcome and error).

    ``now`` (seconds since the epoch; default: the current time) is what ages are measured from.
    """
    now = time.time() if now is None else now
    entries = {e.get("name"): e for e in cache.registry().get("tables", []) if isinstance(e, dict)}
    report = latest_run_report(cache) or {}
    outcomes = {t.get("name"): t for t in report.get("tables") or [] if isinstance(t, dict)}
    out: dict[str, TableStatus] = {}
    for spec in specs:
        entry = entries.get(spec.name)
        build = entry.get("build") if entry is not None and isinstance(entry.get("build"), dict) else {}
        outcome = outcomes.get(spec.name)
        if outcome is not None and outcome.get("status") in _STATE_COLOURS:
            state = str(outcome["status"])
        else:
            state = "ok" if entry is not None else "not built"
        built_at = build.get("built_at")
        built = _epoch(built_at)
        rows = build.get("rows")
        out[spec.name] = TableStatus(
            state=state,
            built_at=built_at if isinstance(built_at, str) else None,
            age_seconds=(now - built) if built is not None else None,
            rows=rows if isinstance(rows, int) else None,
            run_id=build.get("run_id") if isinstance(build.get("run_id"), str) else None,
            error=outcome.get("error") if outcome is not None else None,
        )
    return out
