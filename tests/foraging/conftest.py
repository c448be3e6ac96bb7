"""Fixtures of the foraging tests: the plugin from its entry point, generated sources, S3 copies."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: A small database with every feature: leading-zero ids, per-session and coalesced partitions, drift.
SMALL = dict(subjects=8, sessions_per_subject=3, trials_per_session=40, leading_zero_subjects=3, seed=7)


def pytest_configure(config: pytest.Config) -> None:
    """DuckDB's ``.df()`` trips a pandas 3.1 deprecation inside DuckDB itself: not ours to fix."""
    config.addinivalue_line("filterwarnings", "ignore:The inplace keyword in DataFrame.drop is deprecated")


@pytest.fixture(autouse=True)
def _foraging_plugin_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Only the installed ``foraging`` entry point (strictly loaded), fresh caches, no stray source."""
    import aind_dynamic_foraging_database as adfd

    from bdc import api, plugins
    from bdc_tables_foraging.filesystem import clear_filesystems

    monkeypatch.setenv("BDC_LOAD_PLUGINS", "foraging")
    monkeypatch.setenv("BDC_STRICT_PLUGINS", "1")
    monkeypatch.delenv("BDC_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("BIODATA_CACHE_BACKEND", raising=False)
    monkeypatch.delenv("BDC_FORAGING_BASE", raising=False)
    monkeypatch.setenv("BDC_CACHE", (tmp_path / "default-cache").as_uri())
    plugins.reset()
    api._caches.clear()
    adfd.clear_caches()
    clear_filesystems()
    yield
    plugins.reset()
    api._caches.clear()
    adfd.clear_caches()
    clear_filesystems()


@pytest.fixture(scope="session")
def pristine_db(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A generated source (never modified): :data:`SMALL`."""
    from bdc_tables_foraging.demo import generate_foraging_db

    return generate_foraging_db(tmp_path_factory.mktemp("foraging-src") / "db", **SMALL)


@pytest.fixture
def source_db(pristine_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A private copy of :func:`pristine_db` (free to modify), set as ``BDC_FORAGING_BASE``."""
    from bdc_tables_foraging.demo import describe_foraging_db

    root = tmp_path / "source"
    shutil.copytree(pristine_db.root, root)
    monkeypatch.setenv("BDC_FORAGING_BASE", str(root))
    return describe_foraging_db(root)


@pytest.fixture
def file_cache(tmp_path: Path) -> Any:
    """An empty :class:`bdc.Cache` on local disk."""
    from bdc.cache import Cache

    return Cache((tmp_path / "cache").as_uri())


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def upload_tree(local: Path, bucket: str, prefix: str) -> dict[str, int]:
    """Make ``s3://bucket/prefix/`` hold exactly the files under ``local``, as ``aws s3 sync --delete``.

    Unchanged files (same MD5 as the object's ETag) are not uploaded again, so their S3
    modification times stay as they were. Returns counts of uploaded and deleted objects.
    """
    import boto3

    s3 = boto3.client("s3")
    existing: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for item in page.get("Contents", []):
            existing[item["Key"]] = item["ETag"].strip('"')
    wanted = {}
    for path in sorted(local.rglob("*")):
        if path.is_file():
            wanted[f"{prefix}/{path.relative_to(local).as_posix()}"] = path
    uploaded = 0
    for key, path in wanted.items():
        if existing.get(key) != _md5(path):
            s3.upload_file(str(path), bucket, key)
            uploaded += 1
    gone = [k for k in existing if k not in wanted]
    for key in gone:
        s3.delete_object(Bucket=bucket, Key=key)
    return {"uploaded": uploaded, "deleted": len(gone)}


@pytest.fixture
def s3_upload() -> Any:
    """:func:`upload_tree`: mirror a local tree into a bucket prefix."""
    return upload_tree


@pytest.fixture
def s3_source(source_db: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """The source copy uploaded to a moto bucket, and ``BDC_FORAGING_BASE`` pointing at it."""
    upload_tree(Path(source_db.root), s3_bucket, "foraging")
    base = f"s3://{s3_bucket}/foraging"
    monkeypatch.setenv("BDC_FORAGING_BASE", base)
    return source_db, base
