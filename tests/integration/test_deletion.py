"""videos.delete and videos.purge_storage against Postgres, the S3 server and Redis."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

import handlers
from handlers import NotFound
from schemas import EVENTS_CHANNEL, DeleteVideo, FlushStaleStats, GetStats, PurgeStorage
from tests.support import poll
from worker.adapters.s3.store import S3ObjectStore
from worker.dev.embedded import free_port
from worker.settings import load_settings


def queued(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT object_key, video_id, mall_id, reason, attempts, last_error,"
                " next_attempt_at FROM storage_deletions ORDER BY id"
            )
        )
        return [dict(row._mapping) for row in rows]


def count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def store_that_is_down() -> S3ObjectStore:
    return S3ObjectStore(load_settings(s3_endpoint_url=f"http://127.0.0.1:{free_port()}"))


def clock_at(moment: datetime):
    return lambda: moment


@pytest.fixture
def events(redis_client):
    """Messages published on the events channel from now on."""
    pubsub = redis_client.pubsub()
    pubsub.subscribe(EVENTS_CHANNEL)
    # Wait for the subscription to be confirmed so no event slips past.
    poll(lambda: pubsub.get_message(timeout=0.1) is not None, timeout=5, message="subscribing")

    def received(expected: int, timeout: float = 5.0) -> list[dict]:
        """Up to ``expected`` events within ``timeout`` (fewer if fewer came: callers count)."""
        messages: list[dict] = []

        def enough() -> bool:
            message = pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "message":
                messages.append(json.loads(message["data"]))
            return len(messages) >= expected

        try:
            poll(enough, timeout=timeout)
        except AssertionError:
            pass  # the caller's assertion on the count says what was missing
        return messages

    yield received
    pubsub.close()


def test_delete_cascades_to_processing_jobs(deps, catalog, engine):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    doomed = catalog.video(mall, pin, jobs=2)
    kept = catalog.video(mall, pin, jobs=1)

    handlers.delete_video(DeleteVideo(video_id=str(doomed["id"])), deps)

    jobs_of = "SELECT count(*) FROM processing_jobs WHERE video_id = :video_id"
    assert count(engine, jobs_of, video_id=doomed["id"]) == 0
    assert count(engine, jobs_of, video_id=kept["id"]) == 1


def test_delete_publishes_video_deleted_on_the_events_channel(deps, catalog, events):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))

    handlers.delete_video(DeleteVideo(video_id=str(row["id"])), deps)

    [message] = events(1)
    assert message["event"] == "video.deleted"
    assert (message["video_id"], message["mall_id"]) == (str(row["id"]), str(mall))
    assert (message["files_deleted"], message["files_pending"]) == (catalog.keys(row), [])
    assert message["at"].endswith("Z")


def test_delete_while_s3_is_down_commits_the_row_delete_and_purge_later_removes_the_objects(
    deps, catalog, engine
):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall), jobs=1)
    keys = catalog.keys(row)
    started = datetime.now(UTC)

    result = handlers.delete_video(
        DeleteVideo(video_id=str(row["id"])), dataclasses.replace(deps, store=store_that_is_down())
    )

    assert (result.deleted, result.files_deleted, result.files_pending) == (True, [], keys)
    assert result.message == (
        "Video deleted successfully. 0 file(s) removed from storage. 3 file(s) queued for retry."
    )
    assert count(engine, "SELECT count(*) FROM videos") == 0
    assert all(catalog.object_exists(key) for key in keys)
    backlog = queued(engine)
    assert [entry["object_key"] for entry in backlog] == keys
    for entry in backlog:
        assert (entry["video_id"], entry["mall_id"], entry["reason"]) == (
            row["id"],
            mall,
            "request",
        )
        assert entry["attempts"] == 1
        assert entry["last_error"] == "EndpointConnectionError"
        assert started + timedelta(seconds=15) <= entry["next_attempt_at"]

    not_yet = handlers.purge_storage(PurgeStorage(), deps)
    assert (not_yet.attempted, not_yet.remaining) == (0, 3)

    later = dataclasses.replace(deps, clock=clock_at(datetime.now(UTC) + timedelta(hours=1)))
    purged = handlers.purge_storage(PurgeStorage(), later)

    assert (purged.attempted, purged.deleted, purged.failed, purged.remaining) == (3, 3, 0, 0)
    assert queued(engine) == []
    assert not any(catalog.object_exists(key) for key in keys)

    with pytest.raises(NotFound) as raised:
        handlers.delete_video(DeleteVideo(video_id=str(row["id"])), deps)
    assert raised.value.detail == f"Video {row['id']} not found"


def test_a_failed_purge_backs_off_counts_the_attempt_and_records_the_error(deps, catalog, engine):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))
    down = dataclasses.replace(deps, store=store_that_is_down())
    handlers.delete_video(DeleteVideo(video_id=str(row["id"])), down)
    purge_time = datetime.now(UTC) + timedelta(hours=1)

    result = handlers.purge_storage(
        PurgeStorage(), dataclasses.replace(down, clock=clock_at(purge_time))
    )

    assert (result.attempted, result.deleted, result.failed, result.remaining) == (3, 0, 3, 3)
    for entry in queued(engine):
        assert entry["attempts"] == 2
        assert entry["last_error"] == "EndpointConnectionError"
        # The second retry waits retry_delay(2): between 30 s and a minute.
        assert purge_time + timedelta(seconds=30) <= entry["next_attempt_at"]
        assert entry["next_attempt_at"] <= purge_time + timedelta(seconds=60)
    assert all(catalog.object_exists(key) for key in catalog.keys(row))


def test_keys_the_server_refuses_stay_queued_while_the_others_are_removed(
    deps, catalog, engine, deny_deletes_under
):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))
    deny_deletes_under("thumbnails/")

    result = handlers.delete_video(DeleteVideo(video_id=str(row["id"])), deps)

    assert result.files_deleted == [row["original_path"], row["proxy_path"]]
    assert result.files_pending == [row["thumbnail_path"]]
    assert result.message == (
        "Video deleted successfully. 2 file(s) removed from storage. 1 file(s) queued for retry."
    )
    assert catalog.object_exists(row["thumbnail_path"])
    assert not catalog.object_exists(row["original_path"])
    [entry] = queued(engine)
    assert (entry["object_key"], entry["attempts"], entry["last_error"]) == (
        row["thumbnail_path"],
        1,
        "AccessDenied: Access Denied",
    )


def test_purge_removes_a_refused_key_once_the_server_accepts_it(
    deps, catalog, engine, s3, bucket, deny_deletes_under
):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))
    deny_deletes_under("thumbnails/")
    handlers.delete_video(DeleteVideo(video_id=str(row["id"])), deps)
    s3.delete_bucket_policy(Bucket=bucket)

    later = dataclasses.replace(deps, clock=clock_at(datetime.now(UTC) + timedelta(minutes=5)))
    result = handlers.purge_storage(PurgeStorage(), later)

    assert (result.attempted, result.deleted, result.remaining) == (1, 1, 0)
    assert not catalog.object_exists(row["thumbnail_path"])
    assert queued(engine) == []


def test_delete_without_files_queues_nothing_and_purge_has_nothing_to_do(deps, catalog, engine):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))

    handlers.delete_video(DeleteVideo(video_id=str(row["id"]), delete_files=False), deps)
    later = dataclasses.replace(deps, clock=clock_at(datetime.now(UTC) + timedelta(days=1)))
    result = handlers.purge_storage(PurgeStorage(), later)

    assert (result.attempted, result.remaining) == (0, 0)
    assert all(catalog.object_exists(key) for key in catalog.keys(row))


def audit_outcomes(engine, video_id) -> list[tuple[str, str, list[str]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT reason, outcome, object_keys FROM deletion_audit"
                " WHERE video_id = :video_id ORDER BY id"
            ),
            {"video_id": video_id},
        )
        return [tuple(row) for row in rows]


def test_each_delete_leaves_an_audit_row_with_its_keys_and_outcome(deps, catalog, engine):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    removed, kept_files, pending = (catalog.video(mall, pin) for _ in range(3))

    handlers.delete_video(DeleteVideo(video_id=str(removed["id"])), deps)
    handlers.delete_video(DeleteVideo(video_id=str(kept_files["id"]), delete_files=False), deps)
    handlers.delete_video(
        DeleteVideo(video_id=str(pending["id"])),
        dataclasses.replace(deps, store=store_that_is_down()),
    )

    assert audit_outcomes(engine, removed["id"]) == [
        ("request", "files_deleted", catalog.keys(removed))
    ]
    assert audit_outcomes(engine, kept_files["id"]) == [
        ("request", "files_kept", catalog.keys(kept_files))
    ]
    assert audit_outcomes(engine, pending["id"]) == [
        ("request", "files_pending", catalog.keys(pending))
    ]


def test_an_object_another_row_still_references_is_kept(deps, catalog, engine):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    doomed = catalog.video(mall, pin)
    sibling = catalog.video(mall, pin, thumbnail_path=doomed["thumbnail_path"])

    result = handlers.delete_video(DeleteVideo(video_id=str(doomed["id"])), deps)

    assert result.files_deleted == [doomed["original_path"], doomed["proxy_path"]]
    assert result.message == "Video deleted successfully. 2 file(s) removed from storage."
    assert catalog.object_exists(sibling["thumbnail_path"])
    assert queued(engine) == []


def test_purge_drops_a_queued_key_that_a_new_row_references_and_keeps_the_object(
    deps, catalog, engine
):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    row = catalog.video(mall, pin)
    handlers.delete_video(
        DeleteVideo(video_id=str(row["id"])), dataclasses.replace(deps, store=store_that_is_down())
    )
    # The same upload is registered again before purge gets to it.
    catalog.video(mall, pin, upload_objects=False, original_path=row["original_path"])
    later = dataclasses.replace(deps, clock=clock_at(datetime.now(UTC) + timedelta(hours=1)))

    result = handlers.purge_storage(PurgeStorage(), later)

    assert (result.attempted, result.deleted, result.remaining) == (2, 2, 0)
    assert catalog.object_exists(row["original_path"])
    assert not catalog.object_exists(row["thumbnail_path"])
    assert queued(engine) == []


def test_deletes_mark_the_global_figure_and_their_mall_stale_and_the_flush_refreshes_them(
    deps, catalog, redis_client
):
    north, south = catalog.mall("North"), catalog.mall("South")
    doomed = catalog.video(north, catalog.pin(north), upload_objects=False)
    catalog.video(south, catalog.pin(south), upload_objects=False)
    handlers.get_stats(GetStats(), deps)

    handlers.delete_video(DeleteVideo(video_id=str(doomed["id"])), deps)

    stale = {m.decode() for m in redis_client.smembers("videoworker:stats-dirty")}
    assert stale == {"global", str(north)}
    assert handlers.get_stats(GetStats(), deps).total_videos == 2  # still the cached figure

    result = handlers.flush_stale_stats(FlushStaleStats(), deps)

    assert result.scopes_refreshed == 2
    assert handlers.get_stats(GetStats(), deps).total_videos == 1
    assert handlers.get_stats(GetStats(mall_id=str(north)), deps).total_videos == 0
    assert redis_client.exists("videoworker:stats-dirty") == 0


# --- the one removal engine ----------------------------------------------------------------


def audit_outcome(engine, video_id) -> str:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT outcome FROM deletion_audit WHERE video_id = :id"), {"id": video_id}
        ).scalar_one()


def test_purge_settles_the_audit_row_of_a_video_deleted_during_an_s3_outage(deps, catalog, engine):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))
    handlers.delete_video(
        DeleteVideo(video_id=str(row["id"])), dataclasses.replace(deps, store=store_that_is_down())
    )
    assert audit_outcome(engine, row["id"]) == "files_pending"

    later = dataclasses.replace(deps, clock=clock_at(datetime.now(UTC) + timedelta(hours=1)))
    purged = handlers.purge_storage(PurgeStorage(), later)

    assert (purged.deleted, purged.remaining) == (3, 0)
    assert audit_outcome(engine, row["id"]) == "files_deleted"


def test_purge_now_retries_every_queued_key_whatever_its_backoff(deps, catalog, engine):
    mall = catalog.mall()
    rows = [catalog.video(mall, catalog.pin(mall)) for _ in range(3)]
    down = dataclasses.replace(deps, store=store_that_is_down())
    for row in rows:
        handlers.delete_video(DeleteVideo(video_id=str(row["id"])), down)
    assert count(engine, "SELECT count(*) FROM storage_deletions") == 9

    due_only = handlers.purge_storage(PurgeStorage(), deps)
    assert (due_only.attempted, due_only.remaining) == (0, 9)

    now = handlers.purge_storage(PurgeStorage(due_only=False), deps)

    assert (now.attempted, now.deleted, now.failed, now.remaining) == (9, 9, 0, 0)
    assert not any(catalog.object_exists(key) for row in rows for key in catalog.keys(row))
    assert {audit_outcome(engine, row["id"]) for row in rows} == {"files_deleted"}


def test_purge_now_against_a_store_still_down_tries_each_key_once_and_backs_off(
    deps, catalog, engine
):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))
    down = dataclasses.replace(deps, store=store_that_is_down())
    handlers.delete_video(DeleteVideo(video_id=str(row["id"])), down)

    result = handlers.purge_storage(PurgeStorage(due_only=False), down)

    assert (result.attempted, result.failed, result.remaining) == (3, 3, 3)
    assert [entry["attempts"] for entry in queued(engine)] == [2, 2, 2]


def test_a_key_shared_by_two_rows_goes_once_the_second_row_is_deleted(deps, catalog, engine):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    first = catalog.video(mall, pin)
    second = catalog.video(mall, pin, upload_objects=False, thumbnail_path=first["thumbnail_path"])

    one = handlers.delete_video(DeleteVideo(video_id=str(first["id"])), deps)
    assert first["thumbnail_path"] not in one.files_deleted + one.files_pending
    assert catalog.object_exists(first["thumbnail_path"])

    two = handlers.delete_video(DeleteVideo(video_id=str(second["id"])), deps)
    assert first["thumbnail_path"] in two.files_deleted
    assert not catalog.object_exists(first["thumbnail_path"])
    assert queued(engine) == []


def test_concurrent_deletes_of_rows_sharing_keys_leave_no_orphan(deps, catalog, engine):
    """Each pair shares its thumbnail; both rows of a pair are deleted at the same moment.

    With the reference check made inside each deleting transaction, each delete could see
    the other row still there and neither would queue the key. Decided at removal time
    under the key's lock, the last remover always sees no row left.
    """
    import threading

    mall = catalog.mall()
    pin = catalog.pin(mall)
    pairs = []
    for _ in range(30):
        first = catalog.video(mall, pin)
        second = catalog.video(
            mall, pin, upload_objects=False, thumbnail_path=first["thumbnail_path"]
        )
        pairs.append((first, second))

    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def delete_all(rows) -> None:
        try:
            for row in rows:
                barrier.wait(timeout=30)
                handlers.delete_video(DeleteVideo(video_id=str(row["id"])), deps)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=delete_all, args=([pair[side] for pair in pairs],))
        for side in (0, 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []

    shared = [first["thumbnail_path"] for first, _ in pairs]
    survivors = [key for key in shared if catalog.object_exists(key)]
    still_queued = {entry["object_key"] for entry in queued(engine)}
    orphans = [key for key in survivors if key not in still_queued]
    assert orphans == []
    # Purged now, nothing is left at all.
    handlers.purge_storage(PurgeStorage(due_only=False), deps)
    assert [key for key in shared if catalog.object_exists(key)] == []


def test_removers_of_overlapping_keys_take_their_locks_without_deadlock(deps, catalog, engine):
    from handlers.deletion import remove_queued
    from handlers.ports import QueuedKey

    keys = [f"shared/{i:03d}.jpg" for i in range(200)]
    for key in keys:
        catalog.s3.put_object(Bucket=catalog.bucket, Key=key, Body=b"x")
    now = datetime.now(UTC)
    with deps.uow() as uow:
        forward = uow.deletions.enqueue(
            [QueuedKey(k, None, None, "reconcile") for k in keys], not_before=now
        )
        backward = uow.deletions.enqueue(
            [QueuedKey(k, None, None, "reconcile") for k in reversed(keys)], not_before=now
        )
        uow.commit()

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda ids: remove_queued(deps, ids), [forward, backward]))

    assert sum(len(report.deleted) for report in reports) >= len(keys)
    assert queued(engine) == []
    assert not any(catalog.object_exists(key) for key in keys)
