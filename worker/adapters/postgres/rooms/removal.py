"""Removal: deleting videos and moving them into and out of the trash, one or in
batches (a selection, what outlived its period, the trash emptied, a quota kept).

Every batch claims its rows with ``FOR UPDATE SKIP LOCKED``: two removers over the same
videos take other rows and never wait on each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, delete, func, select, update

from handlers.access import Scope
from handlers.ports import ExpiredSummary, RemovedVideo, RetentionScope, TrashedVideo
from schemas.requests import VideoFilters
from worker.adapters.postgres.rooms.query import (
    LIVE,
    NOT_HELD,
    OLDEST_FIRST,
    ROW_STORED_BYTES,
    STORED_BYTES,
    TRASHED,
    WITH_FIGURE,
    list_filters,
    readable,
    summary_of,
    videos,
    visible,
)

REMOVED_COLUMNS = (
    videos.c.id,
    videos.c.mall_id,
    videos.c.original_path,
    videos.c.proxy_path,
    videos.c.thumbnail_path,
    videos.c.pin_id,
    ROW_STORED_BYTES.label("stored_bytes"),
)
TRASHED_COLUMNS = (
    videos.c.id,
    videos.c.mall_id,
    videos.c.pin_id,
    readable(videos.c.trashed_at),
)


def _removed(row: Any) -> RemovedVideo:
    *identity, stored = row
    return RemovedVideo(*identity, stored_bytes=int(stored))


def _trashed_video(row: Any, newly: bool) -> TrashedVideo:
    """A row of TRASHED_COLUMNS: its ``trashed_at``, read as UTC wall-clock time (see
    ``query.readable``), is given its zone back, as every datetime the ports hand out
    has one."""
    video_id, mall_id, pin_id, trashed_at = row
    if trashed_at is not None:
        trashed_at = trashed_at.replace(tzinfo=UTC)
    return TrashedVideo(video_id, mall_id, pin_id, trashed_at, newly=newly)


def _selection(
    scope: Scope, video_ids: Sequence[UUID] | None, filters: VideoFilters | None
) -> list[Any]:
    """What a bulk delete takes: these ids (in the trash or not), or what a list with these
    filters shows (not the trash). Never neither: the schema refuses it, and so does this."""
    if video_ids is not None:
        return [videos.c.id.in_(sorted(set(video_ids))), *visible(scope)]
    if filters is None or filters.is_empty():
        raise ValueError("a bulk selection needs video ids or at least one filter")
    return list_filters(scope, filters).conditions()


def _expired(scope: Scope, retention: RetentionScope) -> list[Any]:
    """The mall's videos uploaded before its cutoff, never a held one: through the
    mall's (mall_id, uploaded_at) index."""
    return [
        videos.c.mall_id == retention.mall_id,
        videos.c.uploaded_at < retention.cutoff,
        NOT_HELD,
        *visible(scope),
    ]


def _trash_due(scope: Scope, mall_id: UUID | None, before: datetime) -> list[Any]:
    """Videos trashed before ``before``, never a held one."""
    conditions = [TRASHED, videos.c.trashed_at < before, NOT_HELD, *visible(scope)]
    if mall_id is not None:
        conditions.append(videos.c.mall_id == mall_id)
    return conditions


def _claim(conditions: list[Any], limit: int, order: Any = OLDEST_FIRST) -> Any:
    # Rows another remover has locked are skipped rather than waited for.
    return (
        select(videos.c.id)
        .where(*conditions)
        .order_by(*order)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )


