"""Where each object lives in a cache (the one place that knows the layout).

::

    {root}/cache_versions.json                          the version folders
    {root}/bdc-v{MAJOR.MINOR}/cache_registry.json       the registry of that version
    {root}/bdc-v{MAJOR.MINOR}/{table}.pqt               an unpartitioned table
    {root}/bdc-v{MAJOR.MINOR}/{table}.json              its column sidecar
    {root}/bdc-v{MAJOR.MINOR}/{table}/{key}={value}/data.pqt   a partition
    {root}/bdc-v{MAJOR.MINOR}/_state/{table}.json       incremental state of the last build
    {root}/bdc-v{MAJOR.MINOR}/_runs/{run_id}.json       sync run reports
    {root}/custom/{name}.pqt                            custom tables (survive version bumps)
"""

from __future__ import annotations

from urllib.parse import unquote

import attrs

from bdc.names import check_partition_value, check_table_name, encode_partition_value
from bdc.spec import TableSpec

__all__ = ["Layout", "VERSIONS_KEY", "LOCK_KEY", "CUSTOM_PREFIX"]

VERSIONS_KEY = "cache_versions.json"
LOCK_KEY = "_bdc_sync.lock"
CUSTOM_PREFIX = "custom"


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
        """The parquet object of one partition."""
        return self.partition_prefix(spec, value) + spec.file_name

    def partition_value(self, spec: TableSpec, key: str) -> str | None:
        """The partition value a key belongs to (``None`` if the key is not a partition file)."""
        prefix = self.table_prefix(spec)
        if not key.startswith(prefix):
            return None
        rest = key[len(prefix):].split("/")
        if len(rest) != 2 or rest[1] != spec.file_name:
            return None
        head = f"{spec.partition_key}="
        if not rest[0].startswith(head):
            return None
        return unquote(rest[0][len(head):])

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
