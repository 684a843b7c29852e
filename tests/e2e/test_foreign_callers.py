"""A caller in another language, following the README's recipe to the letter.

Messages are laid out by hand (``tests.e2e.raw_messages``), never by Celery: on Redis
``LPUSH``ed as JSON with redis-py onto the list named like the queue, on RabbitMQ
published with a bare AMQP client to the exchange named like the queue. Answers are read
from the result backend's ``celery-task-meta-<task id>`` key with redis-py, by polling
``GET`` or by ``SUBSCRIBE`` to the channel of that name, as the README says.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import amqp
import pytest
import redis
from sqlalchemy import text

from tests.e2e.raw_messages import (
    MAINTENANCE_QUEUE,
    REQUESTS_QUEUE,
    RabbitQueues,
    RedisQueues,
    amqp_properties,
    foreign_request,
    kombu_envelope,
    queues_for,
    read_result,
    result_key,
    send,
)
from tests.support import poll

RESULT_EXPIRES_SECONDS = 3600


@pytest.fixture(scope="module")
def queues(services) -> Iterator[RedisQueues | RabbitQueues]:
    opened = queues_for(services["CELERY_BROKER_URL"])
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def results(services) -> redis.Redis:
    return redis.Redis.from_url(services["CELERY_RESULT_BACKEND"])


def only_on(queues, rabbitmq: bool, reason: str) -> None:
    if queues.rabbitmq != rabbitmq:
        pytest.skip(reason)


def answer(results: redis.Redis, task_id: str, timeout: float = 30) -> dict[str, Any]:
    """Polls ``GET celery-task-meta-<id>`` until the record is there."""
    return poll(
        lambda: read_result(results, task_id), timeout=timeout, message=f"the result of {task_id}"
    )


# --- the recipe -----------------------------------------------------------------------


def test_videos_get_laid_out_by_hand_is_answered_in_its_result_record(
    queues, results, catalog, worker_process
):
    mall = catalog.mall()
    pin = catalog.pin(mall, "Gate 3")
    video = catalog.video(mall, pin)
    request = foreign_request("videos.get", {"video_id": str(video["id"])}, REQUESTS_QUEUE)

    send(queues, request)
    record = answer(results, request.task_id)

    assert set(record) == {"status", "result", "traceback", "children", "date_done", "task_id"}
    assert record["status"] == "SUCCESS"
    assert record["task_id"] == request.task_id
    assert record["traceback"] is None and record["children"] == []
    done = datetime.fromisoformat(record["date_done"])
    assert done.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - done) < timedelta(minutes=1)
    envelope = record["result"]
    assert envelope["ok"] is True and envelope["status"] == 200
    assert envelope["data"]["id"] == str(video["id"])
    assert envelope["data"]["pin_name"] == "Gate 3"
    # Kept for result_expires, then gone.
    assert RESULT_EXPIRES_SECONDS - 60 < results.ttl(result_key(request.task_id)) <= 3600


def test_videos_list_laid_out_by_hand_is_answered(queues, results, catalog, worker_process):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    videos = [catalog.video(mall, pin, upload_objects=False) for _ in range(3)]
    request = foreign_request(
        "videos.list", {"mall_id": str(mall), "page": 1, "page_size": 2}, REQUESTS_QUEUE
    )

    send(queues, request)
    envelope = answer(results, request.task_id)["result"]

    assert envelope["ok"] is True, envelope
    data = envelope["data"]
    assert data["total"] == 3 and data["total_pages"] == 2
    assert len(data["videos"]) == 2
    assert {item["id"] for item in data["videos"]} <= {str(v["id"]) for v in videos}


def test_videos_delete_on_the_maintenance_queue_is_answered_and_deletes(
    queues, results, catalog, engine, worker_process
):
    mall = catalog.mall()
    video = catalog.video(mall, catalog.pin(mall))
    request = foreign_request("videos.delete", {"video_id": str(video["id"])}, MAINTENANCE_QUEUE)

    send(queues, request)
    envelope = answer(results, request.task_id)["result"]

    assert envelope["ok"] is True, envelope
    assert envelope["data"]["deleted"] is True
    assert sorted(envelope["data"]["files_deleted"]) == sorted(catalog.keys(video))
    with engine.connect() as db:
        left = db.execute(
            text("SELECT count(*) FROM videos WHERE id = :id"), {"id": video["id"]}
        ).scalar_one()
    assert left == 0
    assert not any(catalog.object_exists(key) for key in catalog.keys(video))


def test_an_error_is_an_envelope_too(queues, results, worker_process):
    missing = str(uuid.uuid4())
    request = foreign_request("videos.get", {"video_id": missing}, REQUESTS_QUEUE)

    send(queues, request)
    record = answer(results, request.task_id)

    assert record["status"] == "SUCCESS"
    assert record["result"] == {
        "ok": False,
        "status": 404,
        "error": {"code": "not_found", "detail": f"Video {missing} not found"},
    }


def test_a_caller_may_subscribe_to_the_result_channel_instead_of_polling(
    queues, results, worker_process
):
    request = foreign_request("videos.stats", {}, REQUESTS_QUEUE)
    subscription = results.pubsub(ignore_subscribe_messages=True)
    # Subscribe before sending, so the one publish of the record cannot be missed.
    subscription.subscribe(result_key(request.task_id))
    try:
        send(queues, request)
        published = poll(
            lambda: subscription.get_message(timeout=1.0),
            timeout=30,
            interval=0,
            message="the result record published on its channel",
        )
    finally:
        subscription.close()

    record = json.loads(published["data"])
    assert published["channel"].decode() == result_key(request.task_id)
    assert record == read_result(results, request.task_id)
    assert record["status"] == "SUCCESS" and record["result"]["ok"] is True


def minimal_redis_item(task_id: str, body: bytes, *, base64_body: bool) -> dict[str, Any]:
    """What the README marks required, and nothing else."""
    item = kombu_envelope({"task": "videos.get", "id": task_id}, body)
    properties = item["properties"]
    item["properties"] = {
        "delivery_tag": properties["delivery_tag"],
        "delivery_info": properties["delivery_info"],
    }
    if base64_body:
        item["properties"]["body_encoding"] = "base64"
    else:
        item["body"] = body.decode("utf-8")
    del item["content-encoding"]
    return item


@pytest.mark.parametrize("base64_body", [True, False], ids=["base64 body", "JSON text body"])
def test_only_the_required_parts_are_enough(base64_body, queues, results, worker_process):
    task_id = str(uuid.uuid4())
    video_id = str(uuid.uuid4())
    body = json.dumps([[], {"video_id": video_id}, {}]).encode()

    if queues.rabbitmq:
        if not base64_body:
            pytest.skip("body_encoding is a field of the Redis list's envelope")
        queues.publish(
            REQUESTS_QUEUE,
            REQUESTS_QUEUE,
            body,
            {"task": "videos.get", "id": task_id},
            content_type="application/json",
        )
    else:
        queues.push(REQUESTS_QUEUE, minimal_redis_item(task_id, body, base64_body=base64_body))
    envelope = answer(results, task_id)["result"]

    assert envelope["error"] == {"code": "not_found", "detail": f"Video {video_id} not found"}


def test_an_expired_request_is_revoked_not_answered(queues, results, worker_process):
    request = foreign_request("videos.stats", {}, REQUESTS_QUEUE)
    # The envelope holds the same headers object.
    request.headers["expires"] = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()

    send(queues, request)
    record = answer(results, request.task_id)

    assert record["status"] == "REVOKED"
    assert record["result"]["exc_type"] == "TaskRevokedError"


# --- RabbitMQ: nothing to declare -------------------------------------------------------


def test_a_caller_that_declares_must_declare_what_the_worker_declared(queues, worker_process):
    only_on(queues, True, "exchanges, bindings and quorum queues are RabbitMQ's")
    channel = queues.connection.channel()
    try:
        # Declaring exactly what the worker declared is harmless...
        channel.exchange_declare(REQUESTS_QUEUE, "direct", durable=True, auto_delete=False)
        channel.queue_declare(
            REQUESTS_QUEUE,
            durable=True,
            auto_delete=False,
            arguments={"x-queue-type": "quorum"},
        )
        # ...a classic-queue declaration of the same name is refused.
        with pytest.raises(amqp.exceptions.PreconditionFailed, match="x-queue-type"):
            channel.queue_declare(REQUESTS_QUEUE, durable=True, auto_delete=False)
    finally:
        if channel.is_open:
            channel.close()


def test_the_default_exchange_reaches_the_queue_too(queues, results, worker_process):
    only_on(queues, True, "exchanges are RabbitMQ's; on Redis the list is the queue")
    request = foreign_request("videos.stats", {}, REQUESTS_QUEUE)
    queues.publish(
        "", REQUESTS_QUEUE, request.body, request.headers, **amqp_properties(request.task_id)
    )

    assert answer(results, request.task_id)["result"]["ok"] is True


# --- shapes foreign clients produced ---------------------------------------------------


def _no_properties(item: dict) -> None:
    del item["properties"]


def _no_delivery_tag(item: dict) -> None:
    del item["properties"]["delivery_tag"]


def _no_delivery_info(item: dict) -> None:
    del item["properties"]["delivery_info"]


def _body_a_json_array(item: dict) -> None:
    item["properties"].pop("body_encoding")
    item["body"] = [[], {"video_id": str(uuid.uuid4())}, {}]


def _content_type_in_properties(item: dict) -> None:
    item["properties"]["content_type"] = item.pop("content-type")


FOREIGN_SHAPES: dict[str, tuple[Callable[[dict], None], str]] = {
    "no properties": (_no_properties, "Message envelope has no 'properties' object"),
    "no delivery_tag": (
        _no_delivery_tag,
        "Message envelope's 'properties.delivery_tag' must be a string",
    ),
    "no delivery_info": (
        _no_delivery_info,
        "Message envelope's 'properties.delivery_info' must name its exchange and routing_key",
    ),
    "body a JSON array": (_body_a_json_array, "Message envelope's 'body' must be a string"),
    "content_type in properties": (
        _content_type_in_properties,
        "Message has no content type; send application/json",
    ),
}


@pytest.mark.parametrize("shape", list(FOREIGN_SHAPES))
def test_a_foreign_clients_broken_envelope_is_answered_invalid_request(
    shape, queues, results, worker_process
):
    only_on(
        queues,
        False,
        "a shape of the Redis list's kombu envelope: on AMQP the protocol carries the "
        "properties, delivery tag and content type itself",
    )
    breaks, detail = FOREIGN_SHAPES[shape]
    request = foreign_request("videos.get", {"video_id": str(uuid.uuid4())}, REQUESTS_QUEUE)
    breaks(request.item)
    after = foreign_request("videos.stats", {}, REQUESTS_QUEUE)

    queues.push(REQUESTS_QUEUE, request.item, after.item)
    record = answer(results, request.task_id)

    assert record["status"] == "SUCCESS"
    assert record["result"] == {
        "ok": False,
        "status": 400,
        "error": {
            "code": "invalid_request",
            "detail": detail,
            "fields": [{"loc": ["message"], "msg": detail}],
        },
    }
    assert answer(results, after.task_id)["result"]["ok"] is True
    assert worker_process.poll() is None


def test_a_body_that_is_not_a_protocol_2_body_is_answered(queues, results, worker_process):
    built = foreign_request("videos.get", {}, REQUESTS_QUEUE)
    # kwargs at the top level: the most common mistake of a hand-written caller.
    body = json.dumps({"video_id": "x"}).encode()
    request = replace(built, body=body, item=kombu_envelope(built.headers, body))

    send(queues, request)
    envelope = answer(results, request.task_id)["result"]

    assert envelope["error"]["code"] == "invalid_request"
    assert envelope["error"]["detail"].startswith("Message body must be [args, kwargs, embed]")


def test_kwargs_are_validated_as_for_any_caller(queues, results, worker_process):
    request = foreign_request("videos.get", {"video_id": "not-a-uuid"}, REQUESTS_QUEUE)

    send(queues, request)
    envelope = answer(results, request.task_id)["result"]

    assert envelope["status"] == 400 and envelope["error"]["code"] == "invalid_request"
    assert envelope["error"]["fields"][0]["loc"] == ["video_id"]
