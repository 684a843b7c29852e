"""Deleting videos without ever losing track of their objects.

The row delete and the enqueue of its object keys in ``storage_deletions`` commit
together (a transactional outbox). Only after that commit are the objects removed,
so no object disappears while a row still points at it; a key whose removal fails
stays queued and ``purge_storage`` retries it, so no object outlives its row.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from handlers.deps import Deps
from handlers.errors import NotFound, StorageUnavailable
from handlers.ports import DeleteReport, QueuedKey, RemovedVideo
from schemas.events import VideoDeleted
from schemas.requests import DeleteVideo, PurgeStorage, SweepRetention
from schemas.responses import PurgeResult, RetentionSweepResult, VideoDeleteResponse

RETRY_BASE_SECONDS = 30
RETRY_CAP_SECONDS = 6 * 3600


def retry_delay(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: 30 s, 1 min, 2 min … capped at 6 h.

    Jitter (between half and all of the step) spreads keys that failed together, so a
    recovering S3 is not hit by the whole backlog in the same second.
    """
    step = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return timedelta(seconds=step * (rng or random).uniform(0.5, 1.0))


def _remove_objects(deps: Deps, queued: dict[str, list[int]], now: datetime) -> DeleteReport:
    """Remove queued keys and record the outcome; never raises once the rows are gone.

    Whatever happens here, the keys are already durable in the queue: a failure to
    reach S3 or to write the outcome back only delays their removal until purge.
    """
    keys = list(queued)
    if not keys:
        return DeleteReport()
    try:
        report = deps.store.delete_many(keys)
    except StorageUnavailable as exc:
        deps.log.warning("storage.delete.unavailable", extra={"keys": len(keys), "error": str(exc)})
        report = DeleteReport(failed={key: str(exc) for key in keys})
    try:
        with deps.uow() as uow:
            uow.deletions.complete(i for key in report.deleted for i in queued[key])
            if report.failed:
                uow.deletions.retry_later(
                    {
                        i: (error, now + retry_delay(1))
                        for key, error in report.failed.items()
                        for i in queued[key]
                    }
                )
            uow.commit()
    except Exception as exc:  # noqa: BLE001 - the queue rows stay; purge settles them.
        deps.log.warning("storage.delete.bookkeeping_failed", extra={"error": type(exc).__name__})
    return report


def _enqueue(
    deps: Deps, uow, removed: Sequence[RemovedVideo], reason: str, now: datetime
) -> dict[str, list[int]]:
    entries = [
        QueuedKey(object_key=key, video_id=video.id, mall_id=video.mall_id, reason=reason)
        for video in removed
        for key in video.object_keys
    ]
    if not entries:
        return {}
    ids = uow.deletions.enqueue(
        entries, not_before=now + timedelta(seconds=deps.purge_grace_seconds)
    )
    queued: dict[str, list[int]] = {}
    for entry, queue_id in zip(entries, ids, strict=True):
        queued.setdefault(entry.object_key, []).append(queue_id)
    return queued


def delete_message(removed: int, pending: int) -> str:
    message = f"Video deleted successfully. {removed} file(s) removed from storage."
    if pending:
        message += f" {pending} file(s) queued for retry."
    return message


def delete_video(cmd: DeleteVideo, deps: Deps) -> VideoDeleteResponse:
    now = deps.clock()
    with deps.uow() as uow:
        removed = uow.videos.delete(cmd.video_id)
        if removed is None:
            raise NotFound.video(cmd.video_id)
        queued = _enqueue(deps, uow, [removed], "request", now) if cmd.delete_files else {}
        uow.commit()

    report = _remove_objects(deps, queued, now)
    removed_keys = set(report.deleted)
    deleted = [k for k in removed.object_keys if k in removed_keys]
    pending = [k for k in removed.object_keys if k in report.failed]
    deps.log.info(
        "video.deleted",
        extra={
            "video_id": str(removed.id),
            "files_deleted": len(deleted),
            "files_pending": len(pending),
        },
    )
    deps.publish(
        VideoDeleted(
            video_id=removed.id,
            mall_id=removed.mall_id,
            files_deleted=deleted,
            files_pending=pending,
            at=deps.clock(),
        )
    )
    return VideoDeleteResponse(
        video_id=removed.id,
        deleted=True,
        files_deleted=deleted,
        files_pending=pending,
        message=delete_message(len(deleted), len(pending)),
    )


def sweep_retention(cmd: SweepRetention, deps: Deps) -> RetentionSweepResult:
    now = deps.clock()
    days = cmd.older_than_days or deps.retention_days
    cutoff = now - timedelta(days=days)

    with deps.uow() as uow:
        matched = uow.videos.summarise_expired(cutoff, cmd.mall_id).count
    if cmd.dry_run:
        return RetentionSweepResult(
            cutoff=cutoff,
            matched=matched,
            deleted=0,
            files_deleted=0,
            files_pending=0,
            dry_run=True,
        )

    deleted = files_deleted = files_pending = 0
    while True:
        with deps.uow() as uow:
            # SKIP LOCKED inside: a concurrent sweep takes other rows instead of waiting.
            batch = uow.videos.delete_expired(cutoff, cmd.mall_id, cmd.batch_size)
            if not batch:
                break
            queued = _enqueue(deps, uow, batch, "retention", now) if cmd.delete_files else {}
            uow.commit()
        report = _remove_objects(deps, queued, now)
        deleted += len(batch)
        files_deleted += len(report.deleted)
        files_pending += len(report.failed)
        deps.log.info(
            "retention.batch",
            extra={
                "videos": len(batch),
                "files_deleted": len(report.deleted),
                "files_pending": len(report.failed),
            },
        )
        if len(batch) < cmd.batch_size:
            break

    return RetentionSweepResult(
        cutoff=cutoff,
        matched=matched,
        deleted=deleted,
        files_deleted=files_deleted,
        files_pending=files_pending,
        dry_run=False,
    )


def purge_storage(cmd: PurgeStorage, deps: Deps) -> PurgeResult:
    """Retry queued deletions that are due, oldest first, holding their rows locked.

    The claim (``FOR UPDATE SKIP LOCKED``) lasts until the outcome is written, so two
    purges never work on the same key and a purge killed mid-way just leaves the
    keys due for the next one.
    """
    now = deps.clock()
    with deps.uow() as uow:
        due = uow.deletions.claim_due(now, cmd.limit)
        if not due:
            return PurgeResult(attempted=0, deleted=0, failed=0, remaining=uow.deletions.pending())
        keys = list(dict.fromkeys(d.object_key for d in due))
        try:
            report = deps.store.delete_many(keys)
        except StorageUnavailable as exc:
            report = DeleteReport(failed={key: str(exc) for key in keys})
        done = set(report.deleted)
        uow.deletions.complete(d.id for d in due if d.object_key in done)
        uow.deletions.retry_later(
            {
                d.id: (report.failed[d.object_key], now + retry_delay(d.attempts + 1))
                for d in due
                if d.object_key in report.failed
            }
        )
        remaining = uow.deletions.pending()
        uow.commit()
    if report.failed:
        deps.log.warning("storage.purge.failures", extra={"failed": len(report.failed)})
    return PurgeResult(
        attempted=len(keys), deleted=len(done), failed=len(report.failed), remaining=remaining
    )
