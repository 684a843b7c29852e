"""Reading the catalogue: list (with search, the trash and gallery URLs) and get."""

from __future__ import annotations

from datetime import timedelta

from handlers.deletion import purge_after
from handlers.deps import Deps
from handlers.errors import NotFound
from handlers.urls import gallery_urls, signing_time
from schemas.requests import GetVideo, ListVideos
from schemas.responses import VideoDetailResponse, VideoListItem, VideoListResponse


def list_videos(cmd: ListVideos, deps: Deps) -> VideoListResponse:
    """A page and its exact total; with ``sign``, the page's URLs too, in one message.

    A gallery page used to be one list call and one sign_url call per item; here the
    list query reads each item's object keys with the page, and each target is signed
    locally, which makes no S3 call.
    """
    with deps.reads() as uow:
        items, total = uow.catalogue.list(deps.scope, cmd)
    urls_expire_at = None
    if cmd.sign:
        expires_in, signed_at = cmd.sign_expires_minutes * 60, signing_time(deps)
        urls_expire_at = signed_at + timedelta(seconds=expires_in)
        items = [
            item.model_copy(
                update={
                    "urls": gallery_urls(deps.store, item.files, cmd.sign, expires_in, signed_at)
                }
            )
            for item in items
        ]
    if cmd.trashed:
        items = [_with_purge_after(deps, item) for item in items]
    return VideoListResponse(
        videos=items,
        total=total,
        page=cmd.page,
        page_size=cmd.page_size,
        total_pages=-(-total // cmd.page_size),
        urls_expire_at=urls_expire_at,
    )


def _with_purge_after(deps: Deps, item: VideoListItem) -> VideoListItem:
    if item.trashed_at is None:
        return item
    return item.model_copy(update={"purge_after": purge_after(deps, item.trashed_at)})


def get_video(cmd: GetVideo, deps: Deps) -> VideoDetailResponse:
    with deps.reads() as uow:
        video = uow.catalogue.get(deps.scope, cmd.video_id)
    if video is None:
        raise NotFound.video(cmd.video_id)
    return video
