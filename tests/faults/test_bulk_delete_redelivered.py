"""A bulk delete whose pool process is killed mid-run is delivered again, and its answer
counts what its first run already deleted.

The proxy holds the DeleteObjects call of the third batch, so the kill lands after three
batches committed (rows gone, keys queued, audited under the task id). The parent
requeues the message (``acks_late``, ``reject_on_worker_lost``) and a sibling runs it
again: the ids the first run deleted are no longer found, and are counted as matched and
deleted from the audit, not reported ``not_found``.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from tests.faults.conftest import MAINTENANCE_QUEUE

VIDEOS, BATCH = 21, 5
HELD_BATCH = 3  # the batch whose S3 call the kill interrupts (its rows are committed)


def test_a_bulk_delete_killed_mid_run_answers_for_its_first_runs_work_too(
    faults, workers, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    # Inserted with uploaded_at decreasing: batches take them from the end.
    rows = faults.insert_videos(mall, pin, VIDEOS, age=timedelta(days=1))
    first_of_held_batch = rows[VIDEOS - 1 - (HELD_BATCH - 1) * BATCH]
    faults.proxy.hold_deleting(first_of_held_batch["original_path"])
    worker = workers.start()
    unknown = str(uuid.uuid4())

    deleting = caller.send_task(
        "videos.bulk_delete",
        kwargs={"video_ids": [str(row["id"]) for row in rows] + [unknown], "batch_size": BATCH},
        queue=MAINTENANCE_QUEUE,
    )
    [port] = faults.proxy.wait_until_held(timeout=30)
    child = worker.child_connected_from(port)
    child.kill()
    child.wait(10)
    faults.proxy.release(forward=False)
    assert len(faults.audited()) == HELD_BATCH * BATCH

    envelope = deleting.get(timeout=60)

    assert envelope["ok"] is True, envelope
    data = envelope["data"]
    assert (data["matched"], data["deleted"], data["not_found"]) == (VIDEOS, VIDEOS, [unknown])
    # The held batch's keys never reached S3: still queued, so pending.
    assert (data["files_deleted"], data["files_pending"]) == (
        3 * (VIDEOS - BATCH),
        3 * BATCH,
    )
    assert (data["continued"], data["continuation_id"]) == (False, None)
    assert faults.video_ids() == set()
    assert set(faults.audited().values()) == {1}
    faults.wait_until_broker_idle(timeout=30, message="every message acknowledged")
    faults.assert_purged_clean(caller)
