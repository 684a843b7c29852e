"""Retention: which videos have outlived their mall's period, and sweeping them.

The period of a mall is, in order: the request's ``older_than_days``, the mall's own
(``videoworker retention set``), the worker's ``RETENTION_DAYS``. Videos on legal hold
are never swept. Each batch is deleted with the guarantees of ``videos.delete``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from handlers.deletion import announce_deleted, outcome_of, queue_removal, remove_queued
from handlers.deps import Deps
from handlers.errors import NotFound
from handlers.policy import Policy
from handlers.ports import RetentionScope
from schemas.requests import ClearRetention, SetLegalHold, SetRetention, SweepRetention
from schemas.responses import RetentionSweepResult


def retention_periods(
    malls: Sequence[tuple[UUID, int | None]], requested_days: int | None, policy: Policy
) -> list[tuple[UUID, int]]:
    """Each mall with the days its videos are kept: the request's, its own, the default."""
    return [
        (mall_id, requested_days or own_days or policy.retention_days)
        for mall_id, own_days in malls
    ]


def reported_cutoff(
    scopes: Sequence[RetentionScope], now: datetime, requested_days: int | None, policy: Policy
) -> datetime:
    """The cutoff a sweep answers with: no video uploaded at or after it was swept.

    One mall: its own cutoff. Several with periods of their own: the newest of their
    cutoffs, the one bound that holds for all of them. No mall at all: the cutoff the
    request (or ``RETENTION_DAYS``) names.
    """
    if scopes:
        return max(scope.cutoff for scope in scopes)
    return now - timedelta(days=requested_days or policy.retention_days)


def sweep_retention(cmd: SweepRetention, deps: Deps) -> RetentionSweepResult:
    """Delete expired videos mall by mall, in batches, for at most the time budget.

    Each batch is claimed with ``FOR UPDATE SKIP LOCKED``, so concurrent sweeps take
    disjoint rows and never wait on each other. When the budget runs out with work
    left, the sweep queues its own continuation and answers with what it did so far.
    """
    now = deps.clock()
    with deps.uow() as uow:
        scopes = [
            RetentionScope(mall_id=mall_id, cutoff=now - timedelta(days=days))
            for mall_id, days in retention_periods(
                uow.videos.mall_retention_days(cmd.mall_id), cmd.older_than_days, deps.policy
            )
        ]
        summaries = [uow.videos.summarise_expired(deps.scope, scope) for scope in scopes]
    matched = sum(s.count for s in summaries)
    matched_bytes = sum(s.bytes for s in summaries)
    cutoff = reported_cutoff(scopes, now, cmd.older_than_days, deps.policy)

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
                and time.monotonic() - started > deps.policy.sweep_time_budget_seconds
            ):
                with deps.uow() as uow:
                    batch = uow.videos.delete_expired(deps.scope, scope, cmd.batch_size)
                    if not batch:
                        break
                    queued = queue_removal(deps, uow, batch, "retention", cmd.delete_files, now)
                    uow.commit()
                report = remove_queued(deps, queued)
                announce_deleted(deps, batch, report, cmd.delete_files)
                deleted += len(batch)
                if cmd.delete_files:
                    outcomes = [outcome_of(video, report) for video in batch]
                    files_deleted += sum(len(done) for done, _ in outcomes)
                    files_pending += sum(len(pending) for _, pending in outcomes)
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


@dataclass(frozen=True, slots=True)
class RetentionPeriods:
    default_days: int
    # Malls with a period of their own.
    malls: dict[UUID, int]


def set_retention(cmd: SetRetention, deps: Deps) -> RetentionPeriods:
    with deps.uow() as uow:
        if not uow.videos.set_mall_retention(cmd.mall_id, cmd.days):
            raise NotFound(f"Mall {cmd.mall_id} not found")
        uow.commit()
    deps.log.info("retention.set", extra={"mall_id": str(cmd.mall_id), "days": cmd.days})
    return list_retention(deps)


def clear_retention(cmd: ClearRetention, deps: Deps) -> RetentionPeriods:
    with deps.uow() as uow:
        cleared = uow.videos.clear_mall_retention(cmd.mall_id)
        uow.commit()
    if cleared:
        deps.log.info("retention.cleared", extra={"mall_id": str(cmd.mall_id)})
    return list_retention(deps)


def list_retention(deps: Deps) -> RetentionPeriods:
    with deps.uow() as uow:
        periods = uow.videos.mall_retention_days(None)
    return RetentionPeriods(
        default_days=deps.policy.retention_days,
        malls={mall_id: days for mall_id, days in periods if days is not None},
    )


def set_legal_hold(cmd: SetLegalHold, deps: Deps) -> SetLegalHold:
    """Hold a video (no sweep deletes it) or release it; an explicit delete still may."""
    with deps.uow() as uow:
        if not uow.videos.set_legal_hold(cmd.video_id, cmd.held):
            raise NotFound.video(cmd.video_id)
        uow.commit()
    deps.log.info("video.legal_hold", extra={"video_id": str(cmd.video_id), "held": cmd.held})
    return cmd
