"""Which cache the module-level functions use, decided at call time from the environment.

* ``BDC_CACHE``: any cache URL (``file:///path``, ``s3://bucket/prefix``, ``memory://name``).
* ``BIODATA_CACHE_BACKEND`` (the reference package's setting): ``S3`` means
  ``s3://allen-data-views/data-asset-cache``, ``MEMORY`` means ``memory://``.
* otherwise the embedded local-disk cache under ``platformdirs.user_cache_dir("bdc")``.
"""

from __future__ import annotations

import os
from pathlib import Path

from bdc.errors import BdcError

__all__ = ["default_cache_url", "local_cache_dir", "LEGACY_S3_URL"]

LEGACY_S3_URL = "s3://allen-data-views/data-asset-cache"


def local_cache_dir() -> Path:
    """bdc's directory under the user cache dir (honours ``XDG_CACHE_HOME`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("bdc"))


def default_cache_url() -> str:
    """The URL of the default cache, from the environment as it is now."""
    url = os.environ.get("BDC_CACHE", "").strip()
    if url:
        return url
    legacy = os.environ.get("BIODATA_CACHE_BACKEND", "").strip().upper()
    if legacy == "S3":
        return LEGACY_S3_URL
    if legacy == "MEMORY":
        return "memory://"
    if legacy:
        raise BdcError(f"BIODATA_CACHE_BACKEND={legacy!r} is not one of S3, MEMORY")
    return (local_cache_dir() / "data-asset-cache").as_uri()
