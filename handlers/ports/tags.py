"""Tags: a mall's names for its videos."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from handlers.access import Scope
from schemas.responses import (
    TagCount,
)


@dataclass(frozen=True, slots=True)
class TagChanges:
    """What one ``videos.tag`` did: the videos it found, and the pairs that changed."""

    # Each video found (visible, not in the trash), with its mall and pin.
    found: dict[UUID, tuple[UUID, UUID | None]]
    # (video id, tag name as stored) of each pair added, and of each removed.
    added: list[tuple[UUID, str]]
    removed: list[tuple[UUID, str]]


class Tags(Protocol):
    """Tags of the videos a scope sees. A tag belongs to a mall; its name is compared
    case-insensitively (``lower``, as PostgreSQL's unique index compares it) and kept as
    first written."""

    def tag(
        self,
        scope: Scope,
        video_ids: Sequence[UUID],
        add: Sequence[str],
        remove: Sequence[str],
        at: datetime,
        by: str | None,
    ) -> TagChanges:
        """Add and remove these names on the videos among ``video_ids`` the scope sees
        (not in the trash), creating each mall's tag on first use; pairs already there
        (or already gone) are left alone. The videos found are locked until commit."""
        ...

    def counts(
        self, scope: Scope, mall_id: UUID | None, prefix: str | None, limit: int
    ) -> list[TagCount]:
        """Tags with the number of videos the scope sees (not in the trash) carrying
        each, most used first, then by name; tags none of those carry are left out."""
        ...
