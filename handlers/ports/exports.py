"""ZIP exports: their rows and lease, and the archive store that streams them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from handlers.access import Scope


@dataclass(frozen=True, slots=True)
class NewExport:
    id: UUID
    created_by: str | None
    created_at: datetime
    name: str
    target: str
    include_thumbnails: bool
    # In the order given (by filter: newest first): the order of the ZIP's entries.
    video_ids: list[UUID]
    mall_ids: list[UUID]
    pin_ids: list[UUID]
    bytes_estimated: int


@dataclass(frozen=True, slots=True)
class StoredExport:
    """An export as its row holds it."""

    id: UUID
    status: str
    name: str
    target: str
    include_thumbnails: bool
    video_ids: list[UUID]
    bytes_estimated: int
    attempts: int
    done: int
    bytes_written: int
    object_key: str | None
    # The multipart upload in progress (or left by a lost run): aborted unless completed.
    upload_id: str | None
    # The run holding the export's lease, and when it last said it was alive.
    run_token: UUID | None
    heartbeat_at: datetime | None
    created_at: datetime
    finished_at: datetime | None
    expires_at: datetime | None
    size_bytes: int | None
    error: str | None

    @property
    def videos(self) -> int:
        return len(self.video_ids)


class Exports(Protocol):
    """ZIP exports and their lease. A scope sees (and cancels) an export all of whose
    malls (operator) or pins (tenant) it sees, as they were when it was made. A run holds
    the export by its ``run_token`` while its heartbeat is fresh; every write of a run is
    conditional on holding it, so a run taken over after it was thought lost changes
    nothing."""

    def create(self, export: NewExport) -> None: ...

    def get(self, scope: Scope, export_id: UUID) -> StoredExport | None: ...

    def cancel(
        self, scope: Scope, export_id: UUID, at: datetime, error: str
    ) -> tuple[StoredExport, bool] | None:
        """Cancel a queued or running export the scope sees: (the export as it is now,
        whether this call cancelled it); one already ended is answered as it is. None
        when the scope sees no such export."""
        ...

    def claim(
        self, export_id: UUID, run_token: UUID, now: datetime, stale_before: datetime
    ) -> StoredExport | None:
        """Take the export for this run: a queued one, or a running one whose heartbeat is
        older than ``stale_before`` (its worker was lost). Counts an attempt and resets the
        progress; the upload of a lost run stays recorded, for the new run to abort.
        None when it is held by a live run or has ended."""
        ...

    def set_upload(
        self, export_id: UUID, run_token: UUID, object_key: str, upload_id: str | None
    ) -> bool:
        """Record the run's multipart upload (None: it was completed or aborted)."""
        ...

    def beat(
        self, export_id: UUID, run_token: UUID, now: datetime, done: int, bytes_written: int
    ) -> str:
        """The run is alive: heartbeat and progress. Answers the export's status, or
        ``lost`` when another run holds it now; anything but ``running`` means stop."""
        ...

    def finish(
        self,
        export_id: UUID,
        run_token: UUID,
        status: str,
        now: datetime,
        *,
        error: str | None = None,
        size_bytes: int | None = None,
        expires_at: datetime | None = None,
        done: int | None = None,
    ) -> bool:
        """End the run's export as completed or failed, its upload no longer recorded
        (completed or aborted); False when the run no longer holds it (cancelled, taken
        over)."""
        ...

    def stale(self, stale_before: datetime, limit: int) -> list[StoredExport]:
        """Running exports whose heartbeat is older than ``stale_before``."""
        ...

    def fail_stale(
        self, export_id: UUID, stale_before: datetime, now: datetime, error: str
    ) -> StoredExport | None:
        """Fail a running export if its heartbeat is still older than ``stale_before``."""
        ...

    def requeue_queued(self, sent_before: datetime, now: datetime, limit: int) -> list[UUID]:
        """Queued exports whose run was last sent before ``sent_before`` (when made, or
        when last sent again), recorded as sent again at ``now``: a run message lost
        before it started is sent once more per period, and two sweeps at once send each
        once. The record is the queued row's ``heartbeat_at``, which no run has set yet."""
        ...

    def live_uploads(self) -> set[str]:
        """Every upload id an export still records (a run's, or one left to abort): a
        sweep never aborts one behind a run's back."""
        ...

    def forget_upload(self, export_id: UUID, upload_id: str) -> None:
        """The upload was aborted: unrecord it if it is still the one recorded."""
        ...

    def due_to_expire(self, now: datetime, limit: int) -> list[StoredExport]:
        """Completed exports whose ``expires_at`` has passed."""
        ...

    def mark_expired(self, export_ids: Sequence[UUID]) -> None: ...

    def prune(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` exports that ended with no ZIP left to keep (failed,
        cancelled, or expired and deleted) before ``before``: how many went."""
        ...


@dataclass(frozen=True, slots=True)
class MultipartUpload:
    key: str
    upload_id: str
    initiated: datetime


@dataclass(frozen=True, slots=True)
class UploadedPart:
    """What completing an upload needs of one of its parts: its ETag, and its CRC32 when
    the store checks one per part (S3 then refuses a part that arrived altered)."""

    etag: str
    crc32: str | None = None


class ArchiveStore(Protocol):
    """Objects read as streams and written as multipart uploads: what an export needs
    of S3, never a whole object in memory."""

    def head(self, key: str) -> int | None:
        """The object's size; None when it is not there."""
        ...

    def read(self, key: str, size: int) -> Iterator[bytes]:
        """The object's bytes in chunks, from a GET started when first iterated; a broken
        stream is taken up again where it broke (a ranged GET), a bounded number of
        times. Raises ``StorageUnavailable`` past that, or when the object changed."""
        ...

    def start_upload(self, key: str, content_type: str) -> str: ...

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        """Upload one part, retried a bounded number of times."""
        ...

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> None: ...

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort; an upload already gone is not an error."""
        ...

    def uploads(self, prefix: str) -> Iterator[MultipartUpload]:
        """Multipart uploads in progress under ``prefix``."""
        ...

    def delete(self, key: str) -> None: ...
