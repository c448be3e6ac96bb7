"""Load the demo sample shipped with bdc-tables-docdb.

Two files live next to this module, both written by
``python -m bdc_tables_docdb.demo.generator --n 3000 --seed 7 --out <this folder>``:

- ``sample_records.jsonl.gz``: one DocDB v2 asset record per line (about 3,000).
  Records are grouped by subject, raw assets before their derived assets.
  It includes the four real records of ``tests/fixtures/docdb-records`` unchanged (ids in
  :data:`~bdc_tables_docdb.demo.generator.REAL_RECORD_IDS`) and synthetic raw records for their missing
  source assets, so the lineage is complete.
- ``sample_open_data.json.gz``: ``{"bucket": "aind-open-data", "objects": {key: {"text": ...} |
  {"base64": ...}}}``, the open-data objects of those records.

Each call reads and parses the files again and returns fresh objects, so callers may modify them.
"""

from __future__ import annotations

import base64
import gzip
import json
from importlib import resources

__all__ = ["SAMPLE_RECORDS_FILE", "SAMPLE_OPEN_DATA_FILE", "load_sample_records", "load_sample_open_data"]

SAMPLE_RECORDS_FILE = "sample_records.jsonl.gz"
SAMPLE_OPEN_DATA_FILE = "sample_open_data.json.gz"


def _read(name: str) -> bytes:
    return gzip.decompress(resources.files(__package__).joinpath(name).read_bytes())


def load_sample_records() -> list[dict]:
    """Return the shipped sample records (a new list of new dicts on every call)."""
    text = _read(SAMPLE_RECORDS_FILE).decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_sample_open_data() -> dict[str, bytes]:
    """Return the shipped open-data objects: key (relative to the ``aind-open-data`` bucket) to bytes."""
    doc = json.loads(_read(SAMPLE_OPEN_DATA_FILE))
    objects: dict[str, bytes] = {}
    for key, entry in doc["objects"].items():
        if "base64" in entry:
            objects[key] = base64.b64decode(entry["base64"])
        else:
            objects[key] = entry["text"].encode("utf-8")
    return objects
