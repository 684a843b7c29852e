"""Port contracts of Figures: statistics per scope, mall and pin, per-pin figures and their fold.

As every ``test_port_contracts*.py``: each test takes ``world`` and runs on the in-memory
fake (``[fake]``) and on the real adapter (``[real]``), so the handlers' unit tests,
which trust the fakes, test what PostgreSQL does.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from handlers.access import UNRESTRICTED, Scope
from schemas.responses import PinFigures, TrashFigures
from tests.contracts.world import World, world_of
from tests.integration.test_port_contracts import (
    listed,
    scoped_world,
    stats_of,
)
from tests.unit.fakes import T0

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    return world_of(request)


# Statistics


def test_stats_count_each_status_and_storage_is_originals_plus_proxies(world):
    mall_a, mall_b = world.mall(), world.mall()
    world.video(mall_a, file_size_bytes=1_000, proxy_size_bytes=100, duration_seconds=60.5)
    world.video(mall_a, proxy=False, file_size_bytes=2_000, duration_seconds=None)
    world.video(mall_a, proxy=False, processing_status="processing", file_size_bytes=3_000)
    world.video(mall_b, processing_status="failed", file_size_bytes=4_000, proxy_size_bytes=400)

    def read(mall_id):
        return world.read(lambda uow: uow.figures.stats(UNRESTRICTED, mall_id, T0))

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
    world.write(lambda uow: uow.removal.delete(UNRESTRICTED, last.id))

    per_mall = world.read(lambda uow: uow.figures.stats_per_mall(T0))

    assert sorted(per_mall, key=lambda s: s.mall_id) == sorted(
        [
            stats_of(kept, 1, completed=1, storage=1_100, secs=120.5),
            stats_of(emptied, 0),
            stats_of(never_used, 0),
        ],
        key=lambda s: s.mall_id,
    )


def test_stats_leave_the_trash_out_of_every_figure_and_count_it_in_trash(world):
    mall = world.mall()
    world.video(mall, file_size_bytes=1_000, proxy_size_bytes=100, duration_seconds=60.0)
    world.video(mall, proxy=False, file_size_bytes=2_000, duration_seconds=30.0, trashed_at=T0)
    world.video(
        mall, processing_status="failed", file_size_bytes=3_000, proxy_size_bytes=300, trashed_at=T0
    )

    figures = world.read(lambda uow: uow.figures.stats(UNRESTRICTED, mall, T0))

    assert figures.total_videos == 1
    assert figures.by_status.model_dump() == {
        "pending": 0,
        "processing": 0,
        "completed": 1,
        "failed": 0,
    }
    assert (figures.total_storage_bytes, figures.total_duration_seconds) == (1_100, 60.0)
    assert figures.trash == TrashFigures(total_videos=2, total_storage_bytes=5_300)
    everywhere = world.read(lambda uow: uow.figures.stats(UNRESTRICTED, None, T0))
    assert (everywhere.total_videos, everywhere.trash) == (1, figures.trash)
    per_mall = world.read(lambda uow: uow.figures.stats_per_mall(T0))
    assert [(s.mall_id, s.total_videos, s.trash) for s in per_mall] == [(mall, 1, figures.trash)]


def test_stats_of_a_pin_intersect_with_the_mall_and_the_scope_and_per_pin_count_the_trash(world):
    mall_a, mall_b = world.mall(), world.mall()
    pin_a1, pin_a2 = world.pin(mall_a, "A1"), world.pin(mall_a, "A2")
    world.video(mall_a, pin_a1, file_size_bytes=1_000)
    world.video(mall_a, pin_a1, file_size_bytes=2_000, trashed_at=T0)
    world.video(mall_a, pin_a2, file_size_bytes=4_000)

    def stats(scope, mall_id, pin_id):
        return world.read(lambda uow: uow.figures.stats(scope, mall_id, T0, pin_id=pin_id))

    of_pin = stats(UNRESTRICTED, None, pin_a1)
    assert (of_pin.total_videos, of_pin.total_storage_bytes) == (1, 1_100)
    assert of_pin.trash == TrashFigures(total_videos=1, total_storage_bytes=2_100)
    assert stats(UNRESTRICTED, mall_a, pin_a1) == of_pin.model_copy(update={"mall_id": mall_a})
    assert stats(UNRESTRICTED, mall_b, pin_a1).total_videos == 0
    assert stats(Scope.tenant([pin_a2]), None, pin_a1).trash == TrashFigures()
    assert stats(Scope.operator([mall_a]), None, pin_a2).total_storage_bytes == 4_100

    per_pin = world.read(lambda uow: uow.figures.stats_per_pin(UNRESTRICTED, [pin_a1], T0))
    assert per_pin[pin_a1] == of_pin


def test_stats_cover_what_the_scope_sees_and_per_pin_figures_zero_for_a_pin_with_none(world):
    mall_a, mall_b, (pin_a1, pin_a2, pin_b1), v = scoped_world(world)
    empty_pin = world.pin(mall_a, "empty")

    def stats(scope, mall_id=None):
        return world.read(lambda uow: uow.figures.stats(scope, mall_id, T0))

    operator_a = Scope.operator([mall_a])
    assert stats(operator_a) == stats(UNRESTRICTED, mall_a).model_copy(update={"mall_id": None})
    assert stats(operator_a, mall_b).total_videos == 0
    tenant = Scope.tenant([pin_a1, pin_b1])
    assert stats(tenant).total_videos == 3
    assert stats(tenant, mall_b) == stats(UNRESTRICTED, mall_b)
    assert stats(Scope.tenant([])).total_videos == 0

    per_pin = world.read(
        lambda uow: uow.figures.stats_per_pin(UNRESTRICTED, [pin_a1, empty_pin, pin_a1], T0)
    )
    assert sorted(per_pin) == sorted([pin_a1, empty_pin])
    assert (per_pin[pin_a1].total_videos, per_pin[pin_a1].by_status.pending) == (2, 1)
    assert per_pin[empty_pin] == stats_of(None, 0)
    # A pin outside the scope counts nothing, whatever is asked.
    outside = world.read(
        lambda uow: uow.figures.stats_per_pin(Scope.tenant([pin_a2]), [pin_a1], T0)
    )
    assert outside == {pin_a1: stats_of(None, 0)}
    assert world.read(lambda uow: uow.figures.stats_per_pin(UNRESTRICTED, [], T0)) == {}


# Per-pin figures


def pin_figures(world, scope=UNRESTRICTED, mall_id=None, pin_id=None, limit=1000):
    return world.read(lambda uow: uow.figures.pin_figures(scope, mall_id, pin_id, limit))


def test_pin_figures_are_largest_storage_first_then_by_pin_id_with_the_pins_name(world):
    mall = world.mall()
    small, big = world.pin(mall, "Small"), world.pin(mall, "Big")
    names = {world.pin(mall, name): name for name in ("Tie one", "Tie two")}
    tied = sorted(names)
    world.video(mall, small, file_size_bytes=500, proxy=False, duration_seconds=10.0)
    world.video(mall, big, file_size_bytes=9_000, proxy_size_bytes=900, duration_seconds=20.0)
    world.video(mall, big, file_size_bytes=1_000, proxy_size_bytes=100, duration_seconds=None)
    for pin in reversed(tied):
        world.video(mall, pin, file_size_bytes=2_000, proxy_size_bytes=200)

    assert pin_figures(world) == [
        PinFigures(
            pin_id=big,
            pin_name="Big",
            total_videos=2,
            total_storage_bytes=11_000,
            total_duration_seconds=20.0,
        ),
        *(
            PinFigures(
                pin_id=pin,
                pin_name=name,
                total_videos=1,
                total_storage_bytes=2_200,
                total_duration_seconds=120.5,
            )
            for pin, name in ((pin, names[pin]) for pin in tied)
        ),
        PinFigures(
            pin_id=small,
            pin_name="Small",
            total_videos=1,
            total_storage_bytes=500,
            total_duration_seconds=10.0,
        ),
    ]
    assert [f.pin_id for f in pin_figures(world, limit=2)] == [big, tied[0]]


def test_pin_figures_take_the_scope_and_the_mall_and_pin_filters_and_leave_the_trash_out(world):
    mall_a, mall_b = world.mall(), world.mall()
    pin_a1, pin_a2, pin_b = world.pin(mall_a, "A1"), world.pin(mall_a, "A2"), world.pin(mall_b)
    world.video(mall_a, pin_a1, file_size_bytes=3_000)
    world.video(mall_a, pin_a1, file_size_bytes=50_000, trashed_at=T0)
    world.video(mall_a, pin_a2, file_size_bytes=2_000)
    world.video(mall_b, pin_b, file_size_bytes=1_000)
    only_trash = world.pin(mall_b, "only trash")
    world.video(mall_b, only_trash, trashed_at=T0)

    def pins(**kwargs):
        return [
            (f.pin_id, f.total_videos, f.total_storage_bytes) for f in pin_figures(world, **kwargs)
        ]

    assert pins() == [(pin_a1, 1, 3_100), (pin_a2, 1, 2_100), (pin_b, 1, 1_100)]
    assert pins(mall_id=mall_b) == [(pin_b, 1, 1_100)]
    assert pins(pin_id=pin_a2) == [(pin_a2, 1, 2_100)]
    assert pins(mall_id=mall_b, pin_id=pin_a2) == []
    assert pins(scope=Scope.operator([mall_a])) == [(pin_a1, 1, 3_100), (pin_a2, 1, 2_100)]
    assert pins(scope=Scope.tenant([pin_b, only_trash])) == [(pin_b, 1, 1_100)]
    assert pins(scope=Scope.tenant([])) == []


# Folding the kept figures


def test_folding_the_figures_changes_no_total_and_no_statistic(world):
    mall = world.mall()
    for hours in (1, 30, 24 * 40):
        world.video(mall, uploaded_at=T0 - hours * HOUR)
    world.video(mall, uploaded_at=T0 - 2 * HOUR, trashed_at=T0 - DAY)
    ranged = {"uploaded_after": (T0 - 45 * DAY).isoformat(), "uploaded_before": T0.isoformat()}

    def figures():
        stats = world.read(lambda uow: uow.figures.stats(UNRESTRICTED, mall, T0))
        return listed(world)[1], listed(world, **ranged)[1], listed(world, trashed=True)[1], stats

    before = figures()
    world.write(lambda uow: uow.figures.fold_figures())

    assert before[:3] == (3, 3, 1)
    assert (before[3].total_videos, before[3].trash.total_videos) == (3, 1)
    assert figures() == before
    # A second fold finds nothing left to fold.
    assert world.write(lambda uow: uow.figures.fold_figures()) == 0
