"""The durable deletion queue and the audit of every deleted video."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID

from handlers.access import Scope
from handlers.ports.removal import (
    RemovedVideo,
)


@dataclass(frozen=True, slots=True)
class QueuedKey:
    object_key: str
    video_id: UUID | None
    mall_id: UUID | None
    reason: str


@dataclass(frozen=True, slots=True)
class QueuedDeletion:
    """A claimed row of the deletion queue: locked until its transaction ends."""

    id: int
    object_key: str
    attempts: int
    video_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class DeleteReport:
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class DeletionQueue(Protocol):
    def enqueue(self, keys: Sequence[QueuedKey], not_before: datetime) -> list[int]: ...

    def claim(self, ids: Sequence[int]) -> list[QueuedDeletion]:
        """Lock these rows for the transaction; rows another remover holds are skipped."""
        ...

    def claim_due(
        self, now: datetime, limit: int, due_only: bool = True, after_id: int = 0
    ) -> list[QueuedDeletion]:
        """Lock up to ``limit`` rows after ``after_id``, oldest first, skipping held ones."""
        ...

    def lock_keys(self, keys: Sequence[str]) -> None:
        """Hold each key for the transaction, so only one remover decides about it."""
        ...

    def complete(self, ids: Iterable[int]) -> None: ...

    def retry_later(self, failures: dict[int, tuple[str, datetime]]) -> None: ...

    def queued_among(self, keys: Sequence[str]) -> set[str]:
        """The keys among these that are already waiting in the queue."""
        ...

    def pending(self) -> int: ...

    def stuck(self, min_attempts: int) -> int: ...


@dataclass(frozen=True, slots=True)
class PastDeletion:
    """What a request already deleted: its keys, those still queued, whether files stayed."""

    video_id: UUID
    object_keys: list[str]
    still_queued: list[str]
    files_kept: bool


class DeletionAuditLog(Protocol):
    def record(
        self,
        removed: Sequence[RemovedVideo],
        reason: str,
        outcome: str,
        request_id: str | None = None,
        actor: str | None = None,
    ) -> None:
        """One row per video; ``actor`` is the caller's ``sub`` (None with auth off)."""
        ...

    def find(self, scope: Scope, video_id: UUID, request_id: str) -> PastDeletion | None:
        """The deletion of this video by this request, if it happened, and only if this
        caller made it: the audit's ``actor`` is ``scope.subject`` (both None with auth
        off) and the scope sees the video's mall and pin. Callers choose task ids, so a
        request id alone never proves whose deletion it was."""
        ...

    def done_by(
        self, scope: Scope, request_id: str, video_ids: Sequence[UUID] | None = None
    ) -> list[PastDeletion]:
        """What this request already deleted (of these videos, or all of it), with the
        rule of ``find``: a redelivered bulk delete counts its own earlier work, never
        another caller's under a reused task id."""
        ...

    def settle(self, video_ids: Iterable[UUID]) -> None:
        """Settle these videos' open audit rows from the queue: ``files_deleted`` once
        none of their keys is queued any more, ``files_pending`` while one is."""
        ...

    def prune(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` audit rows recorded before ``before``, oldest first,
        except those whose files are still pending (they still tell what is owed);
        answers how many went."""
        ...
