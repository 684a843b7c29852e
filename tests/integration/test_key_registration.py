"""A row registered on an object key against the removal engine, on two connections.

The trigger of migration 0015 makes every writer of ``videos`` take the engine's
per-key lock for the keys it registers, and drop their queued deletions. These tests
hold the engine at a known point (claimed but not yet locked; past its reference check)
and race a registering insert against it.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, text, update

import handlers
from schemas import DeleteVideo, PurgeStorage
from tests.integration.test_deletion import queued, store_that_is_down
from tests.support import poll
from worker.adapters.postgres.rooms.deletions import PostgresDeletionQueue
from worker.adapters.postgres.tables import Video

videos = Video.__table__


def row_on(mall, pin, **keys) -> dict:
    video_id = uuid.uuid4()
    return {
        "id": video_id,
        "mall_id": mall,
        "pin_id": pin,
        "original_filename": "again.mp4",
        "original_path": f"videos/{mall}/original/{video_id}.mp4",
        "file_size_bytes": 1_000,
        **keys,
    }


def waiting_for_a_key_lock(engine) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar_one()
            > 0
        )


def audit_outcome(engine, video_id) -> str:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT outcome FROM deletion_audit WHERE video_id = :id"), {"id": video_id}
        ).scalar_one()


def deleted_while_s3_is_down(deps, catalog) -> dict:
    """A video whose row is gone and whose three keys are still queued."""
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))
    handlers.delete_video(
        DeleteVideo(video_id=str(row["id"])), dataclasses.replace(deps, store=store_that_is_down())
    )
    assert len(queued(catalog.engine)) == 3
    return row


class Background:
    """One call on a thread of its own; its result or its error once joined."""

    def __init__(self, call) -> None:
        self.result: object = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = call()
            except BaseException as exc:  # noqa: BLE001 - re-raised by join
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self):
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the background call never ended"
        if self.error is not None:
            raise self.error
        return self.result


def test_a_row_registered_before_the_engine_locks_the_key_makes_it_wait_and_keep_the_object(
    deps, catalog, engine, monkeypatch
):
    gone = deleted_while_s3_is_down(deps, catalog)
    key = gone["original_path"]
    claimed, go = threading.Event(), threading.Event()
    lock_keys = PostgresDeletionQueue.lock_keys

    def paused(self, keys):
        # The engine has claimed its queue rows; it locks the keys once told to.
        claimed.set()
        assert go.wait(30)
        lock_keys(self, keys)

    monkeypatch.setattr(PostgresDeletionQueue, "lock_keys", paused)
    purging = Background(lambda: handlers.purge_storage(PurgeStorage(due_only=False), deps))
    assert claimed.wait(30)

    with engine.connect() as writer:
        # Registered on the key, not yet committed: the trigger holds the key's lock.
        writer.execute(
            insert(videos).values(row_on(gone["mall_id"], gone["pin_id"], original_path=key))
        )
        go.set()
        poll(
            lambda: waiting_for_a_key_lock(engine) or not purging.thread.is_alive(),
            timeout=10,
            message="the engine to wait for the key or to end",
        )
        writer.commit()
    result = purging.join()

    assert catalog.object_exists(key)
    assert not catalog.object_exists(gone["thumbnail_path"])
    assert (result.deleted, result.kept, result.remaining) == (2, 1, 0)
    assert queued(engine) == []
    assert audit_outcome(engine, gone["id"]) == "files_deleted"


@pytest.mark.parametrize("registered_by", ["insert", "update of proxy_path"])
def test_a_key_registered_again_drops_its_queued_deletion_so_no_later_purge_removes_it(
    deps, catalog, engine, registered_by
):
    gone = deleted_while_s3_is_down(deps, catalog)
    key = gone["proxy_path"]
    mall, pin = gone["mall_id"], gone["pin_id"]
    if registered_by == "insert":
        again = catalog.video(mall, pin, upload_objects=False, proxy_path=key)
    else:
        again = catalog.video(mall, pin, proxy=False)
        with engine.begin() as conn:
            conn.execute(update(videos).where(videos.c.id == again["id"]).values(proxy_path=key))

    assert sorted(entry["object_key"] for entry in queued(engine)) == sorted(
        [gone["original_path"], gone["thumbnail_path"]]
    )
    assert audit_outcome(engine, gone["id"]) == "files_pending"
    # The new row goes with its files kept: nothing of it is queued, and the old queued
    # deletion of its key is gone, so no purge removes the object.
    handlers.delete_video(DeleteVideo(video_id=str(again["id"]), delete_files=False), deps)
    later = dataclasses.replace(deps, clock=lambda: datetime.now(UTC) + timedelta(hours=1))
    handlers.purge_storage(PurgeStorage(due_only=False), later)

    assert catalog.object_exists(key)
    assert not catalog.object_exists(gone["original_path"])
    assert queued(engine) == []
    assert audit_outcome(engine, gone["id"]) == "files_deleted"


def test_a_registration_waiting_behind_an_engine_past_its_check_finds_the_object_gone(
    deps, catalog, engine
):
    """What remains (README, "How deletes stay consistent"): the writer's insert waits
    until the engine commits, and the object it uploaded before is gone by then."""
    gone = deleted_while_s3_is_down(deps, catalog)
    key = gone["original_path"]
    checked, go = threading.Event(), threading.Event()
    store = deps.store

    class PausedStore:
        def __getattr__(self, name):
            return getattr(store, name)

        def delete_many(self, keys):
            # Past the reference check, the key locks held.
            checked.set()
            assert go.wait(30)
            return store.delete_many(keys)

    engine_deps = dataclasses.replace(deps, store=PausedStore())
    purging = Background(lambda: handlers.purge_storage(PurgeStorage(due_only=False), engine_deps))
    assert checked.wait(30)

    def register() -> None:
        with engine.begin() as writer:
            writer.execute(
                insert(videos).values(row_on(gone["mall_id"], gone["pin_id"], original_path=key))
            )

    registering = Background(register)
    poll(lambda: waiting_for_a_key_lock(engine), timeout=10, message="the insert to wait")
    assert registering.thread.is_alive()
    go.set()
    purging.join()
    registering.join()

    assert not catalog.object_exists(key)
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM videos WHERE original_path = :key"), {"key": key}
            ).scalar_one()
            == 1
        )
