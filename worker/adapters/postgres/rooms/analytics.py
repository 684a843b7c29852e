"""Analytics: daily figures per video, folded from Redis flushes and S3 access logs.

Every write is one multi-row upsert that adds to the figures already there, in the
caller's transaction with the record (a flush id, a log object) that keeps it from
being added twice: the record is inserted first, ``ON CONFLICT DO NOTHING``, and an
insert that wrote nothing means the figures are already in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, delete, func, select, union_all
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
)

daily = VideoDailyAnalytics.__table__
by_mall = MallDailyAnalytics.__table__
by_pin = PinDailyAnalytics.__table__
flushes = AnalyticsFlush.__table__
log_objects = AccessLogObject.__table__
FIGURES = ("stream_urls", "thumbnail_urls", "share_views", "bytes_served")
COLUMN_OF_TARGET = {
    "proxy": "stream_urls",
    "original": "stream_urls",
    "thumbnail": "thumbnail_urls",
    SHARE_VIEW: "share_views",
}
# Rows per upsert statement: well under PostgreSQL's 65,535 bind parameters.
ROWS_PER_STATEMENT = 2000


def _upsert(connection: Connection, table: Any, keys: tuple[str, ...], rows: list[dict]) -> None:
    """Add each row's figures to those of its key, in key order (two folds at once lock
    the same rows in the same order, never in a cycle)."""
    rows = sorted(rows, key=lambda r: tuple(str(r[k]) for k in keys))
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        statement = pg_insert(table).values(rows[start : start + ROWS_PER_STATEMENT])
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[table.c[k] for k in keys],
                set_={name: table.c[name] + statement.excluded[name] for name in FIGURES},
            )
        )


def _rolled_up(rows: Iterable[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    out: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        if any(row[k] is None for k in keys):
            continue
        key = tuple(row[k] for k in keys)
        into = out.get(key)
        if into is None:
            into = out[key] = {
                **{k: row[k] for k in (*keys, "mall_id")},
                **dict.fromkeys(FIGURES, 0),
            }
        for name in FIGURES:
            into[name] += row[name]
    return list(out.values())


def _add(connection: Connection, rows: dict[tuple[UUID, date], dict[str, Any]]) -> None:
    """Add the per-video rows, and the same figures to their mall's and pin's days."""
    if not rows:
        return
    _upsert(connection, daily, ("video_id", "day"), list(rows.values()))
    malls = _rolled_up(rows.values(), ("mall_id", "day"))
    _upsert(connection, by_mall, ("mall_id", "day"), malls)
    _upsert(connection, by_pin, ("pin_id", "day"), _rolled_up(rows.values(), ("pin_id", "day")))


def _row(day: date, video_id: UUID, mall_id: UUID, pin_id: UUID | None) -> dict[str, Any]:
    return {
        "video_id": video_id,
        "day": day,
        "mall_id": mall_id,
        "pin_id": pin_id,
        **dict.fromkeys(FIGURES, 0),
    }


def _scoped(scope: Scope, selection: AnalyticsSelection, table: Any = daily) -> list[Any]:
    """The rows of the range the scope sees and the selection names, in ``table`` (the
    per-video rows, or a rollup by mall or by pin: each has the columns it is asked for)."""
    conditions: list[Any] = [table.c.day.between(selection.from_day, selection.to_day)]
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
        streams = func.sum(daily.c.stream_urls).label("stream_urls")
        served = func.sum(daily.c.bytes_served).label("bytes_served")
        ranked = (
            select(daily.c.video_id, streams, served)
            .where(*_scoped(scope, selection))
            .group_by(daily.c.video_id)
            .order_by(streams.desc(), served.desc(), daily.c.video_id)
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
