"""Thin S3 access to the AIND open-data bucket (TABLES.md §6, D9, D25).

The platform tables (smartspim, exaspim, behavior_curriculum) read a few small objects and
listings from ``s3://aind-open-data``. :class:`OpenData` wraps one boto3 S3 client and gives the
four operations they need, with the error contract the spec asks for:

- listings are fully paginated (no ``MaxKeys=1`` shortcuts);
- "not found" is an answer (``get_json`` → ``None``, ``exists`` → ``False``);
- every other failure (access denied, throttling, network, a missing bucket) raises, so callers
  can keep it out of caches and retry later instead of storing a wrong "absent".

The default client is created lazily on first use with ``boto3``'s normal configuration chain, so
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` (emulators such as moto) are honoured. When no
credentials are configured at all, requests are sent unsigned (the bucket is public).
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LocalOpenData", "open_data_from_url", "OpenData", "parse_s3_url", "DEFAULT_BUCKET"]

DEFAULT_BUCKET = "aind-open-data"

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def parse_s3_url(url: object) -> tuple[str, str] | None:
    """Split ``s3://bucket/key`` into ``(bucket, key)``; ``None`` if it is not an S3 URL.

    The key is returned without its leading ``/`` and otherwise unchanged (a trailing ``/`` is kept);
    ``s3://bucket`` gives ``(bucket, "")``. Surrounding whitespace is ignored.

    >>> parse_s3_url("s3://aind-open-data/abc_2024-01-01/x.json")
    ('aind-open-data', 'abc_2024-01-01/x.json')
    >>> parse_s3_url("https://example.org/a") is None
    True
    """
    if not isinstance(url, str):
        return None
    text = url.strip()
    if not text.lower().startswith("s3://"):
        return None
    parts = urlsplit(text)
    bucket = parts.netloc
    if not bucket:
        return None
    key = text[len("s3://") + len(bucket) :].lstrip("/")
    return bucket, key


def _error_code(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    code = (response.get("Error") or {}).get("Code")
    if code is None:
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return str(status) if status is not None else None
    return str(code)


def _default_client() -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    session = boto3.session.Session()
    if session.get_credentials() is None:
        return session.client("s3", config=Config(signature_version=UNSIGNED))
    return session.client("s3")


class OpenData:
    """Read-only accessor for one S3 bucket (by default the AIND open-data bucket).

    ``client`` is any boto3 S3 client; without one, a default client is created on first use (see
    the module docstring). ``page_size`` caps the keys per ListObjectsV2 page (S3's default, 1000,
    when ``None``); listings always follow every page whatever the size. Every method also takes ``bucket=`` to read another bucket through the
    same client (assets whose ``location`` is outside the open-data bucket, TABLES.md D25).
    Instances are safe to share between threads (boto3 clients are thread-safe).
    """

    def __init__(self, bucket: str = DEFAULT_BUCKET, *, client: Any = None, page_size: int | None = None) -> None:
        """Bind the accessor to ``bucket``; ``client`` overrides the lazily created default."""
        self.bucket = bucket
        self.page_size = page_size
        self._client = client
        self._lock = threading.Lock()
        self._readable_buckets: set[str] = set()

    def __repr__(self) -> str:
        return f"OpenData(bucket={self.bucket!r})"

    @property
    def client(self) -> Any:
        """The boto3 S3 client (created on first access when none was given)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = _default_client()
        return self._client

    def _bucket(self, bucket: str | None) -> str:
        return bucket if bucket else self.bucket

    def _pages(self, **params: Any) -> Any:
        paginator = self.client.get_paginator("list_objects_v2")
        if self.page_size:
            params["PaginationConfig"] = {"PageSize": self.page_size}
        return paginator.paginate(**params)

    def list_common_prefixes(self, prefix: str, *, bucket: str | None = None, delimiter: str = "/") -> list[str]:
        """All CommonPrefixes under ``prefix`` with ``delimiter`` (ListObjectsV2, every page).

        Returns the full prefixes as S3 gives them (e.g. ``"a/image_cell_segmentation/Ex_561_Em_600/"``),
        in S3 order. Errors (including a missing bucket) raise.
        """
        found: list[str] = []
        for page in self._pages(Bucket=self._bucket(bucket), Prefix=prefix, Delimiter=delimiter):
            for entry in page.get("CommonPrefixes") or []:
                value = entry.get("Prefix")
                if isinstance(value, str):
                    found.append(value)
        return found

    def list_keys(self, prefix: str, *, bucket: str | None = None) -> list[str]:
        """All object keys starting with ``prefix`` (ListObjectsV2, every page), in S3 (lexicographic) order.

        Errors (including a missing bucket) raise.
        """
        keys: list[str] = []
        for page in self._pages(Bucket=self._bucket(bucket), Prefix=prefix):
            for entry in page.get("Contents") or []:
                key = entry.get("Key")
                if isinstance(key, str):
                    keys.append(key)
        return keys

    def get_json(self, key: str, *, bucket: str | None = None) -> dict | None:
        """The JSON object stored at ``key``; ``None`` only when the object does not exist.

        Any other S3 error raises (``botocore`` exceptions). A body that is not valid JSON, or JSON
        that is not an object, raises ``ValueError``.
        """
        try:
            response = self.client.get_object(Bucket=self._bucket(bucket), Key=key)
        except Exception as error:  # botocore ClientError; anything else propagates unchanged
            if _error_code(error) in {"NoSuchKey"}:
                return None
            raise
        body = response["Body"]
        try:
            raw = body.read()
        finally:
            body.close()
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError(f"s3://{self._bucket(bucket)}/{key} does not hold a JSON object")
        return value

    def exists(self, key: str, *, bucket: str | None = None) -> bool:
        """Whether an object exists at ``key`` (HeadObject). 404 gives ``False``; other errors raise.

        A HeadObject answer has no body, so its 404 does not say whether the key or the whole
        bucket is missing: on the first 404 for a bucket, one ``ListObjectsV2`` (``MaxKeys=1``)
        checks that the bucket can be read, and its error (``NoSuchBucket``, access denied)
        is raised instead of answering "absent" for every key (D9, D25).
        """
        name = self._bucket(bucket)
        try:
            self.client.head_object(Bucket=name, Key=key)
        except Exception as error:
            if _error_code(error) in _NOT_FOUND_CODES:
                self._check_bucket(name)
                return False
            raise
        return True

    def _check_bucket(self, bucket: str) -> None:
        """Raise if ``bucket`` cannot be listed (checked once per bucket and accessor)."""
        if bucket in self._readable_buckets:
            return
        self.client.list_objects_v2(Bucket=bucket, MaxKeys=1)
        with self._lock:
            self._readable_buckets.add(bucket)


