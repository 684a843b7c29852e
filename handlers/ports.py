"""The ports the video service depends on.

Handlers see only these Protocols; ``worker.bootstrap`` wires the Postgres, S3 and
Redis adapters in, and unit tests wire in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Protocol
from uuid import UUID

from handlers.access import Scope
from schemas.events import Event, EventData
from schemas.requests import ListVideos, VideoFilters
from schemas.responses import (
    PinFigures,
    ShareSummary,
    TagCount,
    VideoDetailResponse,
    VideoListItem,
    VideoStats,
)


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


@dataclass(frozen=True, slots=True)
class ExpiredSummary:
    count: int
    bytes: int


@dataclass(frozen=True, slots=True)
class RetentionScope:
    """One mall and the cutoff its videos are swept against."""

    mall_id: UUID
    cutoff: datetime


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


class RetentionSettings(Protocol):
    """What the sweeps keep videos by: each mall's period and quota, and legal holds."""

    def mall_retention_days(self, mall_id: UUID | None) -> list[tuple[UUID, int | None]]:
        """Every mall (or just this one) with its own retention days, None if it has none."""
        ...

    def mall_quotas(self, mall_id: UUID | None) -> list[tuple[UUID, int]]:
        """Every mall with a storage quota (or just this one), with its quota in bytes."""
        ...

    def mall_storage(self, mall_id: UUID) -> int:
        """Originals plus proxies of all the mall's videos, in the trash too."""
        ...

    def set_mall_retention(
        self, mall_id: UUID, days: int | None = None, max_storage_bytes: int | None = None
    ) -> bool:
        """Give the mall its own period and/or quota (what is None stays as it was);
        False if there is no such mall."""
        ...

    def clear_mall_retention(self, mall_id: UUID) -> bool:
        """Back to the default period; False if the mall had none of its own."""
        ...

    def set_legal_hold(self, video_id: UUID, held: bool) -> bool:
        """Hold or release a video; False if there is no such video."""
        ...


class Figures(Protocol):
    """The statistics of what a scope sees, from the figures kept beside the rows."""

    def stats(
        self, scope: Scope, mall_id: UUID | None, at: datetime, pin_id: UUID | None = None
    ) -> VideoStats:
        """The figures of what the scope sees, within ``mall_id`` and ``pin_id`` when
        given: of what is not in the trash, and ``trash`` of what is."""
        ...

    def pin_figures(
        self, scope: Scope, mall_id: UUID | None, pin_id: UUID | None, limit: int
    ) -> list[PinFigures]:
        """Per-pin figures of what the scope sees (not the trash), largest storage first."""
        ...

    def stats_per_mall(self, at: datetime) -> list[VideoStats]:
        """Every mall's whole figure, for the shared cache (an admin's refresh)."""
        ...

    def stats_per_pin(
        self, scope: Scope, pin_ids: Sequence[UUID], at: datetime
    ) -> dict[UUID, VideoStats]:
        """Each of these pins' figures over what the scope sees (zeros for a pin with
        none), from the pin index: never a scan of every video."""
        ...

    def fold_figures(self) -> int:
        """Fold the figures kept per writer into one row per key and period, dropping
        those that came to nothing; answers how many rows were folded. What any total or
        statistic reads is unchanged: this only keeps those reads short."""
        ...


class References(Protocol):
    """Which object keys rows still name: no file a row needs is removed."""

    def referenced_keys(self, keys: Sequence[str]) -> set[str]:
        """The keys among these that a live row references (read now, not at claim)."""
        ...

    def referenced_keys_in_order(self, prefix: str = "") -> Iterator[str]:
        """Every key a row references under ``prefix``, once, in UTF-8 byte order,
        streamed while the unit of work is open."""
        ...


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


class Outbox(Protocol):
    """Events written in the unit of work's transaction: relayed (at least once, in
    commit order per subject) once it commits, never if it rolls back."""

    def add(self, events: Sequence[EventData]) -> None:
        """Write these events, in this order. A video's event is written after its row
        was changed (so locked) in this transaction: that is what orders one video's
        events by commit across transactions."""
        ...


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
class StoredShare:
    """A share as a resolve reads it: never the token, only what decides the answer."""

    id: UUID
    token_hash: bytes
    password_hash: str | None
    expires_at: datetime
    revoked_at: datetime | None
    max_views: int | None
    views: int
    label: str | None
    targets: list[str]


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


class Shares(Protocol):
    """Share links. A scope sees (and revokes) a share all of whose malls (operator) or
    pins (tenant) it sees, as they were when the share was made."""

    def create(self, share: NewShare) -> None: ...

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
        (not revoked, not expired at ``now``, views under max_views); None otherwise."""
        ...

    def videos(self, share_id: UUID) -> list[SharedFiles]:
        """The share's videos still there and not in the trash, in the order shared."""
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


