"""Two beats started by mistake send each periodic task once, not twice (redbeat's lock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

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


def queued_tasks(broker: redis.Redis) -> list[str]:
    """Task names of the messages waiting in videos.maintenance (any priority list)."""
    names = []
    for key in broker.scan_iter("videos.maintenance*"):
        if broker.type(key) == b"list":
            names += [json.loads(raw)["headers"]["task"] for raw in broker.lrange(key, 0, -1)]
    return names


def test_a_second_beat_waits_for_the_lock_instead_of_doubling_the_schedule(
    services, tmp_path, monkeypatch
):
    base = services["CELERY_BROKER_URL"].rsplit("/", 1)[0]
    # Broker and redbeat's Redis (REDIS_URL) in databases of their own: no worker reads them.
    env = {
        **services,
        "CELERY_BROKER_URL": f"{base}/11",
        "CELERY_RESULT_BACKEND": f"{base}/12",
        "REDIS_URL": f"{base}/12",
        "PURGE_INTERVAL_SECONDS": "1",
    }
    broker, schedule_store = redis.Redis.from_url(f"{base}/11"), redis.Redis.from_url(f"{base}/12")
    broker.flushdb()
    schedule_store.flushdb()
    monkeypatch.setenv("CELERY_BROKER_URL", env["CELERY_BROKER_URL"])
    monkeypatch.setenv("CELERY_RESULT_BACKEND", env["CELERY_RESULT_BACKEND"])
    logs = [tmp_path / "beat-a.log", tmp_path / "beat-b.log"]
    beats = [start_beat(env, log, tmp_path / f"schedule-{i}") for i, log in enumerate(logs)]

    def purge_queued() -> bool:
        assert all(beat.poll() is None for beat in beats), "a beat exited"
        return PURGE in queued_tasks(broker)

    try:
        poll(purge_queued, timeout=60, interval=0.1, message="a purge message from either beat")
        first_seen = time.monotonic()
        # At least four sends and six seconds: long enough that a doubled schedule shows.
        poll(
            lambda: time.monotonic() - first_seen >= 6 and queued_tasks(broker).count(PURGE) >= 4,
            timeout=30,
            interval=0.1,
            message=lambda: (
                "four purges over six seconds (beat sends too slowly): "
                f"{queued_tasks(broker).count(PURGE)} queued"
            ),
        )
        purges = queued_tasks(broker).count(PURGE)
        elapsed = time.monotonic() - first_seen
        assert all(beat.poll() is None for beat in beats), "a beat exited"
        redbeat_keys = [k.decode() for k in schedule_store.scan_iter("videoworker:redbeat:*")]
    finally:
        for beat in beats:
            stop_worker(beat)
        broker.flushdb()
        schedule_store.flushdb()

    # One beat sends about once a second (plus the first); two would send twice as often.
    assert 4 <= purges <= 1.5 * elapsed + 1, (purges, elapsed)
    senders = [
        log for log in logs if f"Sending due task purge-storage ({PURGE})" in log.read_text()
    ]
    assert len(senders) == 1, [log.read_text()[-2000:] for log in logs]
    assert any(key.startswith("videoworker:redbeat:purge-storage") for key in redbeat_keys)
    assert "videoworker:redbeat::lock" in redbeat_keys
