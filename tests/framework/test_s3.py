"""The S3 backend against moto's server on loopback: endpoints, headers, offline Arrow reads."""

from __future__ import annotations

from typing import Any

import pytest

from bdc_samples import typed_rows

pytestmark = pytest.mark.usefixtures("typed_plugin")


def test_aws_endpoint_url_s3_wins(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from bdc.cache import Cache

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    cache = Cache(s3_url)
    cache.put("events", typed_rows())
    assert len(cache.get("events", subject_id="0012")) == 2


def test_objects_carry_content_type_and_cache_control(s3_url: str, s3_env: str) -> None:
    import boto3

    from bdc.cache import Cache

    cache = Cache(s3_url)
    cache.put("assets", typed_rows())
    client = boto3.client("s3", endpoint_url=s3_env)
    bucket, prefix = s3_url[5:].split("/", 1)
    head = client.head_object(Bucket=bucket, Key=f"{prefix}/bdc-v0.36/assets.pqt")
    assert head["ContentType"] == "application/vnd.apache.parquet"
    assert head["CacheControl"] == "no-cache"
    head = client.head_object(Bucket=bucket, Key=f"{prefix}/bdc-v0.36/cache_registry.json")
    assert head["ContentType"] == "application/json"
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert f"{prefix}/cache_versions.json" in keys


def test_pyarrow_s3_filesystem_reads_the_location_offline(s3_url: str) -> None:
    """The registry location is readable by pyarrow's own S3 client: no DuckDB extension download."""
    import pyarrow.dataset as ds

    from bdc.cache import Cache

    cache = Cache(s3_url)
    cache.put("events", typed_rows())
    fs, root = cache.backend.arrow_filesystem()
    folder = cache.registry_entry("events")["location"][len("s3://"):]
    assert folder.startswith(root)
    table = ds.dataset(folder, filesystem=fs, format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("subject_id").to_pylist()) == sorted(r["subject_id"] for r in typed_rows())


def test_missing_bucket_is_an_error_not_empty(s3_env: str) -> None:
    from bdc.cache import Cache
    from bdc.errors import BdcError

    cache = Cache("s3://no-such-bucket-here/prefix")
    with pytest.raises(BdcError):
        cache.get("assets")


def test_unreachable_endpoint_is_a_backend_error(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bdc.cache import Cache
    from bdc.errors import BackendError

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    cache = Cache("s3://whatever/prefix")
    with pytest.raises(BackendError, match="failed"):
        cache.registry()


def test_cache_url_normalisation(s3_env: str) -> None:
    from bdc.cache import Cache

    assert Cache("s3://bucket/a/b/").url == "s3://bucket/a/b"
    assert Cache("s3://bucket").location("assets") == "s3://bucket/bdc-v0.36/assets.pqt"


def test_any_cache_fixture_covers_s3(any_cache: Any) -> None:
    assert any_cache.url.split("://")[0] in ("memory", "file", "s3")


def test_same_service_compares_the_filesystems_endpoint(s3_env: str) -> None:
    """A pyarrow S3 filesystem is on the backend's S3 service when both name the same endpoint
    (default ports written out or not), or both Amazon S3 in one partition; any doubt is ``False``."""
    import boto3
    import pyarrow.fs as pafs

    from bdc.backends.s3 import S3Backend

    def backend(**client: Any) -> S3Backend:
        return S3Backend("s3://bucket/prefix", client=boto3.client("s3", **client))

    def fs(**options: Any) -> Any:
        return pafs.S3FileSystem(anonymous=True, **options)

    moto = backend(endpoint_url="http://127.0.0.1:5000", region_name="us-east-1")
    assert moto.same_service(fs(endpoint_override="127.0.0.1:5000", scheme="http"))
    assert moto.same_service(fs(endpoint_override="http://127.0.0.1:5000"))
    for other in (fs(endpoint_override="127.0.0.1:5001", scheme="http"),
                  fs(endpoint_override="127.0.0.1:5000", scheme="https"),
                  fs(endpoint_override="localhost:5000", scheme="http"),
                  fs(region="us-east-1"), pafs.LocalFileSystem(), None):
        assert not moto.same_service(other), other
    assert backend(endpoint_url="http://minio.internal", region_name="us-east-1").same_service(
        fs(endpoint_override="minio.internal:80", scheme="http"))

    aws = backend(endpoint_url="https://s3.us-west-2.amazonaws.com", region_name="us-west-2")
    assert aws.service == "aws:aws"
    assert aws.same_service(fs(region="us-east-1"))  # one partition: bucket names are unique in it
    assert aws.same_service(fs(region="us-west-2", endpoint_override="s3.us-west-2.amazonaws.com"))
    assert not aws.same_service(fs(region="cn-north-1"))  # another partition: the same name, another bucket
    assert not aws.same_service(fs(region="us-gov-west-1"))
    assert not aws.same_service(fs(region="us-east-1", endpoint_override="127.0.0.1:5000", scheme="http"))
    china = backend(endpoint_url="https://s3.cn-north-1.amazonaws.com.cn", region_name="cn-north-1")
    assert china.service == "aws:aws-cn" and china.same_service(fs(region="cn-northwest-1"))


def test_copy_from_another_bucket(s3_url: str, s3_env: str) -> None:
    """A server-side copy from another bucket, with the target's headers; a missing source object
    or bucket is an error."""
    import boto3

    from bdc.backends.s3 import S3Backend
    from bdc.errors import BackendError, ObjectNotFoundError

    client = boto3.client("s3", endpoint_url=s3_env)
    client.create_bucket(Bucket="bdc-copy-source")
    client.put_object(Bucket="bdc-copy-source", Key="a/b.parquet", Body=b"PAR1 bytes PAR1", ContentType="text/plain",
                      Tagging="owner=upstream")
    backend = S3Backend(s3_url)
    backend.copy_from("bdc-copy-source", "a/b.parquet", "t/data.parquet")
    assert backend.read_bytes("t/data.parquet") == b"PAR1 bytes PAR1"
    head = client.head_object(Bucket=backend.bucket, Key=backend._key("t/data.parquet"))
    assert (head["ContentType"], head["CacheControl"]) == ("application/vnd.apache.parquet", "no-cache")
    # the source's tags are not copied (nor read: s3:GetObjectTagging is not needed on the source)
    assert client.get_object_tagging(Bucket=backend.bucket, Key=backend._key("t/data.parquet"))["TagSet"] == []
    with pytest.raises(ObjectNotFoundError):
        backend.copy_from("bdc-copy-source", "a/missing.parquet", "t/x.parquet")
    with pytest.raises(BackendError, match="failed"):
        backend.copy_from("bdc-no-such-source-bucket", "a/b.parquet", "t/x.parquet")
