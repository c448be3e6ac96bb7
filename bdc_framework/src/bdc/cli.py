"""The ``bdc`` command: list, describe, read and query the tables of a cache from a shell.

::

    bdc tables
    bdc show quality_control
    bdc get qc --subject-id 692478 --columns name,status --format json
    bdc sql "SELECT project_name, count(*) FROM asset_basics GROUP BY 1"
    bdc versions
    bdc cache info            # the local copies of remote (S3) objects
    bdc cache clear

Only the standard library is imported here at start-up: pandas, DuckDB, pyarrow and the plugins
load when a command needs them, so ``bdc --help`` answers at once. A :class:`bdc.BdcError`
prints ``error: <message>`` on stderr and exits with status 2.

Subcommands are entries of :data:`COMMANDS` (a name, a function adding the arguments, and a
handler ``(args) -> int``); a new one (``graph``, later) is one more entry.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any, NamedTuple

__all__ = ["main", "build_parser", "COMMANDS", "Command"]

FORMATS = ("table", "csv", "json", "parquet")
EXIT_ERROR = 2


class Command(NamedTuple):
    """One subcommand: its name, one-line help, an argument adder and a handler."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# -- helpers ----------------------------------------------------------------------------------


def _out() -> IO[str]:
    return sys.stdout


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _open_cache(args: argparse.Namespace) -> Any:
    """The cache named by ``--cache``/``--version`` (default: the configured cache)."""
    from bdc.cache import Cache

    return Cache(args.cache, version=args.version)


def _warn_plugin_failures() -> None:
    """Report plugins that failed to load (the command still runs with the others)."""
    from bdc.plugins import plugin_failures

    for failure in plugin_failures():
        _err(f"warning: {failure}")


def _catalog() -> Any:
    from bdc.catalog import get_catalog

    catalog = get_catalog()
    _warn_plugin_failures()
    return catalog


def _human_size(size: Any) -> str:
    if not isinstance(size, (int, float)):
        return str(size)
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)  # pragma: no cover


