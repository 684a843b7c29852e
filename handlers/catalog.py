"""Reading the catalogue: list (with search, the trash and gallery URLs) and get."""

from __future__ import annotations

from datetime import timedelta

from handlers import analytics, cursors
from handlers.deletion import purge_after
from handlers.deps import Deps
from handlers.errors import InvalidRequest, NotFound
from handlers.ports import Window
from handlers.urls import gallery_urls, signing_time
from schemas.requests import GetVideo, ListVideos
from schemas.responses import VideoDetailResponse, VideoListItem, VideoListResponse


def _window(cmd: ListVideos, deps: Deps) -> tuple[Window, int]:
    """Where the page starts, what its total may cost, and how many videos the listing
    showed before it. A search's offset pages stop at the cap its total counts to:
    further on, an offset would be a scan of every match before it, which the cursor's
    keyset never is."""
    cap = deps.policy.search_total_cap
    searching = cmd.q is not None
    after, shown = None, (cmd.page - 1) * cmd.page_size
    if cmd.cursor is not None:
        if "page" in cmd.model_fields_set:
            msg = "a cursor names its own page: send cursor or page, not both"
            raise InvalidRequest(f"cursor: {msg}", [{"loc": ["cursor"], "msg": msg}])
        at = cursors.open_cursor(deps.cursor_key, deps.scope, cmd, cmd.cursor)
        after, shown = (at.uploaded_at, at.video_id), at.shown
    elif searching and cmd.page * cmd.page_size > cap:
        msg = (
            f"page × page_size is past the {cap} matches a search counts; use cursor "
            "(each page's next_cursor) to go further"
        )
        raise InvalidRequest(f"page: {msg}", [{"loc": ["page"], "msg": msg}])
    window = Window(
        after=after,
        count_cap=cap if searching else None,
        search_ms=deps.policy.search_timeout_ms if searching else None,
        peek=True,
    )
    return window, shown


def list_videos(cmd: ListVideos, deps: Deps) -> VideoListResponse:
    """A page and its total; with ``sign``, the page's URLs too, in one message.

    The total is exact, but a search's stops at ``search_total_cap`` (``total_relation``
    says which). Each page carries the cursor of the next, which any page of the
    listing is reached by at the cost of the first.

    A gallery page used to be one list call and one sign_url call per item; here the
    list query reads each item's object keys with the page, and each target is signed
    locally, which makes no S3 call.
    """
    window, shown = _window(cmd, deps)
    with deps.reads() as uow:
        items, counted = uow.catalogue.list(deps.scope, cmd, window)
    more = len(items) > cmd.page_size
    items = items[: cmd.page_size]
    total, relation = counted, "eq"
    if window.count_cap is not None and counted > window.count_cap:
        total, relation = window.count_cap, "gte"
    next_cursor = None
    if more:
        last = items[-1]
        position = cursors.Position(last.uploaded_at, last.id, shown + len(items))
        next_cursor = cursors.seal(deps.cursor_key, deps.scope, cmd, position)
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
        analytics.count(
            deps,
            (
                signed
                for item in items
                for signed in analytics.urls_of(item.id, item.mall_id, item.pin_id, item.urls)
            ),
        )
    if cmd.trashed:
        items = [_with_purge_after(deps, item) for item in items]
    return VideoListResponse(
        videos=items,
        total=total,
        # With a cursor: the page these videos are at with this page_size.
        page=shown // cmd.page_size + 1,
        page_size=cmd.page_size,
        total_pages=-(-total // cmd.page_size),
        total_relation=relation,
        next_cursor=next_cursor,
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
