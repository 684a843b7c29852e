"""Port contracts of analytics: the room (fold, prune_flushes, owners, seen_logs,
ingest_log, daily, top) and the buffer (add, take, read, drop).

As every ``test_port_contracts*.py``: each test runs on the in-memory fake (``[fake]``)
and on the real adapter (``[real]``).
"""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import text

from handlers.access import UNRESTRICTED, Scope
from handlers.ports import (
    SHARE_VIEW,
    AnalyticsSelection,
    IngestedLog,
    KeyOwner,
    LogObject,
    Served,
    Tally,
)
from tests.contracts.world import World, world_of
from tests.unit.fake_analytics import FakeAnalyticsBuffer
from tests.unit.fakes import T0

DAY = date(2025, 10, 31)
ALL = AnalyticsSelection(None, None, None, DAY - timedelta(days=6), DAY)


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    return world_of(request)


@pytest.fixture(params=["fake", "real"])
def buffer(request: pytest.FixtureRequest):
    if request.param == "fake":
        yield FakeAnalyticsBuffer()
        return
    from worker.adapters.analytics_buffer import RedisAnalyticsBuffer

    client = request.getfixturevalue("redis_client")
    key = f"videoworker:test-analytics:{uuid.uuid4()}"
    yield RedisAnalyticsBuffer(client, key)
    for leftover in client.scan_iter(key + "*"):
        client.delete(leftover)


def fold(world, flush_id, tallies, at=T0):
    return world.write(lambda uow: uow.analytics.fold(flush_id, at, tallies))


def test_a_fold_adds_per_video_and_day_and_the_same_flush_id_adds_nothing(world):
    mall = world.mall()
    v = world.video(mall)
    tallies = [
        Tally(DAY, v.id, v.mall_id, v.pin_id, "proxy", 3),
        Tally(DAY, v.id, v.mall_id, v.pin_id, "original", 1),
        Tally(DAY, v.id, v.mall_id, v.pin_id, "thumbnail", 2),
        Tally(DAY, v.id, v.mall_id, v.pin_id, SHARE_VIEW, 1),
        Tally(DAY - timedelta(days=1), v.id, v.mall_id, v.pin_id, "proxy", 5),
    ]

    assert fold(world, "f1", tallies) is True
    assert fold(world, "f1", tallies) is False
    assert fold(world, "f2", tallies[:1]) is True

    days = world.read(lambda uow: uow.analytics.daily(UNRESTRICTED, ALL))
    assert days[DAY].stream_urls == 7 and days[DAY].thumbnail_urls == 2
    assert days[DAY].share_views == 1 and days[DAY].bytes_served == 0
    assert days[DAY - timedelta(days=1)].stream_urls == 5
    assert set(days) == {DAY, DAY - timedelta(days=1)}


def test_flush_records_older_than_the_cutoff_are_pruned(world):
    fold(world, "old", [], at=T0 - timedelta(days=2))
    fold(world, "new", [], at=T0)
    assert world.write(lambda uow: uow.analytics.prune_flushes(T0 - timedelta(days=1))) == 1
    assert fold(world, "new", []) is False
    assert fold(world, "old", []) is True


def test_owners_finds_each_key_of_a_video_in_one_call(world):
    v = world.video(world.mall())
    keys = [v.original_path, v.proxy_path, v.thumbnail_path, "nobody/else.mp4"]
    owners = world.read(lambda uow: uow.analytics.owners(keys))
    owner = KeyOwner(v.id, v.mall_id, v.pin_id)
    assert owners == {v.original_path: owner, v.proxy_path: owner, v.thumbnail_path: owner}
    assert world.read(lambda uow: uow.analytics.owners([])) == {}


def test_a_log_object_is_ingested_once_by_key_and_etag(world):
    v = world.video(world.mall())
    owner = KeyOwner(v.id, v.mall_id, v.pin_id)
    record = IngestedLog("logs/a", "e1", 10, 300, 1, T0)
    served = [Served(DAY, owner, 100), Served(DAY, owner, 200)]
    objects = [LogObject("logs/a", "e1", 1), LogObject("logs/a", "e2", 1), LogObject("b", "e", 1)]

    assert world.write(lambda uow: uow.analytics.ingest_log(record, served)) is True
    assert world.write(lambda uow: uow.analytics.ingest_log(record, served)) is False
    seen = world.read(lambda uow: uow.analytics.seen_logs(objects))

    assert seen == {("logs/a", "e1")}
    days = world.read(lambda uow: uow.analytics.daily(UNRESTRICTED, ALL))
    assert days[DAY].bytes_served == 300


