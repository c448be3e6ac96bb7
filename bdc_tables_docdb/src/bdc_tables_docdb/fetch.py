"""Fetching from DocDB for the table builds: stable sweeps, batched ``$in`` lookups, retries.

Every request goes through the real ``MetadataDbClient`` (see :mod:`bdc_tables_docdb.client`) and
through the sync run's retry policy (``ctx.call``), one request at a time, so a transient error
costs one request, not a whole sweep.

* :func:`sweep` pages a filter by ``_id`` (stable under concurrent writes, no growing ``skip``).
* :func:`fetch_by` looks values up with one aggregate ``$match``/``$in`` per batch (as the client's
  own ``fetch_records_by_filter_list``); a gateway "payload too large" answer halves the batch,
  down to a paged find for one value.
* :func:`modified_listing` lists every ``_id`` with its ``_last_modified`` in one aggregate
  (split on 413); the asset_basics build does it once per run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from bdc_tables_docdb.client import iter_pages_by_id, make_client

__all__ = ["Source", "source_for", "sweep", "fetch_by", "modified_listing", "aggregate"]

_clients: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


class _RetryingClient:
    """The parts of a MetadataDbClient the pager uses, each request retried through ``call``."""

    def __init__(self, client: Any, call: Callable[..., Any]):
        self._client = client
        self._call = call

    def _find_records(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self._call(self._client._find_records, **kwargs)

    def _aggregate_records(self, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._call(self._client._aggregate_records, pipeline)


class Source:
    """DocDB at one URL and API version, with the run's retry policy."""

    def __init__(self, url: str, version: str, call: Callable[..., Any], page_size: int = 500):
        key = (url, version)
        with _lock:
            if key not in _clients:
                _clients[key] = make_client(url, version)
        self.client = _RetryingClient(_clients[key], call)
        self.page_size = page_size


def source_for(ctx: Any, version: str = "v2") -> Source:
    """The DocDB source for a build context (URL from the settings, retries from the run)."""
    from bdc_tables_docdb.settings import current_settings

    settings = current_settings()
    return Source(settings.docdb_url, version, ctx.call, settings.page_size)


def sweep(source: Source, filter_query: Mapping[str, Any] | None, projection: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every record matching ``filter_query``, paged by ``_id``."""
    for page in iter_pages_by_id(source.client, filter_query, projection, page_size=source.page_size):
        yield from page


def aggregate(source: Source, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One aggregate request (retried on transient errors)."""
    return source.client._aggregate_records(pipeline)


def fetch_by(
    source: Source,
    field: str,
    values: Iterable[Any],
    projection: Mapping[str, Any] | None,
    batch_size: int = 100,
    *,
    paged_fallback: bool = True,
) -> list[dict[str, Any]]:
    """Records whose ``field`` is in ``values``: one aggregate ``$match $in`` per batch.

    A 413 (payload too large) splits the batch in two and goes on; the smaller size is kept for
    the batches that follow, so a gateway cap costs one failed request per halving, not one per
    batch. When a single value's records are still too large for one aggregate response (a
    subject with hundreds of assets, say), that value is fetched with a paged find instead
    (``paged_fallback``; :func:`sweep` copes with short pages and halves its page on 413), so
    nothing is truncated; only one record larger than the cap raises. A record matched by
    several batches (an array field) is returned once.
    """
    import requests

    unique = list(dict.fromkeys(v for v in values if v is not None))
    size = max(1, batch_size)
    start = 0
    seen: set[Any] = set()
    out: list[dict[str, Any]] = []
    while start < len(unique):
        batch = unique[start:start + size]
        pipeline: list[dict[str, Any]] = [{"$match": {field: {"$in": batch}}}]
        if projection:
            pipeline.append({"$project": dict(projection)})
        try:
            records: Iterable[dict[str, Any]] = aggregate(source, pipeline)
        except requests.HTTPError as exc:
            if _status(exc) != 413:
                raise
            if len(batch) > 1:
                size = max(1, len(batch) // 2)
                continue
            if not paged_fallback:
                raise
            records = sweep(source, {field: batch[0]}, projection or {})
        start += len(batch)
        for record in records:
            rid = record.get("_id")
            if rid is not None and rid in seen:
                continue
            seen.add(rid)
            out.append(record)
    return out


def modified_listing(source: Source, chunk: int = 0) -> dict[str, str | None]:
    """``_id`` → ``_last_modified`` of every record.

    One aggregate when the gateway allows the payload; on 413 the listing is taken in ``_id``
    ranges (``$match _id > last``, ``$sort``, ``$limit``), halving the range size until it fits.
    """
    import requests

    project = {"$project": {"_id": 1, "_last_modified": 1}}
    if chunk <= 0:
        try:
            rows = aggregate(source, [project])
            return {r["_id"]: r.get("_last_modified") for r in rows}
        except requests.HTTPError as exc:
            if _status(exc) != 413:
                raise
        chunk = 50_000
    out: dict[str, str | None] = {}
    last: Any = None
    while True:
        match = [{"$match": {"_id": {"$gt": last}}}] if last is not None else []
        try:
            rows = aggregate(source, [*match, {"$sort": {"_id": 1}}, {"$limit": chunk}, project])
        except requests.HTTPError as exc:
            if _status(exc) == 413 and chunk > 1:
                chunk //= 2
                continue
            raise
        for r in rows:
            out[r["_id"]] = r.get("_last_modified")
        if len(rows) < chunk:
            return out
        last = rows[-1]["_id"]