class PostgresRemoval:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _summary(self, conditions: list[Any]) -> ExpiredSummary:
        count, total_bytes = self.connection.execute(summary_of(*conditions)).one()
        return ExpiredSummary(count=count, bytes=int(total_bytes))

    def _delete(self, claimed: Any) -> list[RemovedVideo]:
        rows = self.connection.execute(
            delete(videos).where(videos.c.id.in_(claimed)).returning(*REMOVED_COLUMNS)
        )
        return [_removed(row) for row in rows]

    def delete(self, scope: Scope, video_id: UUID) -> RemovedVideo | None:
        row = self.connection.execute(
            delete(videos)
            .where(videos.c.id == video_id, *visible(scope))
            .returning(*REMOVED_COLUMNS)
        ).first()
        return None if row is None else _removed(row)

    def trash(
        self, scope: Scope, video_id: UUID, at: datetime, by: str | None
    ) -> TrashedVideo | None:
        row = self.connection.execute(
            update(videos)
            .where(videos.c.id == video_id, LIVE, *visible(scope))
            .values(trashed_at=at, trashed_by=by)
            .returning(*TRASHED_COLUMNS)
        ).first()
        if row is not None:
            return _trashed_video(row, newly=True)
        # Already in the trash: the same answer again (a redelivery, a second click).
        row = self.connection.execute(
            select(*TRASHED_COLUMNS).where(videos.c.id == video_id, TRASHED, *visible(scope))
        ).first()
        return None if row is None else _trashed_video(row, newly=False)

    def restore(self, scope: Scope, video_id: UUID) -> TrashedVideo | None:
        # RETURNING gives the new (null) trashed_at: the old one comes from a self-join.
        old = videos.alias("old")
        row = self.connection.execute(
            update(videos)
            .where(videos.c.id == video_id, TRASHED, *visible(scope), old.c.id == videos.c.id)
            .values(trashed_at=None, trashed_by=None)
            .returning(videos.c.id, videos.c.mall_id, videos.c.pin_id, readable(old.c.trashed_at))
        ).first()
        return None if row is None else _trashed_video(row, newly=True)

    def find_selected(self, scope: Scope, video_ids: Sequence[UUID]) -> set[UUID]:
        """The ids among these that the scope sees, in the trash or not."""
        return set(
            self.connection.execute(
                select(videos.c.id).where(*_selection(scope, video_ids, None))
            ).scalars()
        )

    def summarise_selected(self, scope: Scope, filters: VideoFilters) -> ExpiredSummary:
        return self._summary(_selection(scope, None, filters))

    def delete_selected(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        limit: int,
    ) -> list[RemovedVideo]:
        return self._delete(_claim(_selection(scope, video_ids, filters), limit))

    def trash_selected(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        limit: int,
        at: datetime,
        by: str | None,
    ) -> list[TrashedVideo]:
        claim = _claim([*_selection(scope, video_ids, filters), LIVE], limit)
        rows = self.connection.execute(
            update(videos)
            .where(videos.c.id.in_(claim))
            .values(trashed_at=at, trashed_by=by)
            .returning(*TRASHED_COLUMNS)
        )
        return [_trashed_video(row, newly=True) for row in rows]

    def summarise_trash_due(
        self, scope: Scope, mall_id: UUID | None, before: datetime
    ) -> ExpiredSummary:
        return self._summary(_trash_due(scope, mall_id, before))

    def delete_trash_due(
        self, scope: Scope, mall_id: UUID | None, before: datetime, limit: int
    ) -> list[RemovedVideo]:
        order = (videos.c.trashed_at, videos.c.id)
        return self._delete(_claim(_trash_due(scope, mall_id, before), limit, order))

    def summarise_expired(self, scope: Scope, retention: RetentionScope) -> ExpiredSummary:
        return self._summary(_expired(scope, retention))

    def delete_expired(
        self, scope: Scope, retention: RetentionScope, limit: int
    ) -> list[RemovedVideo]:
        # Oldest first; rows another sweep has locked are skipped rather than waited for.
        return self._delete(_claim(_expired(scope, retention), limit))

    def delete_for_quota(
        self, scope: Scope, mall_id: UUID, excess: int, limit: int
    ) -> list[RemovedVideo]:
        """The mall's oldest videos, never a held one, until ``excess`` bytes are freed.

        The candidates are claimed first (a window function cannot share a query with
        FOR UPDATE); the running sum then keeps those needed, the rest are released at
        commit untouched.
        """
        candidates = (
            select(
                videos.c.id,
                videos.c.uploaded_at,
                func.greatest(STORED_BYTES, 0).label("size"),
            )
            .select_from(WITH_FIGURE)
            .where(videos.c.mall_id == mall_id, NOT_HELD, *visible(scope))
            .order_by(*OLDEST_FIRST)
            .limit(limit)
            .with_for_update(of=videos, skip_locked=True)
            .cte("candidates")
        )
        freed_before = (
            func.sum(candidates.c.size).over(order_by=(candidates.c.uploaded_at, candidates.c.id))
            - candidates.c.size
        )
        running = select(candidates.c.id, freed_before.label("freed_before")).subquery("running")
        return self._delete(select(running.c.id).where(running.c.freed_before < excess))
