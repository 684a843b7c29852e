"""Port contract of Reprocessing (count, recorded, request_batch, unsent, mark_sent).

As every ``test_port_contracts*.py``: each test takes ``world`` and runs on the in-memory
fake (``[fake]``) and on the real adapter (``[real]``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handlers.access import UNRESTRICTED, Scope
from schemas.requests import VideoFilters
from tests.contracts.world import World, world_of
from tests.unit.fakes import T0

RID = "request-1"


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    return world_of(request)


def batch(world, scope=UNRESTRICTED, ids=None, filters=None, after=None, rid=RID, limit=500):
    return world.write(
        lambda uow: uow.reprocessing.request_batch(
            scope, ids, filters, after, rid, ["proxy"], "op", limit
        )
    )


def status_of(world, video_id):
    got = world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, video_id))
    return got.processing_status, got.processing_error


def test_a_batch_sets_back_all_but_processing_videos_in_id_order_and_records_them(world):
    mall = world.mall()
    failed = [world.video(mall, processing_status="failed", processing_error="x") for _ in range(3)]
    busy = world.video(mall, processing_status="processing")
    ids = [v.id for v in [*failed, busy]]

    counted = world.read(lambda uow: uow.reprocessing.count(UNRESTRICTED, ids, None, None, RID))
    first = batch(world, ids=ids, limit=2)
    rest = batch(world, ids=ids, after=first.last_id)

    assert (counted.matched, counted.processing) == (4, 1)
    ordered = sorted(ids)
    assert first.last_id == ordered[1] and first.taken == 2
    assert rest.taken == 2 and rest.last_id == ordered[3]
    assert first.skipped_processing + rest.skipped_processing == 1
    requested = [r.video_id for r in first.requested + rest.requested]
    assert sorted(requested) == sorted(v.id for v in failed)
    assert all(status_of(world, v.id) == ("pending", None) for v in failed)
    assert status_of(world, busy.id)[0] == "processing"
    assert first.requested[0].targets == ["proxy"] and first.requested[0].requested_by == "op"
    assert world.read(lambda uow: uow.reprocessing.recorded(RID)) == 3


def test_what_a_request_recorded_is_not_taken_again_by_it_but_is_by_another(world):
    mall = world.mall()
    videos = [world.video(mall, processing_status="failed") for _ in range(2)]
    filters = VideoFilters(mall_id=mall)

    first = batch(world, filters=filters)
    again = batch(world, filters=filters)
    other = batch(world, filters=filters, rid="request-2")

    assert len(first.requested) == 2
    assert (again.taken, again.last_id) == (0, None)
    assert sorted(r.video_id for r in other.requested) == sorted(v.id for v in videos)


def test_unsent_rows_until_marked_sent(world):
    mall = world.mall()
    videos = [world.video(mall) for _ in range(3)]
    batch(world, ids=[v.id for v in videos])

    owed = world.read(lambda uow: uow.reprocessing.unsent(RID, 10))
    world.write(lambda uow: uow.reprocessing.mark_sent(RID, [owed[0].video_id]))
    left = world.read(lambda uow: uow.reprocessing.unsent(RID, 10))

    assert [r.video_id for r in owed] == sorted(v.id for v in videos)
    assert owed[0].mall_id == mall and owed[0].targets == ["proxy"]
    assert [r.video_id for r in left] == sorted(v.id for v in videos)[1:]


def test_the_trash_and_videos_out_of_scope_are_never_taken(world):
    mall, elsewhere = world.mall(), world.mall()
    mine = world.video(mall)
    trashed = world.video(mall, trashed_at=T0)
    theirs = world.video(elsewhere)
    operator = Scope(role="operator", malls=frozenset({mall}), subject="op")
    ids = [mine.id, trashed.id, theirs.id]

    taken = batch(world, scope=operator, ids=ids)

    assert [r.video_id for r in taken.requested] == [mine.id]


def test_a_rolled_back_batch_records_nothing(world):
    mall = world.mall()
    video = world.video(mall, processing_status="failed")

    def abandon(uow):
        uow.reprocessing.request_batch(
            UNRESTRICTED, [video.id], None, None, RID, ["proxy"], None, 9
        )

    world.read(abandon)

    assert world.read(lambda uow: uow.reprocessing.recorded(RID)) == 0
    assert status_of(world, video.id)[0] == "failed"


def test_requests_made_before_the_cutoff_are_forgotten_a_batch_at_a_time(world):
    mall = world.mall()
    videos = [world.video(mall, processing_status="failed") for _ in range(3)]
    batch(world, ids=[v.id for v in videos])
    now = datetime.now(UTC)

    assert world.write(lambda uow: uow.reprocessing.prune(now - timedelta(days=1), 10)) == 0
    assert world.write(lambda uow: uow.reprocessing.prune(now + timedelta(days=1), 2)) == 2
    assert world.read(lambda uow: uow.reprocessing.recorded(RID)) == 1
    assert world.write(lambda uow: uow.reprocessing.prune(now + timedelta(days=1), 2)) == 1
    assert world.read(lambda uow: uow.reprocessing.recorded(RID)) == 0
