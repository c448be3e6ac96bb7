"""A cache: one backend URL, one version folder, and everything you can do with its tables."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # pragma: no cover
    from bdc.backends.readcache import LocalObject, ReadThrough

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

    def describe(self, name: str) -> Any:
        """A :class:`bdc.tableinfo.TableInfo`: the table's spec and what this cache published of it."""
        from bdc.tableinfo import describe

        return describe(self, name)

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

    def partition_files(self, spec: TableSpec, run_id: str | None = None) -> dict[str, list[ObjectInfo]]:
        """The files of a table's partitions as stored now (one listing): value → its files.

        ``run_id``: the files run ``run_id`` staged for the table instead (keys as staged).
        """
        prefix = self.layout.table_prefix(spec)
        if run_id is not None:
            prefix = self.layout.staged_key(run_id, prefix)
        out: dict[str, list[ObjectInfo]] = {}
        for info in self.backend.list(prefix):
            _run, key = self.layout.unstaged_key(info.key)
            value = self.layout.partition_value(spec, key)
            if value is not None:
                out.setdefault(value, []).append(info)
        return out

    def partition_objects(self, spec: TableSpec) -> dict[str, ObjectInfo]:
        """The stored partitions of a table: value → its first file (see :meth:`partition_files`)."""
        return {value: files[0] for value, files in self.partition_files(spec).items()}

    def _data_keys(self, spec: TableSpec, values: list[str] | None) -> list[str]:
        """The data objects of a read on a local backend (a remote one reads through :meth:`_remote_objects`).

        A partitioned table is read as its registry entry lists it (the snapshot the last sync
        published, whatever a running sync has written since); a listing only for tables
        published without a file list.
        """
        if not spec.partitioned:
            key = self.layout.table_key(spec)
            if not self.backend.exists(key):
                raise TableNotBuiltError(spec.name, self.url, self.layout.version_folder)
            return [key]
        listed = _entry_keys(self.layout, _find_entry(self._registry(None, None), spec.name), values)
        if listed is not None:
            return listed
        if values is not None:
            keys = [self.layout.partition_key(spec, v) for v in values]
            found = [k for k in keys if self.backend.exists(k)]
            if not found and not self.is_published(spec):
                raise TableNotBuiltError(spec.name, self.url, self.layout.version_folder)
            return found
        keys = [info.key for files in self.partition_files(spec).values() for info in files]
        if not keys and not self.is_published(spec):
            raise TableNotBuiltError(spec.name, self.url, self.layout.version_folder)
        return sorted(keys)

    def _reader(self) -> ReadThrough | None:
        """The local read-through cache of a remote backend (``None``: read the backend directly)."""
        if not self.backend.remote:
            return None
        from bdc.backends.readcache import read_through

        return read_through(self.backend)

    def _remote_objects(self, reader: ReadThrough, spec: TableSpec, values: list[str] | None,
                        needed: Sequence[str] | None) -> list[LocalObject]:
        """Local copies of the data objects of a read on a remote backend.

        No listing and no existence check: an unpartitioned table or a partition is fetched by
        the key the layout gives (absent: not built / no such partition, with the registry, itself
        read through the local cache, telling which); a whole partitioned table is the file list
        of its registry entry (a listing only for registries written before entries had one).
        """
        not_built = TableNotBuiltError(spec.name, self.url, self.layout.version_folder)
        if not spec.partitioned:
            found = reader.open(self.layout.table_key(spec), columns=needed)
            if found is None:
                raise not_built
            return [found]
        for attempt in range(1, _READ_ATTEMPTS + 1):
            max_age = None if attempt == 1 else 0.0
            entry = self._entry(spec.name, reader, max_age)
            if _entry_keys(self.layout, entry, values) is None:
                break
            wanted = None if values is None else set(values)
            expected = {f"{self.layout.version_folder}/{f['path']}": f.get("etag")
                        for f in entry["files"] if isinstance(f, dict) and isinstance(f.get("path"), str)  # type: ignore[index]
                        and (wanted is None or f.get("value") in wanted)}
            opened = reader.open_many(list(expected), columns=needed, expected=expected, max_age=max_age)
            gone = [k for k, o in opened.items() if o is None]
            # a copy with another ETag than the registry lists: the object was replaced after that
            # registry was read (a sync promoting its next version), and with the other copies it
            # would make a table of two versions (on the last attempt: take the objects as they
            # are, replaced outside of any publication)
            changed = any(o is not None and expected[k] and o.etag != expected[k] for k, o in opened.items())
            if not gone and (not changed or attempt == _READ_ATTEMPTS):
                return [o for o in opened.values() if o is not None]
            if gone and attempt > 1:
                raise ReadError(f"The registry of {self.url} lists {reader.backend.uri(gone[0])} for table "
                                f"{spec.name!r}, but it does not exist (a sync in progress? retry)")
            # the registry copy may predate a sync that replaced or removed partitions: read it again
        if values is not None:
            keys = [self.layout.partition_key(spec, v) for v in values]
            opened = reader.open_many(keys, columns=needed)
            objects = [o for o in opened.values() if o is not None]
            if not objects and self._entry(spec.name, reader) is None:
                raise not_built
            return objects
        keys = sorted(info.key for files in self.partition_files(spec).values() for info in files)
        if not keys and entry is None:
            raise not_built
        return [o for o in reader.open_many(keys, columns=needed).values() if o is not None]

    def _scan(self, spec: TableSpec, values: list[str] | None, needed: Sequence[str] | None,
              label: str) -> tuple[Source | None, list[str]]:
        """What a read of ``spec`` scans (``None``: no data, e.g. no such partition), and the
        local copies it uses (empty for local backends)."""
        reader = self._reader()
        if reader is None:
            keys = self._data_keys(spec, values)
            return (self._source(keys, label, needed) if keys else None), []
        objects = self._remote_objects(reader, spec, values, needed)
        if not objects:
            return None, []
        return _local_source(objects, label, needed), [o.path for o in objects]

    def _source(self, keys: list[str], label: str, columns: Sequence[str] | None = None) -> Source:
        """What to scan for ``keys``: local files for DuckDB, else the objects read into Arrow.

        A remote backend's objects are read through the local read cache (local files too).
        """
        paths = [self.backend.local_path(k) for k in keys]
        if all(p is not None for p in paths):
            return Source(files=tuple(paths), label=label)  # type: ignore[arg-type]
        reader = self._reader()
        if reader is not None:
            opened = reader.open_many(keys, columns=columns)
            missing = [k for k, o in opened.items() if o is None]
            if missing:
                raise ObjectNotFoundError(f"{self.url}: no object {missing[0]!r}")
            return _local_source([o for o in opened.values() if o is not None], label, columns)
        return Source(arrow=self._read_arrow_objects(keys, columns), label=label)

    def _read_arrow_objects(self, keys: list[str], columns: Sequence[str] | None) -> Any:
        """Objects of a backend without local files (memory, or a remote one with the local read
        cache off) read into one Arrow table."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for key in keys:
            data = self.backend.read_bytes(key)
            try:
                tables.append(pq.read_table(pa.BufferReader(data)))
            except (pa.ArrowInvalid, OSError) as exc:
                raise ReadError(f"{self.backend.uri(key)} is not a readable parquet file: {exc}") from exc
        return _union_by_name(tables)

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
        # the columns the query touches: the projection and the filter columns
        needed = list(dict.fromkeys([*columns, *conditions])) if columns else None
        label = f"table {spec.name!r} in {self.url}"
        for attempt in range(1, _READ_ATTEMPTS + 1):
            # A partitioned table is read as the registry lists it. Files on local disk are noted
            # (_stamps) before DuckDB opens them: the read is one version when the registry was
            # still the one listing them then, and none was replaced or removed until the end
            # (a sync promotes by renaming over, and DuckDB opens a file more than once per read).
            # Other stores: the registry must not change during the read.
            token = self._registry_token() if spec.partitioned else None
            source, copies = self._scan(spec, values, needed, label)
            if source is None:
                from bdc.frames import empty_table

                table = empty_table(spec, list(columns) if columns else None)
                return table if arrow else table.to_pandas()
            stamps = _stamps(source.files) if source.files and not copies else None
            if stamps is not None and token is not None and self._registry_token() != token:
                _pause(attempt)  # the list may predate the files noted
                continue
            try:
                result = select(source, columns=columns, where=conditions, limit=limit, spec=spec, arrow=arrow,
                                absent=lambda names: self._absent_columns(spec, names, label))
            except ReadError:
                last = attempt == _READ_ATTEMPTS
                # another process evicted a local copy between lookup and read, or a sync moved on
                moved = (_stamps(source.files) != stamps) if stamps is not None else (
                    token is not None and self._registry_token() != token)
                if not last and moved:
                    _pause(attempt)
                    continue
                if last or not copies or all(os.path.exists(p) for p in copies):
                    raise
                continue
            if (_stamps(source.files) == stamps) if stamps is not None else (
                    token is None or self._registry_token() == token):
                return result
            _pause(attempt)  # what we read may be of two versions: never return it
        raise ReadError(f"Reading {label} failed: a sync replaced it {_READ_ATTEMPTS} times while it was "
                        "being read; retry")

    def _absent_columns(self, spec: TableSpec, names: list[str], label: str) -> Any:
        """The columns ``names``, which the files a read scans lack, as the table has them: a
        ``pyarrow.Schema`` (each reads as nulls); an :class:`InvalidNameError` for a name that is
        no column of the table.

        A table's columns are its declared ones and, for a table that keeps undeclared columns
        (``extra_columns``), every column of any of its files (the union a read of the whole table
        sees). Only a read that DuckDB could not bind gets here: the whole table's files are looked
        at (footers only) for the names that are not declared.
        """
        import pyarrow as pa

        declared = {c.name: c for c in spec.columns}
        types = {n: declared[n].arrow_type() for n in names if n in declared}
        rest = [n for n in names if n not in types]
        known = list(declared)
        if rest and (spec.extra_columns or not spec.columns):
            whole, _copies = self._scan(spec, None, rest, label)
            schema = _source_schema(whole) if whole is not None else pa.schema([])
            types.update({n: schema.field(n).type for n in rest if n in schema.names})
            known += [n for n in schema.names if n not in declared]
        unknown = [n for n in names if n not in types]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], known, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise InvalidNameError(f"Table {spec.name!r} has no column {unknown[0]!r}.{hint} "
                                   f"Columns: {', '.join(known)}")
        return pa.schema([pa.field(n, types[n]) for n in names])

    def _registry_token(self) -> Any:
        """What identifies the registry now stored (``None`` on remote stores, whose reads check
        each object's ETag against the registry instead)."""
        if self.backend.remote:
            return None
        return _registry_identity(self.backend, self.layout)

    def location(self, name: str, **partition: Any) -> str:
        """The URI of a table's parquet file, folder, or one partition (``subject_id=...``): the
        partition's file, or its folder (ending with ``/``) when it is published as several files."""
        spec = self.spec(name)
        if not partition:
            return self.backend.uri(self.layout.location_key(spec))
        if not spec.partitioned or set(partition) != {spec.partition_key}:
            raise InvalidNameError(
                f"Table {spec.name!r} is " + (f"partitioned by {spec.partition_key!r}" if spec.partitioned else "not partitioned")
                + f"; got {', '.join(partition)}"
            )
        value = partition[spec.partition_key]
        prefix = self.layout.partition_prefix(spec, value)
        files = (self.registry_entry(spec.name) or {}).get("files")
        if isinstance(files, list):
            inside = self.layout.version_folder + "/"
            mine = [f for f in files if isinstance(f, dict) and (inside + str(f.get("path", ""))).startswith(prefix)]
            if len(mine) > 1:
                return self.backend.uri(prefix)
        return self.backend.uri(self.layout.partition_key(spec, value))

    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None, *, arrow: bool = False) -> Any:
        """Run SQL where every installed table (and alias, and custom table) is a view.

        Pass values as ``params`` (``?`` or ``$name`` placeholders), never inside the text.
        """
        import duckdb

        names = _referenced_names(query)
        for attempt in range(1, _READ_ATTEMPTS + 1):
            token = self._registry_token()
            # what each view reads; its files on local disk noted before DuckDB opens them (see get)
            sources = {name: self._view_source(name) for name in sorted(names)}
            files = [f for source, local in sources.values() if source is not None and local for f in source.files]
            noted = _stamps(files)
            if files and token is not None and self._registry_token() != token:
                _pause(attempt)  # the lists may predate the files noted
                continue

            def moved() -> bool:
                if files:
                    return _stamps(files) != noted
                return token is not None and self._registry_token() != token

            cur = _connection_cursor()
            try:
                for name, (source, _local) in sources.items():
                    if source is not None:
                        _register_view(cur, name, source)
                result = cur.sql(query, params=params) if params is not None else cur.sql(query)
                if result is None:
                    return None
                out = result_arrow(result) if arrow else result.df()
            except duckdb.Error as exc:
                # a sync published while we read (and removed files we were reading), or another
                # reader evicted or replaced a local copy of a remote object between lookup and read
                copies = [f for source, local in sources.values() if source is not None and not local
                          for f in source.files]
                if attempt < _READ_ATTEMPTS and (moved() or not all(os.path.exists(f) for f in copies)):
                    _pause(attempt)
                    continue
                raise BdcError(f"SQL failed: {exc}") from exc
            finally:
                cur.close()
            if not moved():
                return out
            _pause(attempt)  # what we read may be of two versions of a table: never return it
        raise ReadError(f"SQL failed: a sync replaced the tables it reads {_READ_ATTEMPTS} times while they were "
                        "being read; retry")

    def _view_source(self, name: str) -> tuple[Source | None, bool]:
        """What the view ``name`` reads (``None``: no table of ours, DuckDB will report the unknown
        name), and whether its files are the store's own on local disk (a sync replaces or
        removes them) rather than local copies of remote objects."""
        spec = get_catalog().get(name)
        if spec is not None:
            source, copies = self._scan(spec, None, None, name)
            if source is None:
                from bdc.frames import empty_table

                return Source(arrow=empty_table(spec), label=name), False
            return source, not copies
        try:
            key = self._custom_key_found(name)
        except (CustomTableNotFoundError, InvalidNameError):
            return None, False
        source = self._source([key], name)
        return source, bool(source.files) and not self.backend.remote

    # -- published documents ------------------------------------------------------------------

    def registry(self) -> dict[str, Any]:
        """The published ``cache_registry.json`` of this version (always the current one: on a
        remote cache, one conditional request revalidates the local copy)."""
        import copy

        return copy.deepcopy(self._registry(self._reader(), 0.0))

    def _registry(self, reader: ReadThrough | None, max_age: float | None) -> dict[str, Any]:
        """The registry, through the local read cache of a remote backend (``max_age`` as there).

        A registry that came over the network revalidates the local copies of this version at
        once: those with the ETag it lists are current, the others are checked on next use.
        """
        if reader is None:
            return _stored_registry(self.backend, self.layout)
        view = reader.view(max_age)
        doc = read_registry(view, self.layout)  # type: ignore[arg-type]
        if view.fetched:
            folder = self.layout.version_folder
            etags = {}
            for entry in doc["tables"]:
                for item in (entry.get("files") if isinstance(entry, dict) else None) or []:
                    if isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("etag"), str):
                        etags[f"{folder}/{item['path']}"] = item["etag"]
            reader.apply_manifest(f"{folder}/", etags, keep=[self.layout.registry_key])
        return doc

    def _entry(self, name: str, reader: ReadThrough | None, max_age: float | None = None) -> dict[str, Any] | None:
        return _find_entry(self._registry(reader, max_age), name)

    def registry_entry(self, name: str) -> dict[str, Any] | None:
        """The registry entry of one table, if published."""
        spec = self.spec(name)
        return self._entry(spec.name, self._reader(), 0.0)

    def is_published(self, spec: TableSpec) -> bool:
        """Whether the table has a registry entry in this version."""
        return self.registry_entry(spec.name) is not None

    def versions(self) -> list[str]:
        """The version folders of this cache (``cache_versions.json``)."""
        reader = self._reader()
        return read_versions(reader.view(0.0) if reader is not None else self.backend)  # type: ignore[arg-type]

    # -- custom tables ------------------------------------------------------------------------

    def _custom_key_found(self, name: str) -> str:
        reader = self._reader()
        for key in (self.layout.custom_key(name), self.layout.legacy_custom_key(name)):
            if reader is not None:
                if reader.open(key) is not None:  # fetched now: the read that follows is local
                    return key
            elif self.backend.exists(key):
                return key
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

    def _open_write(self, key: str, staged: bool) -> Any:
        """The backend's writer of ``key``: :meth:`~bdc.backends.Backend.open_write_staged` for
        a key of a sync run's staging (read by no one before it is published)."""
        return self.backend.open_write_staged(key) if staged else self.backend.open_write(key)

    def _write_stream(self, key: str, spec: TableSpec, batches: Any, value: str | None,
                      run_id: str | None) -> dict[str, int]:
        """Conform a stream of record batches and write it, batch by batch, as the object
        published as ``key`` (staged for run ``run_id``); returns its stats."""
        from bdc.frames import conform_batches, write_parquet

        schema = None if spec.extra_columns else spec.arrow_schema()  # extras: the first batch's schema
        with self._open_write(self._target(key, run_id), run_id is not None) as fh:
            rows = write_parquet(conform_batches(spec, batches, value), fh, schema)
            size = fh.tell()
        return {"rows": rows, "bytes": size, "files": 1}

    def _store(self, key: str, rows: int, payload: Any, run_id: str | None = None,
               current: Sequence[ObjectInfo] | None = None) -> dict[str, int]:
        """Store an encoded parquet file (see :func:`bdc.frames.conform_encoded`) as the object
        published as ``key`` (staged for run ``run_id``); returns its stats.

        When ``key`` already holds exactly these bytes nothing is written (stat ``unchanged``):
        the published file stays as it is, the same inode on disk, the same object on S3, so a
        reader of the layout is not disturbed by a sync that changes nothing, and the sync makes
        no write (on S3 no upload, no copy, no delete) for it. ``current``: the files published
        under the partition or table now, as a listing gave them (``None``: looked up here).
        """
        held = current[0] if current is not None and len(current) == 1 and current[0].key == key else None
        if (current is None or held is not None) and self.backend.holds(key, payload, held):
            return {"rows": rows, "bytes": payload.size, "files": 1, "unchanged": 1}
        with self._open_write(self._target(key, run_id), run_id is not None) as fh:
            fh.write(payload)
        return {"rows": rows, "bytes": payload.size, "files": 1}

    def _target(self, key: str, run_id: str | None) -> str:
        """Where to write the object published as ``key``: there, or in run ``run_id``'s staging."""
        return key if run_id is None else self.layout.staged_key(run_id, key)

    def write_table(self, spec: TableSpec, data: Any, *, run_id: str | None = None) -> dict[str, int]:
        """Conform and write an unpartitioned table's data (not yet in the registry): a table,
        frame, rows, or :class:`bdc.build.ParquetFiles` (one file that conforms is copied as it
        is; otherwise the files are read, unioned by name, and written as one).

        ``run_id``: stage it for that sync run (see :meth:`publish` and :meth:`promote`).
        """
        from bdc.build import ParquetFiles
        from bdc.frames import conform_encoded

        if spec.partitioned:
            raise BdcError(f"Table {spec.name!r} is partitioned; use write_partition")
        if isinstance(data, ParquetFiles):
            return self._write_files(spec, None, data, run_id)
        return self._store(self.layout.table_key(spec), *conform_encoded(spec, data), run_id)

    def write_partition(self, spec: TableSpec, value: str, data: Any, *, run_id: str | None = None,
                        current: Sequence[ObjectInfo] | None = None) -> dict[str, int]:
        """Conform and write one partition (a table, frame, rows, a stream of record batches, or
        :class:`bdc.build.ParquetFiles`).

        ``run_id``: stage it for that sync run; without, it replaces the partition's files in place
        (readers of the registry see it once the table is published again). A partition whose one
        published file already holds the bytes is left as it is (see :meth:`_store`; ``current``:
        the partition's published files as a listing of the table gave them, else listed here).
        """
        from bdc.build import ParquetFiles
        from bdc.frames import conform_encoded

        value = check_partition_value(value, spec.partition_key or "partition")
        if isinstance(data, ParquetFiles):
            stats = self._write_files(spec, value, data, run_id, current)
        else:
            key = self.layout.partition_key(spec, value)
            if _is_stream(data):
                stats = self._write_stream(key, spec, data, value, run_id)
            else:
                encoded = conform_encoded(spec, data, value)
                stats = self._store(key, *encoded, run_id, self._published_files(spec, value, current))
        if run_id is None:  # fewer files than before: drop the others
            keep = set(self.layout.partition_keys(spec, value, stats["files"]))
            for info in self.backend.list(self.layout.partition_prefix(spec, value)):
                if info.key not in keep and self.layout.partition_value(spec, info.key) is not None:
                    self.backend.delete(info.key)
        return stats

    def _published_files(self, spec: TableSpec, value: str,
                         current: Sequence[ObjectInfo] | None) -> Sequence[ObjectInfo]:
        """The files published under one partition now: ``current`` when a listing gave them."""
        if current is not None:
            return current
        return [info for info in self.backend.list(self.layout.partition_prefix(spec, value))
                if self.layout.partition_value(spec, info.key) == value]

    def _write_files(self, spec: TableSpec, value: str | None, data: Any, run_id: str | None,
                     current: Sequence[ObjectInfo] | None = None) -> dict[str, int]:
        """A partition (``value``), or an unpartitioned table (``None``), from existing parquet
        files: copied when they conform (an unpartitioned table: one file), else rewritten
        (unless the published file already holds the rewritten bytes, see :meth:`_store`)."""
        from bdc.copying import check_files, local_slot, read_files

        paths = list(data.paths)
        single = self.layout.table_key(spec) if value is None else self.layout.partition_key(spec, value)
        if value is None:
            published = [single] if len(paths) == 1 else []
        else:
            published = self.layout.partition_keys(spec, value, len(paths))
        with local_slot(data.filesystem, self.backend):  # local copies: one per CPU at a time
            checked = check_files(spec, value, data.filesystem, paths) if paths and published else None
            if checked is not None:
                with checked:  # each local file opened once: its footer checked, then copied
                    keys = [self._target(k, run_id) for k in published]
                    size = checked.copy(self.backend, keys, staged=run_id is not None)
                stats = {"rows": checked.rows, "bytes": size, "files": len(paths), "copied": len(paths)}
                if checked.server_side:  # S3 to S3: copied by S3 itself
                    stats["copied_server_side"] = checked.server_side
                return stats
        rewrite = data.rewrite if data.rewrite is not None else (
            read_files(data.filesystem, paths) if paths else None)
        if _is_stream(rewrite):
            return self._write_stream(single, spec, rewrite, value, run_id)
        from bdc.frames import conform_encoded

        encoded = conform_encoded(spec, rewrite, value)
        return self._store(single, *encoded, run_id, None if value is None else self._published_files(spec, value, current))

    def drop_staged_partition(self, spec: TableSpec, value: str, run_id: str) -> int:
        """Delete the files run ``run_id`` staged for one partition (an attempt that failed part
        way, before the partition is written again); returns how many."""
        first = self.layout.staged_key(run_id, self.layout.partition_key(spec, value))
        prefix = first[:len(first) - len(spec.file_name)]  # the partition's staged names begin so
        gone = 0
        for info in self.backend.list(prefix):
            if self.layout.partition_value(spec, self.layout.unstaged_key(info.key)[1]) == value:
                self.backend.delete(info.key)
                gone += 1
        return gone

    def delete_partition(self, spec: TableSpec, value: str) -> None:
        """Remove one partition's files."""
        self.backend.delete_prefix(self.layout.partition_prefix(spec, value))

    def publish(self, spec: TableSpec, build: dict[str, Any] | None = None, *,
                leaving: Iterable[str] = (), run_id: str | None = None) -> dict[str, Any]:
        """Write the column sidecar and the table's registry entry (data must already be written).

        ``leaving``: partition values whose files are still there but are not part of the new set.
        ``run_id``: the entry lists what that sync run staged for the table (in place of the
        stored files it replaces): publishing is then the one atomic step that switches readers
        to the new version; :meth:`promote` moves the files to their places after.
        """
        sidecar = {"columns": spec.column_names}
        self.backend.write_bytes(self.layout.sidecar_key(spec), json.dumps(sidecar).encode())
        entry = registry_entry(spec, self.backend, self.layout, build,
                               files=self.published_files(spec, leaving=leaving, run_id=run_id))

        def put(tables: list[dict[str, Any]]) -> None:
            position = next((i for i, e in enumerate(tables) if e.get("name") == spec.name), None)
            if position is not None:
                tables[position] = entry
                return
            # a new entry goes where the catalog lists the table (plugins' declaration order), not
            # where its build happened to finish: the same registry whatever ran first
            order = {name: i for i, name in enumerate(get_catalog().names())}
            rank = order.get(spec.name, len(order))
            position = next((i for i, e in enumerate(tables) if order.get(e.get("name"), len(order)) > rank),
                            len(tables))
            tables.insert(position, entry)

        self._update_registry(put)
        return entry

    def _update_registry(self, change: Any) -> None:
        """Read the stored registry, let ``change`` edit its table list in place, write it back."""
        with registry_lock:
            doc = read_registry(self.backend, self.layout)  # the stored one, never a local copy
            tables = [e for e in doc["tables"] if isinstance(e, dict)]
            change(tables)
            doc["tables"] = tables
            doc["version_folder"] = self.layout.version_folder
            doc["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            write_registry(self.backend, self.layout, doc)

    def promote(self, spec: TableSpec) -> bool:
        """Put the files the table's registry entry lists from a staging folder in their places,
        remove the partition files it does not list, and publish the entry with the final paths.

        Each file appears whole (a rename on disk, a server-side copy on S3), so a reader of the
        layout sees every partition at the old or the new version. Safe to repeat after a crash:
        it only makes the table's folder match the published entry. ``False`` when nothing was
        staged.
        """
        entry = _find_entry(read_registry(self.backend, self.layout), spec.name)
        files = entry.get("files") if entry else None
        if not isinstance(files, list):
            return False
        folder = self.layout.version_folder + "/"
        final: list[dict[str, Any]] = []
        moves: list[tuple[str, str]] = []
        for item in files:
            if not (isinstance(item, dict) and isinstance(item.get("path"), str)):
                continue
            run, key = self.layout.unstaged_key(folder + item["path"])
            if run is not None:
                moves.append((folder + item["path"], key))
            final.append({**item, "path": key[len(folder):]})
        # (on disk, a rename or a link each: a thread pool only adds hand-offs)
        _each(self.backend.copy, moves, _IO_THREADS if self.backend.remote else 1)
        staged = bool(moves)
        if spec.partitioned:
            keep = {folder + item["path"] for item in final}
            for info in self.backend.list(self.layout.table_prefix(spec)):
                if info.key not in keep and self.layout.partition_value(spec, info.key) is not None:
                    self.backend.delete(info.key)
        if not staged and len(final) == len(files):
            return False
        if self.backend.remote:  # a copy may carry another ETag than its source
            now = {info.key: info for info in self.backend.list(
                self.layout.table_prefix(spec) if spec.partitioned else self.layout.table_key(spec))}
            for item in final:
                info = now.get(folder + item["path"])
                if info is not None and info.etag:
                    item["etag"] = info.etag

        def put(tables: list[dict[str, Any]]) -> None:
            for i, e in enumerate(tables):
                if e.get("name") == spec.name:
                    tables[i] = {**e, "files": final}

        self._update_registry(put)
        return True

    def _staged_references(self) -> dict[str, set[str]]:
        """Run id → the tables whose published registry entry still lists files it staged (runs
        interrupted between publishing and promoting, or promoting now)."""
        folder = self.layout.version_folder + "/"
        found: dict[str, set[str]] = {}
        for entry in read_registry(self.backend, self.layout)["tables"]:
            for item in (entry.get("files") if isinstance(entry, dict) else None) or []:
                if isinstance(item, dict) and isinstance(item.get("path"), str):
                    run, _key = self.layout.unstaged_key(folder + item["path"])
                    if run is not None:
                        found.setdefault(run, set()).add(str(entry.get("name")))
        return found

    def staged_runs(self) -> dict[str, bool]:
        """The sync runs with a staging folder here: run id → whether the registry still lists
        files of it (such a run was interrupted between publishing and promoting)."""
        head = self.layout.staging_prefix()
        runs = {info.key[len(head):].partition("/")[0] for info in self.backend.list(head)}
        referenced = self._staged_references() if runs else {}
        return {run: run in referenced for run in sorted(runs)}

    def drop_staging(self, run_id: str) -> bool:
        """Delete run ``run_id``'s staging folder, unless the registry still lists files of it
        (then :meth:`recover` must promote them first); whether it was deleted."""
        if run_id in self._staged_references():
            return False
        self.backend.delete_prefix(self.layout.staging_prefix(run_id))
        return True

    def recover(self, *, keep: Iterable[str] = ()) -> dict[str, Any]:
        """Finish what interrupted syncs left: promote the tables whose published entry still
        lists staged files, then delete every staging folder no entry refers to (except the
        runs in ``keep``), and the temp files of writes a crash cut short. Run by the sync runner,
        holding the lock, before it builds anything (and after, when nothing is being written).
        """
        promoted = []
        names = set().union(*self._staged_references().values())
        catalog = get_catalog()
        for name in sorted(names):
            try:
                spec = catalog.get(name)
            except BdcError:  # a name two plugins now declare: its staged files stay listed
                continue
            if spec is not None and self.promote(spec):
                promoted.append(name)
        removed = []
        kept = set(keep)
        for run, listed in self.staged_runs().items():
            if not listed and run not in kept:
                self.backend.delete_prefix(self.layout.staging_prefix(run))
                removed.append(run)
        # a killed writer's temp files (local disk): hidden from readers, but never removed otherwise
        swept = self.backend.remove_temp_files(self.layout.version_folder + "/")
        return {"promoted": promoted, "removed_staging": removed, "removed_temp_files": swept}

    def published_files(self, spec: TableSpec, *, leaving: Iterable[str] = (),
                        run_id: str | None = None) -> list[dict[str, Any]]:
        """The objects a reader of the table needs, for its registry entry: ``path`` (the key
        relative to the registry's folder: resolve it against the registry's URL, percent-encoding
        each segment), ``size``, for partitions the partition ``value`` and, on a remote store,
        the object's ``etag``. ``run_id``: what that sync run staged replaces what is stored.

        With it a browser finds every partition file without listing the bucket, and bdc readers
        revalidate all their local copies of a version with the one registry request. (Local
        stores get no ETag: theirs is a modification time, which would make the registries of
        identical builds differ.)
        """
        folder = self.layout.version_folder + "/"
        remote = self.backend.remote

        def item(info: ObjectInfo, **extra: Any) -> dict[str, Any]:
            out = {**extra, "path": info.key[len(folder):], "size": info.size}
            if remote and info.etag:
                out["etag"] = info.etag
            return out

        if spec.partitioned:
            gone = set(leaving)
            found = self.partition_files(spec)
            if run_id is not None:
                found.update(self.partition_files(spec, run_id))
            return [item(info, value=value) for value, infos in sorted(found.items()) if value not in gone
                    for info in infos]
        keys = [self.layout.table_key(spec)]
        if run_id is not None:
            keys.insert(0, self.layout.staged_key(run_id, keys[0]))
        for key in keys:
            try:
                return [item(self.backend.info(key))]
            except ObjectNotFoundError:
                continue
        return []

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
                    stats[k] = stats.get(k, 0) + v
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


#: Requests to a remote store (server-side copies) made at once by :func:`_each`.
_IO_THREADS = 8


def _each(call: Any, items: Sequence[tuple[Any, ...]], threads: int) -> None:
    """``call(*item)`` for every item: on ``threads`` threads when there are many (each call
    waits on the network, not on Python), one after the other otherwise. Every call is made
    (each is a whole step, safe to repeat); the first error is raised after."""

    def run(chunk: Sequence[tuple[Any, ...]]) -> Exception | None:
        first = None
        for item in chunk:
            try:
                call(*item)
            except Exception as exc:
                first = first or exc
        return first

    if threads <= 1 or len(items) < 4 * threads:
        errors = [run(items)]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads, thread_name_prefix="bdc-io") as pool:
            errors = list(pool.map(run, [items[i::threads] for i in range(threads)]))
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first


