"""``videos.delete``: the row, its processing jobs (by cascade) and its objects.

The row delete, the queueing of its object keys and its audit row commit together;
only then does the removal engine (``handlers.removal``) take the keys out of the
bucket. A key that cannot be removed now stays queued for ``videos.purge_storage``.
"""

from __future__ import annotations

from collections.abc import Sequence

from handlers.deps import Deps
from handlers.errors import NotFound
from handlers.ports import PastDeletion, RemovedVideo
from handlers.removal import RemovalReport, queue_removal, remove_queued
from handlers.stats import request_stats_refresh
from schemas.events import VideoDeleted
from schemas.requests import DeleteVideo
from schemas.responses import VideoDeleteResponse


def delete_message(removed: int, pending: int) -> str:
    message = f"Video deleted successfully. {removed} file(s) removed from storage."
    if pending:
        message += f" {pending} file(s) queued for retry."
    return message


def outcome_of(video: RemovedVideo, report: RemovalReport) -> tuple[list[str], list[str]]:
    """(removed, still queued) keys of one video: a key another row kept is neither."""
    done, kept = set(report.deleted), set(report.kept)
    deleted = [key for key in video.object_keys if key in done]
    pending = [key for key in video.object_keys if key not in done and key not in kept]
    return deleted, pending


def announce_deleted(
    deps: Deps, removed: Sequence[RemovedVideo], report: RemovalReport, files_removed: bool
) -> None:
    """An event per deleted video, then one coalesced stats refresh request."""
    at = deps.clock()
    for video in removed:
        deleted, pending = outcome_of(video, report) if files_removed else ([], [])
        deps.publish(
            VideoDeleted(
                video_id=video.id,
                mall_id=video.mall_id,
                files_deleted=deleted,
                files_pending=pending,
                at=at,
            )
        )
    deps.cache.forget_pins({video.pin_id for video in removed if video.pin_id is not None})
    request_stats_refresh(deps, {video.mall_id for video in removed})


def delete_video(cmd: DeleteVideo, deps: Deps) -> VideoDeleteResponse:
    now = deps.clock()
    with deps.uow() as uow:
        removed = uow.videos.delete(deps.scope, cmd.video_id)
        if removed is None:
            past = uow.audit.find(cmd.video_id, deps.request_id) if deps.request_id else None
            if past is None:
                raise NotFound.video(cmd.video_id)
            return _answer_again(past)
        queued = queue_removal(deps, uow, [removed], "request", cmd.delete_files, now)
        uow.commit()

    report = remove_queued(deps, queued)
    deleted, pending = outcome_of(removed, report) if cmd.delete_files else ([], [])
    deps.log.info(
        "video.deleted",
        extra={
            "video_id": str(removed.id),
            "files_deleted": len(deleted),
            "files_pending": len(pending),
        },
    )
    announce_deleted(deps, [removed], report, cmd.delete_files)
    return VideoDeleteResponse(
        video_id=removed.id,
        deleted=True,
        files_deleted=deleted,
        files_pending=pending,
        message=delete_message(len(deleted), len(pending)),
    )


def _answer_again(past: PastDeletion) -> VideoDeleteResponse:
    """The answer to a redelivered delete whose first run committed but never replied.

    Only the same message (same task id) gets it; a new delete of a video already gone
    is ``not_found``, as the contract says.
    """
    pending = [] if past.files_kept else [k for k in past.object_keys if k in past.still_queued]
    deleted = [] if past.files_kept else [k for k in past.object_keys if k not in pending]
    return VideoDeleteResponse(
        video_id=past.video_id,
        deleted=True,
        files_deleted=deleted,
        files_pending=pending,
        message=delete_message(len(deleted), len(pending)),
    )