def _text_table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain aligned text table (no third-party formatter)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _key_value(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        from bdc.errors import BdcError

        raise BdcError(f"{option} expects COLUMN=VALUE, got {text!r}")
    return key.strip(), value


def _typed_value(spec: Any, column: str, text: str, option: str) -> Any:
    """Turn a command-line value into the column's type (ids and strings stay text)."""
    from bdc.errors import BdcError

    types = {c.name: c.type.strip() for c in spec.columns}
    kind = types.get(column, "string")
    try:
        if kind in ("int", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
            return int(text)
        if kind in ("float", "double", "float32", "float64"):
            return float(text)
        if kind in ("bool", "boolean"):
            lowered = text.strip().lower()
            if lowered in ("true", "t", "yes", "1"):
                return True
            if lowered in ("false", "f", "no", "0"):
                return False
            raise ValueError(text)
    except ValueError:
        raise BdcError(f"{option} {column}={text!r}: not a valid {kind}") from None
    return text


def _filters(args: argparse.Namespace, spec: Any) -> dict[str, Any]:
    """``--subject-id``, ``--partition`` and ``--where`` as one mapping (repeats mean "any of")."""
    pairs: list[tuple[str, str, str]] = []
    if getattr(args, "subject_id", None) is not None:
        pairs.append(("subject_id", args.subject_id, "--subject-id"))
    for item in getattr(args, "partition", None) or []:
        key, value = _key_value(item, "--partition")
        if spec.partition_key is None or key != spec.partition_key:
            from bdc.errors import BdcError

            what = f"partitioned by {spec.partition_key!r}" if spec.partition_key else "not partitioned"
            raise BdcError(f"--partition {key}=...: table {spec.name!r} is {what}")
        pairs.append((key, value, "--partition"))
    for item in getattr(args, "where", None) or []:
        key, value = _key_value(item, "--where")
        pairs.append((key, value, "--where"))
    out: dict[str, Any] = {}
    for key, value, option in pairs:
        typed = _typed_value(spec, key, value, option)
        if key in out:
            previous = out[key]
            out[key] = [*previous, typed] if isinstance(previous, list) else [previous, typed]
        else:
            out[key] = typed
    return out


def _pick_format(fmt: str | None, output: str | None) -> str:
    from bdc.errors import BdcError

    if fmt is None:
        if output:
            lowered = output.lower()
            if lowered.endswith((".parquet", ".pqt")):
                fmt = "parquet"
            elif lowered.endswith((".json", ".jsonl")):
                fmt = "json"
            else:
                fmt = "csv"
        else:
            fmt = "table" if sys.stdout.isatty() else "csv"
    if fmt == "parquet" and not output:
        raise BdcError("--format parquet needs an output file: add -o FILE")
    return fmt


def _json_default(value: Any) -> Any:
    import datetime
    import decimal

    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _nested_as_json(table: Any) -> Any:
    """Lists and structs as JSON text (CSV has no nested values)."""
    import json

    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            texts = [None if v is None else json.dumps(v, default=_json_default, ensure_ascii=False)
                     for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(field.name, pa.string()), pa.array(texts, pa.string()))
    return table


def _to_pandas(table: Any) -> Any:
    """A DataFrame for display: integers with nulls stay integers, every null shows as <NA>."""
    import pandas as pd
    import pyarrow as pa

    simple = (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(),
              pa.uint64(), pa.float32(), pa.float64(), pa.bool_(), pa.string(), pa.large_string())
    mapping = {t: pd.ArrowDtype(t) for t in simple}
    return table.to_pandas(types_mapper=mapping.get)


def _render_text(table: Any, max_rows: int | None = 60) -> str:
    import pandas as pd

    shown = table if max_rows is None or table.num_rows <= max_rows else table.slice(0, max_rows)
    df = _to_pandas(shown)  # only the rows shown are converted
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_colwidth", 60):
        text = df.to_string(index=False) if len(df.columns) else "(no columns)"
    count = f"{table.num_rows} row{'s' if table.num_rows != 1 else ''}"
    if shown.num_rows < table.num_rows:
        return f"{text}\n... ({count}, first {shown.num_rows} shown; use --format csv or -o FILE for all)"
    return f"{text}\n({count})"


def _emit(table: Any, fmt: str, output: str | None) -> None:
    """Write an Arrow table as ``fmt`` to ``output`` (a path) or stdout."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, output)
        _err(f"wrote {table.num_rows} rows to {output}")
        return
    if fmt == "json":
        import json

        text = json.dumps(table.to_pylist(), default=_json_default, ensure_ascii=False)
        _write_text(text + "\n", output)
    elif fmt == "csv":
        import io

        import pyarrow.csv as pacsv

        buffer = io.BytesIO()
        pacsv.write_csv(_nested_as_json(table), buffer)
        _write_text(buffer.getvalue().decode("utf-8"), output)
    else:
        _write_text(_render_text(table) + "\n", output)
    if output:
        _err(f"wrote {table.num_rows} rows to {output}")


def _write_text(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        _out().write(text)
        _out().flush()


# -- subcommands --------------------------------------------------------------------------------


def _add_tables(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the table descriptions as JSON")


def _run_tables(args: argparse.Namespace) -> int:
    catalog = _catalog()
    specs = list(catalog)
    if args.json:
        import json

        _out().write(json.dumps([s.describe() for s in specs], indent=2) + "\n")
        return 0
    if not specs:
        _out().write("No tables installed (install a table plugin such as bdc-tables-docdb).\n")
        return 0
    rows = [[s.name, ",".join(s.aliases), s.kind, s.partition_key or "", s.description.splitlines()[0] if s.description else ""]
            for s in specs]
    _out().write(_text_table(rows, ["name", "aliases", "kind", "partition key", "description"]) + "\n")
    return 0


def _add_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="table name or alias")
    p.add_argument("--json", action="store_true", help="print the spec and registry entry as JSON")


def _run_show(args: argparse.Namespace) -> int:
    catalog = _catalog()
    spec = catalog.resolve(args.name)
    cache = _open_cache(args)
    entry = cache.registry_entry(spec.name)
    if args.json:
        import json

        _out().write(json.dumps({"spec": spec.describe(), "cache": cache.url,
                                 "version_folder": cache.layout.version_folder, "published": entry},
                                indent=2, default=str) + "\n")
        return 0
    out: list[str] = [f"{spec.name}: {spec.description}"]
    if spec.aliases:
        out.append(f"aliases:        {', '.join(spec.aliases)}")
    out.append(f"kind:           {spec.kind}")
    out.append(f"partition key:  {spec.partition_key or '(not partitioned)'}")
    out.append(f"depends on:     {', '.join(spec.depends_on) or '(nothing)'}")
    out.append(f"plugin:         {spec.plugin or '?'}")
    out.append(f"incremental:    {'yes' if spec.incremental else 'no'}")
    out.append("")
    out.append("columns:")
    rows = [[c.name, c.type, c.description] for c in spec.columns]
    out.append(_indent(_text_table(rows, ["name", "type", "description"])))
    out.append("")
    if entry is None:
        out.append(f"not built in cache {cache.url} ({cache.layout.version_folder}).")
        from bdc.errors import build_command

        out.append(f"Build it with: {build_command(spec.name, cache.url, cache.layout.version_folder)}")
        _out().write("\n".join(out) + "\n")
        return 0
    out.append(f"cache:          {cache.url} ({cache.layout.version_folder})")
    out.append(f"location:       {entry.get('location')}")
    build = entry.get("build") or {}
    labels = {"rows": "rows", "partitions": "partitions", "bytes": "size", "files": "files"}
    for key, label in labels.items():
        if key in build:
            value = _human_size(build[key]) if key == "bytes" else f"{build[key]:,}" if isinstance(build[key], int) else build[key]
            out.append(f"{label + ':':<16}{value}")
    for key, value in build.items():
        if key not in labels:
            out.append(f"{('build ' + key + ':'):<16}{value}")
    out.append("")
    sample_filter: dict[str, str] = {}
    if spec.partitioned:  # one partition is enough for a sample (and avoids opening them all)
        listed = [f.get("value") for f in entry.get("files") or [] if isinstance(f, dict)]
        values = sorted(v for v in listed if isinstance(v, str)) or sorted(cache.partition_objects(spec))
        if values:
            sample_filter[spec.partition_key] = values[0]
    label = f"{spec.partition_key}={sample_filter[spec.partition_key]}, " if sample_filter else ""
    out.append(f"sample ({label}5 rows):")
    sample = cache.get(spec.name, limit=5, arrow=True, **sample_filter)
    out.append(_indent(_render_text(sample, max_rows=None)))
    _out().write("\n".join(out) + "\n")
    return 0


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def _add_partition_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--subject-id", metavar="X", help="only this subject (the usual partition key)")
    p.add_argument("--partition", action="append", metavar="KEY=VALUE",
                   help="only this partition (repeat for several)")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS,
                   help="output format (default: a readable table on a terminal, csv otherwise; "
                        "from the extension of -o)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


def _add_get(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="table name or alias")
    _add_partition_options(p)
    p.add_argument("--where", action="append", metavar="COL=VALUE",
                   help="keep rows where COL equals VALUE (repeat; one column repeated means any of)")
    p.add_argument("--columns", metavar="a,b", help="comma-separated columns to read")
    p.add_argument("--limit", type=int, metavar="N", help="at most N rows")
    _add_output_options(p)


def _run_get(args: argparse.Namespace) -> int:
    fmt = _pick_format(args.format, args.output)
    catalog = _catalog()
    spec = catalog.resolve(args.name)
    filters = _filters(args, spec)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    if args.limit is not None and args.limit < 0:
        from bdc.errors import BdcError

        raise BdcError("--limit must be zero or more")
    table = _open_cache(args).get(spec.name, columns=columns, where=filters, limit=args.limit, arrow=True)
    _emit(table, fmt, args.output)
    return 0


def _add_sql(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", help="SQL; every table, alias and custom table is a view")
    p.add_argument("--param", action="append", metavar="VALUE", default=None,
                   help="a value for the next ? placeholder (repeat, in order)")
    _add_output_options(p)


def _run_sql(args: argparse.Namespace) -> int:
    fmt = _pick_format(args.format, args.output)
    _catalog()
    table = _open_cache(args).sql(args.query, args.param, arrow=True)
    _emit(table, fmt, args.output)
    return 0


def _add_nothing(p: argparse.ArgumentParser) -> None:
    return None


def _run_versions(args: argparse.Namespace) -> int:
    cache = _open_cache(args)
    current = cache.layout.version_folder
    versions = cache.versions()
    if not versions:
        _err(f"no versions published in {cache.url}")
    for folder in versions:
        _out().write(f"{folder}{'  (selected)' if folder == current else ''}\n")
    return 0


def _run_registry(args: argparse.Namespace) -> int:
    import json

    _out().write(json.dumps(_open_cache(args).registry(), indent=2, default=str) + "\n")
    return 0


def _add_location(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="table name or alias")
    _add_partition_options(p)


def _run_location(args: argparse.Namespace) -> int:
    catalog = _catalog()
    spec = catalog.resolve(args.name)
    filters = _filters(args, spec)
    if any(isinstance(v, list) for v in filters.values()):
        from bdc.errors import BdcError

        raise BdcError("location takes one partition value")
    partition = {k: str(v) for k, v in filters.items()}
    _out().write(_open_cache(args).location(spec.name, **partition) + "\n")
    return 0


def _add_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("info", "clear"),
                   help="info: what the local read cache holds; clear: delete every local copy")
    p.add_argument("--json", action="store_true", help="info as JSON")


def _run_cache(args: argparse.Namespace) -> int:
    """The local read-through cache of remote objects (not a cache's published tables)."""
    from bdc.backends.readcache import get_store, settings

    config = settings()
    store = get_store(config)
    if args.action == "clear":
        gone = store.clear()
        _out().write(f"removed {gone['objects']} local cop{'y' if gone['objects'] == 1 else 'ies'} "
                     f"({_human_size(gone['bytes'])}) from {config.root}\n")
        return 0
    info = {**store.info(), "ttl_seconds": config.ttl, "enabled": config.enabled}
    if args.json:
        import json

        _out().write(json.dumps(info, indent=2) + "\n")
        return 0
    lines = [
        f"local read cache: {info['root']}{'' if config.enabled else '  (off: BDC_LOCAL_CACHE)'}",
        f"objects:          {info['objects']:,}" + (f" ({info['partial']:,} partial)" if info["partial"] else ""),
        f"size:             {_human_size(info['bytes'])} of {_human_size(info['max_bytes'])} (BDC_LOCAL_CACHE_MAX)",
        f"fresh for:        {config.ttl:g} s after each check (BDC_LOCAL_CACHE_TTL)",
    ]
    if info["buckets"]:
        rows = [[b["origin"], b["bucket"], f"{b['objects']:,}", _human_size(b["bytes"])] for b in info["buckets"]]
        lines += ["", _text_table(rows, ["origin", "bucket", "objects", "size"])]
    _out().write("\n".join(lines) + "\n")
    return 0


def _add_graph(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid",
                   help="Mermaid flowchart (default) or Graphviz DOT")
    # SUPPRESS: without it, the subcommand's unset --cache would hide `bdc --cache URL graph`
    p.add_argument("--cache", metavar="URL", default=argparse.SUPPRESS,
                   help="also show each table's last build status and age in this cache")


def _run_graph(args: argparse.Namespace) -> int:
    """The table dependency graph from the catalog (with build status when a cache is given)."""
    from bdc.graph import render, table_status

    specs = list(_catalog())
    status = table_status(_open_cache(args), specs) if args.cache else None
    _out().write(render(specs, args.format, status) + "\n")
    return 0


#: The subcommands, in help order. Add an entry to add a command.
COMMANDS: list[Command] = [
    Command("tables", "list the installed tables", _add_tables, _run_tables),
    Command("show", "describe one table: columns, partitions, last build, a sample", _add_show, _run_show),
    Command("get", "read a table (or a partition) as csv, json, parquet or text", _add_get, _run_get),
    Command("sql", "run SQL over the cache (every table is a view)", _add_sql, _run_sql),
    Command("versions", "list the version folders of the cache", _add_nothing, _run_versions),
    Command("registry", "print the published registry of this version (JSON)", _add_nothing, _run_registry),
    Command("location", "print the URI of a table or one partition", _add_location, _run_location),
    Command("cache", "the local copies of remote (S3) objects: info, clear", _add_cache, _run_cache),
    Command("graph", "print the table dependency graph (Mermaid or DOT), with build status given --cache",
            _add_graph, _run_graph),
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``bdc`` (global options and every subcommand)."""
    parser = argparse.ArgumentParser(
        prog="bdc",
        description="Read the versioned parquet tables of a bdc cache.",
        epilog="The cache is --cache, else $BDC_CACHE, else $BIODATA_CACHE_BACKEND (S3|MEMORY), "
               "else a local cache under the user cache directory.",
    )
    parser.add_argument("--cache", metavar="URL", help="cache URL: file:///path, s3://bucket/prefix, memory://")
    parser.add_argument("--version", metavar="X.Y", help="version folder to read (default: this bdc's, bdc-vX.Y)")
    parser.add_argument("-V", action="version", version=f"bdc {_package_version()}",
                        help="print bdc's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(_run=command.run)
    return parser


def _package_version() -> str:
    from bdc import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bdc`` with ``argv`` (default: the process arguments); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    from bdc.errors import BdcError

    try:
        return run(args)
    except BdcError as exc:
        _err(f"error: {exc}")
        return EXIT_ERROR
    except BrokenPipeError:  # `bdc get ... | head`
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
