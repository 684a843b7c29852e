"""The fast presigner produces exactly the URL boto3's ``generate_presigned_url`` does.

Both paths sign at the same instant: boto3's clock (``botocore.auth.get_current_datetime``,
the function botocore's own signers read) is patched to the time the fast path is given.
No network: presigning is local computation, and the endpoints below are never contacted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.auth
import pytest
from botocore.config import Config
from botocore.credentials import RefreshableCredentials

from worker.adapters.s3.store import FastPresigner, S3ObjectStore, _client
from worker.settings import load_settings

KEYS = [
    "videos/7d1c/proxy/0b4e.mp4",
    "thumbnails/7d1c/0b4e.jpg",
    "a b/c d.mp4",
    "plus+sign.mp4",
    "equals=sign&amp.mp4",
    "unicode/caf\u00e9 \u6620\u50cf \U0001f3a5.mov",
    "slashes//double///and/trailing/",
    "/leading-slash.mp4",
    "tilde~star*bang!quote'paren().mp4",
    "percent%41%2F.mp4",
    "query?hash#semi;colon:at@comma,dollar$.mp4",
    "brackets[]{}<>|^`\\.mp4",
    "tab\tnewline\n.mp4",
    "x" * 1000,
]
EXPIRIES = [1, 300, 3600, 86_400, 604_800]
TIMES = [
    datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC),
    datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC),
    datetime(2026, 11, 25, 0, 0, 0, tzinfo=UTC),  # the next day: a new signing key
    datetime(2024, 2, 29, 6, 30, 15, tzinfo=UTC),
]
CONFIGS = {
    "path-style endpoint with port": {"s3_endpoint_url": "http://127.0.0.1:59000"},
    "https endpoint, default port": {"s3_endpoint_url": "https://minio.internal"},
    "http endpoint, explicit default port": {"s3_endpoint_url": "http://minio.internal:80"},
    "public endpoint differs": {
        "s3_endpoint_url": "http://minio:9000",
        "s3_public_endpoint_url": "https://media.example.com:8443",
    },
    "AWS, us-east-1, virtual host": {"s3_endpoint_url": None},
    "AWS, eu-west-1": {"s3_endpoint_url": None, "aws_region": "eu-west-1"},
    "AWS, dotted bucket": {"s3_endpoint_url": None, "s3_bucket": "media.videos.example"},
    "other region on an endpoint": {
        "s3_endpoint_url": "http://127.0.0.1:59000",
        "aws_region": "ap-southeast-2",
    },
}


def make_store(**overrides: object) -> S3ObjectStore:
    values = {
        "s3_bucket": "videos",
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "aws_region": "us-east-1",
        "s3_public_endpoint_url": None,
        **overrides,
    }
    return S3ObjectStore(load_settings(**values))


def boto3_url(store: S3ObjectStore, key: str, expires_in: int, at: datetime, monkeypatch) -> str:
    naive_utc = at.astimezone(UTC).replace(tzinfo=None)
    with monkeypatch.context() as patch:
        patch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: naive_utc)
        return store.signer.generate_presigned_url(
            "get_object", Params={"Bucket": store.bucket, "Key": key}, ExpiresIn=expires_in
        )


@pytest.mark.parametrize("config", CONFIGS.values(), ids=list(CONFIGS))
def test_fast_url_equals_boto3s_for_every_key_expiry_and_time(config, monkeypatch):
    store = make_store(**config)
    assert store.fast_presigner is not None, "this configuration must take the fast path"

    compared = 0
    for key in KEYS:
        for expires_in in EXPIRIES:
            for at in TIMES:
                fast = store.presign_get(key, expires_in, signed_at=at)
                assert fast == boto3_url(store, key, expires_in, at, monkeypatch), (key, at)
                compared += 1
    assert compared == len(KEYS) * len(EXPIRIES) * len(TIMES)


def test_the_signed_time_is_the_one_given_whatever_its_offset(monkeypatch):
    store = make_store(s3_endpoint_url="http://127.0.0.1:59000")
    utc = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
    elsewhere = utc.astimezone(timezone(timedelta(hours=-5, minutes=-30)))

    url = store.presign_get("k.mp4", 300, signed_at=elsewhere)

    assert parse_qs(urlsplit(url).query)["X-Amz-Date"] == ["20261124T100000Z"]
    assert url == boto3_url(store, "k.mp4", 300, utc, monkeypatch)
    # Naive datetimes are UTC, as in botocore.
    assert store.presign_get("k.mp4", 300, signed_at=utc.replace(tzinfo=None)) == url


def test_without_a_time_it_signs_now():
    store = make_store(s3_endpoint_url="http://127.0.0.1:59000")
    before = datetime.now(UTC).replace(microsecond=0)

    url = store.presign_get("k.mp4", 300)

    signed = datetime.strptime(
        parse_qs(urlsplit(url).query)["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"
    ).replace(tzinfo=UTC)
    assert before <= signed <= datetime.now(UTC)


def test_a_signing_key_cached_for_one_day_is_not_used_on_another(monkeypatch):
    store = make_store(s3_endpoint_url="http://127.0.0.1:59000")
    days = [datetime(2026, 11, d, 12, tzinfo=UTC) for d in (20, 21, 22, 21, 20)]

    for at in days:
        assert store.presign_get("k.mp4", 60, signed_at=at) == boto3_url(
            store, "k.mp4", 60, at, monkeypatch
        )
    assert len(store.fast_presigner._days) <= 2


def test_a_session_token_is_signed_where_boto3_puts_it(monkeypatch):
    client = boto3.session.Session().client(
        "s3",
        endpoint_url="http://127.0.0.1:59000",
        aws_access_key_id="ASIAEXAMPLE",
        aws_secret_access_key="secret/with+chars=",
        aws_session_token="token/with+chars==",
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    fast = FastPresigner.build(client, "videos")
    assert fast is not None
    at = TIMES[0]
    naive_utc = at.replace(tzinfo=None)

    for key in KEYS:
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: naive_utc)
        expected = client.generate_presigned_url(
            "get_object", Params={"Bucket": "videos", "Key": key}, ExpiresIn=900
        )
        monkeypatch.undo()
        assert fast.sign(key, 900, at) == expected
    assert "X-Amz-Security-Token=token%2Fwith%2Bchars%3D%3D" in expected


def test_signature_version_2_falls_back_to_boto3(monkeypatch):
    settings = load_settings(s3_endpoint_url="http://127.0.0.1:59000")
    client = _client(settings, settings.s3_endpoint_url)
    monkeypatch.setattr(client.meta.config, "signature_version", "s3")

    assert FastPresigner.build(client, "videos") is None


def test_refreshable_credentials_fall_back_to_boto3(monkeypatch):
    settings = load_settings(s3_endpoint_url="http://127.0.0.1:59000")
    client = _client(settings, settings.s3_endpoint_url)
    refreshable = RefreshableCredentials.create_from_metadata(
        {
            "access_key": "A",
            "secret_key": "S",
            "token": "T",
            "expiry_time": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
        refresh_using=lambda: {},
        method="test",
    )
    monkeypatch.setattr(client._request_signer, "_credentials", refreshable)

    assert FastPresigner.build(client, "videos") is None


def test_a_probe_that_does_not_match_falls_back_and_the_store_still_signs(monkeypatch):
    monkeypatch.setattr(FastPresigner, "sign", lambda self, *a: "http://wrong/")
    store = make_store(s3_endpoint_url="http://127.0.0.1:59000")
    assert store.fast_presigner is None

    url = store.presign_get("a b.mp4", 300, signed_at=datetime.now(UTC))

    assert url.startswith("http://127.0.0.1:59000/videos/a%20b.mp4?")
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["300"]
