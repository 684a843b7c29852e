"""Presigned GET URLs for the original, the proxy and the thumbnail."""

from __future__ import annotations

from datetime import timedelta
from pathlib import PurePosixPath

from handlers.deps import Deps
from handlers.errors import PROXY_NOT_AVAILABLE, THUMBNAIL_NOT_AVAILABLE, NotAvailable, NotFound
from schemas.requests import SignUrl
from schemas.responses import VideoStreamUrlResponse

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


def sign_url(cmd: SignUrl, deps: Deps) -> VideoStreamUrlResponse:
    with deps.uow() as uow:
        video = uow.videos.get(cmd.video_id)
    if video is None:
        raise NotFound.video(cmd.video_id)

    if cmd.target == "proxy":
        if not video.proxy_path:
            raise NotAvailable(PROXY_NOT_AVAILABLE)
        key, content_type = video.proxy_path, "video/mp4"
        size, duration = video.proxy_size_bytes, video.duration_seconds
    elif cmd.target == "original":
        key, content_type = video.original_path, content_type_for(video.original_filename)
        size, duration = video.file_size_bytes, video.duration_seconds
    else:
        if not video.thumbnail_path:
            raise NotAvailable(THUMBNAIL_NOT_AVAILABLE)
        key, content_type, size, duration = video.thumbnail_path, "image/jpeg", None, None

    expires_in = cmd.expires_minutes * 60
    # SigV4 dates have whole seconds. This time is the one signed into the URL (stores
    # that cannot take it sign "now", a moment later), so expires_at never overstates.
    signed_at = deps.clock().replace(microsecond=0)
    url = deps.store.presign_get(key, expires_in, signed_at=signed_at)
    return VideoStreamUrlResponse(
        video_id=video.id,
        url=url,
        expires_at=signed_at + timedelta(seconds=expires_in),
        content_type=content_type,
        file_size_bytes=size,
        duration_seconds=duration,
    )
