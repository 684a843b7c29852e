"""delete_video, purge_storage, sweep_retention and retry_delay on fakes."""

from __future__ import annotations

import dataclasses
import random
import uuid
from datetime import timedelta

import pytest

from handlers import NotFound, delete_video, purge_storage, sweep_retention
from handlers.access import Scope
from handlers.deletion import RETRY_CAP_SECONDS, delete_message, retry_delay
from handlers.policy import Policy
from schemas import DeleteVideo, PurgeStorage, SweepRetention, VideoDeleted
from tests.unit.fakes import T0, FakeObjectStore, Fakes, make_video, object_keys


class EdgeRandom:
    """Jitter pinned to one end of its range, so the bounds can be asserted exactly."""

    def __init__(self, pick_high: bool) -> None:
        self.pick_high = pick_high

    def uniform(self, low: float, high: float) -> float:
        return high if self.pick_high else low


def one_video(**fields) -> tuple[Fakes, object]:
    fakes = Fakes()
    video = make_video(**fields)
    fakes.add_videos(video)
    return fakes, video


# --- delete_video -----------------------------------------------------------------------


def test_delete_message_texts():
    assert delete_message(3, 0) == "Video deleted successfully. 3 file(s) removed from storage."
    assert delete_message(0, 0) == "Video deleted successfully. 0 file(s) removed from storage."
    assert delete_message(2, 1) == (
        "Video deleted successfully. 2 file(s) removed from storage. 1 file(s) queued for retry."
    )


def test_delete_removes_the_row_all_three_objects_and_leaves_nothing_queued():
    fakes, video = one_video()
    keys = object_keys(video)

    result = delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)

    assert result.video_id == video.id
    assert result.deleted is True
    assert result.files_deleted == keys
    assert result.files_pending == []
    assert result.message == "Video deleted successfully. 3 file(s) removed from storage."
    assert fakes.uow.videos.rows.get(video.id) is None
    assert not any(key in fakes.store.objects for key in keys)
    assert fakes.uow.deletions.pending() == 0


def test_objects_are_removed_only_after_the_row_delete_and_the_enqueue_have_committed():
    fakes, video = one_video()
    seen_at_delete_time = []

    class WatchingStore(FakeObjectStore):
        def delete_many(self, keys):
            seen_at_delete_time.append(
                (fakes.uow.videos.rows.get(video.id), sorted(fakes.uow.deletions.keys()))
            )
            return super().delete_many(keys)

    fakes.store = WatchingStore(fakes.store.objects)

    delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)

    assert seen_at_delete_time == [(None, sorted(object_keys(video)))]


def test_inline_deletion_is_queued_with_the_purge_grace_period():
    fakes, video = one_video()
    fakes.policy = dataclasses.replace(fakes.policy, purge_grace_seconds=120)
    queued_at_delete_time = []

    class WatchingStore(FakeObjectStore):
        def delete_many(self, keys):
            queued_at_delete_time.extend(
                (e.reason, e.video_id, e.mall_id, e.next_attempt_at)
                for e in fakes.uow.deletions.entries.values()
            )
            return super().delete_many(keys)

    fakes.store = WatchingStore(fakes.store.objects)

    delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)

    assert (
        queued_at_delete_time
        == [("request", video.id, video.mall_id, T0 + timedelta(minutes=2))] * 3
    )


def test_delete_publishes_video_deleted_after_the_work():
    fakes, video = one_video()

    delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)

    assert fakes.publisher.events == [
        VideoDeleted(
            video_id=video.id,
            mall_id=video.mall_id,
            files_deleted=object_keys(video),
            files_pending=[],
            at=T0,
        )
    ]


def test_delete_with_failing_keys_reports_them_pending_and_keeps_them_queued_with_backoff():
    fakes, video = one_video()
    original, proxy, thumbnail = object_keys(video)
    fakes.store.fail(thumbnail, error="AccessDenied: Access Denied")

    result = delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)

    assert result.files_deleted == [original, proxy]
    assert result.files_pending == [thumbnail]
    assert result.message == (
        "Video deleted successfully. 2 file(s) removed from storage. 1 file(s) queued for retry."
    )
    assert fakes.uow.videos.rows.get(video.id) is None
    assert thumbnail in fakes.store.objects
    [entry] = fakes.uow.deletions.entries.values()
    assert (entry.object_key, entry.attempts, entry.last_error) == (
        thumbnail,
        1,
        "AccessDenied: Access Denied",
    )
    # retry_delay(1): 30 s with jitter between half and all of it.
    assert T0 + timedelta(seconds=15) <= entry.next_attempt_at <= T0 + timedelta(seconds=30)
    assert fakes.publisher.events[0].files_pending == [thumbnail]


