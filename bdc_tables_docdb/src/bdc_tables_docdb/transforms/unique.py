"""unique_project_names / unique_subject_ids / unique_genotypes (TABLES.md §2.1–2.3, D27).

Each table is one DocDB v2 aggregate (:data:`PIPELINES`) whose results are reduced by
:func:`unique_rows`: values as strings, nulls (and empty strings) dropped, duplicates removed,
sorted. Pipelines are returned fresh by :func:`pipeline` so callers may modify them safely.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from bdc_tables_docdb.transforms._common import text

__all__ = [
    "UNIQUE_PROJECT_NAMES_PIPELINE",
    "UNIQUE_SUBJECT_IDS_PIPELINE",
    "UNIQUE_GENOTYPES_PIPELINE",
    "PIPELINES",
    "TABLES",
    "COLUMNS",
    "pipeline",
    "unique_rows",
]

UNIQUE_PROJECT_NAMES_PIPELINE: list[dict[str, Any]] = [
    {"$group": {"_id": "$data_description.project_name"}},
    {"$project": {"project_name": "$_id", "_id": 0}},
]
UNIQUE_SUBJECT_IDS_PIPELINE: list[dict[str, Any]] = [
    {"$group": {"_id": "$subject.subject_id"}},
    {"$project": {"subject_id": "$_id", "_id": 0}},
]
UNIQUE_GENOTYPES_PIPELINE: list[dict[str, Any]] = [
    {"$match": {"subject.subject_details.genotype": {"$exists": True, "$ne": None}}},
    {"$group": {"_id": "$subject.subject_details.genotype"}},
    {"$project": {"genotype": "$_id", "_id": 0}},
]

TABLES: dict[str, dict[str, str]] = {
    "unique_project_names": {
        "key": "upn",
        "column": "project_name",
        "description": "Unique project names across all assets",
    },
    "unique_subject_ids": {
        "key": "usi",
        "column": "subject_id",
        "description": "Unique subject IDs across all assets",
    },
    "unique_genotypes": {
        "key": "ugt",
        "column": "genotype",
        "description": "Unique genotypes across all assets where subject.subject_details.genotype is present",
    },
}
"""Registry name → short key, value column and description."""

PIPELINES: dict[str, list[dict[str, Any]]] = {
    "unique_project_names": UNIQUE_PROJECT_NAMES_PIPELINE,
    "unique_subject_ids": UNIQUE_SUBJECT_IDS_PIPELINE,
    "unique_genotypes": UNIQUE_GENOTYPES_PIPELINE,
}
"""Registry name → aggregate pipeline (shared objects: use :func:`pipeline` for a copy)."""

COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "unique_project_names": [("project_name", "string", "A distinct data_description.project_name")],
    "unique_subject_ids": [("subject_id", "string", "A distinct subject.subject_id (always a string)")],
    "unique_genotypes": [("genotype", "string", "A distinct subject.subject_details.genotype")],
}
"""Registry name → declared columns (one string column each)."""


def pipeline(table: str) -> list[dict[str, Any]]:
    """A fresh (deep-copied) aggregate pipeline for ``table`` (a key of :data:`PIPELINES`)."""
    return copy.deepcopy(PIPELINES[table])


def unique_rows(results: Iterable[Mapping[str, Any]], column: str) -> list[dict[str, str]]:
    """Reduce aggregate ``results`` to sorted, distinct ``{column: value}`` rows (D27).

    Values are kept as strings (numbers become their text, so subject ``692478`` and
    ``"692478"`` are one row); nulls, empty strings and non-scalar values are dropped.
    """
    values = set()
    for result in results:
        value = text(result.get(column)) if isinstance(result, Mapping) else None
        if value is not None and value.strip():
            values.add(value)
    return [{column: v} for v in sorted(values)]
