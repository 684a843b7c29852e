"""In-memory fakes of the ports in ``handlers.ports``, for handler tests without services."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any
from uuid import UUID

from handlers.access import UNRESTRICTED, Scope
from handlers.deps import Deps
from handlers.errors import StorageUnavailable
from handlers.policy import Policy
from handlers.ports import (
    DeleteReport,
    ExpiredSummary,
    PastDeletion,
    QueuedDeletion,
    QueuedKey,
    RemovedVideo,
    RetentionScope,
    TrashedVideo,
)
from handlers.urls import is_file_key
from schemas.events import Event
from schemas.requests import ListVideos, VideoFilters
from schemas.responses import (
    PinFigures,
    StatusCounts,
    TrashFigures,
    VideoDetailResponse,
    VideoListItem,
    VideoStats,
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


def object_keys(video: VideoDetailResponse) -> list[str]:
    return [k for k in (video.original_path, video.proxy_path, video.thumbnail_path) if k]


def stored_bytes(video: VideoDetailResponse) -> int:
    return video.file_size_bytes + (video.proxy_size_bytes or 0)


def _removed(video: VideoDetailResponse) -> RemovedVideo:
    return RemovedVideo(
        id=video.id,
        mall_id=video.mall_id,
        original_path=video.original_path,
        proxy_path=video.proxy_path,
        thumbnail_path=video.thumbnail_path,
        pin_id=video.pin_id,
        stored_bytes=stored_bytes(video),
    )


def _lowered(text: str) -> str:
    # As ILIKE: each character lowered on its own (so "ß" never matches "SS", and "İ"
    # is "i"), not Unicode case folding.
    return "".join(ch.lower()[0] for ch in text)


def _contains(text: str | None, q: str) -> bool:
    return text is not None and _lowered(q) in _lowered(text)


def _visible(scope: Scope, video: VideoDetailResponse) -> bool:
    return scope.sees(video.mall_id, video.pin_id)


def _matches(video: VideoDetailResponse, query: VideoFilters) -> bool:
    checks = (
        query.mall_id is None or video.mall_id == query.mall_id,
        query.pin_id is None or video.pin_id == query.pin_id,
        query.processing_status is None or video.processing_status == query.processing_status,
        query.has_proxy is None or (video.proxy_path is not None) == query.has_proxy,
        query.uploaded_after is None or video.uploaded_at >= query.uploaded_after,
        query.uploaded_before is None or video.uploaded_at < query.uploaded_before,
        query.q is None
        or _contains(video.original_filename, query.q)
        or _contains(video.operator_notes, query.q),
    )
    return all(checks)


class FakeVideoRepository:
    def __init__(self) -> None:
        self.rows: dict[UUID, VideoDetailResponse] = {}
        # Like the malls table: a mall stays known after its last video is deleted.
        self.malls: set[UUID] = set()
        # mall_retention rows, and the videos under legal hold.
        self.retention_days_of: dict[UUID, int] = {}
        self.quota_of: dict[UUID, int] = {}
        self.held: set[UUID] = set()
        # The trash: when each trashed video went in, and by whom.
        self.trashed: dict[UUID, tuple[datetime, str | None]] = {}

    def is_live(self, video: VideoDetailResponse) -> bool:
        return video.id not in self.trashed

    def add(self, *videos: VideoDetailResponse) -> None:
        for video in videos:
            self.rows[video.id] = video
            self.malls.add(video.mall_id)

    def _newest_first(self, videos: Iterable[VideoDetailResponse]) -> list[VideoDetailResponse]:
        return sorted(videos, key=lambda v: (v.uploaded_at, v.id), reverse=True)

    def _listed(self, scope: Scope, query: VideoFilters, trashed: bool = False):  # noqa: ANN202
        return [
            v
            for v in self.rows.values()
            if _visible(scope, v) and _matches(v, query) and self.is_live(v) != trashed
        ]

    def list(self, scope: Scope, query: ListVideos) -> tuple[list[VideoListItem], int]:
        matching = self._newest_first(self._listed(scope, query, query.trashed))
        start = (query.page - 1) * query.page_size
        page = matching[start : start + query.page_size]
        items = [
            VideoListItem(
                **v.model_dump(include=set(VideoListItem.model_fields)),
                has_proxy=is_file_key(v.proxy_path),
                has_thumbnail=is_file_key(v.thumbnail_path),
                trashed_at=self.trashed[v.id][0] if query.trashed else None,
            ).with_files(
                {"original": v.original_path, "proxy": v.proxy_path, "thumbnail": v.thumbnail_path}
            )
            for v in page
        ]
        return items, len(matching)

    def _seen(self, scope: Scope, video_id: UUID) -> VideoDetailResponse | None:
        """Any row the scope sees, in the trash or not."""
        video = self.rows.get(video_id)
        return video if video is not None and _visible(scope, video) else None

    def get(self, scope: Scope, video_id: UUID) -> VideoDetailResponse | None:
        video = self._seen(scope, video_id)
        return video if video is not None and self.is_live(video) else None

    def get_many(
        self, scope: Scope, video_ids: Sequence[UUID], trashed: bool = False
    ) -> dict[UUID, VideoDetailResponse]:
        found = (self._seen(scope, video_id) for video_id in set(video_ids))
        return {v.id: v for v in found if v is not None and self.is_live(v) != trashed}

    def _drop(self, video: VideoDetailResponse) -> RemovedVideo:
        del self.rows[video.id]
        self.trashed.pop(video.id, None)
        self.held.discard(video.id)
        return _removed(video)

    def delete(self, scope: Scope, video_id: UUID) -> RemovedVideo | None:
        video = self._seen(scope, video_id)
        return None if video is None else self._drop(video)

    def _trashed(self, video: VideoDetailResponse, newly: bool) -> TrashedVideo:
        return TrashedVideo(
            id=video.id,
            mall_id=video.mall_id,
            pin_id=video.pin_id,
            trashed_at=self.trashed[video.id][0],
            newly=newly,
        )

    def trash(
        self, scope: Scope, video_id: UUID, at: datetime, by: str | None
    ) -> TrashedVideo | None:
        video = self._seen(scope, video_id)
        if video is None:
            return None
        newly = video.id not in self.trashed
        if newly:
            self.trashed[video.id] = (at, by)
        return self._trashed(video, newly)

    def restore(self, scope: Scope, video_id: UUID) -> TrashedVideo | None:
        video = self._seen(scope, video_id)
        if video is None or video.id not in self.trashed:
            return None
        restored = self._trashed(video, True)
        del self.trashed[video.id]
        return restored

    def _selected(
        self, scope: Scope, video_ids: Sequence[UUID] | None, filters: VideoFilters | None
    ) -> list[VideoDetailResponse]:
        if video_ids is not None:
            found = (self._seen(scope, video_id) for video_id in set(video_ids))
            chosen = [v for v in found if v is not None]
        elif filters is None or filters.is_empty():
            # As the adapter: nothing selected is never "everything".
            raise ValueError("a bulk selection needs video ids or at least one filter")
        else:
            chosen = self._listed(scope, filters)
        return sorted(chosen, key=lambda v: (v.uploaded_at, v.id))

    def find_selected(self, scope: Scope, video_ids: Sequence[UUID]) -> set[UUID]:
        return {v.id for v in self._selected(scope, video_ids, None)}

    def summarise_selected(self, scope: Scope, filters: VideoFilters) -> ExpiredSummary:
        chosen = self._selected(scope, None, filters)
        return ExpiredSummary(count=len(chosen), bytes=sum(map(stored_bytes, chosen)))

    def delete_selected(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        limit: int,
    ) -> list[RemovedVideo]:
        return [self._drop(v) for v in self._selected(scope, video_ids, filters)[:limit]]

    def trash_selected(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        limit: int,
        at: datetime,
        by: str | None,
    ) -> list[TrashedVideo]:
        live = [v for v in self._selected(scope, video_ids, filters) if self.is_live(v)][:limit]
        return [self.trash(scope, v.id, at, by) for v in live]  # type: ignore[misc]

    def _trash_due(
        self, scope: Scope, mall_id: UUID | None, before: datetime
    ) -> list[VideoDetailResponse]:
        due = [
            v
            for v in self.rows.values()
            if v.id in self.trashed
            and self.trashed[v.id][0] < before
            and v.id not in self.held
            and _visible(scope, v)
            and (mall_id is None or v.mall_id == mall_id)
        ]
        return sorted(due, key=lambda v: (self.trashed[v.id][0], v.id))

    def summarise_trash_due(
        self, scope: Scope, mall_id: UUID | None, before: datetime
    ) -> ExpiredSummary:
        due = self._trash_due(scope, mall_id, before)
        return ExpiredSummary(count=len(due), bytes=sum(map(stored_bytes, due)))

    def delete_trash_due(
        self, scope: Scope, mall_id: UUID | None, before: datetime, limit: int
    ) -> list[RemovedVideo]:
        return [self._drop(v) for v in self._trash_due(scope, mall_id, before)[:limit]]

    def mall_quotas(self, mall_id: UUID | None) -> list[tuple[UUID, int]]:
        return sorted(
            (mall, quota)
            for mall, quota in self.quota_of.items()
            if mall_id is None or mall == mall_id
        )

    def mall_storage(self, mall_id: UUID) -> int:
        return sum(stored_bytes(v) for v in self.rows.values() if v.mall_id == mall_id)

    def delete_for_quota(
        self, scope: Scope, mall_id: UUID, excess: int, limit: int
    ) -> list[RemovedVideo]:
        candidates = sorted(
            (
                v
                for v in self.rows.values()
                if v.mall_id == mall_id and v.id not in self.held and _visible(scope, v)
            ),
            key=lambda v: (v.uploaded_at, v.id),
        )[:limit]
        taken, freed = [], 0
        for video in candidates:
            if freed >= excess:
                break
            taken.append(video)
            freed += max(stored_bytes(video), 0)
        return [self._drop(v) for v in taken]

    def _expired(self, scope: Scope, retention: RetentionScope) -> list[VideoDetailResponse]:
        expired = [
            v
            for v in self.rows.values()
            if v.mall_id == retention.mall_id
            and v.uploaded_at < retention.cutoff
            and v.id not in self.held
            and _visible(scope, v)
        ]
        return sorted(expired, key=lambda v: (v.uploaded_at, v.id))

    def delete_expired(
        self, scope: Scope, retention: RetentionScope, limit: int
    ) -> list[RemovedVideo]:
        return [self._drop(v) for v in self._expired(scope, retention)[:limit]]

    def summarise_expired(self, scope: Scope, retention: RetentionScope) -> ExpiredSummary:
        expired = self._expired(scope, retention)
        size = sum(v.file_size_bytes + (v.proxy_size_bytes or 0) for v in expired)
        return ExpiredSummary(count=len(expired), bytes=size)

    def mall_retention_days(self, mall_id: UUID | None) -> list[tuple[UUID, int | None]]:
        malls = sorted(self.malls) if mall_id is None else [m for m in self.malls if m == mall_id]
        return [(mall, self.retention_days_of.get(mall)) for mall in malls]

    def referenced_keys(self, keys: Sequence[str]) -> set[str]:
        in_use = {key for video in self.rows.values() for key in object_keys(video)}
        return in_use.intersection(keys)

    def referenced_keys_in_order(self, prefix: str = "") -> Iterator[str]:
        keys = {
            key
            for video in self.rows.values()
            for key in object_keys(video)
            if key.startswith(prefix)
        }
        yield from sorted(keys, key=lambda key: key.encode("utf-8"))

    def set_mall_retention(
        self, mall_id: UUID, days: int | None = None, max_storage_bytes: int | None = None
    ) -> bool:
        if days is None and max_storage_bytes is None:
            raise ValueError("a mall's retention needs days, a storage quota or both")
        if mall_id not in self.malls:
            return False
        if days is not None:
            self.retention_days_of[mall_id] = days
        if max_storage_bytes is not None:
            self.quota_of[mall_id] = max_storage_bytes
        return True

    def clear_mall_retention(self, mall_id: UUID) -> bool:
        had_days = self.retention_days_of.pop(mall_id, None) is not None
        had_quota = self.quota_of.pop(mall_id, None) is not None
        return had_days or had_quota

    def set_legal_hold(self, video_id: UUID, held: bool) -> bool:
        if video_id not in self.rows:
            return False
        if held:
            self.held.add(video_id)
        else:
            self.held.discard(video_id)
        return True

    def stats(
        self, scope: Scope, mall_id: UUID | None, at: datetime, pin_id: UUID | None = None
    ) -> VideoStats:
        seen = [
            v
            for v in self.rows.values()
            if _visible(scope, v)
            and (mall_id is None or v.mall_id == mall_id)
            and (pin_id is None or v.pin_id == pin_id)
        ]
        return self._figures(mall_id, seen, at)

    def _figures(
        self, mall_id: UUID | None, videos: list[VideoDetailResponse], at: datetime
    ) -> VideoStats:
        trashed = [v for v in videos if not self.is_live(v)]
        figures = _figures(mall_id, [v for v in videos if self.is_live(v)], at)
        return figures.model_copy(
            update={
                "trash": TrashFigures(
                    total_videos=len(trashed),
                    total_storage_bytes=sum(map(stored_bytes, trashed)),
                )
            }
        )

    def pin_figures(
        self, scope: Scope, mall_id: UUID | None, pin_id: UUID | None, limit: int
    ) -> list[PinFigures]:
        by_pin: dict[UUID, list[VideoDetailResponse]] = {}
        for v in self.rows.values():
            if (
                self.is_live(v)
                and _visible(scope, v)
                and (mall_id is None or v.mall_id == mall_id)
                and (pin_id is None or v.pin_id == pin_id)
            ):
                by_pin.setdefault(v.pin_id, []).append(v)
        figures = [
            PinFigures(
                pin_id=pin,
                pin_name=videos[0].pin_name,
                total_videos=len(videos),
                total_storage_bytes=sum(map(stored_bytes, videos)),
                total_duration_seconds=sum(v.duration_seconds or 0.0 for v in videos),
            )
            for pin, videos in by_pin.items()
        ]
        figures.sort(key=lambda f: (-f.total_storage_bytes, f.pin_id))
        return figures[:limit]

    def fold_figures(self) -> int:
        return 0  # figures are counted from the rows: nothing to fold

    def stats_per_mall(self, at: datetime) -> list[VideoStats]:
        return [self.stats(UNRESTRICTED, mall_id, at) for mall_id in sorted(self.malls)]

    def stats_per_pin(
        self, scope: Scope, pin_ids: Sequence[UUID], at: datetime
    ) -> dict[UUID, VideoStats]:
        return {
            pin_id: self._figures(
                None,
                [v for v in self.rows.values() if v.pin_id == pin_id and _visible(scope, v)],
                at,
            )
            for pin_id in sorted(set(pin_ids))
        }


def _figures(mall_id: UUID | None, videos: list[VideoDetailResponse], at: datetime) -> VideoStats:
    counts = {s: 0 for s in ("pending", "processing", "completed", "failed")}
    for video in videos:
        counts[video.processing_status] += 1
    return VideoStats(
        mall_id=mall_id,
        total_videos=len(videos),
        by_status=StatusCounts(**counts),
        total_storage_bytes=sum(v.file_size_bytes + (v.proxy_size_bytes or 0) for v in videos),
        total_duration_seconds=sum(v.duration_seconds or 0.0 for v in videos),
        refreshed_at=at,
    )


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
    def __init__(self, videos: FakeVideoRepository) -> None:
        self.videos = videos
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


class FakeDeletionAudit:
    def __init__(self, queue: FakeDeletionQueue) -> None:
        self.entries: list[AuditEntry] = []
        self.queue = queue

    def record(
        self,
        removed: Sequence[RemovedVideo],
        reason: str,
        outcome: str,
        request_id: str | None = None,
        actor: str | None = None,
    ) -> None:
        self.entries.extend(
            AuditEntry(v.id, v.mall_id, reason, v.object_keys, outcome, request_id, actor)
            for v in removed
        )

    def find(self, video_id: UUID, request_id: str) -> PastDeletion | None:
        for entry in self.entries:
            if entry.video_id == video_id and entry.request_id == request_id:
                queued = [
                    e.object_key for e in self.queue.entries.values() if e.video_id == video_id
                ]
                return PastDeletion(
                    video_id=video_id,
                    object_keys=list(entry.object_keys),
                    still_queued=queued,
                    files_kept=entry.outcome == "files_kept",
                )
        return None

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


class FakeUnitOfWork:
    """One shared store of rows; each ``with`` block is rolled back unless committed.

    Like a connection's transaction, a commit ends one transaction and the block's later
    writes start the next: leaving the block rolls those back to the last commit.
    """

    def __init__(self) -> None:
        self.videos = FakeVideoRepository()
        self.deletions = FakeDeletionQueue(self.videos)
        self.audit = FakeDeletionAudit(self.deletions)
        self.committed = False
        self.transactions = 0

    def __call__(self) -> FakeUnitOfWork:
        return self

    def _snapshot(self) -> None:
        self._saved = (
            dict(self.videos.rows),
            set(self.videos.malls),
            dict(self.videos.retention_days_of),
            set(self.videos.held),
            dict(self.deletions.entries),
            list(self.audit.entries),
            dict(self.videos.quota_of),
            dict(self.videos.trashed),
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
        (
            self.videos.rows,
            self.videos.malls,
            self.videos.retention_days_of,
            self.videos.held,
            self.deletions.entries,
            self.audit.entries,
            self.videos.quota_of,
            self.videos.trashed,
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
    clock: FixedClock = field(default_factory=FixedClock)
    policy: Policy = field(default_factory=Policy)

    @property
    def deps(self) -> Deps:
        return Deps(
            uow=self.uow,
            store=self.store,
            cache=self.cache,
            publish=self.publisher,
            enqueue=self.enqueue,
            clock=self.clock,
            policy=self.policy,
        )

    def add_videos(self, *videos: VideoDetailResponse) -> None:
        """Rows in the database and their objects in the bucket."""
        self.uow.videos.add(*videos)
        for video in videos:
            self.store.objects.update(dict.fromkeys(object_keys(video), 16))