def test_delete_while_storage_is_unavailable_still_deletes_the_row_and_queues_every_key():
    fakes, video = one_video()
    fakes.store.unavailable = True

    result = delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)

    assert result.deleted is True
    assert result.files_deleted == []
    assert result.files_pending == object_keys(video)
    assert result.message == (
        "Video deleted successfully. 0 file(s) removed from storage. 3 file(s) queued for retry."
    )
    assert fakes.uow.videos.rows.get(video.id) is None
    assert sorted(fakes.uow.deletions.keys()) == sorted(object_keys(video))
    assert all(e.attempts == 1 for e in fakes.uow.deletions.entries.values())
    assert all(
        e.last_error == "EndpointConnectionError" for e in fakes.uow.deletions.entries.values()
    )


def test_delete_with_delete_files_false_keeps_objects_and_queues_nothing():
    fakes, video = one_video()

    result = delete_video(DeleteVideo(video_id=str(video.id), delete_files=False), fakes.deps)

    assert (result.deleted, result.files_deleted, result.files_pending) == (True, [], [])
    assert result.message == "Video deleted successfully. 0 file(s) removed from storage."
    assert fakes.uow.videos.rows.get(video.id) is None
    assert fakes.store.delete_calls == []
    assert fakes.uow.deletions.pending() == 0
    assert all(key in fakes.store.objects for key in object_keys(video))


def test_delete_of_a_video_without_proxy_or_thumbnail_removes_only_the_original():
    fakes, video = one_video(proxy_path=None, proxy_size_bytes=None, thumbnail_path=None)

    result = delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)

    assert result.files_deleted == [video.original_path]
    assert result.message == "Video deleted successfully. 1 file(s) removed from storage."


def test_delete_of_an_unknown_video_is_not_found_and_changes_nothing():
    fakes, video = one_video()
    missing = uuid.uuid4()

    with pytest.raises(NotFound) as raised:
        delete_video(DeleteVideo(video_id=str(missing)), fakes.deps)

    assert raised.value.detail == f"Video {missing} not found"
    assert fakes.uow.committed is False
    assert fakes.uow.videos.rows.get(video.id) == video
    assert fakes.store.delete_calls == []
    assert fakes.publisher.events == []


def test_a_second_delete_of_the_same_video_is_not_found():
    fakes, video = one_video()
    delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)

    with pytest.raises(NotFound, match=f"^Video {video.id} not found$"):
        delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)


def test_delete_writes_an_audit_row_settled_by_the_outcome():
    fakes, video = one_video()
    kept_fakes, kept_video = one_video()
    failing_fakes, failing_video = one_video()
    failing_fakes.store.fail(failing_video.proxy_path)

    delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)
    delete_video(DeleteVideo(video_id=str(kept_video.id), delete_files=False), kept_fakes.deps)
    delete_video(DeleteVideo(video_id=str(failing_video.id)), failing_fakes.deps)

    assert fakes.uow.audit.outcome_of(video.id) == [("request", "files_deleted")]
    assert kept_fakes.uow.audit.outcome_of(kept_video.id) == [("request", "files_kept")]
    assert failing_fakes.uow.audit.outcome_of(failing_video.id) == [("request", "files_pending")]
    assert fakes.uow.audit.entries[0].object_keys == object_keys(video)


def test_a_key_another_video_still_references_is_neither_queued_nor_removed():
    fakes = Fakes()
    shared_thumbnail = "thumbnails/shared.jpg"
    doomed = make_video(thumbnail_path=shared_thumbnail)
    sibling = make_video(thumbnail_path=shared_thumbnail)
    fakes.add_videos(doomed, sibling)

    result = delete_video(DeleteVideo(video_id=str(doomed.id)), fakes.deps)

    assert result.files_deleted == [doomed.original_path, doomed.proxy_path]
    assert result.files_pending == []
    assert result.message == "Video deleted successfully. 2 file(s) removed from storage."
    assert shared_thumbnail in fakes.store.objects
    assert shared_thumbnail not in fakes.store.delete_calls[0]


