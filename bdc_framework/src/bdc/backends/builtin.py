"""The built-in backends, registered as a plugin exactly like external ones."""

from __future__ import annotations

from bdc.hookspecs import hookimpl
from bdc.spec import BackendSpec

__all__ = ["bdc_backends"]


def _memory(url: str):
    from bdc.backends.memory import MemoryBackend

    return MemoryBackend(url)


def _file(url: str):
    from bdc.backends.local import LocalBackend

    return LocalBackend(url)


def _s3(url: str):
    from bdc.backends.s3 import S3Backend

    return S3Backend(url)


@hookimpl
def bdc_backends() -> list[BackendSpec]:
    """memory://, file:// (the default) and s3://."""
    return [
        BackendSpec("memory", _memory, "process-wide in-memory store"),
        BackendSpec("file", _file, "local disk, atomic renames"),
        BackendSpec("s3", _s3, "Amazon S3 (or any S3 endpoint) through boto3"),
    ]
