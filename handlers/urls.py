"""Presigned GET URLs for the original, the proxy and the thumbnail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import TypeGuard
from uuid import UUID

from handlers import analytics
from handlers.deps import Deps
from handlers.errors import PROXY_NOT_AVAILABLE, THUMBNAIL_NOT_AVAILABLE, NotAvailable, NotFound
from handlers.ports import ObjectStore
from schemas.requests import SignUrl, SignUrls
from schemas.responses import SignUrlsResult, VideoDetailResponse, VideoStreamUrlResponse

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


def _file_of(video: VideoDetailResponse, target: str) -> tuple[str | None, str, str, int | None]:
    """(key, text when it is missing, content type, size) of one target of a video."""
    if target == "proxy":
        return video.proxy_path, PROXY_NOT_AVAILABLE, "video/mp4", video.proxy_size_bytes
    if target == "original":
        content_type = content_type_for(video.original_filename)
        return video.original_path, ORIGINAL_NOT_AVAILABLE, content_type, video.file_size_bytes
    return video.thumbnail_path, THUMBNAIL_NOT_AVAILABLE, "image/jpeg", None


def signing_time(deps: Deps) -> datetime:
    # SigV4 dates have whole seconds. This time is the one signed into the URL (stores
    # that cannot take it sign "now", a moment later), so expires_at never overstates.
    return deps.clock().replace(microsecond=0)


def signed_url(
    store: ObjectStore,
    video: VideoDetailResponse,
    target: str,
    expires_in: int,
    signed_at: datetime,
) -> VideoStreamUrlResponse:
    """One target of one video, signed; ``NotAvailable`` when that file is missing."""
    key, missing, content_type, size = _file_of(video, target)
    url = presign_file(store, key, expires_in, signed_at, missing)
    return VideoStreamUrlResponse(
        video_id=video.id,
        url=url,
        expires_at=signed_at + timedelta(seconds=expires_in),
        content_type=content_type,
        file_size_bytes=size,
        duration_seconds=None if target == "thumbnail" else video.duration_seconds,
    )


def gallery_urls(
    store: ObjectStore,
    files: Mapping[str, str | None],
    targets: Sequence[str],
    expires_in: int,
    signed_at: datetime,
) -> dict[str, str | None]:
    """Each target's URL, null where its file is missing (a gallery shows a placeholder)."""
    urls: dict[str, str | None] = {}
    for target in targets:
        key = files.get(target)
        urls[target] = (
            store.presign_get(key, expires_in, signed_at=signed_at) if is_file_key(key) else None
        )
    return urls


def sign_url(cmd: SignUrl, deps: Deps) -> VideoStreamUrlResponse:
    with deps.reads() as uow:
        video = uow.catalogue.get(deps.scope, cmd.video_id)
    if video is None:
        raise NotFound.video(cmd.video_id)
    url = signed_url(deps.store, video, cmd.target, cmd.expires_minutes * 60, signing_time(deps))
    analytics.count(deps, [(video.id, video.mall_id, video.pin_id, cmd.target)])
    return url


def sign_urls(cmd: SignUrls, deps: Deps) -> SignUrlsResult:
    """Up to 100 videos in one message and one query; the answer keeps the order asked.

    An id the caller cannot see is ``not_found`` exactly as one that does not exist; a
    video without the target's file is ``not_available``. Neither fails the rest.
    """
    with deps.reads() as uow:
        videos = uow.catalogue.get_many(deps.scope, cmd.video_ids)
    expires_in, signed_at = cmd.expires_minutes * 60, signing_time(deps)
    urls: list[VideoStreamUrlResponse] = []
    not_found: list[UUID] = []
    not_available: list[UUID] = []
    signed: list[tuple[UUID, UUID, UUID | None, str]] = []
    for video_id in cmd.video_ids:
        video = videos.get(video_id)
        if video is None:
            not_found.append(video_id)
            continue
        try:
            urls.append(signed_url(deps.store, video, cmd.target, expires_in, signed_at))
        except NotAvailable:
            not_available.append(video_id)
            continue
        signed.append((video.id, video.mall_id, video.pin_id, cmd.target))
    analytics.count(deps, signed)
    return SignUrlsResult(urls=urls, not_found=not_found, not_available=not_available)
