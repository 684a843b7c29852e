"""The sweep's two new rules on fakes: emptying the trash, and keeping malls under quota."""

from __future__ import annotations

import uuid
from datetime import timedelta

from handlers import delete_video, sweep_retention
from handlers.policy import Policy
from handlers.ports import NewShare
from handlers.reprocess import reprocess
from schemas import DeleteVideo, SweepRetention
from schemas.requests import Reprocess
from tests.unit.fakes import T0, Fakes, make_video, object_keys


def sized(mall_id: uuid.UUID, days_ago: int, size: int = 100, **fields):
    """A video storing ``size`` bytes (original plus proxy), uploaded ``days_ago`` days ago."""
    return make_video(
        mall_id=mall_id,
        uploaded_at=T0 - timedelta(days=days_ago),
        file_size_bytes=size - 10,
        proxy_size_bytes=10,
        **fields,
    )


def trash(fakes: Fakes, video) -> None:
    delete_video(DeleteVideo(video_id=str(video.id), trash=True), fakes.deps)


def sweep(fakes: Fakes, **kwargs):
    return sweep_retention(SweepRetention(**kwargs), fakes.deps)


def audited(fakes: Fakes) -> list[tuple]:
    return [(e.video_id, e.reason) for e in fakes.uow.audit.entries]


# --- the trash ----------------------------------------------------------------------------


def test_the_trash_is_emptied_once_trash_days_have_passed_and_not_before():
    fakes = Fakes(policy=Policy(trash_days=30))
    video = sized(uuid.uuid4(), days_ago=1)
    fakes.add_videos(video)
    trash(fakes, video)

    fakes.clock.advance(timedelta(days=29))
    early = sweep(fakes)
    assert (early.deleted_from_trash, early.deleted) == (0, 0)
    assert video.id in fakes.uow.videos.rows

    fakes.clock.advance(timedelta(days=1, seconds=1))
    due = sweep(fakes)

    assert (due.deleted_from_trash, due.deleted, due.deleted_for_quota) == (1, 0, 0)
    assert due.files_deleted == 3
    assert video.id not in fakes.uow.videos.rows and fakes.uow.videos.trashed == {}
    assert not any(key in fakes.store.objects for key in object_keys(video))
    assert fakes.uow.audit.outcome_of(video.id) == [("trash", "files_deleted")]


def test_a_held_video_stays_in_the_trash():
    fakes = Fakes()
    held, free = sized(uuid.uuid4(), 1), sized(uuid.uuid4(), 1)
    fakes.add_videos(held, free)
    trash(fakes, held)
    trash(fakes, free)
    fakes.uow.retention.set_legal_hold(held.id, True)
    fakes.clock.advance(timedelta(days=Policy().trash_days + 1))

    result = sweep(fakes)

    assert result.deleted_from_trash == 1
    assert set(fakes.uow.videos.rows) == {held.id} and held.id in fakes.uow.videos.trashed


def test_a_dry_run_leaves_the_trash_alone():
    fakes = Fakes()
    video = sized(uuid.uuid4(), 1)
    fakes.add_videos(video)
    trash(fakes, video)
    fakes.clock.advance(timedelta(days=Policy().trash_days + 1))

    result = sweep(fakes, dry_run=True)

    assert (result.deleted_from_trash, result.dry_run) == (0, True)
    # What the trash rule would take, counted apart from the age rule's videos.
    assert (result.matched_from_trash, result.matched_from_trash_bytes) == (1, 100)
    assert result.matched == 0
    assert video.id in fakes.uow.videos.trashed and fakes.uow.audit.entries == []


def test_the_trash_of_another_mall_is_left_to_its_own_sweep():
    fakes = Fakes()
    ours, theirs = sized(uuid.uuid4(), 1), sized(uuid.uuid4(), 1)
    fakes.add_videos(ours, theirs)
    trash(fakes, ours)
    trash(fakes, theirs)
    fakes.clock.advance(timedelta(days=Policy().trash_days + 1))

    result = sweep(fakes, mall_id=str(ours.mall_id))

    assert result.deleted_from_trash == 1
    assert set(fakes.uow.videos.rows) == {theirs.id}


# --- quotas -------------------------------------------------------------------------------


def quota_mall(fakes: Fakes, quota: int, ages=(4, 3, 2, 1)) -> list:
    """A mall of 100-byte videos, oldest first, with a storage quota."""
    mall = uuid.uuid4()
    videos = [sized(mall, days_ago) for days_ago in ages]
    fakes.add_videos(*videos)
    assert fakes.uow.retention.set_mall_retention(mall, max_storage_bytes=quota)
    return videos


def test_a_mall_over_quota_loses_its_oldest_videos_until_it_is_under():
    fakes = Fakes()
    videos = quota_mall(fakes, quota=250)

    result = sweep(fakes)

    assert (result.deleted_for_quota, result.deleted, result.deleted_from_trash) == (2, 0, 0)
    assert set(fakes.uow.videos.rows) == {v.id for v in videos[2:]}
    assert audited(fakes) == [(videos[0].id, "quota"), (videos[1].id, "quota")]
    assert result.files_deleted == 6


def test_a_mall_exactly_at_quota_after_a_delete_loses_nothing_more():
    fakes = Fakes()
    videos = quota_mall(fakes, quota=300)

    result = sweep(fakes)

    assert result.deleted_for_quota == 1
    assert set(fakes.uow.videos.rows) == {v.id for v in videos[1:]}
    assert fakes.uow.retention.mall_storage(videos[0].mall_id) == 300


