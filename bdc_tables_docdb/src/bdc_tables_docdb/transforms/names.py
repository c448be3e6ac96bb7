"""Name normalisation shared by asset_basics and the platform tables (TABLES.md §1).

* :func:`normalize_name` — one display name (§1.1).
* :func:`parse_experimenters` — one raw, comma-separated string to a list of names (§1.2).
* :func:`normalize_experimenters` — a row's list of raw strings, with per-row first-name
  resolution (§1.3).
* :func:`first_name_map` / :func:`first_name_merge` — the table-wide first-name merge (§1.4).
* :func:`normalize_instrument_id` — instrument id to a short rig name (§1.5), reproducing the
  reference's quirks for compatibility.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "normalize_name",
    "merge_key",
    "parse_experimenters",
    "normalize_experimenters",
    "first_name_map",
    "first_name_merge",
    "normalize_instrument_id",
]

_NOT_ALNUM = re.compile(r"[^a-zA-Z0-9 ]")
_INSTRUMENT = re.compile(r"^[^_-]+[_-](.+)_(\d{8}|\d{4}-\d{2}-\d{2}|2[3-6]\d{4})$")


def normalize_name(s: Any) -> str:
    """Normalise one display name (§1.1); ``None`` or non-text gives ``""``.

    Every character outside ``[a-zA-Z0-9 ]`` becomes a space (dots, underscores, hyphens,
    apostrophes, non-ASCII letters), whitespace is collapsed and trimmed, and each word is
    title-cased (a letter after a digit is capitalised too).

    >>> normalize_name("huy.nguyen"), normalize_name("o'brien-smith; X")
    ('Huy Nguyen', 'O Brien Smith X')
    """
    if not isinstance(s, str):
        return ""
    # Only [a-zA-Z0-9 ] remain, so str.title() is exactly "capitalise after any non-letter".
    return " ".join(_NOT_ALNUM.sub(" ", s).split()).title()


def merge_key(name: str) -> str:
    """Deduplication key of a normalised name: lowercased with all spaces removed."""
    return name.lower().replace(" ", "")


def _dedupe_by_key(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for name in names:
        key = merge_key(name)
        if name and key not in seen:
            seen.add(key)
            out.append(name)
    return out


def parse_experimenters(value: Any) -> list[str]:
    """Split one raw experimenter string on commas and normalise each piece (§1.2).

    Empty or null input gives ``[]``; empty pieces are dropped; duplicates (by
    :func:`merge_key`) keep the first spelling, in original order. ``"Smith, John"`` gives two
    names, ``["Smith", "John"]``. Numbers are taken as their text; other types give ``[]``.
    """
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str) or not value:
        return []
    return _dedupe_by_key(normalize_name(piece) for piece in value.split(","))


def _as_names(values: Any) -> list[Any]:
    """A list of raw values from a list/tuple/array cell; a lone string is one value."""
    if values is None:
        return []
    if isinstance(values, str):
        return [values]
    if isinstance(values, Iterable) and not isinstance(values, (bytes, dict)):
        return list(values)
    return []


def normalize_experimenters(values: Any) -> list[str]:
    """Normalise a row's raw name list (§1.3).

    :func:`parse_experimenters` is applied to each element and the results are concatenated,
    deduplicating by :func:`merge_key` across the whole list. Then a one-word name is dropped
    when exactly one multi-word name *in the same list* starts with that word
    (case-insensitive). A lone string is treated as a one-element list; ``None`` gives ``[]``.

    >>> normalize_experimenters(["Smith, John", "john smith", "JOHN", "Jane Doe, jane"])
    ['Smith', 'John Smith', 'Jane Doe']
    """
    names = _dedupe_by_key(n for raw in _as_names(values) for n in parse_experimenters(raw))
    firsts: dict[str, int] = {}
    for name in names:
        words = name.split(" ")
        if len(words) > 1:
            firsts[words[0].lower()] = firsts.get(words[0].lower(), 0) + 1
    return [n for n in names if " " in n or firsts.get(n.lower(), 0) != 1]


def first_name_map(names: Iterable[str]) -> dict[str, str]:
    """Map each one-word name to the single multi-word name starting with it (§1.4).

    ``names`` is every normalised name of the table (duplicates allowed). A one-word name is
    mapped only when exactly one *distinct* multi-word name has it as its first word
    (case-insensitive); ambiguous first names are left out.

    >>> first_name_map(["Bruno Cruz", "Cindy Poo", "Cindy Lee", "Bruno", "Cindy"])
    {'Bruno': 'Bruno Cruz'}
    """
    distinct = list(dict.fromkeys(n for n in names if isinstance(n, str) and n))
    candidates: dict[str, list[str]] = {}
    for name in distinct:
        words = name.split(" ")
        if len(words) > 1:
            candidates.setdefault(words[0].lower(), []).append(name)
    mapping: dict[str, str] = {}
    for name in distinct:
        if " " not in name:
            full = candidates.get(name.lower(), [])
            if len(full) == 1:
                mapping[name] = full[0]
    return mapping


def _rewrite(names: Any, mapping: dict[str, str]) -> list[str]:
    return list(dict.fromkeys(mapping.get(n, n) for n in _as_names(names) if isinstance(n, str)))


def first_name_merge(
    experimenters: Sequence[Any], investigators: Sequence[Any]
) -> tuple[list[list[str]], list[list[str]]]:
    """Apply the table-wide first-name merge (§1.4) to two normalised list columns.

    ``experimenters`` and ``investigators`` hold, for every row of the table, the per-row
    normalised lists (:func:`normalize_experimenters`; ``None`` counts as ``[]``). The map is
    built over both columns of the whole table (:func:`first_name_map`) and every row of both
    columns is rewritten: mapped names are replaced and exact duplicates removed, keeping the
    first occurrence. Returns new lists; the inputs are not modified. The result depends on
    the whole table, so feed it *all* rows (from the pre-merge data) on every build.
    """
    if len(experimenters) != len(investigators):
        raise ValueError("experimenters and investigators must have one entry per row")
    everything = (
        n for exp, inv in zip(experimenters, investigators) for n in (*_as_names(exp), *_as_names(inv))
    )
    mapping = first_name_map(everything)
    return (
        [_rewrite(row, mapping) for row in experimenters],
        [_rewrite(row, mapping) for row in investigators],
    )


def normalize_instrument_id(instrument_id: Any) -> str:
    """Reduce an instrument id to its rig name (§1.5); null or empty gives ``""``.

    ``<first token>[_-]<name>_<YYYYMMDD|YYYY-MM-DD|YYMMDD with YY 23-26>`` keeps ``<name>``;
    anything else is kept whole. Then every ``_`` and ``-`` is deleted. Reference quirks kept
    for compatibility: the date must follow an underscore (``429-mesoscope-20220321`` →
    ``429mesoscope20220321``, ``NP3_2025-01-01`` → ``NP320250101``) and other punctuation
    stays (``MESO.2``). Numbers are taken as their text.

    >>> normalize_instrument_id("323_EPHYS1_20231003"), normalize_instrument_id("447-3-B_20240115")
    ('EPHYS1', '3B')
    """
    if isinstance(instrument_id, bool) or instrument_id is None:
        return ""
    if isinstance(instrument_id, (int, float)):
        instrument_id = str(instrument_id)
    if not isinstance(instrument_id, str) or not instrument_id:
        return ""
    match = _INSTRUMENT.match(instrument_id)
    core = match.group(1) if match else instrument_id
    return core.replace("_", "").replace("-", "")
