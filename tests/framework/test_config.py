"""Which cache the one-line functions use: BDC_CACHE, BIODATA_CACHE_BACKEND, or the local default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bdc.errors import BdcError
from bdc_samples import typed_rows


def test_bdc_cache_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import bdc

    url = (tmp_path / "elsewhere").as_uri()
    monkeypatch.setenv("BDC_CACHE", url)
    assert bdc.default_cache().url == url
    assert bdc.default_cache() is bdc.default_cache()  # reused while the setting stays
    monkeypatch.setenv("BDC_CACHE", "memory://config-test")
    assert bdc.default_cache().url == "memory://config-test"


def test_plain_path_in_bdc_cache_means_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import bdc

    monkeypatch.setenv("BDC_CACHE", str(tmp_path / "plain"))
    assert bdc.default_cache().url == (tmp_path / "plain").as_uri()


def test_legacy_biodata_cache_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from bdc.config import LEGACY_S3_URL, default_cache_url

    monkeypatch.delenv("BDC_CACHE")
    monkeypatch.setenv("BIODATA_CACHE_BACKEND", "MEMORY")
    assert default_cache_url() == "memory://"
    monkeypatch.setenv("BIODATA_CACHE_BACKEND", "s3")
    assert default_cache_url() == LEGACY_S3_URL == "s3://allen-data-views/data-asset-cache"
    import bdc

    assert bdc.default_cache().url == LEGACY_S3_URL  # opening an S3 cache contacts nothing
    monkeypatch.setenv("BIODATA_CACHE_BACKEND", "floppy")
    with pytest.raises(BdcError, match="BIODATA_CACHE_BACKEND"):
        default_cache_url()
    monkeypatch.setenv("BDC_CACHE", "memory://wins")
    assert default_cache_url() == "memory://wins"


def test_memory_legacy_backend_round_trip(monkeypatch: pytest.MonkeyPatch, typed_plugin: str) -> None:
    import bdc

    monkeypatch.delenv("BDC_CACHE")
    monkeypatch.setenv("BIODATA_CACHE_BACKEND", "MEMORY")
    bdc.default_cache().put("assets", typed_rows())
    assert len(bdc.get("assets")) == 5


def test_default_is_under_the_user_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            typed_plugin: str) -> None:
    import bdc

    monkeypatch.delenv("BDC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = tmp_path / "xdg" / "bdc" / "data-asset-cache"
    assert bdc.default_cache().url == expected.as_uri()
    bdc.default_cache().put("assets", typed_rows())
    assert (expected / "bdc-v0.36" / "assets.pqt").is_file()
    assert len(bdc.get("assets")) == 5


def test_cache_without_url_uses_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bdc.cache import Cache

    monkeypatch.setenv("BDC_CACHE", "memory://implicit")
    assert Cache().url == "memory://implicit"
    assert Cache(version="0.35").layout.version_folder == "bdc-v0.35"


def test_bdc_env_fixture(bdc_env: Any, typed_plugin: str) -> None:
    import bdc

    bdc_env.put("assets", typed_rows())
    assert bdc.default_cache().url == bdc_env.url
    assert len(bdc.get("assets")) == 5
