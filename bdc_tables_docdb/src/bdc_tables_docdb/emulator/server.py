"""A local DocDB REST emulator that the real ``MetadataDbClient`` can talk to.

The emulator speaks the read side of the AIND DocDB REST API on loopback::

    GET  /{version}/{database}/{collection}/find?filter=&projection=&sort=&limit=&skip=
    POST /{version}/{database}/{collection}/aggregate        (JSON pipeline body)
    GET  /{version}/{database}/{collection}/count_documents?filter=
    GET  /{version}/{database}/{collection}?filter=&...      (``Client._get_records``)

Queries and pipelines run on :mod:`mongomock`, so filters, projections, sorts and aggregation
stages behave like MongoDB (within mongomock's coverage). Like the real API gateway it caps
responses: ``find`` returns at most ``page_cap`` records and fewer when the JSON payload would
exceed ``max_payload_bytes`` (the client pages on with ``skip``); a single record over the byte
cap, an oversize ``aggregate`` result or an oversize bare-collection GET give HTTP 413.
Faults (latency, 5xx, 429, dropped connections) can be injected with :class:`FaultConfig`.

Example::

    with DocDBEmulator(records) as emu:
        client = make_client(emu.url)
        client.retrieve_docdb_records(filter_query={"subject.subject_id": "123456"})
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import mongomock

from ..client import projection_with_id
from .faults import FaultConfig, FaultInjector

__all__ = [
    "DocDBEmulator",
    "DEFAULT_DATABASE",
    "DEFAULT_COLLECTION",
    "DEFAULT_VERSION",
    "read_records_file",
]

_log = logging.getLogger(__name__)

#: Database of the AIND metadata index.
DEFAULT_DATABASE = "metadata_index"
#: Collection of data asset records.
DEFAULT_COLLECTION = "data_assets"
#: API version the emulator loads records into unless told otherwise.
DEFAULT_VERSION = "v2"

_VERSION_RE = re.compile(r"^v\d+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_ENDPOINTS = ("find", "aggregate", "count_documents")
_METHODS = {"find": "GET", "aggregate": "POST", "count_documents": "GET", "get_records": "GET"}
_WRITE_STAGES = {"$out", "$merge"}
_REASONS = {
    500: "Internal server error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Endpoint request timed out",
}
# Above this many overlapping ids, load() rebuilds the collection instead of replacing one by one
# (mongomock has no _id index: each replace_one scans the whole collection).
_REBUILD_THRESHOLD = 32


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    """JSON fallback: datetimes as ISO strings, sets/tuples as lists, anything else as ``str``.

    ``str`` covers ``bson.ObjectId``, ``uuid.UUID``, ``Decimal``/``Decimal128`` and friends.
    """
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    return str(obj)


def _dumps(obj: Any) -> bytes:
    """Compact JSON bytes for a response body."""
    return json.dumps(obj, default=_json_default, separators=(",", ":")).encode("utf-8")


def _normalize_record(record: Any) -> dict[str, Any]:
    """Validate one record for loading: a dict with a string ``_id`` (generated if missing)."""
    if not isinstance(record, Mapping):
        raise TypeError(f"a DocDB record must be a JSON object, got {type(record).__name__}")
    doc = dict(record)
    rid = doc.get("_id")
    if rid is None:
        doc["_id"] = str(uuid.uuid4())
    elif isinstance(rid, Mapping) and set(rid) == {"$oid"}:
        doc["_id"] = str(rid["$oid"])
    return doc


def read_records_file(path: str | Path) -> list[dict[str, Any]]:
    """Read records from a JSON array, a single JSON object, or JSON lines (optionally gzipped).

    A directory reads every ``*.json``, ``*.jsonl``, ``*.ndjson`` (and ``.gz`` variants) in it,
    in name order.
    """
    path = Path(path)
    if path.is_dir():
        records: list[dict[str, Any]] = []
        for child in sorted(path.iterdir()):
            name = child.name.lower().removesuffix(".gz")
            if child.is_file() and name.endswith((".json", ".jsonl", ".ndjson")):
                records.extend(read_records_file(child))
        return records
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8-sig").strip()
    if not text:
        return []
    if text[0] == "[":
        data = json.loads(text)
        if not isinstance(data, list):  # pragma: no cover - "[" always parses to a list
            raise ValueError(f"{path}: expected a JSON array")
        return [dict(r) for r in data]
    try:
        single = json.loads(text)
    except json.JSONDecodeError:
        single = None
    if isinstance(single, dict):
        return [single]
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: invalid JSON line: {exc}") from exc
    return out


# --------------------------------------------------------------------------------------------
# Stats
# --------------------------------------------------------------------------------------------


class _Stats:
    """Thread-safe counters; :meth:`snapshot` gives a plain dict."""

    _KEYS = (
        "requests",
        "find",
        "aggregate",
        "count_documents",
        "get_records",
        "health",
        "not_found",
        "faults_5xx",
        "faults_429",
        "faults_drop",
        "payload_truncated",
        "payload_too_large",
        "records_returned",
        "bytes_sent",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._status: Counter[int] = Counter()

    def incr(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def status(self, code: int, nbytes: int) -> None:
        with self._lock:
            self._status[code] += 1
            self._counts["bytes_sent"] += nbytes

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._status.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            snap: dict[str, Any] = {k: self._counts.get(k, 0) for k in self._KEYS}
            snap["status"] = dict(sorted(self._status.items()))
        return snap


# --------------------------------------------------------------------------------------------
# Request routing and errors
# --------------------------------------------------------------------------------------------


class _ApiError(Exception):
    """An error answered as ``{"message": ...}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class _Route:
    endpoint: str  # find | aggregate | count_documents | get_records | health
    version: str = ""
    database: str = ""
    collection: str = ""