#: Reads of a partitioned table start again when a sync published a new registry meanwhile
#: (and of an unpartitioned one when its file was replaced), after a pause (:func:`_pause`).
_READ_ATTEMPTS = 10


def _pause(attempt: int) -> None:
    """Before reading again: a sync publishes in a burst (registry, promotion, then the end of
    its staging), so wait a little longer after each conflict (5 ms, 10 ms, … 200 ms at most,
    ±50 %: readers that collided do not collide again)."""
    import random

    time.sleep(min(0.2, 0.005 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5))
_stored_lock = threading.Lock()
#: (store URL, registry key) → (identity of the registry file, its parsed document).
_stored: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = {}


def _stamps(paths: Iterable[str]) -> list[Any]:
    """What changes when a local file is replaced (a rename over it) or removed: its inode, time
    and size (``None``: no such file).

    DuckDB opens a parquet file more than once in one read, so a file renamed over meanwhile is
    read as a mix of two files (an error, at best): a read compares these before and after.
    """
    out: list[Any] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return out


def _registry_identity(backend: Backend, layout: Layout) -> Any:
    """What changes whenever the registry object is replaced: a local file's inode, time and
    size (every write renames a new file into place); another store's ETag."""
    path = backend.local_path(layout.registry_key)
    if path is not None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    try:
        return backend.info(layout.registry_key).etag
    except ObjectNotFoundError:
        return None


