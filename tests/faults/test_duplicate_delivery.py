"""The same delete or sweep delivered twice has one effect.

A broker may deliver a message twice (a redelivery racing the original, a publisher
retrying); a caller may send the same request twice. Either way each video is deleted,
audited and has its objects removed once: the row delete is the claim, and a sweep
claims its batches with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from kombu import Connection, Exchange, Producer

from tests.conftest import Catalog
from tests.faults.conftest import MAINTENANCE_QUEUE
from tests.support import poll

EXPIRED, FRESH, BATCH = 40, 3, 5


def publish_identical_twice(faults, caller, task: str, kwargs: dict) -> str:
    """One protocol 2 message, built once and published twice: same id, same bytes."""
    task_id = str(uuid.uuid4())
    headers, properties, body, _ = caller.amqp.create_task_message(task_id, task, (), kwargs)
    with Connection(faults.env["CELERY_BROKER_URL"]) as connection:
        producer = Producer(
            connection.channel(),
            exchange=Exchange(MAINTENANCE_QUEUE, type="direct"),
            routing_key=MAINTENANCE_QUEUE,
            serializer="json",
        )
        for _ in range(2):
            producer.publish(body, headers=headers, **properties)
    return task_id


def test_identical_delete_message_delivered_twice_deletes_once(
    faults, module_worker, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    video = faults.catalog().video(mall, pin)
    keys = Catalog.keys(video)

    task_id = publish_identical_twice(
        faults, caller, "videos.delete", {"video_id": str(video["id"])}
    )
    poll(lambda: module_worker.completions(task_id) == 2, timeout=30, message="both copies run")

    deleted_events = [
        event
        for event in module_worker.events_named("video.deleted", task_id)
        if event.get("video_id") == str(video["id"])
    ]
    answer = faults.stored_answer(task_id)
    assert len(deleted_events) == 1
    # The copy that found the row gone answers for the first (same task id), so the
    # caller reads a success whichever finished first.
    assert answer is not None and answer["ok"], answer
    assert answer["data"]["deleted"] is True
    assert faults.audited() == {video["id"]: 1}
    assert faults.proxy.forwarded_keys == dict.fromkeys(keys, 1)
    assert faults.queued_keys() == []
    assert faults.bucket_keys() == set()


def test_same_delete_sent_twice_at_once_answers_ok_then_not_found(
    faults, module_worker, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    video = faults.catalog().video(mall, pin)
    keys = Catalog.keys(video)

    sent = [
        caller.send_task(
            "videos.delete", kwargs={"video_id": str(video["id"])}, queue=MAINTENANCE_QUEUE
        )
        for _ in range(2)
    ]
    answers = [result.get(timeout=30) for result in sent]

    assert sorted(answer["status"] for answer in answers) == [200, 404]
    [missing] = [answer for answer in answers if not answer["ok"]]
    assert missing["error"] == {"code": "not_found", "detail": f"Video {video['id']} not found"}
    assert faults.audited() == {video["id"]: 1}
    assert faults.proxy.forwarded_keys == dict.fromkeys(keys, 1)
    assert faults.bucket_keys() == set()


@pytest.mark.parametrize("copies", ["one message delivered twice", "two requests"])
def test_duplicate_sweeps_delete_each_expired_video_once(
    faults, module_worker, caller, mall_and_pin, copies
):
    mall, pin = mall_and_pin
    expired = faults.insert_videos(mall, pin, EXPIRED, age=timedelta(days=120))
    fresh = faults.insert_videos(mall, pin, FRESH, age=timedelta(days=1))
    kwargs = {"older_than_days": 90, "batch_size": BATCH}
    # Slow enough that both sweeps are claiming batches at the same time.
    faults.proxy.delay(0.05)

    if copies == "one message delivered twice":
        task_id = publish_identical_twice(faults, caller, "videos.retention_sweep", kwargs)
        poll(lambda: module_worker.completions(task_id) == 2, timeout=60, message="both copies run")
        deleted_counts = [
            event["deleted"] for event in module_worker.events_named("retention.swept", task_id)
        ]
    else:
        sent = [
            caller.send_task("videos.retention_sweep", kwargs=kwargs, queue=MAINTENANCE_QUEUE)
            for _ in range(2)
        ]
        answers = [result.get(timeout=60) for result in sent]
        assert all(answer["ok"] for answer in answers), answers
        deleted_counts = [answer["data"]["deleted"] for answer in answers]

    assert len(deleted_counts) == 2
    assert sum(deleted_counts) == EXPIRED
    assert faults.audited() == {row["id"]: 1 for row in expired}
    expired_keys = {key for row in expired for key in Catalog.keys(row)}
    assert faults.proxy.forwarded_keys == dict.fromkeys(expired_keys, 1)
    assert faults.video_ids() == {row["id"] for row in fresh}
    assert faults.queued_keys() == []
    assert faults.bucket_keys() == {key for row in fresh for key in Catalog.keys(row)}
