"""Redis restarted under a running worker: the broker, result backend and cache on a
Redis broker; the result backend and cache when the broker is RabbitMQ, whose queued
messages must come through a restart of the Redis beside it just the same."""

from __future__ import annotations

import time
import uuid

from tests.faults.conftest import MAINTENANCE_QUEUE, REQUESTS_QUEUE
from tests.support import poll


def answered_get(caller, video_id: uuid.UUID) -> dict | None:
    """The envelope of a fresh ``videos.get``, or None while the worker cannot answer yet."""
    try:
        return caller.send_task(
            "videos.get", kwargs={"video_id": str(video_id)}, queue=REQUESTS_QUEUE
        ).get(timeout=2)
    except Exception:  # noqa: BLE001 - Redis or the worker still coming back
        return None


def test_worker_reconnects_after_redis_restart_and_queued_messages_survive(
    faults, workers, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    video = faults.catalog().video(mall, pin)
    # This worker takes requests only, so maintenance messages stay queued in the broker.
    requests_worker = workers.start("-Q", REQUESTS_QUEUE)
    answered_before = caller.send_task(
        "videos.get", kwargs={"video_id": str(video["id"])}, queue=REQUESTS_QUEUE
    )
    assert answered_before.get(timeout=30)["ok"]
    queued = [
        caller.send_task("videos.purge_storage", kwargs={}, queue=MAINTENANCE_QUEUE)
        for _ in range(5)
    ]
    poll(lambda: faults.broker.ready(MAINTENANCE_QUEUE) == 5, timeout=10, message="5 queued")

    redis_server = faults.services.redis
    redis_server.stop()
    redis_server.start()
    restarted_at = time.monotonic()

    envelope = poll(
        lambda: answered_get(caller, video["id"]), timeout=60, message="an answer after the restart"
    )
    reconnect_seconds = time.monotonic() - restarted_at
    burst = [
        caller.send_task("videos.get", kwargs={"video_id": str(video["id"])}, queue=REQUESTS_QUEUE)
        for _ in range(20)
    ]
    burst_answers = [result.get(timeout=30) for result in burst]
    assert envelope["ok"] and envelope["data"]["id"] == str(video["id"])
    assert all(answer["ok"] for answer in burst_answers)
    # The same process reconnected: it neither crashed nor was replaced.
    assert requests_worker.process.poll() is None
    assert reconnect_seconds < 60
    # The broker's queue is kept (by AOF when Redis is the broker), and so are the answers
    # stored before the restart.
    assert faults.broker.ready(MAINTENANCE_QUEUE) == 5
    assert caller.AsyncResult(answered_before.id).get(timeout=5)["ok"]

    workers.start("-Q", MAINTENANCE_QUEUE, answering=False)
    purge_answers = [result.get(timeout=60) for result in queued]
    assert [answer["ok"] for answer in purge_answers] == [True] * 5
