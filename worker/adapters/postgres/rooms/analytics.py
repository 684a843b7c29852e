"""Analytics: daily figures per video, folded from Redis flushes and S3 access logs.

Every write is one multi-row upsert that adds to the figures already there, in the
caller's transaction with the record (a flush id, a log object) that keeps it from
being added twice: the record is inserted first, ``ON CONFLICT DO NOTHING``, and an
insert that wrote nothing means the figures are already in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, delete, func, select, text, union_all
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.dialects.postgresql import insert as pg_insert

from handlers.access import Scope
from handlers.ports import (
    SHARE_VIEW,
    AnalyticsSelection,
    DayFigures,
    IngestedLog,
    KeyOwner,
    LogObject,
    Served,
    Tally,
    TopVideoRow,
)
from worker.adapters.postgres.rooms.query import videos
from worker.adapters.postgres.tables import (
    AccessLogObject,
    AnalyticsFlush,
    MallDailyAnalytics,
    PinDailyAnalytics,
    VideoDailyAnalytics,
    VideoSpanAnalytics,
)

daily = VideoDailyAnalytics.__table__
by_mall = MallDailyAnalytics.__table__
by_pin = PinDailyAnalytics.__table__
by_span = VideoSpanAnalytics.__table__
flushes = AnalyticsFlush.__table__
log_objects = AccessLogObject.__table__
FIGURES = ("stream_urls", "thumbnail_urls", "share_views", "bytes_served")
COLUMN_OF_TARGET = {
    "proxy": "stream_urls",
    "original": "stream_urls",
    "thumbnail": "thumbnail_urls",
    SHARE_VIEW: "share_views",
}
# Spans of 2**level days, level 1 to 8, kept once they have ended; with single days
# from the per-video rows, any range of up to 366 days is at most two of each (migration
# 0024).
SPAN_LEVELS = range(1, 9)
EPOCH = date(1970, 1, 1)
NIL = "'00000000-0000-0000-0000-000000000000'::uuid"
# Rows per statement: each is a handful of arrays, whatever its length; this bounds
# what one statement holds in memory and locks.
ROWS_PER_STATEMENT = 10_000
_NAMES = ", ".join(FIGURES)
_SUMS = ", ".join(f"sum({name})" for name in FIGURES)
_ADDED = ", ".join(f"{name} = t.{name} + excluded.{name}" for name in FIGURES)
_SPAN = "daterange(DATE '1970-01-01' + f.first, DATE '1970-01-01' + f.first + (1 << l.level))"
# One statement adds a chunk of per-video rows (sorted by key: two folds at once lock
# the same rows in the same order), the same figures to their malls' and pins' days,
# and stream URLs and bytes of a day whose spans have already been summed (an access
# log read late) to those spans, under the mall and pin the daily row holds (the first
# fold's: a video moved since keeps its day where it was). Arrays in, so the statement
# is the same text for any number of rows.
ADD = text(
    f"""
WITH added AS (
    SELECT * FROM unnest(
        CAST(:video_id AS uuid[]), CAST(:day AS date[]), CAST(:mall_id AS uuid[]),
        CAST(:pin_id AS uuid[]), CAST(:stream_urls AS bigint[]),
        CAST(:thumbnail_urls AS bigint[]), CAST(:share_views AS bigint[]),
        CAST(:bytes_served AS bigint[])
    ) AS a(video_id, day, mall_id, pin_id, {_NAMES})
),
stored AS (
    INSERT INTO video_daily_analytics AS t (video_id, day, mall_id, pin_id, {_NAMES})
    SELECT * FROM added ORDER BY video_id, day
    ON CONFLICT (video_id, day) DO UPDATE SET {_ADDED}
    RETURNING t.video_id, t.day, t.mall_id, t.pin_id
),
malls AS (
    INSERT INTO mall_daily_analytics AS t (mall_id, day, {_NAMES})
    SELECT mall_id, day, {_SUMS} FROM added GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (mall_id, day) DO UPDATE SET {_ADDED}
),
pins AS (
    INSERT INTO pin_daily_analytics AS t (pin_id, day, mall_id, {_NAMES})
    SELECT pin_id, day, min(mall_id::text)::uuid, {_SUMS}
    FROM added WHERE pin_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (pin_id, day) DO UPDATE SET {_ADDED}
)
INSERT INTO video_span_analytics AS t
    (mall_id, span, video_id, pin_id, stream_urls, bytes_served)
