"""Deleting videos, and the one removal engine every object key leaves the bucket by.

``videos.delete`` removes the row (its processing jobs follow by cascade). Inside the
deleting transaction, ``queue_removal`` records the audit row and queues *every* key
the row held in ``storage_deletions`` (a transactional outbox: the row cannot go
without its keys being written down). After the commit, ``remove_queued`` (a delete, a
sweep, reconcile) or ``purge_storage`` (everything still queued) hands claimed queue
rows to ``_remove_claimed``, which decides per key, at removal time, whether it may go:

- each key is locked for the transaction (``lock_keys``: the registration fence
  shared, then an advisory lock on each key's hash, taken in hash order so two removers
  never deadlock), so two removers of one key never decide at once;
- under that lock the key's references are read again: a key another row still holds
  (a shared thumbnail, an upload registered again) is dequeued and its object kept;
- the rest go to S3 in one call per chunk; a key removed is dequeued, a key that
  failed stays queued with backoff, and the audit rows of the videos touched are
  settled from what is left in the queue.

Two rows sharing a key and deleted at once therefore never both skip it: whichever
remover runs last sees no row left and removes it. Writers of ``videos`` take the same
key locks for the keys they register (a trigger, migration 0015), or, for a statement
registering more than 1,000 keys, the fence exclusively, so a row registered before the
engine locks a key is seen under the lock. What remains is a registration
that waits behind an engine already past its check: its row commits after the object
is gone (``videoworker reconcile`` reports it as missing; see the README).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from handlers import events
from handlers.deps import Deps
from handlers.errors import NotFound
from handlers.ports import (
    PastDeletion,
    QueuedDeletion,
    QueuedKey,
    RemovedVideo,
    TrashedVideo,
    UnitOfWork,
)
from handlers.stats import request_stats_refresh
from schemas.events import VideoDeleted
from schemas.requests import DeleteVideo, PurgeStorage
from schemas.responses import PurgeResult, VideoDeleteResponse

RETRY_BASE_SECONDS = 30
RETRY_CAP_SECONDS = 6 * 3600
# Keys decided in one transaction: bounds the advisory locks one remover holds (the
# server's lock table is shared) and the size of one DeleteObjects call.
REMOVAL_CHUNK = 500


def retry_delay(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: 30 s, 1 min, 2 min … capped at 6 h.

    Jitter (between half and all of the step) spreads keys that failed together, so a
    recovering S3 is not hit by the whole backlog in the same second.
    """
    step = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return timedelta(seconds=step * (rng or random).uniform(0.5, 1.0))


@dataclass(slots=True)
class RemovalReport:
    """What became of the keys handed to the engine."""

    # Removed from the bucket and dequeued.
    deleted: list[str] = field(default_factory=list)
    # Still queued: S3 refused them (with why), or another remover held them.
    failed: dict[str, str] = field(default_factory=dict)
    # Referenced by a live row at removal time: dequeued, the object kept.
    kept: list[str] = field(default_factory=list)

    def add(self, other: RemovalReport) -> None:
        self.deleted.extend(other.deleted)
        self.failed.update(other.failed)
        self.kept.extend(other.kept)


def queue_removal(
    deps: Deps,
    uow: UnitOfWork,
    removed: Sequence[RemovedVideo],
    reason: str,
    delete_files: bool,
    now: datetime,
) -> list[int]:
    """Inside the deleting transaction: the audit rows, and every key queued.

    Nothing is decided about shared keys here: a row that shares a key may be going in
    a concurrent transaction this one cannot see, so the decision waits for removal
    time, under the key's lock. Returns the queue ids to hand to ``remove_queued``.
    """
    events.deleted(uow, removed, reason, delete_files)
    uow.audit.record(
        removed,
        reason,
        "files_queued" if delete_files else "files_kept",
        request_id=deps.request_id,
        actor=deps.scope.subject,
    )
    if not delete_files:
        return []
    entries = [
        QueuedKey(object_key=key, video_id=video.id, mall_id=video.mall_id, reason=reason)
        for video in removed
        for key in video.object_keys
    ]
    not_before = now + timedelta(seconds=deps.policy.purge_grace_seconds)
    return uow.deletions.enqueue(entries, not_before=not_before) if entries else []


def remove_queued(deps: Deps, queue_ids: Sequence[int]) -> RemovalReport:
    """After the commit: remove these queued keys now, chunk by chunk.

    Never raises: S3 trouble leaves keys queued with backoff, and a chunk whose
    bookkeeping cannot be written (PostgreSQL gone mid-way) is rolled back whole, its
    keys left queued for purge (removing an object twice is harmless). Rows a purge
    holds at this moment are skipped, still queued. A caller reports as pending every
    key that is neither deleted nor kept.
    """
    report = RemovalReport()
    now = deps.clock()
    ids = iter(queue_ids)
    while chunk := list(islice(ids, REMOVAL_CHUNK)):
        try:
            _, done = _claim_and_remove(deps, lambda uow, c=chunk: uow.deletions.claim(c), now)
        except Exception as exc:  # noqa: BLE001 - the rows are gone; purge finishes the job
            deps.log.warning("storage.remove.deferred", extra={"error": type(exc).__name__})
            continue
        report.add(done)
    return report


