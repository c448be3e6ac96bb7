"""Where the foraging database lives: a local directory or an ``s3://`` prefix, as a pyarrow filesystem.

S3 is read through pyarrow's ``S3FileSystem`` (no DuckDB httpfs, no runtime download), configured
from the standard AWS settings as boto3 resolves them: ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL`` (or the config file) for the endpoint, the usual credential chain (anonymous
when there are no credentials: the production bucket is public), ``AWS_REGION`` /
``AWS_DEFAULT_REGION`` for the region (looked up from the bucket when unset on real AWS).

An S3 source is listed through bdc's own S3 backend (:func:`s3_backend`: the framework's boto3
client, same settings), whose ListObjectsV2 entries carry the ETags the fingerprints need.

:func:`duckdb_connect` gives a DuckDB connection that reads ``s3://`` the same way, so the upstream
query helpers (``select_sessions``, ``fetch_trials``, ``fetch_events`` with ``con=``) work on an S3
source or on bdc's published tables in S3 without httpfs.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "resolve_location", "s3_filesystem", "s3_backend", "duckdb_connect", "transient_errors", "clear_filesystems",
]

#: Environment variables that change how S3 is reached (the filesystem cache is keyed on them).
_AWS_ENV = (
    "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)
#: Substrings of pyarrow ``OSError`` messages that mean "try again" (AWS SDK error names, sockets).
_TRANSIENT_MARKERS = (
    "NETWORK_CONNECTION", "SLOW_DOWN", "SERVICE_UNAVAILABLE", "INTERNAL_FAILURE", "THROTTLING",
    "REQUEST_TIMEOUT", "REQUEST_TIME_TOO_SKEWED", "HTTP status 500", "HTTP status 502",
    "HTTP status 503", "HTTP status 504", "Connection reset", "connection reset", "timed out",
    "Broken pipe",
)

_lock = threading.Lock()
_filesystems: dict[tuple[Any, ...], Any] = {}
_backends: dict[tuple[Any, ...], Any] = {}


def clear_filesystems() -> None:
    """Forget the S3 filesystems and listing clients built so far (the next use reads the AWS
    settings again)."""
    with _lock:
        _filesystems.clear()
        _backends.clear()


def s3_backend(bucket: str) -> Any:
    """bdc's own S3 backend (:class:`bdc.backends.s3.S3Backend`) on the whole of ``bucket``, cached
    per AWS settings: the boto3 client the framework configures (endpoint from
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, credentials or unsigned requests, retries).

    Used to list a source with ListObjectsV2, whose entries carry the objects' ETags (pyarrow's
    ``FileInfo`` has none), and to HEAD the session table.
    """
    key = (bucket, tuple(os.environ.get(name) for name in _AWS_ENV))
    with _lock:
        cached = _backends.get(key)
    if cached is not None:
        return cached
    from bdc.backends.s3 import S3Backend

    backend = S3Backend(f"s3://{bucket}")
    with _lock:
        _backends[key] = backend
    return backend


def _aws_settings() -> tuple[str | None, str | None, Any]:
    """(endpoint override or None, configured region or None, frozen credentials or None), via boto3."""
    import boto3

    session = boto3.session.Session()
    credentials = session.get_credentials()
    frozen = credentials.get_frozen_credentials() if credentials is not None else None
    region = session.region_name
    # The client resolves AWS_ENDPOINT_URL_S3 > AWS_ENDPOINT_URL > config files, like every AWS tool.
    client = session.client("s3", region_name=region or "us-east-1")
    endpoint: str | None = client.meta.endpoint_url
    host = urlsplit(endpoint).hostname if endpoint else None
    if host is not None and host.endswith("amazonaws.com"):
        endpoint = None  # AWS itself: pyarrow finds it from the region
    return endpoint, region, frozen


def s3_filesystem(bucket: str) -> Any:
    """A ``pyarrow.fs.S3FileSystem`` for ``bucket`` from the current AWS settings (cached per settings)."""
    key = (bucket, tuple(os.environ.get(name) for name in _AWS_ENV))
    with _lock:
        cached = _filesystems.get(key)
    if cached is not None:
        return cached
    import pyarrow.fs as pafs

    endpoint, region, credentials = _aws_settings()
    options: dict[str, Any] = {
        "connect_timeout": 10,
        "request_timeout": 60,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    }
    if endpoint:
        parts = urlsplit(endpoint)
        options["endpoint_override"] = parts.netloc
        options["scheme"] = parts.scheme or "https"
        options["region"] = region or "us-east-1"
    else:
        if region is None:
            try:
                region = pafs.resolve_s3_region(bucket)
            except OSError:
                region = "us-east-1"
        options["region"] = region
    if credentials is None:
        options["anonymous"] = True
    else:
        options.update(access_key=credentials.access_key, secret_key=credentials.secret_key,
                       session_token=credentials.token)
    fs = pafs.S3FileSystem(**options)
    with _lock:
        _filesystems[key] = fs
    return fs


def resolve_location(url: str) -> tuple[Any, str]:
    """``(pyarrow filesystem, root path in it)`` for a local directory, ``file://`` URL or ``s3://`` prefix.

    >>> resolve_location("/data/foraging")[1]
    '/data/foraging'
    """
    text = str(url).strip()
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"Not an s3://bucket/prefix URL: {url!r}")
        return s3_filesystem(bucket), f"{bucket}/{prefix.strip('/')}".rstrip("/")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ValueError(f"Unsupported foraging database location {url!r}: use a directory, "
                             f"file:///path or s3://bucket/prefix")
        text = unquote(parts.path)
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem(), Path(text).expanduser().resolve().as_posix()


@contextlib.contextmanager
def transient_errors() -> Iterator[None]:
    """Re-raise pyarrow's network-flavoured ``OSError`` as :class:`bdc.runner.TransientError`.

    pyarrow reports S3 throttling, 5xx and dropped connections as plain ``OSError``; inside this
    block they become errors that ``ctx.call`` retries. Missing files and denied access are not.
    """
    try:
        yield
    except (FileNotFoundError, PermissionError):
        raise
    except OSError as exc:
        if any(marker in str(exc) for marker in _TRANSIENT_MARKERS):
            from bdc.runner.retry import TransientError

            raise TransientError(str(exc)) from exc
        raise


def duckdb_connect(url: str | None = None, **config: Any) -> Any:
    """A DuckDB connection that reads ``s3://`` through pyarrow's S3 filesystem (no httpfs).

    ``url`` is a location the connection will read (its bucket picks the S3 region); pass the
    connection as ``con=`` to the upstream helpers to query an S3 source, or bdc's tables in S3::

        base = cache.location("df_sessions")            # s3://bucket/cache/bdc-v0.36/...pqt
        sel = select_sessions(base=base, con=duckdb_connect(base))

    Without an ``s3://`` URL it is a plain connection. Needs ``fsspec``. ``config`` is passed to
    ``duckdb.connect``.
    """
    import duckdb

    con = duckdb.connect(config=config) if config else duckdb.connect()
    if url is not None and str(url).startswith("s3://"):
        from fsspec.implementations.arrow import ArrowFSWrapper

        fs, _root = resolve_location(str(url))
        con.register_filesystem(ArrowFSWrapper(fs))
    return con