def test_daily_and_top_see_the_scope_and_a_deleted_videos_history(world):
    mall, other = world.mall(), world.mall()
    a, b, c = world.video(mall), world.video(mall), world.video(other)
    fold(
        world,
        "f",
        [
            Tally(DAY, a.id, a.mall_id, a.pin_id, "proxy", 5),
            Tally(DAY, b.id, b.mall_id, b.pin_id, "proxy", 2),
            Tally(DAY, c.id, c.mall_id, c.pin_id, "proxy", 9),
        ],
    )
    owner_b = KeyOwner(b.id, b.mall_id, b.pin_id)
    world.write(
        lambda uow: uow.analytics.ingest_log(
            IngestedLog("k", "e", 1, 7, 0, T0), [Served(DAY, owner_b, 7)]
        )
    )
    world.write(lambda uow: uow.removal.delete(UNRESTRICTED, a.id))

    operator = Scope.operator([mall])
    tenant = Scope.tenant([c.pin_id])
    top = world.read(lambda uow: uow.analytics.top(operator, ALL, 10))
    assert [(t.video_id, t.original_filename, t.stream_urls, t.bytes_served) for t in top] == [
        (a.id, None, 5, 0),
        (b.id, b.original_filename, 2, 7),
    ]
    assert world.read(lambda uow: uow.analytics.top(operator, ALL, 1))[0].video_id == a.id
    assert world.read(lambda uow: uow.analytics.daily(operator, ALL))[DAY].stream_urls == 7
    assert world.read(lambda uow: uow.analytics.daily(tenant, ALL))[DAY].stream_urls == 9
    one = AnalyticsSelection(None, None, b.id, ALL.from_day, ALL.to_day)
    assert world.read(lambda uow: uow.analytics.daily(UNRESTRICTED, one))[DAY].stream_urls == 2
    by_pin = AnalyticsSelection(None, c.pin_id, None, ALL.from_day, ALL.to_day)
    assert world.read(lambda uow: uow.analytics.daily(operator, by_pin)) == {}
    earlier = AnalyticsSelection(None, None, None, DAY - timedelta(days=9), DAY - timedelta(1))
    assert world.read(lambda uow: uow.analytics.daily(UNRESTRICTED, earlier)) == {}


def test_the_buffer_sets_counts_aside_once_and_keeps_them_until_dropped(buffer):
    video, mall, pin = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    buffer.add(
        [Tally(DAY, video, mall, pin, "proxy", 2), Tally(DAY, video, mall, None, "thumbnail")]
    )
    buffer.add([Tally(DAY, video, mall, pin, "proxy", 1)])

    (first,) = buffer.take()
    buffer.add([Tally(DAY, video, mall, pin, SHARE_VIEW, 1)])
    waiting = buffer.take()

    assert first in waiting and len(waiting) == 2
    assert sorted(buffer.read(first), key=lambda t: t.target) == [
        Tally(DAY, video, mall, pin, "proxy", 3),
        Tally(DAY, video, mall, None, "thumbnail", 1),
    ]
    buffer.drop(first)
    (second,) = buffer.take()
    assert buffer.read(second) == [Tally(DAY, video, mall, pin, SHARE_VIEW, 1)]
    buffer.drop(second)
    assert buffer.take() == []
    assert buffer.read(first) == []


def test_the_series_of_a_mall_a_pin_and_a_video_add_up_alike(world):
    mall = world.mall()
    pin_a, pin_b = world.pin(mall, "A"), world.pin(mall, "B")
    a, b = world.video(mall, pin_a), world.video(mall, pin_b)
    for n, flush_id in enumerate(("f1", "f2"), 1):
        fold(
            world,
            flush_id,
            [
                Tally(DAY, a.id, mall, pin_a, "proxy", n),
                Tally(DAY, b.id, mall, pin_b, "thumbnail", 2 * n),
                Tally(DAY - timedelta(days=2), b.id, mall, pin_b, SHARE_VIEW, n),
            ],
        )
    owner = KeyOwner(a.id, mall, pin_a)
    world.write(
        lambda uow: uow.analytics.ingest_log(
            IngestedLog("k", "e", 1, 9, 0, T0), [Served(DAY, owner, 9)]
        )
    )

    def series(scope, mall_id=None, pin_id=None, video_id=None):
        sel = AnalyticsSelection(mall_id, pin_id, video_id, ALL.from_day, ALL.to_day)
        return {
            day: (f.stream_urls, f.thumbnail_urls, f.share_views, f.bytes_served)
            for day, f in world.read(lambda uow: uow.analytics.daily(scope, sel)).items()
        }

    earlier = DAY - timedelta(days=2)
    assert series(Scope.operator([mall]), mall_id=mall) == {
        DAY: (3, 6, 0, 9),
        earlier: (0, 0, 3, 0),
    }
    assert series(Scope.operator([mall]), pin_id=pin_a) == {DAY: (3, 0, 0, 9)}
    assert series(Scope.operator([uuid.uuid4()]), pin_id=pin_a) == {}
    assert series(Scope.tenant([pin_b])) == {DAY: (0, 6, 0, 0), earlier: (0, 0, 3, 0)}
    assert series(Scope.tenant([pin_b]), mall_id=mall, pin_id=pin_a) == {}
    assert series(UNRESTRICTED, video_id=a.id) == {DAY: (3, 0, 0, 9)}