def test_a_mall_under_quota_and_a_mall_without_one_lose_nothing():
    fakes = Fakes()
    quota_mall(fakes, quota=400)
    fakes.add_videos(sized(uuid.uuid4(), 1, size=10**9))

    result = sweep(fakes)

    assert result.deleted_for_quota == 0 and len(fakes.uow.videos.rows) == 5


def test_the_quota_passes_over_held_videos():
    fakes = Fakes()
    videos = quota_mall(fakes, quota=250)
    fakes.uow.retention.set_legal_hold(videos[0].id, True)

    result = sweep(fakes)

    assert result.deleted_for_quota == 2
    assert set(fakes.uow.videos.rows) == {videos[0].id, videos[3].id}
    assert audited(fakes) == [(videos[1].id, "quota"), (videos[2].id, "quota")]


def test_a_mall_whose_only_videos_are_held_stays_over_quota_without_error():
    fakes = Fakes()
    videos = quota_mall(fakes, quota=50, ages=(2, 1))
    for video in videos:
        fakes.uow.retention.set_legal_hold(video.id, True)

    result = sweep(fakes)

    assert (result.deleted_for_quota, result.files_pending) == (0, 0)
    assert len(fakes.uow.videos.rows) == 2 and fakes.uow.audit.entries == []
    assert not any(call[0] == "videos.retention_sweep" for call in fakes.enqueue.calls)


def test_a_dry_run_deletes_nothing_for_quota():
    fakes = Fakes()
    quota_mall(fakes, quota=50)

    result = sweep(fakes, dry_run=True)

    assert (result.deleted_for_quota, result.dry_run) == (0, True)
    assert len(fakes.uow.videos.rows) == 4 and fakes.uow.audit.entries == []


def test_quota_deletes_go_in_batches():
    fakes = Fakes()
    videos = quota_mall(fakes, quota=100)

    result = sweep(fakes, batch_size=2)

    assert result.deleted_for_quota == 3
    assert set(fakes.uow.videos.rows) == {videos[3].id}
    assert [len(call) for call in fakes.store.delete_calls] == [6, 3]


def test_the_age_rule_runs_before_the_quota():
    """A mall whose expired video alone brings it to its quota: the age rule deletes that
    video (reason retention) and the quota, measured afresh, has nothing left to do."""
    fakes = Fakes()
    videos = quota_mall(fakes, quota=300, ages=(400, 3, 2, 1))

    result = sweep(fakes)

    assert (result.deleted, result.deleted_for_quota) == (1, 0)
    assert audited(fakes) == [(videos[0].id, "retention")]


def test_the_trash_rule_runs_before_the_quota_and_counts_toward_it():
    """Emptying the trash brings the mall under its quota: the oldest live video stays."""
    fakes = Fakes()
    videos = quota_mall(fakes, quota=250, ages=(3, 2, 1))
    newest = videos[-1]
    trash(fakes, newest)
    fakes.clock.advance(timedelta(days=Policy().trash_days + 1))

    result = sweep(fakes)

    assert (result.deleted_from_trash, result.deleted_for_quota) == (1, 0)
    assert audited(fakes) == [(newest.id, "trash")]


# --- the audit's retention ------------------------------------------------------------------


def test_the_sweep_prunes_audit_rows_past_their_retention_but_never_pending_ones():
    fakes = Fakes(policy=Policy(audit_retention_days=30))
    mall = uuid.uuid4()
    old, pending, recent = (sized(mall, 1) for _ in range(3))
    fakes.add_videos(old, pending, recent)
    delete_video(DeleteVideo(video_id=str(old.id)), fakes.deps)
    fakes.store.fail(*object_keys(pending))
    delete_video(DeleteVideo(video_id=str(pending.id)), fakes.deps)
    fakes.clock.advance(timedelta(days=31))
    delete_video(DeleteVideo(video_id=str(recent.id)), fakes.deps)

    sweep(fakes, dry_run=True)
    assert len(fakes.uow.audit.entries) == 3  # a dry run changes nothing
    sweep(fakes, batch_size=1)

    assert {e.video_id: e.outcome for e in fakes.uow.audit.entries} == {
        pending.id: "files_pending",
        recent.id: "files_deleted",
    }


def test_the_sweep_prunes_shares_exports_and_requests_that_ended_past_the_audits_retention():
    fakes = Fakes(policy=Policy(audit_retention_days=30))
    mall = uuid.uuid4()
    video = sized(mall, 1)
    fakes.add_videos(video)

    def share(expires_in: timedelta) -> NewShare:
        made = NewShare(
            id=uuid.uuid4(),
            token_hash=uuid.uuid4().bytes * 2,
            password_hash=None,
            created_by="alice",
            created_at=fakes.clock(),
            expires_at=fakes.clock() + expires_in,
            max_views=None,
            label=None,
            targets=["proxy"],
            video_ids=[video.id],
            mall_ids=[mall],
            pin_ids=[video.pin_id],
        )
        fakes.uow.shares.create(made)
        return made

    ended, running = share(timedelta(days=1)), share(timedelta(days=365))
    reprocess(Reprocess(video_ids=[video.id]), fakes.deps)
    assert len(fakes.uow.reprocessing.rows) == 1
    for row in fakes.uow.reprocessing.rows.values():
        row["requested_at"] = fakes.clock()
    fakes.clock.advance(timedelta(days=32))

    sweep(fakes, batch_size=1)

    assert set(fakes.uow.shares.rows) == {running.id}
    assert ended.id not in fakes.uow.shares.rows
    assert fakes.uow.reprocessing.rows == {}
