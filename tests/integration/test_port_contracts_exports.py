"""Port contracts of Exports: create and scope, cancel, the lease (claim, beat, finish,
a stale run taken over), the sweep's reads and the expiry.

As every ``test_port_contracts*.py``: each test takes ``world`` and runs on the in-memory
fake (``[fake]``) and on the real adapter (``[real]``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from handlers.access import UNRESTRICTED, Scope
from handlers.ports import NewExport
from tests.contracts.world import World, world_of
from tests.unit.fakes import T0

LEASE = timedelta(seconds=90)


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    return world_of(request)


def make_export(world: World, videos) -> NewExport:
    export = NewExport(
        id=uuid.uuid4(),
        created_by="alice",
        created_at=T0,
        name="videos-2025-10-31",
        target="proxy",
        include_thumbnails=False,
        video_ids=[v.id for v in videos],
        mall_ids=sorted({v.mall_id for v in videos}),
        pin_ids=sorted({v.pin_id for v in videos}),
        bytes_estimated=1234,
    )
    world.write(lambda uow: uow.exports.create(export))
    return export


def test_an_export_is_seen_only_by_a_scope_that_sees_all_its_videos(world):
    one, two = world.mall(), world.mall()
    videos = [world.video(one), world.video(two)]
    export = make_export(world, videos)

    admin = world.read(lambda uow: uow.exports.get(UNRESTRICTED, export.id))
    both = world.read(lambda uow: uow.exports.get(Scope.operator([one, two]), export.id))
    half = world.read(lambda uow: uow.exports.get(Scope.operator([one]), export.id))
    pins = Scope.tenant([v.pin_id for v in videos])

    assert (admin.status, admin.video_ids, admin.bytes_estimated) == (
        "queued",
        [v.id for v in videos],
        1234,
    )
    assert both is not None and half is None
    assert world.read(lambda uow: uow.exports.get(pins, export.id)) is not None
    assert (
        world.write(lambda uow: uow.exports.cancel(Scope.operator([one]), export.id, T0, "x"))
        is None
    )


def test_cancel_ends_a_queued_export_once(world):
    export = make_export(world, [world.video(world.mall())])

    first = world.write(lambda uow: uow.exports.cancel(UNRESTRICTED, export.id, T0, "Cancelled."))
    second = world.write(lambda uow: uow.exports.cancel(UNRESTRICTED, export.id, T0, "Again."))

    assert (first[0].status, first[1], first[0].error) == ("cancelled", True, "Cancelled.")
    assert (second[0].status, second[1], second[0].error) == ("cancelled", False, "Cancelled.")
    token = uuid.uuid4()
    assert world.write(lambda uow: uow.exports.claim(export.id, token, T0, T0 - LEASE)) is None


def test_one_run_holds_the_lease_until_its_heartbeat_goes_stale(world):
    export = make_export(world, [world.video(world.mall())])
    first, second = uuid.uuid4(), uuid.uuid4()

    claimed = world.write(lambda uow: uow.exports.claim(export.id, first, T0, T0 - LEASE))
    refused = world.write(lambda uow: uow.exports.claim(export.id, second, T0, T0 - LEASE))
    assert (claimed.status, claimed.attempts, refused) == ("running", 1, None)
    assert world.write(lambda uow: uow.exports.set_upload(export.id, first, "exports/k.zip", "u1"))
    beat = T0 + timedelta(seconds=30)
    assert world.write(lambda uow: uow.exports.beat(export.id, first, beat, 2, 99)) == "running"

    later = beat + LEASE + timedelta(seconds=1)
    stale = world.read(lambda uow: uow.exports.stale(later - LEASE, 10))
    taken = world.write(lambda uow: uow.exports.claim(export.id, second, later, later - LEASE))

    assert [e.id for e in stale] == [export.id]
    assert (taken.attempts, taken.upload_id, taken.done, taken.bytes_written) == (2, "u1", 0, 0)
    assert world.write(lambda uow: uow.exports.beat(export.id, first, later, 3, 5)) == "lost"
    assert not world.write(lambda uow: uow.exports.finish(export.id, first, "completed", later))
    assert world.read(lambda uow: uow.exports.live_uploads()) == {"u1"}
    world.write(lambda uow: uow.exports.forget_upload(export.id, "u1"))
    assert world.read(lambda uow: uow.exports.live_uploads()) == set()


def test_a_run_learns_of_a_cancel_at_its_next_beat(world):
    export = make_export(world, [world.video(world.mall())])
    token = uuid.uuid4()
    world.write(lambda uow: uow.exports.claim(export.id, token, T0, T0 - LEASE))
    world.write(lambda uow: uow.exports.cancel(UNRESTRICTED, export.id, T0, "Cancelled."))

    assert world.write(lambda uow: uow.exports.beat(export.id, token, T0, 1, 1)) == "cancelled"
    assert not world.write(lambda uow: uow.exports.finish(export.id, token, "failed", T0))


def test_a_completed_export_expires_when_due(world):
    export = make_export(world, [world.video(world.mall())])
    token = uuid.uuid4()
    world.write(lambda uow: uow.exports.claim(export.id, token, T0, T0 - LEASE))
    expires = T0 + timedelta(hours=72)
    assert world.write(
        lambda uow: uow.exports.finish(
            export.id, token, "completed", T0, size_bytes=4321, expires_at=expires, done=2
        )
    )
    done = world.read(lambda uow: uow.exports.get(UNRESTRICTED, export.id))
    assert (done.status, done.size_bytes, done.bytes_written, done.done) == (
        "completed",
        4321,
        4321,
        2,
    )
    assert done.expires_at == expires and done.upload_id is None

    assert world.read(lambda uow: uow.exports.due_to_expire(expires - timedelta(1e-3), 10)) == []
    due = world.read(lambda uow: uow.exports.due_to_expire(expires, 10))
    world.write(lambda uow: uow.exports.mark_expired([e.id for e in due]))
    assert world.read(lambda uow: uow.exports.get(UNRESTRICTED, export.id)).status == "expired"


def test_a_stale_run_is_failed_only_while_it_is_still_stale(world):
    export = make_export(world, [world.video(world.mall())])
    token = uuid.uuid4()
    world.write(lambda uow: uow.exports.claim(export.id, token, T0, T0 - LEASE))

    fresh = world.write(lambda uow: uow.exports.fail_stale(export.id, T0, T0, "lost"))
    later = T0 + LEASE * 2
    failed = world.write(
        lambda uow: uow.exports.fail_stale(export.id, later - LEASE, later, "lost")
    )

    assert fresh is None
    assert (failed.status, failed.error) == ("failed", "lost")


def test_a_queued_export_is_sent_again_once_per_period_and_never_once_claimed(world):
    queued = make_export(world, [world.video(world.mall())])
    claimed = make_export(world, [world.video(world.mall())])
    world.write(lambda uow: uow.exports.claim(claimed.id, uuid.uuid4(), T0, T0))
    period = timedelta(minutes=5)
    later = T0 + period + timedelta(seconds=1)

    early = world.write(lambda uow: uow.exports.requeue_queued(T0 - timedelta(1e-3), T0, 1000))
    due = world.write(lambda uow: uow.exports.requeue_queued(later - period, later, 1000))
    again = world.write(lambda uow: uow.exports.requeue_queued(later - period, later, 1000))
    after = later + period + timedelta(seconds=1)
    next_period = world.write(lambda uow: uow.exports.requeue_queued(after - period, after, 1000))

    # Other tests' exports share the real table: only this test's two are looked at.
    ours = {queued.id, claimed.id}
    sent = [ours.intersection(ids) for ids in (early, due, again, next_period)]
    assert sent == [set(), {queued.id}, set(), {queued.id}]
    assert world.read(lambda uow: uow.exports.get(UNRESTRICTED, queued.id)).status == "queued"
    run = world.write(lambda uow: uow.exports.claim(queued.id, uuid.uuid4(), after, after))
    assert run is not None and run.status == "running" and run.attempts == 1


def test_exports_that_ended_without_a_zip_to_keep_are_pruned_after_the_cutoff(world):
    def ended(status: str, at) -> NewExport:
        export = make_export(world, [world.video(world.mall())])
        token = uuid.uuid4()
        world.write(lambda uow: uow.exports.claim(export.id, token, T0, T0 - LEASE))
        world.write(
            lambda uow: uow.exports.finish(
                export.id, token, status, at, size_bytes=1, expires_at=at + timedelta(hours=1)
            )
        )
        return export

    failed = ended("failed", T0)
    completed = ended("completed", T0)
    expired = ended("completed", T0)
    world.write(lambda uow: uow.exports.mark_expired([expired.id]))
    cancelled = make_export(world, [world.video(world.mall())])
    world.write(lambda uow: uow.exports.cancel(UNRESTRICTED, cancelled.id, T0, "Cancelled."))
    queued = make_export(world, [world.video(world.mall())])

    assert world.write(lambda uow: uow.exports.prune(T0, 10)) == 0
    assert world.write(lambda uow: uow.exports.prune(T0 + timedelta(days=1), 10)) == 3

    def present(export: NewExport) -> bool:
        return world.read(lambda uow: uow.exports.get(UNRESTRICTED, export.id)) is not None

    assert [present(e) for e in (failed, expired, cancelled)] == [False, False, False]
    # A completed export still has its ZIP (the export sweep expires it), a queued one runs.
    assert present(completed) and present(queued)
