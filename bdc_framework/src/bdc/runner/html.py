"""The run report as one self-contained HTML page: a timeline of the run, and what each table wrote.

``bdc-sync --report run.html`` (or ``--report-html FILE``, or ``bdc.sync(report="run.html")``)
writes it. The page has no external resources (inline CSS and SVG, no script, no font, no
image), so it can be mailed, attached to a ticket or opened from an object store as it is.

* the timeline: one bar per table from its start to its end, coloured by outcome (built,
  unchanged, failed; skipped tables are listed without a bar), and under a partitioned table its
  partitions' builds on as many lanes as ran at once; retries are marked on the bar;
* the table: status, rows, bytes, partitions (built / total, failed), retries, seconds and the
  error of every table, with rows and bytes drawn as bars.

A report read back from JSON (``{cache}/bdc-vX.Y/_runs/{run_id}.json``) renders the same::

    from bdc.runner.html import write_html
    write_html(json.loads(path.read_text()), "run.html")
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_html", "write_html", "STATUS_COLOURS"]

#: Bar colours by table status.
STATUS_COLOURS = {
    "ok": "#2f9e5b",
    "unchanged": "#7f9bb8",
    "failed": "#d43d3d",
    "skipped": "#b9b9b9",
    "pending": "#d9c36a",
    "running": "#d9c36a",
}
_PARTITION_COLOUR = "#86cfa1"
_RETRY_COLOUR = "#e8890c"
_MAX_LANES = 8

_LABEL_W = 250
_CHART_W = 820
_RIGHT_PAD = 40
_TOP = 34
_BAR_H = 16
_LANE_H = 6
_ROW_GAP = 10

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;color:#1d2329;background:#fff}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:16px;margin:28px 0 8px}
.sub{color:#5b6670;margin:0 0 14px}
.status{display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;font-weight:600;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0 4px}
.card{border:1px solid #dfe3e7;border-radius:6px;padding:6px 12px;flex:1 1 0;min-width:78px}
.card b{display:block;font-size:18px}
.card span{color:#5b6670;font-size:12px}
.legend{display:flex;gap:14px;flex-wrap:wrap;font-size:12px;color:#41494f;margin:4px 0 8px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-2px;margin-right:4px}
.chart{border:1px solid #dfe3e7;border-radius:6px;padding:4px 0}
svg text{font-family:inherit}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6e9ec;vertical-align:top}
th{background:#f5f7f8;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{position:relative;min-width:120px}
.bar div{position:absolute;left:0;top:3px;bottom:3px;border-radius:2px;opacity:.28}
.bar span{position:relative}
.err{color:#a42a2a;font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;word-break:break-word}
tr.failed td:first-child{border-left:4px solid #d43d3d}
tr.skipped td:first-child{border-left:4px solid #b9b9b9}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _human_bytes(n: float) -> str:
    """``1536`` → ``1.5 KiB``."""
    n = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _seconds(s: float) -> str:
    """A duration for people: ``0.12 s``, ``4.2 s``, ``3 min 05 s``."""
    if s < 10:
        return f"{s:.2f} s"
    if s < 120:
        return f"{s:.1f} s"
    minutes, rest = divmod(int(round(s)), 60)
    return f"{minutes} min {rest:02d} s"


def _nice_step(span: float, ticks: int = 8) -> float:
    """A 1-2-5 step giving about ``ticks`` ticks over ``span`` seconds."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power  # pragma: no cover


def _as_dict(report: Any) -> dict[str, Any]:
    """A :class:`~bdc.runner.report.RunReport` or its JSON form, as a plain dict."""
    if hasattr(report, "to_dict"):
        return dict(report.to_dict())
    if isinstance(report, Mapping):
        return dict(report)
    raise TypeError(f"Expected a RunReport or its dict, not {type(report).__name__}")


def _times(t: Mapping[str, Any]) -> tuple[float, float] | None:
    """A table's (start, end) in epoch seconds, or ``None`` when it never ran."""
    start = t.get("started_at")
    if start is None:
        return None
    end = t.get("finished_at")
    if end is None:
        end = float(start) + float(t.get("seconds") or 0)
    return float(start), max(float(end), float(start))


