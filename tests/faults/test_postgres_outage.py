"""PostgreSQL stopped while the worker answers requests: retried, then 503 or an answer."""

from __future__ import annotations

import uuid

from tests.faults.conftest import REQUESTS_QUEUE
from tests.support import poll

# ContractTask.max_retries: a request is tried once and retried this many times.
REQUEST_RETRIES = 3


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
