"""``s3://bucket/prefix``: a cache in S3 through boto3.

boto3 honours the standard AWS settings (profiles, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_S3``, ``AWS_MAX_ATTEMPTS``, ...). Without credentials, reads go unsigned (public
buckets). Every object is written with the Content-Type and Cache-Control of
:func:`bdc.backends.base.object_headers`.

Readers do not read objects here directly: :class:`bdc.cache.Cache` reads an S3 cache through the
local read-through cache (:mod:`bdc.backends.readcache`), which uses :meth:`S3Backend.fetch`
(conditional and ranged GETs). Every write and delete made here tells that local cache, so this
machine never serves its old copy of an object this process changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import threading
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import urlsplit

from bdc.backends.base import Backend, Fetched, ObjectInfo, byte_view, object_headers
from bdc.errors import BackendError, BackendUnavailableError, ObjectNotFoundError

__all__ = ["S3Backend", "parse_s3_url", "endpoint_origin", "filesystem_service"]

_SPOOL_BYTES = 64 * 1024 * 1024
_CHUNK = 1024 * 1024
#: Seconds to wait for a connection: without a network a read falls back to local copies soon.
_CONNECT_TIMEOUT = 5


def endpoint_origin() -> str:
    """Which S3 service this process talks to, from the environment, without importing boto3.

    ``aws`` for Amazon S3, else the host (and port) of ``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL``. Local copies of objects are filed under it, so two S3 services with
    the same bucket names never share copies. (An endpoint set only in an AWS profile file is not
    seen here: its objects are filed under ``aws``.)
    """
    import os

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    host = urlsplit(endpoint).netloc if "://" in endpoint else endpoint
    if not host or host.endswith("amazonaws.com"):
        return "aws"
    return host


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` → ``("bucket", "a/b")``."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise BackendError(f"Not an s3://bucket/prefix URL: {url!r}")
    return parts.netloc, parts.path.strip("/")


def _aws_partition(region: str | None) -> str:
    """The AWS partition of ``region``: bucket names are unique within a partition only."""
    region = (region or "").lower()
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    parts = region.split("-")
    if len(parts) > 1 and parts[1].startswith("iso"):
        return f"aws-{parts[1]}"  # aws-iso, aws-isob, ...: each isolated partition on its own
    return "aws"


def _service(endpoint: str, region: str | None) -> str:
    """Which S3 service an endpoint URL names: ``aws:{partition}`` for Amazon S3 (no endpoint, or
    a host under ``amazonaws.com``), else ``scheme://host:port`` (default ports written out)."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if not host or f".{host}".endswith((".amazonaws.com", ".amazonaws.com.cn")):
        return f"aws:{_aws_partition(region)}"
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme, 0)
    except ValueError:  # not a port: compared as written
        return endpoint.lower()
    return f"{scheme}://{host}:{port}"


def filesystem_service(filesystem: Any) -> str | None:
    """Which S3 service a ``pyarrow.fs.S3FileSystem`` talks to (as :meth:`S3Backend.service`
    names it), from its options (an empty ``endpoint_override`` is Amazon S3); ``None`` for any
    other filesystem, or options this pyarrow does not show."""
    import pyarrow.fs as pafs

    if not isinstance(filesystem, pafs.S3FileSystem):
        return None
    try:
        options = filesystem.__reduce__()[1][0]
        override = str(options.get("endpoint_override") or "")
        scheme = str(options.get("scheme") or "https")
        region = options.get("region")
    except Exception:  # noqa: BLE001 - another pyarrow: not known to be the same service
        return None
    if override and "://" not in override:
        override = f"{scheme}://{override}"
    return _service(override, region)