class LocalOpenData(OpenData):
    """The same accessor over a local copy laid out ``root/<bucket>/<key>`` (offline demo, tests).

    Listing and reading follow S3's semantics (lexicographic keys, CommonPrefixes by delimiter).
    The copy is taken as fixed while the accessor lives: its file list is read once.
    """

    def __init__(self, root: str, bucket: str = DEFAULT_BUCKET) -> None:
        """Serve ``root/<bucket>/...``."""
        super().__init__(bucket)
        from pathlib import Path

        self.root = Path(root)
        self._keys: dict[str, list[str]] = {}

    def __repr__(self) -> str:
        return f"LocalOpenData({str(self.root)!r}, bucket={self.bucket!r})"

    def _local_path(self, bucket: str | None, key: str = "") -> Any:
        """``root/<bucket>/<key>``, or ``None`` when the bucket or key would lead outside the root
        (an absolute key, ``..``, a separator in the bucket name: S3 has no such objects)."""
        name = self._bucket(bucket)
        if not name or name in (".", "..") or any(c in name for c in "/\\\x00"):
            return None
        if key.startswith("/") or "\\" in key or "\x00" in key or any(p in (".", "..") for p in key.split("/")):
            return None
        return self.root / name / key if key else self.root / name

    def _all_keys(self, bucket: str | None) -> list[str]:
        """Every key of the bucket, sorted (the tree is walked once per bucket and remembered)."""
        import os

        name = self._bucket(bucket)
        cached = self._keys.get(name)
        if cached is None:
            base = self._local_path(bucket)
            if base is None:
                return []
            cached = sorted(
                os.path.relpath(os.path.join(dirpath, f), base).replace(os.sep, "/")
                for dirpath, _dirs, files in os.walk(base) for f in files
            )
            self._keys[name] = cached
        return cached

    def _with_prefix(self, prefix: str, bucket: str | None) -> list[str]:
        import bisect

        keys = self._all_keys(bucket)
        start = bisect.bisect_left(keys, prefix)
        end = start
        while end < len(keys) and keys[end].startswith(prefix):
            end += 1
        return keys[start:end]

    def list_common_prefixes(self, prefix: str, *, bucket: str | None = None, delimiter: str = "/") -> list[str]:
        """CommonPrefixes under ``prefix``, as S3 would list them."""
        found: list[str] = []
        for key in self._with_prefix(prefix, bucket):
            if delimiter in key[len(prefix):]:
                cut = key.index(delimiter, len(prefix)) + len(delimiter)
                if not found or found[-1] != key[:cut]:
                    found.append(key[:cut])
        return found

    def list_keys(self, prefix: str, *, bucket: str | None = None) -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        return self._with_prefix(prefix, bucket)

    def get_json(self, key: str, *, bucket: str | None = None) -> dict | None:
        """The JSON object at ``key``, ``None`` if absent."""
        path = self._local_path(bucket, key)
        if path is None or not path.is_file():
            return None
        value = json.loads(path.read_bytes())
        if not isinstance(value, dict):
            raise ValueError(f"{path} does not hold a JSON object")
        return value

    def exists(self, key: str, *, bucket: str | None = None) -> bool:
        """Whether a file exists at ``key``."""
        path = self._local_path(bucket, key)
        return path is not None and path.is_file()


def open_data_from_url(url: str) -> OpenData:
    """``s3://bucket`` → :class:`OpenData`; ``file:///dir`` → :class:`LocalOpenData` of ``dir``."""
    if url.startswith("s3://"):
        return OpenData(url[5:].split("/", 1)[0])
    if url.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return LocalOpenData(unquote(urlsplit(url).path))
    raise ValueError(f"Open-data URL must be s3://bucket or file:///dir, not {url!r}")
