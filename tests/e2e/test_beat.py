"""Two beats started by mistake send each periodic task once, not twice (redbeat's lock)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from schemas.contract import MAINTENANCE_QUEUE
from tests.brokers import broker_for, isolated_environment, with_redis_db
from tests.e2e.conftest import ROOT, stop_worker
from tests.support import poll

PURGE = "videos.purge_storage"


def start_beat(env: dict[str, str], log_path: Path, schedule: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "worker", "beat", "--loglevel", "INFO"]
    return subprocess.Popen(
        [*command, "--schedule", str(schedule)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.fixture
def beat_environment(services):
    # A broker, and redbeat's Redis (REDIS_URL), of their own: no worker reads them.
    results = with_redis_db(services["CELERY_RESULT_BACKEND"], 12)
    with isolated_environment(
        services, "beat", 11, 12, REDIS_URL=results, PURGE_INTERVAL_SECONDS="1"
    ) as env:
        yield env


def test_a_second_beat_waits_for_the_lock_instead_of_doubling_the_schedule(
    beat_environment, tmp_path, monkeypatch
):
    env = beat_environment
    broker = broker_for(env["CELERY_BROKER_URL"])
    schedule_store = redis.Redis.from_url(env["REDIS_URL"])

    def purges_queued() -> int:
        return broker.queued_tasks(MAINTENANCE_QUEUE).count(PURGE)

    monkeypatch.setenv("CELERY_BROKER_URL", env["CELERY_BROKER_URL"])
    monkeypatch.setenv("CELERY_RESULT_BACKEND", env["CELERY_RESULT_BACKEND"])
    logs = [tmp_path / "beat-a.log", tmp_path / "beat-b.log"]
    beats = [start_beat(env, log, tmp_path / f"schedule-{i}") for i, log in enumerate(logs)]

    def purge_queued() -> bool:
        assert all(beat.poll() is None for beat in beats), "a beat exited"
        return PURGE in broker.queued_tasks(MAINTENANCE_QUEUE)

    try:
        poll(purge_queued, timeout=60, interval=0.1, message="a purge message from either beat")
        first_seen = time.monotonic()
        # At least four sends and six seconds: long enough that a doubled schedule shows.
        poll(
            lambda: time.monotonic() - first_seen >= 6 and purges_queued() >= 4,
            timeout=30,
            interval=0.1,
            message=lambda: (
                f"four purges over six seconds (beat sends too slowly): {purges_queued()} queued"
            ),
        )
        purges = purges_queued()
        elapsed = time.monotonic() - first_seen
        assert all(beat.poll() is None for beat in beats), "a beat exited"
        redbeat_keys = [k.decode() for k in schedule_store.scan_iter("videoworker:redbeat:*")]
    finally:
        for beat in beats:
            stop_worker(beat)

    # One beat sends about once a second (plus the first); two would send twice as often.
    assert 4 <= purges <= 1.5 * elapsed + 1, (purges, elapsed)
    senders = [
        log for log in logs if f"Sending due task purge-storage ({PURGE})" in log.read_text()
    ]
    assert len(senders) == 1, [log.read_text()[-2000:] for log in logs]
    assert any(key.startswith("videoworker:redbeat:purge-storage") for key in redbeat_keys)
    assert "videoworker:redbeat::lock" in redbeat_keys
