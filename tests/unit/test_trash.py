"""The trash on fakes: delete(trash=true), what a trashed video is to every read, restore."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from handlers import (
    NotFound,
    delete_video,
    get_stats,
    get_video,
    list_videos,
    restore_video,
    sign_url,
)
from handlers.access import Scope
from handlers.policy import Policy
from schemas import (
    DeleteVideo,
    GetStats,
    GetVideo,
    ListVideos,
    RestoreResult,
    RestoreVideo,
    SignUrl,
    StatusCounts,
    VideoStats,
)
from tests.unit.fakes import T0, Fakes, make_video, object_keys

FLUSH = ("videos.flush_stale_stats", {}, Policy().stats_debounce_seconds)


def one_video(**fields) -> tuple[Fakes, object]:
    fakes = Fakes()
    video = make_video(**fields)
    fakes.add_videos(video)
    return fakes, video


def trash(fakes: Fakes, video, deps=None):
    return delete_video(DeleteVideo(video_id=str(video.id), trash=True), deps or fakes.deps)


def cached_pin_figure(pin_id: uuid.UUID) -> VideoStats:
    return VideoStats(
        mall_id=None,
        pin_id=pin_id,
        total_videos=1,
        by_status=StatusCounts(completed=1),
        total_storage_bytes=1,
        total_duration_seconds=1.0,
        refreshed_at=T0 - timedelta(hours=1),
    )


def test_trash_keeps_the_row_and_its_objects_and_answers_when_it_will_be_purged():
    fakes, video = one_video()
    fakes.policy = Policy(trash_days=7)
    bucket = dict(fakes.store.objects)

    result = trash(fakes, video, replace(fakes.deps, scope=Scope.operator([video.mall_id], "olga")))

    assert result.model_dump(mode="json") == {
        "video_id": str(video.id),
        "deleted": True,
        "files_deleted": [],
        "files_pending": [],
        "message": "Video moved to trash.",
        "purge_after": "2025-11-07T12:00:00Z",
    }
    assert result.purge_after == T0 + timedelta(days=7)
    assert fakes.uow.videos.rows[video.id] == video
    assert fakes.uow.videos.trashed[video.id] == (T0, "olga")
    assert fakes.store.objects == bucket and fakes.store.delete_calls == []
    # Nothing is deleted yet: no audit row, no key queued for removal.
    assert fakes.uow.audit.entries == [] and fakes.uow.deletions.pending() == 0


def test_purge_after_defaults_to_trash_days_after_trashing():
    fakes, video = one_video()

    assert trash(fakes, video).purge_after == T0 + timedelta(days=Policy().trash_days)


def test_trashing_again_answers_the_first_purge_after_and_marks_nothing_stale():
    fakes, video = one_video()
    first = trash(fakes, video)
    fakes.cache.take_dirty()
    fakes.clock.advance(timedelta(days=3))

    again = trash(fakes, video)

    assert again == first
    assert fakes.uow.videos.trashed[video.id][0] == T0
    assert fakes.cache.dirty == set()


def test_trash_of_a_video_outside_the_scope_is_not_found_and_trashes_nothing():
    fakes, video = one_video()
    outsider = replace(fakes.deps, scope=Scope.operator([uuid.uuid4()]))

    with pytest.raises(NotFound) as raised:
        trash(fakes, video, outsider)

    assert raised.value.detail == f"Video {video.id} not found"
    assert fakes.uow.videos.trashed == {}


def test_a_trashed_video_is_not_found_to_get_and_sign_url():
    fakes, video = one_video()
    trash(fakes, video)

    for read, command in (
        (get_video, GetVideo(video_id=str(video.id))),
        (sign_url, SignUrl(video_id=str(video.id))),
    ):
        with pytest.raises(NotFound) as raised:
            read(command, fakes.deps)
        assert raised.value.detail == f"Video {video.id} not found"
    assert fakes.store.presigned == []


def test_a_trashed_video_leaves_the_list_and_only_the_trash_lists_it_with_its_dates():
    fakes = Fakes()
    kept, binned = make_video(), make_video(uploaded_at=T0 - timedelta(hours=1))
    fakes.add_videos(kept, binned)
    trash(fakes, binned)

    listed = list_videos(ListVideos(), fakes.deps)
    in_trash = list_videos(ListVideos(trashed=True), fakes.deps)

    assert [v.id for v in listed.videos] == [kept.id] and listed.total == 1
    assert "trashed_at" not in listed.model_dump(mode="json")["videos"][0]
    assert [v.id for v in in_trash.videos] == [binned.id] and in_trash.total == 1
    item = in_trash.model_dump(mode="json")["videos"][0]
    assert (item["trashed_at"], item["purge_after"]) == (
        "2025-10-31T12:00:00Z",
        "2025-11-30T12:00:00Z",
    )


def test_statistics_leave_a_trashed_video_out_and_count_it_in_the_trash():
    fakes = Fakes()
    mall = uuid.uuid4()
    kept = make_video(mall_id=mall, file_size_bytes=1_000, proxy_size_bytes=10)
    binned = make_video(mall_id=mall, file_size_bytes=2_000, proxy_size_bytes=20)
    fakes.add_videos(kept, binned)
    trash(fakes, binned)

    for stats in (
        get_stats(GetStats(), fakes.deps),
        get_stats(GetStats(mall_id=str(mall)), fakes.deps),
        get_stats(
            GetStats(), replace(fakes.deps, scope=Scope.tenant([kept.pin_id, binned.pin_id]))
        ),
        get_stats(GetStats(), replace(fakes.deps, scope=Scope.operator([mall]))),
    ):
        assert (stats.total_videos, stats.total_storage_bytes) == (1, 1_010)
        assert stats.trash.model_dump() == {"total_videos": 1, "total_storage_bytes": 2_020}


def test_trash_asks_for_a_stats_refresh_and_forgets_the_pins_cached_figure():
    fakes, video = one_video()
    other_pin = uuid.uuid4()
    fakes.cache.pins = {p: cached_pin_figure(p) for p in (video.pin_id, other_pin)}

    trash(fakes, video)

    assert set(fakes.cache.pins) == {other_pin}
    assert fakes.enqueue.calls == [FLUSH]
    assert fakes.cache.dirty == {None, video.mall_id}


def test_restore_puts_the_video_back_everywhere():
    fakes, video = one_video()
    trash(fakes, video)

    result = restore_video(RestoreVideo(video_id=str(video.id)), fakes.deps)

    assert result == RestoreResult(video_id=video.id, restored=True)
    assert result.model_dump(mode="json") == {"video_id": str(video.id), "restored": True}
    assert video.id not in fakes.uow.videos.trashed
    assert get_video(GetVideo(video_id=str(video.id)), fakes.deps) == video
    assert [v.id for v in list_videos(ListVideos(), fakes.deps).videos] == [video.id]
    assert list_videos(ListVideos(trashed=True), fakes.deps).total == 0


def test_restore_asks_for_a_stats_refresh_and_forgets_the_pins_cached_figure():
    fakes, video = one_video()
    fakes.uow.videos.trashed[video.id] = (T0 - timedelta(days=1), None)
    fakes.cache.pins = {video.pin_id: cached_pin_figure(video.pin_id)}

    restore_video(RestoreVideo(video_id=str(video.id)), fakes.deps)

    assert fakes.cache.pins == {}
    assert fakes.enqueue.calls == [FLUSH]
    assert fakes.cache.dirty == {None, video.mall_id}


def test_restore_of_a_live_video_is_not_found():
    fakes, video = one_video()

    with pytest.raises(NotFound) as raised:
        restore_video(RestoreVideo(video_id=str(video.id)), fakes.deps)

    assert raised.value.detail == f"Video {video.id} not in trash"
    assert fakes.enqueue.calls == []


def test_restore_of_a_video_deleted_from_the_trash_is_not_found():
    fakes, video = one_video()
    trash(fakes, video)

    gone = delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)

    assert gone.purge_after is None and gone.files_deleted == object_keys(video)
    assert video.id not in fakes.uow.videos.rows
    with pytest.raises(NotFound) as raised:
        restore_video(RestoreVideo(video_id=str(video.id)), fakes.deps)
    assert raised.value.detail == f"Video {video.id} not in trash"


def test_restore_of_an_unknown_or_unseen_video_is_not_found():
    fakes, video = one_video()
    trash(fakes, video)
    unknown = uuid.uuid4()
    outsider = replace(fakes.deps, scope=Scope.operator([uuid.uuid4()]))

    for video_id, deps in ((unknown, fakes.deps), (video.id, outsider)):
        with pytest.raises(NotFound) as raised:
            restore_video(RestoreVideo(video_id=str(video_id)), deps)
        assert raised.value.detail == f"Video {video_id} not in trash"
    assert video.id in fakes.uow.videos.trashed


def test_an_immediate_delete_of_a_trashed_video_deletes_it_at_once_with_the_usual_guarantees():
    fakes, video = one_video()
    trash(fakes, video)

    result = delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)

    assert result.model_dump(mode="json")["purge_after"] is None
    assert result.message == "Video deleted successfully. 3 file(s) removed from storage."
    assert video.id not in fakes.uow.videos.rows and video.id not in fakes.uow.videos.trashed
    assert not any(key in fakes.store.objects for key in object_keys(video))
    assert fakes.uow.audit.outcome_of(video.id) == [("request", "files_deleted")]
