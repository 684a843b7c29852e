"""Exports: the rows of ``videos.export``, and the lease a run holds one by.

Every change a run makes is one conditional UPDATE on ``run_token`` (and the status): a
run taken over after its heartbeat went stale, or whose export was cancelled, finds no
row to change and stops. A claim takes a queued export, or a running one whose
heartbeat is older than the lease, in one statement: two runs racing for it are
serialised by the row's lock, and the second finds the condition false.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Uuid,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from handlers.access import Scope
from handlers.ports import NewExport, StoredExport
from worker.adapters.postgres.tables import Export

exports = Export.__table__

COLUMNS = (
    exports.c.id,
    exports.c.status,
    exports.c.name,
    exports.c.target,
    exports.c.include_thumbnails,
    exports.c.video_ids,
    exports.c.bytes_estimated,
    exports.c.attempts,
    exports.c.done,
    exports.c.bytes_written,
    exports.c.object_key,
    exports.c.upload_id,
    exports.c.run_token,
    exports.c.heartbeat_at,
    exports.c.created_at,
    exports.c.finished_at,
    exports.c.expires_at,
    exports.c.size_bytes,
    exports.c.error,
)
ENDED = ("completed", "failed", "cancelled", "expired")


def seen_by(scope: Scope) -> list[ColumnElement[bool]]:
    """An export the scope sees: every mall (operator) or pin (tenant) of it within the
    scope's, as recorded when it was asked for."""
    if scope.role == "admin":
        return []
    if scope.role == "operator":
        return [exports.c.mall_ids.contained_by(literal(sorted(scope.malls), ARRAY(Uuid)))]
    return [exports.c.pin_ids.contained_by(literal(sorted(scope.pins), ARRAY(Uuid)))]


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _stored(row: Any) -> StoredExport:
    return StoredExport(
        id=row.id,
        status=row.status,
        name=row.name,
        target=row.target,
        include_thumbnails=row.include_thumbnails,
        video_ids=list(row.video_ids),
        bytes_estimated=int(row.bytes_estimated),
        attempts=row.attempts,
        done=row.done,
        bytes_written=int(row.bytes_written),
        object_key=row.object_key,
        upload_id=row.upload_id,
        run_token=row.run_token,
        heartbeat_at=_utc(row.heartbeat_at),
        created_at=_utc(row.created_at),  # type: ignore[arg-type]
        finished_at=_utc(row.finished_at),
        expires_at=_utc(row.expires_at),
        size_bytes=None if row.size_bytes is None else int(row.size_bytes),
        error=row.error,
    )


def _held(export_id: UUID, run_token: UUID) -> ColumnElement[bool]:
    return and_(
        exports.c.id == export_id,
        exports.c.run_token == run_token,
        exports.c.status == "running",
    )


