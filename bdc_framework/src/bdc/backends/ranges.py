"""Byte ranges of parquet objects: which bytes a projected read needs, and range arithmetic.

A read of a few columns of a large remote parquet object needs only its footer and the column
chunks of those columns; the local read cache (:mod:`bdc.backends.readcache`) downloads just
those ranges into a sparse local file. Ranges are half-open ``(start, end)`` byte offsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bdc.errors import ReadError

__all__ = [
    "Range",
    "normalize",
    "union",
    "subtract",
    "total",
    "coalesce",
    "footer_length",
    "column_ranges",
    "TAIL_BYTES",
]

Range = tuple[int, int]

#: How much of the end of an object the first ranged request asks for: the footer, usually
#: with room to spare, and the whole object when it is small (one request either way).
TAIL_BYTES = 512 * 1024

#: parquet-cpp reads up to this many bytes past a column chunk's recorded end (PARQUET-816).
_CHUNK_PADDING = 100

_MAGIC = b"PAR1"


def normalize(ranges: Iterable[Sequence[int]]) -> list[Range]:
    """Sorted, with overlapping and touching ranges merged and empty ones dropped."""
    out: list[Range] = []
    for start, end in sorted((int(r[0]), int(r[1])) for r in ranges if r[1] > r[0]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def union(a: Iterable[Sequence[int]], b: Iterable[Sequence[int]]) -> list[Range]:
    """The bytes in ``a`` or ``b``."""
    return normalize([*a, *b])


def subtract(need: Iterable[Sequence[int]], have: Iterable[Sequence[int]]) -> list[Range]:
    """The bytes of ``need`` that are not in ``have``."""
    have_n = normalize(have)
    out: list[Range] = []
    for start, end in normalize(need):
        cursor = start
        for h_start, h_end in have_n:
            if h_end <= cursor:
                continue
            if h_start >= end:
                break
            if h_start > cursor:
                out.append((cursor, h_start))
            cursor = max(cursor, h_end)
            if cursor >= end:
                break
        if cursor < end:
            out.append((cursor, end))
    return out


def total(ranges: Iterable[Sequence[int]]) -> int:
    """How many bytes the (normalized) ranges hold."""
    return sum(end - start for start, end in normalize(ranges))


def coalesce(ranges: Iterable[Sequence[int]], gap: int) -> list[Range]:
    """Ranges separated by at most ``gap`` bytes merged (fewer requests for a few more bytes)."""
    out: list[Range] = []
    for start, end in normalize(ranges):
        if out and start - out[-1][1] <= gap:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def footer_length(tail: bytes, label: str) -> int:
    """The length of the parquet footer (metadata, its length and the magic) at the end of ``tail``."""
    if len(tail) < 12 or tail[-4:] != _MAGIC:
        raise ReadError(f"{label} is not a parquet file (no PAR1 magic at its end)")
    return int.from_bytes(tail[-8:-4], "little") + 8


def column_ranges(metadata: Any, columns: Iterable[str], size: int) -> list[Range]:
    """The bytes a read of ``columns`` needs from a parquet object of ``size`` bytes.

    That is the column chunks of those columns in every row group (nested columns: every leaf
    under the name), plus everything after the last column chunk (page indexes, bloom filters
    and the footer), so the reader finds whatever it looks for.
    """
    wanted = set(columns)
    footer_start = size
    last_chunk_end = 0
    need: list[Range] = []
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            start = chunk.data_page_offset
            dictionary = chunk.dictionary_page_offset
            if chunk.has_dictionary_page and dictionary is not None and 0 < dictionary < start:
                start = dictionary
            end = start + chunk.total_compressed_size
            last_chunk_end = max(last_chunk_end, end)
            path = chunk.path_in_schema
            if path in wanted or path.split(".", 1)[0] in wanted or any(path.startswith(w + ".") for w in wanted):
                need.append((start, min(end + _CHUNK_PADDING, footer_start)))
    need.append((min(last_chunk_end, size), size))
    return normalize(need)
