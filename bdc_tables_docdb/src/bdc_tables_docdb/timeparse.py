"""One tolerant timestamp parser for every table (TABLES.md D4, D8, D27).

DocDB holds timestamps in mixed ISO variants, sometimes within one record:
``2026-02-13T18:31:13.061848Z``, ``2023-09-29 08:53:23.654198-07:00`` (space separator, local
offset), ``2025-04-23 00:38:48.368044+00:00``, fractions of any length. :func:`parse_timestamp`
accepts all of them; :func:`to_utc` converts to an aware UTC datetime and :func:`local_date`
gives the calendar date *as written in its own offset* (no guessing of time zones).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

__all__ = ["parse_timestamp", "to_utc", "local_date", "parse_date"]

_ISO = re.compile(
    r"^\s*(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d+))?)?)?"
    r"\s*(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?\s*$"
)


def parse_timestamp(value: object) -> datetime | None:
    """Parse an ISO-8601-like string (or datetime) into a datetime, or ``None``.

    The result keeps the offset written in the text (aware) or is naive when none was written.
    Fractions longer than microseconds are truncated. Anything unparseable gives ``None``.
    """
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if not isinstance(value, str):
        return None
    match = _ISO.match(value)
    if not match:
        return None
    try:
        year, month, day = (int(x) for x in match["date"].split("-"))
        hour = int(match["h"] or 0)
        minute = int(match["m"] or 0)
        second = int(match["s"] or 0)
        frac = (match["frac"] or "0")[:6].ljust(6, "0")
        tzinfo = _parse_offset(match["tz"])
        return datetime(year, month, day, hour, minute, second, int(frac), tzinfo=tzinfo)
    except ValueError:
        return None


def _parse_offset(text: str | None) -> timezone | None:
    if not text:
        return None
    if text in ("Z", "z"):
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"bad offset {text!r}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def to_utc(value: object) -> datetime | None:
    """Parse ``value`` and convert it to an aware UTC datetime (naive text is taken as UTC).

    A time whose UTC instant falls outside the years 1-9999 (``0001-01-01T00:00:00+01:00``,
    ``9999-12-31T23:59:59-01:00``) cannot be represented and gives ``None`` like unparseable text.
    """
    parsed = parse_timestamp(value)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        return None


def local_date(value: object) -> date | None:
    """The calendar date of ``value`` as written, in its own offset (``None`` if unparseable)."""
    parsed = parse_timestamp(value)
    return parsed.date() if parsed is not None else None


def parse_date(value: object) -> date | None:
    """A date from ``YYYY-MM-DD`` text or any timestamp text (its own calendar date)."""
    return local_date(value)
