"""A range cut into whole months, whole days and partial-day edges covers each instant
of the range exactly once, and nothing outside it."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

import pytest

from worker.adapters.postgres.spans import split

ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)


def _instant(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(), tzinfo=UTC)


def _inside(start: datetime | None, end: datetime | None, at: datetime) -> bool:
    return (start is None or at >= start) and (end is None or at < end)


def _parts_holding(spans, at: datetime) -> int:
    ranges = list(spans.edges)
    ranges += [(_instant(a), _instant(b)) for a, b in spans.days]
    if spans.months is not None:
        ranges.append(tuple(_instant(d) for d in spans.months))
    return sum(_inside(start, end, at) for start, end in ranges)


def _random_bound(rng: random.Random) -> datetime:
    at = ORIGIN + timedelta(seconds=rng.randrange(0, 800 * 86400))
    shape = rng.random()
    if shape < 0.3:
        return at.replace(hour=0, minute=0, second=0)
    if shape < 0.4:
        return at.replace(day=1, hour=0, minute=0, second=0)
    return at


@pytest.mark.parametrize("seed", range(40))
def test_every_instant_of_the_range_is_in_exactly_one_part(seed):
    rng = random.Random(seed)
    after = None if rng.random() < 0.2 else _random_bound(rng)
    before = None if rng.random() < 0.2 else _random_bound(rng)
    if after is not None and before is not None and after >= before:
        after, before = before - timedelta(seconds=1), after + timedelta(seconds=1)

    spans = split(after, before)

    if spans is None:
        # No whole day inside: at most two partial days, counted from the index.
        assert after is not None and before is not None
        assert before - after < timedelta(days=2)
        return
    if spans.months is not None:
        assert all(d is None or d.day == 1 for d in spans.months)
    for start, end in spans.edges:
        assert end - start < timedelta(days=1)
    samples = [ORIGIN + timedelta(seconds=rng.randrange(-86400, 802 * 86400)) for _ in range(400)]
    for bound in (after, before):
        if bound is not None:
            samples += [bound, bound - timedelta(microseconds=1), bound + timedelta(seconds=1)]
    for at in samples:
        assert _parts_holding(spans, at) == int(_inside(after, before, at)), (after, before, at)


def test_an_open_range_is_every_month_and_nothing_else():
    spans = split(None, None)
    assert spans is not None
    assert (spans.months, spans.days, spans.edges) == ((None, None), (), ())


def test_a_bound_in_the_last_month_a_datetime_holds_falls_back_to_the_index():
    assert split(datetime(9999, 12, 30, 5, tzinfo=UTC), None) is None


def test_a_range_shorter_than_a_month_is_whole_days_and_its_edges():
    after = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
    before = datetime(2026, 3, 20, 6, tzinfo=UTC)
    spans = split(after, before)
    assert spans is not None
    assert spans.months is None
    assert spans.days == ((date(2026, 3, 11), date(2026, 3, 20)),)
    assert spans.edges == (
        (after, datetime(2026, 3, 11, tzinfo=UTC)),
        (datetime(2026, 3, 20, tzinfo=UTC), before),
    )
