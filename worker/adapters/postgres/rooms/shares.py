"""Share links: the shares, their videos, their views and their password attempts.

A view is counted by one conditional UPDATE (``views < max_views`` in its WHERE): two
opens racing for a link's last view are serialised by the row's lock, and the second
finds the condition false once the first has committed. Password attempts are counted
the same way, before the password is checked.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Uuid,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from handlers.access import Scope
from handlers.ports import NewShare, SharedFiles, StoredShare
from schemas.responses import ShareSummary
from worker.adapters.postgres.rooms.query import LIVE, readable, videos
from worker.adapters.postgres.tables import Share, ShareVideo

shares = Share.__table__
share_videos = ShareVideo.__table__

STORED_COLUMNS = (
    shares.c.id,
    shares.c.token_hash,
    shares.c.password_hash,
    shares.c.expires_at,
    shares.c.revoked_at,
    shares.c.max_views,
    shares.c.views,
    shares.c.label,
    shares.c.targets,
)
SUMMARY_COLUMNS = (
    shares.c.id.label("share_id"),
    shares.c.label,
    shares.c.created_by,
    shares.c.created_at,
    shares.c.expires_at,
    shares.c.revoked_at,
    shares.c.targets,
    shares.c.video_count,
    shares.c.views,
    shares.c.max_views,
    shares.c.last_viewed_at,
    shares.c.password_hash.is_not(None).label("has_password"),
)


def opens_at(now: Any) -> ColumnElement[bool]:
    """The share still opens: not revoked, not expired, not used up."""
    return and_(
        shares.c.revoked_at.is_(None),
        shares.c.expires_at > now,
        or_(shares.c.max_views.is_(None), shares.c.views < shares.c.max_views),
    )


def seen_by(scope: Scope) -> list[ColumnElement[bool]]:
    """A share the scope sees: every mall (operator) or pin (tenant) of it within the
    scope's, as recorded when it was made."""
    if scope.role == "admin":
        return []
    if scope.role == "operator":
        return [shares.c.mall_ids.contained_by(literal(sorted(scope.malls), ARRAY(Uuid)))]
    return [shares.c.pin_ids.contained_by(literal(sorted(scope.pins), ARRAY(Uuid)))]


def _utc(value: datetime | None) -> datetime | None:
    # ``readable`` loads a UTC wall-clock time (whatever the session's time zone).
    return None if value is None else value.replace(tzinfo=UTC)


def _stored(row: Any) -> StoredShare:
    return StoredShare(
        id=row.id,
        token_hash=bytes(row.token_hash),
        password_hash=row.password_hash,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        max_views=row.max_views,
        views=row.views,
        label=row.label,
        targets=list(row.targets),
    )


