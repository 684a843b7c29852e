"""Retention settings: each mall's period and storage quota, and legal holds.

What the sweeps read to decide what to remove (``removal.py`` removes it), and what an
operator sets.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from worker.adapters.postgres.rooms.query import (
    STORED_BYTES,
    WITH_FIGURE,
    mall_retention,
    malls,
    videos,
)


class PostgresRetentionSettings:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def mall_retention_days(self, mall_id: UUID | None) -> list[tuple[UUID, int | None]]:
        stmt = select(malls.c.id, mall_retention.c.retention_days).select_from(
            malls.outerjoin(mall_retention, mall_retention.c.mall_id == malls.c.id)
        )
        if mall_id is not None:
            stmt = stmt.where(malls.c.id == mall_id)
        return [
            (row.id, row.retention_days)
            for row in self.connection.execute(stmt.order_by(malls.c.id))
        ]

    def mall_quotas(self, mall_id: UUID | None) -> list[tuple[UUID, int]]:
        stmt = select(mall_retention.c.mall_id, mall_retention.c.max_storage_bytes).where(
            mall_retention.c.max_storage_bytes.is_not(None)
        )
        if mall_id is not None:
            stmt = stmt.where(mall_retention.c.mall_id == mall_id)
        return [
            tuple(row) for row in self.connection.execute(stmt.order_by(mall_retention.c.mall_id))
        ]

    def mall_storage(self, mall_id: UUID) -> int:
        """Originals plus proxies of every video of the mall, in the trash too."""
        return int(
            self.connection.execute(
                select(func.coalesce(func.sum(STORED_BYTES), 0))
                .select_from(WITH_FIGURE)
                .where(videos.c.mall_id == mall_id)
            ).scalar_one()
        )

    def set_mall_retention(
        self, mall_id: UUID, days: int | None = None, max_storage_bytes: int | None = None
    ) -> bool:
        if days is None and max_storage_bytes is None:
            # Nothing to set: the schema refuses it, and so does the table's check.
            raise ValueError("a mall's retention needs days, a storage quota or both")
        if self.connection.execute(select(malls.c.id).where(malls.c.id == mall_id)).first() is None:
            return False
        given = {
            name: value
            for name, value in (("retention_days", days), ("max_storage_bytes", max_storage_bytes))
            if value is not None
        }
        stmt = pg_insert(mall_retention).values(mall_id=mall_id, **given)
        self.connection.execute(
            stmt.on_conflict_do_update(
                index_elements=[mall_retention.c.mall_id],
                set_={**given, "updated_at": func.now()},
            )
        )
        return True

    def clear_mall_retention(self, mall_id: UUID) -> bool:
        removed = self.connection.execute(
            delete(mall_retention)
            .where(mall_retention.c.mall_id == mall_id)
            .returning(mall_retention.c.mall_id)
        ).first()
        return removed is not None

    def set_legal_hold(self, video_id: UUID, held: bool) -> bool:
        changed = self.connection.execute(
            update(videos)
            .where(videos.c.id == video_id)
            .values(legal_hold=held)
            .returning(videos.c.id)
        ).first()
        return changed is not None
