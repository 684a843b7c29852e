"""Optional message signing (Celery's auth serializer) against a real worker."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.brokers import isolated_environment
from tests.e2e.conftest import outside_app, start_worker, stop_worker
from worker.client import NotFoundError, VideoClient


def write_key_and_cert(directory, name: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)


@pytest.fixture
def signing_worker(services, tmp_path, monkeypatch):
    key, cert = write_key_and_cert(tmp_path, "videoworker")
    signing = {
        "SECURITY_KEY": key,
        "SECURITY_CERTIFICATE": cert,
        "SECURITY_CERT_STORE": str(tmp_path / "*.pem"),
    }
    with isolated_environment(services, "signing", 9, 10, **signing) as env:
        monkeypatch.setenv("CELERY_BROKER_URL", env["CELERY_BROKER_URL"])
        monkeypatch.setenv("CELERY_RESULT_BACKEND", env["CELERY_RESULT_BACKEND"])
        process = start_worker(env, tmp_path / "worker.log")
        client = VideoClient(
            env["CELERY_BROKER_URL"],
            env["CELERY_RESULT_BACKEND"],
            signing={"key": key, "cert": cert, "store": str(tmp_path / "*.pem")},
            timeout=60,
        )
        try:
            yield env, client
        finally:
            client.close()
            stop_worker(process)


def test_signed_messages_are_answered_and_unsigned_ones_refused(signing_worker):
    env, client = signing_worker

    missing = uuid.uuid4()
    with pytest.raises(NotFoundError) as raised:
        client.get(missing)
    plain = outside_app(env)
    try:
        unsigned = plain.send_task(
            "videos.get", kwargs={"video_id": str(missing)}, queue="videos"
        ).get(timeout=60)
    finally:
        plain.close()

    assert raised.value.detail == f"Video {missing} not found"
    assert unsigned["ok"] is False and unsigned["error"]["code"] == "invalid_request"
    assert "is not accepted; send application/data" in unsigned["error"]["detail"]
