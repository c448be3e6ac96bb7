"""Typed records that plugins contribute through the hooks.

A table is declared once, as a :class:`TableSpec`; registry entries, docs, sync order and column
checks all derive from it. Backends and executors are contributed as :class:`BackendSpec` and
:class:`ExecutorSpec`; migration one-liners as :class:`FunctionSpec`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from bdc.errors import SpecError

__all__ = [
    "Column",
    "TableSpec",
    "BackendSpec",
    "ExecutorSpec",
    "FunctionSpec",
    "DemoSpec",
    "KINDS",
    "NAME_PATTERN",
]

#: The table kinds of the registry contract.
KINDS = ("metadata", "asset", "event", "realtime", "platform")
#: What a table, alias, custom table or partition-key name may look like.
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")


def _columns(value: Iterable[Any]) -> tuple[Column, ...]:
    out = []
    for item in value:
        if isinstance(item, Column):
            out.append(item)
        elif isinstance(item, (tuple, list)):
            out.append(Column(*item))
        elif isinstance(item, dict):
            out.append(Column(**item))
        else:
            raise SpecError(f"A column must be a Column, a (name, type, description) tuple or a dict, not {item!r}")
    return tuple(out)


def _names(value: Iterable[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen
class Column:
    """One declared column: its name, Arrow type text (see :mod:`bdc.arrowtypes`) and meaning."""

    name: str
    type: str = "string"
    description: str = ""

    def arrow_type(self) -> Any:
        """The column's ``pyarrow.DataType``."""
        from bdc.arrowtypes import arrow_type

        return arrow_type(self.type)


@attrs.frozen(repr=False)
class TableSpec:
    """Everything the framework needs to know about one table.

    Build contract (called by the sync runner):

    * unpartitioned: ``build(ctx)`` returns the table (a pandas DataFrame, a pyarrow Table, an
      iterable of record batches or a list of row dicts), or a :class:`bdc.build.Delta` when the
      spec is incremental;
    * partitioned: ``partitions(ctx)`` returns the partition values (or a mapping value →
      fingerprint: unchanged fingerprints are not rebuilt on an incremental run) and
      ``build_partition(ctx, value)`` returns one partition's rows — or, to fetch many
      partitions per source request, ``build_partitions(ctx, values)`` returns a mapping
      value → rows for up to ``batch_size`` values at a time (a value left out has no rows);
    * ``produced_by``: a side table written by another table's build (no build of its own).

    ``ctx`` is a :class:`bdc.build.BuildContext`.
    """

    name: str
    description: str
    columns: tuple[Column, ...] = attrs.field(converter=_columns, factory=tuple)
    kind: str = "metadata"
    aliases: tuple[str, ...] = attrs.field(converter=_names, factory=tuple)
    partition_key: str | None = None
    folder: str | None = None
    depends_on: tuple[str, ...] = attrs.field(converter=_names, factory=tuple)
    build: Callable[..., Any] | None = None
    partitions: Callable[..., Any] | None = None
    build_partition: Callable[..., Any] | None = None
    build_partitions: Callable[..., Any] | None = None
    batch_size: int = 1
    incremental: bool = False
    key: tuple[str, ...] = attrs.field(converter=_names, factory=tuple)
    finalize: Callable[..., Any] | None = None
    extra_columns: bool = False
    file_name: str = "data.pqt"
    produced_by: str | None = None
    plugin: str | None = None

    def __attrs_post_init__(self) -> None:
        for label, value in [("name", self.name), *(("alias", a) for a in self.aliases)]:
            if not NAME_PATTERN.match(value):
                raise SpecError(f"Table {label} {value!r} must match {NAME_PATTERN.pattern}")
        if self.folder is not None and not NAME_PATTERN.match(self.folder):
            raise SpecError(f"Table folder {self.folder!r} must match {NAME_PATTERN.pattern}")
        if self.kind not in KINDS:
            raise SpecError(f"Table {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise SpecError(f"Table {self.name!r} declares a column twice")
        if self.partition_key is not None:
            if not NAME_PATTERN.match(self.partition_key):
                raise SpecError(f"Partition key {self.partition_key!r} must match {NAME_PATTERN.pattern}")
            if self.columns and self.partition_key not in names:
                raise SpecError(f"Table {self.name!r}: partition key {self.partition_key!r} is not a declared column")
            if self.produced_by is None and (
                self.partitions is None or (self.build_partition is None and self.build_partitions is None)
            ):
                raise SpecError(f"Partitioned table {self.name!r} needs partitions and build_partition(s)")
        elif self.produced_by is None and self.build is None:
            raise SpecError(f"Table {self.name!r} needs a build function (or produced_by)")
        if self.batch_size < 1:
            raise SpecError(f"Table {self.name!r}: batch_size must be at least 1")
        if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$", self.file_name) or ".." in self.file_name:
            raise SpecError(f"Table {self.name!r}: bad file_name {self.file_name!r}")
        for k in self.key:
            if self.columns and k not in names:
                raise SpecError(f"Table {self.name!r}: key column {k!r} is not declared")

    @property
    def storage_name(self) -> str:
        """The name of the table's file or folder in the layout (``qc`` for quality_control)."""
        return self.folder or self.name

    @property
    def partitioned(self) -> bool:
        """Whether the table is hive-partitioned."""
        return self.partition_key is not None

    @property
    def column_names(self) -> list[str]:
        """The declared column names, in order."""
        return [c.name for c in self.columns]

    def arrow_schema(self) -> Any:
        """The declared columns as a ``pyarrow.Schema``."""
        import pyarrow as pa

        return pa.schema([pa.field(c.name, c.arrow_type()) for c in self.columns])

    def __repr__(self) -> str:
        part = f", partitioned by {self.partition_key}" if self.partition_key else ""
        alias = f" ({', '.join(self.aliases)})" if self.aliases else ""
        return (f"<TableSpec {self.name}{alias}: {self.kind}{part}, {len(self.columns)} columns"
                f"{', plugin ' + self.plugin if self.plugin else ''}>")

    def _repr_html_(self) -> str:
        from bdc.tableinfo import TableInfo

        return TableInfo(self)._repr_html_()

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``bdc tables`` prints)."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "description": self.description,
            "kind": self.kind,
            "partition_key": self.partition_key,
            "depends_on": list(self.depends_on),
            "incremental": self.incremental,
            "plugin": self.plugin,
            "columns": [attrs.asdict(c) for c in self.columns],
        }


@attrs.frozen
class BackendSpec:
    """A storage backend for URLs of one scheme: ``factory(url) -> Backend``."""

    scheme: str
    factory: Callable[[str], Any]
    description: str = ""
    plugin: str | None = None


@attrs.frozen
class ExecutorSpec:
    """A sync executor: ``factory(workers=..., **options) -> Executor``."""

    name: str
    factory: Callable[..., Any]
    description: str = ""
    plugin: str | None = None


@attrs.frozen
class FunctionSpec:
    """A function a plugin adds to the ``bdc`` namespace (``from bdc import qc``)."""

    name: str
    function: Callable[..., Any]
    description: str = ""
    plugin: str | None = None


@attrs.frozen
class DemoSpec:
    """Offline demo sources: ``start()`` returns a context manager that sets them up (``bdc-sync --demo``)."""

    name: str
    start: Callable[[], Any]
    description: str = ""
    plugin: str | None = None