def _route(path: str) -> _Route | None:
    """Map a URL path to an endpoint, or ``None`` (404)."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts == ["health"]:
        return _Route("health")
    if len(parts) not in (3, 4):
        return None
    version, database, collection = parts[:3]
    if not (_VERSION_RE.match(version) and _NAME_RE.match(database) and _NAME_RE.match(collection)):
        return None
    if len(parts) == 3:
        return _Route("get_records", version, database, collection)
    if parts[3] not in _ENDPOINTS:
        return None
    return _Route(parts[3], version, database, collection)


def _json_param(params: Mapping[str, str], name: str, kind: type) -> Any:
    """Parse the JSON query parameter ``name``; absent, empty or ``null`` give ``None``."""
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _ApiError(400, f"malformed JSON in parameter '{name}': {exc}") from None
    if value is not None and not isinstance(value, kind):
        raise _ApiError(400, f"parameter '{name}' must be a JSON {kind.__name__}")
    return value


def _int_param(params: Mapping[str, str], name: str) -> int:
    """Parse a non-negative integer query parameter (absent or empty = 0)."""
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise _ApiError(400, f"parameter '{name}' must be an integer, got {raw!r}") from None
    if value < 0:
        raise _ApiError(400, f"parameter '{name}' must be >= 0, got {value}")
    return value


def _sort_param(params: Mapping[str, str]) -> list[tuple[str, int]] | None:
    """Parse ``sort``: a JSON object ``{"field": 1|-1, ...}`` or a list of ``[field, dir]``."""
    raw = params.get("sort")
    if raw is None or raw.strip() == "":
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _ApiError(400, f"malformed JSON in parameter 'sort': {exc}") from None
    if value is None:
        return None
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        items = [(p[0], p[1]) for p in value]
    else:
        raise _ApiError(400, "parameter 'sort' must be a JSON object of field: 1|-1")
    out = []
    for field, direction in items:
        if not isinstance(field, str) or direction not in (1, -1) or isinstance(direction, bool):
            raise _ApiError(400, f"invalid sort spec {field!r}: {direction!r} (use 1 or -1)")
        out.append((field, int(direction)))
    return out or None


#: Stages known to build new documents rather than edit their input in place.
_PURE_STAGES = frozenset({"$match", "$project", "$group", "$sort", "$limit", "$skip", "$count", "$sortByCount"})


def _plain_projection(stage: Mapping[str, Any]) -> bool:
    spec = stage.get("$project")
    return (len(stage) == 1 and isinstance(spec, dict) and bool(spec)
            and all(v in (0, 1) and not isinstance(v, float) for v in spec.values()))


def _aggregate(coll: mongomock.Collection, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run ``pipeline`` like ``coll.aggregate`` without mongomock's copy of the whole collection.

    A leading ``$match`` / ``$sort`` / ``$limit`` / plain ``$project`` prefix is answered through the
    id path of :func:`_page_documents` (only matching documents are touched); the remaining stages
    run in mongomock's pipeline engine. Call with the emulator's lock held.
    """
    from mongomock.aggregate import process_pipeline

    stages = list(pipeline)
    match: dict[str, Any] = {}
    if stages and set(stages[0]) == {"$match"} and isinstance(stages[0]["$match"], dict):
        match = stages.pop(0)["$match"]
    sort = None
    limit = None
    if stages and set(stages[0]) == {"$sort"} and isinstance(stages[0]["$sort"], dict):
        sort = list(stages.pop(0)["$sort"].items())
        if stages and set(stages[0]) == {"$limit"}:
            limit = int(stages.pop(0)["$limit"])
    projection = stages.pop(0)["$project"] if stages and _plain_projection(stages[0]) else None
    ids = [d["_id"] for d in coll.find(match, {"_id": 1}, sort=sort)]
    if limit is not None:
        ids = ids[:limit]
    docs = list(_page_documents(coll, ids, projection))
    if not stages:
        return docs
    if not all(set(stage) <= _PURE_STAGES for stage in stages):
        import copy

        docs = copy.deepcopy(docs)
    return list(process_pipeline(docs, coll.database, stages, None))


