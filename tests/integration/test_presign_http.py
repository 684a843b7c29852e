"""URLs from the fast presigner download their object from a real S3 HTTP server (moto).

The unit tests prove the URLs equal boto3's byte for byte (so the signature is boto3's);
this proves the URL reaches the right object over HTTP, for keys whose path encoding is
easy to get wrong. moto's server does not verify SigV4 query signatures or expiry unless
its IAM emulation is switched on, which the shared session server does not do, so a
tampered-signature check would prove nothing here.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest

from worker.adapters.s3.store import S3ObjectStore

KEYS = [
    "presign-http/videos/m/proxy/v.mp4",
    "presign-http/a b/c+d=e.mp4",
    "presign-http/caf\u00e9 \u6620\u50cf.mov",
    "presign-http/tilde~star*(1).jpg",
]


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our URL
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def store(settings) -> S3ObjectStore:
    built = S3ObjectStore(settings)
    assert built.fast_presigner is not None, "the test stack's config must take the fast path"
    return built


@pytest.mark.parametrize("key", KEYS)
def test_a_fast_url_downloads_the_object(store, s3, bucket, key):
    body = f"object {key}".encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    try:
        url = store.presign_get(key, 300, signed_at=datetime.now(UTC).replace(microsecond=0))

        assert fetch(url) == (200, body)
    finally:
        s3.delete_object(Bucket=bucket, Key=key)
