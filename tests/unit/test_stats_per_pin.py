"""Statistics per pin on fakes: stats(pin_id=...), stats(by_pin=true), scope and trash."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

import handlers.stats as stats_handlers
from handlers import get_stats
from handlers.access import Scope
from schemas import GetStats, PinFigures
from tests.unit.fakes import T0, Fakes, make_video

MALL_A, MALL_B = uuid.uuid4(), uuid.uuid4()
# Pin ids in a known order, so ties in storage have a known order too.
PIN_1, PIN_2, PIN_3 = sorted(uuid.uuid4() for _ in range(3))


def video(mall_id, pin_id, size: int, pin_name: str, **fields):
    return make_video(
        mall_id=mall_id,
        pin_id=pin_id,
        pin_name=pin_name,
        file_size_bytes=size,
        proxy_size_bytes=0,
        duration_seconds=10.0,
        **fields,
    )


@pytest.fixture
def fakes() -> Fakes:
    """Pin 1 (two videos) and pin 2 in mall A, pin 3 in mall B."""
    fakes = Fakes()
    fakes.add_videos(
        video(MALL_A, PIN_1, 100, "Entrance"),
        video(MALL_A, PIN_1, 200, "Entrance", processing_status="failed"),
        video(MALL_A, PIN_2, 500, "Food court"),
        video(MALL_B, PIN_3, 300, "Parking"),
    )
    return fakes


def as_(fakes: Fakes, scope: Scope):
    return replace(fakes.deps, scope=scope)


def figures(stats) -> tuple:
    return (stats.mall_id, stats.pin_id, stats.total_videos, stats.total_storage_bytes)


def test_a_pins_figure_covers_only_that_pin(fakes):
    stats = get_stats(GetStats(pin_id=str(PIN_1)), fakes.deps)

    assert figures(stats) == (None, PIN_1, 2, 300)
    assert (stats.by_status.completed, stats.by_status.failed) == (1, 1)
    assert stats.total_duration_seconds == 20.0
    assert stats.model_dump(mode="json")["pin_id"] == str(PIN_1)
    assert "pins" not in stats.model_dump(mode="json")


def test_an_admins_pin_figure_is_cached_per_pin(fakes):
    first = get_stats(GetStats(pin_id=str(PIN_1)), fakes.deps)
    transactions = fakes.uow.transactions

    assert get_stats(GetStats(pin_id=str(PIN_1)), fakes.deps) == first
    assert fakes.uow.transactions == transactions and PIN_1 in fakes.cache.pins


def test_pin_id_and_mall_id_together_are_intersected(fakes):
    inside = get_stats(GetStats(pin_id=str(PIN_1), mall_id=str(MALL_A)), fakes.deps)
    apart = get_stats(GetStats(pin_id=str(PIN_1), mall_id=str(MALL_B)), fakes.deps)

    assert figures(inside) == (MALL_A, PIN_1, 2, 300)
    assert figures(apart) == (MALL_B, PIN_1, 0, 0)


def test_without_pin_id_or_by_pin_the_answer_has_its_v1_keys(fakes):
    dumped = get_stats(GetStats(), fakes.deps).model_dump(mode="json")

    assert "pin_id" not in dumped and "pins" not in dumped
    assert dumped["total_videos"] == 4


def test_by_pin_lists_each_pin_largest_storage_first_with_its_name(fakes):
    stats = get_stats(GetStats(by_pin=True), fakes.deps)

    assert stats.total_videos == 4
    assert stats.pins == [
        PinFigures(
            pin_id=PIN_2,
            pin_name="Food court",
            total_videos=1,
            total_storage_bytes=500,
            total_duration_seconds=10.0,
        ),
        PinFigures(
            pin_id=PIN_1,
            pin_name="Entrance",
            total_videos=2,
            total_storage_bytes=300,
            total_duration_seconds=20.0,
        ),
        PinFigures(
            pin_id=PIN_3,
            pin_name="Parking",
            total_videos=1,
            total_storage_bytes=300,
            total_duration_seconds=10.0,
        ),
    ]


def test_by_pin_within_a_mall_or_a_pin_lists_only_those(fakes):
    in_mall_b = get_stats(GetStats(by_pin=True, mall_id=str(MALL_B)), fakes.deps)
    one_pin = get_stats(GetStats(by_pin=True, pin_id=str(PIN_1)), fakes.deps)

    assert [p.pin_id for p in in_mall_b.pins] == [PIN_3]
    assert [p.pin_id for p in one_pin.pins] == [PIN_1] and one_pin.total_videos == 2


def test_by_pin_lists_at_most_max_pins(fakes, monkeypatch):
    monkeypatch.setattr(stats_handlers, "MAX_PINS", 2)

    stats = get_stats(GetStats(by_pin=True), fakes.deps)

    assert [p.pin_id for p in stats.pins] == [PIN_2, PIN_1]


def test_by_pin_of_nothing_is_an_empty_list_not_an_absent_one():
    stats = get_stats(GetStats(by_pin=True), Fakes().deps)

    assert stats.model_dump(mode="json")["pins"] == []


def test_a_tenant_asking_for_a_pin_outside_its_scope_gets_zeros(fakes):
    tenant = as_(fakes, Scope.tenant([PIN_1]))

    own = get_stats(GetStats(pin_id=str(PIN_1)), tenant)
    other = get_stats(GetStats(pin_id=str(PIN_2)), tenant)
    listed = get_stats(GetStats(by_pin=True), tenant)

    assert figures(own) == (None, PIN_1, 2, 300)
    assert figures(other) == (None, PIN_2, 0, 0)
    assert other.trash.total_videos == 0
    assert [p.pin_id for p in listed.pins] == [PIN_1]


def test_an_operator_sees_the_pins_of_its_malls_only(fakes):
    operator = as_(fakes, Scope.operator([MALL_A]))

    own = get_stats(GetStats(pin_id=str(PIN_2)), operator)
    other = get_stats(GetStats(pin_id=str(PIN_3)), operator)
    listed = get_stats(GetStats(by_pin=True), operator)

    assert figures(own) == (None, PIN_2, 1, 500)
    assert figures(other) == (None, PIN_3, 0, 0)
    assert [p.pin_id for p in listed.pins] == [PIN_2, PIN_1]
    assert listed.total_videos == 3


def test_trashed_videos_are_left_out_of_pin_figures_and_counted_in_the_trash(fakes):
    binned = next(v for v in fakes.uow.videos.rows.values() if v.file_size_bytes == 200)
    fakes.uow.videos.trashed[binned.id] = (T0, None)

    stats = get_stats(GetStats(pin_id=str(PIN_1), by_pin=True), fakes.deps)

    assert figures(stats) == (None, PIN_1, 1, 100)
    assert stats.by_status.failed == 0
    assert (stats.trash.total_videos, stats.trash.total_storage_bytes) == (1, 200)
    assert [(p.pin_id, p.total_videos, p.total_storage_bytes) for p in stats.pins] == [
        (PIN_1, 1, 100)
    ]