def _page_documents(
    coll: mongomock.Collection, page_ids: list[Any], projection: Mapping[str, Any] | None
) -> Iterator[dict[str, Any]]:
    """The documents of ``page_ids``, in that order, with ``projection`` applied.

    Call with the emulator's lock held: without a projection the stored documents themselves
    are yielded (to be encoded, never mutated). Uses mongomock's id-keyed store when available
    (O(1) per id, no deep copy); falls back to a public ``$in`` query otherwise.
    """
    if not page_ids:
        return
    fetch, drop_id = projection_with_id(projection)
    store = getattr(coll, "_store", None)
    copy_fields = getattr(coll, "_copy_only_fields", None)
    if store is not None and callable(copy_fields) and hasattr(store, "__getitem__"):
        for rid in page_ids:
            try:
                doc = store[rid]
            except KeyError:
                continue
            if fetch is not None:
                doc = copy_fields(doc, dict(fetch), dict)
                if drop_id:
                    doc.pop("_id", None)
            elif drop_id:
                doc = {k: v for k, v in doc.items() if k != "_id"}
            yield doc
        return
    by_id = {d["_id"]: d for d in coll.find({"_id": {"$in": page_ids}}, fetch)}
    for rid in page_ids:
        if rid in by_id:
            doc = by_id[rid]
            if drop_id:
                doc.pop("_id", None)
            yield doc


def _query_errors(exc: Exception) -> _ApiError:
    """Turn a mongomock failure into an API error."""
    if isinstance(exc, NotImplementedError):
        return _ApiError(501, f"not supported by the emulator (mongomock): {exc}")
    return _ApiError(400, f"query error: {exc}")


