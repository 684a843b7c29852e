"""Share links: tokens, their videos, their views."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

from handlers.access import Scope
from schemas.responses import (
    ShareSummary,
)


@dataclass(frozen=True, slots=True)
class NewShare:
    id: UUID
    token_hash: bytes
    password_hash: str | None
    created_by: str | None
    created_at: datetime
    expires_at: datetime
    max_views: int | None
    label: str | None
    targets: list[str]
    # In the order given: the order a resolve lists them.
    video_ids: list[UUID]
    mall_ids: list[UUID]
    pin_ids: list[UUID]


@dataclass(frozen=True, slots=True)
class SharedFiles:
    """A shared video still there and not in the trash, with the keys a resolve signs."""

    id: UUID
    mall_id: UUID
    pin_id: UUID | None
    original_filename: str
    duration_seconds: float | None
    uploaded_at: datetime
    recorded_at: datetime | None
    files: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class StoredShare:
    """A share as a resolve reads it: never the token, only what decides the answer.
    ``videos``: only as ``count_view`` answers it, the videos the view shows."""

    id: UUID
    token_hash: bytes
    password_hash: str | None
    expires_at: datetime
    revoked_at: datetime | None
    max_views: int | None
    views: int
    label: str | None
    targets: list[str]
    videos: list[SharedFiles] = field(default_factory=list)


class Shares(Protocol):
    """Share links. A scope sees (and revokes) a share all of whose malls (operator) or
    pins (tenant) it sees, as they were when the share was made."""

    def create(self, share: NewShare) -> None: ...

    def prune(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` shares that ended (expired, or revoked) before
        ``before``, their video lists with them: how many went."""
        ...

    def by_token_hash(self, token_hash: bytes) -> StoredShare | None:
        """The share with this token's hash, whatever its state."""
        ...

    def note_attempt(self, share_id: UUID, now: datetime, window: timedelta) -> int:
        """Count one password attempt before it is checked (so racing guesses cannot
        all pass the limit), starting a new window when the last one has passed: the
        attempts of the current window, this one included."""
        ...

    def forgive_attempt(self, share_id: UUID) -> None:
        """Take back the attempt just counted: its password was right."""
        ...

    def count_view(self, share_id: UUID, now: datetime) -> StoredShare | None:
        """Count one view, in one conditional statement, if the share still opens
        (not revoked, not expired at ``now``, views under max_views); None otherwise.
        The share answered carries its ``videos`` still there and not in the trash, in
        the order shared, read by the same statement."""
        ...

    def revoke(
        self, scope: Scope, share_id: UUID, at: datetime, by: str | None
    ) -> tuple[UUID, bool] | None:
        """Revoke a share the scope sees: (its id, whether this call revoked it); None
        when the scope sees no such share."""
        ...

    def page(
        self,
        scope: Scope,
        video_id: UUID | None,
        include_expired: bool,
        now: datetime,
        page: int,
        page_size: int,
    ) -> tuple[list[ShareSummary], int]:
        """The shares the scope sees, newest first, and their total: those still
        opening at ``now`` unless ``include_expired``; of one video when given."""
        ...
