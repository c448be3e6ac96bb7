"""The published JSON documents: the per-version ``cache_registry.json`` and ``cache_versions.json``.

Reads distinguish "not found" (an empty registry / no versions) from a failed or corrupt read
(raised, naming the object): a failed read never resets what was published.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from bdc.backends.base import Backend
from bdc.errors import ObjectNotFoundError, ReadError
from bdc.layout import VERSIONS_KEY, Layout
from bdc.spec import TableSpec
from bdc.versioning import sort_version_folders

__all__ = ["read_registry", "write_registry", "registry_entry", "read_versions", "add_version", "registry_lock"]

#: Serialises read-modify-write of registry documents within a process.
registry_lock = threading.RLock()


def _read_json(backend: Backend, key: str) -> Any:
    data = backend.read_bytes(key)  # ObjectNotFoundError propagates
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReadError(f"{backend.uri(key)} is not valid JSON: {exc}") from exc


def read_registry(backend: Backend, layout: Layout) -> dict[str, Any]:
    """The version's registry (``{"tables": []}`` if nothing was published yet)."""
    try:
        doc = _read_json(backend, layout.registry_key)
    except ObjectNotFoundError:
        return {"tables": []}
    if not isinstance(doc, dict) or not isinstance(doc.get("tables"), list):
        raise ReadError(f"{backend.uri(layout.registry_key)} is not a bdc registry (no 'tables' list)")
    return doc


def write_registry(backend: Backend, layout: Layout, doc: dict[str, Any]) -> None:
    """Write the registry atomically (compact JSON) and list the version in the index."""
    backend.write_bytes(layout.registry_key, json.dumps(doc, separators=(",", ":")).encode())
    add_version(backend, layout.version_folder)


def registry_entry(
    spec: TableSpec,
    backend: Backend,
    layout: Layout,
    build: dict[str, Any] | None,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The registry entry of a table: the contract's fields, derived from the spec, plus the build
    and (``files``) the objects a reader needs, relative to the registry (see
    :meth:`bdc.cache.Cache.published_files`)."""
    entry: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "location": backend.uri(layout.location_key(spec)),
        "partitioned": spec.partitioned,
        "partition_key": spec.partition_key,
        "type": spec.kind,
        "columns": [{"name": c.name, "description": c.description, "type": c.type} for c in spec.columns],
        "aliases": list(spec.aliases),
        "plugin": spec.plugin,
        "file_name": spec.file_name if spec.partitioned else None,
    }
    if build is not None:
        entry["build"] = build
    if files is not None:
        entry["files"] = files
    return entry


def read_versions(backend: Backend) -> list[str]:
    """The version folders listed in ``cache_versions.json`` (``[]`` if absent)."""
    try:
        doc = _read_json(backend, VERSIONS_KEY)
    except ObjectNotFoundError:
        return []
    if not isinstance(doc, list) or not all(isinstance(v, str) for v in doc):
        raise ReadError(f"{backend.uri(VERSIONS_KEY)} is not a JSON array of version folders")
    return sort_version_folders(doc)


def add_version(backend: Backend, folder: str) -> list[str]:
    """Add ``folder`` to the version index (sorted, deduplicated, written atomically)."""
    with registry_lock:
        versions = read_versions(backend)
        if folder in versions:
            return versions
        versions = sort_version_folders([*versions, folder])
        backend.write_bytes(VERSIONS_KEY, json.dumps(versions).encode())
        return versions