_QUERY_EXCEPTIONS = (
    mongomock.OperationFailure,
    ValueError,
    TypeError,
    KeyError,
    NotImplementedError,
)


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its emulator."""

    daemon_threads = True
    request_queue_size = 64
    emulator: DocDBEmulator


class _Handler(BaseHTTPRequestHandler):
    """One HTTP/1.1 keep-alive connection to the emulator."""

    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "bdc-docdb-emulator"
    timeout = 60  # idle keep-alive connections are closed after this many seconds
    disable_nagle_algorithm = True  # headers and body go out in two writes: avoid 40 ms stalls

    def setup(self) -> None:
        super().setup()
        self.server.emulator._track_connection(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._track_connection(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        _log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise _ApiError(400, "invalid Content-Length") from None
        return self.rfile.read(n) if n > 0 else b""

    def _handle(self, method: str) -> None:
        emu = self.server.emulator
        emu._stats.incr("requests")
        try:
            body = self._read_body()
        except _ApiError as exc:
            self.close_connection = True
            self._send(exc.status, _dumps({"message": exc.message}))
            return
        split = urlsplit(self.path)
        route = _route(split.path)
        emu._stats.incr(route.endpoint if route else "not_found")

        delay = emu._latency_seconds()
        if delay > 0:
            time.sleep(delay)
        decision = emu._injector.decide(
            f"{method} {self.path} {hashlib.sha256(body).hexdigest()}" if emu.faults.keyed else None
        )
        if decision.kind == "drop":
            emu._stats.incr("faults_drop")
            self._drop()
            return
        if decision.kind == "error_5xx":
            emu._stats.incr("faults_5xx")
            status = decision.status or 500
            self._send(status, _dumps({"message": _REASONS.get(status, "Server error")}))
            return
        if decision.kind == "error_429":
            emu._stats.incr("faults_429")
            retry_after = str(emu._injector.config.retry_after_s)
            self._send(429, _dumps({"message": "Too Many Requests"}), {"Retry-After": retry_after})
            return

        try:
            if route is None:
                raise _ApiError(404, f"not found: {method} {split.path}")
            params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            status, payload = emu._dispatch(method, route, params, body)
            headers: dict[str, str] = {}
        except _ApiError as exc:
            status, payload, headers = exc.status, _dumps({"message": exc.message}), exc.headers
        except Exception as exc:  # noqa: BLE001 - a server bug must still answer
            _log.exception("DocDB emulator error on %s %s", method, self.path)
            status, payload, headers = 500, _dumps({"message": f"internal error: {exc!r}"}), {}
        self._send(status, payload, headers)

    def _send(self, status: int, payload: bytes, headers: Mapping[str, str] | None = None) -> None:
        # counted before the bytes leave: a client that has its answer always sees it in the stats
        self.server.emulator._stats.status(status, len(payload))
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # client went away
            self.close_connection = True

    def _drop(self) -> None:
        """Close the connection without sending a single byte."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------


