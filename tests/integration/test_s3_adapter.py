"""The boto3 S3 adapter against the HTTP S3 server: chunked deletes, per-key failures, keys
that XML cannot carry, whole-call refusals, sizes."""

from __future__ import annotations

import http.client
import math
import time
from urllib.parse import quote, urlsplit

import pytest

from handlers import StorageUnavailable
from worker.adapters.s3.store import S3ObjectStore
from worker.dev.embedded import free_port
from worker.settings import load_settings


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


def delete_calls(store: S3ObjectStore) -> list[tuple[str, list[str]]]:
    """Records each delete call the store makes (once, whatever botocore retries) and its keys."""
    calls: list[tuple[str, list[str]]] = []

    def batch(params, **_):
        calls.append(("DeleteObjects", [o["Key"] for o in params["Delete"]["Objects"]]))

    def single(params, **_):
        calls.append(("DeleteObject", [params["Key"]]))

    store.client.meta.events.register("before-parameter-build.s3.DeleteObjects", batch)
    store.client.meta.events.register("before-parameter-build.s3.DeleteObject", single)
    return calls


def replace_delete_body_when(store: S3ObjectStore, marker: bytes, body: bytes) -> None:
    """Sends ``body`` instead of any DeleteObjects body holding ``marker``.

    The server then answers that request as it answers such a body: what a real S3 says
    of a key it cannot take, here for a key moto would take.
    """

    def swap(params, **_):
        if marker in params["body"]:
            params["body"] = body

    store.client.meta.events.register("before-call.s3.DeleteObjects", swap)


@pytest.fixture
def unsafe_keys_removed(s3, bucket):
    """Removes, one by one, keys a test left that no DeleteObjects body can carry: the
    next test's bucket clean-up sends one."""
    yield
    for key in bucket_keys(s3, bucket):
        if not key.isprintable():
            s3.delete_object(Bucket=bucket, Key=key)


def is_gone(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    return False


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


def test_a_key_with_a_control_character_is_deleted_alone_and_its_batch_with_it(
    store, s3, bucket, unsafe_keys_removed
):
    ordinary = [f"videos/m/original/{i}.mp4" for i in range(5)]
    control = "videos/m/original/bad\x01name.mp4"
    keys = [*ordinary[:2], control, *ordinary[2:]]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")  # the key travels in the URL
    assert bucket_keys(s3, bucket) == set(keys)
    calls = delete_calls(store)

    report = store.delete_many(keys)

    assert (report.deleted, report.failed) == (keys, {})
    assert calls == [("DeleteObjects", ordinary), ("DeleteObject", [control])]
    assert all(is_gone(s3, bucket, key) for key in keys)
    assert bucket_keys(s3, bucket) == set()


def test_keys_xml_cannot_carry_go_alone_and_a_missing_one_counts_as_deleted(
    store, s3, bucket, unsafe_keys_removed
):
    # U+001F and U+FFFE are outside XML 1.0's characters; a raw carriage return is read
    # back as a line feed, which would name another key.
    unsafe = ["thumbnails/unit\x1fseparator.jpg", "thumbnails/non\ufffechar.jpg", "a\rb.mp4"]
    for key in [*unsafe, "plain.mp4"]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    never_uploaded = "thumbnails/never\x01uploaded.jpg"
    calls = delete_calls(store)

    report = store.delete_many(["plain.mp4", *unsafe, never_uploaded])

    assert (report.deleted, report.failed) == (["plain.mp4", *unsafe, never_uploaded], {})
    assert calls == [
        ("DeleteObjects", ["plain.mp4"]),
        *(("DeleteObject", [key]) for key in [*unsafe, never_uploaded]),
    ]
    assert bucket_keys(s3, bucket) == set()


def test_a_batch_refused_as_malformed_is_halved_until_only_the_refused_key_fails(
    store, services, s3, bucket, deny_deletes_under
):
    keys = [f"bulk/{i:03d}.mp4" for i in range(64)]
    refused = "protected/poison.mp4"
    keys.insert(40, refused)
    put_objects(services["S3_ENDPOINT_URL"], bucket, keys)
    # Any DeleteObjects carrying the key is answered 400 MalformedXML, as a whole; moto
    # refuses its DeleteObject too, so it is the one key that truly fails.
    replace_delete_body_when(
        store, b"protected/", b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></Delete>'
    )
    deny_deletes_under("protected/")
    calls = delete_calls(store)

    report = store.delete_many(keys)

    assert report.deleted == [key for key in keys if key != refused]
    assert list(report.failed) == [refused]
    # moto answers a refused DeleteObject with a bare 403, S3 with an AccessDenied body.
    assert report.failed[refused] in ("AccessDenied: Access Denied", "403: Forbidden")
    assert bucket_keys(s3, bucket) == {refused}
    # One failing half a level, each level a call for each half, down to the key alone.
    assert ("DeleteObject", [refused]) in calls
    assert len(calls) <= 1 + 2 * math.ceil(math.log2(len(keys)))
    assert sum(len(batch) for op, batch in calls if refused not in batch) == len(keys) - 1


def test_a_server_error_fails_the_whole_batch_at_once_without_splitting(
    store, services, s3, bucket, unsafe_keys_removed
):
    keys = [f"bulk/{i:02d}.mp4" for i in range(10)]
    control = "bulk/ctl\x01.mp4"
    put_objects(services["S3_ENDPOINT_URL"], bucket, keys)
    s3.put_object(Bucket=bucket, Key=control, Body=b"x")
    # A body the server cannot parse: moto answers 500, as a store in trouble would.
    replace_delete_body_when(store, b"bulk/", b"<Delete><Object><Key>\x01</Key></Object>")
    calls = delete_calls(store)

    report = store.delete_many([*keys, control])

    assert calls == [("DeleteObjects", keys)]
    assert report.deleted == []
    assert report.failed == dict.fromkeys([*keys, control], "500: Internal Server Error")
    assert bucket_keys(s3, bucket) == {*keys, control}


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


def test_an_unreachable_server_fails_every_key_at_once_in_a_bounded_number_of_calls(settings):
    store = S3ObjectStore(
        load_settings(
            s3_endpoint_url=f"http://127.0.0.1:{free_port()}", s3_connect_timeout_seconds=0.5
        )
    )
    keys = [f"bulk/{i:04d}.mp4" for i in range(1001)] + ["bulk/ctl\x01.mp4"]
    calls = delete_calls(store)
    started = time.monotonic()

    report = store.delete_many(keys)

    elapsed = time.monotonic() - started
    assert report.deleted == []
    assert report.failed == dict.fromkeys(keys, "EndpointConnectionError")
    assert [op for op, _ in calls] == ["DeleteObjects"]  # and no DeleteObject
    assert elapsed < 10, elapsed  # one call's three attempts and their backoff


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
