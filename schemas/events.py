"""Events: the v1 shapes published on the ``videos.events`` Redis channel after the
commit they describe, and the CloudEvents every change also writes to the outbox, which
the relay carries to the stream ``videos:events`` (and, on RabbitMQ, the exchange
``videos.events``) at least once, in commit order per subject."""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from schemas.responses import UtcDatetime

EVENTS_CHANNEL = "videos.events"
# Where the outbox's events are relayed to. The pub/sub channel above and the exchange
# share a name but not a server: one is Redis, the other RabbitMQ.
EVENTS_STREAM = "videos:events"
EVENTS_EXCHANGE = "videos.events"
EVENTS_SOURCE = "videoworker"
CLOUDEVENTS_SPECVERSION = "1.0"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
# The fields of a stream entry: the whole event, and its type and subject to filter by
# without parsing it.
STREAM_EVENT_FIELD = "event"
STREAM_TYPE_FIELD = "type"
STREAM_SUBJECT_FIELD = "subject"


class Event(BaseModel):
    model_config = ConfigDict(frozen=True)


class VideoDeleted(Event):
    event: Literal["video.deleted"] = "video.deleted"
    video_id: UUID
    mall_id: UUID
    files_deleted: list[str]
    files_pending: list[str]
    at: UtcDatetime


class StatsRefreshed(Event):
    event: Literal["stats.refreshed"] = "stats.refreshed"
    mall_id: UUID | None
    at: UtcDatetime


class BulkDeleteProgress(Event):
    """After each batch of a bulk delete: ``task_id`` is the run's (a continuation has
    its own), ``matched`` what that run matched, ``deleted`` what it has done so far."""

    event: Literal["bulk_delete.progress"] = "bulk_delete.progress"
    task_id: str | None
    matched: int
    deleted: int
    at: UtcDatetime


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event in structured JSON mode, as the stream and the exchange
    carry it. ``id`` is the outbox row's and never changes on a redelivery: subscribers
    deduplicate by it. Unknown attributes (extensions) are ignored when read."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = CLOUDEVENTS_SPECVERSION
    id: str = Field(min_length=1)
    source: str = Field(default=EVENTS_SOURCE, min_length=1)
    type: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    time: UtcDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]


class EventData(BaseModel):
    """The ``data`` of one type of CloudEvent; ``subject`` names what it is about."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]

    @property
    def subject(self) -> str:
        raise NotImplementedError


class VideoEventData(EventData):
    video_id: UUID
    mall_id: UUID
    pin_id: UUID | None

    @property
    def subject(self) -> str:
        return str(self.video_id)


class VideoCreatedData(VideoEventData):
    """A row another service inserted (written by a trigger on ``videos``)."""

    event_type: ClassVar[str] = "video.created"
    processing_status: str
    has_proxy: bool
    has_thumbnail: bool
    uploaded_at: UtcDatetime


class StatusChange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    from_: Any = Field(alias="from")
    to: Any


class VideoStatusChangedData(VideoEventData):
    """Written by a trigger on ``videos`` when an UPDATE changes the processing status,
    or makes a proxy or thumbnail appear or go. All three carry from and to (equal when
    that one did not move); ``changed`` names those that moved."""

    event_type: ClassVar[str] = "video.status_changed"
    processing_status: StatusChange
    has_proxy: StatusChange
    has_thumbnail: StatusChange
    changed: list[Literal["processing_status", "has_proxy", "has_thumbnail"]]


class VideoTrashedData(VideoEventData):
    event_type: ClassVar[str] = "video.trashed"
    trashed_at: UtcDatetime
    trashed_by: str | None


class VideoRestoredData(VideoEventData):
    event_type: ClassVar[str] = "video.restored"


class VideoDeletedData(VideoEventData):
    """The row is gone. ``object_keys`` are the files it held: queued for removal when
    ``files_kept`` is false (``videos.purge_storage`` retries until they are gone)."""

    event_type: ClassVar[str] = "video.deleted"
    reason: str
    object_keys: list[str]
    files_kept: bool


class BulkDeleteProgressData(EventData):
    """After each batch of a bulk delete; the subject is the run's task id."""

    event_type: ClassVar[str] = "bulk_delete.progress"
    task_id: str | None
    matched: int
    deleted: int
    trash: bool

    @property
    def subject(self) -> str:
        return self.task_id or "bulk_delete"


