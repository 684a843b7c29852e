"""Presigned GET URLs for the original, the proxy and the thumbnail."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import TypeGuard

from handlers.deps import Deps
from handlers.errors import PROXY_NOT_AVAILABLE, THUMBNAIL_NOT_AVAILABLE, NotAvailable, NotFound
from handlers.ports import ObjectStore
from schemas.requests import SignUrl
from schemas.responses import VideoStreamUrlResponse

ORIGINAL_NOT_AVAILABLE = "Original video not available"
FILE_NOT_AVAILABLE = "File not available"

# Explicit rather than the mimetypes module, whose answers depend on the host's
# /etc/mime.types: a caller must get the same content type from every worker.
VIDEO_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/x-m4v",
    ".mov": "video/quicktime",
    ".qt": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
    ".avi": "video/x-msvideo",
    ".wmv": "video/x-ms-wmv",
    ".flv": "video/x-flv",
    ".mpg": "video/mpeg",
    ".mpeg": "video/mpeg",
    ".ts": "video/mp2t",
    ".mts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".3gp": "video/3gpp",
    ".ogv": "video/ogg",
    ".h264": "video/h264",
}


def content_type_for(filename: str) -> str:
    return VIDEO_CONTENT_TYPES.get(
        PurePosixPath(filename).suffix.lower(), "application/octet-stream"
    )


def is_file_key(key: str | None) -> TypeGuard[str]:
    """Whether an object key, as another service wrote it, names a file.

    An empty or blank key, or one ending in ``/`` (a "directory"), does not: a presigned
    GET of the empty key is a GET of the bucket itself, a listing of every mall's keys.
    """
    return key is not None and key.strip() != "" and not key.endswith("/")


def presign_file(
    store: ObjectStore,
    key: str | None,
    expires_in: int,
    signed_at: datetime,
    missing: str = FILE_NOT_AVAILABLE,
) -> str:
    """The one way to the presigner: a key that names no file is answered, never signed."""
    if not is_file_key(key):
        raise NotAvailable(missing)
    return store.presign_get(key, expires_in, signed_at=signed_at)


def sign_url(cmd: SignUrl, deps: Deps) -> VideoStreamUrlResponse:
    with deps.uow() as uow:
        video = uow.videos.get(deps.scope, cmd.video_id)
    if video is None:
        raise NotFound.video(cmd.video_id)

    key: str | None
    if cmd.target == "proxy":
        key, missing, content_type = video.proxy_path, PROXY_NOT_AVAILABLE, "video/mp4"
        size, duration = video.proxy_size_bytes, video.duration_seconds
    elif cmd.target == "original":
        key, missing = video.original_path, ORIGINAL_NOT_AVAILABLE
        content_type = content_type_for(video.original_filename)
        size, duration = video.file_size_bytes, video.duration_seconds
    else:
        key, missing, content_type = video.thumbnail_path, THUMBNAIL_NOT_AVAILABLE, "image/jpeg"
        size, duration = None, None

    expires_in = cmd.expires_minutes * 60
    # SigV4 dates have whole seconds. This time is the one signed into the URL (stores
    # that cannot take it sign "now", a moment later), so expires_at never overstates.
    signed_at = deps.clock().replace(microsecond=0)
    url = presign_file(deps.store, key, expires_in, signed_at, missing)
    return VideoStreamUrlResponse(
        video_id=video.id,
        url=url,
        expires_at=signed_at + timedelta(seconds=expires_in),
        content_type=content_type,
        file_size_bytes=size,
        duration_seconds=duration,
    )
