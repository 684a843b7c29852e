"""Events published on the ``videos.events`` Redis channel, after the commit they describe."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from schemas.responses import UtcDatetime

EVENTS_CHANNEL = "videos.events"


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


__all__ = ["EVENTS_CHANNEL", "BulkDeleteProgress", "Event", "StatsRefreshed", "VideoDeleted"]