def _lanes(spans: Sequence[Sequence[Any]]) -> tuple[list[tuple[str, float, float, int]], int]:
    """Spans placed on lanes so that overlapping builds do not hide each other (at most ``_MAX_LANES``)."""
    ends: list[float] = []
    placed = []
    for value, start, end in sorted(((str(s[0]), float(s[1]), float(s[2])) for s in spans), key=lambda s: s[1]):
        lane = next((i for i, e in enumerate(ends) if e <= start), None)
        if lane is None:
            if len(ends) < _MAX_LANES:
                lane = len(ends)
                ends.append(end)
            else:  # more at once than lanes: the lane that frees first
                lane = min(range(len(ends)), key=ends.__getitem__)
        ends[lane] = max(ends[lane], end)
        placed.append((value, start, end, lane))
    return placed, len(ends)


def _timeline(tables: list[dict[str, Any]], partition_key: Mapping[str, str]) -> str:
    """The SVG timeline."""
    timed = [(t, _times(t)) for t in tables]
    ran = [(t, tt) for t, tt in timed if tt is not None]
    idle = [t for t, tt in timed if tt is None]
    if ran:
        t0 = min(tt[0] for _, tt in ran)
        t1 = max([tt[1] for _, tt in ran] + [float(s[2]) for t, _ in ran for s in t.get("spans") or []])
    else:
        t0, t1 = 0.0, 1.0
    span = max(t1 - t0, 1e-3)
    scale = _CHART_W / span

    def x(t: float) -> float:
        return _LABEL_W + (t - t0) * scale

    ran.sort(key=lambda item: (item[1][0], item[0]["name"]))
    rows: list[str] = []
    y = _TOP
    for t, (start, end) in ran:
        name, status = t["name"], t.get("status", "pending")
        colour = STATUS_COLOURS.get(status, "#999")
        placed, lanes = _lanes(t.get("spans") or [])
        height = _BAR_H + (lanes * _LANE_H + 4 if lanes else 0)
        label = _esc(name)
        detail = f"{t.get('rows', 0):,} rows" if status != "failed" else "failed"
        if t.get("partitions"):
            detail += f" · {t.get('partitions_built', 0)}/{t['partitions']} partitions"
            if t.get("partitions_failed"):
                detail += f", {t['partitions_failed']} failed"
        rows.append(f'<g class="row" data-table="{label}" data-status="{_esc(status)}">')
        rows.append(f'<text x="{_LABEL_W - 10}" y="{y + 12}" text-anchor="end" font-size="12" fill="#1d2329">{label}</text>')
        rows.append(f'<text x="{_LABEL_W - 10}" y="{y + 25}" text-anchor="end" font-size="10" fill="#6b757d">'
                    f'{_esc(detail)}</text>')
        w = max((end - start) * scale, 2.0)
        tip = f"{name}: {status}, {_seconds(end - start)}, {t.get('rows', 0):,} rows"
        if t.get("retries"):
            tip += f", {t['retries']} retries"
        if t.get("error"):
            tip += f"\n{t['error']}"
        rows.append(f'<rect class="bar table-bar" x="{x(start):.1f}" y="{y}" width="{w:.1f}" height="{_BAR_H}" rx="3" '
                    f'fill="{colour}"><title>{_esc(tip)}</title></rect>')
        if status == "failed":
            cx = x(start) + w + 9
            rows.append(f'<g class="failure-mark"><circle cx="{cx:.1f}" cy="{y + _BAR_H / 2}" r="7" fill="{colour}"/>'
                        f'<path d="M{cx - 3:.1f},{y + 5} l6,6 M{cx + 3:.1f},{y + 5} l-6,6" stroke="#fff" stroke-width="2"/>'
                        f'<title>{_esc(t.get("error") or "failed")}</title></g>')
        if t.get("retries"):
            rx = x(start) + w + (27 if status == "failed" else 9)
            rows.append(f'<g class="retry-mark"><circle cx="{rx:.1f}" cy="{y + _BAR_H / 2}" r="7" fill="{_RETRY_COLOUR}"/>'
                        f'<text x="{rx:.1f}" y="{y + _BAR_H / 2 + 4}" text-anchor="middle" font-size="10" '
                        f'font-weight="700" fill="#fff">{int(t["retries"])}</text>'
                        f'<title>{int(t["retries"])} retries (transient errors, retried with backoff)</title></g>')
        key = partition_key.get(name, "partition")
        for value, p_start, p_end, lane in placed:
            py = y + _BAR_H + 3 + lane * _LANE_H
            pw = max((p_end - p_start) * scale - 0.6, 1.2)
            rows.append(f'<rect class="bar partition-bar" x="{x(p_start):.1f}" y="{py}" width="{pw:.1f}" '
                        f'height="{_LANE_H - 1}" fill="{_PARTITION_COLOUR}"><title>{_esc(f"{name} {key}={value}: {_seconds(p_end - p_start)}")}'
                        f'</title></rect>')
        rows.append("</g>")
        y += max(height, 28) + _ROW_GAP
    for t in sorted(idle, key=lambda t: t["name"]):
        status = t.get("status", "pending")
        rows.append(f'<g class="row" data-table="{_esc(t["name"])}" data-status="{_esc(status)}">'
                    f'<text x="{_LABEL_W - 10}" y="{y + 12}" text-anchor="end" font-size="12" fill="#6b757d">'
                    f'{_esc(t["name"])}</text>'
                    f'<rect x="{_LABEL_W}" y="{y}" width="{_CHART_W}" height="{_BAR_H}" fill="none" stroke="#c9c9c9" '
                    f'stroke-dasharray="4 3" rx="3"/>'
                    f'<text x="{_LABEL_W + 8}" y="{y + 12}" font-size="11" fill="#6b757d">{_esc(status)}: '
                    f'{_esc(t.get("error") or "did not run")}</text></g>')
        y += _BAR_H + _ROW_GAP
    height = y + 8
    step = _nice_step(span)
    axis = [f'<line x1="{_LABEL_W}" y1="{_TOP - 8}" x2="{_LABEL_W + _CHART_W}" y2="{_TOP - 8}" stroke="#9aa3ab"/>']
    tick = 0.0
    while tick <= span + 1e-9:
        tx = _LABEL_W + tick * scale
        text = f"{tick:g} s" if step < 60 else f"{tick / 60:g} min"
        axis.append(f'<line x1="{tx:.1f}" y1="{_TOP - 12}" x2="{tx:.1f}" y2="{height - 6}" stroke="#eef0f2"/>'
                    f'<text x="{tx:.1f}" y="{_TOP - 16}" text-anchor="middle" font-size="11" fill="#5b6670">{text}</text>')
        tick += step
    width = _LABEL_W + _CHART_W + _RIGHT_PAD
    return (f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'style="width:100%;height:auto;max-width:{width * 1.4:.0f}px" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline of the run">'
            + "".join(axis) + "".join(rows) + "</svg>")


