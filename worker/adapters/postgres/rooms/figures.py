"""Figures: the statistics of what a scope sees, summed from the trigger-kept figures
(a few rows per mall, or pin, and month), and their fold."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Double,
    Table,
    cast,
    delete,
    func,
    select,
    text,
)

from handlers.access import Scope
from schemas.responses import PinFigures, StatusCounts, TrashFigures, VideoStats
from worker.adapters.postgres.rooms.query import (
    by_pin,
    counts_mall_monthly,
    counts_monthly,
    figure_tables,
    malls,
    pins,
    visible,
)
from worker.adapters.postgres.tables import FIGURE_MODELS


def _figure(column: Any, *where: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column).filter(*where), 0)


def _stats_columns(t: Table) -> tuple[Any, ...]:
    """Figures of what is not in the trash, and of what is, summed from the trigger-kept
    monthly figures ``t`` (a few rows per mall, or pin, and month): FILTERs of one
    aggregate."""
    live, trashed, status = t.c.trashed.is_(False), t.c.trashed.is_(True), t.c.processing_status
    return (
        _figure(t.c.videos, live).label("total_videos"),
        *(
            _figure(t.c.videos, live, status == name).label(name)
            for name in StatusCounts.model_fields
        ),
        _figure(t.c.stored_bytes, live).label("total_storage_bytes"),
        _figure(t.c.duration_seconds, live).label("total_duration_seconds"),
        _figure(t.c.videos, trashed).label("trash_videos"),
        _figure(t.c.stored_bytes, trashed).label("trash_bytes"),
    )


# A constant of this worker's own (an arbitrary bigint): the fold's advisory lock.
FOLD_LOCK = 0x76776F666F6C64
# Every writer's rows (slot = its pid) of one table moved into slot 0, summed per key
# and period; rows a writer's open transaction holds are skipped.
FOLD = """
WITH moved AS (
    DELETE FROM {table} AS d
    WHERE d.ctid IN (SELECT ctid FROM {table} WHERE slot <> 0 FOR UPDATE SKIP LOCKED)
    RETURNING d.*
), folded AS (
    INSERT INTO {table} AS c ({period}, {key}, slot, videos, stored_bytes, duration_seconds)
    SELECT {period}, {key}, 0, sum(videos), sum(stored_bytes), sum(duration_seconds)
    FROM moved
    GROUP BY {period}, {key}
    ORDER BY {period}, {key}
    ON CONFLICT ON CONSTRAINT {pk} DO UPDATE SET
        videos = c.videos + excluded.videos,
        stored_bytes = c.stored_bytes + excluded.stored_bytes,
        duration_seconds = c.duration_seconds + excluded.duration_seconds
)
SELECT count(*) FROM moved
"""


def _stats_from_row(row: Any, mall_id: UUID | None, at: datetime) -> VideoStats:
    # The figures are numeric sums: whole numbers for counts and bytes.
    return VideoStats(
        mall_id=mall_id,
        total_videos=int(row.total_videos),
        by_status=StatusCounts(
            pending=int(row.pending),
            processing=int(row.processing),
            completed=int(row.completed),
            failed=int(row.failed),
        ),
        total_storage_bytes=int(row.total_storage_bytes),
        total_duration_seconds=float(row.total_duration_seconds),
        refreshed_at=at,
        trash=TrashFigures(
            total_videos=int(row.trash_videos), total_storage_bytes=int(row.trash_bytes)
        ),
    )


def _zero_stats(mall_id: UUID | None, at: datetime) -> VideoStats:
    return VideoStats(
        mall_id=mall_id,
        total_videos=0,
        by_status=StatusCounts(),
        total_storage_bytes=0,
        total_duration_seconds=0.0,
        refreshed_at=at,
    )


class PostgresFigures:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def stats(
        self, scope: Scope, mall_id: UUID | None, at: datetime, pin_id: UUID | None = None
    ) -> VideoStats:
        _, t = figure_tables(by_pin(scope, pin_id))
        stmt = select(*_stats_columns(t)).where(*visible(scope, t))
        if mall_id is not None:
            stmt = stmt.where(t.c.mall_id == mall_id)
        if pin_id is not None:
            stmt = stmt.where(t.c.pin_id == pin_id)
        return _stats_from_row(self.connection.execute(stmt).one(), mall_id, at)

    def pin_figures(
        self, scope: Scope, mall_id: UUID | None, pin_id: UUID | None, limit: int
    ) -> list[PinFigures]:
        t = counts_monthly
        conditions = [t.c.trashed.is_(False), *visible(scope, t)]
        if mall_id is not None:
            conditions.append(t.c.mall_id == mall_id)
        if pin_id is not None:
            conditions.append(t.c.pin_id == pin_id)
        storage = func.sum(t.c.stored_bytes)
        per_pin = (
            select(
                t.c.pin_id,
                cast(func.sum(t.c.videos), BigInteger).label("total_videos"),
                cast(storage, BigInteger).label("total_storage_bytes"),
                cast(func.sum(t.c.duration_seconds), Double).label("total_duration_seconds"),
            )
            .where(*conditions)
            .group_by(t.c.pin_id)
            # A pin whose videos are all gone keeps rows of zeros until they are folded.
            .having(func.sum(t.c.videos) > 0)
            .order_by(storage.desc(), t.c.pin_id)
            .limit(limit)
            .subquery("per_pin")
        )
        rows = self.connection.execute(
            select(per_pin, pins.c.name.label("pin_name"))
            .select_from(per_pin.outerjoin(pins, pins.c.id == per_pin.c.pin_id))
            .order_by(per_pin.c.total_storage_bytes.desc(), per_pin.c.pin_id)
        )
        return [PinFigures.model_validate(row._mapping) for row in rows]

    def stats_per_pin(
        self, scope: Scope, pin_ids: Sequence[UUID], at: datetime
    ) -> dict[UUID, VideoStats]:
        wanted = sorted(set(pin_ids))
        if not wanted:
            return {}
        t = counts_monthly
        stmt = (
            select(t.c.pin_id, *_stats_columns(t))
            .where(t.c.pin_id.in_(wanted), *visible(scope, t))
            .group_by(t.c.pin_id)
        )
        found = {
            row.pin_id: _stats_from_row(row, None, at) for row in self.connection.execute(stmt)
        }
        return {pin_id: found.get(pin_id) or _zero_stats(None, at) for pin_id in wanted}

    def fold_figures(self) -> int:
        """One fold at a time (an advisory lock; a second refresh skips it), and it never
        waits: rows a writer holds are skipped, left for the next fold. A writer that
        meets a row being folded waits for the fold's commit and then writes a new row
        (ON CONFLICT retries its insert), so no change is lost or counted twice."""
        if not self.connection.execute(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": FOLD_LOCK}
        ).scalar_one():
            return 0
        folded = 0
        for model in FIGURE_MODELS:
            table = model.__table__
            folded += self.connection.execute(
                text(
                    FOLD.format(
                        table=table.name,
                        period=model.period,
                        key=", ".join(model.key_columns),
                        pk=table.primary_key.name,
                    )
                )
            ).scalar_one()
            c = table.c
            self.connection.execute(
                delete(table).where(
                    c.slot == 0, c.videos == 0, c.stored_bytes == 0, c.duration_seconds == 0
                )
            )
        return folded

    def stats_per_mall(self, at: datetime) -> list[VideoStats]:
        # Malls with no video left still get their zeros, so a mall whose last video just
        # went is not cached stale.
        t = counts_mall_monthly
        stmt = select(t.c.mall_id, *_stats_columns(t)).group_by(t.c.mall_id)
        found = {
            row.mall_id: _stats_from_row(row, row.mall_id, at)
            for row in self.connection.execute(stmt)
        }
        for mall_id in self.connection.execute(select(malls.c.id)).scalars():
            if mall_id not in found:
                found[mall_id] = _zero_stats(mall_id, at)
        return list(found.values())
