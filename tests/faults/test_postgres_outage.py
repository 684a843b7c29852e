"""PostgreSQL stopped while the worker answers requests: retried, then 503 or an answer.

The retries wait in place, in the process holding the message (no re-publish with a
countdown, which a RabbitMQ quorum queue could only take through delayed delivery):
one delivery, one run, whatever the broker.
"""

from __future__ import annotations

import uuid

from tests.conftest import Catalog
from tests.faults.conftest import MAINTENANCE_QUEUE, REQUESTS_QUEUE
from tests.support import poll

# ContractTask.max_retries: a request is tried once and retried this many times.
REQUEST_RETRIES = 3
# MaintenanceTask.max_retries, with waits doubling from 0.25 s to 2 s.
MAINTENANCE_RETRIES = 5


def get(caller, video_id: uuid.UUID):
    return caller.send_task("videos.get", kwargs={"video_id": str(video_id)}, queue=REQUESTS_QUEUE)


def test_get_while_postgres_stays_down_is_retried_then_answered_unavailable(
    faults, module_worker, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    video = faults.catalog().video(mall, pin)
    assert get(caller, video["id"]).get(timeout=30)["ok"]  # pooled connections exist
    postgres = faults.services.postgres

    postgres.stop()
    try:
        result = get(caller, video["id"])
        envelope = result.get(timeout=60)
    finally:
        postgres.start()

    assert envelope["ok"] is False and envelope["status"] == 503, envelope
    assert envelope["error"]["code"] == "unavailable"
    assert envelope["error"]["detail"].startswith("PostgreSQL unreachable")
    assert len(module_worker.events_named("task.retrying", result.id)) == REQUEST_RETRIES
    # Dead pooled connections are replaced once the server is back.
    assert get(caller, video["id"]).get(timeout=30)["ok"]


def test_get_succeeds_when_postgres_returns_within_the_retries(
    faults, module_worker, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    video = faults.catalog().video(mall, pin)
    postgres = faults.services.postgres

    postgres.stop()
    try:
        result = get(caller, video["id"])
        # The first attempt has failed; the remaining retries span about a second more,
        # and a restart takes a fraction of that.
        poll(
            lambda: module_worker.events_named("task.retrying", result.id),
            timeout=30,
            message="the first retry",
        )
    finally:
        postgres.start()
    envelope = result.get(timeout=60)

    assert envelope["ok"], envelope
    assert envelope["data"]["id"] == str(video["id"])
    assert 1 <= len(module_worker.events_named("task.retrying", result.id)) <= REQUEST_RETRIES
    assert_retried_in_place(faults, module_worker, result.id)


def assert_retried_in_place(faults, worker, task_id: str) -> None:
    """Attempts numbered 1, 2, … in one run of one delivery, and nothing left queued."""
    attempts = [event["attempt"] for event in worker.events_named("task.retrying", task_id)]
    assert attempts == list(range(1, len(attempts) + 1)), attempts
    # The success line follows the stored answer by a moment.
    poll(lambda: worker.completions(task_id) >= 1, timeout=15, message="the success line")
    assert worker.completions(task_id) == 1
    assert worker.events_named("message.redelivered", task_id) == []
    faults.wait_until_broker_idle(timeout=30, message="the retried message acknowledged")


def test_delete_succeeds_when_postgres_comes_back_after_several_attempts(
    faults, module_worker, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    video = faults.catalog().video(mall, pin)
    keys = Catalog.keys(video)
    assert get(caller, video["id"]).get(timeout=30)["ok"]  # pooled connections exist
    postgres = faults.services.postgres

    postgres.stop()
    try:
        result = caller.send_task(
            "videos.delete", kwargs={"video_id": str(video["id"])}, queue=MAINTENANCE_QUEUE
        )
        # Down through the first attempts; the waits still to come (about 0.25 + 0.5 +
        # 1 + 1 s at the least) leave a restart ample time.
        poll(
            lambda: len(module_worker.events_named("task.retrying", result.id)) >= 2,
            timeout=30,
            message="the delete's second retry",
        )
    finally:
        postgres.start()
    envelope = result.get(timeout=60)

    assert envelope["ok"], envelope
    assert envelope["data"]["deleted"] is True
    assert sorted(envelope["data"]["files_deleted"]) == sorted(keys)
    assert envelope["data"]["files_pending"] == []
    retries = module_worker.events_named("task.retrying", result.id)
    assert 2 <= len(retries) <= MAINTENANCE_RETRIES
    assert all(event["error"].startswith("PostgreSQL unreachable") for event in retries)
    assert_retried_in_place(faults, module_worker, result.id)
    assert faults.audited() == {video["id"]: 1}
    assert video["id"] not in faults.video_ids()
    faults.assert_storage_consistent()
    assert faults.bucket_keys() == set()
