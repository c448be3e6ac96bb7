"""Retrying transient failures with exponential backoff and jitter, a bounded number of times.

Two layers retry in a sync run:

* :meth:`RetryPolicy.call` (``ctx.call`` in a build) retries what :func:`is_transient` calls
  transient: HTTP 408/425/429/5xx, S3 throttling and internal errors, dropped connections,
  timeouts. A ``Retry-After`` header (DocDB's 429) is honoured, up to the policy's ``cap``.
  Each retry is told to ``on_retry`` (the build context counts it for the run report).
* Libraries retry on their own below it: botocore retries S3 ``SlowDown``/5xx/resets itself (see
  :mod:`bdc.backends.s3`) and reports each such retry with :func:`record_library_retry`. The
  innermost :meth:`RetryPolicy.call` that has an ``on_retry`` and runs in the same thread
  (context) hears it, as a :class:`LibraryRetry`, so the table's count includes it. A library
  retry made outside any such call (the runner's own housekeeping, a reader's ``bdc.get``) or in a
  thread the library started itself (s3transfer's multipart uploads and managed copies) is in no
  table's count; :func:`library_retries` counts every one, attributed or not, in the process.
  (pyarrow's S3 filesystem retries inside the AWS C++ SDK and tells nobody.)
"""

from __future__ import annotations

import contextvars
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["RetryPolicy", "is_transient", "TransientError", "LibraryRetry", "record_library_retry",
           "library_retries", "retry_after"]

_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
_TRANSIENT_S3 = {"SlowDown", "RequestTimeout", "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable",
                 "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
                 "ProvisionedThroughputExceededException", "BandwidthLimitExceeded", "EC2ThrottledException",
                 "PriorRequestNotComplete", "TransactionInProgressException", "IDPCommunicationError",
                 "RequestThrottled", "RequestThrottledException", "SlowDownWrite", "SlowDownRead",
                 "408", "429", "500", "502", "503", "504"}
#: Network failures by class name, for libraries whose exceptions are not builtin ``ConnectionError``s.
_TRANSIENT_NAMES = {"ConnectionError", "ChunkedEncodingError", "ReadTimeout", "ConnectTimeout", "Timeout",
                    "ProtocolError", "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
                    "ConnectTimeoutError", "IncompleteReadError", "ResponseStreamingError", "NewConnectionError",
                    "IncompleteRead", "RemoteDisconnected"}
_TRANSIENT_MODULES = ("requests", "urllib3", "botocore", "http.client", "s3transfer", "aiohttp")


class TransientError(Exception):
    """Raise this from a build to ask for a retry explicitly."""


class LibraryRetry(TransientError):
    """A retry a library made on its own (botocore retrying an S3 request), as reported to ``on_retry``.

    ``attempt`` is the library's attempt number of the request it is about to send again (2 for
    the first retry), ``source`` the library, ``what`` the request and why it is retried.
    """

    def __init__(self, source: str, what: str, attempt: int):
        super().__init__(f"{source} retried {what}")
        self.source = source
        self.what = what
        self.attempt = attempt

    def __reduce__(self) -> tuple[Any, ...]:
        return (LibraryRetry, (self.source, self.what, self.attempt))


# -- library retries ---------------------------------------------------------------------------

_listener: contextvars.ContextVar[Callable[[LibraryRetry], None] | None] = contextvars.ContextVar(
    "bdc_retry_listener", default=None)
_counts_lock = threading.Lock()
_counts = {"total": 0, "attributed": 0}


def record_library_retry(source: str, what: str, attempt: int) -> bool:
    """Report a retry a library makes by itself; the :meth:`RetryPolicy.call` running in this context
    (if any) counts it. Returns whether one did."""
    listener = _listener.get()
    with _counts_lock:
        _counts["total"] += 1
        if listener is not None:
            _counts["attributed"] += 1
    if listener is None:
        return False
    try:
        listener(LibraryRetry(source, what, attempt))
    except Exception:  # noqa: BLE001 - counting must never break the request being retried
        pass
    return True


