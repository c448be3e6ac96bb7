"""A fault-injecting HTTP proxy for S3 on loopback: forwards to moto, or answers an S3 error instead.

:class:`FaultProxy` is a threaded HTTP/1.1 server on ``127.0.0.1`` standing between an S3 client
(boto3, pyarrow's S3 filesystem) and an upstream S3 endpoint (moto's server). Point the client's
endpoint (``AWS_ENDPOINT_URL``) at :attr:`FaultProxy.url`. For each request it either forwards the
request unchanged and relays the answer, or, with a seeded probability, answers a proper S3 XML
error itself *without forwarding* (so the faulted request had no effect upstream, as S3 does with
``SlowDown``)::

    503 SlowDown        "Please reduce your request rate."
    500 InternalError   "We encountered an internal error. Please try again."

Decisions are reproducible under any thread interleaving: the fault of a request is drawn from an
RNG seeded with ``(seed, method, path and query, how many times this exact request was seen)``,
not from one shared sequence. ``max_consecutive`` bounds how many times in a row one request
(same method, path and query) is faulted: with a bound below the client's own attempts, every
request eventually succeeds, and the test proves the retrying without being flaky.
``first_attempt`` picks requests whose *first* attempt is always answered ``SlowDown`` (say,
every data file upload): a fault each of them is certain to meet. ``refuse`` picks requests
always answered ``403 AccessDenied`` (say, server-side copies from another bucket), as S3 answers
a request its policies deny.

:attr:`FaultProxy.stats` counts requests, forwarded requests and faults, in total and per
(client, method) — the client is ``botocore`` or ``aws-sdk-cpp`` (pyarrow) from the User-Agent —
and :meth:`FaultProxy.faults_on` counts faults whose path contains a substring (a table name).
"""

from __future__ import annotations

import http.client
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "S3_FAULTS"]

#: The S3 errors the proxy answers: (status, code, message).
S3_FAULTS: dict[str, tuple[int, str, str]] = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "internal": (500, "InternalError", "We encountered an internal error. Please try again."),
    "denied": (403, "AccessDenied", "Access Denied"),
}

#: The stats counter of each answered error code.
_KINDS = {code: kind for kind, (_status, code, _message) in S3_FAULTS.items()}

#: Headers that belong to one hop (never forwarded either way).
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "trailers", "transfer-encoding", "upgrade", "expect", "proxy-connection"}


def _client_of(user_agent: str) -> str:
    """``botocore``, ``aws-sdk-cpp`` (pyarrow) or ``other``, from a User-Agent header."""
    agent = user_agent.lower()
    if "botocore" in agent or "boto3" in agent:
        return "botocore"
    if "aws-sdk-cpp" in agent:
        return "aws-sdk-cpp"
    return "other"


