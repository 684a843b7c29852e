"""The removal engine's decisions, retention's rules and reconcile's guards, on fakes."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from handlers import NotFound, delete_video, purge_storage
from handlers.policy import Policy
from handlers.ports import RetentionScope
from handlers.reconcile import ReconcileStorage, reconcile_storage
from handlers.retention import (
    clear_retention,
    list_retention,
    reported_cutoff,
    retention_periods,
    set_legal_hold,
    set_retention,
)
from schemas import DeleteVideo, PurgeStorage
from schemas.requests import ClearRetention, SetLegalHold, SetRetention
from tests.unit.fakes import T0, Fakes, make_video, object_keys

# --- the removal engine -------------------------------------------------------------------


def test_removal_decides_under_the_keys_locks_and_every_key_is_queued_first():
    fakes = Fakes()
    video = make_video()
    fakes.add_videos(video)

    delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)

    assert fakes.uow.deletions.locked == [sorted(object_keys(video))]


def test_a_key_another_row_holds_is_queued_then_kept_and_the_audit_settles_deleted():
    fakes = Fakes()
    first = make_video()
    second = make_video(thumbnail_path=first.thumbnail_path)
    fakes.add_videos(first, second)

    result = delete_video(DeleteVideo(video_id=str(first.id)), fakes.deps)

    assert first.thumbnail_path not in result.files_deleted + result.files_pending
    assert first.thumbnail_path in fakes.store.objects
    assert fakes.uow.deletions.pending() == 0
    assert fakes.uow.audit.outcome_of(first.id) == [("request", "files_deleted")]


def test_purge_settles_the_audit_row_once_the_last_key_of_the_video_is_gone():
    fakes = Fakes()
    video = make_video()
    fakes.add_videos(video)
    fakes.store.unavailable = True
    delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)
    assert fakes.uow.audit.outcome_of(video.id) == [("request", "files_pending")]

    fakes.store.unavailable = False
    fakes.clock.advance(timedelta(hours=1))
    result = purge_storage(PurgeStorage(), fakes.deps)

    assert (result.deleted, result.remaining) == (3, 0)
    assert fakes.uow.audit.outcome_of(video.id) == [("request", "files_deleted")]


def test_purge_now_takes_keys_still_backing_off_and_each_only_once_per_run():
    fakes = Fakes()
    video = make_video()
    fakes.add_videos(video)
    fakes.store.unavailable = True
    delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)

    waiting = purge_storage(PurgeStorage(), fakes.deps)
    still_down = purge_storage(PurgeStorage(due_only=False), fakes.deps)

    assert (waiting.attempted, waiting.remaining) == (0, 3)
    assert (still_down.attempted, still_down.failed, still_down.remaining) == (3, 3, 3)
    assert len(fakes.store.delete_calls) == 2  # the delete's own attempt, then one now
    fakes.store.unavailable = False
    back = purge_storage(PurgeStorage(due_only=False), fakes.deps)
    assert (back.deleted, back.remaining) == (3, 0)


# --- retention rules ----------------------------------------------------------------------


def test_the_request_wins_over_the_malls_own_period_which_wins_over_the_default():
    own, default = uuid.uuid4(), uuid.uuid4()
    policy = Policy(retention_days=90)

    assert retention_periods([(own, 7), (default, None)], None, policy) == [(own, 7), (default, 90)]
    assert retention_periods([(own, 7), (default, None)], 30, policy) == [(own, 30), (default, 30)]


def test_the_reported_cutoff_holds_for_every_mall_swept():
    policy = Policy(retention_days=90)
    scopes = [
        RetentionScope(uuid.uuid4(), T0 - timedelta(days=90)),
        RetentionScope(uuid.uuid4(), T0 - timedelta(days=7)),
    ]

    assert reported_cutoff(scopes, T0, None, policy) == T0 - timedelta(days=7)
    assert reported_cutoff(scopes[:1], T0, None, policy) == T0 - timedelta(days=90)
    assert reported_cutoff([], T0, None, policy) == T0 - timedelta(days=90)
    assert reported_cutoff([], T0, 12, policy) == T0 - timedelta(days=12)


def test_set_and_clear_a_malls_period_and_an_unknown_mall_is_not_found():
    fakes = Fakes()
    video = make_video()
    fakes.add_videos(video)

    periods = set_retention(SetRetention(mall_id=str(video.mall_id), days=30), fakes.deps)
    assert (periods.default_days, periods.malls) == (90, {video.mall_id: 30})
    assert clear_retention(ClearRetention(mall_id=str(video.mall_id)), fakes.deps).malls == {}
    assert list_retention(fakes.deps).malls == {}
    with pytest.raises(NotFound, match="Mall .* not found"):
        set_retention(SetRetention(mall_id=str(uuid.uuid4()), days=30), fakes.deps)


def test_a_legal_hold_on_an_unknown_video_is_not_found():
    fakes = Fakes()
    video = make_video()
    fakes.add_videos(video)

    set_legal_hold(SetLegalHold(video_id=str(video.id)), fakes.deps)
    assert video.id in fakes.uow.videos.held
    with pytest.raises(NotFound, match=f"Video {video.id} not found".replace(".", r"\.")):
        set_legal_hold(SetLegalHold(video_id=str(video.id), held=False), Fakes().deps)


# --- reconcile guards ----------------------------------------------------------------------


def bucket_with_orphans(fakes: Fakes, orphans: int, *, age: timedelta) -> list[str]:
    video = make_video()
    fakes.add_videos(video)
    keys = [f"orphans/{i:02d}.mp4" for i in range(orphans)]
    for key in keys:
        fakes.store.put(key, modified=T0 - age)
    return keys


def test_reconcile_spares_young_orphans_by_the_policys_min_age():
    fakes = Fakes(policy=Policy(reconcile_min_age_seconds=3600.0, reconcile_max_share=1.0))
    young = bucket_with_orphans(fakes, 2, age=timedelta(minutes=10))

    report = reconcile_storage(ReconcileStorage(fix=True), fakes.deps)

    assert (report.orphans, report.orphans_too_young, report.fixed) == (0, 2, 0)
    assert all(key in fakes.store.objects for key in young)


def test_reconcile_refuses_to_fix_more_than_the_share_and_fixes_within_it():
    fakes = Fakes()
    orphans = bucket_with_orphans(fakes, 2, age=timedelta(days=2))

    # 2 orphans of 5 objects is 40 %, over the policy's 10 %.
    refused = reconcile_storage(ReconcileStorage(fix=True), fakes.deps)
    assert refused.refused is not None and "more than the 10% allowed" in refused.refused
    assert all(key in fakes.store.objects for key in orphans)

    fixed = reconcile_storage(ReconcileStorage(fix=True, max_share=0.5), fakes.deps)
    assert (fixed.fixed, fixed.removed, fixed.refused) == (2, 2, None)
    assert not any(key in fakes.store.objects for key in orphans)
    assert fakes.uow.deletions.pending() == 0
