"""Hostile source records (issue #5, scenario 5): DocDB records shaped like the real ones, broken at
random JSON paths, never crash a DocDB table build.

Records start from the four real DocDB records (``tests/fixtures/docdb-records``; half of the
examples) and the seeded generator's records (one per platform shape). Hypothesis draws 1-4
mutations per record: wrong types (number/bool/list where a string or object is expected and vice
versa), null where an object is expected, missing keys, huge strings (>= 1 MB), deep nesting
(200-400 levels of dicts and lists), unicode oddities (NUL, lone surrogates as JSON ``\\ud800``
escapes decode them, RTL marks, full-width digits), ids that look like numbers (leading zeros),
timestamps in odd formats, Extended-JSON wrappers, odd or renamed object keys. Where: a field some
table reads, present or not (``planned``), a random path at or below such a field (``field``),
every leaf below it (``every``), or any path of the record (``any``).

Properties:

1. Every pure transform of every DocDB table (the functions its build turns records into rows
   with, glued as the build glues them) returns without raising, and what it returns conforms to
   the table's declared schema (:func:`bdc.frames.conform` with the table's spec, partitions
   included). Subject ids stay strings (``"007"`` stays ``"007"``); a record is never lost from
   asset_basics or metadata_core (a bad field becomes a null); a record the quality_control build
   cannot place in the subject partition it was fetched for is skipped and counted.
2. An end-to-end sync of every DocDB table against the DocDB emulator (loopback HTTP, the real
   ``MetadataDbClient``) loaded with 300 generated records, the four real ones and 30 hostile ones
   (22 drawn like above with a fixed seed, made storable as BSON; 8 crafted at known weak spots)
   completes with every table ok; every hostile record has its asset_basics row (with nulls where
   its fields were unusable); the crafted ones have their documented effects (rows with nulls,
   ``records_skipped``); the rows of the clean records are exactly those of a sync without the
   hostile records; and nothing is written outside the cache root.

Figures (examples tried, hostile records of the end-to-end run, skipped/null counts) go to
``hostile_records.json`` in ``$BDC_RELIABILITY_FIGURES_DIR`` (or ``$BDC_RELIABILITY_FIGURES``) when
set, and are printed.
"""

from __future__ import annotations

import functools
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import tree
from reliability_figures import write_figures

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.drop is deprecated")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "docdb-records"
GENERATED_N = 300
SEED = 11
HOSTILE_N = 30
#: Examples of property 1 (``BDC_HOSTILE_EXAMPLES`` raises it for a longer hunt).
MAX_EXAMPLES = int(os.environ.get("BDC_HOSTILE_EXAMPLES", "200"))

# ----------------------------------------------------------------------------------------------
# The hostile vocabulary
# ----------------------------------------------------------------------------------------------

#: Lone and paired surrogates as JSON escapes decode them (``json.loads`` keeps a lone one).
SURROGATES = [json.loads(s) for s in (r'"\ud800"', r'"abc\udc00def"', r'"\udbff"', r'"x\ud83d"',
                                      r'"\ud83d\ude00"', r'"\udfff\ud800"')]
UNICODE_ODDITIES = [
    "\x00", "a\x00b", "692478\x00", *SURROGATES,
    "\u202eevil\u202c", "\u200f692478", "\u061cabc", "\ufeffname", "a\u200db", "line\u2028break",
    "e\u0301", "\uff16\uff19\uff12\uff14\uff17\uff18", "\u0666\u0669\u0662\u0664\u0667\u0668", "\U0010ffff",
    "\uffff", "\t\n\r", " ", "\u0130stanbul", "\u01c5", "ma\u00dfe", "\U0001f9ea", "..", "../../etc/passwd",
    "/etc/passwd", "a/b", "%2e%2e", "s3://../..", "s3://aind-open-data/../../x", "s3:///etc", "s3://a\x00b/c",
]
NUMERIC_IDS = [
    "007", "000692478", "0", "00", "-0", "+1", "1e3", "0x1A", "692478.0", " 692478", "692478 ",
    "\uff16\uff19\uff12\uff14\uff17\uff18", "1_000", "NaN", "Infinity",
    692478, 7, 0, -1, 692478.0, 1e20, 2**63, 2**64, -(2**63) - 1, True, False, 1e308, -0.0,
]
ODD_TIMESTAMPS = [
    "2023-09-29T08:53:23.654198-0700", "2023-09-29T08:53:23.654198-07", "2023-09-29 08:53:23", "2023-09-29",
    "20230929T085323Z", "2023-09-29T08:53:23.123456789123Z", "2023-09-29T08:53:23,5Z", "2023-13-45T99:99:99Z",
    "0000-00-00T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59.999999Z",
    "2023-09-29T08:53:23+25:00", "2023-09-29T08:53:23+99", "2023-02-29", "2024-02-29T24:00:00Z", "1695973403",
    1695973403, 1695973403.5, -62135596800, "Fri, 29 Sep 2023 08:53:23 GMT", "yesterday", "", " ",
    "2023-09-29T08:53:23Z\x00", "\uff12\uff10\uff12\uff13-09-29", "\u0662\u0660\u0662\u0663-\u0660\u0669-\u0662\u0669",
    "2023-09-29T08:53:23.654198-07:00[America/Los_Angeles]", "+2023-09-29", "-2023-09-29", "T08:53:23",
    "2023-09-29T08:53:23" + "9" * 5000, {"$date": "2023-09-29T08:53:23Z"}, {"$date": 1695973403000},
    {"$date": {"$numberLong": "1695973403000"}},
]
EXTENDED_JSON = [
    {"$oid": "5f1b2c3d4e5f6a7b8c9d0e1f"}, {"$date": "2023-09-29T08:53:23Z"}, {"$numberLong": "692478"},
    {"$numberDecimal": "1.5"}, {"$numberDouble": "NaN"}, {"$binary": {"base64": "AA==", "subType": "00"}},
    {"$regex": ".*", "$options": ""}, {"$oid": None}, {"$date": None},
]
WEIRD_KEYS = {"": 1, "$gt": "", "a.b": None, "\x00": [], SURROGATES[0]: 1, "Code Ocean": 5, "name": {"name": 1},
              "0": 0, "\u202e": "x", " ": " ", "__proto__": {}, "Channel": ["green"]}
