"""Messages of the video worker: task kwargs, results, events and the envelope."""

from schemas.envelope import Envelope, ErrorBody, FieldError, failure, success
from schemas.events import EVENTS_CHANNEL, StatsRefreshed, VideoDeleted
from schemas.requests import (
    DeleteVideo,
    FlushStaleStats,
    GetStats,
    GetVideo,
    ListVideos,
    PurgeStorage,
    RefreshStats,
    SignUrl,
    SweepRetention,
)
from schemas.responses import (
    PurgeResult,
    RefreshStatsResult,
    RetentionSweepResult,
    StatusCounts,
    VideoDeleteResponse,
    VideoDetailResponse,
    VideoListItem,
    VideoListResponse,
    VideoStats,
    VideoStreamUrlResponse,
)

__all__ = [
    "EVENTS_CHANNEL",
    "DeleteVideo",
    "Envelope",
    "ErrorBody",
    "FieldError",
    "FlushStaleStats",
    "GetStats",
    "GetVideo",
    "ListVideos",
    "PurgeResult",
    "PurgeStorage",
    "RefreshStats",
    "RefreshStatsResult",
    "RetentionSweepResult",
    "SignUrl",
    "StatsRefreshed",
    "StatusCounts",
    "SweepRetention",
    "VideoDeleteResponse",
    "VideoDeleted",
    "VideoDetailResponse",
    "VideoListItem",
    "VideoListResponse",
    "VideoStats",
    "VideoStreamUrlResponse",
    "failure",
    "success",
]