class DocDBEmulator:
    """A DocDB REST API on ``127.0.0.1``, backed by mongomock, for tests and demos.

    Each ``(version, database, collection)`` is its own mongomock collection, so ``v1`` and
    ``v2`` are independent. ``records`` are loaded into ``version`` of the default database
    (``metadata_index``) and collection (``data_assets``).

    Args:
        records: records to load at construction (dicts; a missing ``_id`` gets a uuid string).
        version: API version the constructor records and the ``load``/``insert``/... helpers use
            by default.
        page_cap: most records one ``find`` response returns (``None`` or 0 = no cap).
        max_payload_bytes: byte cap of a response body (``None`` = no cap). ``find`` returns
            fewer records to fit; one record over the cap, or an oversize ``aggregate`` or
            bare-collection GET, gives HTTP 413.
        faults: fault injection (see :class:`FaultConfig`); ``None`` = none.
        latency_ms: delay added to every request (``FaultConfig.latency_ms`` adds to it).
        find_overflow: what ``find`` does when a page would exceed ``max_payload_bytes``:
            ``"truncate"`` (return fewer records, like the real gateway) or ``"413"`` (answer
            HTTP 413, a stricter gateway; useful to test page-size back-off).
        port: TCP port to listen on; 0 picks a free one.
        database: default database of the helpers.
        collection: default collection of the helpers.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        records: Iterable[Mapping[str, Any]] | None = None,
        *,
        version: str = DEFAULT_VERSION,
        page_cap: int | None = 500,
        max_payload_bytes: int | None = None,
        faults: FaultConfig | None = None,
        latency_ms: float = 0,
        find_overflow: Literal["truncate", "413"] = "truncate",
        port: int = 0,
        database: str = DEFAULT_DATABASE,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        """Create the emulator (not yet listening) and load ``records``."""
        if not _VERSION_RE.match(version):
            raise ValueError(f"version must look like 'v2', got {version!r}")
        if page_cap is not None and page_cap < 0:
            raise ValueError("page_cap must be >= 0 or None")
        if max_payload_bytes is not None and max_payload_bytes <= 0:
            raise ValueError("max_payload_bytes must be > 0 or None")
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if find_overflow not in ("truncate", "413"):
            raise ValueError(f"find_overflow must be 'truncate' or '413', got {find_overflow!r}")
        self.find_overflow = find_overflow
        self.version = version
        self.database = database
        self.collection_name = collection
        self.page_cap = page_cap or None
        self.max_payload_bytes = max_payload_bytes
        self.latency_ms = latency_ms
        self._port = port
        self._db_lock = threading.RLock()
        self._client: mongomock.MongoClient = mongomock.MongoClient()
        self._stats = _Stats()
        self._injector = FaultInjector(faults)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        if records is not None:
            self.load(records)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> DocDBEmulator:
        """Start serving in a daemon thread (no-op if already running); returns ``self``."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.emulator = self
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"docdb-emulator:{server.server_address[1]}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open connections (no-op if not running)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        with self._conn_lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> DocDBEmulator:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    @property
    def running(self) -> bool:
        """True while the server is listening."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The TCP port the server listens on (only while running)."""
        if self._server is None:
            raise RuntimeError("the DocDB emulator is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the ``host`` a ``MetadataDbClient`` needs (with a rewrite)."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the URL :func:`bdc_tables_docdb.client.make_client` takes."""
        return f"http://{self.host}"

    # -- data ----------------------------------------------------------------------------------

    def collection(
        self,
        version: str | None = None,
        *,
        database: str | None = None,
        collection: str | None = None,
    ) -> mongomock.Collection:
        """The mongomock collection behind ``/{version}/{database}/{collection}``.

        Direct use bypasses the emulator's lock; prefer the helpers while the server runs.
        """
        version = version or self.version
        database = database or self.database
        collection = collection or self.collection_name
        return self._client[f"{database}__{version}"][collection]

    def load(
        self,
        records: Iterable[Mapping[str, Any]],
        version: str | None = None,
        *,
        database: str | None = None,
        collection: str | None = None,
    ) -> int:
        """Upsert ``records`` (by ``_id``) into a collection; returns how many were given.

        Records without ``_id`` get a uuid string; ``{"$oid": ...}`` ids become strings.
        """
        docs = [_normalize_record(r) for r in records]
        if not docs:
            return 0
        coll = self.collection(version, database=database, collection=collection)
        with self._db_lock:
            incoming: dict[Any, dict[str, Any]] = {}
            for doc in docs:  # a later duplicate in the input wins
                incoming[doc["_id"]] = doc
            existing = {d["_id"] for d in coll.find({}, {"_id": 1})}
            overlap = [i for i in incoming if i in existing]
            if len(overlap) > _REBUILD_THRESHOLD:
                kept = [d for d in coll.find({}) if d["_id"] not in incoming]
                coll.drop()
                coll = self.collection(version, database=database, collection=collection)
                coll.insert_many(kept + list(incoming.values()))
            else:
                for rid in overlap:
                    coll.replace_one({"_id": rid}, incoming[rid])
                new = [d for i, d in incoming.items() if i not in existing]
                if new:
                    coll.insert_many(new)
        return len(docs)

    def load_file(
        self,
        path: str | Path,
        version: str | None = None,
        *,
        database: str | None = None,
        collection: str | None = None,
    ) -> int:
        """Load records from a file (see :func:`read_records_file`); returns how many."""
        return self.load(read_records_file(path), version, database=database, collection=collection)

    def insert(
        self,
        records: Iterable[Mapping[str, Any]],
        version: str | None = None,
        *,
        database: str | None = None,
        collection: str | None = None,
    ) -> list[Any]:
        """Insert new records (a duplicate ``_id`` raises); returns their ids."""
        docs = [_normalize_record(r) for r in records]
        if not docs:
            return []
        coll = self.collection(version, database=database, collection=collection)
        with self._db_lock:
            coll.insert_many(docs)
        return [d["_id"] for d in docs]

    def replace(
        self,
        records: Iterable[Mapping[str, Any]],
        version: str | None = None,
        *,
        database: str | None = None,
        collection: str | None = None,
    ) -> int:
        """Replace records by ``_id`` (inserting those that do not exist); returns how many
        already existed."""
        docs = [_normalize_record(r) for r in records]
        coll = self.collection(version, database=database, collection=collection)
        matched = 0
        with self._db_lock:
            for doc in docs:
                matched += coll.replace_one({"_id": doc["_id"]}, doc, upsert=True).matched_count
        return matched

    def delete(
        self,
        ids: Any,
        version: str | None = None,
        *,
        database: str | None = None,
        collection: str | None = None,
    ) -> int:
        """Delete records by ``_id`` (one id or an iterable of ids); returns how many."""
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            id_list = [ids]
        else:
            id_list = list(ids)
        if not id_list:
            return 0
        coll = self.collection(version, database=database, collection=collection)
        with self._db_lock:
            return coll.delete_many({"_id": {"$in": id_list}}).deleted_count

    def clear(
        self,
        version: str | None = None,
        *,
        database: str | None = None,
        collection: str | None = None,
    ) -> None:
        """Remove every record of a collection."""
        coll = self.collection(version, database=database, collection=collection)
        with self._db_lock:
            coll.delete_many({})

    def count(
        self,
        version: str | None = None,
        *,
        database: str | None = None,
        collection: str | None = None,
    ) -> int:
        """Number of records in a collection."""
        coll = self.collection(version, database=database, collection=collection)
        with self._db_lock:
            return coll.count_documents({})

    # -- stats and faults ----------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the request counters.

        Keys: ``requests`` (all requests), per endpoint ``find``, ``aggregate``,
        ``count_documents``, ``get_records``, ``health``, ``not_found`` (counted on arrival, so
        faulted requests are included), injected faults ``faults_5xx``, ``faults_429``,
        ``faults_drop``, ``payload_truncated`` (find pages shortened by the byte cap),
        ``payload_too_large`` (413s), ``records_returned`` (find/get records sent),
        ``bytes_sent`` and ``status`` (``{status_code: count}`` of responses sent).
        """
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Zero every counter."""
        self._stats.reset()

    @property
    def faults(self) -> FaultConfig:
        """The active fault configuration."""
        return self._injector.config

    def set_faults(self, faults: FaultConfig | None) -> None:
        """Switch fault injection (``None`` = off); the RNG restarts from the config's seed."""
        self._injector.reset(faults)

    def _latency_seconds(self) -> float:
        return (self.latency_ms + self._injector.config.latency_ms) / 1000.0

    def _track_connection(self, conn: socket.socket, *, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- API -------------------------------------------------------------------------------------

    def _dispatch(
        self, method: str, route: _Route, params: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """Answer one routed request: ``(status, JSON body)``; errors raise :class:`_ApiError`."""
        if route.endpoint == "health":
            if method != "GET":
                raise _ApiError(405, f"method {method} not allowed", {"Allow": "GET"})
            return 200, _dumps({"status": "ok", "service": "bdc-docdb-emulator"})
        allowed = _METHODS[route.endpoint]
        if method != allowed:
            raise _ApiError(
                405, f"method {method} not allowed on {route.endpoint}", {"Allow": allowed}
            )
        coll = self.collection(route.version, database=route.database, collection=route.collection)
        if route.endpoint == "find":
            return self._api_find(coll, params, paged=True)
        if route.endpoint == "get_records":
            return self._api_find(coll, params, paged=False)
        if route.endpoint == "count_documents":
            return self._api_count(coll, params)
        return self._api_aggregate(coll, body)

    def _api_find(
        self, coll: mongomock.Collection, params: Mapping[str, str], *, paged: bool
    ) -> tuple[int, bytes]:
        filter_query = _json_param(params, "filter", dict) or {}
        projection = _json_param(params, "projection", dict) or None
        sort = _sort_param(params)
        limit = _int_param(params, "limit")
        skip = _int_param(params, "skip")
        want = limit or None
        if paged and self.page_cap:
            want = min(want, self.page_cap) if want else self.page_cap
        cap = self.max_payload_bytes
        parts: list[bytes] = []
        size = 2  # "[" and "]"
        try:
            with self._db_lock:
                # mongomock deep-copies every document a cursor yields (slowly), so take the
                # ordered ids of all matches first (cheap copies), then fetch only the page.
                ids = [d["_id"] for d in coll.find(filter_query, {"_id": 1}, sort=sort)]
                page_ids = ids[skip : skip + want] if want else ids[skip:]
                for doc in _page_documents(coll, page_ids, projection):
                    encoded = _dumps(doc)
                    added = len(encoded) + (1 if parts else 0)
                    if cap is not None and size + added > cap:
                        if paged and parts and self.find_overflow == "truncate":
                            self._stats.incr("payload_truncated")
                            break
                        self._stats.incr("payload_too_large")
                        what = "a single record" if paged and not parts else "the response"
                        raise _ApiError(
                            413, f"payload too large: {what} exceeds the limit of {cap} bytes"
                        )
                    parts.append(encoded)
                    size += added
        except _QUERY_EXCEPTIONS as exc:
            raise _query_errors(exc) from None
        self._stats.incr("records_returned", len(parts))
        return 200, b"[" + b",".join(parts) + b"]"

    def _api_count(
        self, coll: mongomock.Collection, params: Mapping[str, str]
    ) -> tuple[int, bytes]:
        filter_query = _json_param(params, "filter", dict)
        try:
            with self._db_lock:
                total = coll.count_documents({})
                filtered = total if filter_query is None else coll.count_documents(filter_query)
        except _QUERY_EXCEPTIONS as exc:
            raise _query_errors(exc) from None
        return 200, _dumps({"total_record_count": total, "filtered_record_count": filtered})

    def _api_aggregate(self, coll: mongomock.Collection, body: bytes) -> tuple[int, bytes]:
        if not body.strip():
            raise _ApiError(400, "aggregate needs a JSON array pipeline as the request body")
        try:
            pipeline = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _ApiError(400, f"malformed JSON pipeline: {exc}") from None
        if not isinstance(pipeline, list) or not all(isinstance(s, dict) for s in pipeline):
            raise _ApiError(400, "the aggregate pipeline must be a JSON array of stage objects")
        for stage in pipeline:
            writes = sorted(_WRITE_STAGES & set(stage))
            if writes:
                raise _ApiError(400, f"write stages are not allowed: {writes}")
        try:
            with self._db_lock:
                result = _aggregate(coll, pipeline)
        except _QUERY_EXCEPTIONS as exc:
            raise _query_errors(exc) from None
        payload = _dumps(result)
        cap = self.max_payload_bytes
        if cap is not None and len(payload) > cap:
            self._stats.incr("payload_too_large")
            raise _ApiError(
                413, f"payload too large: aggregate result of {len(payload)} bytes exceeds {cap}"
            )
        return 200, payload
