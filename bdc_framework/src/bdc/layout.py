"""Where each object lives in a cache (the one place that knows the layout).

::

    {root}/cache_versions.json                          the version folders
    {root}/bdc-v{MAJOR.MINOR}/cache_registry.json       the registry of that version
    {root}/bdc-v{MAJOR.MINOR}/{table}.pqt               an unpartitioned table
    {root}/bdc-v{MAJOR.MINOR}/{table}.json              its column sidecar
    {root}/bdc-v{MAJOR.MINOR}/{table}/{key}={value}/data.pqt   a partition (its ``file_name``)
    {root}/bdc-v{MAJOR.MINOR}/{table}/{key}={value}/data-0000.pqt   … a partition of several files
    {root}/bdc-v{MAJOR.MINOR}/_staging/{run_id}/{table}/~0c/{key}={value}%2Fdata.pqt   a sync's
                                                        new files, before they are promoted (no folder
                                                        per partition: 16 folders per table)
    {root}/bdc-v{MAJOR.MINOR}/_state/{table}.json       incremental state of the last build
    {root}/bdc-v{MAJOR.MINOR}/_runs/{run_id}.json       sync run reports
    {root}/custom/{name}.pqt                            custom tables (survive version bumps)
"""

from __future__ import annotations

import re
import zlib
from urllib.parse import unquote

import attrs

from bdc.names import check_partition_value, check_table_name, encode_partition_value
from bdc.spec import TableSpec

__all__ = ["Layout", "VERSIONS_KEY", "LOCK_KEY", "CUSTOM_PREFIX", "STAGING_FOLDER", "FLAT_SEPARATOR", "STAGING_BUCKETS"]