SELECT s.mall_id, {_SPAN}, a.video_id, coalesce(s.pin_id, {NIL}),
       sum(a.stream_urls), sum(a.bytes_served)
FROM added a
JOIN stored s USING (video_id, day)
CROSS JOIN generate_series({SPAN_LEVELS[0]}, {SPAN_LEVELS[-1]}) AS l(level)
CROSS JOIN LATERAL (SELECT ((a.day - DATE '1970-01-01') >> l.level) << l.level AS first) AS f
WHERE a.day < :through
  AND DATE '1970-01-01' + f.first + (1 << l.level) <= :through
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4
ON CONFLICT (mall_id, span, video_id, pin_id) DO UPDATE SET
    stream_urls = t.stream_urls + excluded.stream_urls,
    bytes_served = t.bytes_served + excluded.bytes_served
"""  # noqa: S608 - the names are FIGURES'; every value is bound
)
COLUMNS = ("video_id", "day", "mall_id", "pin_id", *FIGURES)
# One span that has ended, summed mall by mall (both indexes lead with the mall): a
# span of two days from the per-video rows of its days, a longer one from its two
# halves, summed before it. Each day's figures are read once, whatever the levels.
_ACTIVE = "SELECT DISTINCT mall_id FROM mall_daily_analytics WHERE day >= :first AND day < :end"
_SUMMED = """
ON CONFLICT (mall_id, span, video_id, pin_id) DO UPDATE SET
    stream_urls = excluded.stream_urls, bytes_served = excluded.bytes_served
"""
CLOSE_FROM_DAYS = text(
    f"""
INSERT INTO video_span_analytics AS t
    (mall_id, span, video_id, pin_id, stream_urls, bytes_served)
SELECT mall_id, daterange(:first, :end), video_id, coalesce(pin_id, {NIL}),
       sum(stream_urls), sum(bytes_served)
FROM video_daily_analytics
WHERE mall_id IN ({_ACTIVE}) AND day >= :first AND day < :end
GROUP BY mall_id, video_id, pin_id
{_SUMMED}"""  # noqa: S608 - constants only; every value is bound
)
CLOSE_FROM_HALVES = text(
    f"""
INSERT INTO video_span_analytics AS t
    (mall_id, span, video_id, pin_id, stream_urls, bytes_served)
SELECT mall_id, daterange(:first, :end), video_id, pin_id, sum(stream_urls), sum(bytes_served)
FROM video_span_analytics
WHERE mall_id IN ({_ACTIVE})
  AND span IN (daterange(:first, :middle), daterange(:middle, :end))
GROUP BY mall_id, video_id, pin_id
{_SUMMED}"""  # noqa: S608 - constants only; every value is bound
)


def spans_covering(first: date, last: date) -> tuple[list[Range[date]], list[date]]:
    """The fewest aligned spans (2 to 256 days) and single days whose union is exactly
    ``first`` to ``last`` (inclusive): at most two of each, taken greedily."""
    low, high = (first - EPOCH).days, (last - EPOCH).days + 1
    spans: list[Range[date]] = []
    days: list[date] = []
    while low < high:
        level = 0
        while level < SPAN_LEVELS[-1] and low % (2 << level) == 0 and low + (2 << level) <= high:
            level += 1
        start = EPOCH + timedelta(days=low)
        if level == 0:
            days.append(start)
        else:
            spans.append(Range(start, start + timedelta(days=1 << level), bounds="[)"))
        low += 1 << level
    return spans, days


def _through(connection: Connection, lock: str = "") -> date:
    return connection.execute(
        text(f"SELECT through FROM analytics_span_progress {lock}")  # noqa: S608 - a constant
    ).scalar_one()


def _add(connection: Connection, rows: dict[tuple[UUID, date], dict[str, Any]]) -> None:
    """Add the per-video rows, and the same figures to their mall's and pin's days and
    to the spans of those days that have already been summed."""
    # Shared: the flush that sums ended spans waits for this fold, or this fold for it,
    # so a day's figures are in its span exactly once.
    through = _through(connection, "FOR SHARE")
    ordered = [rows[key] for key in sorted(rows, key=lambda k: (str(k[0]), k[1]))]
    for start in range(0, len(ordered), ROWS_PER_STATEMENT):
        chunk = ordered[start : start + ROWS_PER_STATEMENT]
        values = {name: [row[name] for row in chunk] for name in COLUMNS}
        connection.execute(ADD, {**values, "through": through})


def _row(day: date, video_id: UUID, mall_id: UUID, pin_id: UUID | None) -> dict[str, Any]:
    return {
        "video_id": video_id,
        "day": day,
        "mall_id": mall_id,
        "pin_id": pin_id,
        **dict.fromkeys(FIGURES, 0),
    }


def _scoped(
    scope: Scope, selection: AnalyticsSelection, table: Any = daily, days: bool = True
) -> list[Any]:
    """The rows the scope sees and the selection names, in ``table`` (the per-video rows,
    their spans, or a rollup by mall or by pin: each has the columns it is asked for);
    of the range's days unless ``days`` is false (spans are chosen by their own column)."""
    conditions: list[Any] = []
    if days:
        conditions.append(table.c.day.between(selection.from_day, selection.to_day))
    if scope.role == "operator":
        conditions.append(table.c.mall_id.in_(sorted(scope.malls)))
    elif scope.role == "tenant":
        conditions.append(table.c.pin_id.in_(sorted(scope.pins)))
    if selection.mall_id is not None:
        conditions.append(table.c.mall_id == selection.mall_id)
    if selection.pin_id is not None:
        conditions.append(table.c.pin_id == selection.pin_id)
    if selection.video_id is not None:
        conditions.append(table.c.video_id == selection.video_id)
    return conditions


