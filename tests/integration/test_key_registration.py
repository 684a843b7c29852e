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
from handlers.deletion import remove_queued
from schemas import DeleteVideo, PurgeStorage
from tests.integration.test_deletion import queued, store_that_is_down
from tests.support import poll
from worker.adapters.postgres.rooms.deletions import REGISTRATION_FENCE, PostgresDeletionQueue
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


# --- bulk writers: the registration fence -------------------------------------------

# Migration 0015's FENCE, the value the engine takes: a bulk writer holds it exclusively,
# every engine transaction holds it shared.
FENCE = REGISTRATION_FENCE

BULK_INSERT = text(
    "INSERT INTO videos (id, mall_id, pin_id, original_filename, original_path,"
    " proxy_path, thumbnail_path, file_size_bytes)"
    " SELECT gen_random_uuid(), :mall, :pin, 'bulk.mp4',"
    " 'videos/bulk/original/' || :tag || '/' || g || '.mp4',"
    " CASE WHEN g = 1 THEN :again ELSE 'videos/bulk/proxy/' || :tag || '/' || g || '.mp4' END,"
    " 'videos/bulk/thumbnail/' || :tag || '/' || g || '.jpg', 1000"
    " FROM generate_series(1, :rows) AS g"
)


def bulk_insert(conn, mall, pin, rows: int, again: str | None = None, tag: str = "a") -> None:
    conn.execute(
        BULK_INSERT,
        {"mall": mall, "pin": pin, "rows": rows, "tag": tag, "again": again or f"videos/{tag}"},
    )


def advisory_waiters(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        ).scalar_one()


def advisory_held_by(conn) -> set[int]:
    """The advisory locks this connection's transaction holds, as the bigints taken."""
    return set(
        conn.execute(
            text(
                "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
            )
        ).scalars()
    )


def test_a_bulk_insert_of_200_000_rows_takes_the_fence_not_a_lock_per_key(deps, catalog, engine):
    """600,000 keys in one statement: a lock per key ran out of the server's lock table
    ("out of shared memory")."""
    gone = deleted_while_s3_is_down(deps, catalog)
    with engine.connect() as conn:
        bulk_insert(conn, gone["mall_id"], gone["pin_id"], 200_000, again=gone["proxy_path"])
        assert advisory_held_by(conn) == {FENCE}
        conn.commit()
        assert conn.execute(text("SELECT count(*) FROM videos")).scalar_one() == 200_000

    # Set-based, as a small writer does it: the key registered again leaves the queue.
    assert sorted(entry["object_key"] for entry in queued(engine)) == sorted(
        [gone["original_path"], gone["thumbnail_path"]]
    )
    assert audit_outcome(engine, gone["id"]) == "files_pending"


def test_a_bulk_insert_waits_for_an_engine_in_flight_and_holds_off_the_next_until_it_commits(
    deps, catalog, engine
):
    gone = deleted_while_s3_is_down(deps, catalog)
    with engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT object_key, id FROM storage_deletions")).all())
    checked, go = threading.Event(), threading.Event()
    store = deps.store

    class PausedStore:
        def __getattr__(self, name):
            return getattr(store, name)

        def delete_many(self, keys):
            checked.set()
            assert go.wait(30)
            return store.delete_many(keys)

    # The first engine is past its check on the original, holding the fence shared.
    first = Background(
        lambda: remove_queued(
            dataclasses.replace(deps, store=PausedStore()), [ids[gone["original_path"]]]
        )
    )
    assert checked.wait(30)
    inserted, commit = threading.Event(), threading.Event()

    def register() -> None:
        with engine.connect() as writer:
            bulk_insert(writer, gone["mall_id"], gone["pin_id"], 2_000, again=gone["proxy_path"])
            inserted.set()
            assert commit.wait(30)
            writer.commit()

    registering = Background(register)
    poll(lambda: advisory_waiters(engine) == 1, timeout=10, message="the insert to wait")
    # The next engine claims the proxy and thumbnail, then queues behind the writer.
    second = Background(
        lambda: remove_queued(deps, [ids[gone["proxy_path"]], ids[gone["thumbnail_path"]]])
    )
    poll(lambda: advisory_waiters(engine) == 2, timeout=10, message="the next engine to wait")
    assert not inserted.is_set()
    go.set()
    assert first.join().deleted == [gone["original_path"]]
    assert inserted.wait(30)
    # The writer holds the fence: the next engine still waits, until the writer commits.
    assert advisory_waiters(engine) == 1 and second.thread.is_alive()
    commit.set()
    registering.join()
    report = second.join()

    assert (report.kept, report.deleted) == ([gone["proxy_path"]], [gone["thumbnail_path"]])
    assert catalog.object_exists(gone["proxy_path"])
    assert not catalog.object_exists(gone["original_path"])
    assert queued(engine) == []
    assert audit_outcome(engine, gone["id"]) == "files_deleted"


def test_a_bulk_update_of_proxy_path_takes_the_fence(deps, catalog, engine):
    gone = deleted_while_s3_is_down(deps, catalog)
    mall, pin = gone["mall_id"], gone["pin_id"]
    with engine.connect() as conn:
        # Written in statements small enough to lock per key, so only the update is bulk.
        for batch in range(50):
            bulk_insert(conn, mall, pin, 1_000, tag=f"u{batch}")
            conn.commit()
        conn.execute(text("UPDATE videos SET proxy_path = NULL"))
        conn.commit()
        conn.execute(
            text(
                "UPDATE videos SET proxy_path = CASE WHEN original_path = :first THEN :again"
                " ELSE replace(original_path, 'original', 'proxy') END"
            ),
            {"first": "videos/bulk/original/u0/1.mp4", "again": gone["proxy_path"]},
        )
        assert advisory_held_by(conn) == {FENCE}
        conn.commit()
        assert conn.execute(text("SELECT count(proxy_path) FROM videos")).scalar_one() == 50_000

    assert sorted(entry["object_key"] for entry in queued(engine)) == sorted(
        [gone["original_path"], gone["thumbnail_path"]]
    )
    assert audit_outcome(engine, gone["id"]) == "files_pending"


def test_a_small_insert_locks_its_own_keys_and_an_engine_on_another_key_does_not_hold_it_up(
    deps, catalog, engine
):
    gone = deleted_while_s3_is_down(deps, catalog)
    checked, go = threading.Event(), threading.Event()
    store = deps.store

    class PausedStore:
        def __getattr__(self, name):
            return getattr(store, name)

        def delete_many(self, keys):
            checked.set()
            assert go.wait(30)
            return store.delete_many(keys)

    engine_deps = dataclasses.replace(deps, store=PausedStore())
    purging = Background(lambda: handlers.purge_storage(PurgeStorage(due_only=False), engine_deps))
    assert checked.wait(30)
    try:
        with engine.connect() as writer:
            row = row_on(gone["mall_id"], gone["pin_id"])
            writer.execute(insert(videos).values(row))
            hashes = writer.execute(
                text("SELECT hashtextextended(k, 0) FROM unnest(CAST(:keys AS text[])) AS k"),
                {"keys": [row["original_path"]]},
            ).scalars()
            assert advisory_held_by(writer) == set(hashes)
            writer.commit()
    finally:
        go.set()
    purging.join()
    assert queued(engine) == []
