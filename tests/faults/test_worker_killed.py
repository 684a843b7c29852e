"""A worker killed (SIGKILL) in the middle of a delete and of a retention sweep.

The proxy holds the delete's DeleteObjects call and the sweep's third one, so the kill
lands at a known point: both rows' transactions committed (rows gone, keys queued,
audited), their objects not yet removed. With ``acks_late`` and
``reject_on_worker_lost`` both messages come back: at once when a pool child dies
(its parent requeues them); when the whole worker dies, at once on RabbitMQ (the
worker's connection is gone) and after the visibility timeout on Redis. Each is then
redone harmlessly: the delete finds its row gone by its own first run and answers what
that run would have (the keys it queued, none removed yet), the sweep deletes only what
is left, and a purge removes what the lost calls left queued.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.conftest import Catalog
from tests.faults.conftest import MAINTENANCE_QUEUE, RECOVERY_TIMES, VISIBILITY_TIMEOUT_SECONDS
from tests.support import poll

EXPIRED, FRESH, BATCH = 50, 5, 10
HELD_BATCH = 3  # the sweep is killed with this many batches committed


@pytest.mark.parametrize("victim", ["main process", "pool children"])
def test_worker_killed_mid_delete_and_mid_sweep_redoes_both_harmlessly(
    faults, workers, caller, mall_and_pin, victim
):
    mall, pin = mall_and_pin
    catalog = faults.catalog()
    # Uploaded a minute ago: no retention sweep touches it.
    doomed = catalog.video(mall, pin)
    keys = Catalog.keys(doomed)
    # Inserted with uploaded_at decreasing: the sweep takes them from the end.
    expired = faults.insert_videos(mall, pin, EXPIRED, age=timedelta(days=120))
    fresh = faults.insert_videos(mall, pin, FRESH, age=timedelta(days=1))
    first_of_held_batch = expired[EXPIRED - 1 - (HELD_BATCH - 1) * BATCH]
    faults.proxy.hold_deleting(doomed["original_path"])
    faults.proxy.hold_deleting(first_of_held_batch["original_path"])
    first_worker = workers.start()

    deleting = caller.send_task(
        "videos.delete", kwargs={"video_id": str(doomed["id"])}, queue=MAINTENANCE_QUEUE
    )
    sweeping = caller.send_task(
        "videos.retention_sweep",
        kwargs={"older_than_days": 90, "batch_size": BATCH},
        queue=MAINTENANCE_QUEUE,
    )
    ports = faults.proxy.wait_until_held(timeout=30)
    if victim == "main process":
        first_worker.kill()
    else:
        children = [first_worker.child_connected_from(port) for port in ports]
        assert len({child.pid for child in children}) == 2
        for child in children:
            child.kill()
            child.wait(10)
    # The requests the dead processes were waiting on never reach S3.
    faults.proxy.release(forward=False)

    if victim == "main process":
        # Nothing runs now: this is the state the kill left behind.
        assert doomed["id"] not in faults.video_ids()
        assert len(faults.audited()) == 1 + HELD_BATCH * BATCH
        assert all(catalog.object_exists(key) for key in keys)
        assert set(keys) <= set(faults.queued_keys())
        faults.assert_storage_consistent()
        faults.wait_until_unacked_expired()
        workers.start()

    deleted = deleting.get(timeout=60)
    swept = sweeping.get(timeout=60)

    # Redone, not done twice: the delete answers for its first run, the sweep does the rest.
    assert deleted == {
        "ok": True,
        "status": 200,
        "data": {
            "video_id": str(doomed["id"]),
            "deleted": True,
            "files_deleted": [],
            "files_pending": keys,
            "message": (
                "Video deleted successfully. 0 file(s) removed from storage. "
                "3 file(s) queued for retry."
            ),
            "purge_after": None,
        },
    }
    assert swept["ok"], swept
    assert swept["data"]["deleted"] == EXPIRED - HELD_BATCH * BATCH
    audited = faults.audited()
    assert set(audited) == {doomed["id"], *(row["id"] for row in expired)}
    assert set(audited.values()) == {1}
    assert faults.video_ids() == {row["id"] for row in fresh}
    faults.wait_until_broker_idle(timeout=30, message="every message acknowledged")
    faults.assert_storage_consistent()

    faults.assert_purged_clean(caller)
    assert faults.bucket_keys() == {key for row in fresh for key in Catalog.keys(row)}


def test_whole_worker_killed_mid_delete_its_message_is_answered_by_the_live_worker(
    faults, workers, caller, mall_and_pin, request
):
    mall, pin = mall_and_pin
    video = faults.catalog().video(mall, pin)
    keys = Catalog.keys(video)
    # Both up before the delete is sent: the time measured is the broker's, not a start's.
    both = [workers.start(), workers.start()]

    def worker_blocked_in_the_delete():
        for worker in both:
            if faults.blocked_delete_child(worker) is not None:
                return worker
        return None

    # The test holds the row lock, so the delete blocks in PostgreSQL before its commit:
    # a known moment to kill the worker running it, main process and pool alike.
    with faults.engine.connect() as blocker:
        blocker.execute(text("SELECT 1 FROM videos WHERE id = :id FOR UPDATE"), {"id": video["id"]})
        deleting = caller.send_task(
            "videos.delete", kwargs={"video_id": str(video["id"])}, queue=MAINTENANCE_QUEUE
        )
        victim = poll(worker_blocked_in_the_delete, timeout=30, message="a worker in the delete")
        [survivor] = [worker for worker in both if worker is not victim]
        killed_at = time.monotonic()
        victim.kill()
        # The dead run's transaction never commits: its backend ends when it finds its
        # client gone, and frees the row for the run that replaces it.
        blocker.rollback()
    envelope = deleting.get(timeout=60)
    recovery = time.monotonic() - killed_at
    RECOVERY_TIMES.append((faults.broker_name, request.node.name, recovery))
    print(f"{faults.broker_name}: worker killed mid-delete, answered {recovery:.2f}s later")

    assert envelope["ok"], envelope
    assert envelope["data"]["deleted"] is True
    assert sorted(envelope["data"]["files_deleted"]) == sorted(keys)
    assert envelope["data"]["files_pending"] == []
    # The success line follows the stored answer by a moment.
    poll(lambda: survivor.completions(deleting.id) >= 1, timeout=15, message="the success line")
    assert survivor.completions(deleting.id) == 1
    # The survivor counted the redelivery as one lost run (the count itself is cleared
    # once the task has ended: the marks track what is in flight).
    counted = survivor.events_named("message.redelivered", deleting.id)
    assert [entry["redeliveries"] for entry in counted] == [1]
    assert faults.redeliveries(deleting.id) == 0
    assert faults.audited() == {video["id"]: 1}
    assert video["id"] not in faults.video_ids()
    faults.wait_until_broker_idle(timeout=30, message="every message acknowledged")
    faults.assert_storage_consistent()
    assert faults.bucket_keys() == set()
    if faults.on_rabbitmq:
        # At once: well inside the visibility timeout Redis would have waited.
        assert recovery < VISIBILITY_TIMEOUT_SECONDS, recovery
