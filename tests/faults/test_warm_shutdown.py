"""Warm shutdown (SIGTERM) while a retention sweep runs: it finishes, nothing is redone."""

from __future__ import annotations

import time
from datetime import timedelta

from tests.brokers import QueueCounts
from tests.conftest import Catalog
from tests.faults.conftest import MAINTENANCE_QUEUE, REQUESTS_QUEUE
from tests.support import poll

EXPIRED, FRESH, BATCH = 40, 3, 5


def test_sigterm_lets_the_running_sweep_finish_once_and_store_its_answer(
    faults, workers, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    expired = faults.insert_videos(mall, pin, EXPIRED, age=timedelta(days=120))
    fresh = faults.insert_videos(mall, pin, FRESH, age=timedelta(days=1))
    expired_keys = {key for row in expired for key in Catalog.keys(row)}
    worker = workers.start()
    faults.proxy.hold()  # the sweep's first DeleteObjects: it is surely running

    sweeping = caller.send_task(
        "videos.retention_sweep",
        kwargs={"older_than_days": 90, "batch_size": BATCH},
        queue=MAINTENANCE_QUEUE,
    )
    faults.proxy.wait_until_held(timeout=30)
    worker.process.terminate()
    poll(
        lambda: "Warm shutdown" in worker.log_path.read_text(errors="replace"),
        timeout=15,
        message="the worker to begin its warm shutdown",
    )
    faults.proxy.release()
    exit_code = worker.process.wait(60)

    envelope = faults.stored_answer(sweeping.id)
    assert exit_code == 0
    assert envelope is not None and envelope["ok"], envelope
    assert envelope["data"]["deleted"] == EXPIRED
    assert envelope["data"]["files_deleted"] == 3 * EXPIRED
    assert faults.audited() == {row["id"]: 1 for row in expired}
    assert faults.proxy.forwarded_keys == dict.fromkeys(expired_keys, 1)

    # A new worker finds nothing of the sweep to run again.
    after = workers.start()
    faults.wait_until_broker_idle(timeout=30, message="every message acknowledged")

    assert after.completions(sweeping.id) == 0
    assert after.events_named("message.redelivered", sweeping.id) == []
    assert faults.audited() == {row["id"]: 1 for row in expired}
    assert faults.proxy.forwarded_keys == dict.fromkeys(expired_keys, 1)
    assert faults.video_ids() == {row["id"] for row in fresh}
    assert faults.queued_keys() == []
    assert faults.bucket_keys() == {key for row in fresh for key in Catalog.keys(row)}


def test_a_message_given_back_unstarted_at_a_warm_shutdown_is_not_counted_as_a_lost_run(
    faults, workers, caller
):
    first = workers.start()
    # Held by the worker, unacknowledged, until its ETA: it cannot have started.
    waiting = caller.send_task("videos.stats", kwargs={}, queue=REQUESTS_QUEUE, countdown=60)
    sent_at = time.monotonic()

    def held_by_a_worker(since: float) -> bool:
        # Off the queue, delivered but not acknowledged, as seen after ``since``.
        counts = faults.broker.counts(since)
        return counts is not None and counts[REQUESTS_QUEUE] == QueueCounts(ready=0, unacked=1)

    poll(lambda: held_by_a_worker(sent_at), timeout=30, message="the worker to hold the message")
    first.process.terminate()
    assert first.process.wait(60) == 0
    poll(
        lambda: faults.broker.ready(REQUESTS_QUEUE) == 1,
        timeout=30,
        message="the warm shutdown to give the message back",
    )

    workers.start()
    restarted_at = time.monotonic()
    poll(
        lambda: held_by_a_worker(restarted_at),
        timeout=30,
        message="the message given back to reach the next worker",
    )

    assert faults.redeliveries(waiting.id) == 0
