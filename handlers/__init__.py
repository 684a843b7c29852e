"""The video service: plain functions ``handler(command, deps)`` over ports.

Nothing here imports Celery, SQLAlchemy, boto3 or redis; those live behind the
ports in ``handlers.ports`` and are wired by ``worker.bootstrap``.
"""

from handlers.bulk import bulk_delete
from handlers.catalog import get_video, list_videos
from handlers.deletion import delete_video, purge_storage
from handlers.deps import Deps
from handlers.errors import (
    DatabaseUnavailable,
    InvalidRequest,
    NotAvailable,
    NotFound,
    StorageUnavailable,
    Unavailable,
    VideoError,
)
from handlers.retention import sweep_retention
from handlers.stats import flush_stale_stats, get_stats, refresh_stats
from handlers.trash import restore_video
from handlers.urls import sign_url, sign_urls

__all__ = [
    "DatabaseUnavailable",
    "Deps",
    "InvalidRequest",
    "NotAvailable",
    "NotFound",
    "StorageUnavailable",
    "Unavailable",
    "VideoError",
    "bulk_delete",
    "delete_video",
    "flush_stale_stats",
    "get_stats",
    "get_video",
    "list_videos",
    "purge_storage",
    "refresh_stats",
    "restore_video",
    "sign_url",
    "sign_urls",
    "sweep_retention",
]
