"""A real worker started with ``AUTH_MODE=jwt``: every role against the contract's table,
bad tokens of each kind, the audit's actor, and no token text in any log line.

The worker has a broker of its own (other Redis databases), so the session's auth-off
worker, if one runs, never takes its messages; PostgreSQL, S3 and the cache are shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from sqlalchemy import text as sql

from schemas.contract import QUEUE_OF
from tests.e2e.conftest import ROOT, start_worker, stop_worker
from tests.support import poll
from worker.adapters.postgres.tables import DeletionAudit, Video
from worker.client import ForbiddenError, NotFoundError, UnauthorizedError, VideoClient
from worker.runtime.tokens import mint_token

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret-for-hs256-tokens-0123456789"
RS256_PUBLIC_PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
QUEUE = {"videos.list", "videos.get", "videos.sign_url", "videos.stats"}


def pinned_client(env: dict[str, str]) -> VideoClient:
    """A caller of this module's worker; its URLs win over the session's CELERY_* variables
    (plain ``Celery(broker=…)`` would follow those to the auth-off worker's broker)."""
    return VideoClient(env["CELERY_BROKER_URL"], env["CELERY_RESULT_BACKEND"])


def _redis_db(url: str, db: int) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{db}"


@pytest.fixture(scope="module")
def jwt_env(services: dict[str, str]) -> Iterator[dict[str, str]]:
    redis_url = services["REDIS_URL"]
    broker, backend = _redis_db(redis_url, 11), _redis_db(redis_url, 12)
    # Empty at the start and at the end: a stats flush still waiting on its countdown when
    # a run's worker stops goes back to this broker, and would reach the next run's worker
    # with a token expired since.
    for url in (broker, backend):
        redis.Redis.from_url(url).flushdb()
    yield {
        **services,
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": backend,
        "AUTH_MODE": "jwt",
        "AUTH_JWT_SECRET": SECRET,
        "LOG_FORMAT": "json",
        # A test sees the stats flush run by Celery's success line.
        "LOG_TASK_LINES": "true",
    }
    for url in (broker, backend):
        redis.Redis.from_url(url).flushdb()


@pytest.fixture(scope="module")
def jwt_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jwt-worker") / "worker.log"


@pytest.fixture(scope="module")
def jwt_worker(jwt_env: dict[str, str], jwt_log: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = start_worker(jwt_env, jwt_log)
    app = pinned_client(jwt_env).app
    admin = token("admin", "probe")

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}")
        result = app.send_task("videos.stats", kwargs={"auth": admin}, queue="videos")
        try:
            return result.get(timeout=2)["ok"] is True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    try:
        poll(answers, timeout=90, interval=0, message="the jwt worker to answer")
        yield process
    finally:
        stop_worker(process)
        app.close()


@pytest.fixture(scope="module")
def caller(jwt_env: dict[str, str], jwt_worker):
    client = pinned_client(jwt_env)
    yield client.app
    client.close()


def token(role: str, sub: str = "alice", ttl: float = 600, secret: str = SECRET, **claims) -> str:
    return mint_token(secret, role=role, subject=sub, ttl=timedelta(seconds=ttl), **claims)


def call(caller, task: str, **kwargs) -> dict:
    queue = "videos" if task in QUEUE else "videos.maintenance"
    return caller.send_task(task, kwargs=kwargs, queue=queue).get(timeout=30)


@pytest.fixture
def two_malls(catalog):
    now = datetime.now(UTC)
    mall_a, mall_b = catalog.mall("A"), catalog.mall("B")
    pin_a, pin_b = catalog.pin(mall_a, "A1"), catalog.pin(mall_b, "B1")
    a = [catalog.video(mall_a, pin_a, uploaded_at=now - timedelta(minutes=i)) for i in range(2)]
    b = catalog.video(mall_b, pin_b, uploaded_at=now - timedelta(minutes=5))
    return mall_a, mall_b, pin_a, pin_b, a, b


def _actor_of(engine, video_id) -> list[str | None]:
    table = DeletionAudit.__table__
    with engine.connect() as conn:
        return list(
            conn.execute(select(table.c.actor).where(table.c.video_id == video_id)).scalars()
        )


def test_an_operator_of_mall_a_sees_reads_signs_and_deletes_only_mall_a(caller, two_malls, engine):
    mall_a, mall_b, _, _, a, b = two_malls
    operator = token("operator", "olga", malls=[mall_a])
    theirs = str(b["id"])
    not_found = {"code": "not_found", "detail": f"Video {theirs} not found"}

    listed = call(caller, "videos.list", auth=operator)["data"]
    assert sorted(v["id"] for v in listed["videos"]) == sorted(str(v["id"]) for v in a)
    assert call(caller, "videos.list", auth=operator, mall_id=str(mall_b))["data"]["total"] == 0
    for task, extra in (
        ("videos.get", {}),
        ("videos.sign_url", {"target": "original"}),
        ("videos.delete", {}),
    ):
        envelope = call(caller, task, auth=operator, video_id=theirs, **extra)
        assert (envelope["status"], envelope["error"]) == (404, not_found), task
    assert _actor_of(engine, b["id"]) == []

    mine = call(caller, "videos.sign_url", auth=operator, video_id=str(a[0]["id"]))
    assert mine["ok"] is True and mine["data"]["url"].startswith("http")
    deleted = call(caller, "videos.delete", auth=operator, video_id=str(a[1]["id"]))
    assert deleted["data"]["deleted"] is True
    assert _actor_of(engine, a[1]["id"]) == ["olga"]
    stats = call(caller, "videos.stats", auth=operator)["data"]
    assert (stats["mall_id"], stats["total_videos"]) == (None, 1)
    assert (
        call(caller, "videos.stats", auth=operator, mall_id=str(mall_b))["data"]["total_videos"]
        == 0
    )
    for task in ("videos.refresh_stats", "videos.retention_sweep", "videos.purge_storage"):
        envelope = call(caller, task, auth=operator)
        assert (envelope["status"], envelope["error"]["code"]) == (403, "forbidden"), task


def test_a_tenant_sees_its_pins_and_may_not_delete(caller, two_malls):
    _, _, pin_a, _, a, b = two_malls
    tenant = token("tenant", "tom", pins=[pin_a])

    listed = call(caller, "videos.list", auth=tenant)["data"]
    assert listed["total"] == 2
    assert call(caller, "videos.get", auth=tenant, video_id=str(b["id"]))["status"] == 404
    stats = call(caller, "videos.stats", auth=tenant)["data"]
    assert stats["total_videos"] == 2
    refused = call(caller, "videos.delete", auth=tenant, video_id=str(a[0]["id"]))
    assert refused == {
        "ok": False,
        "status": 403,
        "error": {"code": "forbidden", "detail": "Role tenant may not run videos.delete"},
    }


def test_an_admin_runs_every_task_and_its_sweep_records_its_sub(caller, catalog, engine):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    old = catalog.video(mall, pin, uploaded_at=datetime.now(UTC) - timedelta(days=400))
    admin = token("admin", "root")

    for task in ("videos.list", "videos.stats", "videos.refresh_stats", "videos.purge_storage"):
        assert call(caller, task, auth=admin)["ok"] is True, task
    assert call(caller, "videos.get", auth=admin, video_id=str(old["id"]))["ok"] is True
    swept = call(caller, "videos.retention_sweep", auth=admin, mall_id=str(mall))
    assert swept["data"]["deleted"] == 1
    assert _actor_of(engine, old["id"]) == ["root"]


def test_bad_tokens_of_every_kind_are_unauthorized_and_never_echoed(caller, two_malls):
    _, _, _, _, a, _ = two_malls
    now = int(time.time())
    base = {"sub": "mallory", "role": "admin", "aud": "videoworker", "exp": now + 600}
    bad = {
        "expired": (token("admin", ttl=-120), "auth: token expired"),
        "badly signed": (
            token("admin", secret="another-secret-of-at-least-32-bytes!!"),
            "auth: bad signature",
        ),
        "wrong audience": (
            jwt.encode({**base, "aud": "billing"}, SECRET, algorithm="HS256"),
            "auth: wrong audience",
        ),
        "alg none": (jwt.encode(base, None, algorithm="none"), "auth: algorithm not accepted"),
        "garbage": ("definitely-not-a-token", "auth: not a well-formed JWT"),
    }
    for name, (text, detail) in bad.items():
        envelope = call(caller, "videos.get", auth=text, video_id=str(a[0]["id"]))
        assert envelope == {
            "ok": False,
            "status": 401,
            "error": {"code": "unauthorized", "detail": detail},
        }, name
        assert text not in json.dumps(envelope)
    missing = call(caller, "videos.delete", video_id=str(a[0]["id"]))
    assert missing["error"] == {
        "code": "unauthorized",
        "detail": "auth: a token is required (AUTH_MODE=jwt)",
    }


def test_the_typed_client_sends_its_token_and_raises_typed_errors(jwt_env, jwt_worker, two_malls):
    mall_a, _, _, _, a, b = two_malls
    operator = token("operator", "olga", malls=[mall_a])
    client = VideoClient(
        jwt_env["CELERY_BROKER_URL"], jwt_env["CELERY_RESULT_BACKEND"], token=operator
    )
    try:
        assert client.get(a[0]["id"]).id == a[0]["id"]
        with pytest.raises(NotFoundError):
            client.get(b["id"])
        with pytest.raises(ForbiddenError):
            client.refresh_stats()
        with pytest.raises(UnauthorizedError, match="token expired"):
            client.get(a[0]["id"], token=token("admin", ttl=-120))
        assert client.stats(token=token("admin")).total_videos >= 3
    finally:
        client.close()


def test_the_cli_mints_a_token_and_calls_with_it(jwt_env, jwt_worker, two_malls):
    mall_a, _, _, _, a, _ = two_malls
    env = {**os.environ, **jwt_env}
    command = [sys.executable, "-m", "worker.ops.cli"]
    minted = subprocess.run(
        [
            *command,
            "token",
            "--role",
            "operator",
            "--mall",
            str(mall_a),
            "--sub",
            "cli",
            "--ttl",
            "5m",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert jwt.decode(minted, SECRET, algorithms=["HS256"], audience="videoworker")["malls"] == [
        str(mall_a)
    ]

    called = subprocess.run(
        [*command, "call", "videos.list", "--token", minted],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["data"]["total"] == 2
    refused = subprocess.run(
        [*command, "call", "videos.list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and '"unauthorized"' in refused.stdout


def test_an_operators_delete_queues_a_stats_flush_that_runs_with_its_authority(
    caller, two_malls, jwt_log
):
    mall_a, _, _, _, a, _ = two_malls
    operator = token("operator", "flusher", malls=[mall_a])

    assert call(caller, "videos.delete", auth=operator, video_id=str(a[0]["id"]))["ok"] is True

    def flushed() -> bool:
        return "Task videos.flush_stale_stats[" in jwt_log.read_text()

    poll(flushed, timeout=30, message="the debounced stats flush to run")
    refused = [
        line
        for line in jwt_log.read_text().splitlines()
        if '"event": "auth.' in line and "flush_stale_stats" in line
    ]
    assert refused == []


def test_no_log_line_holds_a_token_and_the_sub_is_logged_with_the_task(caller, two_malls, jwt_log):
    mall_a, _, _, _, a, _ = two_malls
    operator = token("operator", "logged-sub", malls=[mall_a])
    expired = token("admin", "late", ttl=-120)
    for text in (operator, expired):
        call(caller, "videos.delete", auth=text, video_id=str(a[1]["id"]))
    call(caller, "videos.get", auth=operator, video_id=str(a[0]["id"]), nonsense=True)

    def deletion_logged() -> bool:
        return any(
            '"event": "video.deleted"' in line and '"sub": "logged-sub"' in line
            for line in jwt_log.read_text().splitlines()
        )

    poll(deletion_logged, timeout=10, message="the delete's log line with its sub")
    text = jwt_log.read_text()
    for secret in (operator, expired, SECRET):
        assert secret not in text
    for part in (operator.split(".")[2], expired.split(".")[2], operator.split(".")[1]):
        assert part not in text


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({}, "AUTH_JWT_PUBLIC_KEY"),
        ({"AUTH_JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\\nnot-a-key"}, "AUTH_JWT_PUBLIC_KEY"),
        ({"AUTH_JWT_SECRET": "short"}, "AUTH_JWT_SECRET"),
        # Narrowed to RS256 with a leftover secret and no service token: beat's schedule
        # would be refused at every run, so the worker does not start.
        (
            {
                "AUTH_JWT_PUBLIC_KEY": RS256_PUBLIC_PEM,
                "AUTH_JWT_ALGORITHMS": "RS256",
                "AUTH_JWT_SECRET": SECRET,
            },
            "AUTH_SERVICE_TOKEN",
        ),
    ],
)
def test_a_misconfigured_jwt_worker_does_not_start_and_names_the_variable(
    jwt_env, tmp_path, extra, named
):
    env = {k: v for k, v in jwt_env.items() if k != "AUTH_JWT_SECRET"}
    env = {**env, "CELERY_BROKER_URL": _redis_db(jwt_env["REDIS_URL"], 13), **extra}
    log_path = tmp_path / "refused.log"
    process = start_worker(env, log_path)
    try:
        process.wait(timeout=60)
    finally:
        stop_worker(process)
    assert process.returncode != 0
    assert named in log_path.read_text()


def test_a_reused_task_id_never_answers_another_callers_deletion(caller, two_malls):
    """Callers choose task ids: the answer a redelivery gets again from the audit goes
    only to the caller who deleted, within its scope."""
    mall_a, mall_b, _, _, _, b = two_malls
    task_id = f"chosen-{uuid.uuid4()}"
    theirs = str(b["id"])

    def delete_as(auth: str) -> dict:
        sent = caller.send_task(
            "videos.delete",
            kwargs={"auth": auth, "video_id": theirs},
            queue="videos.maintenance",
            task_id=task_id,
        )
        try:
            return sent.get(timeout=30)
        finally:
            # The answer is stored under the task id: the next sender must not read it.
            sent.forget()

    admin = token("admin", "root")
    first = delete_as(admin)
    reused = {
        "operator of mall A": delete_as(token("operator", "root", malls=[mall_a])),
        "operator of no mall": delete_as(token("operator", "root", malls=[])),
        "operator of mall B, another sub": delete_as(token("operator", "olga", malls=[mall_b])),
        "another admin": delete_as(token("admin", "eve")),
    }
    again = delete_as(admin)

    assert first["ok"] is True and first["data"]["deleted"] is True
    not_found = {
        "ok": False,
        "status": 404,
        "error": {"code": "not_found", "detail": f"Video {theirs} not found"},
    }
    assert reused == dict.fromkeys(reused, not_found)
    assert again == first


def test_an_operator_cannot_bulk_delete_another_malls_videos_nor_a_tenant_restore(
    caller, catalog, engine
):
    mine, theirs = catalog.mall("A"), catalog.mall("B")
    own = catalog.video(mine, catalog.pin(mine))
    foreign = catalog.video(theirs, catalog.pin(theirs))
    operator = token("operator", "olga", malls=[mine])
    outsider = token("operator", "otto", malls=[theirs])
    tenant = token("tenant", "tom", pins=[own["pin_id"]])
    by_ids = _data(caller, "videos.bulk_delete", auth=operator, video_ids=[str(foreign["id"])])
    by_filter = _data(caller, "videos.bulk_delete", auth=operator, filters={"mall_id": str(theirs)})
    _data(caller, "videos.delete", auth=operator, video_id=str(own["id"]), trash=True)
    refused = call(caller, "videos.restore", auth=tenant, video_id=str(own["id"]))
    unseen = call(caller, "videos.restore", auth=outsider, video_id=str(own["id"]))

    assert (by_ids["matched"], by_ids["deleted"], by_ids["not_found"]) == (
        0,
        0,
        [str(foreign["id"])],
    )
    assert (by_filter["matched"], by_filter["deleted"]) == (0, 0)
    with engine.connect() as conn:
        left = set(conn.execute(select(Video.__table__.c.id)).scalars())
    assert left == {own["id"], foreign["id"]}
    assert refused == {
        "ok": False,
        "status": 403,
        "error": {"code": "forbidden", "detail": "Role tenant may not run videos.restore"},
    }
    # Another mall's trash is as invisible as its videos.
    assert unseen["error"] == {"code": "not_found", "detail": f"Video {own['id']} not in trash"}


def _data(app, task: str, **kwargs) -> dict:
    envelope = call(app, task, **kwargs)
    assert envelope["ok"] is True, envelope
    return envelope["data"]


def _on_its_queue(caller, task: str, **kwargs) -> dict:
    return caller.send_task(task, kwargs=kwargs, queue=QUEUE_OF[task]).get(timeout=30)


def test_tags_and_shares_keep_to_the_callers_scope_and_a_resolve_needs_no_auth(
    caller, two_malls, engine
):
    mall_a, mall_b, pin_a, _, a, b = two_malls
    op_a = token("operator", "op-a", malls=[mall_a])
    op_b = token("operator", "op-b", malls=[mall_b])
    tenant_a = token("tenant", "tenant-a", pins=[pin_a])
    ids_a = [str(v["id"]) for v in a]

    tagged = _on_its_queue(
        caller, "videos.tag", auth=tenant_a, video_ids=[*ids_a, str(b["id"])], add=["dock"]
    )
    assert tagged["data"] == {"videos": 2, "added": 2, "removed": 0, "not_found": [str(b["id"])]}
    assert _on_its_queue(caller, "videos.tags", auth=op_b)["data"] == {"tags": []}
    created = _on_its_queue(caller, "videos.share", auth=op_a, video_ids=ids_a)["data"]
    refused = _on_its_queue(caller, "videos.share", auth=op_b, video_ids=ids_a)
    assert refused["error"]["code"] == "not_found"

    # No auth at all, and an expired one: the token is the credential.
    opened = _on_its_queue(caller, "videos.share_resolve", token=created["token"])
    expired = token("admin", ttl=-120)
    again = _on_its_queue(caller, "videos.share_resolve", auth=expired, token=created["token"])
    assert [v["id"] for v in opened["data"]["videos"]] == ids_a and again["ok"] is True

    assert _on_its_queue(caller, "videos.shares", auth=op_b)["data"] == {"shares": [], "total": 0}
    assert _on_its_queue(caller, "videos.shares", auth=tenant_a)["data"]["total"] == 1
    not_theirs = _on_its_queue(
        caller, "videos.share_revoke", auth=op_b, share_id=created["share_id"]
    )
    assert not_theirs["error"] == {
        "code": "not_found",
        "detail": f"Share {created['share_id']} not found",
    }
    revoked = _on_its_queue(caller, "videos.share_revoke", auth=op_a, share_id=created["share_id"])
    assert revoked["data"] == {"share_id": created["share_id"], "revoked": True}
    with engine.connect() as conn:
        who = conn.execute(
            sql("SELECT created_by, revoked_by FROM shares WHERE id = :i"),
            {"i": created["share_id"]},
        ).one()
    assert tuple(who) == ("op-a", "op-a")
    assert _on_its_queue(caller, "videos.share_resolve", token=created["token"])["status"] == 404
