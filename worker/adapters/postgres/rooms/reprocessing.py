"""Re-processing: videos set back to ``pending``, and the messages owed for them.

A batch takes its videos in id order after the last one the run took, locking them as
an UPDATE would (waiting for a writer that holds one, never skipping it: a keyset that
skipped a locked row would never come back to it). Those not ``processing`` are set
back and recorded in ``reprocess_requests`` in the same statement chain, in the
caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, and_, delete, exists, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from handlers.access import Scope
from handlers.ports import ReprocessBatch, ReprocessCount, ReprocessRequest
from schemas.requests import VideoFilters
from worker.adapters.postgres.rooms.query import LIVE, list_filters, videos, visible
from worker.adapters.postgres.tables import ReprocessRequest as ReprocessRow

requests = ReprocessRow.__table__
PROCESSING = videos.c.processing_status == "processing"


def _selection(
    scope: Scope,
    video_ids: Sequence[UUID] | None,
    filters: VideoFilters | None,
    after: UUID | None,
    request_id: str,
) -> list[Any]:
    """These ids (or what a list with these filters shows), visible, not in the trash,
    after ``after``, and not yet recorded by this request."""
    if video_ids is not None:
        conditions = [videos.c.id.in_(sorted(set(video_ids))), LIVE, *visible(scope)]
    elif filters is None or filters.is_empty():
        raise ValueError("a re-processing selection needs video ids or at least one filter")
    else:
        conditions = list_filters(scope, filters).conditions()
    if after is not None:
        conditions.append(videos.c.id > after)
    conditions.append(
        ~exists().where(
            and_(requests.c.request_id == request_id, requests.c.video_id == videos.c.id)
        )
    )
    return conditions


class PostgresReprocessing:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def count(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        after: UUID | None,
        request_id: str,
    ) -> ReprocessCount:
        matched, processing = self.connection.execute(
            select(func.count(), func.count().filter(PROCESSING)).where(
                *_selection(scope, video_ids, filters, after, request_id)
            )
        ).one()
        return ReprocessCount(matched=matched, processing=processing)

    def recorded(self, request_id: str) -> int:
        return self.connection.execute(
            select(func.count()).where(requests.c.request_id == request_id)
        ).scalar_one()

    def request_batch(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        after: UUID | None,
        request_id: str,
        targets: Sequence[str],
        by: str | None,
        limit: int,
    ) -> ReprocessBatch:
        taken = self.connection.execute(
            select(videos.c.id, videos.c.processing_status)
            .where(*_selection(scope, video_ids, filters, after, request_id))
            .order_by(videos.c.id)
            .limit(limit)
            .with_for_update(of=videos)
        ).all()
        if not taken:
            return ReprocessBatch([], 0, None, 0)
        chosen = [row.id for row in taken if row.processing_status != "processing"]
        rows = []
        if chosen:
            rows = self.connection.execute(
                update(videos)
                .where(videos.c.id.in_(chosen))
                .values(processing_status="pending", processing_error=None)
                .returning(videos.c.id, videos.c.mall_id, videos.c.pin_id)
            ).all()
            rows.sort(key=lambda row: row.id)
            self.connection.execute(
                pg_insert(requests)
                .values(
                    [
                        {
                            "request_id": request_id,
                            "video_id": row.id,
                            "targets": list(targets),
                            "requested_by": by,
                        }
                        for row in rows
                    ]
                )
                .on_conflict_do_nothing()
            )
        return ReprocessBatch(
            requested=[
                ReprocessRequest(row.id, row.mall_id, row.pin_id, list(targets), by) for row in rows
            ],
            skipped_processing=len(taken) - len(chosen),
            last_id=taken[-1].id,
            taken=len(taken),
        )

    def prune(self, before: datetime, limit: int) -> int:
        # No order: old rows sit at the front of the table, so the scan stops early; rows
        # another pruner holds are skipped (two sweeps at once share the work).
        old = (
            select(requests.c.request_id, requests.c.video_id)
            .where(requests.c.requested_at < before)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = self.connection.execute(
            delete(requests).where(tuple_(requests.c.request_id, requests.c.video_id).in_(old))
        )
        return int(result.rowcount or 0)

    def unsent(self, request_id: str, limit: int) -> list[ReprocessRequest]:
        rows = self.connection.execute(
            select(
                requests.c.video_id,
                videos.c.mall_id,
                videos.c.pin_id,
                requests.c.targets,
                requests.c.requested_by,
            )
            .join_from(requests, videos, videos.c.id == requests.c.video_id)
            .where(requests.c.request_id == request_id, requests.c.sent_at.is_(None))
            .order_by(requests.c.video_id)
            .limit(limit)
        ).all()
        return [ReprocessRequest(*row) for row in rows]

    def mark_sent(self, request_id: str, video_ids: Sequence[UUID]) -> None:
        if not video_ids:
            return
        self.connection.execute(
            update(requests)
            .where(requests.c.request_id == request_id, requests.c.video_id.in_(list(video_ids)))
            .values(sent_at=func.now())
        )
