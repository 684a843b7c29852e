"""Reading the catalogue: list and get."""

from __future__ import annotations

from handlers.deps import Deps
from handlers.errors import NotFound
from schemas.requests import GetVideo, ListVideos
from schemas.responses import VideoDetailResponse, VideoListResponse


def list_videos(cmd: ListVideos, deps: Deps) -> VideoListResponse:
    with deps.uow() as uow:
        items, total = uow.videos.list(deps.scope, cmd)
    return VideoListResponse(
        videos=items,
        total=total,
        page=cmd.page,
        page_size=cmd.page_size,
        total_pages=-(-total // cmd.page_size),
    )


def get_video(cmd: GetVideo, deps: Deps) -> VideoDetailResponse:
    with deps.uow() as uow:
        video = uow.videos.get(deps.scope, cmd.video_id)
    if video is None:
        raise NotFound.video(cmd.video_id)
    return video