def _claim_and_remove(
    deps: Deps, claim: Callable[[UnitOfWork], list[QueuedDeletion]], now: datetime
) -> tuple[list[QueuedDeletion], RemovalReport]:
    """One transaction: claim queue rows, decide and remove their keys, account for them."""
    with deps.uow() as uow:
        claimed = claim(uow)
        report = _remove_claimed(deps, uow, claimed, now)
        uow.commit()
    return claimed, report


def _remove_claimed(
    deps: Deps, uow: UnitOfWork, claimed: Sequence[QueuedDeletion], now: datetime
) -> RemovalReport:
    """Decide, remove and account for claimed queue rows, inside their transaction."""
    if not claimed:
        return RemovalReport()
    keys = list(dict.fromkeys(entry.object_key for entry in claimed))
    uow.deletions.lock_keys(keys)
    referenced = uow.references.referenced_keys(keys)
    outcome = deps.store.delete_many([key for key in keys if key not in referenced])
    settled = set(outcome.deleted) | referenced
    uow.deletions.complete(entry.id for entry in claimed if entry.object_key in settled)
    uow.deletions.retry_later(
        {
            entry.id: (outcome.failed[entry.object_key], now + retry_delay(entry.attempts + 1))
            for entry in claimed
            if entry.object_key in outcome.failed
        }
    )
    uow.audit.settle({entry.video_id for entry in claimed if entry.video_id is not None})
    if outcome.failed:
        deps.log.warning(
            "storage.delete.failed", extra={"keys": len(outcome.failed), "of": len(keys)}
        )
    if referenced:
        # Counts only: object keys are not written to logs.
        deps.log.info("storage.delete.kept_referenced", extra={"keys": len(referenced)})
    return RemovalReport(
        deleted=list(outcome.deleted), failed=dict(outcome.failed), kept=sorted(referenced)
    )


def purge_storage(cmd: PurgeStorage, deps: Deps) -> PurgeResult:
    """Work through the deletion queue, oldest first, one locked chunk at a time.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` and held until their outcome is
    written, so two purges (or a purge and a delete's own removal) never work on the
    same row, and a purge killed mid-way just leaves its chunk for the next one. With
    ``due_only=false`` every queued key is tried now, whatever its backoff: what an
    operator wants when S3 is back after an outage.
    """
    now = deps.clock()
    report = RemovalReport()
    rows = 0
    after_id = 0
    while rows < cmd.limit:
        size = min(REMOVAL_CHUNK, cmd.limit - rows)

        def claim(uow: UnitOfWork, size: int = size, after_id: int = after_id):
            return uow.deletions.claim_due(now, size, due_only=cmd.due_only, after_id=after_id)

        claimed, chunk = _claim_and_remove(deps, claim, now)
        if not claimed:
            break
        # A key that failed just now is due again at once when due_only is false; the
        # cursor makes each run try each row once.
        after_id = max(entry.id for entry in claimed)
        rows += len(claimed)
        report.add(chunk)
        if len(claimed) < size:
            break
    with deps.uow() as uow:
        remaining = uow.deletions.pending()
        stuck = uow.deletions.stuck(deps.policy.stuck_after_attempts)
    if stuck:
        # Counts only: object keys are not written to logs.
        deps.log.error(
            "storage.purge.stuck",
            extra={"stuck": stuck, "min_attempts": deps.policy.stuck_after_attempts},
        )
    return PurgeResult(
        attempted=len(report.deleted) + len(report.failed),
        deleted=len(report.deleted),
        failed=len(report.failed),
        kept=len(report.kept),
        remaining=remaining,
        stuck=stuck,
    )


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
    figures_changed(deps, removed)


def figures_changed(deps: Deps, videos: Sequence[RemovedVideo | TrashedVideo]) -> None:
    """These videos left (or rejoined) the figures: their pins' cached figures are
    dropped, and one debounced refresh of their malls and the global figure is asked."""
    deps.cache.forget_pins({video.pin_id for video in videos if video.pin_id is not None})
    request_stats_refresh(deps, {video.mall_id for video in videos})


