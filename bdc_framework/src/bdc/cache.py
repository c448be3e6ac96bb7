"""A cache: one backend URL, one version folder, and everything you can do with its tables."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bdc.backends import Backend, ObjectInfo, open_backend
from bdc.catalog import get_catalog
from bdc.errors import (
    BdcError,
    InvalidNameError,
    ObjectNotFoundError,
    ReadError,
    TableNotBuiltError,
)
from bdc.layout import CUSTOM_PREFIX, Layout
from bdc.names import check_partition_value, check_table_name
from bdc.published import (
    read_registry,
    read_versions,
    registry_entry,
    registry_lock,
    write_registry,
)
from bdc.reader import Source, check_columns, result_arrow, select
from bdc.spec import TableSpec
from bdc.versioning import version_folder

__all__ = ["Cache", "CustomTableNotFoundError"]


class CustomTableNotFoundError(TableNotBuiltError, ValueError):
    """No custom table of this name is stored in the cache."""

    def __init__(self, name: str, cache_url: str):
        self.name = name
        self.cache_url = cache_url
        BdcError.__init__(self, f"No custom table {name!r} in cache {cache_url}; store one with bdc.custom({name!r}, df)")


class Cache:
    """A cache of published tables at ``url`` (default: the configured cache), for one version.

    >>> cache = Cache("memory://doc-example")
    >>> cache.versions()
    []
    """

    def __init__(self, url: str | None = None, *, version: str | None = None, backend: Backend | None = None):
        from bdc.config import default_cache_url

        self.backend = backend if backend is not None else open_backend(url or default_cache_url())
        self.url = self.backend.url
        self.layout = Layout(version_folder(version))

    def __repr__(self) -> str:
        return f"Cache({self.url!r}, version={self.layout.version_folder!r})"

    # -- the catalog ---------------------------------------------------------------------------

    @staticmethod
    def spec(name: str) -> TableSpec:
        """The spec of an installed table (by name or alias)."""
        return get_catalog().resolve(name)

    @staticmethod
    def tables() -> list[TableSpec]:
        """Every installed table."""
        return list(get_catalog())

    # -- reading -------------------------------------------------------------------------------

    def _partition_values(self, spec: TableSpec, where: dict[str, Any]) -> list[str] | None:
        if not spec.partitioned or spec.partition_key not in where:
            return None
        value = where.pop(spec.partition_key)
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        return [check_partition_value(v, spec.partition_key) for v in values]

    def partition_objects(self, spec: TableSpec) -> dict[str, ObjectInfo]:
        """The published partitions of a table: value → object info."""
        out = {}
        for info in self.backend.list(self.layout.table_prefix(spec)):
            value = self.layout.partition_value(spec, info.key)
            if value is not None:
                out[value] = info
        return out

    def _data_keys(self, spec: TableSpec, values: list[str] | None) -> list[str]:
        if not spec.partitioned:
            key = self.layout.table_key(spec)
            if not self.backend.exists(key):
                raise TableNotBuiltError(spec.name, self.url, self.layout.version_folder)
            return [key]
        if values is not None:
            keys = [self.layout.partition_key(spec, v) for v in values]
            found = [k for k in keys if self.backend.exists(k)]
            if not found and not self.is_published(spec):
                raise TableNotBuiltError(spec.name, self.url, self.layout.version_folder)
            return found
        keys = [info.key for info in self.partition_objects(spec).values()]
        if not keys and not self.is_published(spec):
            raise TableNotBuiltError(spec.name, self.url, self.layout.version_folder)
        return sorted(keys)

    def _source(self, keys: list[str], label: str, columns: Sequence[str] | None = None) -> Source:
        paths = [self.backend.local_path(k) for k in keys]
        if all(p is not None for p in paths):
            return Source(files=tuple(paths), label=label)  # type: ignore[arg-type]
        return Source(arrow=self._read_arrow_objects(keys, columns), label=label)

    def _read_arrow_objects(self, keys: list[str], columns: Sequence[str] | None) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for key in keys:
            data = self.backend.read_bytes(key)
            try:
                tables.append(pq.read_table(pa.BufferReader(data)))
            except (pa.ArrowInvalid, OSError) as exc:
                raise ReadError(f"{self.backend.uri(key)} is not a readable parquet file: {exc}") from exc
        if len(tables) == 1:
            return tables[0]
        return pa.concat_tables(tables, promote_options="permissive")

    def get(
        self,
        name: str,
        *,
        columns: Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
        arrow: bool = False,
        **filters: Any,
    ) -> Any:
        """Read a table as a pandas DataFrame (``arrow=True``: a pyarrow Table).

        ``columns`` projects; ``where`` (and keyword filters such as ``subject_id="692478"``)
        filter by equality, membership (a list) or IS NULL (``None``). A filter on the partition
        key reads only those partitions.
        """
        spec = self.spec(name)
        conditions = {**(where or {}), **filters}
        if columns is not None:
            if isinstance(columns, str):
                columns = [columns]
            check_columns(spec, list(columns))
        check_columns(spec, list(conditions), "filter column")
        values = self._partition_values(spec, conditions)
        keys = self._data_keys(spec, values)
        if not keys:
            from bdc.frames import empty_table

            table = empty_table(spec, list(columns) if columns else None)
            return table if arrow else table.to_pandas()
        return select(self._source(keys, f"table {spec.name!r} in {self.url}", columns),
                      columns=columns, where=conditions, limit=limit, spec=spec, arrow=arrow)

    def location(self, name: str, **partition: Any) -> str:
        """The URI of a table's parquet file, folder, or one partition (``subject_id=...``)."""
        spec = self.spec(name)
        if not partition:
            return self.backend.uri(self.layout.location_key(spec))
        if not spec.partitioned or set(partition) != {spec.partition_key}:
            raise InvalidNameError(
                f"Table {spec.name!r} is " + (f"partitioned by {spec.partition_key!r}" if spec.partitioned else "not partitioned")
                + f"; got {', '.join(partition)}"
            )
        return self.backend.uri(self.layout.partition_key(spec, partition[spec.partition_key]))

    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None, *, arrow: bool = False) -> Any:
        """Run SQL where every installed table (and alias, and custom table) is a view.

        Pass values as ``params`` (``?`` or ``$name`` placeholders), never inside the text.
        """
        import duckdb

        names = _referenced_names(query)
        cur = _connection_cursor()
        try:
            for name in sorted(names):
                self._create_view(cur, name)
            result = cur.sql(query, params=params) if params is not None else cur.sql(query)
            if result is None:
                return None
            return result_arrow(result) if arrow else result.df()
        except duckdb.Error as exc:
            raise BdcError(f"SQL failed: {exc}") from exc
        finally:
            cur.close()

    def _create_view(self, cur: Any, name: str) -> None:
        spec = get_catalog().get(name)
        if spec is not None:
            keys = self._data_keys(spec, None)
            if not keys:
                from bdc.frames import empty_table

                cur.from_arrow(empty_table(spec)).create_view(name)
                return
        else:
            try:
                key = self._custom_key_found(name)
            except (CustomTableNotFoundError, InvalidNameError):
                return  # not ours: DuckDB will report the unknown name
            keys = [key]
        source = self._source(keys, name)
        if source.files:
            cur.read_parquet(list(source.files), union_by_name=True, hive_partitioning=False).create_view(name)
        else:
            cur.from_arrow(source.arrow).create_view(name)

    # -- published documents ------------------------------------------------------------------

    def registry(self) -> dict[str, Any]:
        """The published ``cache_registry.json`` of this version."""
        return read_registry(self.backend, self.layout)

    def registry_entry(self, name: str) -> dict[str, Any] | None:
        """The registry entry of one table, if published."""
        spec = self.spec(name)
        for entry in self.registry()["tables"]:
            if entry.get("name") == spec.name:
                return entry
        return None

    def is_published(self, spec: TableSpec) -> bool:
        """Whether the table has a registry entry in this version."""
        return self.registry_entry(spec.name) is not None

    def versions(self) -> list[str]:
        """The version folders of this cache (``cache_versions.json``)."""
        return read_versions(self.backend)

    # -- custom tables ------------------------------------------------------------------------

    def _custom_key_found(self, name: str) -> str:
        key = self.layout.custom_key(name)
        if self.backend.exists(key):
            return key
        legacy = self.layout.legacy_custom_key(name)
        if self.backend.exists(legacy):
            return legacy
        raise CustomTableNotFoundError(name, self.url)

    def custom(self, name: str, df: Any = None) -> Any:
        """Store ``df`` as the custom table ``name`` (and return it), or read it back."""
        check_table_name(name, "custom table name")
        if name in get_catalog():
            raise InvalidNameError(f"{name!r} is an installed table; choose another custom table name")
        if df is None:
            key = self._custom_key_found(name)
            return select(self._source([key], f"custom table {name!r} in {self.url}"))
        from bdc.frames import to_arrow, write_parquet

        table = to_arrow(df)
        with self.backend.open_write(self.layout.custom_key(name)) as fh:
            write_parquet(table, fh)
        return df

    def customs(self) -> list[str]:
        """The names of the stored custom tables."""
        out = []
        for info in self.backend.list(f"{CUSTOM_PREFIX}/"):
            if info.key.endswith(".pqt") and info.key.count("/") == 1:
                out.append(info.key[len(CUSTOM_PREFIX) + 1:-4])
        return out

    # -- writing (used by the sync runner and tests) ------------------------------------------

    def _write(self, key: str, table: Any, schema: Any = None) -> tuple[int, int]:
        from bdc.frames import write_parquet

        with self.backend.open_write(key) as fh:
            rows = write_parquet(table, fh, schema)
            size = fh.tell()
        return rows, size

    def write_table(self, spec: TableSpec, data: Any) -> dict[str, int]:
        """Conform and write an unpartitioned table's data (not yet in the registry)."""
        from bdc.frames import conform

        if spec.partitioned:
            raise BdcError(f"Table {spec.name!r} is partitioned; use write_partition")
        rows, size = self._write(self.layout.table_key(spec), conform(spec, data))
        return {"rows": rows, "bytes": size, "files": 1}

    def write_partition(self, spec: TableSpec, value: str, data: Any) -> dict[str, int]:
        """Conform and write one partition (a table, frame, rows or a stream of record batches)."""
        from bdc.frames import conform, conform_batches

        value = check_partition_value(value, spec.partition_key or "partition")
        key = self.layout.partition_key(spec, value)
        if _is_stream(data):
            schema = None if spec.extra_columns else spec.arrow_schema()  # extras: the first batch's schema
            rows, size = self._write(key, conform_batches(spec, data, value), schema)
        else:
            rows, size = self._write(key, conform(spec, data, value))
        return {"rows": rows, "bytes": size, "files": 1}

    def delete_partition(self, spec: TableSpec, value: str) -> None:
        """Remove one partition's files."""
        self.backend.delete_prefix(self.layout.partition_prefix(spec, value))

    def publish(self, spec: TableSpec, build: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the column sidecar and the table's registry entry (data must already be written)."""
        sidecar = {"columns": spec.column_names}
        self.backend.write_bytes(self.layout.sidecar_key(spec), json.dumps(sidecar).encode())
        entry = registry_entry(spec, self.backend, self.layout, build)
        with registry_lock:
            doc = self.registry()
            tables = [e for e in doc["tables"] if e.get("name") != spec.name]
            position = next((i for i, e in enumerate(doc["tables"]) if e.get("name") == spec.name), len(tables))
            tables.insert(position, entry)
            doc["tables"] = tables
            doc["version_folder"] = self.layout.version_folder
            doc["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            write_registry(self.backend, self.layout, doc)
        return entry

    def put(self, name: str, data: Any, **build: Any) -> dict[str, Any]:
        """Write a whole table (partitioned tables split by their key) and publish it; for tests."""
        spec = self.spec(name)
        if not spec.partitioned:
            stats = self.write_table(spec, data)
        else:
            import pyarrow.compute as pc

            from bdc.frames import to_arrow

            table = to_arrow(data, spec)
            stats = {"rows": 0, "bytes": 0, "files": 0}
            values = sorted(set(table.column(spec.partition_key).to_pylist())) if table.num_rows else []
            existing = set(self.partition_objects(spec))
            for value in values:
                part = table.filter(pc.equal(table.column(spec.partition_key), value))
                for k, v in self.write_partition(spec, str(value), part).items():
                    stats[k] += v
            for gone in existing - {str(v) for v in values}:
                self.delete_partition(spec, gone)
            stats["partitions"] = len(values)
        return self.publish(spec, {**stats, **build})

    def read_state(self, spec: TableSpec) -> dict[str, Any]:
        """The incremental state saved by the table's last successful build (``{}`` if none)."""
        key = self.layout.state_key(spec)
        try:
            data = self.backend.read_bytes(key)
        except ObjectNotFoundError:
            return {}
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ReadError(f"{self.backend.uri(key)} is not valid JSON: {exc}") from exc

    def write_state(self, spec: TableSpec, state: dict[str, Any]) -> None:
        """Save a table's incremental state (after its data and registry entry are published)."""
        self.backend.write_bytes(self.layout.state_key(spec), json.dumps(state, separators=(",", ":")).encode())


def _is_stream(data: Any) -> bool:
    import pyarrow as pa

    if isinstance(data, pa.RecordBatchReader):
        return True
    # frames and tables first: ``hasattr(frame, "__next__")`` makes pandas look for a column of
    # that name, which costs more than a whole small partition's bookkeeping
    if data is None or isinstance(data, (pa.Table, pa.RecordBatch, list, tuple, dict, str, bytes)) \
            or type(data).__module__.startswith("pandas"):
        return False
    return hasattr(data, "__next__") or hasattr(data, "__iter__")


def _referenced_names(query: str) -> set[str]:
    """The table names a query may refer to (each gets a view before the query runs).

    ``duckdb.get_table_names`` binds some statements (``JOIN ... USING``) and then fails on the
    tables that do not exist yet; in that case every identifier in the query is a candidate
    (names that are not tables are ignored by :meth:`Cache._create_view`).
    """
    import re

    import duckdb

    try:
        return set(duckdb.get_table_names(query))
    except duckdb.Error:
        pass
    try:
        tokens = duckdb.tokenize(query)
    except duckdb.Error as exc:
        raise BdcError(f"Invalid SQL: {exc}") from exc
    names: set[str] = set()
    for start, kind in tokens:
        if kind == duckdb.token_type.identifier:
            match = re.match(r'"([^"]+)"|([A-Za-z_][A-Za-z0-9_]*)', query[start:])
            if match:
                names.add(match[1] or match[2])
    return names


def _connection_cursor() -> Any:
    from bdc.reader import cursor

    return cursor()
