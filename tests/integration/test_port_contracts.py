"""One contract per port, run on the in-memory fakes and on the real adapters.

Every test takes ``world`` and runs twice: ``[fake]`` on ``tests/unit/fakes.py`` (no
service is started for it) and ``[real]`` on PostgreSQL, HTTP S3 and Redis as
``worker.bootstrap.build_deps`` wires them. Unit tests of the handlers trust the fakes;
these tests are what makes that trust hold.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from uuid import UUID

import pytest

from handlers.access import UNRESTRICTED, Scope
from handlers.ports import QueuedKey, RemovedVideo, RetentionScope
from schemas.events import StatsRefreshed, VideoDeleted
from schemas.requests import ListVideos
from schemas.responses import StatusCounts, VideoListItem, VideoStats
from tests.contracts.world import AuditRow, World, world_of
from tests.unit.fakes import T0


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    return world_of(request)


def listed(world: World, **query) -> tuple[list[UUID], int]:
    items, total = world.read(lambda uow: uow.videos.list(UNRESTRICTED, ListVideos(**query)))
    return [item.id for item in items], total


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


# VideoRepository


def test_list_applies_each_filter_and_combines_them_with_and(world):
    mall_a, mall_b = world.mall(), world.mall()
    pin_a1, pin_a2 = world.pin(mall_a, "A1"), world.pin(mall_a, "A2")
    done = world.video(mall_a, pin_a1, uploaded_at=T0 - timedelta(hours=1))
    raw = world.video(mall_a, pin_a2, proxy=False, uploaded_at=T0 - timedelta(hours=2))
    failed = world.video(
        mall_a, pin_a1, proxy=False, processing_status="failed", uploaded_at=T0 - timedelta(hours=3)
    )
    elsewhere = world.video(mall_b, uploaded_at=T0 - timedelta(hours=4))

    cases = {
        (): [done, raw, failed, elsewhere],
        (("mall_id", mall_a),): [done, raw, failed],
        (("pin_id", pin_a1),): [done, failed],
        (("processing_status", "failed"),): [failed],
        (("has_proxy", True),): [done, elsewhere],
        (("has_proxy", False),): [raw, failed],
        (("mall_id", mall_a), ("has_proxy", True)): [done],
        (("pin_id", pin_a1), ("processing_status", "pending")): [],
        (("mall_id", mall_b), ("pin_id", pin_a1)): [],
    }
    for filters, expected in cases.items():
        assert listed(world, **dict(filters)) == ([v.id for v in expected], len(expected)), filters


def test_list_items_carry_the_pins_name_and_what_files_exist_newest_first_then_by_id(world):
    mall = world.mall()
    pin = world.pin(mall, "Food court")
    same_time = T0 - timedelta(hours=1)
    tied = [world.video(mall, pin, id=uuid.uuid4(), uploaded_at=same_time) for _ in range(3)]
    newest = world.video(mall, pin, proxy=False, thumbnail=False, uploaded_at=T0)
    oldest = world.video(mall, pin, thumbnail=False, uploaded_at=T0 - timedelta(days=3))

    items, total = world.read(lambda uow: uow.videos.list(UNRESTRICTED, ListVideos()))

    tied_by_id_desc = sorted(tied, key=lambda v: v.id, reverse=True)
    expected = [
        VideoListItem(
            **v.model_dump(include=set(VideoListItem.model_fields)),
            has_proxy=v.proxy_path is not None,
            has_thumbnail=v.thumbnail_path is not None,
        ).with_files(
            {"original": v.original_path, "proxy": v.proxy_path, "thumbnail": v.thumbnail_path}
        )
        for v in [newest, *tied_by_id_desc, oldest]
    ]
    assert (items, total) == (expected, 5)
    assert {item.pin_name for item in items} == {"Food court"}
    assert (items[0].has_proxy, items[0].has_thumbnail) == (False, False)
    assert (items[-1].has_proxy, items[-1].has_thumbnail) == (True, False)


def test_list_date_range_is_half_open(world):
    mall = world.mall()
    at = {hour: world.video(mall, uploaded_at=T0 + timedelta(hours=hour)) for hour in (0, 1, 2)}

    window = {"uploaded_after": T0, "uploaded_before": T0 + timedelta(hours=2)}
    assert listed(world, **window) == ([at[1].id, at[0].id], 2)
    assert listed(world, uploaded_after=T0 + timedelta(hours=1)) == ([at[2].id, at[1].id], 2)
    assert listed(world, uploaded_before=T0 + timedelta(hours=1)) == ([at[0].id], 1)


def test_list_pages_keep_the_true_total_and_a_page_past_the_end_is_empty(world):
    mall = world.mall()
    videos = [world.video(mall, uploaded_at=T0 - timedelta(minutes=i)) for i in range(5)]
    newest_first = [v.id for v in videos]

    assert listed(world, page=1, page_size=2) == (newest_first[0:2], 5)
    assert listed(world, page=3, page_size=2) == (newest_first[4:5], 5)
    assert listed(world, page=4, page_size=2) == ([], 5)
    assert listed(world, mall_id=uuid.uuid4(), page=2) == ([], 0)


def test_get_answers_every_column_with_the_pins_name_and_none_for_an_unknown_id(world):
    mall = world.mall()
    pin = world.pin(mall, "Parking P2")
    video = world.video(
        mall,
        pin,
        proxy=False,
        processing_status="failed",
        processing_error="ffmpeg exited 1",
        processing_job_id=uuid.uuid4(),
        operator_notes="camera moved",
        duration_seconds=None,
    )

    assert world.read(lambda uow: uow.videos.get(UNRESTRICTED, video.id)) == video
    assert video.pin_name == "Parking P2"
    assert world.read(lambda uow: uow.videos.get(UNRESTRICTED, uuid.uuid4())) is None


def test_delete_returns_the_rows_keys_once_and_a_second_delete_returns_none(world):
    mall = world.mall()
    full = world.video(mall)
    original_only = world.video(mall, proxy=False, thumbnail=False)

    first = world.write(lambda uow: uow.videos.delete(UNRESTRICTED, full.id))
    assert first == removed(full)
    assert first.object_keys == [full.original_path, full.proxy_path, full.thumbnail_path]
    bare = world.write(lambda uow: uow.videos.delete(UNRESTRICTED, original_only.id))
    assert bare.object_keys == [original_only.original_path]

    assert world.write(lambda uow: uow.videos.delete(UNRESTRICTED, full.id)) is None
    assert world.read(lambda uow: uow.videos.get(UNRESTRICTED, full.id)) is None


def test_delete_expired_takes_the_oldest_of_the_mall_up_to_the_limit_skipping_legal_holds(world):
    mall, other = world.mall(), world.mall()
    cutoff = T0 - timedelta(days=30)
    by_age = [world.video(mall, uploaded_at=cutoff - timedelta(days=d)) for d in (1, 3, 2, 5)]
    held = world.video(mall, uploaded_at=cutoff - timedelta(days=10), legal_hold=True)
    at_cutoff = world.video(mall, uploaded_at=cutoff)
    other_mall = world.video(other, uploaded_at=cutoff - timedelta(days=9))
    scope = RetentionScope(mall_id=mall, cutoff=cutoff)

    oldest_two = world.write(lambda uow: uow.videos.delete_expired(UNRESTRICTED, scope, 2))
    rest = world.write(lambda uow: uow.videos.delete_expired(UNRESTRICTED, scope, 10))
    nothing_left = world.write(lambda uow: uow.videos.delete_expired(UNRESTRICTED, scope, 10))

    # The batch is the oldest rows; the order within a batch is not part of the port.
    assert {r.id for r in oldest_two} == {by_age[3].id, by_age[1].id}
    assert {r.id for r in rest} == {by_age[2].id, by_age[0].id}
    assert sorted(rest, key=lambda r: str(r.id)) == sorted(
        (removed(by_age[2]), removed(by_age[0])), key=lambda r: str(r.id)
    )
    assert nothing_left == []
    remaining, _ = listed(world, page_size=100)
    assert set(remaining) == {held.id, at_cutoff.id, other_mall.id}


def test_summarise_expired_counts_what_delete_expired_takes_and_its_original_and_proxy_bytes(
    world,
):
    mall, other = world.mall(), world.mall()
    cutoff = T0 - timedelta(days=30)
    old = cutoff - timedelta(days=1)
    world.video(mall, uploaded_at=old, file_size_bytes=1_000, proxy_size_bytes=100)
    world.video(mall, uploaded_at=old, file_size_bytes=2_000, proxy=False)
    world.video(mall, uploaded_at=old, file_size_bytes=50_000, legal_hold=True)
    world.video(mall, uploaded_at=cutoff, file_size_bytes=70_000)
    world.video(other, uploaded_at=old, file_size_bytes=90_000)
    scope = RetentionScope(mall_id=mall, cutoff=cutoff)

    summary = world.read(lambda uow: uow.videos.summarise_expired(UNRESTRICTED, scope))
    assert (summary.count, summary.bytes) == (2, 3_100)
    assert (
        len(world.write(lambda uow: uow.videos.delete_expired(UNRESTRICTED, scope, 100)))
        == summary.count
    )
    empty = world.read(lambda uow: uow.videos.summarise_expired(UNRESTRICTED, scope))
    assert (empty.count, empty.bytes) == (0, 0)


def test_mall_retention_days_lists_every_mall_or_one_with_none_where_it_has_no_period(world):
    own_period = world.mall(retention_days=7)
    default_period = world.mall()
    without_videos = world.mall(retention_days=400)
    world.video(own_period)
    world.video(default_period)

    every = world.read(lambda uow: uow.videos.mall_retention_days(None))
    assert sorted(every) == sorted([(own_period, 7), (default_period, None), (without_videos, 400)])
    assert world.read(lambda uow: uow.videos.mall_retention_days(default_period)) == [
        (default_period, None)
    ]
    assert world.read(lambda uow: uow.videos.mall_retention_days(without_videos)) == [
        (without_videos, 400)
    ]
    assert world.read(lambda uow: uow.videos.mall_retention_days(uuid.uuid4())) == []


def test_referenced_keys_finds_keys_in_each_path_column_of_live_rows_only(world):
    mall = world.mall()
    video = world.video(mall)
    shared_thumbnail = world.video(mall, proxy=False, thumbnail_path=video.thumbnail_path)
    gone = world.video(mall)
    world.write(lambda uow: uow.videos.delete(UNRESTRICTED, gone.id))
    asked = [
        video.original_path,
        video.proxy_path,
        video.thumbnail_path,
        video.thumbnail_path,
        shared_thumbnail.original_path,
        gone.original_path,
        gone.thumbnail_path,
        "videos/never-stored.mp4",
    ]

    found = world.read(lambda uow: uow.videos.referenced_keys(asked))

    assert found == {
        video.original_path,
        video.proxy_path,
        video.thumbnail_path,
        shared_thumbnail.original_path,
    }
    assert world.read(lambda uow: uow.videos.referenced_keys([])) == set()
    world.write(lambda uow: uow.videos.delete(UNRESTRICTED, video.id))
    # The shared thumbnail is still held by the other row.
    assert world.read(lambda uow: uow.videos.referenced_keys([video.thumbnail_path])) == {
        video.thumbnail_path
    }


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


def test_stats_count_each_status_and_storage_is_originals_plus_proxies(world):
    mall_a, mall_b = world.mall(), world.mall()
    world.video(mall_a, file_size_bytes=1_000, proxy_size_bytes=100, duration_seconds=60.5)
    world.video(mall_a, proxy=False, file_size_bytes=2_000, duration_seconds=None)
    world.video(mall_a, proxy=False, processing_status="processing", file_size_bytes=3_000)
    world.video(mall_b, processing_status="failed", file_size_bytes=4_000, proxy_size_bytes=400)

    def read(mall_id):
        return world.read(lambda uow: uow.videos.stats(UNRESTRICTED, mall_id, T0))

    assert read(mall_a) == stats_of(
        mall_a, 3, pending=1, processing=1, completed=1, storage=6_100, secs=181.0
    )
    assert read(mall_b) == stats_of(mall_b, 1, failed=1, storage=4_400, secs=120.5)
    assert read(None) == stats_of(
        None, 4, pending=1, processing=1, completed=1, failed=1, storage=10_500, secs=301.5
    )
    assert read(uuid.uuid4()).total_videos == 0


def test_stats_per_mall_gives_every_mall_its_figure_and_a_mall_with_no_video_left_zeros(world):
    kept, emptied, never_used = world.mall(), world.mall(), world.mall()
    world.video(kept, file_size_bytes=1_000, proxy_size_bytes=100)
    last = world.video(emptied)
    world.write(lambda uow: uow.videos.delete(UNRESTRICTED, last.id))

    per_mall = world.read(lambda uow: uow.videos.stats_per_mall(T0))

    assert sorted(per_mall, key=lambda s: s.mall_id) == sorted(
        [
            stats_of(kept, 1, completed=1, storage=1_100, secs=120.5),
            stats_of(emptied, 0),
            stats_of(never_used, 0),
        ],
        key=lambda s: s.mall_id,
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


# DeletionAuditLog


def test_record_then_find_by_video_and_request_id_with_the_keys_still_queued(world):
    mall = world.mall()
    video = world.video(mall)
    other = world.video(mall, proxy=False, thumbnail=False)

    def delete_and_queue(uow):
        gone = [
            uow.videos.delete(UNRESTRICTED, video.id),
            uow.videos.delete(UNRESTRICTED, other.id),
        ]
        uow.audit.record(gone, "request", "files_queued", request_id="task-1")
        uow.deletions.enqueue([queued_key(k, video.id, mall) for k in gone[0].object_keys], T0)
        uow.audit.record([], "request", "files_queued", request_id="task-1")

    world.write(delete_and_queue)
    ids = [row.id for row in world.queued()]
    world.write(lambda uow: uow.deletions.complete([ids[0]]))

    found = world.read(lambda uow: uow.audit.find(video.id, "task-1"))
    assert (found.video_id, found.object_keys, found.files_kept) == (
        video.id,
        [video.original_path, video.proxy_path, video.thumbnail_path],
        False,
    )
    assert sorted(found.still_queued) == sorted([video.proxy_path, video.thumbnail_path])
    assert world.read(lambda uow: uow.audit.find(other.id, "task-1")).still_queued == []
    assert world.read(lambda uow: uow.audit.find(video.id, "task-2")) is None
    assert world.read(lambda uow: uow.audit.find(uuid.uuid4(), "task-1")) is None
    assert world.audit() == [
        row_of(video, "files_queued", "task-1"),
        row_of(other, "files_queued", "task-1"),
    ]


def row_of(video, outcome, request_id=None, reason="request"):
    return AuditRow(
        video.id, video.mall_id, reason, removed(video).object_keys, outcome, request_id
    )


def test_find_tells_a_deletion_that_kept_its_files(world):
    video = world.video(world.mall())

    def delete_keeping_files(uow):
        uow.audit.record(
            [uow.videos.delete(UNRESTRICTED, video.id)], "request", "files_kept", "task-9"
        )

    world.write(delete_keeping_files)

    found = world.read(lambda uow: uow.audit.find(video.id, "task-9"))
    assert (found.files_kept, found.still_queued) == (True, [])
    assert world.audit() == [row_of(video, "files_kept", "task-9")]


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
            uow.audit.record([uow.videos.delete(UNRESTRICTED, video.id)], reason, outcome)
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


# UnitOfWork


def test_leaving_without_commit_persists_nothing(world):
    video = world.video(world.mall())

    with world.uow() as uow:
        gone = uow.videos.delete(UNRESTRICTED, video.id)
        uow.audit.record([gone], "request", "files_queued")
        uow.deletions.enqueue([queued_key(k, video.id) for k in gone.object_keys], T0)
    with pytest.raises(RuntimeError, match="handler failed"), world.uow() as uow:
        uow.videos.delete(UNRESTRICTED, video.id)
        raise RuntimeError("handler failed")

    assert world.read(lambda uow: uow.videos.get(UNRESTRICTED, video.id)) == video
    assert (world.queued(), world.audit()) == ([], [])


def test_commit_persists_and_writes_after_it_in_the_same_block_are_rolled_back(world):
    mall = world.mall()
    committed, uncommitted = world.video(mall), world.video(mall)

    with world.uow() as uow:
        uow.videos.delete(UNRESTRICTED, committed.id)
        uow.deletions.enqueue([queued_key("committed")], T0)
        uow.commit()
        uow.videos.delete(UNRESTRICTED, uncommitted.id)
        uow.deletions.enqueue([queued_key("uncommitted")], T0)

    assert world.read(lambda uow: uow.videos.get(UNRESTRICTED, committed.id)) is None
    assert world.read(lambda uow: uow.videos.get(UNRESTRICTED, uncommitted.id)) == uncommitted
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


# Reconcile and retention rules


def test_referenced_keys_in_order_streams_each_key_once_in_utf8_byte_order(world):
    mall = world.mall()
    shared = "thumbnails/shared.jpg"
    world.video(mall, original_path="videos/Zebra.mp4", proxy_path=None, thumbnail_path=shared)
    world.video(mall, original_path="videos/caf\u00e9.mp4", proxy_path=None, thumbnail_path=shared)
    world.video(mall, original_path="videos/apple.mp4", proxy_path="videos/apple-480.mp4")

    every = world.read(lambda uow: list(uow.videos.referenced_keys_in_order()))
    under = world.read(lambda uow: list(uow.videos.referenced_keys_in_order("videos/a")))

    assert every == sorted(set(every), key=lambda key: key.encode("utf-8"))
    assert every.count(shared) == 1
    assert every.index("videos/Zebra.mp4") < every.index("videos/apple.mp4")
    assert every.index("videos/apple.mp4") < every.index("videos/caf\u00e9.mp4")
    assert under == ["videos/apple-480.mp4", "videos/apple.mp4"]


def test_set_and_clear_mall_retention_say_whether_there_was_a_mall_or_a_period(world):
    mall = world.mall()

    assert world.write(lambda uow: uow.videos.set_mall_retention(mall, 30)) is True
    assert world.write(lambda uow: uow.videos.set_mall_retention(mall, 40)) is True
    assert world.read(lambda uow: uow.videos.mall_retention_days(mall)) == [(mall, 40)]
    assert world.write(lambda uow: uow.videos.set_mall_retention(uuid.uuid4(), 30)) is False
    assert world.write(lambda uow: uow.videos.clear_mall_retention(mall)) is True
    assert world.write(lambda uow: uow.videos.clear_mall_retention(mall)) is False
    assert world.read(lambda uow: uow.videos.mall_retention_days(mall)) == [(mall, None)]


def test_a_held_video_is_never_expired_until_released(world):
    mall = world.mall()
    old = world.video(mall, uploaded_at=T0 - timedelta(days=400))
    scope = RetentionScope(mall_id=mall, cutoff=T0)

    assert world.write(lambda uow: uow.videos.set_legal_hold(old.id, True)) is True
    assert world.read(lambda uow: uow.videos.summarise_expired(UNRESTRICTED, scope)).count == 0
    assert world.write(lambda uow: uow.videos.set_legal_hold(old.id, False)) is True
    assert world.read(lambda uow: uow.videos.summarise_expired(UNRESTRICTED, scope)).count == 1
    assert world.write(lambda uow: uow.videos.set_legal_hold(uuid.uuid4(), True)) is False


def test_queued_among_names_only_the_keys_waiting_in_the_queue(world):
    world.write(
        lambda uow: uow.deletions.enqueue(
            [QueuedKey("videos/a.mp4", None, None, "reconcile")], not_before=T0
        )
    )

    found = world.read(lambda uow: uow.deletions.queued_among(["videos/a.mp4", "videos/b.mp4"]))

    assert found == {"videos/a.mp4"}
    assert world.read(lambda uow: uow.deletions.queued_among([])) == set()


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


# Access scope: the query builder's filter on every read and every delete


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


def test_list_get_and_delete_see_only_the_scopes_videos_and_filters_intersect_it(world):
    mall_a, mall_b, (pin_a1, pin_a2, pin_b1), v = scoped_world(world)
    operator_a = Scope.operator([mall_a], subject="alice")
    tenant_a1 = Scope.tenant([pin_a1], subject="tom")

    def ids(scope, **query):
        items, total = world.read(lambda uow: uow.videos.list(scope, ListVideos(**query)))
        return [item.id for item in items], total

    assert ids(operator_a) == ([v["a1"].id, v["a1_old"].id, v["a2"].id], 3)
    assert ids(operator_a, mall_id=mall_b) == ([], 0)
    assert ids(operator_a, pin_id=pin_a2) == ([v["a2"].id], 1)
    assert ids(tenant_a1) == ([v["a1"].id, v["a1_old"].id], 2)
    assert ids(tenant_a1, mall_id=mall_a, has_proxy=False) == ([v["a1_old"].id], 1)
    assert ids(tenant_a1, pin_id=pin_b1) == ([], 0)
    assert ids(Scope.operator([])) == ([], 0)
    assert ids(Scope.tenant([])) == ([], 0)
    assert ids(Scope.admin("root"))[1] == 4

    assert world.read(lambda uow: uow.videos.get(operator_a, v["a2"].id)) == v["a2"]
    assert world.read(lambda uow: uow.videos.get(operator_a, v["b1"].id)) is None
    assert world.read(lambda uow: uow.videos.get(tenant_a1, v["a2"].id)) is None

    assert world.write(lambda uow: uow.videos.delete(operator_a, v["b1"].id)) is None
    assert world.write(lambda uow: uow.videos.delete(tenant_a1, v["a2"].id)) is None
    assert world.read(lambda uow: uow.videos.get(UNRESTRICTED, v["b1"].id)) == v["b1"]
    gone = world.write(lambda uow: uow.videos.delete(operator_a, v["a2"].id))
    assert gone == removed(v["a2"]) and gone.pin_id == pin_a2


def test_sweeps_and_their_summaries_take_only_what_the_scope_sees(world):
    mall = world.mall()
    kept_pin, swept_pin = world.pin(mall), world.pin(mall)
    old = T0 - timedelta(days=400)
    world.video(mall, kept_pin, uploaded_at=old, file_size_bytes=5_000)
    swept = world.video(mall, swept_pin, uploaded_at=old, file_size_bytes=1_000)
    retention = RetentionScope(mall_id=mall, cutoff=T0)
    tenant = Scope.tenant([swept_pin])

    summary = world.read(lambda uow: uow.videos.summarise_expired(tenant, retention))
    assert (summary.count, summary.bytes) == (1, 1_100)
    assert world.read(
        lambda uow: uow.videos.summarise_expired(Scope.operator([uuid.uuid4()]), retention)
    ) == type(summary)(count=0, bytes=0)
    batch = world.write(lambda uow: uow.videos.delete_expired(tenant, retention, 10))
    assert [r.id for r in batch] == [swept.id]
    assert world.read(lambda uow: uow.videos.summarise_expired(UNRESTRICTED, retention)).count == 1


def test_stats_cover_what_the_scope_sees_and_per_pin_figures_zero_for_a_pin_with_none(world):
    mall_a, mall_b, (pin_a1, pin_a2, pin_b1), v = scoped_world(world)
    empty_pin = world.pin(mall_a, "empty")

    def stats(scope, mall_id=None):
        return world.read(lambda uow: uow.videos.stats(scope, mall_id, T0))

    operator_a = Scope.operator([mall_a])
    assert stats(operator_a) == stats(UNRESTRICTED, mall_a).model_copy(update={"mall_id": None})
    assert stats(operator_a, mall_b).total_videos == 0
    tenant = Scope.tenant([pin_a1, pin_b1])
    assert stats(tenant).total_videos == 3
    assert stats(tenant, mall_b) == stats(UNRESTRICTED, mall_b)
    assert stats(Scope.tenant([])).total_videos == 0

    per_pin = world.read(
        lambda uow: uow.videos.stats_per_pin(UNRESTRICTED, [pin_a1, empty_pin, pin_a1], T0)
    )
    assert sorted(per_pin) == sorted([pin_a1, empty_pin])
    assert (per_pin[pin_a1].total_videos, per_pin[pin_a1].by_status.pending) == (2, 1)
    assert per_pin[empty_pin] == stats_of(None, 0)
    # A pin outside the scope counts nothing, whatever is asked.
    outside = world.read(lambda uow: uow.videos.stats_per_pin(Scope.tenant([pin_a2]), [pin_a1], T0))
    assert outside == {pin_a1: stats_of(None, 0)}
    assert world.read(lambda uow: uow.videos.stats_per_pin(UNRESTRICTED, [], T0)) == {}


def test_scoped_reads_equal_an_unscoped_read_filtered_by_the_scope_rule(world):
    """Property-style: random scopes and filters over one catalogue, each scoped answer
    compared with the unscoped answer filtered in Python by ``Scope.sees``."""
    rng = random.Random(20261201)
    malls = [world.mall() for _ in range(3)]
    pins = {mall: [world.pin(mall, f"P{i}") for i in range(2)] for mall in malls}
    every_pin = [pin for mall in malls for pin in pins[mall]]
    catalogue = []
    for index in range(24):
        mall = rng.choice(malls)
        catalogue.append(
            world.video(
                mall,
                rng.choice(pins[mall]),
                uploaded_at=T0 - timedelta(minutes=index * 7 + rng.randrange(5)),
                proxy=rng.random() < 0.6,
                processing_status=rng.choice(["pending", "processing", "completed", "failed"]),
            )
        )
    by_id = {video.id: video for video in catalogue}

    def random_scope() -> Scope:
        role = rng.choice(["admin", "operator", "tenant"])
        if role == "operator":
            return Scope.operator(rng.sample(malls + [uuid.uuid4()], rng.randrange(0, 4)))
        if role == "tenant":
            return Scope.tenant(rng.sample(every_pin + [uuid.uuid4()], rng.randrange(0, 5)))
        return Scope.admin()

    def random_query() -> dict:
        query: dict = {"page_size": 100}
        if rng.random() < 0.4:
            query["mall_id"] = rng.choice(malls)
        if rng.random() < 0.3:
            query["pin_id"] = rng.choice(every_pin)
        if rng.random() < 0.3:
            query["has_proxy"] = rng.random() < 0.5
        if rng.random() < 0.3:
            query["processing_status"] = rng.choice(["pending", "completed", "failed"])
        return query

    for _ in range(40):
        scope, query = random_scope(), random_query()
        everything, _ = world.read(
            lambda uow, q=query: uow.videos.list(UNRESTRICTED, ListVideos(**q))
        )
        expected = [i.id for i in everything if scope.sees(i.mall_id, i.pin_id)]
        items, total = world.read(lambda uow, s=scope, q=query: uow.videos.list(s, ListVideos(**q)))
        assert ([i.id for i in items], total) == (expected, len(expected)), (scope, query)

        video = rng.choice(catalogue)
        got = world.read(lambda uow, s=scope, v=video: uow.videos.get(s, v.id))
        assert (got is not None) == scope.sees(video.mall_id, video.pin_id), (scope, video.id)

        mall_filter = query.get("mall_id")
        figure = world.read(lambda uow, s=scope, m=mall_filter: uow.videos.stats(s, m, T0))
        seen = [
            v
            for v in by_id.values()
            if scope.sees(v.mall_id, v.pin_id) and (mall_filter is None or v.mall_id == mall_filter)
        ]
        assert figure.total_videos == len(seen), (scope, mall_filter)
        assert figure.total_storage_bytes == sum(
            v.file_size_bytes + (v.proxy_size_bytes or 0) for v in seen
        )


def test_record_writes_the_actor_and_none_when_nobody_was_asked(world):
    mall = world.mall()
    by_alice, by_nobody = world.video(mall), world.video(mall)

    def delete_both(uow):
        uow.audit.record(
            [uow.videos.delete(UNRESTRICTED, by_alice.id)],
            "request",
            "files_kept",
            "task-1",
            actor="alice",
        )
        uow.audit.record([uow.videos.delete(UNRESTRICTED, by_nobody.id)], "retention", "files_kept")

    world.write(delete_both)

    assert [(row.video_id, row.actor) for row in world.audit()] == [
        (by_alice.id, "alice"),
        (by_nobody.id, None),
    ]


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