def test_deletes_mark_stats_stale_and_queue_one_debounced_flush():
    fakes = Fakes(policy=Policy(stats_debounce_seconds=7.5))
    first, second = make_video(), make_video()
    fakes.add_videos(first, second)

    delete_video(DeleteVideo(video_id=str(first.id)), fakes.deps)
    delete_video(DeleteVideo(video_id=str(second.id)), fakes.deps)

    assert fakes.cache.dirty == {None, first.mall_id, second.mall_id}
    assert fakes.enqueue.calls == [("videos.flush_stale_stats", {}, 7.5)]


# --- purge_storage ----------------------------------------------------------------------


def queued_after_outage(fakes: Fakes, *videos) -> None:
    """Delete videos while S3 is down, so their keys sit in the queue with attempts=1."""
    fakes.add_videos(*videos)
    fakes.store.unavailable = True
    for video in videos:
        delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)
    fakes.store.unavailable = False


def test_purge_removes_due_keys_and_empties_the_queue():
    fakes = Fakes()
    video = make_video()
    queued_after_outage(fakes, video)
    fakes.clock.advance(timedelta(minutes=1))

    result = purge_storage(PurgeStorage(), fakes.deps)

    assert (result.attempted, result.deleted, result.failed, result.remaining) == (3, 3, 0, 0)
    assert fakes.uow.deletions.pending() == 0
    assert not any(key in fakes.store.objects for key in object_keys(video))


def test_purge_leaves_keys_that_are_not_yet_due():
    fakes = Fakes()
    queued_after_outage(fakes, make_video())

    result = purge_storage(PurgeStorage(), fakes.deps)

    assert (result.attempted, result.deleted, result.remaining) == (0, 0, 3)
    assert len(fakes.store.delete_calls) == 1  # only the inline attempt of the delete


def test_purge_failure_defers_the_key_with_a_longer_backoff_and_records_the_error():
    fakes = Fakes()
    video = make_video()
    queued_after_outage(fakes, video)
    original, proxy, thumbnail = object_keys(video)
    fakes.clock.advance(timedelta(minutes=1))
    fakes.store.fail(proxy, error="SlowDown: Please reduce your request rate.")

    result = purge_storage(PurgeStorage(), fakes.deps)

    assert (result.attempted, result.deleted, result.failed, result.remaining) == (3, 2, 1, 1)
    [entry] = fakes.uow.deletions.entries.values()
    assert (entry.object_key, entry.attempts, entry.last_error) == (
        proxy,
        2,
        "SlowDown: Please reduce your request rate.",
    )
    now = fakes.clock.now
    # retry_delay(2): one minute with jitter.
    assert now + timedelta(seconds=30) <= entry.next_attempt_at <= now + timedelta(seconds=60)


def test_purge_while_storage_is_unavailable_keeps_every_key():
    fakes = Fakes()
    queued_after_outage(fakes, make_video())
    fakes.clock.advance(timedelta(minutes=1))
    fakes.store.unavailable = True

    result = purge_storage(PurgeStorage(), fakes.deps)

    assert (result.attempted, result.deleted, result.failed, result.remaining) == (3, 0, 3, 3)
    assert all(e.attempts == 2 for e in fakes.uow.deletions.entries.values())


def test_purge_takes_the_oldest_entries_first_up_to_its_limit():
    fakes = Fakes()
    first, second = make_video(), make_video()
    queued_after_outage(fakes, first, second)
    fakes.clock.advance(timedelta(minutes=1))

    result = purge_storage(PurgeStorage(limit=3), fakes.deps)

    assert fakes.store.delete_calls[-1] == object_keys(first)
    assert (result.deleted, result.remaining) == (3, 3)
    assert sorted(fakes.uow.deletions.keys()) == sorted(object_keys(second))


