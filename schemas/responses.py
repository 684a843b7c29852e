"""Result payloads (the ``data`` of a successful envelope), as the contract lists them.

Datetimes are normalised to UTC so every result carries ``Z`` whatever the session
time zone of the database connection was. Floats are finite: other services write the
``videos`` table, and a ``NaN`` there must not reach a caller, whose JSON parser may
refuse it (Celery's JSON serializer writes ``NaN`` as it is).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr
from pydantic_core import PydanticCustomError


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC, or a validation error when UTC cannot hold it.

    ``0001-01-01T00:00+01:00`` is a day before year 1 in UTC: no datetime holds it, and
    an ``OverflowError`` must become a bad value, not a crash.
    """
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_range", "Datetime out of range once converted to UTC"
        ) from None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return as_utc(value)


def _none_unless_finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
# For optional fields, as ``FiniteFloat | None``: NaN and +-Infinity become null.
FiniteFloat = Annotated[float, AfterValidator(_none_unless_finite)]
# For required fields, which have no null to give: a non-finite value is refused.
RequiredFiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _absent(value: object) -> bool:
    return value is None


def only_when_given(**kwargs: object) -> Any:
    """A v1.1 field that appears in the answer only when it has a value (the caller asked
    for it): a v1 caller's answers keep exactly their v1 keys."""
    return Field(default=None, exclude_if=_absent, **kwargs)  # type: ignore[arg-type]


