"""PostgreSQL killed in the middle of a retention sweep.

The sweep commits each batch (rows deleted, keys queued, audit rows) in one
transaction, then removes the batch's objects. A crash between batches must leave
whole batches either done or untouched, and the sweep's next run must finish the job.
The task retries in place, holding its message; the worker is killed while it waits,
so the message goes to the next worker, whose run finds the database back.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import Catalog
from tests.faults.conftest import MAINTENANCE_QUEUE
from tests.support import poll

# Run once, in `make test`, whatever the broker:
# what is tested is PostgreSQL's crash and the sweep's transactions.
pytestmark = pytest.mark.broker_independent


def test_sweep_cut_off_by_a_crash_leaves_rows_and_queue_consistent_and_its_retry_finishes(
    faults, workers, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    expired = faults.insert_videos(mall, pin, 30, age=timedelta(days=120))
    fresh = faults.insert_videos(mall, pin, 3, age=timedelta(days=1))
    # Oldest first: the sweep takes the rows from the end of the list.
    first_batch, second_batch, third_batch = expired[29:19:-1], expired[19:9:-1], expired[9::-1]
    worker = workers.start()
    postgres = faults.services.postgres
    faults.proxy.hold(after=1)

    sweeping = caller.send_task(
        "videos.retention_sweep",
        kwargs={"older_than_days": 90, "batch_size": 10},
        queue=MAINTENANCE_QUEUE,
    )
    faults.proxy.wait_until_held(timeout=30)
    # Batch 2 is committed and its objects are being removed when the database dies.
    postgres.kill()
    try:
        faults.proxy.release()
        poll(
            lambda: worker.events_named("task.retrying", sweeping.id),
            timeout=30,
            message="the sweep to wait for the database before trying again",
        )
        # Lost while it waits: its message, never acknowledged, goes to the next worker.
        worker.kill()
    finally:
        postgres.start()
    assert faults.stored_answer(sweeping.id) is None, "the sweep answered before its worker died"

    # What the crash left: two batches gone whole, the third untouched.
    done = first_batch + second_batch
    assert faults.video_ids() == {row["id"] for row in third_batch + fresh}
    assert faults.audited() == {row["id"]: 1 for row in done}
    # Batch 2's objects went, but recording that failed: its keys stay queued.
    assert set(faults.queued_keys()) == {key for row in second_batch for key in Catalog.keys(row)}
    assert faults.bucket_keys() == {key for row in third_batch + fresh for key in Catalog.keys(row)}
    faults.assert_storage_consistent()

    faults.wait_until_unacked_expired()
    workers.start()
    envelope = sweeping.get(timeout=60)

    assert envelope["ok"], envelope
    assert envelope["data"]["deleted"] == len(third_batch)
    assert faults.audited() == {row["id"]: 1 for row in expired}
    assert faults.video_ids() == {row["id"] for row in fresh}
    faults.assert_storage_consistent()
    faults.assert_purged_clean(caller)
    assert faults.bucket_keys() == {key for row in fresh for key in Catalog.keys(row)}