def test_purge_sends_a_key_queued_twice_once_and_completes_both_entries():
    fakes = Fakes()
    video = make_video()
    queued_after_outage(fakes, video)
    fakes.uow.deletions.entries = {
        queue_id: entry
        for queue_id, entry in fakes.uow.deletions.entries.items()
        if entry.object_key == video.original_path
    }
    [entry] = fakes.uow.deletions.entries.values()
    fakes.uow.deletions.entries[99] = dataclasses.replace(entry, id=99)
    fakes.clock.advance(timedelta(minutes=1))

    result = purge_storage(PurgeStorage(), fakes.deps)

    assert fakes.store.delete_calls[-1] == [video.original_path]
    assert (result.attempted, result.deleted, result.remaining) == (1, 1, 0)


def test_purge_drops_a_key_a_live_row_references_again_without_deleting_it():
    fakes = Fakes()
    video = make_video()
    queued_after_outage(fakes, video)
    # The same upload is registered again before purge runs.
    fakes.uow.videos.add(make_video(original_path=video.original_path))
    fakes.clock.advance(timedelta(minutes=1))

    result = purge_storage(PurgeStorage(), fakes.deps)

    assert (result.attempted, result.deleted, result.remaining) == (2, 2, 0)
    assert video.original_path in fakes.store.objects
    assert video.original_path not in fakes.store.delete_calls[-1]


def test_purge_reports_keys_that_failed_too_often_as_stuck():
    fakes = Fakes(policy=Policy(stuck_after_attempts=3))
    video = make_video()
    queued_after_outage(fakes, video)
    fakes.store.fail(video.thumbnail_path)
    outcomes = []
    for _ in range(3):
        fakes.clock.advance(timedelta(days=1))
        outcomes.append(purge_storage(PurgeStorage(), fakes.deps))

    assert [(r.attempted, r.failed, r.stuck) for r in outcomes] == [(3, 1, 0), (1, 1, 1), (1, 1, 1)]
    [entry] = fakes.uow.deletions.entries.values()
    assert entry.attempts == 4


# --- sweep_retention --------------------------------------------------------------------

MALL = uuid.UUID("00000000-0000-4000-8000-00000000000a")


def aged(days: float, mall_id: uuid.UUID = MALL, **fields):
    return make_video(uploaded_at=T0 - timedelta(days=days), mall_id=mall_id, **fields)


def test_sweep_deletes_in_batches_until_every_expired_video_is_gone():
    fakes = Fakes()
    expired = [aged(91 + i) for i in range(5)]
    fresh = [aged(1), aged(89)]
    fakes.add_videos(*expired, *fresh)

    result = sweep_retention(SweepRetention(batch_size=2), fakes.deps)

    assert (result.matched, result.deleted, result.files_deleted, result.files_pending) == (
        5,
        5,
        15,
        0,
    )
    assert result.matched_bytes == 5 * (125_829_120 + 18_874_368)
    assert result.cutoff == T0 - timedelta(days=90)
    assert result.dry_run is False
    assert [len(call) for call in fakes.store.delete_calls] == [6, 6, 3]
    assert set(fakes.uow.videos.rows) == {v.id for v in fresh}
    assert fakes.uow.deletions.pending() == 0
    assert fakes.enqueue.calls == [("videos.flush_stale_stats", {}, 5.0)]


def test_sweep_stops_after_an_empty_batch_when_the_count_divides_evenly():
    fakes = Fakes()
    fakes.add_videos(*(aged(100 + i) for i in range(4)))

    result = sweep_retention(SweepRetention(batch_size=2), fakes.deps)

    assert (result.matched, result.deleted) == (4, 4)
    assert fakes.uow.videos.rows == {}


def test_sweep_goes_through_every_mall():
    fakes = Fakes()
    malls = [uuid.uuid4() for _ in range(3)]
    fakes.add_videos(*(aged(100 + i, mall_id=mall) for mall in malls for i in range(2)))

    result = sweep_retention(SweepRetention(batch_size=1), fakes.deps)

    assert (result.matched, result.deleted) == (6, 6)
    assert fakes.uow.videos.rows == {}


def test_sweep_keeps_a_video_exactly_at_the_cutoff():
    fakes = Fakes()
    at_cutoff, just_older = aged(90), aged(90 + 1 / 86_400)
    fakes.add_videos(at_cutoff, just_older)

    result = sweep_retention(SweepRetention(), fakes.deps)

    assert result.deleted == 1
    assert set(fakes.uow.videos.rows) == {at_cutoff.id}


