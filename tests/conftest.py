"""Fixtures shared by every test folder: a real S3 protocol peer (moto's server) on loopback."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def _moto_s3() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port) while the block runs; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port), for the whole session; yields its endpoint URL."""
    with _moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def other_s3_server() -> Iterator[str]:
    """A second moto S3 server on loopback, for one test: another S3 service than :func:`s3_server`'s
    (its buckets are not those of the first); yields its endpoint URL."""
    with _moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> str:
    """Point boto3 (and bdc's S3 backend) at the moto server with dummy credentials; yields the endpoint."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3",
                 "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # readers' local copies of S3 objects (bdc.backends.readcache): per test, never the user's
    monkeypatch.setenv("BDC_LOCAL_CACHE_DIR", str(tmp_path / "bdc-local-objects"))
    return s3_server


@pytest.fixture
def s3_bucket(s3_env: str) -> str:
    """A fresh, empty bucket on the moto server (unique per test); yields its name."""
    import boto3

    name = f"bdc-test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_url(s3_bucket: str) -> str:
    """A cache URL in a fresh bucket: ``s3://{bucket}/data-asset-cache``."""
    return f"s3://{s3_bucket}/data-asset-cache"


@pytest.fixture
def isolated_bdc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No installed entry-point plugin, a fresh plugin manager, and a default cache under tmp_path."""
    from bdc import api, plugins

    monkeypatch.setenv("BDC_LOAD_PLUGINS", "")
    for name in ("BDC_DISABLE_PLUGINS", "BDC_STRICT_PLUGINS", "BIODATA_CACHE_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BDC_CACHE", (tmp_path / "default-cache").as_uri())
    plugins.reset()
    api._caches.clear()
    yield
    plugins.reset()
    api._caches.clear()


# -- the long (soak) variants: marked ``slow``, run only with --soak (here, not in a sub-folder's
# conftest: pytest honours pytest_addoption only in the conftests it loads at startup) -------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="also run the long variants of the reliability tests (marked slow), e.g. 10 minutes of load")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="a long variant: run with --soak")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