VERSIONS_KEY = "cache_versions.json"
LOCK_KEY = "_bdc_sync.lock"
CUSTOM_PREFIX = "custom"
#: Inside a version folder: each sync's new files (``_staging/{run_id}/{the key they will have}``,
#: a partition's folder and file name joined by :data:`FLAT_SEPARATOR`) until the registry lists
#: them and they are promoted to their places.
STAGING_FOLDER = "_staging"
#: Joins a partition's folder and file name in a staged key: one folder per table and run, not
#: one per partition (creating thousands of folders costs a sync more than writing its files).
#: Unambiguous: partition values may not contain ``/`` and their ``%`` is encoded as ``%25``.
FLAT_SEPARATOR = "%2F"
#: A table's staged partition files are spread over this many folders (``~00`` … ``~0f``, chosen
#: by the partition's folder name): writers creating files at once in one folder wait for each
#: other on that folder (measured on ext4, 2 threads: twice the kernel time of 16 folders).
STAGING_BUCKETS = 16
_BUCKET = re.compile(r"~[0-9a-f]{2}")
#: Longest file name most file systems take (bytes); a longer flat name keeps the folder.
_MAX_NAME_BYTES = 255
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@attrs.frozen
class Layout:
    """Keys (relative to the cache root) for one version folder."""

    version_folder: str

    @property
    def registry_key(self) -> str:
        """The version's ``cache_registry.json``."""
        return f"{self.version_folder}/cache_registry.json"

    def table_key(self, spec: TableSpec) -> str:
        """The parquet object of an unpartitioned table."""
        return f"{self.version_folder}/{spec.storage_name}.pqt"

    def sidecar_key(self, spec: TableSpec) -> str:
        """The column sidecar ``{table}.json``."""
        return f"{self.version_folder}/{spec.storage_name}.json"

    def table_prefix(self, spec: TableSpec) -> str:
        """The folder of a partitioned table, with a trailing slash."""
        return f"{self.version_folder}/{spec.storage_name}/"

    def location_key(self, spec: TableSpec) -> str:
        """What the registry's ``location`` points at: the file, or the folder of partitions."""
        return self.table_prefix(spec) if spec.partitioned else self.table_key(spec)

    def partition_prefix(self, spec: TableSpec, value: str) -> str:
        """The folder of one partition, with a trailing slash."""
        value = check_partition_value(value, spec.partition_key or "partition")
        return f"{self.table_prefix(spec)}{spec.partition_key}={encode_partition_value(value)}/"

    def partition_key(self, spec: TableSpec, value: str) -> str:
        """The parquet object of one partition (the first, when it has several)."""
        return self.partition_prefix(spec, value) + spec.file_name

    def partition_keys(self, spec: TableSpec, value: str, count: int) -> list[str]:
        """The ``count`` objects of one partition: ``data.pqt`` alone, or ``data-0000.pqt``,
        ``data-0001.pqt``, … (the spec's ``file_name`` numbered from 0, so that the names sort in
        the files' order: readers that list a folder read its rows in that order)."""
        prefix = self.partition_prefix(spec, value)
        if count <= 1:
            return [prefix + spec.file_name]
        stem, suffix = _stem_and_suffix(spec.file_name)
        return [prefix + f"{stem}-{i:04d}{suffix}" for i in range(count)]

    def is_partition_file(self, spec: TableSpec, name: str) -> bool:
        """Whether ``name`` (a file name in a partition folder) is one of the partition's files."""
        if name == spec.file_name:
            return True
        stem, suffix = _stem_and_suffix(spec.file_name)
        return re.fullmatch(re.escape(stem) + r"-\d{4,}" + re.escape(suffix), name) is not None

    def partition_value(self, spec: TableSpec, key: str) -> str | None:
        """The partition value a key belongs to (``None`` if the key is not a partition file)."""
        prefix = self.table_prefix(spec)
        if not key.startswith(prefix):
            return None
        rest = key[len(prefix):].split("/")
        if len(rest) != 2 or not self.is_partition_file(spec, rest[1]):
            return None
        head = f"{spec.partition_key}="
        if not rest[0].startswith(head):
            return None
        return unquote(rest[0][len(head):])

    def staging_prefix(self, run_id: str | None = None) -> str:
        """The staging folder of one sync run (or of all runs), with a trailing slash."""
        if run_id is None:
            return f"{self.version_folder}/{STAGING_FOLDER}/"
        if not _RUN_ID.match(run_id):
            raise ValueError(f"bad run id {run_id!r}")
        return f"{self.version_folder}/{STAGING_FOLDER}/{run_id}/"

    def staged_key(self, run_id: str, key: str) -> str:
        """Where run ``run_id`` writes the object that will be published as ``key``: the key below
        the run's staging folder, a partition's folder and file name joined into one name in one
        of the table's :data:`STAGING_BUCKETS` folders (``{table}/~0c/{key}={value}%2Fdata.pqt``)
        unless that name would be too long (then ``{table}/{key}={value}/data.pqt``)."""
        head = self.version_folder + "/"
        if not key.startswith(head):
            raise ValueError(f"{key!r} is not in version folder {self.version_folder!r}")
        rest = key[len(head):]
        table, sep, inside = rest.partition("/")
        if sep and "/" in inside:
            folder, _, name = inside.rpartition("/")
            flat = f"{folder}{FLAT_SEPARATOR}{name}"
            if "/" not in folder and len(flat.encode()) <= _MAX_NAME_BYTES:
                bucket = zlib.crc32(folder.encode()) % STAGING_BUCKETS
                rest = f"{table}/~{bucket:02x}/{flat}"
        return self.staging_prefix(run_id) + rest

    def unstaged_key(self, key: str) -> tuple[str | None, str]:
        """``(run_id, published key)`` of a staged key; ``(None, key)`` for any other key."""
        head = self.staging_prefix()
        if not key.startswith(head):
            return None, key
        run_id, _, rest = key[len(head):].partition("/")
        parent, slash, name = rest.rpartition("/")
        if slash and FLAT_SEPARATOR in name:
            folder, _, file_name = name.rpartition(FLAT_SEPARATOR)
            table, _, bucket = parent.rpartition("/")
            if table and _BUCKET.fullmatch(bucket):  # (a staged key made before buckets has none)
                parent = table
            rest = f"{parent}/{folder}/{file_name}"
        return run_id, f"{self.version_folder}/{rest}"

    def state_key(self, spec: TableSpec) -> str:
        """The incremental state saved by the table's last build."""
        return f"{self.version_folder}/_state/{spec.name}.json"

    def run_report_key(self, run_id: str) -> str:
        """The JSON report of one sync run."""
        return f"{self.version_folder}/_runs/{run_id}.json"

    @staticmethod
    def custom_key(name: str) -> str:
        """A custom table (outside the version folders, so it survives version bumps)."""
        return f"{CUSTOM_PREFIX}/{check_table_name(name, 'custom table name')}.pqt"

    def legacy_custom_key(self, name: str) -> str:
        """Where the reference package stored custom tables (inside the version folder)."""
        return f"{self.version_folder}/{check_table_name(name, 'custom table name')}.pqt"


def _stem_and_suffix(file_name: str) -> tuple[str, str]:
    """``data.pqt`` → ``("data", ".pqt")``; a name without a dot has no suffix."""
    stem, dot, ext = file_name.rpartition(".")
    return (stem, dot + ext) if dot else (file_name, "")