def test_sweep_defaults_to_the_workers_retention_days_and_honours_older_than_days():
    fakes = Fakes(policy=Policy(retention_days=30))
    fakes.add_videos(aged(31), aged(10))

    default = sweep_retention(SweepRetention(dry_run=True), fakes.deps)
    explicit = sweep_retention(SweepRetention(older_than_days=5, dry_run=True), fakes.deps)

    assert (default.cutoff, default.matched) == (T0 - timedelta(days=30), 1)
    assert (explicit.cutoff, explicit.matched) == (T0 - timedelta(days=5), 2)


def test_a_malls_own_retention_overrides_the_default_but_not_the_request():
    fakes = Fakes()
    short_lived, default_mall = uuid.uuid4(), uuid.uuid4()
    fakes.uow.videos.retention_days_of[short_lived] = 30
    fakes.add_videos(aged(40, mall_id=short_lived), aged(40, mall_id=default_mall))

    by_mall = sweep_retention(SweepRetention(mall_id=str(short_lived), dry_run=True), fakes.deps)
    overall = sweep_retention(SweepRetention(dry_run=True), fakes.deps)
    requested = sweep_retention(SweepRetention(older_than_days=35, dry_run=True), fakes.deps)

    assert (by_mall.cutoff, by_mall.matched) == (T0 - timedelta(days=30), 1)
    # Across malls the newest cutoff: nothing uploaded at or after it was swept anywhere.
    assert (overall.cutoff, overall.matched) == (T0 - timedelta(days=30), 1)
    assert requested.matched == 2


def test_sweep_skips_videos_under_legal_hold():
    fakes = Fakes()
    held, free = aged(200), aged(200)
    fakes.add_videos(held, free)
    fakes.uow.videos.held.add(held.id)

    result = sweep_retention(SweepRetention(), fakes.deps)

    assert (result.matched, result.deleted) == (1, 1)
    assert set(fakes.uow.videos.rows) == {held.id}


def test_sweep_only_touches_the_given_mall():
    fakes = Fakes()
    mall = uuid.uuid4()
    in_mall, elsewhere = aged(200, mall_id=mall), aged(200)
    fakes.add_videos(in_mall, elsewhere)

    result = sweep_retention(SweepRetention(mall_id=str(mall)), fakes.deps)

    assert (result.matched, result.deleted) == (1, 1)
    assert set(fakes.uow.videos.rows) == {elsewhere.id}


def test_sweep_dry_run_counts_but_deletes_nothing():
    fakes = Fakes()
    fakes.add_videos(aged(100), aged(120), aged(3))

    result = sweep_retention(SweepRetention(dry_run=True), fakes.deps)

    assert (result.matched, result.deleted, result.files_deleted, result.dry_run) == (
        2,
        0,
        0,
        True,
    )
    assert result.matched_bytes == 2 * (125_829_120 + 18_874_368)
    assert len(fakes.uow.videos.rows) == 3
    assert fakes.store.delete_calls == []
    assert fakes.uow.deletions.pending() == 0
    assert fakes.enqueue.calls == []


def test_sweep_out_of_time_budget_takes_one_batch_then_queues_its_own_continuation():
    # A negative budget is spent at once: the run still makes progress, one batch.
    fakes = Fakes(policy=Policy(sweep_time_budget_seconds=-1.0))
    fakes.add_videos(aged(100), aged(120))
    command = SweepRetention(older_than_days=30, batch_size=1, mall_id=str(MALL))

    result = sweep_retention(command, fakes.deps)

    assert (result.matched, result.deleted) == (2, 1)
    assert len(fakes.uow.videos.rows) == 1
    continuations = [call for call in fakes.enqueue.calls if call[0] == "videos.retention_sweep"]
    assert continuations == [
        (
            "videos.retention_sweep",
            {
                "older_than_days": 30,
                "mall_id": str(MALL),
                "batch_size": 1,
                "dry_run": False,
                "delete_files": True,
            },
            0,
        )
    ]


def test_sweep_without_files_deletes_rows_but_keeps_objects():
    fakes = Fakes()
    video = aged(100)
    fakes.add_videos(video)

    result = sweep_retention(SweepRetention(delete_files=False), fakes.deps)

    assert (result.deleted, result.files_deleted, result.files_pending) == (1, 0, 0)
    assert fakes.store.delete_calls == []
    assert fakes.uow.deletions.pending() == 0
    assert all(key in fakes.store.objects for key in object_keys(video))
    assert fakes.uow.audit.outcome_of(video.id) == [("retention", "files_kept")]


