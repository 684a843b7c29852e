"""The events a change writes to the outbox, inside the transaction that makes it.

Each capability calls one of these with what its room just changed, before it commits:
the event then exists if and only if the change does, and the relay carries it out at
least once. The v1 pub/sub events (``deps.publish``) stay as they were, after commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from uuid import UUID

from handlers.ports import RemovedVideo, TrashedVideo, UnitOfWork
from schemas.events import (
    BulkDeleteProgressData,
    StatsRefreshedData,
    VideoDeletedData,
    VideoRestoredData,
    VideoTrashedData,
)


def deleted(
    uow: UnitOfWork, removed: Sequence[RemovedVideo], reason: str, delete_files: bool
) -> None:
    uow.events.add(
        [
            VideoDeletedData(
                video_id=video.id,
                mall_id=video.mall_id,
                pin_id=video.pin_id,
                reason=reason,
                object_keys=video.object_keys,
                files_kept=not delete_files,
            )
            for video in removed
        ]
    )


def trashed(uow: UnitOfWork, videos: Iterable[TrashedVideo], by: str | None) -> None:
    """Only the videos this transaction moved: one already in the trash has no news."""
    uow.events.add(
        [
            VideoTrashedData(
                video_id=video.id,
                mall_id=video.mall_id,
                pin_id=video.pin_id,
                trashed_at=video.trashed_at,
                trashed_by=by,
            )
            for video in videos
            if video.newly
        ]
    )


def restored(uow: UnitOfWork, videos: Iterable[TrashedVideo]) -> None:
    uow.events.add(
        [
            VideoRestoredData(video_id=video.id, mall_id=video.mall_id, pin_id=video.pin_id)
            for video in videos
        ]
    )


def bulk_progress(
    uow: UnitOfWork, task_id: str | None, matched: int, deleted: int, trash: bool
) -> None:
    uow.events.add(
        [BulkDeleteProgressData(task_id=task_id, matched=matched, deleted=deleted, trash=trash)]
    )


def stats_refreshed(uow: UnitOfWork, mall_ids: Iterable[UUID | None]) -> None:
    uow.events.add([StatsRefreshedData(mall_id=mall_id) for mall_id in mall_ids])
