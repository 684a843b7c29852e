"""What every handler is given besides the rooms: the unit of work, S3, the stats
cache, publishing and sending tasks, the clock."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol
from uuid import UUID

from handlers.ports.analytics import (
    Analytics,
)
from handlers.ports.catalogue import Catalogue
from handlers.ports.deletions import (
    DeleteReport,
    DeletionAuditLog,
    DeletionQueue,
)
from handlers.ports.events import Outbox
from handlers.ports.exports import Exports
from handlers.ports.figures import Figures
from handlers.ports.references import References
from handlers.ports.removal import (
    Removal,
)
from handlers.ports.reprocessing import (
    Reprocessing,
)
from handlers.ports.retention import RetentionSettings
from handlers.ports.shares import Shares
from handlers.ports.tags import Tags
from schemas.events import Event
from schemas.responses import (
    VideoStats,
)


class UnitOfWork(Protocol):
    """A transaction: rolled back on leaving the ``with`` block unless committed."""

    catalogue: Catalogue
    removal: Removal
    retention: RetentionSettings
    figures: Figures
    references: References
    deletions: DeletionQueue
    audit: DeletionAuditLog
    tags: Tags
    shares: Shares
    reprocessing: Reprocessing
    analytics: Analytics
    exports: Exports
    events: Outbox

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...


class ObjectStore(Protocol):
    def presign_get(self, key: str, expires_in: int, signed_at: datetime | None = None) -> str:
        """A presigned GET signed at ``signed_at`` (now when None), valid ``expires_in`` s."""
        ...

    def delete_many(self, keys: Sequence[str]) -> DeleteReport:
        """Remove these keys; never raises for S3 trouble (failed keys are reported)."""
        ...

    def list_objects(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        """Every object under ``prefix`` with its last-modified time, in UTF-8 byte order."""
        ...

    def size(self, key: str) -> int | None: ...


class StatsCache(Protocol):
    def get(self, mall_id: UUID | None) -> VideoStats | None: ...

    def put(self, stats: Sequence[VideoStats]) -> None: ...

    def get_many(self, mall_ids: Sequence[UUID]) -> dict[UUID, VideoStats]:
        """The cached figures among these malls' (one round trip); misses are left out."""
        ...

    def get_pins(self, pin_ids: Sequence[UUID]) -> dict[UUID, VideoStats]:
        """The cached per-pin figures among these pins'; misses are left out."""
        ...

    def put_pins(self, figures: Mapping[UUID, VideoStats]) -> None: ...

    def forget_pins(self, pin_ids: Iterable[UUID]) -> None:
        """Drop these pins' figures (their videos changed); the next read recomputes."""
        ...

    def mark_dirty(self, mall_ids: Iterable[UUID]) -> bool:
        """Note the global figure and these malls as stale; True if a flush must be queued."""
        ...

    def take_dirty(self) -> tuple[bool, list[UUID]]:
        """Claim every stale scope: (global is stale, stale malls)."""
        ...


Publish = Callable[[Event], None]


class Enqueue(Protocol):
    """Ask for a task to run later, by name: the handlers' only way to schedule work.

    ``task_id``, when given, is the id the queued message carries (and its result is
    stored under), so a handler can name its continuation to its caller.
    """

    def __call__(
        self, task: str, kwargs: dict, countdown: float, task_id: str | None = None
    ) -> None: ...


class Dispatch(Protocol):
    """Send a task of another service (the processing pipeline) by name to a queue of its
    own on the same broker, declaring the queue if it is not there. ``task_id`` is the
    message's id: one derived from what it asks lets the consumer drop a resend."""

    def __call__(self, task: str, kwargs: dict, queue: str, task_id: str) -> None: ...


Clock = Callable[[], datetime]


UnitOfWorkFactory = Callable[[], UnitOfWork]