def library_retries() -> dict[str, int]:
    """Library retries reported in this process so far: ``total``, ``attributed`` (heard by a
    ``RetryPolicy.call`` with an ``on_retry``: a build's ``ctx.call``) and ``unattributed``."""
    with _counts_lock:
        total, attributed = _counts["total"], _counts["attributed"]
    return {"total": total, "attributed": attributed, "unattributed": total - attributed}


# -- classification ------------------------------------------------------------------------------


def _status_of(response: Any) -> int | None:
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    status = getattr(response, "status", None)  # urllib3 / http.client responses
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying: throttling, 5xx, connection resets, timeouts.

    Looks at the exception itself (its HTTP status, S3 error code or network failure class), then
    at the exception it was explicitly raised from (``raise ... from exc``: a backend error
    wrapping a botocore error). An exception merely raised *while handling* another (implicit
    context) is judged on its own: a bug in an ``except`` block is not a network blip.
    """
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        code = str((response.get("Error") or {}).get("Code", ""))
        http = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return code in _TRANSIENT_S3 or http in _TRANSIENT_HTTP
    status = _status_of(response) if response is not None else None
    if status is not None:
        return status in _TRANSIENT_HTTP
    module = type(exc).__module__
    if module.startswith(_TRANSIENT_MODULES) and type(exc).__name__ in _TRANSIENT_NAMES:
        return True
    cause = exc.__cause__
    if cause is not None and cause is not exc:
        return is_transient(cause)
    return False


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked to wait (``Retry-After``: seconds or an HTTP date), else ``None``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        response = getattr(exc, "response", None)
        headers: Any = None
        if isinstance(response, dict):
            headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders")
        elif response is not None:
            headers = getattr(response, "headers", None)
        value = None
        if headers is not None:
            try:
                value = headers.get("Retry-After") or headers.get("retry-after")
            except Exception:  # noqa: BLE001 - an odd headers object: no hint
                value = None
        if value is not None:
            text = str(value).strip()
            try:
                return max(0.0, float(text))
            except ValueError:
                import email.utils  # an HTTP date: rare (its import costs ~10 ms at start-up)

                try:
                    when = email.utils.parsedate_to_datetime(text)
                except (TypeError, ValueError):
                    return None
                return max(0.0, when.timestamp() - time.time())
        exc = exc.__cause__  # type: ignore[assignment]
    return None


@attrs.frozen
class RetryPolicy:
    """``attempts`` tries in all; waits ``base * 2**n`` (capped at ``cap``) with full jitter.

    A server's ``Retry-After`` raises the wait to what it asked for, but never beyond ``cap``.
    """

    attempts: int = 5
    base: float = 0.2
    cap: float = 10.0
    classify: Callable[[BaseException], bool] = is_transient

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``attempt`` (1-based)."""
        upper = min(self.cap, self.base * (2 ** (attempt - 1)))
        return (rng or random).uniform(0, upper)

    def wait_for(self, attempt: int, exc: BaseException) -> float:
        """The wait before retry number ``attempt`` after ``exc``: the backoff, or the server's
        ``Retry-After`` (capped at ``cap``) when that is longer."""
        wait = self.delay(attempt)
        asked = retry_after(exc)
        if asked is not None:
            wait = max(wait, min(asked, self.cap))
        return wait

    def call(self, fn: Callable[..., Any], *args: Any, on_retry: Callable[[int, BaseException], None] | None = None,
             **kwargs: Any) -> Any:
        """Call ``fn`` until it succeeds, a permanent error occurs, or the attempts run out.

        ``on_retry(attempt, error)`` is told of every retry: this policy's own (before it waits),
        and those libraries make by themselves while ``fn`` runs (``error`` a :class:`LibraryRetry`,
        ``attempt`` the library's attempt number).
        """

        def heard(retry: LibraryRetry) -> None:
            if on_retry is not None:
                on_retry(retry.attempt, retry)

        # without on_retry nobody counts: leave an enclosing call's listener in place
        token = _listener.set(heard) if on_retry is not None else None
        try:
            attempt = 0
            while True:
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    attempt += 1
                    if attempt >= self.attempts or not self.classify(exc):
                        raise
                    if on_retry is not None:
                        on_retry(attempt, exc)
                    time.sleep(self.wait_for(attempt, exc))
        finally:
            if token is not None:
                _listener.reset(token)
