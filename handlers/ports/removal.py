"""Removing videos: delete, trash, restore, and the batches of bulk deletes and sweeps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID

from handlers.access import Scope
from schemas.requests import VideoFilters


@dataclass(frozen=True, slots=True)
class RemovedVideo:
    """What is left of a video row once it is deleted: enough to clean its objects up."""

    id: UUID
    mall_id: UUID
    original_path: str
    proxy_path: str | None
    thumbnail_path: str | None
    # Whose per-pin statistics the deletion makes stale.
    pin_id: UUID | None = None
    # Originals plus proxies it kept in the bucket (what a quota counts).
    stored_bytes: int = field(default=0, compare=False)

    @property
    def object_keys(self) -> list[str]:
        keys = [self.original_path, self.proxy_path, self.thumbnail_path]
        return [k for k in dict.fromkeys(keys) if k]


@dataclass(frozen=True, slots=True)
class TrashedVideo:
    """A video moved into the trash (or out of it): ``trashed_at`` is when it went in."""

    id: UUID
    mall_id: UUID
    pin_id: UUID | None
    trashed_at: datetime
    # False when it was already in the trash (the same answer is given again).
    newly: bool = True


@dataclass(frozen=True, slots=True)
class ExpiredSummary:
    count: int
    bytes: int


@dataclass(frozen=True, slots=True)
class RetentionScope:
    """One mall and the cutoff its videos are swept against."""

    mall_id: UUID
    cutoff: datetime


class Removal(Protocol):
    """Deleting videos and moving them into and out of the trash, one or in batches. Each
    takes the caller's ``Scope``: a video outside it is never touched, nor counted."""

    def delete(self, scope: Scope, video_id: UUID) -> RemovedVideo | None:
        """Delete the row, in the trash or not."""
        ...

    def trash(
        self, scope: Scope, video_id: UUID, at: datetime, by: str | None
    ) -> TrashedVideo | None:
        """Move a video into the trash; one already there is answered as it is."""
        ...

    def restore(self, scope: Scope, video_id: UUID) -> TrashedVideo | None:
        """Take a video out of the trash; None if it is not in it."""
        ...

    def find_selected(self, scope: Scope, video_ids: Sequence[UUID]) -> set[UUID]: ...

    def summarise_selected(self, scope: Scope, filters: VideoFilters) -> ExpiredSummary: ...

    def delete_selected(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        limit: int,
    ) -> list[RemovedVideo]:
        """Delete up to ``limit`` of the selected videos, oldest first, skipping rows
        another remover holds: these ids, or what a list with these filters shows."""
        ...

    def trash_selected(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        limit: int,
        at: datetime,
        by: str | None,
    ) -> list[TrashedVideo]:
        """As ``delete_selected``, moving the videos not yet in the trash into it."""
        ...

    def summarise_trash_due(
        self, scope: Scope, mall_id: UUID | None, before: datetime
    ) -> ExpiredSummary: ...

    def delete_trash_due(
        self, scope: Scope, mall_id: UUID | None, before: datetime, limit: int
    ) -> list[RemovedVideo]:
        """Delete videos trashed before ``before`` (never a held one), oldest first."""
        ...

    def summarise_expired(self, scope: Scope, retention: RetentionScope) -> ExpiredSummary: ...

    def delete_expired(
        self, scope: Scope, retention: RetentionScope, limit: int
    ) -> list[RemovedVideo]: ...

    def delete_for_quota(
        self, scope: Scope, mall_id: UUID, excess: int, limit: int
    ) -> list[RemovedVideo]:
        """Delete the mall's oldest videos (never a held one, at most ``limit``) until
        ``excess`` bytes are freed."""
        ...
