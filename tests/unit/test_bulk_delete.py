"""bulk_delete on fakes: selection by id and by filter, batches, progress, the time
budget's continuation, the trash and the caller's scope."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

from handlers import bulk_delete, list_videos
from handlers.access import Scope
from handlers.bulk import TASK
from handlers.policy import Policy
from schemas import BulkDelete, BulkDeleteProgress, ListVideos, VideoDeleted
from tests.unit.fakes import T0, Fakes, make_video, object_keys

REQUEST_ID = "bulk-run-1"
# Already spent: a run hands over after its first batch, whatever the machine's speed.
NO_TIME_LEFT = Policy(bulk_delete_time_budget_seconds=-1.0)


def mall_of(fakes: Fakes, count: int, mall_id: uuid.UUID | None = None, **fields) -> list:
    """``count`` videos of one mall, oldest first (a day apart)."""
    mall_id = mall_id or uuid.uuid4()
    videos = [
        make_video(mall_id=mall_id, uploaded_at=T0 - timedelta(days=count - i), **fields)
        for i in range(count)
    ]
    fakes.add_videos(*videos)
    return videos


def run(fakes: Fakes, scope: Scope | None = None, **kwargs):
    deps = replace(fakes.deps, request_id=REQUEST_ID)
    if scope is not None:
        deps = replace(deps, scope=scope)
    return bulk_delete(BulkDelete(**kwargs), deps)


def ids(videos) -> list[str]:
    return [str(v.id) for v in videos]


def progress_of(fakes: Fakes) -> list[tuple]:
    return [
        (e.task_id, e.matched, e.deleted)
        for e in fakes.publisher.events
        if isinstance(e, BulkDeleteProgress)
    ]


def test_bulk_delete_by_ids_deletes_them_with_their_files_and_audits_them_as_bulk():
    fakes = Fakes()
    videos = mall_of(fakes, 3)
    spared = mall_of(fakes, 1)

    result = run(fakes, video_ids=ids(videos))

    assert result.model_dump(mode="json") == {
        "matched": 3,
        "deleted": 3,
        "not_found": [],
        "files_deleted": 9,
        "files_pending": 0,
        "dry_run": False,
        "continued": False,
        "continuation_id": None,
    }
    assert list(fakes.uow.videos.rows) == [spared[0].id]
    assert not any(key in fakes.store.objects for v in videos for key in object_keys(v))
    assert [(e.video_id, e.reason, e.outcome, e.request_id) for e in fakes.uow.audit.entries] == [
        (v.id, "bulk", "files_deleted", REQUEST_ID) for v in videos
    ]
    assert [e.video_id for e in fakes.publisher.events if isinstance(e, VideoDeleted)] == [
        v.id for v in videos
    ]


def test_not_found_lists_unknown_and_unseen_ids_once_each_in_the_order_given():
    fakes = Fakes()
    [ours] = mall_of(fakes, 1)
    [theirs] = mall_of(fakes, 1)
    unknown_1, unknown_2 = str(uuid.uuid4()), str(uuid.uuid4())
    operator = Scope.operator([ours.mall_id])

    result = run(
        fakes,
        operator,
        video_ids=[unknown_1, str(theirs.id), str(ours.id), unknown_1, unknown_2, str(theirs.id)],
    )

    assert [str(i) for i in result.not_found] == [unknown_1, str(theirs.id), unknown_2]
    assert (result.matched, result.deleted) == (1, 1)
    assert list(fakes.uow.videos.rows) == [theirs.id]


def test_bulk_delete_by_filters_takes_only_what_the_list_shows():
    fakes = Fakes()
    mall = uuid.uuid4()
    lobby = mall_of(fakes, 2, mall, original_filename="Lobby_cam.mp4")
    [parking] = mall_of(fakes, 1, mall, original_filename="parking.mp4")
    [binned] = mall_of(fakes, 1, mall, original_filename="lobby_old.mp4")
    fakes.uow.videos.trashed[binned.id] = (T0, None)
    [elsewhere] = mall_of(fakes, 1, original_filename="lobby.mp4")
    filters = {"mall_id": str(mall), "q": "LOBBY"}
    listed = list_videos(ListVideos(**filters), fakes.deps)

    result = run(fakes, filters=filters)

    assert (result.matched, result.deleted, result.not_found) == (listed.total, 2, [])
    assert {v.id for v in listed.videos} == {v.id for v in lobby}
    assert set(fakes.uow.videos.rows) == {parking.id, binned.id, elsewhere.id}
    assert binned.id in fakes.uow.videos.trashed


def test_a_dry_run_reports_what_matches_and_deletes_nothing():
    fakes = Fakes()
    videos = mall_of(fakes, 3)
    bucket = dict(fakes.store.objects)

    by_filter = run(fakes, filters={"mall_id": str(videos[0].mall_id)}, dry_run=True)
    unknown = str(uuid.uuid4())
    by_ids = run(fakes, video_ids=[*ids(videos[:2]), unknown], dry_run=True)

    assert (by_filter.matched, by_filter.deleted, by_filter.dry_run) == (3, 0, True)
    assert (by_ids.matched, by_ids.deleted, [str(i) for i in by_ids.not_found]) == (2, 0, [unknown])
    assert len(fakes.uow.videos.rows) == 3 and fakes.store.objects == bucket
    assert fakes.uow.audit.entries == [] and fakes.publisher.events == []
    assert fakes.enqueue.calls == []


def test_a_selection_matching_nothing_deletes_nothing_and_publishes_nothing():
    fakes = Fakes()
    mall_of(fakes, 2)

    result = run(fakes, filters={"mall_id": str(uuid.uuid4())})

    assert (result.matched, result.deleted, result.continued) == (0, 0, False)
    assert len(fakes.uow.videos.rows) == 2 and fakes.publisher.events == []


def test_deletes_go_in_batches_oldest_first_with_a_progress_event_after_each():
    fakes = Fakes()
    videos = mall_of(fakes, 5)

    result = run(fakes, filters={"mall_id": str(videos[0].mall_id)}, batch_size=2)

    assert (result.matched, result.deleted, result.continued) == (5, 5, False)
    # One removal call per batch: three keys per video.
    assert [len(call) for call in fakes.store.delete_calls] == [6, 6, 3]
    assert [e.video_id for e in fakes.uow.audit.entries] == [v.id for v in videos]
    assert progress_of(fakes) == [(REQUEST_ID, 5, 2), (REQUEST_ID, 5, 4), (REQUEST_ID, 5, 5)]
    assert all(e.at == T0 for e in fakes.publisher.events if isinstance(e, BulkDeleteProgress))


def test_files_that_s3_refuses_are_counted_pending_and_stay_queued():
    fakes = Fakes()
    first, second = mall_of(fakes, 2)
    fakes.store.fail(second.thumbnail_path)

    result = run(fakes, video_ids=ids([first, second]))

    assert (result.deleted, result.files_deleted, result.files_pending) == (2, 5, 1)
    assert fakes.uow.deletions.keys() == [second.thumbnail_path]
    assert fakes.uow.audit.outcome_of(second.id) == [("bulk", "files_pending")]
    assert fakes.uow.audit.outcome_of(first.id) == [("bulk", "files_deleted")]


def test_delete_files_false_keeps_every_object():
    fakes = Fakes()
    videos = mall_of(fakes, 2)
    bucket = dict(fakes.store.objects)

    result = run(fakes, video_ids=ids(videos), delete_files=False)

    assert (result.deleted, result.files_deleted, result.files_pending) == (2, 0, 0)
    assert fakes.uow.videos.rows == {} and fakes.store.objects == bucket
    assert [e.outcome for e in fakes.uow.audit.entries] == ["files_kept", "files_kept"]


def test_bulk_trash_moves_the_selection_to_the_trash_and_counts_it_deleted():
    fakes = Fakes()
    videos = mall_of(fakes, 3)
    bucket = dict(fakes.store.objects)
    operator = Scope.operator([videos[0].mall_id], subject="olga")

    result = run(
        fakes, operator, filters={"mall_id": str(videos[0].mall_id)}, trash=True, batch_size=2
    )

    assert (result.matched, result.deleted, result.files_deleted, result.files_pending) == (
        3,
        3,
        0,
        0,
    )
    assert fakes.uow.videos.trashed == {v.id: (T0, "olga") for v in videos}
    assert len(fakes.uow.videos.rows) == 3 and fakes.store.objects == bucket
    assert fakes.uow.audit.entries == [] and fakes.uow.deletions.pending() == 0
    assert progress_of(fakes) == [(REQUEST_ID, 3, 2), (REQUEST_ID, 3, 3)]
    assert ("videos.flush_stale_stats", {}, Policy().stats_debounce_seconds) in fakes.enqueue.calls


def test_an_operator_deletes_only_its_malls_videos():
    fakes = Fakes()
    ours = mall_of(fakes, 2, processing_status="failed")
    theirs = mall_of(fakes, 2, processing_status="failed")
    operator = Scope.operator([ours[0].mall_id], subject="olga")

    result = run(fakes, operator, filters={"processing_status": "failed"})

    assert (result.matched, result.deleted) == (2, 2)
    assert set(fakes.uow.videos.rows) == {v.id for v in theirs}
    assert {(e.mall_id, e.actor) for e in fakes.uow.audit.entries} == {(ours[0].mall_id, "olga")}


def test_out_of_time_by_ids_hands_the_ids_not_yet_done_to_a_named_continuation():
    fakes = Fakes(policy=NO_TIME_LEFT)
    videos = mall_of(fakes, 5)

    result = run(fakes, video_ids=ids(reversed(videos)), batch_size=2)

    assert (result.matched, result.deleted, result.continued) == (5, 2, True)
    assert set(fakes.uow.videos.rows) == {v.id for v in videos[2:]}
    calls = zip(fakes.enqueue.calls, fakes.enqueue.task_ids, strict=True)
    [((_, kwargs, countdown), task_id)] = [(c, t) for c, t in calls if c[0] == TASK]
    assert result.continuation_id == task_id and task_id is not None
    assert countdown == 0
    assert sorted(kwargs.pop("video_ids")) == sorted(ids(videos[2:]))
    assert kwargs == {"trash": False, "delete_files": True, "dry_run": False, "batch_size": 2}
    assert progress_of(fakes) == [(REQUEST_ID, 5, 2)]


def test_the_continuation_carries_on_under_its_own_task_id_until_done():
    fakes = Fakes(policy=NO_TIME_LEFT)
    videos = mall_of(fakes, 3)
    first = run(fakes, filters={"mall_id": str(videos[0].mall_id)}, batch_size=2)
    [(_, kwargs, _)] = [c for c in fakes.enqueue.calls if c[0] == TASK]
    assert kwargs == {
        "filters": {"mall_id": str(videos[0].mall_id)},
        "trash": False,
        "delete_files": True,
        "dry_run": False,
        "batch_size": 2,
    }

    fakes.policy = Policy()
    deps = replace(fakes.deps, request_id=first.continuation_id)
    rest = bulk_delete(BulkDelete(**kwargs), deps)

    assert (rest.matched, rest.deleted, rest.continued, rest.continuation_id) == (1, 1, False, None)
    assert fakes.uow.videos.rows == {}
    assert progress_of(fakes) == [(REQUEST_ID, 3, 2), (first.continuation_id, 1, 1)]


def test_a_run_that_finishes_in_its_first_batch_never_continues_even_out_of_time():
    fakes = Fakes(policy=NO_TIME_LEFT)
    videos = mall_of(fakes, 2)

    result = run(fakes, video_ids=ids(videos), batch_size=5)

    assert (result.deleted, result.continued, result.continuation_id) == (2, False, None)
    assert not any(call[0] == TASK for call in fakes.enqueue.calls)


def test_bulk_trash_out_of_time_continues_with_what_is_not_yet_in_the_trash():
    fakes = Fakes(policy=NO_TIME_LEFT)
    videos = mall_of(fakes, 3)

    result = run(fakes, video_ids=ids(videos), trash=True, batch_size=1)

    assert (result.deleted, result.continued) == (1, True)
    assert set(fakes.uow.videos.trashed) == {videos[0].id}
    [(_, kwargs, _)] = [c for c in fakes.enqueue.calls if c[0] == TASK]
    assert sorted(kwargs["video_ids"]) == sorted(ids(videos[1:])) and kwargs["trash"] is True


def test_a_budget_spent_with_the_last_batch_sends_no_continuation():
    """Nothing is left to hand over: a continuation of no ids would be refused as
    invalid, and of filters would match nothing."""
    for selection in ("video_ids", "filters"):
        fakes = Fakes(policy=NO_TIME_LEFT)
        videos = mall_of(fakes, 2)
        chosen = (
            {"video_ids": ids(videos)}
            if selection == "video_ids"
            else {"filters": {"mall_id": str(videos[0].mall_id)}}
        )

        result = run(fakes, batch_size=2, **chosen)

        assert (result.matched, result.deleted, result.not_found) == (2, 2, []), selection
        assert (result.continued, result.continuation_id) == (False, None), selection
        assert not any(call[0] == TASK for call in fakes.enqueue.calls), selection


class KilledMidRun(BaseException):
    """The pool process dies: nothing after this point of the first run happens."""


def killed_after_batches(fakes: Fakes, batches: int):
    """A run whose process dies once ``batches`` batches have committed."""
    publish = fakes.publisher

    def dying(event):
        publish(event)
        if isinstance(event, BulkDeleteProgress) and event.deleted >= batches * 2:
            raise KilledMidRun

    return replace(fakes.deps, request_id=REQUEST_ID, publish=dying)


def test_a_redelivered_bulk_delete_counts_what_its_first_run_already_deleted():
    fakes = Fakes()
    videos = mall_of(fakes, 5)
    unknown = str(uuid.uuid4())
    command = BulkDelete(video_ids=[*ids(videos), unknown], batch_size=2)
    try:
        bulk_delete(command, killed_after_batches(fakes, 2))
    except KilledMidRun:
        pass
    assert len(fakes.uow.videos.rows) == 1

    again = bulk_delete(command, replace(fakes.deps, request_id=REQUEST_ID))

    assert again.model_dump(mode="json") == {
        "matched": 5,
        "deleted": 5,
        "not_found": [unknown],
        "files_deleted": 15,
        "files_pending": 0,
        "dry_run": False,
        "continued": False,
        "continuation_id": None,
    }
    assert fakes.uow.videos.rows == {}
    assert progress_of(fakes)[-1] == (REQUEST_ID, 5, 5)


def test_a_redelivered_bulk_delete_by_filters_counts_its_first_runs_work_too():
    fakes = Fakes()
    videos = mall_of(fakes, 5)
    command = BulkDelete(filters={"mall_id": str(videos[0].mall_id)}, batch_size=2)
    try:
        bulk_delete(command, killed_after_batches(fakes, 1))
    except KilledMidRun:
        pass

    again = bulk_delete(command, replace(fakes.deps, request_id=REQUEST_ID))

    assert (again.matched, again.deleted, again.files_deleted) == (5, 5, 15)
    assert fakes.uow.videos.rows == {}


def test_a_reused_bulk_task_id_never_counts_another_callers_deletions():
    fakes = Fakes()
    videos = mall_of(fakes, 2)
    admin = replace(fakes.deps, request_id=REQUEST_ID, scope=Scope.admin("root"))
    bulk_delete(BulkDelete(video_ids=ids(videos)), admin)

    for scope in (
        Scope.operator([uuid.uuid4()], subject="root"),
        Scope.operator([videos[0].mall_id], subject="olga"),
        Scope.admin("eve"),
    ):
        reused = bulk_delete(BulkDelete(video_ids=ids(videos)), replace(admin, scope=scope))
        assert (reused.matched, reused.deleted, reused.not_found) == (0, 0, videos_ids(videos))

    own = bulk_delete(BulkDelete(video_ids=ids(videos)), admin)
    assert (own.matched, own.deleted, own.not_found, own.files_deleted) == (2, 2, [], 6)


def videos_ids(videos) -> list[uuid.UUID]:
    return [v.id for v in videos]