ODD_KEYS = ["", "$gt", "a.b", "\x00", SURROGATES[0], SURROGATES[3], "\u202e", " ", "0", "007", "..", "a/b",
            "x" * 5000, "Channel:green", "__proto__"]

KINDS = ("null", "missing", "wrong_type", "empty", "huge_string", "deep_nesting", "unicode", "numeric_id",
         "timestamp", "extended_json", "weird_keys", "odd_key")
#: Kinds the end-to-end run may also use on ``_id`` (DocDB ids are strings of one BSON type, as the
#: id pager requires: client.iter_pages_by_id).
STRING_KINDS = ("unicode", "numeric_id")


def _huge(rnd: random.Random) -> str:
    n = 1_000_000 + rnd.randrange(100_000)
    pattern = rnd.choice(["x", "ab,c. d_", "2023-09-29T", "s3://aind-open-data/", "a/", "\u202e", "\U0001f9ea",
                          "Smith, John; ", "_2024", "\x00"])
    return (pattern * (n // len(pattern) + 1))[:n]


def _deep(rnd: random.Random) -> Any:
    depth = rnd.randint(200, 400)
    shape = rnd.choice(["dict", "list", "mixed"])
    value: Any = rnd.choice(["leaf", 1, None, {}, []])
    for level in range(depth):
        as_dict = shape == "dict" or (shape == "mixed" and level % 2 == 0)
        value = {rnd.choice(["a", "name", "abbreviation", "value"]): value} if as_dict else [value]
    return value


def _wrong_type(current: Any, rnd: random.Random) -> Any:
    if isinstance(current, str):
        return rnd.choice([0, 7, -1, 3.5, True, False, 2**64, float("nan"), float("inf"), [], [current], {},
                           {"name": current}, {"abbreviation": current}])
    if isinstance(current, bool) or isinstance(current, (int, float)):
        return rnd.choice(["", str(current), "7", [current], {}, {"value": current}])
    if isinstance(current, dict):
        first = next(iter(current.values()), None)
        return rnd.choice(["text", "", 1, 0.5, True, [], [current], list(current.values())[:3], first])
    if isinstance(current, list):
        return rnd.choice(["text", 0, True, {}, {str(i): v for i, v in enumerate(current[:3])},
                           current[0] if current else None])
    return rnd.choice(["text", 0, {}, [], True, [None], {"": None}])


def hostile_value(kind: str, current: Any, rnd: random.Random) -> Any:
    """A hostile replacement for ``current`` of the given kind (``random`` drives the details)."""
    if kind == "null":
        return None
    if kind == "wrong_type":
        return _wrong_type(current, rnd)
    if kind == "empty":
        return rnd.choice(["", {}, [], [None], [{}], [""]])
    if kind == "huge_string":
        return _huge(rnd)
    if kind == "deep_nesting":
        return _deep(rnd)
    if kind == "unicode":
        value = rnd.choice(SURROGATES if rnd.random() < 0.4 else UNICODE_ODDITIES)
        return rnd.choice([value, f"{current}{value}" if isinstance(current, str) else value])
    if kind == "numeric_id":
        return rnd.choice(NUMERIC_IDS)
    if kind == "timestamp":
        return rnd.choice(ODD_TIMESTAMPS)
    if kind == "extended_json":
        return rnd.choice(EXTENDED_JSON)
    if kind == "weird_keys":
        keys = rnd.sample(list(WEIRD_KEYS), rnd.randint(1, 4))
        out = dict(current) if isinstance(current, dict) else {}
        out.update({k: WEIRD_KEYS[k] for k in keys})
        return out
    raise ValueError(kind)


# ----------------------------------------------------------------------------------------------
# JSON paths
# ----------------------------------------------------------------------------------------------

JsonPath = tuple[Any, ...]
_MISSING = object()


def _read_fields() -> list[str]:
    """Every dotted field some DocDB table reads (from the transforms' projections)."""
    from bdc_tables_docdb.transforms import (
        asset_basics, exaspim, metadata_upgrade, platform_fib, platform_qc, quality_control, scientist_rl_fib,
        smartspim, source_data, time_to_qc)

    fields: set[str] = set()
    for projection in (asset_basics.PROJECTION, quality_control.PROJECTION, platform_qc.PROJECTION,
                       source_data.PROJECTION, platform_fib.PROJECTION, scientist_rl_fib.PROJECTION,
                       smartspim.PROJECTION, exaspim.PROJECTION, time_to_qc.PROJECTION,
                       metadata_upgrade.V1_PROJECTION):
        fields.update(projection)
    fields.update(("data_description.data_level", "data_description.modalities.abbreviation"))
    return sorted(fields)


#: Deeper paths the transforms read inside lists (``-1`` = the last element, appended if none).
_LIST_PATHS: list[JsonPath] = [
    ("quality_control", "metrics", 0, "tags"), ("quality_control", "metrics", 0, "value"),
    ("quality_control", "metrics", 0, "modality"), ("quality_control", "metrics", 0, "modality", "abbreviation"),
    ("quality_control", "metrics", 0, "status_history"), ("quality_control", "metrics", 0, "status_history", -1),
    ("quality_control", "metrics", -1, "status_history", -1, "timestamp"),
    ("quality_control", "metrics", 0, "status_history", -1, "status"), ("quality_control", "metrics", 0, "object_type"),
    ("quality_control", "metrics", 0), ("quality_control", "status", "fib"), ("quality_control", "status", "behavior"),
    ("processing", "data_processes", -1, "start_date_time"), ("processing", "data_processes", -1, "end_date_time"),
    ("processing", "data_processes", 0), ("processing", "pipelines", 0, "name"),
    ("data_description", "modalities", 0, "abbreviation"), ("data_description", "modalities", 0),
    ("data_description", "investigators", 0, "name"), ("data_description", "investigators", 0),
    ("data_description", "source_data", 0), ("data_description", "institution", "abbreviation"),
    ("acquisition", "experimenters", 0), ("other_identifiers", "Code Ocean", 0),
    ("procedures", "subject_procedures", 0, "procedures", 0, "object_type"),
    ("procedures", "subject_procedures", 0, "procedures", 0, "implanted_device", "name"),
    ("procedures", "subject_procedures", 0, "procedures", 0, "device_config", "transform", 0, "translation", 1),
    ("procedures", "subject_procedures", 0, "procedures", 0, "injection_materials", 0, "name"),
    ("acquisition", "data_streams", 0, "connections", 0, "source_device"),
    ("acquisition", "data_streams", 0, "configurations", 0, "channels", 0, "channel_name"),
]


@functools.lru_cache(maxsize=None)
def planned_paths() -> tuple[JsonPath, ...]:
    """Every field the tables read and each of its parents (present in a record or not)."""
    out: dict[JsonPath, None] = {}
    for field in _read_fields():
        parts = tuple(field.split("."))
        for end in range(1, len(parts) + 1):
            out.setdefault(parts[:end])
    for path in _LIST_PATHS:
        for end in range(1, len(path) + 1):
            out.setdefault(path[:end])
    return tuple(out)


def _walk(value: Any) -> Iterator[JsonPath]:
    stack: list[tuple[JsonPath, Any]] = [((), value)]
    while stack:
        path, node = stack.pop()
        if path:
            yield path
        if isinstance(node, dict):
            stack.extend((path + (k,), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((path + (i,), v) for i, v in enumerate(node))


def _under(path: JsonPath, field: JsonPath) -> bool:
    """Whether concrete ``path`` is ``field`` or below it (``-1`` in ``field`` matches any index; a
    string step also matches through list indexes, as MongoDB reads a dotted path)."""
    steps = [p for p in path]
    i = 0
    for want in field:
        while i < len(steps) and isinstance(steps[i], int) and not isinstance(want, int):
            i += 1
        if i >= len(steps):
            return False
        got = steps[i]
        if not (got == want or (want == -1 and isinstance(got, int))):
            return False
        i += 1
    return True


@functools.lru_cache(maxsize=None)
def record_paths(base: int) -> dict[Any, tuple[JsonPath, ...]]:
    """Path pools of base record ``base``: ``"any"`` (every path) and, per planned field, the
    concrete paths at or below it."""
    everything = sorted(_walk(json.loads(base_texts()[base])), key=repr)
    out: dict[Any, tuple[JsonPath, ...]] = {"any": tuple(everything)}
    for field in planned_paths():
        out[field] = tuple(p for p in everything if _under(p, field))
    return out


def _index(container: list, step: int, create: bool) -> int | None:
    if step < 0:
        step = len(container) + step
    if 0 <= step < len(container):
        return step
    if not create:
        return None
    container.append(None)
    return len(container) - 1


def lookup(record: Any, path: JsonPath) -> Any:
    node = record
    for step in path:
        if isinstance(node, dict) and isinstance(step, str) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and _index(node, step, False) is not None:
            node = node[_index(node, step, False)]
        else:
            return _MISSING
    return node


def set_path(record: dict, path: JsonPath, value: Any) -> None:
    """Set ``path`` to ``value``, creating (or replacing wrongly typed) containers on the way."""
    node: Any = record
    for step, following in zip(path[:-1], path[1:]):
        want = dict if isinstance(following, str) else list
        if isinstance(node, dict):
            if not isinstance(node.get(step), want):
                node[step] = want()
            node = node[step]
        else:
            i = _index(node, step, True)
            if not isinstance(node[i], want):
                node[i] = want()
            node = node[i]
    last = path[-1]
    if isinstance(node, dict):
        node[last] = value
    else:
        node[_index(node, last, True)] = value


def delete_path(record: dict, path: JsonPath) -> None:
    parent = lookup(record, path[:-1]) if len(path) > 1 else record
    if isinstance(parent, dict):
        parent.pop(path[-1], None)
    elif isinstance(parent, list) and isinstance(path[-1], int):
        i = _index(parent, path[-1], False)
        if i is not None:
            parent.pop(i)


@dataclass(frozen=True)
class Mutation:
    """One hostile change of ``kind`` at a path; details (which path below a field, which value) from ``seed``.

    ``pool``: ``"planned"`` = the ``index``-th field the tables read (present or not), ``"field"`` =
    a random path at or below that field in the record, ``"every"`` = every leaf below that field (every
    object for ``odd_key``), ``"any"`` = the ``index``-th path of the record.
    """

    pool: str
    index: int
    kind: str
    seed: int

    def path(self, base: int, rnd: random.Random) -> JsonPath:
        if self.pool == "any":
            paths = record_paths(base)["any"]
            return paths[self.index % len(paths)]
        field = planned_paths()[self.index % len(planned_paths())]
        below = record_paths(base)[field] if self.pool == "field" else ()
        return rnd.choice(below) if below else field

    def apply(self, record: dict, base: int) -> str:
        """Change ``record`` in place; returns a short description."""
        rnd = random.Random(self.seed)
        if self.pool == "every":
            return self._apply_below(record, base, rnd)
        path = self.path(base, rnd)
        return self._apply_at(record, path, rnd)

    def _apply_below(self, record: dict, base: int, rnd: random.Random) -> str:
        """The same kind of change at every leaf (every object for ``odd_key``) below a field."""
        field = planned_paths()[self.index % len(planned_paths())]
        below = record_paths(base)[field]
        if self.kind == "odd_key":
            targets = [p for p in below if isinstance(lookup(record, p), dict)]
        else:
            targets = [p for p in below if not isinstance(lookup(record, p), (dict, list))]
        if self.kind in ("huge_string", "deep_nesting"):
            targets = rnd.sample(targets, min(3, len(targets)))  # a few megabytes, not hundreds
        for path in sorted(targets, key=len, reverse=True):  # deepest first: parents stay in place
            self._apply_at(record, path, rnd)
        return f"{self.kind} at every {len(targets)} below {field}"

    def _apply_at(self, record: dict, path: JsonPath, rnd: random.Random) -> str:
        if self.kind == "missing":
            delete_path(record, path)
            return f"missing at {path}"
        if self.kind == "odd_key":
            return f"odd_key at {path}: {rename_key(record, path, rnd)!r}"
        value = hostile_value(self.kind, lookup(record, path), rnd)
        set_path(record, path, value)
        shown = repr(value)
        return f"{self.kind} at {path}: {shown[:60]}{'...' if len(shown) > 60 else ''}"


def rename_key(record: dict, path: JsonPath, rnd: random.Random) -> str:
    """Give a key of the object at ``path`` (else of its parent) an odd name; returns the new key."""
    target = lookup(record, path)
    if not isinstance(target, dict):
        target = lookup(record, path[:-1]) if len(path) > 1 else record
    key = rnd.choice(ODD_KEYS)
    if isinstance(target, dict):
        old = rnd.choice(sorted(target, key=str)) if target else None
        target[key] = target.pop(old) if old is not None else "x"
    else:
        set_path(record, path, {key: "x"})
    return key


# ----------------------------------------------------------------------------------------------
# Base records
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def real_records_text() -> tuple[str, ...]:
    paths = sorted(FIXTURES.glob("*.json"))
    assert len(paths) == 4, f"expected the four real DocDB records in {FIXTURES}"
    return tuple(p.read_text() for p in paths)


@functools.lru_cache(maxsize=None)
def generated_records_text() -> tuple[str, ...]:
    from bdc_tables_docdb.demo.generator import generate_records

    return tuple(json.dumps(r) for r in generate_records(GENERATED_N, seed=SEED))


def _shape(record: dict) -> tuple[Any, ...]:
    dd = record.get("data_description") if isinstance(record.get("data_description"), dict) else {}
    mods = tuple(sorted(str(m.get("abbreviation")) for m in dd.get("modalities") or [] if isinstance(m, dict)))
    acq = record.get("acquisition") if isinstance(record.get("acquisition"), dict) else {}
    return mods, dd.get("data_level"), "exa" in str(acq.get("instrument_id") or "").lower(), bool(record.get("quality_control"))


@functools.lru_cache(maxsize=None)
def base_texts() -> tuple[str, ...]:
    """The four real records, then one generated record per shape (modalities, level, exaSPIM, has QC)."""
    shapes: dict[tuple[Any, ...], str] = {}
    for text in generated_records_text():
        shapes.setdefault(_shape(json.loads(text)), text)
    return real_records_text() + tuple(shapes.values())


# ----------------------------------------------------------------------------------------------
# Property 1: the pure transforms of every table
# ----------------------------------------------------------------------------------------------

#: Examples tried per table, and what the hostile records turned into (for the figures).
TRIED: Counter[str] = Counter()
EFFECTS: Counter[str] = Counter()
E2E: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    yield
    write_figures("hostile_records", {
        "property1_examples": TRIED["examples"],
        "property1_tables": len(TRANSFORMS),
        "property1_transform_runs": sum(v for k, v in TRIED.items() if k != "examples"),
        "property1_effects": dict(sorted(EFFECTS.items())),
        **E2E,
    })


@functools.lru_cache(maxsize=None)
def specs() -> dict[str, Any]:
    from bdc_tables_docdb.tables import all_specs

    return {spec.name: spec for spec in all_specs()}


def _text_value(value: Any) -> Any:
    from bdc_tables_docdb.transforms._common import text

    return text(value)


def _dig(record: Any, path: str) -> Any:
    """Mongo's view of a dotted path: arrays on the way are traversed (a list of the values found)."""
    nodes = [record]
    for part in path.split("."):
        found = []
        for node in nodes:
            if isinstance(node, dict) and part in node:
                found.append(node[part])
            elif isinstance(node, list):
                found.extend(x[part] for x in node if isinstance(x, dict) and part in x)
        nodes = found
    out = []
    for node in nodes:
        out.extend(node if isinstance(node, list) else [node])
    return out


def _matches(record: Any, path: str, values: list[Any]) -> bool:
    """``{path: {"$in": values}}`` as MongoDB matches it (type-strict equality, arrays traversed)."""
    return any(any(v == w and type(v) is type(w) for w in values) for v in _dig(record, path))


class World:
    """Everything the transforms of one example see: the records, asset_basics and source_data."""

    def __init__(self, records: list[dict], open_data_root: Path):
        from bdc.frames import conform

        from bdc_tables_docdb.tables.assets import _source_rows, finalize_asset_basics
        from bdc_tables_docdb.transforms.asset_basics import basics_row

        self.records = records
        self.problems: list[str] = []
        basics = conform(specs()["asset_basics"], [basics_row(r, self.problems) for r in records])
        self.basics = conform(specs()["asset_basics"], finalize_asset_basics(basics))
        self.basics_df = self.basics.to_pandas()
        self.source = conform(specs()["source_data"], _source_rows(r for r in records
                                                                    if _matches(r, "data_description.data_level",
                                                                                ["derived"])))
        self.source_df = self.source.to_pandas()
        self.open_data = guarded_open_data(open_data_root)
        self.qc: dict[str, Any] | None = None

    def by(self, path: str, values: list[Any]) -> list[dict]:
        """The records ``fetch_by(path, values)`` would return."""
        return [r for r in self.records if _matches(r, path, values)]


@functools.lru_cache(maxsize=None)
def _guarded_class() -> type:
    from bdc_tables_docdb.open_data import LocalOpenData

    class GuardedOpenData(LocalOpenData):
        """A :class:`LocalOpenData` that records every attempt to look outside its root."""

        def __init__(self, root: str) -> None:
            super().__init__(root)
            self.escapes: list[str] = []

        def _local_path(self, bucket: str | None, key: str = "") -> Any:
            # every file-system path the accessor would touch goes through here: record escapes
            path = super()._local_path(bucket, key)
            if path is not None:
                try:
                    base, resolved = self.root.resolve(), path.resolve()
                except (OSError, ValueError):  # NUL, over-long: the file system refuses it anyway
                    return path
                if resolved != base and base not in resolved.parents:
                    self.escapes.append(str(path))
            return path

    return GuardedOpenData


def guarded_open_data(root: Path) -> Any:
    return _guarded_class()(str(root))


Output = list[tuple[Any, str | None]]  # (data, partition value)


def t_asset_basics(w: World) -> Output:
    return [(w.basics, None)]


def t_metadata_core(w: World) -> Output:
    from bdc_tables_docdb.tables.assets import core_rows
    from bdc_tables_docdb.transforms.metadata_core import CORE_FIELDS

    # what the build's aggregate ($project {f: {$ne: [{$ifNull: [$f, null]}, null]}}) answers
    page = [{"_id": r.get("_id"), "_last_modified": r.get("_last_modified"),
             **{f: r.get(f) is not None for f in CORE_FIELDS}} for r in w.records]
    return [(core_rows(page), None)]


def _unique(name: str, path: str) -> Callable[[World], Output]:
    def run(w: World) -> Output:
        from bdc_tables_docdb.transforms.unique import TABLES, unique_rows

        column = TABLES[name]["column"]
        results = [{column: value} for r in w.records for value in (_dig(r, path) or [None])]
        return [(unique_rows(results, column), None)]

    return run


def t_source_data(w: World) -> Output:
    return [(w.source, None)]


def _qc_results(w: World) -> dict[str, Any]:
    """quality_control's partitions (with their qc_tag_status side rows), computed once per world."""
    if w.qc is None:
        w.qc = _build_qc(w)
    return w.qc


def _build_qc(w: World) -> dict[str, Any]:
    from bdc.errors import InvalidNameError
    from bdc.names import check_partition_value

    from bdc_tables_docdb.tables.qc import qc_results

    subjects = []
    for subject in dict.fromkeys(w.basics.column("subject_id").to_pylist()):
        try:
            subjects.append(check_partition_value(subject, "subject_id"))
        except InvalidNameError:
            EFFECTS["subject_ids_not_storable"] += 1
    counters: Counter[str] = Counter()
    results = qc_results(subjects, w.by("subject.subject_id", subjects), lambda k, n=1: counters.update({k: n}))
    EFFECTS.update({f"quality_control.{k}": v for k, v in counters.items()})
    return results


def t_quality_control(w: World) -> Output:
    return [(result.data, subject) for subject, result in _qc_results(w).items()]


def t_qc_tag_status(w: World) -> Output:
    return [(result.side["qc_tag_status"], subject) for subject, result in _qc_results(w).items()]


def t_platform_qc(w: World) -> Output:
    from bdc_tables_docdb.transforms.platform_qc import PLATFORMS, join_basics, platform_qc_rows, select_platform_assets

    out = []
    for platform in PLATFORMS:
        assets = select_platform_assets(w.basics_df, platform)
        records = w.by("_id", assets["_id"].tolist())
        rows = [row for r in records if r.get("quality_control") for row in platform_qc_rows(r, platform)]
        out.append((join_basics(rows, w.basics_df, w.problems), platform))
    return out


def t_time_to_qc(w: World) -> Output:
    from bdc_tables_docdb.transforms.time_to_qc import select_time_to_qc_assets, time_to_qc_table

    return [(time_to_qc_table(w.by("name", select_time_to_qc_assets(w.basics_df))), None),
            (time_to_qc_table(w.records), None)]


def t_platform_fib(w: World) -> Output:
    from bdc_tables_docdb.transforms.platform_fib import fib_table, select_fib_assets

    return [(fib_table(w.by("name", select_fib_assets(w.basics_df))), None), (fib_table(w.records), None)]


def t_scientist_rl_fib(w: World) -> Output:
    from bdc_tables_docdb.transforms.scientist_rl_fib import scientist_rl_fib_table

    return [(scientist_rl_fib_table(w.records), None)]


def _every_record_as_child(w: World, column: str) -> pd.DataFrame:
    """Every record as the processed child of a raw asset named like it (its name reaches S3 keys)."""
    names = [n if isinstance(n, str) else None for n in (r.get("name") for r in w.records)]
    return pd.DataFrame({"raw_name": pd.Series([n or f"raw-{i}" for i, n in enumerate(names)], dtype=object),
                         column: pd.Series(names, dtype=object)})


def t_platform_smartspim(w: World) -> Output:
    from bdc_tables_docdb.transforms.smartspim import names_to_fetch, select_smartspim_assets, smartspim_table

    out = []
    for selection in (select_smartspim_assets(w.basics_df, w.source_df), _every_record_as_child(w, "stitched_name")):
        errors: dict[str, str] = {}
        records = w.by("name", names_to_fetch(selection))
        out.append((smartspim_table(selection, records, w.open_data, errors=errors, max_workers=1), None))
        EFFECTS["platform_smartspim.asset_errors"] += len(errors)
    return out


def t_platform_exaspim(w: World) -> Output:
    from bdc_tables_docdb.transforms.exaspim import exaspim_table, select_exaspim_assets
    from bdc_tables_docdb.transforms.smartspim import names_to_fetch

    out = []
    for selection in (select_exaspim_assets(w.basics_df, w.source_df), _every_record_as_child(w, "fused_name")):
        errors: dict[str, str] = {}
        records = w.by("name", names_to_fetch(selection, "fused_name"))
        out.append((exaspim_table(selection, records, w.open_data, errors=errors, max_workers=1), None))
        EFFECTS["platform_exaspim.asset_errors"] += len(errors)
    return out


def t_behavior_curriculum(w: World) -> Output:
    from bdc_tables_docdb.transforms.curriculum import curriculum_rows

    out = []
    for assets in (w.basics_df, w.basics_df[["name", "location"]]):  # without modalities: every asset
        errors: dict[str, str] = {}
        out.append((curriculum_rows(assets, None, w.open_data, errors=errors, max_workers=1), None))
        EFFECTS["behavior_curriculum.asset_errors"] += len(errors)
    return out


def t_metadata_upgrade(w: World) -> Output:
    from bdc_tables_docdb.transforms.metadata_upgrade import upgrade_table

    ids = [_text_value(r.get("_id")) or f"v1-{i}" for i, r in enumerate(w.records)]
    status = pd.DataFrame({"v1_id": ids, "upgrader_version": ["1.0", "1.1"] * (len(ids) // 2) + ["1.0"] * (len(ids) % 2),
                           "status": "failed", "v2_id": [None, *ids[1:]], "last_modified": "2025-01-01",
                           "upgrade_datetime": "2025-01-02T00:00:00Z"})
    return [(upgrade_table(status, None, w.basics_df, lambda wanted: w.records), None)]


TRANSFORMS: dict[str, Callable[[World], Output]] = {
    "asset_basics": t_asset_basics,
    "unique_project_names": _unique("unique_project_names", "data_description.project_name"),
    "unique_subject_ids": _unique("unique_subject_ids", "subject.subject_id"),
    "unique_genotypes": _unique("unique_genotypes", "subject.subject_details.genotype"),
    "source_data": t_source_data,
    "metadata_core": t_metadata_core,
    "quality_control": t_quality_control,
    "qc_tag_status": t_qc_tag_status,
    "platform_qc": t_platform_qc,
    "time_to_qc": t_time_to_qc,
    "platform_fib": t_platform_fib,
    "scientist_rl_fib": t_scientist_rl_fib,
    "platform_smartspim": t_platform_smartspim,
    "platform_exaspim": t_platform_exaspim,
    "behavior_curriculum": t_behavior_curriculum,
    "metadata_upgrade": t_metadata_upgrade,
}


def test_every_docdb_table_has_a_transform_here() -> None:
    assert set(TRANSFORMS) == set(specs())


mutations = st.builds(Mutation, pool=st.sampled_from(["field", "every", "planned", "field", "every", "any"]), index=st.integers(0, 10**6),
                      kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32 - 1))
#: Half of the examples start from one of the four real records, the others from any base record.
bases = st.one_of(st.integers(0, 3), st.integers(0, 10**3))


def hostile_record(base: int, changes: list[Mutation], rid: str = "hostile-0") -> tuple[dict, list[str]]:
    """A fresh copy of base record ``base`` under id ``rid``, with ``changes`` applied."""
    record = json.loads(base_texts()[base])
    record["_id"] = rid
    return record, [m.apply(record, base) for m in changes]


def _check_subject_ids(w: World, hostile: dict) -> None:
    """Subject ids stay strings: ``"007"`` stays ``"007"``; other values become their text or null."""
    from bdc_tables_docdb.records import clean_text

    got = w.basics.column("subject_id").to_pylist()[-1]
    assert got is None or isinstance(got, str)
    subject = hostile.get("subject")
    value = subject.get("subject_id") if isinstance(subject, dict) else None
    if isinstance(value, str) and value:
        assert got == clean_text(value), (value, got)


@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(base=bases, changes=st.lists(mutations, min_size=1, max_size=4))
def test_transforms_never_raise_and_conform(base: int, changes: list[Mutation],
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    """Property 1: a hostile record next to its pristine original gives every table conforming rows,
    never an exception."""
    from bdc.frames import conform

    TRIED["examples"] += 1
    base %= len(base_texts())
    hostile, applied = hostile_record(base, changes)
    original = json.loads(base_texts()[base])
    what = f"a hostile record (base {original['_id']}: {'; '.join(applied)})"
    try:
        w = World([original, hostile], _open_data_root(tmp_path_factory))
    except Exception as exc:
        raise AssertionError(f"asset_basics/source_data failed on {what}: {type(exc).__name__}: {exc}") from exc
    failures = []
    for table, transform in TRANSFORMS.items():
        TRIED[table] += 1
        try:
            outputs = transform(w)
            tables = [conform(specs()[table], data, partition) for data, partition in outputs]
        except Exception as exc:
            failures.append(f"{table}: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        for out in tables:
            for name in ("subject_id", "mouse_ids"):
                if name in out.column_names:
                    assert str(out.schema.field(name).type) in ("string", "list<item: string>"), (table, out.schema)
        if table == "metadata_core":
            assert tables[0].num_rows == 2, "metadata_core lost a record"
    assert not failures, f"transforms failed on {what}:\n" + "\n".join(failures)
    # LocalOpenData (the demo/test accessor) follows absolute keys and '..' buckets out of its root:
    # counted here, pinned by test_local_open_data_stays_inside_its_root (open_data.py is not a transform)
    EFFECTS["open_data_reads_outside_root"] += len(w.open_data.escapes)
    assert w.basics.num_rows == 2, "asset_basics lost a record"  # a bad field is a null, never a lost row
    _check_subject_ids(w, hostile)
    pristine, row = w.basics.to_pylist()
    EFFECTS["asset_basics_new_null_cells"] += max(0, sum(v is None for v in row.values())
                                                  - sum(v is None for v in pristine.values()))
    EFFECTS["record_problems"] += len(w.problems)


@pytest.mark.parametrize("name, location", [("/etc", "s3://aind-open-data/x_stitched"), ("x", "s3://../..")])
def test_local_open_data_stays_inside_its_root(tmp_path: Path, name: str, location: str) -> None:
    """A hostile asset name or location never makes the local open-data copy look outside its root."""
    from bdc_tables_docdb.transforms.exaspim import exaspim_table
    from bdc_tables_docdb.transforms.smartspim import smartspim_table

    (tmp_path / "open-data" / "aind-open-data").mkdir(parents=True)
    od = guarded_open_data(tmp_path / "open-data")
    records = [{"_id": "a", "name": "x_stitched", "location": location}]
    selection = pd.DataFrame({"raw_name": [name], "stitched_name": ["x_stitched"]}, dtype=object)
    smartspim_table(selection, records, od, max_workers=1)
    exaspim_table(selection.rename(columns={"stitched_name": "fused_name"}), records, od, max_workers=1)
    assert od.escapes == []


@functools.lru_cache(maxsize=None)
def _open_data_root_cached(base: str) -> Path:
    from bdc_tables_docdb.demo.generator import generate_open_data_objects

    root = Path(base) / "open-data"
    records = [json.loads(t) for t in base_texts()]
    for key, data in generate_open_data_objects(records, seed=SEED).items():
        path = root / "aind-open-data" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "aind-open-data").mkdir(parents=True, exist_ok=True)
    return root


def _open_data_root(factory: pytest.TempPathFactory) -> Path:
    return _open_data_root_cached(str(factory.getbasetemp() / "hostile-records"))


# ----------------------------------------------------------------------------------------------
# Property 2: an end-to-end sync against the emulator
# ----------------------------------------------------------------------------------------------


def hostile_batch(n: int, seed: int) -> list[tuple[dict, list[str]]]:
    """``n`` hostile copies of generated/real records: every kind at least twice, some on ``_id``."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        base = rnd.randrange(len(base_texts()))
        kinds = [KINDS[i % len(KINDS)], *rnd.choices(KINDS, k=rnd.randint(1, 3))]
        changes = [Mutation(rnd.choice(["field", "field", "every", "planned", "any"]), rnd.randrange(10**6), kind,
                            rnd.randrange(2**32)) for kind in kinds]
        record, applied = hostile_record(base, changes, rid=f"hostile-{i:03d}")
        if not isinstance(record.get("_id"), str) or not record["_id"] or len(record["_id"]) > 200:
            # ids stay short strings here (one BSON type, as client.iter_pages_by_id requires; the
            # gateway caps URLs); property 1 covers ids of any type
            record["_id"] = f"hostile-{i:03d}"
        if isinstance(record.get("name"), str):
            record["name"] = f"hostile_{i:03d}_{record['name']}"  # clean names stay unique to clean records
        if i % 5 == 0:  # an odd string id: numeric-looking, unicode, ...
            kind = STRING_KINDS[(i // 5) % len(STRING_KINDS)]
            value = hostile_value(kind, record["_id"], rnd)
            record["_id"] = value if isinstance(value, str) and value else f"{i:07d}"
            applied.append(f"{kind} at _id: {record['_id'][:40]!r}")
        storable(record)
        record["_id"] = _unique_id(record["_id"], out)
        applied.insert(0, f"base {json.loads(base_texts()[base])['_id']}")
        out.append((record, applied))
    return out


#: The real pophys record with QC metrics and status (subject 692478), the base of the crafted records.
QC_RECORD_ID = "c9888108-f413-41cc-9a1d-418937a04410"


def crafted_hostile() -> list[tuple[dict, list[str]]]:
    """Hand-made hostile shapes the random ones may miss, each aimed at one build step."""
    base = next(json.loads(t) for t in real_records_text() if json.loads(t)["_id"] == QC_RECORD_ID)
    subject = base["subject"]["subject_id"]
    cases: list[tuple[str, Callable[[dict], None]]] = [
        # $in on subject.subject_id also matches arrays: these reach the QC build's grouping
        ("subject as a list of subject objects", lambda r: r.update(subject=[{"subject_id": subject}])),
        ("subject_id as a list", lambda r: r["subject"].update(subject_id=[subject, "0000"])),
        ("subject_id with leading zeros", lambda r: r["subject"].update(subject_id="007")),
        ("subject_id as a number", lambda r: r["subject"].update(subject_id=int(subject))),
        # raw _last_modified goes straight into metadata_core (aggregate) and the recency keys
        ("_last_modified as a number", lambda r: r.update(_last_modified=1695973403)),
        ("_last_modified as Extended JSON", lambda r: r.update(_last_modified={"$date": "2025-12-02T07:46:54Z"})),
        # a valid text whose UTC instant is before year 1
        ("acquisition start before year 1 in UTC",
         lambda r: r["acquisition"].update(acquisition_start_time="0001-01-01T00:00:00+01:00")),
        ("1 MB name, 300-deep metric value, odd status keys", lambda r: (
            r.update(name="n" * 1_000_000),
            r["quality_control"]["metrics"][0].update(value=_deep(random.Random(3))),
            r["quality_control"]["status"].update({"\u202e": "Pass", "": "Fail", "a.b": 1, "007": None}))),
    ]
    out = []
    for i, (what, change) in enumerate(cases):
        record = json.loads(json.dumps(base))
        record["_id"] = f"crafted-{i:02d}"
        change(record)
        out.append((record, [f"base {QC_RECORD_ID}", f"crafted {what}"]))
    return out


def storable(value: Any) -> Any:
    """``value`` as DocDB can hold it: BSON strings are UTF-8 (a lone surrogate becomes U+FFFD), BSON
    keys are C strings (no NUL), BSON integers have 8 bytes. Property 1 feeds the transforms the
    unstorable forms too."""
    from bdc_tables_docdb.records import clean_text

    stack = [value]
    while stack:
        node = stack.pop()
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
        if isinstance(node, dict):
            node.clear()
        for key, child in items:
            if isinstance(child, str):
                child = clean_text(child)
            elif isinstance(child, int) and not isinstance(child, bool) and not -(2**63) <= child < 2**63:
                child = float(child)  # BSON integers are 8 bytes; a bigger JSON number is a double
            else:
                stack.append(child)
            if isinstance(node, dict):
                node[clean_text(str(key)).replace("\x00", "\\0")] = child
            else:
                node[key] = child
    return value


def _unique_id(rid: str, previous: list[tuple[dict, list[str]]]) -> str:
    taken = {r["_id"] for r, _ in previous}
    while rid in taken:
        rid = f"{rid}-dup"
    return rid


#: Tables keyed by asset: a clean asset's rows there must not depend on the hostile records.
ASSET_KEYED = {
    "asset_basics": "_id", "metadata_core": "_id", "source_data": "asset_id", "quality_control": "asset_id",
    "qc_tag_status": "asset_id", "platform_qc": "asset_id", "time_to_qc": "name",
}
#: Columns computed over the whole table (the first-name merge), left out of that comparison.
TABLE_WIDE = {"experimenters_normalized", "investigators_normalized"}


def _rows_by_key(cache_url: str, table: str, key: str, keys: set[str]) -> Counter[str]:
    """The rows of ``table`` whose ``key`` is in ``keys``, as comparable texts (table-wide columns left out)."""
    from bdc.cache import Cache

    rows = Cache(cache_url).get(table, arrow=True).to_pylist()
    return Counter(repr(sorted((k, v) for k, v in r.items() if k not in TABLE_WIDE)) for r in rows if r[key] in keys)


def _sync(tmp: Path, records: list[dict], monkeypatch: pytest.MonkeyPatch, open_data: Path) -> tuple[Any, str]:
    import bdc
    from bdc import api, plugins

    from bdc_tables_docdb.emulator import DocDBEmulator

    cache_url = (tmp / "root" / "cache").as_uri()
    with DocDBEmulator(records) as emulator:
        monkeypatch.setenv("BDC_DOCDB_URL", emulator.url)
        monkeypatch.setenv("BDC_OPEN_DATA_URL", open_data.as_uri())
        plugins.reset()
        api._caches.clear()
        report = bdc.sync(cache_url, progress="none")
    return report, cache_url


def test_sync_with_hostile_records_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Property 2: every DocDB table syncs ok with 30 hostile records among 304 others; effects confined."""
    import tempfile

    from bdc_tables_docdb.demo.generator import generate_open_data_objects

    started = time.monotonic()
    monkeypatch.setenv("BDC_LOAD_PLUGINS", "docdb")
    for name in ("BDC_DOCDB_PAGE_SIZE", "BDC_NEUROGLASS_URL", "BDC_NEUROGLANCER_URL", "BDC_UPGRADE_STATUS_TABLE",
                 "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a user cache/state dir would show up in the tree
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))

    clean = [json.loads(t) for t in real_records_text() + generated_records_text()]
    batch = hostile_batch(HOSTILE_N - len(crafted_hostile()), SEED) + crafted_hostile()
    hostile = [r for r, _ in batch]
    open_data = tmp_path / "open-data"
    for key, data in generate_open_data_objects(clean, seed=SEED).items():
        path = open_data / "aind-open-data" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    baseline, baseline_url = _sync(tmp_path / "baseline", clean, monkeypatch, open_data)
    assert baseline.ok, baseline.summary()

    run = tmp_path / "run"
    before = tree(tmp_path)
    report, cache_url = _sync(run, clean + hostile, monkeypatch, open_data)
    after = tree(tmp_path)
    assert report.ok, report.summary()
    assert {t.status for t in report.tables} == {"ok"}, [(t.name, t.status) for t in report.tables]

    outside = {k for k in set(before) | set(after)
               if before.get(k) != after.get(k) and not k.startswith(str(Path("run", "root", "cache")) + "/")}
    assert not outside, f"written outside the cache root: {sorted(outside)[:10]}"

    # every hostile record has its asset_basics row; subject ids are strings (or null)
    from bdc.cache import Cache

    from bdc_tables_docdb.records import clean_text

    basics = Cache(cache_url).get("asset_basics", arrow=True).to_pylist()
    by_id = {r["_id"]: r for r in basics}
    assert len(basics) == len(clean) + len(hostile)
    assert {clean_text(r["_id"]) for r in hostile} <= set(by_id)
    assert all(r["subject_id"] is None or isinstance(r["subject_id"], str) for r in basics)
    for record in hostile:
        subject = record.get("subject")
        value = subject.get("subject_id") if isinstance(subject, dict) else None
        if isinstance(value, str) and value:
            assert by_id[clean_text(record["_id"])]["subject_id"] == clean_text(value)
    unique_subjects = Cache(cache_url).get("unique_subject_ids")["subject_id"].tolist()
    assert all(isinstance(s, str) for s in unique_subjects)
    assert "007" in unique_subjects and "7" not in unique_subjects
    # the crafted records: their effects are the documented ones
    qc_ids = Counter(Cache(cache_url).get("quality_control", columns=["asset_id"])["asset_id"])
    crafted = {applied[1].split(" ", 1)[1]: r["_id"] for r, applied in batch if applied[1].startswith("crafted ")}
    assert qc_ids[crafted["subject as a list of subject objects"]] == 0  # fetched with 692478, skipped
    assert qc_ids[crafted["subject_id as a list"]] == 0
    assert report.table("quality_control").counters.get("records_skipped", 0) >= 2
    assert qc_ids[crafted["subject_id with leading zeros"]] > 0
    assert set(Cache(cache_url).get("quality_control", subject_id="007")["subject_id"]) == {"007"}
    assert qc_ids[crafted["subject_id as a number"]] == 0  # basics says "692478", DocDB holds a number
    core = {r["_id"]: r for r in Cache(cache_url).get("metadata_core", arrow=True).to_pylist()}
    assert core[crafted["_last_modified as a number"]]["_last_modified"] == "1695973403"
    assert core[crafted["_last_modified as Extended JSON"]]["_last_modified"] == "2025-12-02T07:46:54Z"
    early = Cache(cache_url).get("quality_control", subject_id="692478", arrow=True).to_pylist()
    assert {r["timestamp"] for r in early if r["asset_id"] == crafted["acquisition start before year 1 in UTC"]} == {None}
    assert by_id[crafted["1 MB name, 300-deep metric value, odd status keys"]]["name"] == "n" * 1_000_000

    # the clean records' rows are exactly those of the sync without hostile records
    clean_ids = {r["_id"] for r in clean}
    clean_names = {r["name"] for r in clean if isinstance(r.get("name"), str)}
    for table, key in ASSET_KEYED.items():
        keys = clean_names if key == "name" else clean_ids
        got = _rows_by_key(cache_url, table, key, keys)
        want = _rows_by_key(baseline_url, table, key, keys)
        assert got == want, f"{table}: the hostile records changed clean rows"

    hostile_rows = [by_id[clean_text(r["_id"])] for r in hostile]
    baseline_by_id = {r["_id"]: r for r in Cache(baseline_url).get("asset_basics", arrow=True).to_pylist()}
    originals = [baseline_by_id[applied[0].split(" ", 1)[1]] for _, applied in batch]
    E2E.update({
        "e2e_records": len(clean) + len(hostile),
        "e2e_hostile_records": len(hostile),
        "e2e_hostile_mutations": dict(sorted(Counter(line.split(" ", 1)[0]
                                                     for _, applied in batch for line in applied[1:]).items())),
        "e2e_hostile_basics_rows_with_new_nulls": sum(
            sum(v is None for v in h.values()) > sum(v is None for v in o.values())
            for h, o in zip(hostile_rows, originals)),
        "e2e_hostile_basics_new_null_cells": sum(v is None for r in hostile_rows for v in r.values())
        - sum(v is None for r in originals for v in r.values()),
        "e2e_counters": {t.name: t.counters for t in report.tables if t.counters},
        "e2e_baseline_counters": {t.name: t.counters for t in baseline.tables if t.counters},
        "e2e_rows": {t.name: t.rows for t in report.tables},
        "e2e_seconds": round(time.monotonic() - started, 2),
    })