class FaultProxy:
    """A threaded HTTP proxy on ``127.0.0.1`` in front of ``upstream`` that injects S3 errors.

    Args:
        upstream: the S3 endpoint to forward to (``http://127.0.0.1:PORT``, moto's server).
        slowdown_rate: probability of answering ``503 SlowDown`` instead of forwarding.
        error_rate: probability of answering ``500 InternalError`` instead of forwarding.
        seed: seed of the fault decisions.
        max_consecutive: the most times in a row one request is faulted (``None``: no bound).
        methods: HTTP methods that may be faulted (default: all).
        first_attempt: ``(method, path, headers) -> bool``: requests whose first attempt is always
            answered ``503 SlowDown`` (then the rates apply).
        refuse: ``(method, path, headers) -> bool``: requests always answered ``403 AccessDenied``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, upstream: str, *, slowdown_rate: float = 0.0, error_rate: float = 0.0, seed: int = 0,
                 max_consecutive: int | None = 2, methods: frozenset[str] | None = None,
                 first_attempt: Callable[[str, str, Mapping[str, str]], bool] | None = None,
                 refuse: Callable[[str, str, Mapping[str, str]], bool] | None = None):
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the upstream must be http://host:port, got {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._seen: Counter[tuple[str, str]] = Counter()
        self._streak: Counter[tuple[str, str]] = Counter()
        self._counts: Counter[str] = Counter()
        self._by_client: Counter[tuple[str, str, str]] = Counter()  # (client, method, outcome)
        self._fault_paths: list[tuple[str, str, str]] = []  # (method, path, code)
        self.configure(slowdown_rate=slowdown_rate, error_rate=error_rate, seed=seed,
                       max_consecutive=max_consecutive, methods=methods, first_attempt=first_attempt,
                       refuse=refuse)

    # -- configuration and stats ------------------------------------------------------------------

    def configure(self, *, slowdown_rate: float = 0.0, error_rate: float = 0.0, seed: int = 0,
                  max_consecutive: int | None = 2, methods: frozenset[str] | None = None,
                  first_attempt: Callable[[str, str, Mapping[str, str]], bool] | None = None,
                  refuse: Callable[[str, str, Mapping[str, str]], bool] | None = None) -> None:
        """Change the faults (no argument switches them off); the per-request history restarts."""
        if not (0 <= slowdown_rate and 0 <= error_rate and slowdown_rate + error_rate <= 1):
            raise ValueError("fault rates must be >= 0 and sum to at most 1")
        with self._lock:
            self.slowdown_rate, self.error_rate, self.seed = slowdown_rate, error_rate, seed
            self.max_consecutive = max_consecutive
            self.methods = frozenset(m.upper() for m in methods) if methods else None
            self.first_attempt = first_attempt
            self.refuse = refuse
            self._seen.clear()
            self._streak.clear()

    def reset_stats(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._counts.clear()
            self._by_client.clear()
            self._fault_paths.clear()

    @property
    def stats(self) -> dict[str, Any]:
        """``requests``, ``forwarded``, ``faults``, ``slowdown``, ``internal``, ``denied`` (the
        faults of ``refuse``), ``first_attempt`` (the faults of ``first_attempt``, among
        ``slowdown``), ``upstream_errors`` (requests the upstream could not answer) and
        ``by_client`` (``{client: {method: {outcome: n}}}``)."""
        with self._lock:
            out: dict[str, Any] = {k: self._counts.get(k, 0) for k in
                                   ("requests", "forwarded", "faults", "slowdown", "internal", "denied",
                                    "first_attempt", "upstream_errors")}
            by_client: dict[str, dict[str, dict[str, int]]] = {}
            for (client, method, outcome), n in sorted(self._by_client.items()):
                by_client.setdefault(client, {}).setdefault(method, {})[outcome] = n
            out["by_client"] = by_client
        return out

    def faults_of(self, client: str) -> int:
        """Faults answered to one client (``botocore`` or ``aws-sdk-cpp``)."""
        with self._lock:
            return sum(n for (c, _m, outcome), n in self._by_client.items() if c == client and outcome == "fault")

    def faults_on(self, fragment: str, method: str | None = None) -> int:
        """Faults answered to requests whose path contains ``fragment`` (and of ``method``, if given)."""
        with self._lock:
            return sum(1 for m, path, _code in self._fault_paths
                       if fragment in path and (method is None or m == method.upper()))

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start serving in a daemon thread (no-op if running); returns ``self``."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.proxy = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"s3-fault-proxy:{server.server_address[1]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (no-op if not running)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the endpoint to give the S3 client."""
        if self._server is None:
            raise RuntimeError("the fault proxy is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- decisions ----------------------------------------------------------------------------------

    def decide(self, method: str, target: str, client: str,
               headers: Mapping[str, str] | None = None) -> tuple[int, str, str] | None:
        """The fault to answer for one request (``None``: forward it); counts the request."""
        key = (method, target)
        with self._lock:
            self._counts["requests"] += 1
            n = self._seen[key]
            self._seen[key] += 1
            fault = None
            allowed = self.methods is None or method in self.methods
            bounded = self.max_consecutive is not None and self._streak[key] >= self.max_consecutive
            path = urlsplit(target).path
            if self.refuse is not None and self.refuse(method, path, headers or {}):
                fault = S3_FAULTS["denied"]
            elif n == 0 and self.first_attempt is not None and self.first_attempt(method, path, headers or {}):
                fault = S3_FAULTS["slowdown"]
                self._counts["first_attempt"] += 1
            elif allowed and not bounded and (self.slowdown_rate or self.error_rate):
                u = random.Random(f"{self.seed}|{method}|{target}|{n}").random()
                if u < self.slowdown_rate:
                    fault = S3_FAULTS["slowdown"]
                elif u < self.slowdown_rate + self.error_rate:
                    fault = S3_FAULTS["internal"]
            if fault is None:
                self._streak[key] = 0
                self._counts["forwarded"] += 1
                self._by_client[(client, method, "forwarded")] += 1
            else:
                self._streak[key] += 1
                self._counts["faults"] += 1
                self._counts[_KINDS[fault[1]]] += 1
                self._by_client[(client, method, "fault")] += 1
                self._fault_paths.append((method, path, fault[1]))
            return fault

    def _upstream_failed(self) -> None:
        with self._lock:
            self._counts["upstream_errors"] += 1


def _error_body(code: str, message: str, resource: str) -> bytes:
    request_id = uuid.uuid4().hex[:16].upper()
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<Resource>{resource}</Resource><RequestId>{request_id}</RequestId>"
            f"<HostId>fault-proxy</HostId></Error>").encode()


class _Handler(BaseHTTPRequestHandler):
    """One keep-alive client connection; one upstream connection per request."""

    protocol_version = "HTTP/1.1"
    server_version = "AmazonS3"
    timeout = 60
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        """The request body: by Content-Length, or de-chunked (``Transfer-Encoding: chunked``)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        method = self.command
        body = self._read_body()  # read it all first: the connection stays usable after an error
        client = _client_of(self.headers.get("User-Agent") or "")
        fault = proxy.decide(method, self.path, client, {k.lower(): v for k, v in self.headers.items()})
        if fault is not None:
            status, code, message = fault
            payload = _error_body(code, message, urlsplit(self.path).path)
            self._reply(status, [("Content-Type", "application/xml"),
                                 ("x-amz-request-id", uuid.uuid4().hex[:16].upper())],
                        b"" if method == "HEAD" else payload, len(payload))
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body or method in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
        try:
            conn.request(method, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            reply_headers = [(k, v) for k, v in response.getheaders()
                             if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"]
            length = _content_length(response.getheaders(), data, method)
        except (OSError, http.client.HTTPException):
            proxy._upstream_failed()
            self.close_connection = True
            return
        finally:
            conn.close()
        self._reply(response.status, reply_headers, data, length, response.reason)

    def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes, length: int,
               reason: str | None = None) -> None:
        try:
            self.send_response(status, reason)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if data:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _content_length(headers: list[tuple[str, str]] | Mapping[str, str], data: bytes, method: str) -> int:
    """The Content-Length to relay: the body's, or for HEAD the upstream's (a HEAD has no body)."""
    if method == "HEAD":
        for key, value in (headers.items() if isinstance(headers, Mapping) else headers):
            if key.lower() == "content-length":
                return int(value)
        return 0
    return len(data)
