"""How an upload range ``[after, before)`` is answered from the trigger-kept figures.

``video_counts_monthly`` and ``video_counts_daily`` hold whole UTC months and days; only
the instants of a range that fall in a partial day at its edges are counted from
``videos`` itself (through the list indexes, a day's rows at most on each side). A range
is cut into whole months in its middle, whole days beside them, and those edges:

    after         first whole day   first whole month        last month   before
      |--edge--|------days------|========= months =========|---days---|--edge--|

Every instant of the range is in exactly one part (``tests/unit/test_spans.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

# A bound of None: the range is open on that side.
DayRange = tuple[date | None, date | None]
InstantRange = tuple[datetime | None, datetime | None]


@dataclass(frozen=True)
class Spans:
    """The parts of one range: each a half-open ``[start, end)``."""

    months: DayRange | None
    days: tuple[DayRange, ...]
    edges: tuple[InstantRange, ...]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _first_whole_day(after: datetime) -> date:
    day = after.astimezone(UTC).date()
    return day if _midnight(day) == after else day + timedelta(days=1)


def _first_whole_month(day: date) -> date:
    if day.day == 1:
        return day
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def split(after: datetime | None, before: datetime | None) -> Spans | None:
    """The parts of ``[after, before)``, or None when it holds no whole day: then the
    range is at most two partial days, which the list indexes count directly."""
    try:
        first_day = None if after is None else _first_whole_day(after)
        end_day = None if before is None else before.astimezone(UTC).date()
        first_month = None if first_day is None else _first_whole_month(first_day)
    except (OverflowError, ValueError):  # a bound in the last month a datetime holds
        return None
    if first_day is not None and end_day is not None and first_day >= end_day:
        return None
    end_month = None if end_day is None else end_day.replace(day=1)

    edges: list[InstantRange] = []
    if after is not None and first_day is not None and _midnight(first_day) > after:
        edges.append((after, _midnight(first_day)))
    if before is not None and end_day is not None and _midnight(end_day) < before:
        edges.append((_midnight(end_day), before))

    if first_month is not None and end_month is not None and first_month >= end_month:
        # Less than a whole month between the whole days: the days alone.
        return Spans(months=None, days=((first_day, end_day),), edges=tuple(edges))
    days: list[DayRange] = []
    if first_day is not None and first_day < first_month:  # type: ignore[operator]
        days.append((first_day, first_month))
    if end_month is not None and end_day is not None and end_month < end_day:
        days.append((end_month, end_day))
    return Spans(months=(first_month, end_month), days=tuple(days), edges=tuple(edges))
