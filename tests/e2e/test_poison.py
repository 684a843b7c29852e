"""Malformed messages, published raw with kombu, against a real worker process.

Each must be answered (when it carries a task id) or acknowledged, kept aside and
logged once, never redelivered, and the worker must keep answering afterwards. The
same messages go through either broker; kept aside means ``videoworker:unparseable`` on
Redis and the dead-letter queue ``videos.dead-letters`` on RabbitMQ.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from kombu import Connection, Exchange, Producer

from tests.e2e.raw_messages import (
    PROBE_HEADER,
    REASON_HEADER,
    RabbitQueues,
    RedisQueues,
    kept_with_probe,
    queues_for,
)
from tests.support import poll


@pytest.fixture(scope="module")
def broker(services) -> Iterator[RedisQueues | RabbitQueues]:
    queues = queues_for(services["CELERY_BROKER_URL"])
    yield queues
    queues.close()


def publish_raw(
    broker_url: str,
    body: bytes,
    *,
    content_type: str = "application/json",
    encoding: str = "utf-8",
    task: str | None = "videos.get",
    with_id: bool = True,
    probe: str | None = None,
) -> str:
    task_id = str(uuid.uuid4())
    headers = {}
    if task is not None:
        headers["task"] = task
    if with_id:
        headers["id"] = task_id
    if probe is not None:
        headers[PROBE_HEADER] = probe
    with Connection(broker_url) as conn:
        producer = Producer(
            conn.channel(),
            exchange=Exchange("videos", type="direct"),
            routing_key="videos",
            auto_declare=False,
        )
        producer.publish(
            body,
            content_type=content_type,
            content_encoding=encoding,
            headers=headers,
            serializer=None,
        )
    return task_id


def answer(caller, task_id: str) -> dict:
    return caller.AsyncResult(task_id).get(timeout=30)


CASES = {
    "body is not JSON": (
        b"{this is not json",
        "application/json",
        "utf-8",
        "Message body is not valid JSON",
    ),
    "pickle content type": (
        b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.",
        "application/x-python-serialize",
        "binary",
        "Content type 'application/x-python-serialize' is not accepted",
    ),
    "YAML content type": (
        b"- []\n- {}\n- {}\n",
        "application/x-yaml",
        "utf-8",
        "Content type 'application/x-yaml' is not accepted",
    ),
    "JSON string body": (b'"hello"', "application/json", "utf-8", "Message body must be"),
    "JSON object body": (b'{"video_id": "x"}', "application/json", "utf-8", "Message body must be"),
    "two-element body": (b"[[], {}]", "application/json", "utf-8", "Message body must be"),
    "kwargs is a list": (b"[[], [1, 2], {}]", "application/json", "utf-8", "Message body must be"),
    "args is a string": (b'["abc", {}, {}]', "application/json", "utf-8", "Message body must be"),
    "embed is a number": (b"[[], {}, 7]", "application/json", "utf-8", "Message body must be"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_body_is_answered_invalid_request(case, services, caller, worker_process):
    body, content_type, encoding, expected = CASES[case]

    task_id = publish_raw(
        services["CELERY_BROKER_URL"], body, content_type=content_type, encoding=encoding
    )
    envelope = answer(caller, task_id)

    assert envelope["ok"] is False and envelope["status"] == 400
    assert envelope["error"]["code"] == "invalid_request"
    assert expected in envelope["error"]["detail"]
    assert worker_process.poll() is None


def test_ill_typed_kwargs_are_answered(services, caller):
    body = json.dumps([[], {"video_id": 12345}, {}]).encode()

    envelope = answer(caller, publish_raw(services["CELERY_BROKER_URL"], body))

    assert envelope["error"]["code"] == "invalid_request"
    assert envelope["error"]["fields"][0]["loc"] == ["video_id"]


def test_unknown_task_is_answered_invalid_request(caller):
    envelope = caller.send_task("videos.nope", kwargs={}, queue="videos").get(timeout=30)

    assert envelope["ok"] is False
    assert envelope["error"] == {
        "code": "invalid_request",
        "detail": "Unknown task 'videos.nope'",
        "fields": [{"loc": ["message"], "msg": "Unknown task 'videos.nope'"}],
    }


def test_message_without_task_headers_is_acked_kept_aside_and_logged_once(
    services, broker, caller, worker_log, worker_process
):
    probe = str(uuid.uuid4())
    marker_body = json.dumps([[], {"note": probe}, {}]).encode()
    rejected = "message.rejected: Message headers must carry"
    before = worker_log.read_text().count(rejected)
    kept_before = 0 if broker.rabbitmq else broker.client.llen("videoworker:unparseable")

    publish_raw(services["CELERY_BROKER_URL"], marker_body, task=None, with_id=False, probe=probe)
    # The worker answers requests sent after the bad one, so it has consumed it.
    assert caller.send_task("videos.stats", kwargs={}, queue="videos").get(timeout=30)["ok"]

    poll(lambda: broker.idle("videos"), timeout=30, message="the queue empty, nothing unacked")
    poll(
        lambda: worker_log.read_text().count(rejected) == before + 1,
        timeout=10,
        message="exactly one log line for the message",
    )
    # Nobody can be answered, so it is kept where an operator can read it.
    if broker.rabbitmq:
        [kept] = kept_with_probe(broker, probe)
        assert kept.body == marker_body
        assert kept.headers[REASON_HEADER].startswith("Message headers must carry")
        return
    [kept] = broker.client.lrange("videoworker:unparseable", 0, 0)
    assert json.loads(kept)["headers"] == {PROBE_HEADER: probe}
    assert broker.client.llen("videoworker:unparseable") in (kept_before + 1, 1000)


def test_worker_survives_a_burst_of_poison_and_keeps_answering(services, caller, worker_process):
    ids = [
        publish_raw(services["CELERY_BROKER_URL"], body, content_type=ct, encoding=enc)
        for body, ct, enc, _ in CASES.values()
    ] * 1

    answers = [answer(caller, task_id) for task_id in ids]
    after = caller.send_task(
        "videos.get", kwargs={"video_id": str(uuid.uuid4())}, queue="videos"
    ).get(timeout=30)

    assert all(a["error"]["code"] == "invalid_request" for a in answers)
    assert after["error"]["code"] == "not_found"
    assert worker_process.poll() is None


@pytest.mark.parametrize(
    "junk", [b"this is not a kombu envelope", b'{"body": "no properties"}', b"[1, 2, 3]"]
)
def test_junk_pushed_onto_the_queue_list_is_kept_and_the_worker_goes_on(
    junk, broker, caller, worker_process
):
    if broker.rabbitmq:
        pytest.skip("raw bytes on the queue's list exist on Redis only")
    broker.client.delete("videoworker:unparseable")

    broker.push("videos", junk)
    after = caller.send_task("videos.stats", kwargs={}, queue="videos").get(timeout=30)

    assert after["ok"] is True
    assert worker_process.poll() is None
    assert broker.client.lrange("videoworker:unparseable", 0, -1) == [junk]


def test_the_same_delete_message_delivered_twice_answers_deleted_both_times(
    services, broker, caller, catalog, engine
):
    from sqlalchemy import text

    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))
    task_id = str(uuid.uuid4())
    body = json.dumps([[], {"video_id": str(row["id"])}, {}]).encode()
    headers = {"task": "videos.delete", "id": task_id}

    with Connection(services["CELERY_BROKER_URL"]) as conn:
        producer = Producer(
            conn.channel(),
            exchange=Exchange("videos.maintenance", type="direct"),
            routing_key="videos.maintenance",
            auto_declare=False,
        )
        for _ in range(2):
            producer.publish(
                body,
                content_type="application/json",
                content_encoding="utf-8",
                headers=headers,
                serializer=None,
            )

    def audit_rows() -> int:
        with engine.connect() as db:
            return db.execute(
                text("SELECT count(*) FROM deletion_audit WHERE video_id = :v"), {"v": row["id"]}
            ).scalar_one()

    # Both copies taken and acknowledged: the second run is over too.
    poll(
        lambda: broker.idle("videos.maintenance"),
        timeout=30,
        message="both copies of the delete acknowledged",
    )
    envelope = caller.AsyncResult(task_id).get(timeout=30)
    runs = audit_rows()

    # One effect (one audit row), and whichever run answered first, the caller sees the
    # delete with every key accounted for: removed, or (if the second copy answered while
    # the first was still removing them) queued.
    assert runs == 1
    assert envelope["ok"] is True and envelope["data"]["deleted"] is True
    data = envelope["data"]
    assert sorted(data["files_deleted"] + data["files_pending"]) == sorted(catalog.keys(row))
    poll(
        lambda: not any(catalog.object_exists(k) for k in catalog.keys(row)),
        timeout=30,
        message="every object of the deleted video removed",
    )