class Budget:
    """How long a long-running delete (sweep, bulk) may go on before it hands over to a
    continuation, ending well inside its time limit and the broker's patience."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.done = 0

    def exhausted(self) -> bool:
        # Every run takes at least one batch: a run that did nothing but hand over would
        # queue itself forever.
        return self.done > 0 and time.monotonic() - self.started > self.seconds


@dataclass(slots=True)
class Tally:
    """Videos deleted in batches, and what became of their files (counts)."""

    deleted: int = 0
    files_deleted: int = 0
    files_pending: int = 0
    ids: list = field(default_factory=list)

    def count_past(self, done: Sequence[PastDeletion]) -> None:
        """What this request deleted before it was delivered again."""
        self.deleted += len(done)
        self.ids.extend(past.video_id for past in done)
        for past in done:
            deleted, pending = past_outcome(past)
            self.files_deleted += len(deleted)
            self.files_pending += len(pending)

    def count(self, batch: Sequence[RemovedVideo], report: RemovalReport, files: bool) -> None:
        self.deleted += len(batch)
        self.ids.extend(video.id for video in batch)
        if files:
            for video in batch:
                done, pending = outcome_of(video, report)
                self.files_deleted += len(done)
                self.files_pending += len(pending)


def delete_in_batches(
    deps: Deps,
    take: Callable[[UnitOfWork], list[RemovedVideo]],
    *,
    reason: str,
    delete_files: bool,
    batch_size: int,
    budget: Budget,
    tally: Tally,
    after_batch: Callable[[], None] | None = None,
) -> bool:
    """Delete what ``take`` claims, batch by batch, each with the guarantees of
    ``videos.delete``; True when the budget ran out with work possibly left."""
    now = deps.clock()
    while not budget.exhausted():
        with deps.uow() as uow:
            batch = take(uow)
            if not batch:
                return False
            queued = queue_removal(deps, uow, batch, reason, delete_files, now)
            uow.commit()
        report = remove_queued(deps, queued)
        announce_deleted(deps, batch, report, delete_files)
        tally.count(batch, report, delete_files)
        budget.done += len(batch)
        if after_batch is not None:
            after_batch()
        if len(batch) < batch_size:
            return False
    return True


def trash_changed(deps: Deps, videos: Iterable[TrashedVideo]) -> None:
    """Videos went into the trash or out of it: their figures are stale."""
    changed = [video for video in videos if video.newly]
    if changed:
        figures_changed(deps, changed)


def purge_after(deps: Deps, trashed_at: datetime | None) -> datetime | None:
    """When a video trashed at ``trashed_at`` may be deleted for good by the sweep (None
    for a ``trashed_at`` another service wrote beyond what a datetime holds)."""
    return None if trashed_at is None else trashed_at + timedelta(days=deps.policy.trash_days)


def trash_video(cmd: DeleteVideo, deps: Deps) -> VideoDeleteResponse:
    """Into the trash: the row stays (hidden from every read), no object is touched."""
    with deps.uow() as uow:
        trashed = uow.removal.trash(deps.scope, cmd.video_id, deps.clock(), deps.scope.subject)
        if trashed is None:
            raise NotFound.video(cmd.video_id)
        events.trashed(uow, [trashed], deps.scope.subject)
        uow.commit()
    if trashed.newly:
        deps.log.info("video.trashed", extra={"video_id": str(trashed.id)})
    trash_changed(deps, [trashed])
    return VideoDeleteResponse(
        video_id=trashed.id,
        deleted=True,
        files_deleted=[],
        files_pending=[],
        message=TRASHED_MESSAGE,
        purge_after=purge_after(deps, trashed.trashed_at),
    )


TRASHED_MESSAGE = "Video moved to trash."


def delete_video(cmd: DeleteVideo, deps: Deps) -> VideoDeleteResponse:
    if cmd.trash:
        return trash_video(cmd, deps)
    now = deps.clock()
    with deps.uow() as uow:
        removed = uow.removal.delete(deps.scope, cmd.video_id)
        if removed is None:
            past = (
                uow.audit.find(deps.scope, cmd.video_id, deps.request_id)
                if deps.request_id
                else None
            )
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

    Only the same message (same task id) from the same caller, within the same scope,
    gets it; anything else, a new delete of a video already gone or another caller
    reusing the task id, is ``not_found``, as a fresh delete would be.
    """
    deleted, pending = past_outcome(past)
    return VideoDeleteResponse(
        video_id=past.video_id,
        deleted=True,
        files_deleted=deleted,
        files_pending=pending,
        message=delete_message(len(deleted), len(pending)),
    )


def past_outcome(past: PastDeletion) -> tuple[list[str], list[str]]:
    """(removed, still queued) keys of an earlier deletion, as its run would have said."""
    if past.files_kept:
        return [], []
    pending = [key for key in past.object_keys if key in past.still_queued]
    return [key for key in past.object_keys if key not in pending], pending