def _bar_cell(value: float, top: float, text: str, colour: str) -> str:
    share = 0 if top <= 0 else max(0.0, min(1.0, value / top))
    return (f'<td class="num bar"><div style="width:{share * 100:.1f}%;background:{colour}"></div>'
            f'<span>{_esc(text)}</span></td>')


def _tables_html(tables: list[dict[str, Any]]) -> str:
    top_rows = max([float(t.get("rows") or 0) for t in tables] + [0])
    top_bytes = max([float(t.get("bytes") or 0) for t in tables] + [0])
    retry_style = f' style="color:{_RETRY_COLOUR};font-weight:700"'
    out = ['<table class="tables"><thead><tr><th>table</th><th>status</th><th>rows</th><th>bytes</th>'
           '<th>partitions</th><th>retries</th><th>time</th><th>plugin</th><th>error</th></tr></thead><tbody>']
    for t in tables:
        status = t.get("status", "pending")
        parts = ""
        if t.get("partitions"):
            parts = f"{t.get('partitions_built', 0)}/{t['partitions']}"
            if t.get("partitions_failed"):
                parts += f", {t['partitions_failed']} failed"
            if t.get("partitions_deleted"):
                parts += f", {t['partitions_deleted']} deleted"
        counters = ", ".join(f"{k} {v:,}" for k, v in sorted((t.get("counters") or {}).items()))
        error = t.get("error") or ""
        colour = STATUS_COLOURS.get(status, "#999")
        out.append(
            f'<tr class="{_esc(status)}"><td><b>{_esc(t["name"])}</b>'
            + (f'<br><small style="color:#6b757d">{_esc(counters)}</small>' if counters else "")
            + f'</td><td><span class="status" style="background:{colour}">{_esc(status)}</span></td>'
            + _bar_cell(float(t.get("rows") or 0), top_rows, f"{int(t.get('rows') or 0):,}", "#2f7fc1")
            + _bar_cell(float(t.get("bytes") or 0), top_bytes, _human_bytes(t.get("bytes") or 0), "#8e5ac8")
            + f'<td class="num">{_esc(parts)}</td>'
            + f'<td class="num"{retry_style if t.get("retries") else ""}>{int(t.get("retries") or 0)}</td>'
            + f'<td class="num">{_esc(_seconds(float(t.get("seconds") or 0)))}</td>'
            + f'<td>{_esc(t.get("plugin") or "")}</td><td class="err">{_esc(error)}</td></tr>'
        )
    out.append("</tbody></table>")
    return "".join(out)


