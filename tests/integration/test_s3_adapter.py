"""The boto3 S3 adapter against the HTTP S3 server: chunked deletes, per-key failures, sizes."""

from __future__ import annotations

import http.client
from urllib.parse import quote, urlsplit

import pytest

from handlers import StorageUnavailable
from worker.embedded import free_port
from worker.settings import load_settings
from worker.storage import S3ObjectStore


@pytest.fixture
def store(settings, clean) -> S3ObjectStore:
    return S3ObjectStore(settings)


def put_objects(endpoint_url: str, bucket: str, keys: list[str]) -> None:
    # Unsigned keep-alive PUTs (the test server does not check signatures): boto3's
    # signing and checksums per request would make 1005 uploads several times slower.
    endpoint = urlsplit(endpoint_url)
    connection = http.client.HTTPConnection(endpoint.hostname, endpoint.port, timeout=10)
    try:
        for key in keys:
            connection.request("PUT", f"/{bucket}/{quote(key)}", body=b"x")
            response = connection.getresponse()
            response.read()
            assert response.status == 200, (key, response.status)
    finally:
        connection.close()


def bucket_keys(s3, bucket: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def delete_batch_sizes(store: S3ObjectStore) -> list[int]:
    """Records how many keys each DeleteObjects request carries."""
    sizes: list[int] = []

    def record(params, **_):
        sizes.append(len(params["Delete"]["Objects"]))

    store.client.meta.events.register("before-parameter-build.s3.DeleteObjects", record)
    return sizes


def test_delete_many_with_1005_keys_deletes_all_in_two_calls_and_reports_each_refused_key(
    store, services, s3, bucket, deny_deletes_under
):
    refused_at = {0, 999, 1003}
    keys = [
        f"protected/{i:04d}.mp4" if i in refused_at else f"bulk/{i:04d}.mp4" for i in range(1005)
    ]
    put_objects(services["S3_ENDPOINT_URL"], bucket, keys)
    deny_deletes_under("protected/")
    sizes = delete_batch_sizes(store)

    report = store.delete_many(keys)

    assert sizes == [1000, 5]
    refused = [keys[i] for i in sorted(refused_at)]
    assert report.deleted == [k for k in keys if k not in refused]
    assert report.failed == dict.fromkeys(refused, "AccessDenied: Access Denied")
    assert bucket_keys(s3, bucket) == set(refused)


def test_delete_many_sends_a_repeated_key_once_and_treats_missing_keys_as_deleted(
    store, services, s3, bucket
):
    put_objects(services["S3_ENDPOINT_URL"], bucket, ["a.mp4"])
    sizes = delete_batch_sizes(store)

    report = store.delete_many(["a.mp4", "never-uploaded.mp4", "a.mp4"])

    assert sizes == [2]
    assert (report.deleted, report.failed) == (["a.mp4", "never-uploaded.mp4"], {})
    assert bucket_keys(s3, bucket) == set()


def test_a_refused_request_fails_its_whole_chunk_without_raising(settings, clean):
    store = S3ObjectStore(load_settings(s3_bucket="no-such-bucket"))

    report = store.delete_many(["a", "b"])

    assert report.deleted == []
    assert set(report.failed) == {"a", "b"}
    assert all(error.startswith("NoSuchBucket: ") for error in report.failed.values())


def test_an_unreachable_server_fails_every_key_without_raising(settings):
    store = S3ObjectStore(load_settings(s3_endpoint_url=f"http://127.0.0.1:{free_port()}"))

    report = store.delete_many(["a", "b"])

    assert (report.deleted, report.failed) == (
        [],
        {"a": "EndpointConnectionError", "b": "EndpointConnectionError"},
    )


def test_size_is_the_byte_size_or_none_for_a_missing_key(store, s3, bucket):
    s3.put_object(Bucket=bucket, Key="videos/sized.mp4", Body=b"\x00" * 12_345)
    s3.put_object(Bucket=bucket, Key="videos/empty.mp4", Body=b"")

    assert store.size("videos/sized.mp4") == 12_345
    assert store.size("videos/empty.mp4") == 0
    assert store.size("videos/missing.mp4") is None


def test_size_raises_storage_unavailable_when_the_server_is_unreachable(settings):
    store = S3ObjectStore(load_settings(s3_endpoint_url=f"http://127.0.0.1:{free_port()}"))

    with pytest.raises(StorageUnavailable) as raised:
        store.size("videos/any.mp4")

    assert str(raised.value) == "S3 unreachable: EndpointConnectionError"
