"""moto's S3 server on loopback, counting the requests it serves (and optionally slowing them).

It is moto's own WSGI app (what ``moto.server.ThreadedMotoServer`` runs) behind a small
middleware that records each request, as the server sees it, and sleeps ``latency`` seconds
first, like a bucket far away. Used by the read-cache tests and ``bench/s3.py``::

    with CountingS3Server(latency=0.02) as server:
        ... AWS_ENDPOINT_URL=server.endpoint ...
        server.reset()
        bdc.get("table")
        assert server.count() == 1
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import attrs

__all__ = ["CountingS3Server", "Request"]


@attrs.frozen
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    query: str
    range: str | None
    if_none_match: str | None
    if_match: str | None

    @property
    def is_listing(self) -> bool:
        """A ListObjects call (a GET on the bucket with ``list-type``/``prefix``)."""
        return self.method == "GET" and ("list-type" in self.query or "prefix=" in self.query)


class _Counting:
    """WSGI middleware: record, sleep, pass on."""

    def __init__(self, app: Callable[..., Iterable[bytes]], server: CountingS3Server):
        self.app = app
        self.server = server

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.server._record(Request(
            environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""),
            environ.get("HTTP_RANGE"), environ.get("HTTP_IF_NONE_MATCH"), environ.get("HTTP_IF_MATCH")))
        if self.server.latency:
            time.sleep(self.server.latency)
        return self.app(environ, start_response)


class CountingS3Server:
    """A moto S3 server on 127.0.0.1 (a free port) that counts requests; ``latency`` per request."""

    def __init__(self, latency: float = 0.0):
        self.latency = latency
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def start(self) -> str:
        """Serve in a thread; returns the endpoint URL."""
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
        app = _Counting(DomainDispatcherApplication(create_backend_app), self)
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.endpoint = f"http://{host}:{port}"
        return self.endpoint

    def stop(self) -> None:
        """Stop serving and close the port (later connections are refused)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join()
            self._server = None

    def reset(self) -> None:
        """Forget the requests counted so far."""
        with self._lock:
            self.requests.clear()

    def count(self, method: str | None = None) -> int:
        """Requests served since the last :meth:`reset` (of one method, if given)."""
        with self._lock:
            return sum(1 for r in self.requests if method is None or r.method == method)

    def snapshot(self) -> list[Request]:
        """The requests counted since the last :meth:`reset`."""
        with self._lock:
            return list(self.requests)

    def __enter__(self) -> CountingS3Server:
        self.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop()
