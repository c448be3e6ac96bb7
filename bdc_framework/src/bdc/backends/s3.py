"""``s3://bucket/prefix``: a cache in S3 through boto3.

boto3 honours the standard AWS settings (profiles, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_S3``, ...). Without credentials, reads go unsigned (public buckets). Every object
is written with the Content-Type and Cache-Control of :func:`bdc.backends.base.object_headers`.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import urlsplit

from bdc.backends.base import Backend, ObjectInfo, object_headers
from bdc.errors import BackendError, ObjectNotFoundError

__all__ = ["S3Backend", "parse_s3_url"]

_SPOOL_BYTES = 64 * 1024 * 1024


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` → ``("bucket", "a/b")``."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise BackendError(f"Not an s3://bucket/prefix URL: {url!r}")
    return parts.netloc, parts.path.strip("/")


def _is_not_found(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound")


class S3Backend(Backend):
    """Objects under ``s3://bucket/prefix/``."""

    scheme = "s3"

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
                    config = Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32)
                    if session.get_credentials() is None:
                        from botocore import UNSIGNED

                        config = config.merge(Config(signature_version=UNSIGNED))
                    self._client = session.client("s3", config=config)
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    def _error(self, action: str, key: str, exc: Exception) -> Exception:
        if _is_not_found(exc):
            return ObjectNotFoundError(f"{self.url}: no object {key!r}")
        error = BackendError(f"{self.url}: {action} {key!r} failed: {exc}")
        error.__cause__ = exc
        return error

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
                self.client.upload_fileobj(fh, self.bucket, self._key(key), ExtraArgs=object_headers(key))
            except Exception as exc:
                raise self._error("writing", key, exc) from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        """PutObject with the object's headers."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **object_headers(key))
        except Exception as exc:
            raise self._error("writing", key, exc) from exc

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
