"""Reading the catalogue: a page and its total, one video, many by id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from handlers.access import Scope
from schemas.requests import ListVideos
from schemas.responses import (
    VideoDetailResponse,
    VideoListItem,
)


@dataclass(frozen=True, slots=True)
class Window:
    """Where a list page starts and how much its total may cost (the defaults: an
    offset page, ``query.page``, and its exact total, as contract v1 lists)."""

    # Keyset: only videos after this (uploaded_at, id) newest first; the page is the
    # first page_size of those, whatever ``query.page`` says.
    after: tuple[datetime, UUID] | None = None
    # With ``q``: count at most this many matches and one more, so that a total above
    # the cap is told from one at it.
    count_cap: int | None = None
    # With ``q``: each statement ends within this many ms, or raises StatementTimeout.
    search_ms: int | None = None
    # One item more than page_size, if there is one: whether a page comes after.
    peek: bool = False


class Catalogue(Protocol):
    """Reading the catalogue. Every read takes the caller's ``Scope`` and sees only what it
    allows: a video outside it is answered as if it did not exist."""

    def list(
        self, scope: Scope, query: ListVideos, window: Window | None = None
    ) -> tuple[list[VideoListItem], int]:
        """A page and the exact total (or with ``window.count_cap`` and ``q``, at most
        that cap + 1): what is not in the trash, or (``trashed``) only what is, whose
        items then carry ``trashed_at``."""
        ...

    def get(self, scope: Scope, video_id: UUID) -> VideoDetailResponse | None:
        """A video not in the trash; None for one that is, as for one that is not there."""
        ...

    def get_many(
        self, scope: Scope, video_ids: Sequence[UUID], trashed: bool = False
    ) -> dict[UUID, VideoDetailResponse]:
        """``get`` of many ids in one query (``trashed``: of videos in the trash)."""
        ...
