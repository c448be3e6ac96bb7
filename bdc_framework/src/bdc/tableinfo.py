"""What one table is and what was published of it, readable in a terminal and in a notebook.

``bdc.describe("qc")`` (or ``Cache.describe``) returns a :class:`TableInfo`; ``bdc show`` prints
the same text.
"""

from __future__ import annotations

import html
from typing import Any

import attrs

from bdc.spec import TableSpec

__all__ = ["TableInfo", "describe", "human_size"]


def human_size(n: float) -> str:
    """``1536`` → ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@attrs.frozen
class TableInfo:
    """A table's spec plus its registry entry in one cache (``entry`` is ``None`` if not built).

    Without a cache (``cache_url`` ``None``) it describes the spec alone.
    """

    spec: TableSpec
    cache_url: str | None = None
    version_folder: str | None = None
    entry: dict[str, Any] | None = None

    @property
    def built(self) -> bool:
        """Whether the table is published in this cache."""
        return self.entry is not None

    @property
    def build(self) -> dict[str, Any]:
        """The last successful build (rows, partitions, bytes, built_at, ...)."""
        return dict((self.entry or {}).get("build") or {})

    def facts(self) -> list[tuple[str, str]]:
        """Label/value pairs shown by every rendering."""
        s = self.spec
        out = [("aliases", ", ".join(s.aliases) or "-"), ("kind", s.kind),
               ("partition key", s.partition_key or "(not partitioned)"),
               ("depends on", ", ".join(s.depends_on) or "(nothing)"), ("plugin", s.plugin or "?"),
               ("incremental", "yes" if s.incremental else "no")]
        if self.cache_url is None:
            return out
        if not self.built:
            out.append(("cache", f"{self.cache_url} ({self.version_folder}): not built; "
                                 f"bdc-sync --cache {self.cache_url} --only {s.name}"))
            return out
        out += [("cache", f"{self.cache_url} ({self.version_folder})"),
                ("location", str((self.entry or {}).get("location")))]
        build = self.build
        labels = {"rows": "rows", "partitions": "partitions", "bytes": "size", "files": "files"}
        for key, label in labels.items():
            if key in build:
                value = build[key]
                out.append((label, human_size(value) if key == "bytes" else f"{value:,}" if isinstance(value, int) else str(value)))
        out += [(f"build {k}", str(v)) for k, v in build.items() if k not in labels]
        return out

    def text(self) -> str:
        """The terminal rendering (what ``bdc show`` prints before its sample)."""
        lines = [f"{self.spec.name}: {self.spec.description}"]
        lines += [f"{label + ':':<16}{value}" for label, value in self.facts()]
        width = max([len(c.name) for c in self.spec.columns] + [4])
        twidth = max([len(c.type) for c in self.spec.columns] + [4])
        lines += ["", "columns:"]
        lines += [f"  {c.name:<{width}}  {c.type:<{twidth}}  {c.description}" for c in self.spec.columns]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        e = html.escape
        facts = "".join(f"<tr><th style='text-align:left'>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in self.facts())
        cols = "".join(f"<tr><td><code>{e(c.name)}</code></td><td>{e(c.type)}</td><td>{e(c.description)}</td></tr>"
                       for c in self.spec.columns)
        return (f"<div><b>{e(self.spec.name)}</b>: {e(self.spec.description)}<table>{facts}</table>"
                f"<table><tr><th>column</th><th>type</th><th>description</th></tr>{cols}</table></div>")


def describe(cache: Any, name: str) -> TableInfo:
    """The :class:`TableInfo` of ``name`` in ``cache``."""
    spec = cache.spec(name)
    return TableInfo(spec, cache.url, cache.layout.version_folder, cache.registry_entry(spec.name))
