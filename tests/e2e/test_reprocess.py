"""Re-processing as another service drives it (contract v1.2, "Re-processing"): plain
Celery messages to the session's worker, on whichever broker the session runs; the
processing pipeline's messages read from its own queue as the pipeline would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from kombu import Connection
from sqlalchemy import text

from handlers.reprocess import message_id
from schemas.contract import QUEUE_OF
from worker.runtime.dispatch import foreign_queue

TASK = "videos.reprocess"


def call(caller, task_id: str | None = None, **kwargs) -> dict:
    return caller.send_task(TASK, kwargs=kwargs, queue=QUEUE_OF[TASK], task_id=task_id).get(
        timeout=60
    )


class Pipeline:
    """The processing pipeline's side: the messages on ``processing``, drained."""

    def __init__(self, broker_url: str) -> None:
        self.connection = Connection(broker_url)
        self.queue = self.connection.SimpleQueue(foreign_queue("processing", broker_url))

    def drain(self, wait: float = 2.0) -> list[tuple[str, str, dict]]:
        """(task name, message id, kwargs) of every message there, taken off the queue;
        waits ``wait`` seconds for a first one and a short while for each next."""
        got = []
        timeout = wait
        while True:
            try:
                message = self.queue.get(timeout=timeout)
            except self.queue.Empty:
                return got
            _, kwargs, _ = message.decode()
            got.append((message.headers["task"], message.headers["id"], kwargs))
            message.ack()
            timeout = 0.5

    def close(self) -> None:
        self.queue.close()
        self.connection.close()


@pytest.fixture
def pipeline(services, worker_process) -> Iterator[Pipeline]:
    side = Pipeline(services["CELERY_BROKER_URL"])
    side.drain(wait=0.2)
    yield side
    side.close()


def status(engine, video_id) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT processing_status, processing_error FROM videos WHERE id = :id"),
            {"id": video_id},
        ).one()
    return row.processing_status, row.processing_error


def set_status(engine, video_id, value: str, error: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE videos SET processing_status = :s, processing_error = :e WHERE id = :id"),
            {"s": value, "e": error, "id": video_id},
        )


@pytest.fixture
def failed_mall(catalog, engine):
    mall = catalog.mall("Mall R")
    pin = catalog.pin(mall, "Gate")
    now = datetime.now(UTC)
    videos = [catalog.video(mall, pin, uploaded_at=now - timedelta(minutes=i)) for i in range(4)]
    for video in videos[:3]:
        set_status(engine, video["id"], "failed", "ffmpeg exited 1")
    set_status(engine, videos[3]["id"], "processing")
    return mall, videos


def test_failed_videos_go_back_to_pending_and_the_pipeline_gets_one_message_each(
    caller, failed_mall, engine, pipeline
):
    mall, videos = failed_mall
    envelope = call(caller, filters={"mall_id": str(mall), "processing_status": "failed"})

    assert envelope["ok"], envelope
    assert envelope["data"] | {} == {
        "matched": 3,
        "requested": 3,
        "skipped_processing": 0,
        "dry_run": False,
        "continued": False,
        "continuation_id": None,
    }
    for video in videos[:3]:
        assert status(engine, video["id"]) == ("pending", None)
    sent = pipeline.drain()
    assert sorted(kwargs["video_id"] for _, _, kwargs in sent) == sorted(
        str(v["id"]) for v in videos[:3]
    )
    assert {task for task, _, _ in sent} == {"processing.reprocess"}
    assert all(kwargs["targets"] == ["proxy", "thumbnail"] for _, _, kwargs in sent)
    assert all(set(kwargs) == {"video_id", "targets", "requested_by"} for _, _, kwargs in sent)
    with engine.connect() as conn:
        events = conn.execute(
            text("SELECT subject FROM event_outbox WHERE type = 'video.reprocess_requested'")
        ).scalars()
        assert sorted(events) == sorted(str(v["id"]) for v in videos[:3])


def test_a_processing_video_is_skipped_and_counted(caller, failed_mall, engine, pipeline):
    mall, videos = failed_mall
    envelope = call(caller, video_ids=[str(v["id"]) for v in videos], targets=["thumbnail"])

    assert envelope["ok"], envelope
    data = envelope["data"]
    assert (data["matched"], data["requested"], data["skipped_processing"]) == (4, 3, 1)
    assert status(engine, videos[3]["id"])[0] == "processing"
    sent = pipeline.drain()
    assert len(sent) == 3 and all(kw["targets"] == ["thumbnail"] for _, _, kw in sent)


def test_a_dry_run_changes_and_sends_nothing(caller, failed_mall, engine, pipeline):
    mall, videos = failed_mall
    envelope = call(caller, filters={"mall_id": str(mall)}, dry_run=True)

    assert envelope["ok"], envelope
    data = envelope["data"]
    assert (data["matched"], data["requested"], data["skipped_processing"]) == (4, 3, 1)
    assert data["dry_run"] is True
    assert status(engine, videos[0]["id"])[0] == "failed"
    assert pipeline.drain(wait=1.0) == []


def test_the_same_message_delivered_again_sends_nothing_twice(
    caller, failed_mall, engine, pipeline
):
    mall, videos = failed_mall
    task_id = str(uuid.uuid4())
    kwargs = {"filters": {"mall_id": str(mall)}}

    first = call(caller, task_id=task_id, **kwargs)
    sent = pipeline.drain()
    # Redelivered (as after a worker lost mid-run): the same task id, the same kwargs.
    again = call(caller, task_id=task_id, **kwargs)
    sent_again = pipeline.drain(wait=1.0)

    assert first["data"]["requested"] == 3 and len(sent) == 3
    assert again["ok"] and again["data"]["requested"] == 3
    assert sent_again == []
    # Each message id names the request and the video: a resend would carry the same.
    assert {message for _, message, _ in sent} == {
        message_id(task_id, uuid.UUID(kw["video_id"])) for _, _, kw in sent
    }


def test_a_message_owed_by_a_dead_run_is_sent_by_its_redelivery(
    caller, failed_mall, engine, pipeline
):
    """A run that committed its batch and died before sending: its row is unsent. The
    message delivered again sends it, once."""
    mall, videos = failed_mall
    task_id = str(uuid.uuid4())
    target = videos[0]["id"]
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE videos SET processing_status = 'pending', processing_error = NULL "
                "WHERE id = :id"
            ),
            {"id": target},
        )
        conn.execute(
            text(
                "INSERT INTO reprocess_requests (request_id, video_id, targets) "
                "VALUES (:r, :v, ARRAY['proxy','thumbnail'])"
            ),
            {"r": task_id, "v": target},
        )

    envelope = call(caller, task_id=task_id, video_ids=[str(target), str(videos[1]["id"])])

    assert envelope["ok"] and envelope["data"]["requested"] == 2
    sent = pipeline.drain()
    assert sorted(kw["video_id"] for _, _, kw in sent) == sorted(
        [str(target), str(videos[1]["id"])]
    )


def test_bad_selections_are_refused(caller):
    both = call(caller, video_ids=[str(uuid.uuid4())], filters={"mall_id": str(uuid.uuid4())})
    wrong_target = call(caller, video_ids=[str(uuid.uuid4())], targets=["original"])

    assert both["ok"] is False and both["error"]["code"] == "invalid_request"
    assert wrong_target["ok"] is False and wrong_target["error"]["code"] == "invalid_request"