def _random_figures(rng, videos, first, days, figures):
    """Tallies of two random videos a day, and what each adds to ``figures``
    ((video, day) -> stream URLs; a thumbnail-only day is there with 0)."""
    tallies = []
    for n in range(days):
        day = first + timedelta(days=n)
        for v in rng.sample(videos, 2):
            target = rng.choice(["proxy", "proxy", "original", "thumbnail"])
            count = rng.randint(1, 4)
            tallies.append(Tally(day, v.id, v.mall_id, v.pin_id, target, count))
            streams = 0 if target == "thumbnail" else count
            figures[(v.id, day)] = figures.get((v.id, day), 0) + streams
    return tallies


def _check_ranges(world, rng, mall_id, first, days, figures, ranges=30):
    for _ in range(ranges):
        length = rng.choice([1, 2, 3, 7, 30, 90, 91, 128, 200, 256, 366])
        length = min(length, days)
        start = first + timedelta(days=rng.randint(0, days - length))
        end = start + timedelta(days=length - 1)
        sums: dict = {}
        for (video_id, day), count in figures.items():
            if start <= day <= end:
                sums[video_id] = sums.get(video_id, 0) + count
        expected = sorted(sums.items(), key=lambda item: (-item[1], str(item[0])))
        selection = AnalyticsSelection(mall_id, None, None, start, end)
        top = world.read(lambda uow, s=selection: uow.analytics.top(UNRESTRICTED, s, 10))
        assert [(t.video_id, t.stream_urls) for t in top] == expected, (start, end)


def test_top_over_any_range_sums_exactly_the_days_in_it(world):
    """Ranges of every length and alignment (the room reads spans of 2 to 256 days and
    single days, the fake every day): each answer is the sum of the range's days, in
    the contract's order, and a video with only thumbnails in the range is in it with
    zeros."""
    rng = random.Random(24)
    mall = world.mall()
    videos = [world.video(mall) for _ in range(5)]
    first, figures = DAY - timedelta(days=420), {}
    tallies = _random_figures(rng, videos, first, 421, figures)
    fold(world, "f1", tallies[: len(tallies) // 2])
    fold(world, "f2", tallies[len(tallies) // 2 :])

    _check_ranges(world, rng, mall, first, 421, figures)


def _summed_through(world, day: date) -> date | None:
    """Move the day the real room has summed spans through (the fake sums every answer
    from its days); what it was."""
    engine = getattr(world, "engine", None)
    if engine is None:
        return None
    with engine.begin() as conn:
        was = conn.execute(text("SELECT through FROM analytics_span_progress")).scalar_one()
        conn.execute(text("UPDATE analytics_span_progress SET through = :d"), {"d": day})
    return was


def test_top_is_the_same_before_and_after_spans_are_summed_and_with_figures_come_late(world):
    """Days not summed yet are read day by day; summing the spans that ended changes
    no answer; figures that arrive late for summed days (an access log) are in them."""
    rng = random.Random(7)
    through = date(2031, 1, 1)
    was = _summed_through(world, through)
    try:
        mall = world.mall()
        videos = [world.video(mall) for _ in range(4)]
        first, figures = through - timedelta(days=40), {}
        fold(world, "a", _random_figures(rng, videos, first, 161, figures))
        _check_ranges(world, rng, mall, first, 161, figures)

        world.write(lambda uow: uow.analytics.close_spans(through + timedelta(days=60)))
        _check_ranges(world, rng, mall, first, 161, figures)

        fold(world, "b", _random_figures(rng, videos, first, 161, figures))
        _check_ranges(world, rng, mall, first, 161, figures)

        world.write(lambda uow: uow.analytics.close_spans(through + timedelta(days=161)))
        _check_ranges(world, rng, mall, first, 161, figures)
        again = world.write(lambda uow: uow.analytics.close_spans(through + timedelta(days=161)))
        assert again == 0
    finally:
        if was is not None:
            _summed_through(world, was)


def test_a_video_that_moves_mall_keeps_its_earlier_days_in_the_mall_it_left(world):
    before, after = world.mall(), world.mall()
    v = world.video(before)
    moved_pin = world.video(after).pin_id
    old = [
        Tally(DAY - timedelta(days=n), v.id, before, v.pin_id, "proxy", 1) for n in range(10, 20)
    ]
    new = [Tally(DAY - timedelta(days=n), v.id, after, moved_pin, "proxy", 2) for n in range(10)]
    fold(world, "f1", old)
    fold(world, "f2", new)
    month = AnalyticsSelection(None, None, None, DAY - timedelta(days=29), DAY)

    def top(scope):
        return [
            (t.video_id, t.stream_urls)
            for t in world.read(lambda uow: uow.analytics.top(scope, month, 10))
        ]

    assert top(Scope.operator([before])) == [(v.id, 10)]
    assert top(Scope.operator([after])) == [(v.id, 20)]
    assert top(Scope.tenant([moved_pin])) == [(v.id, 20)]
    whole = AnalyticsSelection(None, None, v.id, month.from_day, month.to_day)
    assert [
        (t.video_id, t.stream_urls)
        for t in world.read(lambda uow: uow.analytics.top(UNRESTRICTED, whole, 10))
    ] == [(v.id, 30)]