@dataclass(frozen=True, slots=True)
class MultipartUpload:
    key: str
    upload_id: str
    initiated: datetime


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

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        """Upload one part, retried a bounded number of times; its ETag."""
        ...

    def complete_upload(self, key: str, upload_id: str, etags: Sequence[str]) -> None: ...

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort; an upload already gone is not an error."""
        ...

    def uploads(self, prefix: str) -> Iterator[MultipartUpload]:
        """Multipart uploads in progress under ``prefix``."""
        ...

    def delete(self, key: str) -> None: ...


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

    def unsent(self, request_id: str, limit: int) -> list[ReprocessRequest]:
        """Recorded by this request and not yet marked sent, in video id order."""
        ...

    def mark_sent(self, request_id: str, video_ids: Sequence[UUID]) -> None: ...


# Analytics (contract v1.2).
SHARE_VIEW = "share_view"


@dataclass(frozen=True, slots=True)
class Tally:
    """How many URLs of one target of one video were signed on one UTC day (or, as
    ``target`` ``share_view``, how many times a share showed it). The video's mall and pin
    travel with it: the counts outlive the video."""

    day: date
    video_id: UUID
    mall_id: UUID
    pin_id: UUID | None
    target: str
    count: int = 1


class AnalyticsBuffer(Protocol):
    """URL counts between the signing path and PostgreSQL: one cheap write per message,
    folded in later by ``videos.flush_analytics``. ``add`` never raises: counting is
    best effort, and a signing never fails for it."""

    def add(self, tallies: Sequence[Tally]) -> None: ...

    def take(self) -> list[str]:
        """Set the buffer aside under a new flush id, atomically (if there is one), and
        answer it with every flush id still waiting (a dead flush's leftovers)."""
        ...

    def read(self, flush_id: str) -> list[Tally]: ...

    def drop(self, flush_id: str) -> None:
        """The flush id was folded (by this run or another): forget its counts."""
        ...


@dataclass(frozen=True, slots=True)
class KeyOwner:
    video_id: UUID
    mall_id: UUID
    pin_id: UUID | None


@dataclass(frozen=True, slots=True)
class Served:
    day: date
    owner: KeyOwner
    bytes: int


@dataclass(frozen=True, slots=True)
class LogObject:
    key: str
    etag: str
    size: int


@dataclass(frozen=True, slots=True)
class IngestedLog:
    key: str
    etag: str
    lines: int
    bytes_counted: int
    garbage_lines: int
    at: datetime


@dataclass(frozen=True, slots=True)
class AnalyticsSelection:
    mall_id: UUID | None
    pin_id: UUID | None
    video_id: UUID | None
    from_day: date
    to_day: date


@dataclass(frozen=True, slots=True)
class DayFigures:
    stream_urls: int = 0
    thumbnail_urls: int = 0
    share_views: int = 0
    bytes_served: int = 0


@dataclass(frozen=True, slots=True)
class TopVideoRow:
    video_id: UUID
    original_filename: str | None
    stream_urls: int
    bytes_served: int


class Analytics(Protocol):
    """Daily figures per video, with the video's mall and pin copied beside them (no
    foreign key: a deleted video's history stays in its mall's and pin's totals). A scope
    sees the rows of its malls (operator) or pins (tenant), by those copies."""

    def fold(self, flush_id: str, at: datetime, tallies: Sequence[Tally]) -> bool:
        """Add a flush's counts and record its id, in the caller's transaction; False
        (nothing added) when that id was recorded before."""
        ...

    def prune_flushes(self, before: datetime) -> int: ...

    def owners(self, keys: Sequence[str]) -> dict[str, KeyOwner]:
        """The video naming each key as its original, proxy or thumbnail; one query."""
        ...

    def seen_logs(self, objects: Sequence[LogObject]) -> set[tuple[str, str]]:
        """(key, etag) of those already ingested."""
        ...

    def ingest_log(self, record: IngestedLog, served: Sequence[Served]) -> bool:
        """Record a log object and add its bytes, in the caller's transaction; False
        (nothing added) when it was recorded before."""
        ...

    def daily(self, scope: Scope, selection: AnalyticsSelection) -> dict[date, DayFigures]:
        """The days of the range with any figure."""
        ...

    def top(self, scope: Scope, selection: AnalyticsSelection, limit: int) -> list[TopVideoRow]:
        """Most stream URLs first, then most bytes, then video id."""
        ...


class AccessLogStore(Protocol):
    """S3 server access log objects: listed, and read as a stream of lines."""

    def objects(self) -> Iterator[LogObject]: ...

    def lines(self, key: str) -> Iterator[bytes]: ...
