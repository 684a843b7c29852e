"""Deleting videos without ever losing track of their objects.

The row delete, the enqueue of its object keys in ``storage_deletions`` and its audit
row commit together (a transactional outbox). Only after that commit are the objects
removed, so no object disappears while a row still points at it; a key whose removal
fails stays queued and ``purge_storage`` retries it, so no object outlives its row.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from handlers.deps import Deps
from handlers.errors import NotFound, StorageUnavailable
from handlers.ports import DeleteReport, PastDeletion, QueuedKey, RemovedVideo, UnitOfWork
from handlers.stats import request_stats_refresh
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


def delete_message(removed: int, pending: int) -> str:
    message = f"Video deleted successfully. {removed} file(s) removed from storage."
    if pending:
        message += f" {pending} file(s) queued for retry."
    return message


def _remove(
    deps: Deps,
    uow: UnitOfWork,
    removed: Sequence[RemovedVideo],
    reason: str,
    delete_files: bool,
    now: datetime,
) -> dict[str, list[int]]:
    """Inside the deleting transaction: queue the keys and write the audit rows.

    A key that another row still references (a shared thumbnail, a re-registered
    upload) is neither queued nor removed.
    """
    outcome = "files_queued" if delete_files else "files_kept"
    uow.audit.record(removed, reason, outcome, request_id=deps.request_id)
    if not delete_files:
        return {}
    candidates = [key for video in removed for key in video.object_keys]
    still_used = uow.videos.referenced_keys(candidates) if candidates else set()
    entries = [
        QueuedKey(object_key=key, video_id=video.id, mall_id=video.mall_id, reason=reason)
        for video in removed
        for key in video.object_keys
        if key not in still_used
    ]
    if not entries:
        return {}
    not_before = now + timedelta(seconds=deps.purge_grace_seconds)
    ids = uow.deletions.enqueue(entries, not_before=not_before)
    queued: dict[str, list[int]] = {}
    for entry, queue_id in zip(entries, ids, strict=True):
        queued.setdefault(entry.object_key, []).append(queue_id)
    return queued


def _remove_objects(
    deps: Deps, removed: Sequence[RemovedVideo], queued: dict[str, list[int]], now: datetime
) -> DeleteReport:
    """Remove queued keys and record the outcome; never raises once the rows are gone.

    Whatever happens here, the keys are already durable in the queue: failing to reach
    S3, or to write the outcome back, only delays their removal until purge.
    """
    if not queued:
        return DeleteReport()
    keys = list(queued)
    try:
        report = deps.store.delete_many(keys)
    except StorageUnavailable as exc:
        report = DeleteReport(failed={key: exc.detail for key in keys})
    if report.failed:
        deps.log.warning(
            "storage.delete.failed", extra={"keys": len(report.failed), "of": len(keys)}
        )
    try:
        with deps.uow() as uow:
            uow.deletions.complete(i for key in report.deleted for i in queued[key])
            uow.deletions.retry_later(
                {
                    i: (error, now + retry_delay(1))
                    for key, error in report.failed.items()
                    for i in queued[key]
                }
            )
            uow.audit.settle(
                {
                    video.id: "files_pending"
                    if any(k in report.failed for k in video.object_keys)
                    else "files_deleted"
                    for video in removed
                    if any(k in queued for k in video.object_keys)
                }
            )
            uow.commit()
    except Exception as exc:  # noqa: BLE001 - the queue rows stay; purge settles them.
        deps.log.warning("storage.delete.bookkeeping_failed", extra={"error": type(exc).__name__})
    return report


def _announce(deps: Deps, removed: Sequence[RemovedVideo], report: DeleteReport) -> None:
    """Events for each deleted video, then one coalesced stats refresh request."""
    done, failed = set(report.deleted), report.failed
    at = deps.clock()
    for video in removed:
        deps.publish(
            VideoDeleted(
                video_id=video.id,
                mall_id=video.mall_id,
                files_deleted=[k for k in video.object_keys if k in done],
                files_pending=[k for k in video.object_keys if k in failed],
                at=at,
            )
        )
    request_stats_refresh(deps, {video.mall_id for video in removed})


def delete_video(cmd: DeleteVideo, deps: Deps) -> VideoDeleteResponse:
    now = deps.clock()
    with deps.uow() as uow:
        removed = uow.videos.delete(cmd.video_id)
        if removed is None:
            past = uow.audit.find(cmd.video_id, deps.request_id) if deps.request_id else None
            if past is None:
                raise NotFound.video(cmd.video_id)
            return _answer_again(past)
        queued = _remove(deps, uow, [removed], "request", cmd.delete_files, now)
        uow.commit()

    report = _remove_objects(deps, [removed], queued, now)
    done = set(report.deleted)
    deleted = [k for k in removed.object_keys if k in done]
    pending = [k for k in removed.object_keys if k in report.failed]
    deps.log.info(
        "video.deleted",
        extra={
            "video_id": str(removed.id),
            "files_deleted": len(deleted),
            "files_pending": len(pending),
        },
    )
    _announce(deps, [removed], report)
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


def sweep_retention(cmd: SweepRetention, deps: Deps) -> RetentionSweepResult:
    """Delete expired videos mall by mall, in batches, for at most the time budget.

    Each batch is claimed with ``FOR UPDATE SKIP LOCKED``, so concurrent sweeps take
    disjoint rows and never wait on each other. When the budget runs out with work
    left, the sweep queues its own continuation and answers with what it did so far.
    """
    now = deps.clock()
    with deps.uow() as uow:
        scopes = uow.videos.retention_scopes(
            now, deps.retention_days, cmd.older_than_days, cmd.mall_id
        )
        summaries = [uow.videos.summarise_expired(scope) for scope in scopes]
    matched = sum(s.count for s in summaries)
    matched_bytes = sum(s.bytes for s in summaries)
    # The cutoff reported is the one the request asked for (or the default's).
    cutoff = now - timedelta(days=cmd.older_than_days or deps.retention_days)
    if cmd.mall_id is not None and scopes:
        cutoff = scopes[0].cutoff

    deleted = files_deleted = files_pending = 0
    out_of_time = False
    # The budget covers deleting, not counting, and every run takes at least one batch:
    # a run that only counted would re-enqueue itself forever.
    started = time.monotonic()
    if not cmd.dry_run:
        for scope, summary in zip(scopes, summaries, strict=True):
            if summary.count == 0:
                continue
            while not (
                out_of_time := deleted > 0
                and time.monotonic() - started > deps.sweep_time_budget_seconds
            ):
                with deps.uow() as uow:
                    batch = uow.videos.delete_expired(scope, cmd.batch_size)
                    if not batch:
                        break
                    queued = _remove(deps, uow, batch, "retention", cmd.delete_files, now)
                    uow.commit()
                report = _remove_objects(deps, batch, queued, now)
                _announce(deps, batch, report)
                deleted += len(batch)
                files_deleted += len(report.deleted)
                files_pending += len(report.failed)
                if len(batch) < cmd.batch_size:
                    break
            if out_of_time:
                break
    if out_of_time:
        deps.enqueue("videos.retention_sweep", cmd.model_dump(mode="json", exclude_none=True), 0)
    deps.log.info(
        "retention.swept",
        extra={
            "matched": matched,
            "deleted": deleted,
            "files_pending": files_pending,
            "continued": out_of_time,
            "dry_run": cmd.dry_run,
        },
    )
    return RetentionSweepResult(
        cutoff=cutoff,
        matched=matched,
        matched_bytes=matched_bytes,
        deleted=deleted,
        files_deleted=files_deleted,
        files_pending=files_pending,
        dry_run=cmd.dry_run,
    )


def purge_storage(cmd: PurgeStorage, deps: Deps) -> PurgeResult:
    """Retry queued deletions that are due, oldest first, holding their rows locked.

    The claim (``FOR UPDATE SKIP LOCKED``) lasts until the outcome is written, so two
    purges never work on the same key, and a purge killed mid-way just leaves the
    keys due for the next one.
    """
    now = deps.clock()
    with deps.uow() as uow:
        due = uow.deletions.claim_due(now, cmd.limit)
        # A key a live row references again is dropped from the queue, never deleted.
        dropped = [d for d in due if d.referenced]
        due = [d for d in due if not d.referenced]
        keys = list(dict.fromkeys(d.object_key for d in due))
        report = DeleteReport()
        if keys:
            try:
                report = deps.store.delete_many(keys)
            except StorageUnavailable as exc:
                report = DeleteReport(failed={key: exc.detail for key in keys})
        done = set(report.deleted)
        uow.deletions.complete(
            [d.id for d in due if d.object_key in done] + [d.id for d in dropped]
        )
        uow.deletions.retry_later(
            {
                d.id: (report.failed[d.object_key], now + retry_delay(d.attempts + 1))
                for d in due
                if d.object_key in report.failed
            }
        )
        remaining = uow.deletions.pending()
        stuck = uow.deletions.stuck(deps.stuck_after_attempts)
        uow.commit()
    if report.failed:
        deps.log.warning("storage.purge.failures", extra={"failed": len(report.failed)})
    if stuck:
        # Counts only: object keys are not written to logs.
        deps.log.error(
            "storage.purge.stuck",
            extra={"stuck": stuck, "min_attempts": deps.stuck_after_attempts},
        )
    if dropped:
        deps.log.warning("storage.purge.referenced", extra={"dropped": len(dropped)})
    return PurgeResult(
        attempted=len(keys),
        deleted=len(done),
        failed=len(report.failed),
        remaining=remaining,
        stuck=stuck,
    )