class Result(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class VideoListItem(Result):
    id: UUID
    mall_id: UUID
    pin_id: UUID
    pin_name: str | None
    original_filename: str
    file_size_bytes: int
    duration_seconds: FiniteFloat | None
    processing_status: str
    has_proxy: bool
    has_thumbnail: bool
    uploaded_at: UtcDatetime
    recorded_at: UtcDatetime | None
    # videos.list(trashed=true) only.
    trashed_at: UtcDatetime | None = only_when_given()
    purge_after: UtcDatetime | None = only_when_given()
    # videos.list(sign=[...]) only: one presigned URL per target, null where no file is.
    urls: dict[str, str | None] | None = only_when_given()
    # v1.2: the video's tags, sorted case-insensitively.
    tags: list[str] = Field(default_factory=list)
    # The object key of each target as the listed row held it: what a gallery page signs,
    # read in the list query itself. Never part of an answer.
    _files: dict[str, str | None] = PrivateAttr(default_factory=dict)

    def with_files(self, files: dict[str, str | None]) -> VideoListItem:
        self._files = files
        return self

    @property
    def files(self) -> dict[str, str | None]:
        return self._files


class VideoListResponse(Result):
    videos: list[VideoListItem]
    total: int
    page: int
    page_size: int
    total_pages: int
    # "eq": total is exact; "gte": a search matched more than SEARCH_TOTAL_CAP videos,
    # and total is that cap.
    total_relation: Literal["eq", "gte"] = "eq"
    # The cursor of the page after this one (videos.list(cursor=...)); null on the last.
    next_cursor: str | None = None
    # videos.list(sign=[...]) only: when every URL of the page expires.
    urls_expire_at: UtcDatetime | None = only_when_given()


class VideoDetailResponse(Result):
    id: UUID
    mall_id: UUID
    pin_id: UUID
    pin_name: str | None
    original_filename: str
    original_path: str
    file_size_bytes: int
    checksum_sha256: str | None
    proxy_path: str | None
    proxy_size_bytes: int | None
    thumbnail_path: str | None
    width: int | None
    height: int | None
    fps: FiniteFloat | None
    duration_seconds: FiniteFloat | None
    codec: str | None
    processing_status: str
    processing_job_id: UUID | None
    processing_error: str | None
    processing_started_at: UtcDatetime | None
    processing_completed_at: UtcDatetime | None
    uploaded_at: UtcDatetime
    recorded_at: UtcDatetime | None
    created_at: UtcDatetime | None
    updated_at: UtcDatetime | None
    operator_notes: str | None
    # v1.2: the video's tags, sorted case-insensitively.
    tags: list[str] = Field(default_factory=list)


class VideoStreamUrlResponse(Result):
    video_id: UUID
    url: str
    expires_at: UtcDatetime
    content_type: str
    file_size_bytes: int | None
    duration_seconds: FiniteFloat | None


class SignUrlsResult(Result):
    # In the order asked; ids not found (or not visible) and files missing are listed apart.
    urls: list[VideoStreamUrlResponse]
    not_found: list[UUID]
    not_available: list[UUID]


class VideoDeleteResponse(Result):
    video_id: UUID
    deleted: bool
    files_deleted: list[str]
    files_pending: list[str]
    message: str
    # When the trash lets a trashed video go; null for an immediate delete.
    purge_after: UtcDatetime | None = None


class RestoreResult(Result):
    video_id: UUID
    restored: bool


class BulkDeleteResult(Result):
    matched: int
    deleted: int
    # The video_ids that matched nothing the caller sees (always [] with filters).
    not_found: list[UUID]
    files_deleted: int
    files_pending: int
    dry_run: bool
    # True when the time budget ran out: the run whose task id is continuation_id goes on.
    continued: bool
    continuation_id: str | None


class StatusCounts(Result):
    pending: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0


class TrashFigures(Result):
    total_videos: int = 0
    total_storage_bytes: int = 0


class PinFigures(Result):
    pin_id: UUID
    pin_name: str | None
    total_videos: int
    total_storage_bytes: int
    total_duration_seconds: RequiredFiniteFloat


class VideoStats(Result):
    """Figures of the videos not in the trash; ``trash`` counts those that are."""

    mall_id: UUID | None
    total_videos: int
    by_status: StatusCounts
    total_storage_bytes: int
    total_duration_seconds: RequiredFiniteFloat
    refreshed_at: UtcDatetime
    trash: TrashFigures = TrashFigures()
    # videos.stats(pin_id=...) only.
    pin_id: UUID | None = only_when_given()
    # videos.stats(by_pin=true) only: at most MAX_PINS, largest storage first.
    pins: list[PinFigures] | None = only_when_given()


class RefreshStatsResult(Result):
    mall_id: UUID | None
    # How many scopes were recomputed: the global figure plus each mall refreshed.
    scopes_refreshed: int
    refreshed_at: UtcDatetime


class RetentionSweepResult(Result):
    cutoff: UtcDatetime
    matched: int
    # Originals plus proxies of the matched videos: what a dry run says would be freed.
    matched_bytes: int
    deleted: int
    files_deleted: int
    files_pending: int
    dry_run: bool
    # Videos trashed more than TRASH_DAYS ago, deleted; and oldest videos deleted to
    # bring a mall with a storage quota back under it.
    deleted_from_trash: int = 0
    deleted_for_quota: int = 0
    # Videos trashed more than TRASH_DAYS ago when the sweep began, and their originals
    # plus proxies: what a dry run says the trash rule would take.
    matched_from_trash: int = 0
    matched_from_trash_bytes: int = 0


class PurgeResult(Result):
    attempted: int
    deleted: int
    failed: int
    # Keys a live row referenced again at removal time: dequeued, their objects kept.
    kept: int = 0
    remaining: int
    # Keys that failed so often they need a person to look (permissions, a lost bucket…).
    stuck: int


# Contract v1.2: tags and share links.
class TagResult(Result):
    # How many of the video_ids the caller sees (not in the trash); pairs changed.
    videos: int
    added: int
    removed: int
    not_found: list[UUID]


class TagCount(Result):
    name: str
    mall_id: UUID
    videos: int


class TagList(Result):
    tags: list[TagCount]


class ShareCreated(Result):
    """The one answer that carries the token: the worker keeps only its hash."""

    share_id: UUID
    token: str
    expires_at: UtcDatetime
    targets: list[str]
    video_count: int


class SharedVideo(Result):
    id: UUID
    original_filename: str
    duration_seconds: FiniteFloat | None
    uploaded_at: UtcDatetime
    recorded_at: UtcDatetime | None
    urls: dict[str, str | None]


class ShareResolved(Result):
    share_id: UUID
    label: str | None
    expires_at: UtcDatetime
    # When this answer's URLs expire: SHARE_URL_MINUTES from now, or the share's expiry.
    urls_expire_at: UtcDatetime
    videos: list[SharedVideo]


class ShareRevoked(Result):
    share_id: UUID
    revoked: bool


class ShareSummary(Result):
    """A share as its owners see it: never its token or its password."""

    share_id: UUID
    label: str | None
    created_by: str | None
    created_at: UtcDatetime
    expires_at: UtcDatetime
    revoked_at: UtcDatetime | None
    targets: list[str]
    video_count: int
    views: int
    max_views: int | None
    last_viewed_at: UtcDatetime | None
    has_password: bool


class ShareList(Result):
    shares: list[ShareSummary]
    total: int


ExportStatusName = Literal["queued", "running", "completed", "failed", "cancelled", "expired"]


class ExportQueued(Result):
    export_id: UUID
    status: ExportStatusName
    # Videos in the export, and the size of their files (the ZIP's size, near enough).
    videos: int
    bytes_estimated: int


class ExportState(Result):
    export_id: UUID
    status: ExportStatusName
    videos: int
    # Entries written so far (videos, thumbnails, the manifest), and the ZIP's bytes.
    done: int
    bytes_written: int
    # Presigned, once completed; expires_at is when it stops working.
    url: str | None
    expires_at: UtcDatetime | None
    # A sentence, when failed.
    error: str | None


class ExportRunResult(Result):
    export_id: UUID
    status: ExportStatusName
    done: int
    bytes_written: int


class ExportSweepResult(Result):
    # Exports whose worker was lost: queued again, or failed for good.
    restarted: int
    failed: int
    # Multipart uploads under exports/ that no live export holds, aborted.
    uploads_aborted: int
    # Completed exports past EXPORT_TTL_HOURS whose ZIP was deleted.
    expired: int
    # Queued exports not started within EXPORT_REQUEUE_MINUTES: their run sent again.
    requeued: int = 0


class ReprocessResult(Result):
    # Visible videos not in the trash that the selection names (``processing`` ones too).
    matched: int
    # Those set back to pending and handed to the processing pipeline (with dry_run: those
    # that would be).
    requested: int
    # Those left alone because the pipeline is working on them now.
    skipped_processing: int
    dry_run: bool
    # True when the time budget ran out: the run whose task id is continuation_id goes on.
    continued: bool = False
    continuation_id: str | None = None


# Contract v1.2: analytics.
class AnalyticsFigures(Result):
    stream_urls: int = 0
    thumbnail_urls: int = 0
    share_views: int = 0
    bytes_served: int = 0


class AnalyticsDay(AnalyticsFigures):
    day: date


class TopVideo(Result):
    video_id: UUID
    # Null once the video is deleted: its history still counts.
    original_filename: str | None
    stream_urls: int
    bytes_served: int


class AnalyticsResult(Result):
    # Every day of the range, in order, zeros included.
    days: list[AnalyticsDay]
    top_videos: list[TopVideo]
    totals: AnalyticsFigures


class AnalyticsFlushResult(Result):
    # Flush keys folded into PostgreSQL by this run (its own and those of dead flushes).
    folded: int
    # Flush keys another run had already folded: dropped, not counted again.
    skipped: int
    counts: int


class AccessLogIngestResult(Result):
    # Log objects read by this run (each one once, by key and ETag), and what was in them.
    objects: int
    lines: int
    garbage_lines: int
    bytes_counted: int
