"""Storage backends: object stores addressed by URL (``memory://``, ``file:///path``, ``s3://bucket/prefix``).

Backends store bytes and list keys; the table layout lives in :mod:`bdc.layout`. Backends are
contributed through the ``bdc_backends`` hook; :func:`open_backend` picks one by URL scheme.
"""

from __future__ import annotations

import re

from bdc.backends.base import Backend, Fetched, ObjectInfo, object_headers

__all__ = ["Backend", "Fetched", "ObjectInfo", "object_headers", "open_backend"]


def open_backend(url: str) -> Backend:
    """The backend for ``url``, by its scheme (a plain path means ``file``)."""
    from urllib.parse import urlsplit

    from bdc.catalog import get_catalog
    from bdc.errors import BdcError

    named = re.match(r"([A-Za-z][A-Za-z0-9+.-]+):", url)  # (two letters at least: not a drive, C:)
    if "://" in url:
        scheme = urlsplit(url).scheme
    elif named and named[1].lower() != "file":
        # s3:/bucket, memory:name: a mistyped URL, not a folder to create in the working directory
        raise BdcError(f"{url!r} is not a URL bdc can open: write {named[1]}://… "
                       f"(or ./{url} for a local folder with that name)")
    else:  # a path, or file:/abs/path
        scheme = "file"
    backends = get_catalog().backends
    if scheme not in backends:
        raise BdcError(
            f"No backend for URL scheme {scheme!r} in {url!r}; installed: {', '.join(sorted(backends))}"
        )
    return backends[scheme].factory(url)