class StatsRefreshedData(EventData):
    """A scope's figures were recomputed into the cache; the subject is the mall id, or
    ``global`` for the figure of every mall."""

    event_type: ClassVar[str] = "stats.refreshed"
    mall_id: UUID | None

    @property
    def subject(self) -> str:
        return str(self.mall_id) if self.mall_id is not None else "global"


class VideoTaggedData(VideoEventData):
    """Tags added to or removed from one video (``videos.tag``): the names as stored."""

    event_type: ClassVar[str] = "video.tagged"
    added: list[str]
    removed: list[str]
    tagged_by: str | None


class ShareEventData(EventData):
    """About one share link; the subject is its id. Never its token or password."""

    share_id: UUID

    @property
    def subject(self) -> str:
        return str(self.share_id)


class ShareCreatedData(ShareEventData):
    event_type: ClassVar[str] = "share.created"
    created_by: str | None
    expires_at: UtcDatetime
    targets: list[str]
    video_ids: list[UUID]
    max_views: int | None
    has_password: bool


class ShareRevokedData(ShareEventData):
    event_type: ClassVar[str] = "share.revoked"
    revoked_by: str | None


class ShareViewedData(ShareEventData):
    """A resolve that answered: ``views`` counts it; ``video_ids`` it gave URLs for."""

    event_type: ClassVar[str] = "share.viewed"
    views: int
    video_ids: list[UUID]


class ExportEventData(EventData):
    """About one export; the subject is its id."""

    export_id: UUID

    @property
    def subject(self) -> str:
        return str(self.export_id)


class ExportProgressData(ExportEventData):
    """While an export runs, at most every few seconds: entries and bytes written."""

    event_type: ClassVar[str] = "export.progress"
    videos: int
    done: int
    bytes_written: int
    bytes_estimated: int


class ExportCompletedData(ExportEventData):
    event_type: ClassVar[str] = "export.completed"
    object_key: str
    size_bytes: int
    missing: int
    expires_at: UtcDatetime


class ExportFailedData(ExportEventData):
    """Failed or cancelled (``cancelled``); ``error`` is a sentence."""

    event_type: ClassVar[str] = "export.failed"
    error: str
    cancelled: bool = False


class VideoReprocessRequestedData(VideoEventData):
    """Set back to ``pending`` by ``videos.reprocess``; the processing pipeline is asked
    to remake ``targets``. ``request_id`` is the run's task id (the pipeline's message
    for this video carries a task id derived from it, the same on every resend)."""

    event_type: ClassVar[str] = "video.reprocess_requested"
    targets: list[str]
    requested_by: str | None
    request_id: str


EVENT_DATA: dict[str, type[EventData]] = {
    model.event_type: model
    for model in (
        VideoCreatedData,
        VideoStatusChangedData,
        VideoTrashedData,
        VideoRestoredData,
        VideoDeletedData,
        BulkDeleteProgressData,
        StatsRefreshedData,
        VideoTaggedData,
        ShareCreatedData,
        ShareRevokedData,
        ShareViewedData,
        ExportProgressData,
        ExportCompletedData,
        ExportFailedData,
        VideoReprocessRequestedData,
    )
}


__all__ = [
    "CLOUDEVENTS_SPECVERSION",
    "EVENTS_CHANNEL",
    "EVENTS_EXCHANGE",
    "EVENTS_SOURCE",
    "EVENTS_STREAM",
    "EVENT_DATA",
    "BulkDeleteProgress",
    "BulkDeleteProgressData",
    "CloudEvent",
    "Event",
    "EventData",
    "StatsRefreshed",
    "StatsRefreshedData",
    "VideoCreatedData",
    "VideoDeleted",
    "VideoDeletedData",
    "VideoRestoredData",
    "VideoStatusChangedData",
    "VideoTrashedData",
    "VideoTaggedData",
    "ShareCreatedData",
    "ShareRevokedData",
    "ShareViewedData",
    "ExportProgressData",
    "ExportCompletedData",
    "ExportFailedData",
    "VideoReprocessRequestedData",
]
