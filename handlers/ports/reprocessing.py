"""Re-processing: videos set back to pending, and the messages owed to the pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from handlers.access import Scope
from schemas.requests import VideoFilters


@dataclass(frozen=True, slots=True)
class ReprocessRequest:
    """One video a re-processing run set back to pending: what its message carries."""

    video_id: UUID
    mall_id: UUID
    pin_id: UUID | None
    targets: list[str]
    requested_by: str | None


@dataclass(frozen=True, slots=True)
class ReprocessBatch:
    requested: list[ReprocessRequest]
    # Taken but left alone: the pipeline is processing them now.
    skipped_processing: int
    # The highest id the batch looked at (None: nothing was left): the next batch, or a
    # continuation, starts after it.
    last_id: UUID | None
    # How many rows the batch looked at (requested and skipped).
    taken: int


@dataclass(frozen=True, slots=True)
class ReprocessCount:
    # Selected, visible, not in the trash, not yet recorded by this request.
    matched: int
    processing: int


class Reprocessing(Protocol):
    """Setting videos back to ``pending`` for the processing pipeline, and the durable
    record of each (video, request) whose message is owed: written in the batch's
    transaction, marked sent once the message is out, so a run delivered again sends
    what it still owes and never a video twice."""

    def count(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        after: UUID | None,
        request_id: str,
    ) -> ReprocessCount: ...

    def recorded(self, request_id: str) -> int:
        """How many videos this request already set back (a redelivery's earlier work)."""
        ...

    def request_batch(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        after: UUID | None,
        request_id: str,
        targets: Sequence[str],
        by: str | None,
        limit: int,
    ) -> ReprocessBatch:
        """Lock up to ``limit`` selected videos (visible, not in the trash, id above
        ``after``, not yet recorded by this request), in id order; set those not
        ``processing`` to ``pending`` with no ``processing_error``, and record each."""
        ...

    def prune(self, before: datetime, limit: int) -> int:
        """Forget up to ``limit`` records of requests made before ``before``: how many
        went. A redelivery needs them for hours; the daily sweep keeps them as long as
        the audit."""
        ...

    def unsent(self, request_id: str, limit: int) -> list[ReprocessRequest]:
        """Recorded by this request and not yet marked sent, in video id order."""
        ...

    def mark_sent(self, request_id: str, video_ids: Sequence[UUID]) -> None: ...
