"""A message whose task kills its worker every time is dead-lettered, not looped.

``GuardedConsumer`` counts the deliveries the broker flags ``redelivered`` per task id
and ``retries``; the first ``BROKER_DELIVERY_LIMIT`` redeliveries run, the next one is
set aside in the queue ``videos.dead-letters``, answered ``internal`` and acknowledged.
So the task runs at most ``1 + limit`` times when its worker really dies each time. A
copy counts only when a run began before it and never ended; a run that ends clears its
marks.
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text

from tests.conftest import Catalog
from tests.faults.conftest import MAINTENANCE_QUEUE
from tests.support import poll
from worker.runtime.dead_letters import DeadLetters
from worker.settings import Settings

MAX_REDELIVERIES = Settings().broker_delivery_limit

DEAD_LETTER_DETAIL = (
    f"videos.delete redelivered more than {MAX_REDELIVERIES} times: its worker was lost "
    "each time; set aside as a dead letter"
)


def dead_letters(faults) -> list[dict]:
    return [letter.as_json() for letter in DeadLetters(faults.env["CELERY_BROKER_URL"]).list()]


def assert_dead_lettered(faults, task_id: str, video_id: uuid.UUID) -> None:
    [entry] = dead_letters(faults)
    assert entry["id"] == task_id
    assert entry["task"] == "videos.delete"
    assert entry["kwargs"] == {"video_id": str(video_id)}
    assert entry["retries"] == 0
    assert entry["queue"] == MAINTENANCE_QUEUE
    listed = faults.run_cli("dead-letters", "list")
    assert listed.returncode == 0, listed.stderr
    assert [item["id"] for item in json.loads(listed.stdout)] == [task_id]
    # Listing changes nothing, and the original was acknowledged: nothing comes back.
    assert [item["id"] for item in dead_letters(faults)] == [task_id]
    faults.wait_until_broker_idle(timeout=20, message="the dead letter acknowledged")


def test_delete_whose_pool_child_is_killed_every_time_is_dead_lettered(
    faults, workers, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    video = faults.catalog().video(mall, pin)
    worker = workers.start()
    killed: list[int] = []
    # The test holds the row lock, so each run of the delete blocks in Postgres: a
    # known moment to kill the child running it, as an out-of-memory kill would.
    with faults.engine.connect() as blocker:
        blocker.execute(text("SELECT 1 FROM videos WHERE id = :id FOR UPDATE"), {"id": video["id"]})
        result = caller.send_task(
            "videos.delete", kwargs={"video_id": str(video["id"])}, queue=MAINTENANCE_QUEUE
        )
        for _ in range(1 + MAX_REDELIVERIES):
            child = poll(
                lambda: faults.blocked_delete_child(worker),
                timeout=30,
                message="a pool child running the delete",
            )
            killed.append(child.pid)
            child.kill()
            child.wait(10)
        envelope = result.get(timeout=30)
        runs_left = faults.blocked_delete_child(worker)
        blocker.rollback()

    assert envelope == {
        "ok": False,
        "status": 500,
        "error": {"code": "internal", "detail": DEAD_LETTER_DETAIL},
    }
    assert_dead_lettered(faults, result.id, video["id"])
    assert len(set(killed)) == 1 + MAX_REDELIVERIES
    assert runs_left is None
    assert faults.redeliveries(result.id) == MAX_REDELIVERIES + 1
    assert worker.process.poll() is None
    # Every run died before its commit: the video and its objects are untouched.
    assert video["id"] in faults.video_ids()
    assert faults.audited() == {}
    assert faults.queued_keys() == []
    assert all(faults.catalog().object_exists(key) for key in Catalog.keys(video))
    # And the worker goes on answering.
    other = caller.send_task(
        "videos.get", kwargs={"video_id": str(video["id"])}, queue="videos"
    ).get(timeout=30)
    assert other["ok"]


def test_a_flagged_copy_counts_only_when_a_run_started_before_it_and_never_ended(
    faults, workers, caller, mall_and_pin
):
    """The broker flags ``redelivered`` on copies a warm shutdown gave back unstarted too;
    only a copy that follows a run which began and never ended (its start mark is still
    there: the worker was lost under it) counts. A run that ends clears its marks, so a
    message that keeps finishing is never set aside."""
    from worker.runtime.redeliveries import Redeliveries

    mall, pin = mall_and_pin
    video = faults.catalog().video(mall, pin)
    task_id = str(uuid.uuid4())
    worker = workers.start()
    marks = Redeliveries.at(faults.env["REDIS_URL"])

    def send() -> None:
        caller.send_task(
            "videos.delete",
            kwargs={"video_id": str(video["id"])},
            task_id=task_id,
            retries=0,
            headers={"redelivered": True},
            queue=MAINTENANCE_QUEUE,
        )

    # Flagged, but no run began before it: it runs, uncounted.
    send()
    poll(lambda: worker.completions(task_id) == 1, timeout=15, message="run 1 finished")
    assert worker.events_named("message.redelivered", task_id) == []
    # A run that began and was lost leaves its start mark: the next flagged copy counts.
    marks.mark_started(task_id, 0)
    send()
    poll(lambda: worker.completions(task_id) == 2, timeout=15, message="run 2 finished")
    counted = worker.events_named("message.redelivered", task_id)
    assert [entry["redeliveries"] for entry in counted] == [1]
    # That run ended: its marks are gone, nothing is left to count against a later copy.
    assert faults.redeliveries(task_id) == 0
    assert dead_letters(faults) == []
    assert faults.audited() == {video["id"]: 1}
