"""Events through a real worker: its relay carries what another service's rows and the
worker's own deletes write to the outbox to the stream ``videos:events``, and, when the
broker is RabbitMQ, to the exchange ``videos.events``, where a queue of the subscriber's
own gets them."""

from __future__ import annotations

import uuid

import pytest
import redis
from kombu import Connection
from sqlalchemy import text

from schemas.contract import QUEUE_OF, is_amqp
from schemas.events import EVENTS_STREAM
from worker.client import bind_queue, read_exchange, read_stream


def wait_for(events, subject: str, count: int) -> list:
    """The first ``count`` events about ``subject`` (others are passed over); the reader
    stops after 20 s without any."""
    got: list = []
    for event in events:
        if event.subject == subject:
            got.append(event)
            if len(got) >= count:
                return got
    raise AssertionError(f"{len(got)} of {count} events about {subject}")


def test_a_status_change_and_a_delete_reach_the_stream_in_commit_order(
    services, worker_process, caller, catalog, engine
):
    group = f"e2e-{uuid.uuid4().hex[:8]}"
    # The group starts now: what the worker relays from here on is this test's to read.
    redis.Redis.from_url(services["REDIS_URL"]).xgroup_create(
        EVENTS_STREAM, group, id="$", mkstream=True
    )
    stream = read_stream(
        services["REDIS_URL"], group=group, consumer="c1", block_ms=20_000, stop_when_idle=True
    )
    mall = catalog.mall()
    pin = catalog.pin(mall)
    video = catalog.video(mall, pin, processing_status="processing")

    with engine.begin() as conn:
        conn.execute(
            text("UPDATE videos SET processing_status = 'completed' WHERE id = :id"),
            {"id": video["id"]},
        )
    envelope = caller.send_task(
        "videos.delete", kwargs={"video_id": str(video["id"])}, queue=QUEUE_OF["videos.delete"]
    ).get(timeout=30)
    assert envelope["ok"], envelope

    mine = wait_for(stream, str(video["id"]), 3)
    assert [e.type for e in mine] == ["video.created", "video.status_changed", "video.deleted"]
    assert mine[1].data["processing_status"] == {"from": "processing", "to": "completed"}
    assert mine[2].data["files_kept"] is False
    assert len({e.id for e in mine}) == 3


def test_on_rabbitmq_the_exchange_delivers_to_a_queue_of_the_subscribers_own(
    services, worker_process, catalog
):
    broker = services["CELERY_BROKER_URL"]
    if not is_amqp(broker):
        pytest.skip("the exchange videos.events exists on RabbitMQ only")
    queue = f"e2e-events-{uuid.uuid4().hex[:8]}"
    with Connection(broker) as connection:
        bind_queue(connection.default_channel, queue, ["video.*"])
    subscriber = read_exchange(broker, queue, ["video.*"], block_ms=20_000, stop_when_idle=True)
    mall = catalog.mall()
    pin = catalog.pin(mall)
    video = catalog.video(mall, pin, processing_status="pending")

    events = wait_for(subscriber, str(video["id"]), 1)
    assert [e.type for e in events] == ["video.created"]