class PostgresShares:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def create(self, share: NewShare) -> None:
        self.connection.execute(
            insert(shares).values(
                id=share.id,
                token_hash=share.token_hash,
                password_hash=share.password_hash,
                created_by=share.created_by,
                created_at=share.created_at,
                expires_at=share.expires_at,
                max_views=share.max_views,
                label=share.label,
                targets=share.targets,
                mall_ids=share.mall_ids,
                pin_ids=share.pin_ids,
                video_count=len(share.video_ids),
            )
        )
        self.connection.execute(
            insert(share_videos),
            [
                {"share_id": share.id, "video_id": video_id, "position": position}
                for position, video_id in enumerate(share.video_ids)
            ],
        )

    def prune(self, before: datetime, limit: int) -> int:
        # A share ends at its expiry or its revocation, whichever came first.
        ended = func.least(
            shares.c.expires_at, func.coalesce(shares.c.revoked_at, shares.c.expires_at)
        )
        old = (
            select(shares.c.id).where(ended < before).limit(limit).with_for_update(skip_locked=True)
        )
        result = self.connection.execute(delete(shares).where(shares.c.id.in_(old)))
        return int(result.rowcount or 0)

    def by_token_hash(self, token_hash: bytes) -> StoredShare | None:
        row = self.connection.execute(
            select(*STORED_COLUMNS).where(shares.c.token_hash == token_hash)
        ).first()
        return None if row is None else _stored(row)

    def note_attempt(self, share_id: UUID, now: datetime, window: timedelta) -> int:
        # A window that has passed starts again at this attempt.
        stale = or_(shares.c.attempts_since.is_(None), shares.c.attempts_since <= now - window)
        return int(
            self.connection.execute(
                update(shares)
                .where(shares.c.id == share_id)
                .values(
                    failed_attempts=case((stale, 1), else_=shares.c.failed_attempts + 1),
                    attempts_since=case((stale, now), else_=shares.c.attempts_since),
                )
                .returning(shares.c.failed_attempts)
            ).scalar_one()
        )

    def forgive_attempt(self, share_id: UUID) -> None:
        self.connection.execute(
            update(shares)
            .where(shares.c.id == share_id, shares.c.failed_attempts > 0)
            .values(failed_attempts=shares.c.failed_attempts - 1)
        )

    def count_view(self, share_id: UUID, now: datetime) -> StoredShare | None:
        # One round trip: the counted share, then its live videos by position (a share
        # whose videos are all gone still answers its one row, with no video).
        viewed = (
            update(shares)
            .where(shares.c.id == share_id, opens_at(now))
            .values(views=shares.c.views + 1, last_viewed_at=now)
            .returning(*STORED_COLUMNS)
            .cte("viewed")
        )
        shown = share_videos.join(videos, and_(videos.c.id == share_videos.c.video_id, LIVE))
        rows = self.connection.execute(
            select(
                *viewed.c,
                videos.c.id.label("video_id"),
                videos.c.mall_id,
                videos.c.pin_id,
                videos.c.original_filename,
                videos.c.duration_seconds,
                readable(videos.c.uploaded_at),
                readable(videos.c.recorded_at),
                videos.c.original_path,
                videos.c.proxy_path,
                videos.c.thumbnail_path,
            )
            .select_from(viewed.outerjoin(shown, share_videos.c.share_id == viewed.c.id))
            .order_by(share_videos.c.position)
        ).all()
        if not rows:
            return None
        return replace(
            _stored(rows[0]),
            videos=[
                SharedFiles(
                    id=row.video_id,
                    mall_id=row.mall_id,
                    pin_id=row.pin_id,
                    original_filename=row.original_filename,
                    duration_seconds=row.duration_seconds,
                    uploaded_at=_utc(row.uploaded_at),
                    recorded_at=_utc(row.recorded_at),
                    files={
                        "original": row.original_path,
                        "proxy": row.proxy_path,
                        "thumbnail": row.thumbnail_path,
                    },
                )
                for row in rows
                if row.video_id is not None
            ],
        )

    def revoke(
        self, scope: Scope, share_id: UUID, at: datetime, by: str | None
    ) -> tuple[UUID, bool] | None:
        revoked = self.connection.execute(
            update(shares)
            .where(shares.c.id == share_id, shares.c.revoked_at.is_(None), *seen_by(scope))
            .values(revoked_at=at, revoked_by=by)
            .returning(shares.c.id)
        ).first()
        if revoked is not None:
            return share_id, True
        seen = self.connection.execute(
            select(shares.c.id).where(shares.c.id == share_id, *seen_by(scope))
        ).first()
        return None if seen is None else (share_id, False)

    def page(
        self,
        scope: Scope,
        video_id: UUID | None,
        include_expired: bool,
        now: datetime,
        page: int,
        page_size: int,
    ) -> tuple[list[ShareSummary], int]:
        conditions = list(seen_by(scope))
        if not include_expired:
            conditions.append(opens_at(bindparam("now", now)))
        if video_id is not None:
            conditions.append(
                select(share_videos.c.share_id)
                .where(
                    share_videos.c.share_id == shares.c.id,
                    share_videos.c.video_id == video_id,
                )
                .exists()
            )
        total = self.connection.execute(
            select(func.count()).select_from(shares).where(*conditions)
        ).scalar_one()
        rows = self.connection.execute(
            select(*SUMMARY_COLUMNS)
            .where(*conditions)
            .order_by(shares.c.created_at.desc(), shares.c.id.desc())
            .limit(page_size)
            .offset((page - 1) * page_size)
        )
        return [ShareSummary.model_validate(row._mapping) for row in rows], int(total)
