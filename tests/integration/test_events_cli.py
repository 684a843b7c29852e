"""``videoworker events`` prints what is published on ``videos.events``, as it comes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

from schemas.events import EVENTS_CHANNEL, VideoDeleted
from tests.support import ROOT, poll
from worker.adapters.redis import RedisPublisher

COUNT = 3


def test_events_prints_each_published_event_as_a_json_line(services, redis_client):
    listener = subprocess.Popen(  # noqa: S603 - our own module, arguments as a list
        [sys.executable, "-m", "worker.ops.cli", "events", "--count", str(COUNT)],
        cwd=ROOT,
        env={**os.environ, **services},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        poll(
            lambda: dict(redis_client.pubsub_numsub(EVENTS_CHANNEL)).get(EVENTS_CHANNEL.encode()),
            timeout=30,
            message="the events command to subscribe",
        )
        publish = RedisPublisher(redis_client)
        sent: list[str] = []

        def publish_until_it_has_enough() -> bool:
            # A worker of another suite may publish too: keep sending until it stops.
            if listener.poll() is not None:
                return True
            event = VideoDeleted(
                video_id=uuid.uuid4(),
                mall_id=uuid.uuid4(),
                files_deleted=["videos/x/original/y.mp4"],
                files_pending=[],
                at=datetime.now(UTC),
            )
            publish(event)
            sent.append(event.model_dump_json())
            return False

        poll(publish_until_it_has_enough, timeout=30, interval=0.2, message="three events read")
        out, err = listener.communicate(timeout=30)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.communicate()

    assert listener.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == COUNT
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert set(lines) & set(sent), "the events published were printed as published"
    assert err.startswith(f"videoworker events: listening on {EVENTS_CHANNEL} at 127.0.0.1:")