def test_sweep_counts_failed_keys_as_pending_and_leaves_them_queued():
    fakes = Fakes()
    video = aged(100)
    fakes.add_videos(video)
    fakes.store.fail(video.thumbnail_path)

    result = sweep_retention(SweepRetention(), fakes.deps)

    assert (result.deleted, result.files_deleted, result.files_pending) == (1, 2, 1)
    [entry] = fakes.uow.deletions.entries.values()
    assert (entry.object_key, entry.reason, entry.attempts) == (
        video.thumbnail_path,
        "retention",
        1,
    )
    assert fakes.uow.audit.outcome_of(video.id) == [("retention", "files_pending")]


# --- retry_delay ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "step_seconds"),
    [(0, 30), (1, 30), (2, 60), (3, 120), (6, 960), (10, 15_360), (11, 21_600), (200, 21_600)],
)
def test_retry_delay_doubles_from_30_seconds_up_to_six_hours_with_half_step_jitter(
    attempts, step_seconds
):
    assert retry_delay(attempts, EdgeRandom(pick_high=True)) == timedelta(seconds=step_seconds)
    assert retry_delay(attempts, EdgeRandom(pick_high=False)) == timedelta(seconds=step_seconds / 2)


def test_retry_delay_never_leaves_its_bounds():
    rng = random.Random(1234)
    for attempts in range(1, 40):
        step = min(RETRY_CAP_SECONDS, 30 * 2 ** (attempts - 1))
        delay = retry_delay(attempts, rng).total_seconds()
        assert step / 2 <= delay <= step


def test_a_redelivered_delete_gets_the_first_runs_answer_and_a_new_request_not_found():
    fakes = Fakes()
    video = aged(1)
    fakes.add_videos(video)
    first_run = dataclasses.replace(fakes.deps, request_id="task-1")

    first = delete_video(DeleteVideo(video_id=str(video.id)), first_run)
    redelivered = delete_video(DeleteVideo(video_id=str(video.id)), first_run)
    with pytest.raises(NotFound) as again:
        delete_video(
            DeleteVideo(video_id=str(video.id)),
            dataclasses.replace(fakes.deps, request_id="task-2"),
        )

    assert redelivered == first
    assert again.value.detail == f"Video {video.id} not found"


def test_a_reused_task_id_answers_again_only_to_the_caller_who_deleted_within_its_scope():
    """Callers choose task ids: an answer given again must not reveal another mall's
    deletion, nor another caller's, to whoever sends the same id."""
    fakes = Fakes()
    theirs = aged(1, mall_id=uuid.uuid4())
    fakes.add_videos(theirs)
    task = "chosen-by-the-caller"
    admin = dataclasses.replace(fakes.deps, request_id=task, scope=Scope.admin("root"))
    delete_video(DeleteVideo(video_id=str(theirs.id)), admin)

    callers = {
        "operator of another mall": Scope.operator([MALL], subject="root"),
        "operator of no mall": Scope.operator([], subject="root"),
        "its mall's operator, another subject": Scope.operator([theirs.mall_id], "olga"),
        "another admin": Scope.admin("eve"),
        "auth off": Scope.admin(),
    }
    answers = {}
    for name, scope in callers.items():
        deps = dataclasses.replace(fakes.deps, request_id=task, scope=scope)
        with pytest.raises(NotFound) as refused:
            delete_video(DeleteVideo(video_id=str(theirs.id)), deps)
        answers[name] = refused.value.detail

    assert answers == dict.fromkeys(callers, f"Video {theirs.id} not found")
    # The one who deleted it, within the same scope, still gets its answer again.
    same = delete_video(DeleteVideo(video_id=str(theirs.id)), admin)
    assert (same.deleted, same.files_deleted) == (True, object_keys(theirs))


def test_with_auth_off_a_redelivery_is_answered_again_with_no_subject_on_either_side():
    fakes, video = one_video()
    deps = dataclasses.replace(fakes.deps, request_id="task-1")
    first = delete_video(DeleteVideo(video_id=str(video.id)), deps)

    assert delete_video(DeleteVideo(video_id=str(video.id)), deps) == first
    assert [e.actor for e in fakes.uow.audit.entries] == [None]
