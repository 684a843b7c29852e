"""S3 failing under the worker: refused, 5xx, throttled, and partial DeleteObjects failures.

Whatever S3 does, a deleted row's keys are queued before S3 is called, the keys that
could not be removed stay queued and are reported as pending, and once S3 heals
``videos.purge_storage`` removes them and empties the queue.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.conftest import Catalog
from tests.faults.conftest import MAINTENANCE_QUEUE

# Run once, in `make test`, whatever the broker:
# what is tested is the worker's answer to S3's failures.
pytestmark = pytest.mark.broker_independent


# botocore (standard mode, total_max_attempts=3 in worker/storage.py) sends a request
# that keeps failing with a 5xx three times in all.
BOTOCORE_ATTEMPTS = 3

PERSISTENT_FAILURES = {
    "connection refused": None,
    "500 InternalError": (500, "InternalError"),
    "503 ServiceUnavailable": (503, "ServiceUnavailable"),
    "503 SlowDown": (503, "SlowDown"),
}


def delete(caller, video_id) -> dict:
    return caller.send_task(
        "videos.delete", kwargs={"video_id": str(video_id)}, queue=MAINTENANCE_QUEUE
    ).get(timeout=60)


def queue_rows(faults) -> list[dict]:
    with faults.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT object_key, attempts, last_error FROM storage_deletions ORDER BY id")
        )
        return [dict(row._mapping) for row in rows]


@pytest.mark.parametrize("failure", list(PERSISTENT_FAILURES))
def test_persistent_s3_failure_leaves_keys_queued_until_a_purge_after_healing(
    faults, module_worker, caller, mall_and_pin, failure
):
    mall, pin = mall_and_pin
    catalog = faults.catalog()
    video = catalog.video(mall, pin)
    bystander = catalog.video(mall, pin)
    keys = Catalog.keys(video)
    error = PERSISTENT_FAILURES[failure]
    if error is None:
        faults.proxy.stop()
    else:
        faults.proxy.fail_with(*error)

    envelope = delete(caller, video["id"])

    assert envelope["ok"], envelope
    assert envelope["data"]["deleted"] is True
    assert envelope["data"]["files_deleted"] == []
    assert envelope["data"]["files_pending"] == keys
    assert envelope["data"]["message"] == (
        "Video deleted successfully. 0 file(s) removed from storage. 3 file(s) queued for retry."
    )
    assert sorted(row["object_key"] for row in queue_rows(faults)) == sorted(keys)
    assert all(catalog.object_exists(key) for key in keys)
    if error is not None:
        assert faults.proxy.matched_requests == BOTOCORE_ATTEMPTS
        assert all(error[1] in row["last_error"] for row in queue_rows(faults))
    faults.assert_storage_consistent()

    if error is None:
        faults.proxy.start()
    faults.proxy.heal()
    purged = faults.assert_purged_clean(caller)

    assert purged["data"]["deleted"] == 3
    assert not any(catalog.object_exists(key) for key in keys)
    assert all(catalog.object_exists(key) for key in Catalog.keys(bystander))


def purge(caller, **kwargs) -> dict:
    return caller.send_task("videos.purge_storage", kwargs=kwargs, queue=MAINTENANCE_QUEUE).get(
        timeout=60
    )


def test_s3_down_through_a_delete_leaves_its_keys_pending_until_a_purge_now(
    faults, module_worker, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    catalog = faults.catalog()
    video = catalog.video(mall, pin)
    bystander = catalog.video(mall, pin)
    keys = Catalog.keys(video)
    # Refused for as long as the delete tries, botocore's attempts included.
    faults.proxy.stop()

    envelope = delete(caller, video["id"])

    assert envelope["ok"], envelope
    assert (envelope["data"]["files_deleted"], envelope["data"]["files_pending"]) == ([], keys)
    assert [row["attempts"] for row in queue_rows(faults)] == [1, 1, 1]
    assert all(catalog.object_exists(key) for key in keys)

    faults.proxy.start()
    # Back, but the keys wait out their backoff (15 s at the least): a due-only purge
    # leaves them; an operator's purge now takes them all.
    waiting = purge(caller)
    now = purge(caller, due_only=False)

    assert waiting["ok"] and (waiting["data"]["deleted"], waiting["data"]["remaining"]) == (0, 3)
    assert now["ok"], now
    assert (now["data"]["deleted"], now["data"]["failed"], now["data"]["remaining"]) == (3, 0, 0)
    assert faults.queued_keys() == []
    assert not any(catalog.object_exists(key) for key in keys)
    assert all(catalog.object_exists(key) for key in Catalog.keys(bystander))
    with faults.engine.connect() as conn:
        outcome = conn.execute(text("SELECT outcome FROM deletion_audit")).scalar_one()
    assert outcome == "files_deleted"
    faults.assert_storage_consistent()


def test_partial_delete_objects_failure_keeps_only_the_failed_key_queued(
    faults, module_worker, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    catalog = faults.catalog()
    video = catalog.video(mall, pin)
    failing = video["proxy_path"]
    faults.proxy.fail_keys({failing})

    envelope = delete(caller, video["id"])

    assert envelope["ok"], envelope
    assert envelope["data"]["files_deleted"] == [video["original_path"], video["thumbnail_path"]]
    assert envelope["data"]["files_pending"] == [failing]
    assert envelope["data"]["message"] == (
        "Video deleted successfully. 2 file(s) removed from storage. 1 file(s) queued for retry."
    )
    assert catalog.object_exists(failing)
    assert not catalog.object_exists(video["original_path"])
    assert not catalog.object_exists(video["thumbnail_path"])
    assert [row["object_key"] for row in queue_rows(faults)] == [failing]
    assert faults.proxy.failed_keys == {failing: 1}
    with faults.engine.connect() as conn:
        outcome = conn.execute(text("SELECT outcome FROM deletion_audit")).scalar_one()
    assert outcome == "files_pending"
    faults.assert_storage_consistent()

    still_failing = faults.purge_everything(caller)

    assert still_failing["data"]["failed"] == 1
    assert still_failing["data"]["remaining"] == 1
    [row] = queue_rows(faults)
    assert row["attempts"] == 2
    assert "InternalError" in row["last_error"]
    assert catalog.object_exists(failing)

    faults.proxy.heal()
    faults.assert_purged_clean(caller)

    assert not catalog.object_exists(failing)


def test_partial_failure_during_a_sweep_is_counted_pending_and_purged_later(
    faults, module_worker, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    expired = faults.insert_videos(mall, pin, 6, age=timedelta(days=120))
    proxies = {row["proxy_path"] for row in expired}
    faults.proxy.fail_keys(proxies)

    envelope = caller.send_task(
        "videos.retention_sweep",
        kwargs={"older_than_days": 90, "batch_size": 4},
        queue=MAINTENANCE_QUEUE,
    ).get(timeout=60)

    assert envelope["ok"], envelope
    assert envelope["data"]["deleted"] == 6
    assert envelope["data"]["files_deleted"] == 12
    assert envelope["data"]["files_pending"] == 6
    assert set(faults.queued_keys()) == proxies
    assert faults.bucket_keys() == proxies
    faults.assert_storage_consistent()

    faults.proxy.heal()
    faults.assert_purged_clean(caller)

    assert faults.bucket_keys() == set()