def _partition_keys(names: Sequence[str]) -> dict[str, str]:
    """Partition keys of the tables this process knows (for partition tooltips); never fails."""
    try:
        from bdc.catalog import get_catalog

        catalog = get_catalog()
        out = {}
        for name in names:
            try:
                spec = catalog.get(name)
            except Exception:  # a name two plugins declare: no tooltip for it, the others keep theirs
                continue
            if spec is not None and spec.partition_key:
                out[name] = spec.partition_key
        return out
    except Exception:
        return {}


def render_html(report: Any, *, title: str | None = None) -> str:
    """The report (a :class:`~bdc.runner.report.RunReport` or its JSON dict) as a self-contained HTML page."""
    data = _as_dict(report)
    tables = [dict(t) for t in data.get("tables") or []]
    status = str(data.get("status", "unknown"))
    counts: dict[str, int] = {}
    for t in tables:
        counts[t.get("status", "pending")] = counts.get(t.get("status", "pending"), 0) + 1
    retries = sum(int(t.get("retries") or 0) for t in tables)
    total_rows = sum(int(t.get("rows") or 0) for t in tables)
    total_bytes = sum(int(t.get("bytes") or 0) for t in tables)
    heading = title or f"bdc-sync run {data.get('run_id', '')}"
    run_colour = STATUS_COLOURS["ok" if status == "ok" else "failed" if status == "failed" else "pending"]
    cards = [
        (f"{len(tables)}", "tables"),
        (f"{counts.get('ok', 0)}", "built"),
        (f"{counts.get('unchanged', 0)}", "unchanged"),
        (f"{counts.get('failed', 0)}", "failed"),
        (f"{counts.get('skipped', 0)}", "skipped"),
        (f"{retries}", "retries"),
        (f"{total_rows:,}", "rows"),
        (_human_bytes(total_bytes), "written"),
        (_seconds(float(data.get("seconds") or 0)), "wall time"),
    ]
    legend = "".join(f'<span><i style="background:{STATUS_COLOURS[s]}"></i>{label}</span>' for s, label in
                     (("ok", "built"), ("unchanged", "unchanged"), ("failed", "failed")))
    legend += (f'<span><i style="background:{_PARTITION_COLOUR}"></i>partition builds (lanes: run at once)</span>'
               f'<span><i style="background:{_RETRY_COLOUR};border-radius:6px"></i>retries</span>'
               '<span><i style="border:1px dashed #999"></i>skipped / did not run</span>')
    sub = (f'{_esc(data.get("cache", ""))} · {_esc(data.get("version_folder", ""))} · executor '
           f'{_esc(data.get("executor", ""))} × {_esc(data.get("workers", ""))} · started '
           f'{_esc(data.get("started_at", ""))} · finished {_esc(data.get("finished_at") or "—")}')
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(heading)}</title><style>{_CSS}</style></head><body>",
        f'<h1>{_esc(heading)} <span class="status" style="background:{run_colour}">{_esc(status)}</span></h1>',
        f'<p class="sub">{sub}</p>',
        '<div class="cards">' + "".join(f"<div class=\"card\"><b>{_esc(v)}</b><span>{_esc(k)}</span></div>"
                                        for v, k in cards) + "</div>",
        "<h2>Timeline</h2>",
        f'<div class="legend">{legend}</div>',
        f'<div class="chart">{_timeline(tables, _partition_keys([t["name"] for t in tables]))}</div>',
        "<h2>Tables</h2>",
        _tables_html(tables),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_html(report: Any, path: str | os.PathLike[str], *, title: str | None = None) -> None:
    """Write :func:`render_html` of ``report`` to ``path`` (UTF-8)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render_html(report, title=title))
