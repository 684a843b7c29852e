"""In-memory fakes of the ports in ``handlers.ports``, for handler tests without services."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any
from uuid import UUID

from handlers.access import Scope
from handlers.deps import Deps
from handlers.errors import StorageUnavailable
from handlers.policy import Policy
from handlers.ports import DeleteReport, PastDeletion, QueuedDeletion, QueuedKey, RemovedVideo
from schemas.events import Event, EventData
from schemas.responses import VideoDetailResponse, VideoStats
from tests.unit.fake_analytics import FakeAccessLogs, FakeAnalytics, FakeAnalyticsBuffer
from tests.unit.fake_exports import FakeArchive, FakeExports
from tests.unit.fake_reprocessing import FakeReprocessing
from tests.unit.fake_sharing import FakeShares, FakeTags
from tests.unit.fake_videos import (
    FakeCatalogue,
    FakeFigures,
    FakeReferences,
    FakeRemoval,
    FakeRetentionSettings,
    FakeVideoTable,
    object_keys,
)

T0 = datetime(2025, 10, 31, 12, 0, tzinfo=UTC)


def make_video(**overrides: Any) -> VideoDetailResponse:
    """A completed video with proxy and thumbnail, laid out as the pipeline stores it."""
    video_id = overrides.pop("id", None) or uuid.uuid4()
    mall_id = overrides.pop("mall_id", None) or uuid.uuid4()
    fields: dict[str, Any] = {
        "id": video_id,
        "mall_id": mall_id,
        "pin_id": uuid.uuid4(),
        "pin_name": "Entrance A",
        "original_filename": "video_001.mp4",
        "original_path": f"videos/{mall_id}/original/{video_id}.mp4",
        "file_size_bytes": 125_829_120,
        "checksum_sha256": "abc123",
        "proxy_path": f"videos/{mall_id}/proxy/{video_id}.mp4",
        "proxy_size_bytes": 18_874_368,
        "thumbnail_path": f"thumbnails/{mall_id}/{video_id}.jpg",
        "width": 1920,
        "height": 1080,
        "fps": 30.0,
        "duration_seconds": 120.5,
        "codec": "h264",
        "processing_status": "completed",
        "processing_job_id": None,
        "processing_error": None,
        "processing_started_at": None,
        "processing_completed_at": None,
        "uploaded_at": T0 - timedelta(days=1),
        "recorded_at": None,
        "created_at": None,
        "updated_at": None,
        "operator_notes": None,
    }
    fields.update(overrides)
    return VideoDetailResponse(**fields)


@dataclass(frozen=True)
class QueueEntry:
    id: int
    object_key: str
    video_id: UUID | None
    mall_id: UUID | None
    reason: str
    next_attempt_at: datetime
    attempts: int = 0
    last_error: str | None = None


# storage_deletions.last_error keeps this much of S3's message.
ERROR_LENGTH = 500


class FakeDeletionQueue:
    def __init__(self) -> None:
        # Each lock_keys call, to check that removal decides under the keys' locks.
        self.locked: list[list[str]] = []
        self.entries: dict[int, QueueEntry] = {}
        # An identity sequence: ids are not reused after a rollback.
        self._next_id = 1

    def keys(self) -> list[str]:
        return [e.object_key for e in self.entries.values()]

    def enqueue(self, keys: Sequence[QueuedKey], not_before: datetime) -> list[int]:
        ids = []
        for key in keys:
            entry = QueueEntry(
                id=self._next_id,
                object_key=key.object_key,
                video_id=key.video_id,
                mall_id=key.mall_id,
                reason=key.reason,
                next_attempt_at=not_before,
            )
            self.entries[entry.id] = entry
            ids.append(entry.id)
            self._next_id += 1
        return ids

    def claim(self, ids: Sequence[int]) -> list[QueuedDeletion]:
        wanted = set(ids)
        return self._claim(e for e in self.entries.values() if e.id in wanted)

    def claim_due(
        self, now: datetime, limit: int, due_only: bool = True, after_id: int = 0
    ) -> list[QueuedDeletion]:
        due = (
            e
            for e in self.entries.values()
            if e.id > after_id and (not due_only or e.next_attempt_at <= now)
        )
        return self._claim(due)[:limit]

    def _claim(self, entries: Iterable[QueueEntry]) -> list[QueuedDeletion]:
        # One process, one transaction at a time: nothing is ever held by another.
        return [
            QueuedDeletion(
                id=e.id, object_key=e.object_key, attempts=e.attempts, video_id=e.video_id
            )
            for e in sorted(entries, key=lambda e: e.id)
        ]

    def lock_keys(self, keys: Sequence[str]) -> None:
        self.locked.append(sorted(set(keys)))

    def complete(self, ids: Iterable[int]) -> None:
        for queue_id in list(ids):
            self.entries.pop(queue_id, None)

    def retry_later(self, failures: dict[int, tuple[str, datetime]]) -> None:
        for queue_id, (error, retry_at) in failures.items():
            entry = self.entries.get(queue_id)
            if entry is None:
                # As the UPDATE: a row already dequeued is left alone.
                continue
            self.entries[queue_id] = replace(
                entry,
                attempts=entry.attempts + 1,
                last_error=error[:ERROR_LENGTH],
                next_attempt_at=retry_at,
            )

    def queued_among(self, keys: Sequence[str]) -> set[str]:
        return set(keys) & {e.object_key for e in self.entries.values()}

    def pending(self) -> int:
        return len(self.entries)

    def stuck(self, min_attempts: int) -> int:
        return sum(1 for e in self.entries.values() if e.attempts >= min_attempts)


@dataclass(frozen=True)
class AuditEntry:
    video_id: UUID
    mall_id: UUID
    reason: str
    object_keys: list[str]
    outcome: str
    request_id: str | None = None
    actor: str | None = None
    pin_id: UUID | None = None
    at: datetime = T0


class FakeDeletionAudit:
    def __init__(self, queue: FakeDeletionQueue) -> None:
        self.entries: list[AuditEntry] = []
        self.queue = queue
        # When a row is recorded: the server's now() for the real audit; the test's
        # clock once ``Fakes`` wires it.
        self.now: Any = lambda: T0

    def record(
        self,
        removed: Sequence[RemovedVideo],
        reason: str,
        outcome: str,
        request_id: str | None = None,
        actor: str | None = None,
    ) -> None:
        at = self.now()
        self.entries.extend(
            AuditEntry(
                v.id, v.mall_id, reason, v.object_keys, outcome, request_id, actor, v.pin_id, at
            )
            for v in removed
        )

    def prune(self, before: datetime, limit: int) -> int:
        old = [
            entry
            for entry in sorted(self.entries, key=lambda e: e.at)
            if entry.at < before and entry.outcome != "files_pending"
        ][:limit]
        gone = {id(entry) for entry in old}
        self.entries = [entry for entry in self.entries if id(entry) not in gone]
        return len(old)

    def find(self, scope: Scope, video_id: UUID, request_id: str) -> PastDeletion | None:
        found = self.done_by(scope, request_id, [video_id])
        return found[0] if found else None

    def done_by(
        self, scope: Scope, request_id: str, video_ids: Sequence[UUID] | None = None
    ) -> list[PastDeletion]:
        wanted = None if video_ids is None else set(video_ids)
        done: dict[UUID, PastDeletion] = {}
        for entry in self.entries:
            if (
                (wanted is None or entry.video_id in wanted)
                and entry.request_id == request_id
                and entry.actor == scope.subject
                and scope.sees(entry.mall_id, entry.pin_id)  # a null pin: no tenant's
            ):
                queued = [
                    e.object_key
                    for e in self.queue.entries.values()
                    if e.video_id == entry.video_id
                ]
                done[entry.video_id] = PastDeletion(
                    video_id=entry.video_id,
                    object_keys=list(entry.object_keys),
                    still_queued=queued,
                    files_kept=entry.outcome == "files_kept",
                )
        return list(done.values())

    def settle(self, video_ids: Iterable[UUID]) -> None:
        ids = set(video_ids)
        still_queued = {e.video_id for e in self.queue.entries.values()}
        self.entries = [
            replace(e, outcome="files_pending" if e.video_id in still_queued else "files_deleted")
            if e.video_id in ids and e.outcome in ("files_queued", "files_pending")
            else e
            for e in self.entries
        ]

    def outcome_of(self, video_id: UUID) -> list[tuple[str, str]]:
        return [(e.reason, e.outcome) for e in self.entries if e.video_id == video_id]


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    type: str
    subject: str
    data: dict[str, Any]


class FakeOutbox:
    """The outbox as a list: what a transaction wrote, kept only if it commits."""

    def __init__(self) -> None:
        self.entries: list[OutboxEntry] = []
        self._ids = iter(range(1, 1 << 62))

    def add(self, events: Sequence[EventData]) -> None:
        for event in events:
            self.entries.append(
                OutboxEntry(
                    id=next(self._ids),
                    type=event.event_type,
                    subject=event.subject,
                    data=event.model_dump(mode="json", by_alias=True),
                )
            )

    def of_type(self, *types: str) -> list[OutboxEntry]:
        return [entry for entry in self.entries if entry.type in types]


class FakeUnitOfWork:
    """One shared store of rows; each ``with`` block is rolled back unless committed.

    Like a connection's transaction, a commit ends one transaction and the block's later
    writes start the next: leaving the block rolls those back to the last commit.
    """

    def __init__(self) -> None:
        # The rows every room reads and writes (tests arrange and inspect them here).
        self.videos = FakeVideoTable()
        self.catalogue = FakeCatalogue(self.videos)
        self.removal = FakeRemoval(self.videos)
        self.retention = FakeRetentionSettings(self.videos)
        self.figures = FakeFigures(self.videos)
        self.references = FakeReferences(self.videos)
        self.deletions = FakeDeletionQueue()
        self.audit = FakeDeletionAudit(self.deletions)
        self.tags = FakeTags(self.videos)
        self.shares = FakeShares(self.videos)
        self.reprocessing = FakeReprocessing(self.videos)
        self.analytics = FakeAnalytics(self.videos)
        self.exports = FakeExports()
        self.events = FakeOutbox()
        self.committed = False
        self.transactions = 0

    def __call__(self) -> FakeUnitOfWork:
        return self

    def _snapshot(self) -> None:
        self._saved_rooms = (
            self.tags.snapshot(),
            self.shares.snapshot(),
            self.reprocessing.snapshot(),
            self.analytics.snapshot(),
            self.exports.snapshot(),
        )
        self._saved = (
            dict(self.videos.rows),
            set(self.videos.malls),
            dict(self.videos.retention_days_of),
            set(self.videos.held),
            dict(self.deletions.entries),
            list(self.audit.entries),
            dict(self.videos.quota_of),
            dict(self.videos.trashed),
            list(self.events.entries),
        )

    def __enter__(self) -> FakeUnitOfWork:
        self.committed = False
        self.transactions += 1
        self._snapshot()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.tags.restore(self._saved_rooms[0])
        self.shares.restore(self._saved_rooms[1])
        self.reprocessing.restore(self._saved_rooms[2])
        self.analytics.restore(self._saved_rooms[3])
        self.exports.restore(self._saved_rooms[-1])
        (
            self.videos.rows,
            self.videos.malls,
            self.videos.retention_days_of,
            self.videos.held,
            self.deletions.entries,
            self.audit.entries,
            self.videos.quota_of,
            self.videos.trashed,
            self.events.entries,
        ) = self._saved

    def commit(self) -> None:
        self.committed = True
        self._snapshot()


class FakeObjectStore:
    """A bucket of ``key -> size``; keys can be made to fail, or the whole store to be down."""

    def __init__(self, objects: Iterable[str] = ()) -> None:
        self.objects: dict[str, int] = dict.fromkeys(objects, 16)
        self.failing: dict[str, str] = {}
        self.fail_every_key = False
        self.unavailable = False
        self.delete_calls: list[list[str]] = []
        self.presigned: list[tuple[str, int]] = []
        # LastModified of objects put with ``put``; others count as a day before T0.
        self.modified: dict[str, datetime] = {}

    def put(self, key: str, modified: datetime | None = None, size: int = 16) -> None:
        self.objects[key] = size
        self.modified[key] = modified or T0 - timedelta(days=1)

    def list_objects(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        if self.unavailable:
            raise StorageUnavailable("S3 unreachable: EndpointConnectionError")
        for key in sorted(self.objects, key=lambda key: key.encode("utf-8")):
            if key.startswith(prefix):
                yield key, self.modified.get(key, T0 - timedelta(days=1))

    def fail(self, *keys: str, error: str = "AccessDenied: Access Denied") -> None:
        self.failing.update(dict.fromkeys(keys, error))

    def presign_get(self, key: str, expires_in: int, signed_at: datetime | None = None) -> str:
        self.presigned.append((key, expires_in))
        return f"http://s3.fake/bucket/{key}?X-Amz-Expires={expires_in}"

    def delete_many(self, keys: Sequence[str]) -> DeleteReport:
        self.delete_calls.append(list(keys))
        deleted: list[str] = []
        failed: dict[str, str] = {}
        for key in dict.fromkeys(keys):
            if self.unavailable:
                # As the real store: S3 out of reach is a failure per key, never a raise.
                failed[key] = "EndpointConnectionError"
            elif self.fail_every_key or key in self.failing:
                failed[key] = self.failing.get(key, "InternalError: We encountered an error")
            else:
                # Like S3: removing a key that is already gone succeeds.
                self.objects.pop(key, None)
                deleted.append(key)
        return DeleteReport(deleted=deleted, failed=failed)

    def size(self, key: str) -> int | None:
        if self.unavailable:
            raise StorageUnavailable("S3 unreachable: EndpointConnectionError")
        return self.objects.get(key)


class FakeCache:
    def __init__(self) -> None:
        self.entries: dict[UUID | None, VideoStats] = {}
        self.gets: list[UUID | None] = []
        # Stale scopes (None is the global figure) and whether a flush is already queued.
        self.dirty: set[UUID | None] = set()
        self.flush_queued = False
        self.pins: dict[UUID, VideoStats] = {}

    def get(self, mall_id: UUID | None) -> VideoStats | None:
        self.gets.append(mall_id)
        return self.entries.get(mall_id)

    def put(self, stats: Sequence[VideoStats]) -> None:
        for item in stats:
            self.entries[item.mall_id] = item

    def get_many(self, mall_ids: Sequence[UUID]) -> dict[UUID, VideoStats]:
        self.gets.extend(mall_ids)
        return {m: self.entries[m] for m in mall_ids if m in self.entries}

    def get_pins(self, pin_ids: Sequence[UUID]) -> dict[UUID, VideoStats]:
        return {p: self.pins[p] for p in pin_ids if p in self.pins}

    def put_pins(self, figures: Mapping[UUID, VideoStats]) -> None:
        self.pins.update(figures)

    def forget_pins(self, pin_ids: Iterable[UUID]) -> None:
        for pin_id in pin_ids:
            self.pins.pop(pin_id, None)

    def mark_dirty(self, mall_ids: Iterable[UUID]) -> bool:
        self.dirty.update({None, *mall_ids})
        first_mark = not self.flush_queued
        self.flush_queued = True
        return first_mark

    def take_dirty(self) -> tuple[bool, list[UUID]]:
        self.flush_queued = False
        taken, self.dirty = self.dirty, set()
        return None in taken, sorted(m for m in taken if m is not None)


class RecordingPublisher:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


class RecordingEnqueue:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict, float]] = []
        self.task_ids: list[str | None] = []

    def __call__(
        self, task: str, kwargs: dict, countdown: float, task_id: str | None = None
    ) -> None:
        self.calls.append((task, kwargs, countdown))
        self.task_ids.append(task_id)


class RecordingDispatch:
    """Messages to another service's queue: (task, kwargs, queue, task id) each."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict, str, str]] = []
        # Raise this on the next sends (a broker that refuses), until set back to None.
        self.failure: Exception | None = None

    def __call__(self, task: str, kwargs: dict, queue: str, task_id: str) -> None:
        if self.failure is not None:
            raise self.failure
        self.sent.append((task, kwargs, queue, task_id))


class FixedClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Fakes:
    """Every fake, wired into one ``Deps``."""

    uow: FakeUnitOfWork = field(default_factory=FakeUnitOfWork)
    store: FakeObjectStore = field(default_factory=FakeObjectStore)
    cache: FakeCache = field(default_factory=FakeCache)
    publisher: RecordingPublisher = field(default_factory=RecordingPublisher)
    enqueue: RecordingEnqueue = field(default_factory=RecordingEnqueue)
    dispatch: RecordingDispatch = field(default_factory=RecordingDispatch)
    clock: FixedClock = field(default_factory=FixedClock)
    policy: Policy = field(default_factory=Policy)
    archive: FakeArchive = field(default_factory=lambda: FakeArchive(T0))
    analytics_buffer: FakeAnalyticsBuffer = field(default_factory=FakeAnalyticsBuffer)
    access_logs: FakeAccessLogs = field(default_factory=FakeAccessLogs)

    def __post_init__(self) -> None:
        self.uow.audit.now = self.clock

    @property
    def deps(self) -> Deps:
        return Deps(
            uow=self.uow,
            store=self.store,
            cache=self.cache,
            publish=self.publisher,
            enqueue=self.enqueue,
            dispatch=self.dispatch,
            clock=self.clock,
            policy=self.policy,
            archive=self.archive,
            analytics_buffer=self.analytics_buffer,
            access_logs=self.access_logs,
        )

    def add_videos(self, *videos: VideoDetailResponse) -> None:
        """Rows in the database and their objects in the bucket."""
        self.uow.videos.add(*videos)
        for video in videos:
            self.store.objects.update(dict.fromkeys(object_keys(video), 16))
