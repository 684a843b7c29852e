"""One contract per port, run on the in-memory fakes and on the real adapters.

Every test takes ``world`` and runs twice: ``[fake]`` on ``tests/unit/fakes.py`` (no
service is started for it) and ``[real]`` on PostgreSQL, HTTP S3 and Redis as
``worker.bootstrap.build_deps`` wires them. Unit tests of the handlers trust the fakes;
these tests are what makes that trust hold.

The video rooms' contracts are one file a room (``test_port_contracts_catalogue.py``,
``_removal``, ``_retention``, ``_figures``, ``_references``); this one holds the other
ports' and the arranging helpers they share.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from handlers.access import UNRESTRICTED, Scope
from handlers.ports import QueuedKey, RemovedVideo, TrashedVideo
from schemas.events import StatsRefreshed, VideoDeleted
from schemas.requests import ListVideos
from schemas.responses import StatusCounts, VideoStats
from tests.contracts.world import AuditRow, World, world_of
from tests.unit.fakes import T0


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    return world_of(request)


# Arranging and reading back, for every room


def listed(world: World, scope: Scope = UNRESTRICTED, **query) -> tuple[list[UUID], int]:
    items, total = world.read(lambda uow: uow.catalogue.list(scope, ListVideos(**query)))
    return [item.id for item in items], total


def ids(*videos) -> list[UUID]:
    return [video.id for video in videos]


def trashed(video, at, newly=True) -> TrashedVideo:
    return TrashedVideo(video.id, video.mall_id, video.pin_id, at, newly=newly)


def by_id(rows):
    return sorted(rows, key=lambda row: row.id)


def queued_key(key: str, video_id: UUID | None = None, mall_id: UUID | None = None) -> QueuedKey:
    return QueuedKey(object_key=key, video_id=video_id, mall_id=mall_id, reason="request")


def enqueue(world: World, *keys: str, not_before=T0, video_id=None, mall_id=None) -> list[int]:
    entries = [queued_key(key, video_id, mall_id) for key in keys]
    return world.write(lambda uow: uow.deletions.enqueue(entries, not_before))


def removed(video) -> RemovedVideo:
    return RemovedVideo(
        video.id,
        video.mall_id,
        video.original_path,
        video.proxy_path,
        video.thumbnail_path,
        video.pin_id,
    )


def stats_of(mall_id, videos, pending=0, processing=0, completed=0, failed=0, storage=0, secs=0.0):
    return VideoStats(
        mall_id=mall_id,
        total_videos=videos,
        by_status=StatusCounts(
            pending=pending, processing=processing, completed=completed, failed=failed
        ),
        total_storage_bytes=storage,
        total_duration_seconds=secs,
        refreshed_at=T0,
    )


def scoped_world(world: World):
    """Two malls, three pins, a video on each pin (two on A1), and a scope of each kind."""
    mall_a, mall_b = world.mall(), world.mall()
    pin_a1, pin_a2, pin_b1 = world.pin(mall_a, "A1"), world.pin(mall_a, "A2"), world.pin(mall_b)
    at = [T0 - timedelta(hours=h) for h in range(4)]
    videos = {
        "a1": world.video(mall_a, pin_a1, uploaded_at=at[0], file_size_bytes=1_000),
        "a1_old": world.video(mall_a, pin_a1, uploaded_at=at[1], proxy=False),
        "a2": world.video(mall_a, pin_a2, uploaded_at=at[2], processing_status="failed"),
        "b1": world.video(mall_b, pin_b1, uploaded_at=at[3], file_size_bytes=9_000),
    }
    return mall_a, mall_b, (pin_a1, pin_a2, pin_b1), videos


def row_of(video, outcome, request_id=None, reason="request"):
    return AuditRow(
        video.id, video.mall_id, reason, removed(video).object_keys, outcome, request_id
    )


# DeletionQueue


def test_enqueue_returns_one_id_per_key_in_order_and_queues_each_key_as_given(world):
    video_id, mall_id = uuid.uuid4(), uuid.uuid4()
    not_before = T0 + timedelta(minutes=1)
    entries = [
        QueuedKey("a", video_id, mall_id, "request"),
        QueuedKey("b", None, None, "reconcile"),
    ]

    ids = world.write(lambda uow: uow.deletions.enqueue(entries, not_before))
    more = world.write(lambda uow: uow.deletions.enqueue([queued_key("a")], not_before))

    assert len(ids) == 2 and ids == sorted(ids) and more[0] > ids[1]
    assert world.write(lambda uow: uow.deletions.enqueue([], not_before)) == []
    rows = world.queued()
    assert [(r.id, r.object_key, r.video_id, r.mall_id, r.reason) for r in rows] == [
        (ids[0], "a", video_id, mall_id, "request"),
        (ids[1], "b", None, None, "reconcile"),
        (more[0], "a", None, None, "request"),
    ]
    assert {(r.attempts, r.last_error, r.next_attempt_at) for r in rows} == {(0, None, not_before)}
    assert world.queued_keys() == ["a", "b", "a"]


def test_ids_given_out_by_a_rolled_back_enqueue_are_not_given_out_again(world):
    with world.uow() as uow:
        rolled_back = uow.deletions.enqueue([queued_key("a"), queued_key("b")], T0)

    assert enqueue(world, "c")[0] > max(rolled_back)
    assert world.queued_keys() == ["c"]


def test_claim_returns_the_named_rows_by_id_and_skips_unknown_ones(world):
    video_id = uuid.uuid4()
    ids = enqueue(world, "a", "b", "c", video_id=video_id)

    claimed = world.read(lambda uow: uow.deletions.claim([ids[2], ids[0], ids[0], 10_000]))

    assert [(c.id, c.object_key, c.attempts, c.video_id) for c in claimed] == [
        (ids[0], "a", 0, video_id),
        (ids[2], "c", 0, video_id),
    ]
    assert world.read(lambda uow: uow.deletions.claim([])) == []
    # Claiming is not dequeuing.
    assert world.queued_keys() == ["a", "b", "c"]


def test_claim_due_skips_rows_not_yet_due_unless_due_only_is_false(world):
    due_now = enqueue(world, "due", not_before=T0)
    later = enqueue(world, "later", not_before=T0 + timedelta(minutes=5))

    def claim_due(now, **kwargs):
        return [c.id for c in world.read(lambda uow: uow.deletions.claim_due(now, 10, **kwargs))]

    assert claim_due(T0) == due_now
    assert claim_due(T0 - timedelta(seconds=1)) == []
    assert claim_due(T0, due_only=False) == due_now + later
    assert claim_due(T0 + timedelta(minutes=5)) == due_now + later


def test_claim_due_goes_oldest_first_after_the_cursor_up_to_the_limit(world):
    ids = enqueue(world, *"abcde")

    def claim_due(limit, after_id=0):
        claimed = world.read(lambda uow: uow.deletions.claim_due(T0, limit, after_id=after_id))
        return [c.object_key for c in claimed]

    assert claim_due(2) == ["a", "b"]
    assert claim_due(2, after_id=ids[1]) == ["c", "d"]
    assert claim_due(10, after_id=ids[3]) == ["e"]
    assert claim_due(10, after_id=ids[4]) == []


def test_lock_keys_takes_duplicates_and_an_empty_list_within_a_transaction_that_goes_on(world):
    ids = enqueue(world, "a", "b")

    def lock_then_complete(uow):
        uow.deletions.lock_keys(["b", "a", "b", "a"])
        uow.deletions.lock_keys([])
        uow.deletions.complete([ids[0]])

    world.write(lock_then_complete)
    # The locks ended with the transaction: the next one takes them again.
    world.write(lambda uow: uow.deletions.lock_keys(["a", "b"]))
    assert world.queued_keys() == ["b"]


def test_complete_dequeues_the_given_ids_and_ignores_ids_already_gone(world):
    ids = enqueue(world, "a", "b", "c")

    world.write(lambda uow: uow.deletions.complete(iter([ids[0], ids[2], 10_000])))
    world.write(lambda uow: uow.deletions.complete([ids[0]]))
    world.write(lambda uow: uow.deletions.complete([]))

    assert world.queued_keys() == ["b"]


def test_retry_later_counts_an_attempt_records_the_error_and_sets_when_it_is_due(world):
    ids = enqueue(world, "a", "b")
    first, second = T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)

    world.write(lambda uow: uow.deletions.retry_later({ids[0]: ("SlowDown: slow", first)}))
    world.write(lambda uow: uow.deletions.retry_later({ids[0]: ("E" * 600, second)}))
    world.write(lambda uow: uow.deletions.retry_later({}))
    world.write(lambda uow: uow.deletions.retry_later({10_000: ("gone", second)}))

    a, b = world.queued()
    assert (a.attempts, a.next_attempt_at, a.last_error) == (2, second, "E" * 500)
    assert (b.attempts, b.next_attempt_at, b.last_error) == (0, T0, None)
    due = world.read(lambda uow: uow.deletions.claim_due(first, 10))
    assert [(d.object_key, d.attempts) for d in due] == [("b", 0)]
    due_later = world.read(lambda uow: uow.deletions.claim_due(second, 10))
    assert [(d.object_key, d.attempts) for d in due_later] == [("a", 2), ("b", 0)]


def test_pending_counts_queued_rows_and_stuck_those_with_enough_attempts(world):
    ids = enqueue(world, "a", "b", "c")
    for _ in range(3):
        world.write(lambda uow: uow.deletions.retry_later({ids[0]: ("err", T0)}))
    world.write(lambda uow: uow.deletions.retry_later({ids[1]: ("err", T0)}))

    def counts(min_attempts):
        return world.read(lambda uow: (uow.deletions.pending(), uow.deletions.stuck(min_attempts)))

    assert counts(3) == (3, 1)
    assert counts(1) == (3, 2)
    assert counts(0) == (3, 3)
    assert counts(4) == (3, 0)


def test_queued_among_names_only_the_keys_waiting_in_the_queue(world):
    world.write(
        lambda uow: uow.deletions.enqueue(
            [QueuedKey("videos/a.mp4", None, None, "reconcile")], not_before=T0
        )
    )

    found = world.read(lambda uow: uow.deletions.queued_among(["videos/a.mp4", "videos/b.mp4"]))

    assert found == {"videos/a.mp4"}
    assert world.read(lambda uow: uow.deletions.queued_among([])) == set()


# DeletionAuditLog


def test_record_then_find_by_video_and_request_id_with_the_keys_still_queued(world):
    mall = world.mall()
    video = world.video(mall)
    other = world.video(mall, proxy=False, thumbnail=False)

    def delete_and_queue(uow):
        gone = [
            uow.removal.delete(UNRESTRICTED, video.id),
            uow.removal.delete(UNRESTRICTED, other.id),
        ]
        uow.audit.record(gone, "request", "files_queued", request_id="task-1")
        uow.deletions.enqueue([queued_key(k, video.id, mall) for k in gone[0].object_keys], T0)
        uow.audit.record([], "request", "files_queued", request_id="task-1")

    world.write(delete_and_queue)
    ids = [row.id for row in world.queued()]
    world.write(lambda uow: uow.deletions.complete([ids[0]]))

    found = world.read(lambda uow: uow.audit.find(UNRESTRICTED, video.id, "task-1"))
    assert (found.video_id, found.object_keys, found.files_kept) == (
        video.id,
        [video.original_path, video.proxy_path, video.thumbnail_path],
        False,
    )
    assert sorted(found.still_queued) == sorted([video.proxy_path, video.thumbnail_path])
    found_other = world.read(lambda uow: uow.audit.find(UNRESTRICTED, other.id, "task-1"))
    assert found_other.still_queued == []
    assert world.read(lambda uow: uow.audit.find(UNRESTRICTED, video.id, "task-2")) is None
    assert world.read(lambda uow: uow.audit.find(UNRESTRICTED, uuid.uuid4(), "task-1")) is None
    assert world.audit() == [
        row_of(video, "files_queued", "task-1"),
        row_of(other, "files_queued", "task-1"),
    ]


def test_find_tells_a_deletion_that_kept_its_files(world):
    video = world.video(world.mall())

    def delete_keeping_files(uow):
        uow.audit.record(
            [uow.removal.delete(UNRESTRICTED, video.id)], "request", "files_kept", "task-9"
        )

    world.write(delete_keeping_files)

    found = world.read(lambda uow: uow.audit.find(UNRESTRICTED, video.id, "task-9"))
    assert (found.files_kept, found.still_queued) == (True, [])
    assert world.audit() == [row_of(video, "files_kept", "task-9")]


def test_find_answers_only_the_caller_who_deleted_within_a_scope_that_sees_the_video(world):
    mall, elsewhere = world.mall(), world.mall()
    pin, other_pin = world.pin(mall), world.pin(mall)
    video = world.video(mall, pin)

    def delete_as_olga(uow):
        gone = [uow.removal.delete(UNRESTRICTED, video.id)]
        uow.audit.record(gone, "request", "files_kept", request_id="task-7", actor="olga")

    world.write(delete_as_olga)

    def found(scope: Scope) -> bool:
        return world.read(lambda uow: uow.audit.find(scope, video.id, "task-7")) is not None

    assert found(Scope.admin("olga"))
    assert found(Scope.operator([mall], "olga"))
    assert found(Scope.tenant([pin], "olga"))
    assert not found(Scope.operator([elsewhere], "olga"))
    assert not found(Scope.operator([], "olga"))
    assert not found(Scope.tenant([other_pin], "olga"))
    assert not found(Scope.admin("eve"))
    assert not found(Scope.operator([mall], "eve"))
    assert not found(UNRESTRICTED)


def test_done_by_lists_what_one_request_deleted_for_its_caller_only(world):
    mall, elsewhere = world.mall(), world.mall()
    first, second, kept, other_task = (world.video(mall) for _ in range(4))

    def deletes(uow):
        gone = {v.id: uow.removal.delete(UNRESTRICTED, v.id) for v in (first, second, kept)}
        uow.audit.record([gone[first.id], gone[second.id]], "bulk", "files_queued", "bulk-1", "ann")
        uow.audit.record([gone[kept.id]], "bulk", "files_kept", "bulk-1", "ann")
        uow.deletions.enqueue([queued_key(first.thumbnail_path, first.id, mall)], T0)
        other = [uow.removal.delete(UNRESTRICTED, other_task.id)]
        uow.audit.record(other, "bulk", "files_queued", "bulk-2", "ann")

    world.write(deletes)

    def done(scope, video_ids=None):
        found = world.read(lambda uow: uow.audit.done_by(scope, "bulk-1", video_ids))
        return {p.video_id: (p.still_queued, p.files_kept) for p in found}

    ann = Scope.operator([mall], "ann")
    assert done(ann) == {
        first.id: ([first.thumbnail_path], False),
        second.id: ([], False),
        kept.id: ([], True),
    }
    assert done(ann, [second.id, uuid.uuid4()]) == {second.id: ([], False)}
    assert done(ann, []) == {}
    assert done(Scope.operator([elsewhere], "ann")) == {}
    assert done(Scope.admin("bob")) == {}
    assert done(UNRESTRICTED) == {}


def test_settle_marks_files_deleted_once_none_of_the_videos_keys_is_queued(world):
    mall = world.mall()
    cleared, waiting, kept, untouched = (world.video(mall) for _ in range(4))

    def delete_all(uow):
        for video, outcome, reason in (
            (cleared, "files_queued", "request"),
            (waiting, "files_queued", "retention"),
            (kept, "files_kept", "request"),
            (untouched, "files_queued", "request"),
        ):
            uow.audit.record([uow.removal.delete(UNRESTRICTED, video.id)], reason, outcome)
        uow.deletions.enqueue([queued_key(waiting.original_path, waiting.id, mall)], T0)
        uow.deletions.enqueue([queued_key(untouched.original_path, untouched.id, mall)], T0)

    world.write(delete_all)
    every = [cleared.id, waiting.id, kept.id]
    world.write(lambda uow: uow.audit.settle(iter(every)))

    assert world.outcomes(cleared.id) == [("request", "files_deleted")]
    assert world.outcomes(waiting.id) == [("retention", "files_pending")]
    assert world.outcomes(kept.id) == [("request", "files_kept")]
    assert world.outcomes(untouched.id) == [("request", "files_queued")]

    waiting_id = next(r.id for r in world.queued() if r.video_id == waiting.id)
    world.write(lambda uow: uow.deletions.complete([waiting_id]))
    world.write(lambda uow: uow.audit.settle([waiting.id, waiting.id]))
    world.write(lambda uow: uow.audit.settle([]))

    assert world.outcomes(waiting.id) == [("retention", "files_deleted")]
    assert world.outcomes(untouched.id) == [("request", "files_queued")]


def test_record_writes_the_actor_and_none_when_nobody_was_asked(world):
    mall = world.mall()
    by_alice, by_nobody = world.video(mall), world.video(mall)

    def delete_both(uow):
        uow.audit.record(
            [uow.removal.delete(UNRESTRICTED, by_alice.id)],
            "request",
            "files_kept",
            "task-1",
            actor="alice",
        )
        uow.audit.record(
            [uow.removal.delete(UNRESTRICTED, by_nobody.id)], "retention", "files_kept"
        )

    world.write(delete_both)

    assert [(row.video_id, row.actor) for row in world.audit()] == [
        (by_alice.id, "alice"),
        (by_nobody.id, None),
    ]


# UnitOfWork


def test_leaving_without_commit_persists_nothing(world):
    video = world.video(world.mall())

    with world.uow() as uow:
        gone = uow.removal.delete(UNRESTRICTED, video.id)
        uow.audit.record([gone], "request", "files_queued")
        uow.deletions.enqueue([queued_key(k, video.id) for k in gone.object_keys], T0)
    with pytest.raises(RuntimeError, match="handler failed"), world.uow() as uow:
        uow.removal.delete(UNRESTRICTED, video.id)
        raise RuntimeError("handler failed")

    assert world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, video.id)) == video
    assert (world.queued(), world.audit()) == ([], [])


def test_commit_persists_and_writes_after_it_in_the_same_block_are_rolled_back(world):
    mall = world.mall()
    committed, uncommitted = world.video(mall), world.video(mall)

    with world.uow() as uow:
        uow.removal.delete(UNRESTRICTED, committed.id)
        uow.deletions.enqueue([queued_key("committed")], T0)
        uow.commit()
        uow.removal.delete(UNRESTRICTED, uncommitted.id)
        uow.deletions.enqueue([queued_key("uncommitted")], T0)

    assert world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, committed.id)) is None
    assert world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, uncommitted.id)) == uncommitted
    assert world.queued_keys() == ["committed"]


# ObjectStore


def test_delete_many_deletes_each_key_once_and_a_missing_key_counts_as_deleted(world):
    world.put_object("videos/a.mp4")
    world.put_object("videos/b.mp4")
    world.put_object("videos/kept.mp4")

    report = world.store.delete_many(
        ["videos/a.mp4", "videos/b.mp4", "videos/a.mp4", "videos/missing.mp4"]
    )

    assert report.deleted == ["videos/a.mp4", "videos/b.mp4", "videos/missing.mp4"]
    assert report.failed == {}
    assert world.bucket_keys() == {"videos/kept.mp4"}
    empty = world.store.delete_many([])
    assert (empty.deleted, empty.failed) == ([], {})


def test_delete_many_reports_each_refused_key_with_why_and_deletes_the_rest(world):
    for key in ("protected/a.mp4", "protected/b.mp4", "videos/c.mp4"):
        world.put_object(key)
    world.refuse_deletes_under("protected/")

    report = world.store.delete_many(["protected/a.mp4", "videos/c.mp4", "protected/b.mp4"])

    assert report.deleted == ["videos/c.mp4"]
    assert sorted(report.failed) == ["protected/a.mp4", "protected/b.mp4"]
    assert all(why.startswith("AccessDenied") for why in report.failed.values()), report.failed
    assert world.bucket_keys() == {"protected/a.mp4", "protected/b.mp4"}


def test_presign_get_names_the_key_and_the_expiry(world):
    key = "videos/mall/proxy/clip.mp4"

    url = world.store.presign_get(key, 900, signed_at=T0)

    assert key in url and "X-Amz-Expires=900" in url
    assert "X-Amz-Expires=60" in world.store.presign_get(key, 60)


def test_size_is_the_objects_byte_count_and_none_when_it_is_missing(world):
    world.put_object("videos/five.mp4", b"12345")

    assert world.store.size("videos/five.mp4") == 5
    assert world.store.size("videos/missing.mp4") is None


def test_list_objects_lists_keys_under_a_prefix_in_utf8_byte_order_with_their_times(world):
    for key in ("videos/caf\u00e9.mp4", "videos/Zebra.mp4", "videos/apple.mp4", "other/x.mp4"):
        world.put_object(key)

    listed = list(world.store.list_objects("videos/"))

    assert [key for key, _ in listed] == [
        "videos/Zebra.mp4",
        "videos/apple.mp4",
        "videos/caf\u00e9.mp4",
    ]
    assert all(modified.tzinfo is not None for _, modified in listed)


# StatsCache


def test_cache_answers_what_was_put_per_scope_and_none_on_a_miss(world):
    mall = uuid.uuid4()
    global_figure = stats_of(None, 4, completed=4, storage=4_400, secs=482.0)
    mall_figure = stats_of(mall, 1, pending=1, storage=1_000, secs=1.5)

    assert world.cache.get(None) is None
    world.cache.put([global_figure, mall_figure])
    world.cache.put([])

    assert (world.cache.get(None), world.cache.get(mall)) == (global_figure, mall_figure)
    assert world.cache.get(uuid.uuid4()) is None
    newer = stats_of(mall, 0)
    world.cache.put([newer])
    assert (world.cache.get(None), world.cache.get(mall)) == (global_figure, newer)


def test_mark_dirty_is_true_only_for_the_first_mark_and_take_dirty_claims_and_clears(world):
    mall_a, mall_b = sorted(uuid.uuid4() for _ in range(2))

    assert world.cache.mark_dirty([mall_b]) is True
    assert world.cache.mark_dirty([mall_a, mall_b]) is False
    assert world.cache.mark_dirty(iter([])) is False

    assert world.cache.take_dirty() == (True, [mall_a, mall_b])
    assert world.cache.take_dirty() == (False, [])

    assert world.cache.mark_dirty([]) is True
    assert world.cache.take_dirty() == (True, [])


def test_cache_answers_many_malls_at_once_and_keeps_per_pin_figures_until_forgotten(world):
    mall_a, mall_b, pin_a, pin_b = (uuid.uuid4() for _ in range(4))
    figure_a, figure_b = stats_of(mall_a, 1, completed=1), stats_of(mall_b, 2, failed=2)
    world.cache.put([figure_a, figure_b])

    assert world.cache.get_many([mall_b, uuid.uuid4(), mall_a]) == {
        mall_b: figure_b,
        mall_a: figure_a,
    }
    assert world.cache.get_many([]) == {}

    pin_figure_a, pin_figure_b = stats_of(None, 3, pending=3), stats_of(None, 0)
    assert world.cache.get_pins([pin_a]) == {}
    world.cache.put_pins({pin_a: pin_figure_a, pin_b: pin_figure_b})
    world.cache.put_pins({})
    assert world.cache.get_pins([pin_a, pin_b, uuid.uuid4()]) == {
        pin_a: pin_figure_a,
        pin_b: pin_figure_b,
    }
    # A pin figure is not a mall figure, nor the other way round.
    assert world.cache.get(pin_a) is None and world.cache.get_pins([mall_a]) == {}
    world.cache.forget_pins([pin_a, uuid.uuid4()])
    world.cache.forget_pins([])
    assert world.cache.get_pins([pin_a, pin_b]) == {pin_b: pin_figure_b}


# Publish


def test_published_events_reach_a_listener_in_order_and_unchanged(world):
    received = world.listen()
    deleted = VideoDeleted(
        video_id=uuid.uuid4(),
        mall_id=uuid.uuid4(),
        files_deleted=["videos/a.mp4"],
        files_pending=["thumbnails/a.jpg"],
        at=T0,
    )
    refreshed = StatsRefreshed(mall_id=None, at=T0)

    world.publish(deleted)
    world.publish(refreshed)

    assert received(2) == [deleted, refreshed]


def test_prune_deletes_the_oldest_rows_before_the_cutoff_but_never_pending_ones(world):
    mall = world.mall()
    done, kept, pending = (world.video(mall) for _ in range(3))

    def delete_all(uow):
        for video, outcome in (
            (done, "files_deleted"),
            (kept, "files_kept"),
            (pending, "files_pending"),
        ):
            uow.audit.record([uow.removal.delete(UNRESTRICTED, video.id)], "request", outcome)

    world.write(delete_all)
    long_ago, far_ahead = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)

    assert world.write(lambda uow: uow.audit.prune(long_ago, 10)) == 0
    assert world.write(lambda uow: uow.audit.prune(far_ahead, 1)) == 1
    assert world.write(lambda uow: uow.audit.prune(far_ahead, 10)) == 1
    assert world.write(lambda uow: uow.audit.prune(far_ahead, 10)) == 0
    assert [row.video_id for row in world.audit()] == [pending.id]
