"""The ports the video service depends on.

Handlers see only these Protocols; ``worker.bootstrap`` wires the Postgres, S3 and
Redis adapters in, and unit tests wire in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Protocol
from uuid import UUID

from schemas.events import Event
from schemas.requests import ListVideos
from schemas.responses import VideoDetailResponse, VideoListItem, VideoStats


@dataclass(frozen=True, slots=True)
class RemovedVideo:
    """What is left of a video row once it is deleted: enough to clean its objects up."""

    id: UUID
    mall_id: UUID
    original_path: str
    proxy_path: str | None
    thumbnail_path: str | None

    @property
    def object_keys(self) -> list[str]:
        keys = [self.original_path, self.proxy_path, self.thumbnail_path]
        return [k for k in dict.fromkeys(keys) if k]


@dataclass(frozen=True, slots=True)
class QueuedKey:
    object_key: str
    video_id: UUID | None
    mall_id: UUID | None
    reason: str


@dataclass(frozen=True, slots=True)
class DueDeletion:
    id: int
    object_key: str
    attempts: int


@dataclass(frozen=True, slots=True)
class DeleteReport:
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExpiredSummary:
    count: int
    bytes: int


class VideoRepository(Protocol):
    def list(self, query: ListVideos) -> tuple[list[VideoListItem], int]: ...

    def get(self, video_id: UUID) -> VideoDetailResponse | None: ...

    def delete(self, video_id: UUID) -> RemovedVideo | None: ...

    def delete_expired(
        self, cutoff: datetime, mall_id: UUID | None, limit: int
    ) -> list[RemovedVideo]: ...

    def summarise_expired(self, cutoff: datetime, mall_id: UUID | None) -> ExpiredSummary: ...

    def stats(self, mall_id: UUID | None, at: datetime) -> VideoStats: ...

    def stats_per_mall(self, at: datetime) -> list[VideoStats]: ...


class DeletionQueue(Protocol):
    def enqueue(self, keys: Sequence[QueuedKey], not_before: datetime) -> list[int]: ...

    def claim_due(self, now: datetime, limit: int) -> list[DueDeletion]: ...

    def complete(self, ids: Iterable[int]) -> None: ...

    def retry_later(self, failures: dict[int, tuple[str, datetime]]) -> None: ...

    def pending(self) -> int: ...


class UnitOfWork(Protocol):
    """A transaction: rolled back on leaving the ``with`` block unless committed."""

    videos: VideoRepository
    deletions: DeletionQueue

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


class ObjectStore(Protocol):
    def presign_get(self, key: str, expires_in: int) -> str: ...

    def delete_many(self, keys: Sequence[str]) -> DeleteReport: ...

    def size(self, key: str) -> int | None: ...


class StatsCache(Protocol):
    def get(self, mall_id: UUID | None) -> VideoStats | None: ...

    def put(self, stats: Sequence[VideoStats]) -> None: ...


Publish = Callable[[Event], None]
Clock = Callable[[], datetime]
UnitOfWorkFactory = Callable[[], UnitOfWork]