class PostgresExports:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def create(self, export: NewExport) -> None:
        self.connection.execute(
            insert(exports).values(
                id=export.id,
                created_by=export.created_by,
                created_at=export.created_at,
                name=export.name,
                target=export.target,
                include_thumbnails=export.include_thumbnails,
                video_ids=export.video_ids,
                mall_ids=export.mall_ids,
                pin_ids=export.pin_ids,
                bytes_estimated=export.bytes_estimated,
            )
        )

    def get(self, scope: Scope, export_id: UUID) -> StoredExport | None:
        row = self.connection.execute(
            select(*COLUMNS).where(exports.c.id == export_id, *seen_by(scope))
        ).first()
        return None if row is None else _stored(row)

    def cancel(
        self, scope: Scope, export_id: UUID, at: datetime, error: str
    ) -> tuple[StoredExport, bool] | None:
        row = self.connection.execute(
            update(exports)
            .where(
                exports.c.id == export_id,
                exports.c.status.in_(("queued", "running")),
                *seen_by(scope),
            )
            .values(status="cancelled", finished_at=at, error=error)
            .returning(*COLUMNS)
        ).first()
        if row is not None:
            return _stored(row), True
        current = self.get(scope, export_id)
        return None if current is None else (current, False)

    def claim(
        self, export_id: UUID, run_token: UUID, now: datetime, stale_before: datetime
    ) -> StoredExport | None:
        row = self.connection.execute(
            update(exports)
            .where(
                exports.c.id == export_id,
                or_(
                    exports.c.status == "queued",
                    and_(exports.c.status == "running", exports.c.heartbeat_at < stale_before),
                ),
            )
            .values(
                status="running",
                run_token=run_token,
                attempts=exports.c.attempts + 1,
                heartbeat_at=now,
                started_at=now,
                done=0,
                bytes_written=0,
            )
            .returning(*COLUMNS)
        ).first()
        return None if row is None else _stored(row)

    def set_upload(
        self, export_id: UUID, run_token: UUID, object_key: str, upload_id: str | None
    ) -> bool:
        changed = self.connection.execute(
            update(exports)
            .where(exports.c.id == export_id, exports.c.run_token == run_token)
            .values(object_key=object_key, upload_id=upload_id)
        ).rowcount
        return changed == 1

    def beat(
        self, export_id: UUID, run_token: UUID, now: datetime, done: int, bytes_written: int
    ) -> str:
        row = self.connection.execute(
            update(exports)
            .where(_held(export_id, run_token))
            .values(heartbeat_at=now, done=done, bytes_written=bytes_written)
            .returning(exports.c.status)
        ).first()
        if row is not None:
            return row.status
        current = self.connection.execute(
            select(exports.c.status, exports.c.run_token).where(exports.c.id == export_id)
        ).first()
        if current is None:
            return "lost"
        return current.status if current.run_token == run_token else "lost"

    def finish(
        self,
        export_id: UUID,
        run_token: UUID,
        status: str,
        now: datetime,
        *,
        error: str | None = None,
        size_bytes: int | None = None,
        expires_at: datetime | None = None,
        done: int | None = None,
    ) -> bool:
        values: dict[str, Any] = {
            "status": status,
            "finished_at": now,
            "heartbeat_at": now,
            "error": error,
            "upload_id": None,
        }
        if size_bytes is not None:
            values.update(size_bytes=size_bytes, bytes_written=size_bytes, expires_at=expires_at)
        if done is not None:
            values["done"] = done
        changed = self.connection.execute(
            update(exports).where(_held(export_id, run_token)).values(**values)
        ).rowcount
        return changed == 1

    def stale(self, stale_before: datetime, limit: int) -> list[StoredExport]:
        rows = self.connection.execute(
            select(*COLUMNS)
            .where(exports.c.status == "running", exports.c.heartbeat_at < stale_before)
            .order_by(exports.c.heartbeat_at)
            .limit(limit)
        )
        return [_stored(row) for row in rows]

    def fail_stale(
        self, export_id: UUID, stale_before: datetime, now: datetime, error: str
    ) -> StoredExport | None:
        row = self.connection.execute(
            update(exports)
            .where(
                exports.c.id == export_id,
                exports.c.status == "running",
                exports.c.heartbeat_at < stale_before,
            )
            .values(status="failed", finished_at=now, error=error)
            .returning(*COLUMNS)
        ).first()
        return None if row is None else _stored(row)

    def requeue_queued(self, sent_before: datetime, now: datetime, limit: int) -> list[UUID]:
        due = (
            select(exports.c.id)
            .where(
                exports.c.status == "queued",
                func.coalesce(exports.c.heartbeat_at, exports.c.created_at) < sent_before,
            )
            .order_by(exports.c.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = self.connection.execute(
            update(exports)
            .where(exports.c.id.in_(due), exports.c.status == "queued")
            .values(heartbeat_at=now)
            .returning(exports.c.id)
        )
        return [row.id for row in rows]

    def live_uploads(self) -> set[str]:
        rows = self.connection.execute(
            select(exports.c.upload_id).where(
                exports.c.upload_id.is_not(None), exports.c.status == "running"
            )
        )
        return {row.upload_id for row in rows}

    def forget_upload(self, export_id: UUID, upload_id: str) -> None:
        self.connection.execute(
            update(exports)
            .where(exports.c.id == export_id, exports.c.upload_id == upload_id)
            .values(upload_id=None)
        )

    def due_to_expire(self, now: datetime, limit: int) -> list[StoredExport]:
        rows = self.connection.execute(
            select(*COLUMNS)
            .where(exports.c.status == "completed", exports.c.expires_at <= now)
            .order_by(exports.c.expires_at)
            .limit(limit)
        )
        return [_stored(row) for row in rows]

    def prune(self, before: datetime, limit: int) -> int:
        # An expired export ended when its ZIP was deleted; a failed or cancelled one
        # when it stopped. A completed one still has its ZIP: the export sweep expires it.
        ended = func.coalesce(exports.c.expires_at, exports.c.finished_at)
        old = (
            select(exports.c.id)
            .where(exports.c.status.in_(("failed", "cancelled", "expired")), ended < before)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = self.connection.execute(delete(exports).where(exports.c.id.in_(old)))
        return int(result.rowcount or 0)

    def mark_expired(self, export_ids: Sequence[UUID]) -> None:
        if export_ids:
            self.connection.execute(
                update(exports)
                .where(exports.c.id.in_(list(export_ids)), exports.c.status == "completed")
                .values(status="expired")
            )
