"""In-memory fakes of the ``Tags`` and ``Shares`` ports, over the fake video table."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from handlers.access import Scope
from handlers.ports import NewShare, SharedFiles, StoredShare, TagChanges
from schemas.responses import ShareSummary, TagCount
from tests.unit.fake_videos import FakeVideoTable


class FakeTags:
    def __init__(self, table: FakeVideoTable) -> None:
        self.table = table

    def snapshot(self) -> Any:
        return copy.deepcopy((self.table.video_tags, self.table.tag_names))

    def restore(self, saved: Any) -> None:
        self.table.video_tags, self.table.tag_names = saved

    def tag(
        self,
        scope: Scope,
        video_ids: Sequence[UUID],
        add: Sequence[str],
        remove: Sequence[str],
        at: datetime,
        by: str | None,
    ) -> TagChanges:
        found = {}
        for video_id in sorted(set(video_ids)):
            video = self.table.seen(scope, video_id)
            if video is not None and self.table.is_live(video):
                found[video.id] = (video.mall_id, video.pin_id)
        added: list[tuple[UUID, str]] = []
        removed: list[tuple[UUID, str]] = []
        for video_id, (mall_id, _) in found.items():
            carried = self.table.video_tags.setdefault(video_id, {})
            for name in add:
                spelling = self.table.tag_names.setdefault((mall_id, name.lower()), name)
                if name.lower() not in carried:
                    carried[name.lower()] = spelling
                    added.append((video_id, spelling))
            for name in remove:
                if name.lower() in carried:
                    removed.append((video_id, carried.pop(name.lower())))
        return TagChanges(found, added, removed)

    def counts(
        self, scope: Scope, mall_id: UUID | None, prefix: str | None, limit: int
    ) -> list[TagCount]:
        used: Counter[tuple[UUID, str]] = Counter()
        for video_id, carried in self.table.video_tags.items():
            video = self.table.seen(scope, video_id)
            if video is None or not self.table.is_live(video):
                continue
            if mall_id is not None and video.mall_id != mall_id:
                continue
            for lowered in carried:
                if prefix is None or lowered.startswith(prefix.lower()):
                    used[(video.mall_id, lowered)] += 1
        counts = [
            TagCount(name=self.table.tag_names[key], mall_id=key[0], videos=count)
            for key, count in used.items()
        ]
        counts.sort(key=lambda t: (-t.videos, t.name.lower(), t.name, str(t.mall_id)))
        return counts[:limit]


@dataclass(frozen=True)
class FakeShareRow:
    share: NewShare
    views: int = 0
    last_viewed_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    failed_attempts: int = 0
    attempts_since: datetime | None = None

    def stored(self) -> StoredShare:
        return StoredShare(
            id=self.share.id,
            token_hash=self.share.token_hash,
            password_hash=self.share.password_hash,
            expires_at=self.share.expires_at,
            revoked_at=self.revoked_at,
            max_views=self.share.max_views,
            views=self.views,
            label=self.share.label,
            targets=list(self.share.targets),
        )

    def opens(self, now: datetime) -> bool:
        return (
            self.revoked_at is None
            and self.share.expires_at > now
            and (self.share.max_views is None or self.views < self.share.max_views)
        )


class FakeShares:
    def __init__(self, table: FakeVideoTable) -> None:
        self.table = table
        self.rows: dict[UUID, FakeShareRow] = {}

    def snapshot(self) -> Any:
        return dict(self.rows)

    def restore(self, saved: Any) -> None:
        self.rows = saved

    def _seen(self, scope: Scope, row: FakeShareRow) -> bool:
        if scope.role == "admin":
            return True
        if scope.role == "operator":
            return set(row.share.mall_ids) <= scope.malls
        return set(row.share.pin_ids) <= scope.pins

    def create(self, share: NewShare) -> None:
        self.rows[share.id] = FakeShareRow(share)

    def prune(self, before: datetime, limit: int) -> int:
        def ended(row: FakeShareRow) -> datetime:
            if row.revoked_at is None:
                return row.share.expires_at
            return min(row.share.expires_at, row.revoked_at)

        old = [share_id for share_id, row in self.rows.items() if ended(row) < before][:limit]
        for share_id in old:
            del self.rows[share_id]
        return len(old)

    def by_token_hash(self, token_hash: bytes) -> StoredShare | None:
        for row in self.rows.values():
            if row.share.token_hash == token_hash:
                return row.stored()
        return None

    def note_attempt(self, share_id: UUID, now: datetime, window: timedelta) -> int:
        row = self.rows[share_id]
        if row.attempts_since is None or row.attempts_since <= now - window:
            row = replace(row, failed_attempts=1, attempts_since=now)
        else:
            row = replace(row, failed_attempts=row.failed_attempts + 1)
        self.rows[share_id] = row
        return row.failed_attempts

    def forgive_attempt(self, share_id: UUID) -> None:
        row = self.rows[share_id]
        if row.failed_attempts > 0:
            self.rows[share_id] = replace(row, failed_attempts=row.failed_attempts - 1)

    def count_view(self, share_id: UUID, now: datetime) -> StoredShare | None:
        row = self.rows.get(share_id)
        if row is None or not row.opens(now):
            return None
        row = self.rows[share_id] = replace(row, views=row.views + 1, last_viewed_at=now)
        return replace(row.stored(), videos=self._videos(share_id))

    def _videos(self, share_id: UUID) -> list[SharedFiles]:
        shared = []
        for video_id in self.rows[share_id].share.video_ids:
            video = self.table.rows.get(video_id)
            if video is None or not self.table.is_live(video):
                continue
            shared.append(
                SharedFiles(
                    id=video.id,
                    mall_id=video.mall_id,
                    pin_id=video.pin_id,
                    original_filename=video.original_filename,
                    duration_seconds=video.duration_seconds,
                    uploaded_at=video.uploaded_at,
                    recorded_at=video.recorded_at,
                    files={
                        "original": video.original_path,
                        "proxy": video.proxy_path,
                        "thumbnail": video.thumbnail_path,
                    },
                )
            )
        return shared

    def revoke(
        self, scope: Scope, share_id: UUID, at: datetime, by: str | None
    ) -> tuple[UUID, bool] | None:
        row = self.rows.get(share_id)
        if row is None or not self._seen(scope, row):
            return None
        if row.revoked_at is not None:
            return share_id, False
        self.rows[share_id] = replace(row, revoked_at=at, revoked_by=by)
        return share_id, True

    def page(
        self,
        scope: Scope,
        video_id: UUID | None,
        include_expired: bool,
        now: datetime,
        page: int,
        page_size: int,
    ) -> tuple[list[ShareSummary], int]:
        chosen = [
            row
            for row in self.rows.values()
            if self._seen(scope, row)
            and (include_expired or row.opens(now))
            # A deleted video's share_videos rows went with it (the FK cascade).
            and (
                video_id is None
                or (video_id in row.share.video_ids and video_id in self.table.rows)
            )
        ]
        chosen.sort(key=lambda row: (row.share.created_at, row.share.id), reverse=True)
        start = (page - 1) * page_size
        return [self._summary(row) for row in chosen[start : start + page_size]], len(chosen)

    def _summary(self, row: FakeShareRow) -> ShareSummary:
        return ShareSummary(
            share_id=row.share.id,
            label=row.share.label,
            created_by=row.share.created_by,
            created_at=row.share.created_at,
            expires_at=row.share.expires_at,
            revoked_at=row.revoked_at,
            targets=list(row.share.targets),
            video_count=len(row.share.video_ids),
            views=row.views,
            max_views=row.share.max_views,
            last_viewed_at=row.last_viewed_at,
            has_password=row.share.password_hash is not None,
        )