def _is_not_found(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound")


def _status(exc: Exception) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return code, int(status)


def _is_unreachable(exc: Exception) -> bool:
    """A failure to talk to the endpoint at all (as opposed to an answer that says no)."""
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return False
    return isinstance(exc, (BotoConnectionError, HTTPClientError))


def _retries() -> dict[str, Any]:
    """boto3's retry settings: ``AWS_MAX_ATTEMPTS``/``AWS_RETRY_MODE`` if set, else standard mode with
    3 retries (4 attempts; botocore's "standard" retries throttling such as ``SlowDown``, 5xx such
    as ``InternalError``, and dropped connections, with exponential backoff)."""
    import os

    if os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE"):
        out: dict[str, Any] = {"mode": os.environ.get("AWS_RETRY_MODE") or "standard"}
        if os.environ.get("AWS_MAX_ATTEMPTS"):
            out["total_max_attempts"] = int(os.environ["AWS_MAX_ATTEMPTS"])
        return out
    return {"max_attempts": 3, "mode": "standard"}


def _report_retries(client: Any) -> None:
    """Tell :mod:`bdc.runner.retry` of every retry botocore makes by itself on ``client``.

    botocore retries inside one API call, invisibly to bdc's :class:`~bdc.runner.RetryPolicy`. Each
    retried attempt is reported with :func:`bdc.runner.retry.record_library_retry`, so the sync
    run counts it in the table whose ``ctx.call`` (build, write, publish) made the request. The
    handlers run in the thread that sends the request.
    """
    from bdc.runner.retry import record_library_retry

    def remember(request_dict: Any = None, response: Any = None, caught_exception: Any = None,
                 **_: Any) -> None:
        # runs before botocore's retry handler decides: keep what went wrong with this attempt
        context = (request_dict or {}).get("context")
        if context is None:
            return None
        if caught_exception is not None:
            context["bdc_failure"] = type(caught_exception).__name__
        elif response is not None:
            http, parsed = response
            code = ((parsed or {}).get("Error") or {}).get("Code")
            context["bdc_failure"] = f"{code or 'HTTP'} {getattr(http, 'status_code', '')}".strip()
        return None

    def created(request: Any = None, operation_name: str = "", **_: Any) -> None:
        context = getattr(request, "context", None) or {}
        attempt = int((context.get("retries") or {}).get("attempt", 1))
        if attempt > 1:
            why = context.get("bdc_failure") or "a transient error"
            record_library_retry("botocore", f"S3 {operation_name} after {why}", attempt)

    client.meta.events.register_first("needs-retry.s3", remember, unique_id="bdc-remember-failure")
    client.meta.events.register("request-created.s3", created, unique_id="bdc-report-retry")


def _transfer_config(fh: IO[bytes]) -> Any:
    """boto3's transfer settings for uploading ``fh``: an object below the multipart threshold is
    sent from the calling thread (one PutObject: s3transfer's threads would add nothing, and the
    request's retries stay counted in the table that wrote it); a larger one in parallel parts."""
    from boto3.s3.transfer import TransferConfig

    position = fh.tell()
    size = fh.seek(0, 2)
    fh.seek(position)
    config = TransferConfig()
    return config if size >= config.multipart_threshold else TransferConfig(use_threads=False)


class S3Backend(Backend):
    """Objects under ``s3://bucket/prefix/``."""

    scheme = "s3"
    remote = True

    def __init__(self, url: str, *, client: Any = None):
        self.bucket, self.prefix = parse_s3_url(url)
        super().__init__(f"s3://{self.bucket}/{self.prefix}".rstrip("/"))
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 S3 client (created on first use; unsigned when no credentials exist)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    session = boto3.session.Session()
                    config = Config(retries=_retries(), max_pool_connections=32,
                                    connect_timeout=_CONNECT_TIMEOUT)
                    if session.get_credentials() is None:
                        from botocore import UNSIGNED

                        config = config.merge(Config(signature_version=UNSIGNED))
                    client = session.client("s3", config=config)
                    _report_retries(client)
                    self._client = client
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    def _error(self, action: str, key: str, exc: Exception) -> Exception:
        if _is_not_found(exc):
            return ObjectNotFoundError(f"{self.url}: no object {key!r}")
        kind = BackendUnavailableError if _is_unreachable(exc) else BackendError
        error = kind(f"{self.url}: {action} {key!r} failed: {exc}")
        error.__cause__ = exc
        return error

    def _changed(self, key: str) -> None:
        """Tell the local read cache that ``key`` was written or deleted by this process."""
        from bdc.backends.readcache import object_changed

        object_changed(self, key)

    def object_id(self, key: str) -> str:
        """``{endpoint origin}/{bucket}/{full key}`` (see :func:`endpoint_origin`)."""
        return f"{endpoint_origin()}/{self.bucket}/{self._key(key)}"

    def fetch(
        self,
        key: str,
        fh: IO[bytes],
        *,
        if_none_match: str | None = None,
        if_match: str | None = None,
        byte_range: tuple[int, int] | None = None,
        tail: int | None = None,
    ) -> Fetched:
        """One GetObject (conditional with ``If-None-Match``/``If-Match``, ranged with ``Range``),
        streamed to ``fh``."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if if_none_match is not None:
            args["IfNoneMatch"] = if_none_match
        if if_match is not None:
            args["IfMatch"] = if_match
        if byte_range is not None:
            args["Range"] = f"bytes={byte_range[0]}-{byte_range[1] - 1}"
        elif tail is not None:
            args["Range"] = f"bytes=-{tail}"
        try:
            response = self.client.get_object(**args)
        except Exception as exc:
            code, status = _status(exc)
            if status == 304 or code in ("304", "NotModified"):
                return Fetched(304, if_none_match)
            if status == 412 or code in ("412", "PreconditionFailed"):
                return Fetched(412)
            if (status == 416 or code == "InvalidRange") and "Range" in args:
                # a suffix range on an empty object: ask for the whole (empty) object
                return self.fetch(key, fh, if_none_match=if_none_match, if_match=if_match)
            raise self._error("reading", key, exc) from exc
        expected = int(response.get("ContentLength", -1))
        written = 0
        try:
            for chunk in response["Body"].iter_chunks(_CHUNK):
                fh.write(chunk)
                written += len(chunk)
        except Exception as exc:
            raise self._error("reading", key, exc) from exc
        if expected >= 0 and written != expected:
            raise BackendError(f"{self.url}: reading {key!r} failed: got {written} of {expected} bytes")
        content_range = response.get("ContentRange")
        if content_range:  # "bytes 100-199/1000"
            span, _, whole = content_range.partition(" ")[2].partition("/")
            start = int(span.split("-")[0])
            size = int(whole) if whole.isdigit() else start + written
            status = 200 if start == 0 and written == size else 206
        else:
            start, size, status = 0, written, 200
        return Fetched(status, response.get("ETag"), size, written, start)

    def read_bytes(self, key: str) -> bytes:
        """GetObject."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except Exception as exc:
            raise self._error("reading", key, exc) from exc

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        """Spool to memory (then disk), upload on a clean exit: an S3 object appears whole."""
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as fh:
            yield fh
            fh.seek(0)
            try:
                self.client.upload_fileobj(fh, self.bucket, self._key(key), ExtraArgs=object_headers(key),
                                          Config=_transfer_config(fh))
            except Exception as exc:
                raise self._error("writing", key, exc) from exc
            finally:
                self._changed(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        """PutObject with the object's headers."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **object_headers(key))
        except Exception as exc:
            raise self._error("writing", key, exc) from exc
        finally:
            self._changed(key)

    def holds(self, key: str, data: Any, info: ObjectInfo | None = None) -> bool:
        """Whether the object holds exactly ``data``, from its size and ETag (HeadObject unless
        ``info`` gives them), never its bytes: an object stored in one part, unencrypted or
        SSE-S3, has the MD5 of its bytes as ETag. Any other ETag (multipart, SSE-KMS) answers
        ``False``: the bytes are written again."""
        view = byte_view(data)
        if info is None:
            try:
                info = self.info(key)
            except ObjectNotFoundError:
                return False
        etag = (info.etag or "").strip('"').lower()
        if info.size != len(view) or len(etag) != 32 or any(c not in "0123456789abcdef" for c in etag):
            return False
        return hashlib.md5(view, usedforsecurity=False).hexdigest() == etag

    def info(self, key: str) -> ObjectInfo:
        """HeadObject."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise self._error("checking", key, exc) from exc
        return ObjectInfo(key, head["ContentLength"], head["LastModified"].timestamp(), head.get("ETag"))

    def list(self, prefix: str) -> list[ObjectInfo]:
        """ListObjectsV2, paginated."""
        out = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    out.append(ObjectInfo(self._rel(item["Key"]), item["Size"],
                                          item["LastModified"].timestamp(), item.get("ETag")))
        except Exception as exc:
            raise self._error("listing", prefix, exc) from exc
        return sorted(out, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        """DeleteObject."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if not _is_not_found(exc):
                raise self._error("deleting", key, exc) from exc
        finally:
            self._changed(key)

    def copy(self, source: str, target: str) -> None:
        """A server-side copy (CopyObject; multipart for large objects), with ``target``'s headers."""
        self._copy_object({"Bucket": self.bucket, "Key": self._key(source)}, target, source)

    def copy_from(self, bucket: str, key: str, target: str) -> None:
        """A server-side copy of object ``key`` of ``bucket`` (another bucket of this backend's S3
        service, or this one) to ``target``, with ``target``'s headers: CopyObject (multipart above
        5 GB), the bytes never leave S3. This backend's credentials must be allowed to read the
        source object (a public bucket allows it). :class:`BackendError` on failure."""
        self._copy_object({"Bucket": bucket, "Key": key}, target, f"s3://{bucket}/{key}")

    def _copy_object(self, copy_source: dict[str, str], target: str, source: str) -> None:
        """CopyObject of ``copy_source`` to ``target`` (the managed multipart copy for objects
        above 5 GB), with ``target``'s headers; ``source`` names the source in errors."""
        # the target's own headers and no tags: nor does a copy then need to read the source's
        # tags (s3:GetObjectTagging, which a public bucket may not grant)
        extra = {"MetadataDirective": "REPLACE", "TaggingDirective": "REPLACE", **object_headers(target)}
        try:
            try:  # one CopyObject from this thread (its retries counted where it was called)
                self.client.copy_object(CopySource=copy_source, Bucket=self.bucket, Key=self._key(target), **extra)
            except Exception as exc:
                code, _status_code = _status(exc)
                if code not in ("InvalidRequest", "EntityTooLarge"):
                    raise
                # above 5 GB: the managed, multipart copy
                self.client.copy(copy_source, self.bucket, self._key(target), ExtraArgs=extra)
        except Exception as exc:
            raise self._error("copying to " + target + " from", source, exc) from exc
        finally:
            self._changed(target)

    @property
    def service(self) -> str:
        """Which S3 service this backend's client talks to: ``aws:{partition}`` for Amazon S3,
        else the endpoint's ``scheme://host:port``."""
        meta = self.client.meta
        return _service(meta.endpoint_url or "", meta.region_name)

    def same_service(self, filesystem: Any) -> bool:
        """Whether ``filesystem`` is a ``pyarrow.fs.S3FileSystem`` talking to the S3 service this
        backend's client talks to (same endpoint; on Amazon S3, the same partition), so that its
        ``bucket/key`` paths name objects :meth:`copy_from` can copy. Any doubt: ``False``."""
        found = filesystem_service(filesystem)
        return found is not None and found == self.service

    def delete_prefix(self, prefix: str) -> int:
        """One listing, then DeleteObjects in batches of 1,000."""
        keys = [item.key for item in self.list(prefix)]
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            try:
                response = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": self._key(k)} for k in batch], "Quiet": True})
            except Exception as exc:
                raise self._error("deleting", prefix, exc) from exc
            finally:
                for key in batch:
                    self._changed(key)
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise BackendError(f"{self.url}: deleting {self._rel(first.get('Key', ''))!r} failed: "
                                   f"{first.get('Code')} {first.get('Message')}")
        return len(keys)

    def remove_temp_files(self, prefix: str) -> int:
        """Abort the multipart uploads a killed writer left under ``prefix`` (invisible to readers,
        but stored and billed); returns how many. Only while no write is in progress there."""
        aborted = 0
        try:
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for upload in page.get("Uploads", []):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    aborted += 1
        except Exception as exc:
            raise self._error("aborting the unfinished uploads under", prefix, exc) from exc
        return aborted

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """PutObject with ``If-None-Match: *`` (S3 conditional write)."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                   IfNoneMatch="*", **object_headers(key))
        except Exception as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise self._error("creating", key, exc) from exc
        self._changed(key)
        return True

    def uri(self, key: str) -> str:
        """``s3://bucket/prefix/key``."""
        return f"s3://{self.bucket}/{self._key(key)}"

    def arrow_filesystem(self) -> tuple[Any, str] | None:
        """pyarrow's S3 filesystem with the same endpoint and credentials as boto3 (no download)."""
        import pyarrow.fs as pafs

        import boto3

        creds = None

        boto_session = boto3.session.Session()
        found = boto_session.get_credentials()
        if found is not None:
            creds = found.get_frozen_credentials()
        endpoint = self.client.meta.endpoint_url
        options: dict[str, Any] = {"region": self.client.meta.region_name or "us-east-1"}
        default_endpoint = endpoint and endpoint.endswith("amazonaws.com")
        if endpoint and not default_endpoint:
            parts = urlsplit(endpoint)
            options["endpoint_override"] = parts.netloc
            options["scheme"] = parts.scheme
        if creds is None:
            options["anonymous"] = True
        else:
            options.update(access_key=creds.access_key, secret_key=creds.secret_key,
                           session_token=creds.token)
        return pafs.S3FileSystem(**options), f"{self.bucket}/{self.prefix}".rstrip("/")
