"""Analytics through the real worker (contract v1.2, "Analytics"): every signing path
counted after a flush, on whichever broker the session runs; S3 access logs ingested
once; and ``videos.analytics`` per role on a worker of its own with ``AUTH_MODE=jwt``."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from schemas.contract import QUEUE_OF
from tests.e2e.conftest import start_worker, stop_worker
from tests.support import poll, run_cli
from worker.client import VideoClient
from worker.runtime.tokens import mint_token

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret-for-analytics-tokens-0123456789"


def call(caller, task: str, **kwargs) -> dict:
    answer = caller.send_task(task, kwargs=kwargs, queue=QUEUE_OF[task]).get(timeout=60)
    assert answer["ok"], answer
    return answer["data"]


def today(data: dict) -> dict:
    last = data["days"][-1]
    assert last["day"] == datetime.now(UTC).date().isoformat()
    return last


def folded(app, read: Callable[[], object], expected: object, auth: str | None = None) -> None:
    """Flush until ``read()`` answers ``expected``: a message's counts are written just
    after its answer, so the flush sent right after an answer may run a moment before
    them. A count made twice would never settle on ``expected``."""
    kwargs = {} if auth is None else {"auth": auth}
    last: list[object] = []

    def settled() -> bool:
        call(app, "videos.flush_analytics", **kwargs)
        last[:] = [read()]
        return last[0] == expected

    poll(settled, timeout=15, interval=0.2, message=lambda: f"{expected}, last {last}")


def test_every_signing_path_is_counted_after_a_flush(caller, catalog):
    mall = catalog.mall("A")
    pin = catalog.pin(mall, "A1")
    a = catalog.video(mall, pin, original_filename="a.mp4")
    b = catalog.video(mall, pin, thumbnail=False)
    call(caller, "videos.flush_analytics")  # what earlier tests signed, out of the way
    before = call(caller, "videos.analytics", mall_id=str(mall))["totals"]

    call(caller, "videos.sign_url", video_id=str(a["id"]))
    call(caller, "videos.sign_urls", video_ids=[str(a["id"]), str(b["id"])], target="thumbnail")
    call(caller, "videos.list", mall_id=str(mall), sign=["proxy"])
    share = call(caller, "videos.share", video_ids=[str(a["id"]), str(b["id"])])
    call(caller, "videos.share_resolve", token=share["token"])
    unflushed = call(caller, "videos.analytics", mall_id=str(mall))["totals"]

    def figures() -> tuple[int, int, int]:
        day = today(call(caller, "videos.analytics", mall_id=str(mall)))
        return day["stream_urls"], day["thumbnail_urls"], day["share_views"]

    # sign_url, list, resolve; sign_urls, resolve (b has no thumbnail); two videos shown.
    folded(caller, figures, (1 + 2 + 2, 1 + 1, 2))
    data = call(caller, "videos.analytics", mall_id=str(mall), top=5)

    assert unflushed == before
    assert len(data["days"]) == 30
    top = {t["video_id"]: (t["original_filename"], t["stream_urls"]) for t in data["top_videos"]}
    assert top[str(a["id"])] == ("a.mp4", 3)
    assert data["totals"]["stream_urls"] == 5


def log_line(key: str, status: str, sent: int, when: datetime) -> str:
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return (
        f"79a59df9 videoworker-test [{stamp}] 192.0.2.3 - 3E57427F3EXAMPLE REST.GET.OBJECT "
        f'{key} "GET /videoworker-test/{key} HTTP/1.1" {status} - {sent} {sent} 70 10 "-" '
        '"Mozilla/5.0 (X11)" - s9lzHYrFp7= SigV4 ECDHE-RSA-AES128-SHA AuthHeader '
        "videoworker-test.s3.amazonaws.com TLSv1.2 - -\n"
    )


@pytest.fixture(scope="module")
def log_worker(services, tmp_path_factory) -> Iterator[tuple[VideoClient, dict[str, str]]]:
    """A worker reading access logs from the test bucket under ``access-logs/``."""
    env = _own_broker(services, 8, 9)
    env.update(ACCESS_LOG_BUCKET=services["S3_BUCKET"], ACCESS_LOG_PREFIX="access-logs/")
    yield from _worker(env, tmp_path_factory.mktemp("log-worker") / "worker.log", token=None)


def test_an_access_log_is_counted_once_and_only_its_served_bytes(log_worker, catalog, s3, bucket):
    client, _ = log_worker
    mall = catalog.mall("L")
    video = catalog.video(mall, catalog.pin(mall, "L1"))
    key = video["proxy_path"]
    now = datetime.now(UTC).replace(microsecond=0)
    body = "".join(
        [
            log_line(key, "200", 1000, now),
            log_line(key, "206", 250, now),
            log_line(key, "304", 0, now),
            log_line(key, "403", 300, now),
            "this is not a log line\n",
            "a b [c d] e\n",
        ]
    )
    s3.put_object(Bucket=bucket, Key="access-logs/2026-01-01-00-00-00-ABC", Body=body.encode())

    first = call(client.app, "videos.ingest_access_logs")
    second = call(client.app, "videos.ingest_access_logs")
    data = call(client.app, "videos.analytics", video_id=str(video["id"]), top=1)

    assert (first["objects"], first["bytes_counted"], first["garbage_lines"]) == (1, 1250, 2)
    assert second["objects"] == 0
    assert today(data)["bytes_served"] == 1250
    assert data["top_videos"][0]["bytes_served"] == 1250


def _own_broker(services: dict[str, str], broker_db: int, backend_db: int) -> dict[str, str]:
    base = services["REDIS_URL"].rpartition("/")[0]
    broker, backend = f"{base}/{broker_db}", f"{base}/{backend_db}"
    for url in (broker, backend):
        redis.Redis.from_url(url).flushdb()
    return {**services, "CELERY_BROKER_URL": broker, "CELERY_RESULT_BACKEND": backend}


def _worker(env: dict[str, str], log: Path, token: str | None):
    process: subprocess.Popen[bytes] = start_worker(env, log)
    client = VideoClient(env["CELERY_BROKER_URL"], env["CELERY_RESULT_BACKEND"])
    kwargs = {} if token is None else {"auth": token}

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}")
        result = client.app.send_task("videos.stats", kwargs=kwargs, queue="videos")
        try:
            return result.get(timeout=2)["ok"] is True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    try:
        poll(answers, timeout=90, interval=0, message="the worker to answer")
        yield client, env
    finally:
        stop_worker(process)
        client.close()
        for url in (env["CELERY_BROKER_URL"], env["CELERY_RESULT_BACKEND"]):
            redis.Redis.from_url(url).flushdb()


def token(role: str, **claims) -> str:
    return mint_token(SECRET, role=role, subject="e2e", ttl=timedelta(minutes=10), **claims)


@pytest.fixture(scope="module")
def jwt_worker(services, tmp_path_factory) -> Iterator[tuple[VideoClient, dict[str, str]]]:
    env = _own_broker(services, 14, 15)
    env.update(AUTH_MODE="jwt", AUTH_JWT_SECRET=SECRET)
    log = tmp_path_factory.mktemp("jwt-analytics") / "worker.log"
    yield from _worker(env, log, token=token("admin"))


def test_analytics_answers_each_role_over_what_it_sees(jwt_worker, catalog):
    client, _ = jwt_worker
    admin = token("admin")
    mall_a, mall_b = catalog.mall("A"), catalog.mall("B")
    pin_a, pin_b = catalog.pin(mall_a, "A1"), catalog.pin(mall_b, "B1")
    a, b = catalog.video(mall_a, pin_a), catalog.video(mall_b, pin_b)
    call(client.app, "videos.flush_analytics", auth=admin)
    for video, times in ((a, 2), (b, 3)):
        for _ in range(times):
            call(client.app, "videos.sign_url", video_id=str(video["id"]), auth=admin)

    def streams(auth: str) -> int:
        return call(client.app, "videos.analytics", auth=auth)["totals"]["stream_urls"]

    folded(client.app, lambda: streams(admin), 5, auth=admin)

    operator = token("operator", malls=[str(mall_a)])
    tenant = token("tenant", pins=[str(pin_b)])
    assert streams(operator) == 2
    assert streams(tenant) == 3
    assert streams(token("tenant", pins=[str(pin_a), str(pin_b)])) == 5
    denied = client.app.send_task(
        "videos.flush_analytics", kwargs={"auth": operator}, queue="videos.maintenance"
    ).get(timeout=30)
    assert denied["ok"] is False and denied["status"] == 403


def test_the_cli_prints_the_days_with_bars(services, caller, catalog):
    mall = catalog.mall("C")
    video = catalog.video(mall, catalog.pin(mall, "C1"), original_filename="cli.mp4")
    for _ in range(3):
        call(caller, "videos.sign_url", video_id=str(video["id"]))
    folded(
        caller,
        lambda: today(call(caller, "videos.analytics", mall_id=str(mall)))["stream_urls"],
        3,
    )

    result = run_cli("analytics", "--mall", str(mall), "--days", "3", env=services, check=0)

    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["day", "streams"]
    assert lines[3].split()[:2] == [datetime.now(UTC).date().isoformat(), "3"]
    assert lines[3].endswith("#" * 40)
    assert lines[-1].endswith("cli.mp4")
