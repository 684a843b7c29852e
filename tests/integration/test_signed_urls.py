"""videos.sign_url against the S3 adapter: which host signs, and that signing needs no S3."""

from __future__ import annotations

import dataclasses
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest

import handlers
from schemas import SignUrl
from worker.adapters.s3.store import S3ObjectStore
from worker.dev.embedded import free_port
from worker.settings import load_settings

PUBLIC = "http://public.example:9000"


def closed_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_urls_are_signed_for_the_public_endpoint_when_one_is_set(settings, bucket):
    store = S3ObjectStore(load_settings(s3_public_endpoint_url=PUBLIC))

    url = urlsplit(store.presign_get("videos/m/proxy/v.mp4", 900))

    assert (url.scheme, url.netloc, url.path) == (
        "http",
        "public.example:9000",
        f"/{bucket}/videos/m/proxy/v.mp4",
    )
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["900"]
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert query["X-Amz-Credential"][0].endswith("/us-east-1/s3/aws4_request")


def test_sign_url_through_the_handler_points_callers_at_the_public_host(deps, catalog):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))
    public_deps = dataclasses.replace(
        deps, store=S3ObjectStore(load_settings(s3_public_endpoint_url=PUBLIC))
    )

    result = handlers.sign_url(SignUrl(video_id=str(row["id"]), target="thumbnail"), public_deps)

    assert urlsplit(result.url).netloc == "public.example:9000"
    assert urlsplit(result.url).path.endswith(row["thumbnail_path"])


def test_without_a_public_endpoint_urls_point_at_s3_endpoint_url(settings, services):
    assert settings.s3_public_endpoint_url is None
    store = S3ObjectStore(settings)

    url = urlsplit(store.presign_get("k.jpg", 300))

    assert url.netloc == urlsplit(services["S3_ENDPOINT_URL"]).netloc


def test_signing_makes_no_s3_call_so_it_works_while_s3_is_down(deps, catalog):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall), upload_objects=False)
    down = closed_endpoint()
    store = S3ObjectStore(load_settings(s3_endpoint_url=down))
    calls: list[str] = []
    store.client.meta.events.register(
        "before-send.s3", lambda **kw: calls.append(kw["request"].url)
    )

    result = handlers.sign_url(
        SignUrl(video_id=str(row["id"]), target="original", expires_minutes=5),
        dataclasses.replace(deps, store=store),
    )

    assert result.url.startswith(f"{down}/")
    assert parse_qs(urlsplit(result.url).query)["X-Amz-Expires"] == ["300"]
    assert calls == []


@pytest.mark.parametrize("target", ["proxy", "original", "thumbnail"])
def test_every_target_downloads_its_own_object(deps, catalog, s3, bucket, target):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))
    key = row[
        {"proxy": "proxy_path", "original": "original_path", "thumbnail": "thumbnail_path"}[target]
    ]
    s3.put_object(Bucket=bucket, Key=key, Body=f"{target} of {row['id']}".encode())

    result = handlers.sign_url(SignUrl(video_id=str(row["id"]), target=target), deps)

    with urllib.request.urlopen(result.url, timeout=10) as response:  # noqa: S310 - our URL
        assert response.status == 200
        assert response.read() == f"{target} of {row['id']}".encode()
