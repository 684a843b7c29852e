"""The deletion queue and the audit log.

``storage_deletions`` holds every key a deleted row leaves behind until S3 confirms its
removal; ``deletion_audit`` holds one row per deleted video and how its files ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    Connection,
    Select,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    update,
)

from handlers.access import Scope
from handlers.ports import PastDeletion, QueuedDeletion, QueuedKey, RemovedVideo
from worker.adapters.postgres.rooms.query import audit, deletions, visible

# One transaction-level advisory lock per key (64-bit hash of its text). Writers of
# videos take the same locks, in the same order, for the keys they register (migration
# 0015's trigger): change both or neither.
#
# The registration fence, 0x767766656E6365 ("vwfence"), a lock no other takes: taken
# shared before the key locks, exclusively by a statement registering more than 1,000
# keys (migration 0015's FENCE), which so holds off every engine until it commits
# instead of taking a lock per key. The same value in both places.
REGISTRATION_FENCE = 0x767766656E6365
TAKE_FENCE = text("SELECT pg_advisory_xact_lock_shared(CAST(:fence AS bigint))")
LOCK_KEYS = text(
    "SELECT count(pg_advisory_xact_lock(h)) FROM ("
    " SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(CAST(:keys AS text[])) AS k"
    " ORDER BY h OFFSET 0) AS ordered"
)


def select_queued() -> Select:
    return select(
        deletions.c.id, deletions.c.object_key, deletions.c.attempts, deletions.c.video_id
    )


class PostgresDeletionQueue:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def enqueue(self, keys: Sequence[QueuedKey], not_before: datetime) -> list[int]:
        if not keys:
            return []
        rows = self.connection.execute(
            insert(deletions).returning(deletions.c.id, sort_by_parameter_order=True),
            [
                {
                    "object_key": key.object_key,
                    "video_id": key.video_id,
                    "mall_id": key.mall_id,
                    "reason": key.reason,
                    "next_attempt_at": not_before,
                }
                for key in keys
            ],
        )
        return list(rows.scalars())

    def claim(self, ids: Sequence[int]) -> list[QueuedDeletion]:
        if not ids:
            return []
        return self._claim(select_queued().where(deletions.c.id.in_(list(ids))), len(ids))

    def claim_due(
        self, now: datetime, limit: int, due_only: bool = True, after_id: int = 0
    ) -> list[QueuedDeletion]:
        stmt = select_queued().where(deletions.c.id > after_id)
        if due_only:
            stmt = stmt.where(deletions.c.next_attempt_at <= now)
        return self._claim(stmt, limit)

    def _claim(self, stmt: Select, limit: int) -> list[QueuedDeletion]:
        rows = self.connection.execute(
            stmt.order_by(deletions.c.id).limit(limit).with_for_update(skip_locked=True)
        )
        return [QueuedDeletion(*row) for row in rows]

    def lock_keys(self, keys: Sequence[str]) -> None:
        # In hash order, so that two removers of overlapping key sets take their locks in
        # the same order and never deadlock; OFFSET 0 keeps the sort below the locking.
        # The fence first, as every engine does: a bulk writer waiting for it holds no
        # key, so it and the key locks never form a cycle.
        if keys:
            self.connection.execute(TAKE_FENCE, {"fence": REGISTRATION_FENCE})
            self.connection.execute(LOCK_KEYS, {"keys": list(keys)})

    def complete(self, ids: Iterable[int]) -> None:
        id_list = list(ids)
        if id_list:
            self.connection.execute(delete(deletions).where(deletions.c.id.in_(id_list)))

    def retry_later(self, failures: dict[int, tuple[str, datetime]]) -> None:
        if not failures:
            return
        self.connection.execute(
            update(deletions)
            .where(deletions.c.id == bindparam("queue_id"))
            .values(
                attempts=deletions.c.attempts + 1,
                last_error=bindparam("error"),
                next_attempt_at=bindparam("retry_at"),
            ),
            [
                {"queue_id": queue_id, "error": error[:500], "retry_at": retry_at}
                for queue_id, (error, retry_at) in failures.items()
            ],
        )

    def queued_among(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        return set(
            self.connection.execute(
                select(deletions.c.object_key).where(deletions.c.object_key.in_(list(keys)))
            ).scalars()
        )

    def pending(self) -> int:
        return self.connection.execute(select(func.count()).select_from(deletions)).scalar_one()

    def stuck(self, min_attempts: int) -> int:
        return self.connection.execute(
            select(func.count()).select_from(deletions).where(deletions.c.attempts >= min_attempts)
        ).scalar_one()


class PostgresDeletionAudit:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def record(
        self,
        removed: Sequence[RemovedVideo],
        reason: str,
        outcome: str,
        request_id: str | None = None,
        actor: str | None = None,
    ) -> None:
        if removed:
            self.connection.execute(
                insert(audit),
                [
                    {
                        "video_id": video.id,
                        "mall_id": video.mall_id,
                        "pin_id": video.pin_id,
                        "reason": reason,
                        "object_keys": video.object_keys,
                        "outcome": outcome,
                        "request_id": request_id,
                        "actor": actor,
                    }
                    for video in removed
                ],
            )

    def settle(self, video_ids: Iterable[UUID]) -> None:
        ids = list(set(video_ids))
        if not ids:
            return
        still_queued = exists().where(deletions.c.video_id == audit.c.video_id)
        self.connection.execute(
            update(audit)
            .where(
                audit.c.video_id.in_(ids),
                audit.c.outcome.in_(("files_queued", "files_pending")),
            )
            .values(
                outcome=case((still_queued, "files_pending"), else_="files_deleted"),
            )
        )

    def prune(self, before: datetime, limit: int) -> int:
        # Rows another pruner holds are skipped: two sweeps at once share the work.
        oldest = (
            select(audit.c.id)
            .where(audit.c.at < before, audit.c.outcome != "files_pending")
            .order_by(audit.c.at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = self.connection.execute(
            delete(audit).where(audit.c.id.in_(oldest.scalar_subquery()))
        )
        return int(result.rowcount or 0)

    def find(self, scope: Scope, video_id: UUID, request_id: str) -> PastDeletion | None:
        found = self.done_by(scope, request_id, [video_id])
        return found[0] if found else None

    def done_by(
        self, scope: Scope, request_id: str, video_ids: Sequence[UUID] | None = None
    ) -> list[PastDeletion]:
        # The scope as every read of videos applies it, on the mall and pin the row had
        # (a row from before pins were recorded has none: no tenant sees it). Newest
        # first, so that a video deleted twice by one request answers for the last time.
        stmt = (
            select(audit.c.video_id, audit.c.object_keys, audit.c.outcome)
            .distinct(audit.c.video_id)
            .where(
                audit.c.request_id == request_id,
                audit.c.actor.is_not_distinct_from(scope.subject),
                *visible(scope, audit),
            )
            .order_by(audit.c.video_id, audit.c.id.desc())
        )
        if video_ids is not None:
            if not video_ids:
                return []
            stmt = stmt.where(audit.c.video_id.in_(sorted(set(video_ids))))
        rows = self.connection.execute(stmt).all()
        if not rows:
            return []
        queued: dict[UUID, list[str]] = {}
        for video_id, key in self.connection.execute(
            select(deletions.c.video_id, deletions.c.object_key).where(
                deletions.c.video_id.in_([row.video_id for row in rows])
            )
        ):
            queued.setdefault(video_id, []).append(key)
        return [
            PastDeletion(
                video_id=row.video_id,
                object_keys=list(row.object_keys),
                still_queued=queued.get(row.video_id, []),
                files_kept=row.outcome == "files_kept",
            )
            for row in rows
        ]