class PostgresAnalytics:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def fold(self, flush_id: str, at: datetime, tallies: Sequence[Tally]) -> bool:
        recorded = self.connection.execute(
            pg_insert(flushes)
            .values(flush_id=flush_id, at=at)
            .on_conflict_do_nothing()
            .returning(flushes.c.flush_id)
        ).first()
        if recorded is None:
            return False
        rows: dict[tuple[UUID, date], dict[str, Any]] = {}
        for tally in tallies:
            column = COLUMN_OF_TARGET.get(tally.target)
            if column is None:
                continue
            key = (tally.video_id, tally.day)
            row = rows.get(key) or rows.setdefault(
                key, _row(tally.day, tally.video_id, tally.mall_id, tally.pin_id)
            )
            row[column] += tally.count
        _add(self.connection, rows)
        return True

    def close_spans(self, today: date) -> int:
        # Every flush asks; only the first of a day locks (and waits for folds).
        if today <= _through(self.connection):
            return 0
        through = _through(self.connection, "FOR UPDATE")
        if today <= through:
            return 0
        written = 0
        # Shorter spans first: a longer one is summed from its halves.
        for level in SPAN_LEVELS:
            size = 1 << level
            end = ((through - EPOCH).days // size + 1) * size
            while end <= (today - EPOCH).days:
                first, middle = end - size, end - size // 2
                statement = CLOSE_FROM_DAYS if level == 1 else CLOSE_FROM_HALVES
                written += self.connection.execute(
                    statement,
                    {
                        "first": EPOCH + timedelta(days=first),
                        "middle": EPOCH + timedelta(days=middle),
                        "end": EPOCH + timedelta(days=end),
                    },
                ).rowcount
                end += size
        self.connection.execute(
            text("UPDATE analytics_span_progress SET through = :today"), {"today": today}
        )
        return written

    def prune_flushes(self, before: datetime) -> int:
        return self.connection.execute(delete(flushes).where(flushes.c.at < before)).rowcount

    def owners(self, keys: Sequence[str]) -> dict[str, KeyOwner]:
        if not keys:
            return {}
        wanted = list(keys)
        # One statement; each branch an index look-up on its path column.
        branches = [
            select(column.label("key"), videos.c.id, videos.c.mall_id, videos.c.pin_id).where(
                column.in_(wanted)
            )
            for column in (videos.c.original_path, videos.c.proxy_path, videos.c.thumbnail_path)
        ]
        found: dict[str, KeyOwner] = {}
        for row in self.connection.execute(union_all(*branches)):
            found.setdefault(row.key, KeyOwner(row.id, row.mall_id, row.pin_id))
        return found

    def seen_logs(self, objects: Sequence[LogObject]) -> set[tuple[str, str]]:
        if not objects:
            return set()
        keys = sorted({o.key for o in objects})
        seen: set[tuple[str, str]] = set()
        for start in range(0, len(keys), 1000):
            rows = self.connection.execute(
                select(log_objects.c.key, log_objects.c.etag).where(
                    log_objects.c.key.in_(keys[start : start + 1000])
                )
            )
            seen.update((row.key, row.etag) for row in rows)
        return seen

    def ingest_log(self, record: IngestedLog, served: Sequence[Served]) -> bool:
        recorded = self.connection.execute(
            pg_insert(log_objects)
            .values(
                key=record.key,
                etag=record.etag,
                lines=record.lines,
                bytes_counted=record.bytes_counted,
                garbage_lines=record.garbage_lines,
                ingested_at=record.at,
            )
            .on_conflict_do_nothing()
            .returning(log_objects.c.key)
        ).first()
        if recorded is None:
            return False
        rows: dict[tuple[UUID, date], dict[str, Any]] = {}
        for item in served:
            owner = item.owner
            key = (owner.video_id, item.day)
            row = rows.get(key) or rows.setdefault(
                key, _row(item.day, owner.video_id, owner.mall_id, owner.pin_id)
            )
            row["bytes_served"] += item.bytes
        _add(self.connection, rows)
        return True

    def daily(self, scope: Scope, selection: AnalyticsSelection) -> dict[date, DayFigures]:
        # A mall's or a pin's series is a row a day of its own table; only a video's
        # reads the per-video rows.
        if selection.video_id is not None:
            table, conditions = daily, _scoped(scope, selection)
        elif selection.pin_id is not None or scope.role == "tenant":
            table, conditions = by_pin, _scoped(scope, selection, by_pin)
        else:
            table, conditions = by_mall, _scoped(scope, selection, by_mall)
        rows = self.connection.execute(
            select(table.c.day, *(func.sum(table.c[name]).label(name) for name in FIGURES))
            .where(*conditions)
            .group_by(table.c.day)
        )
        return {
            row.day: DayFigures(**{name: int(getattr(row, name)) for name in FIGURES})
            for row in rows
        }

    def top(self, scope: Scope, selection: AnalyticsSelection, limit: int) -> list[TopVideoRow]:
        if selection.video_id is not None:
            parts = [self._days(scope, selection, None)]
        else:
            # Ended spans (about eight a video for 90 days; a mall's read from the primary
            # key alone), and single days and the days not yet summed from the per-video
            # rows.
            through = _through(self.connection)
            last_summed = min(selection.to_day, through - timedelta(days=1))
            spans: list[Range[date]] = []
            days: list[date] = []
            if selection.from_day <= last_summed:
                spans, days = spans_covering(selection.from_day, last_summed)
            day = max(selection.from_day, through)
            while day <= selection.to_day:
                days.append(day)
                day += timedelta(days=1)
            parts = [self._days(scope, selection, days)]
            if spans:
                parts.append(
                    select(by_span.c.video_id, by_span.c.stream_urls, by_span.c.bytes_served)
                    .where(*_scoped(scope, selection, by_span, days=False))
                    .where(by_span.c.span.in_(spans))
                )
        figures = union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
        streams = func.sum(figures.c.stream_urls).label("stream_urls")
        served = func.sum(figures.c.bytes_served).label("bytes_served")
        ranked = (
            select(figures.c.video_id, streams, served)
            .group_by(figures.c.video_id)
            .order_by(streams.desc(), served.desc(), figures.c.video_id)
            .limit(limit)
            .subquery()
        )
        rows = self.connection.execute(
            select(
                ranked.c.video_id,
                videos.c.original_filename,
                ranked.c.stream_urls,
                ranked.c.bytes_served,
            )
            .select_from(ranked.outerjoin(videos, videos.c.id == ranked.c.video_id))
            .order_by(ranked.c.stream_urls.desc(), ranked.c.bytes_served.desc(), ranked.c.video_id)
        )
        return [
            TopVideoRow(
                row.video_id, row.original_filename, int(row.stream_urls), int(row.bytes_served)
            )
            for row in rows
        ]

    def _days(self, scope: Scope, selection: AnalyticsSelection, days: list[date] | None) -> Any:
        """The per-video rows of ``days`` (all the range's when None) the scope sees."""
        query = select(daily.c.video_id, daily.c.stream_urls, daily.c.bytes_served)
        if days is None:
            return query.where(*_scoped(scope, selection))
        return query.where(*_scoped(scope, selection, days=False)).where(daily.c.day.in_(days))