def _stored_registry(backend: Backend, layout: Layout) -> dict[str, Any]:
    """The registry of a local or memory store, parsed once per version of the file (treat as
    read-only: it is shared)."""
    key = (backend.url, layout.registry_key)
    identity = _registry_identity(backend, layout)
    with _stored_lock:
        known = _stored.get(key)
    if identity is not None and known is not None and known[0] == identity:
        return known[1]
    doc = read_registry(backend, layout)
    if identity is not None and identity == _registry_identity(backend, layout):
        with _stored_lock:
            _stored[key] = (identity, doc)
    return doc


def _find_entry(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The registry entry of table ``name``."""
    for entry in doc["tables"]:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return None


def _entry_keys(layout: Layout, entry: dict[str, Any] | None, values: list[str] | None) -> list[str] | None:
    """The keys of a partitioned table's files as its registry entry lists them (those of
    ``values`` only, when given); ``None`` when the entry has no file list."""
    files = entry.get("files") if entry else None
    if not isinstance(files, list):
        return None
    wanted = None if values is None else set(values)
    return [f"{layout.version_folder}/{f['path']}" for f in files
            if isinstance(f, dict) and isinstance(f.get("path"), str)
            and (wanted is None or f.get("value") in wanted)]


def _local_source(objects: Sequence[LocalObject], label: str, columns: Sequence[str] | None) -> Source:
    """What to scan for local copies: the files (DuckDB reads them as on the file backend), or,
    when some copy holds only the byte ranges of ``columns``, those columns read into Arrow."""
    if all(o.complete for o in objects):
        return Source(files=tuple(o.path for o in objects), label=label)
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for obj in objects:
        try:
            parquet = pq.ParquetFile(obj.path)
            names = parquet.schema_arrow.names
            tables.append(parquet.read(columns=[c for c in columns if c in names] if columns is not None else None))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ReadError(f"{label}: the local copy {obj.path} is not readable parquet: {exc}") from exc
    return Source(arrow=_union_by_name(tables), label=label)


def _source_schema(source: Source) -> Any:
    """The columns of what ``source`` scans, unioned by name, as a ``pyarrow.Schema`` (files: their
    footers only)."""
    if source.arrow is not None:
        return source.arrow.schema
    from bdc.reader import cursor

    cur = cursor()
    try:
        relation = cur.read_parquet(list(source.files), union_by_name=True, hive_partitioning=False)
        return result_arrow(relation.limit(0)).schema
    finally:
        cur.close()


def _union_by_name(tables: list[Any]) -> Any:
    """One Arrow table from several, columns matched by name (missing ones null)."""
    import pyarrow as pa

    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")


def _register_view(cur: Any, name: str, source: Source) -> None:
    """``source`` as the view ``name`` of the cursor ``cur``: a temporary view (the cursors of the
    process's connection share its catalog, and concurrent queries each need their own views)."""
    if source.files:
        cur.register(name, cur.read_parquet(list(source.files), union_by_name=True, hive_partitioning=False))
    else:
        cur.register(name, source.arrow)


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
    (names that are not tables are ignored by :meth:`Cache._view_source`).
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
