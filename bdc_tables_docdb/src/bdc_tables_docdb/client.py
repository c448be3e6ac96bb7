"""DocDB client factory and stable paging helpers.

:func:`make_client` builds an ``aind_data_access_api`` ``MetadataDbClient`` for the real API
(``https://host``) or for a local emulator (``http://127.0.0.1:PORT``). The upstream client
hard-codes ``https://`` in every URL, so for an ``http`` URL the client's ``requests.Session``
gets a mounted transport adapter that rewrites ``https://HOST/...`` to ``http://HOST/...``.
Every request also gets a default timeout.

:func:`iter_pages_by_id` pages through a query by ``_id`` (``$gt`` the last id seen) instead of
a growing ``skip``: it never returns a record twice or skips one when records are inserted or
deleted between pages, copes with the gateway returning fewer records than asked, and halves the
page size on HTTP 413. :func:`find_in_batches` runs one ``$in`` query per batch of values.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

if TYPE_CHECKING:
    from aind_data_access_api.document_db import Client, MetadataDbClient

__all__ = [
    "DEFAULT_DOCDB_URL",
    "DOCDB_URL_ENV",
    "make_client",
    "resolve_docdb_url",
    "iter_pages_by_id",
    "find_in_batches",
    "projection_with_id",
]

#: The AIND DocDB API used when neither ``url`` nor ``$BDC_DOCDB_URL`` is given.
DEFAULT_DOCDB_URL = "https://api.allenneuraldynamics.org"
#: Environment variable holding the DocDB URL (read at call time).
DOCDB_URL_ENV = "BDC_DOCDB_URL"

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_START = object()


#: Connections kept per host: the sync runner's most partition builds at once (``default_workers``).
POOL_SIZE = 32


class _DocDBAdapter(HTTPAdapter):
    """HTTPAdapter with a default timeout and an optional ``https`` → ``http`` rewrite.

    Args:
        timeout: timeout applied to requests sent without one.
        rewrite_from: URL prefix to rewrite (e.g. ``https://127.0.0.1:8765/``), or ``None``.
        rewrite_to: replacement prefix (e.g. ``http://127.0.0.1:8765/``).
        bypass_proxies: send rewritten requests directly (used for loopback hosts).
    """

    def __init__(
        self,
        timeout: float | tuple[float, float] | None,
        rewrite_from: str | None = None,
        rewrite_to: str | None = None,
        *,
        bypass_proxies: bool = False,
    ) -> None:
        # one client serves every partition build of a sync at once (up to 32 threads): as many
        # kept connections per host, not urllib3's default 10 (which discards the rest, warning)
        super().__init__(pool_maxsize=POOL_SIZE)
        self.default_timeout = timeout
        self.rewrite_from = rewrite_from
        self.rewrite_to = rewrite_to
        self.bypass_proxies = bypass_proxies

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send ``request``, rewriting its URL and filling in the default timeout."""
        if kwargs.get("timeout") is None and not args:
            kwargs["timeout"] = self.default_timeout
        url = request.url or ""
        if self.rewrite_from and self.rewrite_to and url.lower().startswith(self.rewrite_from):
            request = request.copy()
            request.url = self.rewrite_to + url[len(self.rewrite_from) :]
            if self.bypass_proxies:
                kwargs["proxies"] = {}
        return super().send(request, *args, **kwargs)


def resolve_docdb_url(url: str | None = None) -> tuple[str, str]:
    """Split a DocDB URL into ``(scheme, host)`` as ``MetadataDbClient`` wants the host.

    ``url`` defaults to ``$BDC_DOCDB_URL`` (read now), then :data:`DEFAULT_DOCDB_URL`. A URL
    without a scheme is taken as ``https``. A path prefix is kept in the host
    (``https://h/stage`` → ``h/stage``), which the client then prefixes to ``/{version}/...``.
    """
    raw = url if url is not None else (os.environ.get(DOCDB_URL_ENV) or DEFAULT_DOCDB_URL)
    raw = raw.strip()
    if not raw:
        raise ValueError("empty DocDB URL")
    if "://" not in raw:
        raw = "https://" + raw
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"DocDB URL must be http:// or https://, got {raw!r}")
    if not parts.netloc:
        raise ValueError(f"DocDB URL has no host: {raw!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"DocDB URL must not have a query or fragment: {raw!r}")
    return scheme, parts.netloc + parts.path.rstrip("/")


def make_client(
    url: str | None = None,
    version: str = "v2",
    *,
    timeout: float = 60,
    database: str = "metadata_index",
    collection: str = "data_assets",
) -> MetadataDbClient:
    """A ``MetadataDbClient`` for the DocDB at ``url``.

    Args:
        url: ``https://host`` for the real API, ``http://127.0.0.1:PORT`` for a
            :class:`~bdc_tables_docdb.emulator.DocDBEmulator`. Defaults to ``$BDC_DOCDB_URL``
            (read at call time), then ``https://api.allenneuraldynamics.org``.
        version: API version (``v1`` or ``v2``).
        timeout: seconds applied to every request that does not set its own timeout.
        database: DocDB database.
        collection: DocDB collection.

    For an ``http`` URL, the client's session rewrites the client's hard-coded ``https://HOST``
    URLs to ``http://HOST`` and, for loopback hosts, ignores proxy settings.
    """
    from aind_data_access_api.document_db import MetadataDbClient

    scheme, host = resolve_docdb_url(url)
    session = requests.Session()
    plain = _DocDBAdapter(timeout)
    session.mount("https://", plain)
    session.mount("http://", plain)
    if scheme == "http":
        hostname = (urlsplit(f"http://{host}").hostname or "").lower()
        session.mount(
            f"https://{host}/",
            _DocDBAdapter(
                timeout,
                rewrite_from=f"https://{host}/".lower(),
                rewrite_to=f"http://{host}/",
                bypass_proxies=hostname in _LOOPBACK,
            ),
        )
    return MetadataDbClient(
        host=host,
        database=database,
        collection=collection,
        version=version,
        session=session,
    )


def projection_with_id(projection: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    """A copy of ``projection`` that keeps ``_id`` (paging needs it), and whether the caller
    excluded ``_id`` (so it must be dropped from the results)."""
    if not projection:
        return None, False
    if projection.get("_id", 1) != 0:
        return dict(projection), False
    rest = {k: v for k, v in projection.items() if k != "_id"}
    return (rest or None), True


def _http_status(exc: requests.HTTPError) -> int | None:
    """The status code of an HTTPError, if it carries a response."""
    response = getattr(exc, "response", None)
    return None if response is None else response.status_code


def _iter_pages_with_id(
    client: Client,
    filter_query: Mapping[str, Any] | None,
    projection: dict[str, Any] | None,
    page_size: int,
) -> Iterator[list[dict[str, Any]]]:
    """:func:`iter_pages_by_id` without the ``_id`` handling of the projection."""
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    base = dict(filter_query) if filter_query else {}
    last_id: Any = _START
    size = page_size
    while True:
        if last_id is _START:
            query = base
        else:
            after = {"_id": {"$gt": last_id}}
            query = {"$and": [base, after]} if base else after
        try:
            page = client._find_records(
                filter_query=query, projection=projection, sort={"_id": 1}, limit=size
            )
        except requests.HTTPError as exc:
            if _http_status(exc) == 413 and size > 1:
                size = max(1, size // 2)
                continue
            raise
        if not page:
            return
        try:
            new_last = page[-1]["_id"]
        except (KeyError, TypeError):
            raise RuntimeError("DocDB returned a record without _id; cannot page by _id") from None
        if last_id is not _START and new_last == last_id:
            raise RuntimeError(f"DocDB paging made no progress past _id {last_id!r}")
        last_id = new_last
        yield page


def iter_pages_by_id(
    client: Client,
    filter: Mapping[str, Any] | None = None,  # noqa: A002 - mirrors the Mongo vocabulary
    projection: Mapping[str, Any] | None = None,
    page_size: int = 500,
) -> Iterator[list[dict[str, Any]]]:
    """Yield the records matching ``filter`` page by page, in ``_id`` order.

    Each request is ``find(filter AND _id > last_id, sort={_id: 1}, limit=page_size)`` through
    ``client._find_records``. A page shorter than asked (the gateway's payload cap) just moves
    on from its last id; an empty page ends the iteration. HTTP 413 halves the page size (for
    the rest of the iteration) and retries; at size 1 the error is raised.

    Records present for the whole iteration are yielded exactly once even if others are
    inserted or deleted between pages; records inserted behind the cursor are not seen.
    ``_id`` values must be of one BSON type (DocDB ids are strings). If ``projection`` excludes
    ``_id``, it is fetched anyway for paging and removed from the yielded records.
    """
    fetch, drop_id = projection_with_id(projection)
    for page in _iter_pages_with_id(client, filter, fetch, page_size):
        if drop_id:
            for record in page:
                record.pop("_id", None)
        yield page


def find_in_batches(
    client: Client,
    field: str,
    values: Iterable[Any],
    projection: Mapping[str, Any] | None = None,
    batch_size: int = 100,
    *,
    page_size: int = 500,
) -> list[dict[str, Any]]:
    """All records whose ``field`` is in ``values``, one ``$in`` query per batch of values.

    Values are de-duplicated (order kept); each batch is paged with :func:`iter_pages_by_id`;
    a record matched by several batches (array fields) is returned once. The result follows
    the batches, each in ``_id`` order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    unique = list(dict.fromkeys(values))
    fetch, drop_id = projection_with_id(projection)
    seen: set[Any] = set()
    records: list[dict[str, Any]] = []
    for start in range(0, len(unique), batch_size):
        batch = unique[start : start + batch_size]
        for page in _iter_pages_with_id(client, {field: {"$in": batch}}, fetch, page_size):
            for record in page:
                rid = record["_id"]
                if rid in seen:
                    continue
                seen.add(rid)
                records.append(record)
    if drop_id:
        for record in records:
            record.pop("_id", None)
    return records
