"""Retention: which videos have outlived their mall's period, the trash, and quotas.

The period of a mall is, in order: the request's ``older_than_days``, the mall's own
(``videoworker retention set``), the worker's ``RETENTION_DAYS``. A mall may also have a
storage quota, kept by deleting its oldest videos. Videos on legal hold are never
swept. Each batch is deleted with the guarantees of ``videos.delete``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from uuid import UUID

from handlers.deletion import Budget, Tally, delete_in_batches
from handlers.deps import Deps
from handlers.errors import NotFound
from handlers.policy import Policy
from handlers.ports import RemovedVideo, RetentionScope, UnitOfWork
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
    """Three rules, in order, each in batches, for at most the time budget:

    1. age: each mall's videos older than its period;
    2. the trash: videos trashed more than ``TRASH_DAYS`` ago;
    3. quota: a mall over its storage quota loses its oldest videos until it is not.

    Held videos are never taken. Each batch is claimed with ``FOR UPDATE SKIP LOCKED``,
    so concurrent sweeps take disjoint rows and never wait on each other. When the
    budget runs out with work left, the sweep queues its own continuation (which starts
    again from rule 1: what is done is no longer matched) and answers what it did.
    """
    now = deps.clock()
    trash_before = now - timedelta(days=deps.policy.trash_days)
    with deps.uow() as uow:
        scopes = [
            RetentionScope(mall_id=mall_id, cutoff=now - timedelta(days=days))
            for mall_id, days in retention_periods(
                uow.retention.mall_retention_days(cmd.mall_id), cmd.older_than_days, deps.policy
            )
        ]
        summaries = [uow.removal.summarise_expired(deps.scope, scope) for scope in scopes]
        trash_due = uow.removal.summarise_trash_due(deps.scope, cmd.mall_id, trash_before)
        quotas = uow.retention.mall_quotas(cmd.mall_id)
    matched = sum(s.count for s in summaries)
    matched_bytes = sum(s.bytes for s in summaries)
    cutoff = reported_cutoff(scopes, now, cmd.older_than_days, deps.policy)

    budget = Budget(deps.policy.sweep_time_budget_seconds)
    by_age, from_trash, for_quota = Tally(), Tally(), Tally()
    out_of_time = False
    if not cmd.dry_run:
        batches = partial(
            delete_in_batches,
            deps,
            delete_files=cmd.delete_files,
            batch_size=cmd.batch_size,
            budget=budget,
        )
        for scope, summary in zip(scopes, summaries, strict=True):
            if summary.count and not out_of_time:
                out_of_time = batches(
                    lambda uow, scope=scope: uow.removal.delete_expired(
                        deps.scope, scope, cmd.batch_size
                    ),
                    reason="retention",
                    tally=by_age,
                )
        if not out_of_time:
            out_of_time = batches(
                lambda uow: uow.removal.delete_trash_due(
                    deps.scope, cmd.mall_id, trash_before, cmd.batch_size
                ),
                reason="trash",
                tally=from_trash,
            )
        for mall_id, quota in quotas:
            if out_of_time:
                break
            out_of_time = batches(
                _over_quota(deps, mall_id, quota, cmd.batch_size), reason="quota", tally=for_quota
            )
        if not out_of_time:
            out_of_time = _prune_audit(deps, now, cmd.batch_size, budget)
    if out_of_time:
        deps.enqueue("videos.retention_sweep", cmd.model_dump(mode="json", exclude_none=True), 0)
    tallies = (by_age, from_trash, for_quota)
    deps.log.info(
        "retention.swept",
        extra={
            "matched": matched,
            "deleted": by_age.deleted,
            "deleted_from_trash": from_trash.deleted,
            "deleted_for_quota": for_quota.deleted,
            "files_pending": sum(t.files_pending for t in tallies),
            "continued": out_of_time,
            "dry_run": cmd.dry_run,
        },
    )
    return RetentionSweepResult(
        cutoff=cutoff,
        matched=matched,
        matched_bytes=matched_bytes,
        deleted=by_age.deleted,
        files_deleted=sum(t.files_deleted for t in tallies),
        files_pending=sum(t.files_pending for t in tallies),
        dry_run=cmd.dry_run,
        deleted_from_trash=from_trash.deleted,
        deleted_for_quota=for_quota.deleted,
        matched_from_trash=trash_due.count,
        matched_from_trash_bytes=trash_due.bytes,
    )


# What the daily sweep prunes past AUDIT_RETENTION_DAYS, each in batches of its own:
# (name in the log, the room's prune). Records of who did what, kept as long as the audit.
PRUNED: tuple[tuple[str, Callable[[UnitOfWork], Callable[[datetime, int], int]]], ...] = (
    ("deletion_audit", lambda uow: uow.audit.prune),
    ("shares", lambda uow: uow.shares.prune),
    ("exports", lambda uow: uow.exports.prune),
    ("reprocess_requests", lambda uow: uow.reprocessing.prune),
)


def _prune_audit(deps: Deps, now: datetime, batch_size: int, budget: Budget) -> bool:
    """Last, the records older than ``AUDIT_RETENTION_DAYS``, in batches: the audit's
    rows (one per deleted video), the shares and exports that ended, the re-processing
    requests made. Each would otherwise grow for ever. True when the budget ran out
    first (the continuation carries on where this left off)."""
    before = now - timedelta(days=deps.policy.audit_retention_days)
    for name, prune in PRUNED:
        # A batch short of ``batch_size`` was the last; a full one may have more behind.
        pruned, gone = 0, batch_size
        while gone == batch_size and not budget.exhausted():
            with deps.uow() as uow:
                gone = prune(uow)(before, batch_size)
                uow.commit()
            budget.done += 1
            pruned += gone
        if pruned:
            event = "audit.pruned" if name == "deletion_audit" else "records.pruned"
            deps.log.info(
                event, extra={"table": name, "rows": pruned, "before": before.isoformat()}
            )
        if gone == batch_size:
            return True
    return False


def _over_quota(
    deps: Deps, mall_id: UUID, quota: int, batch_size: int
) -> Callable[[UnitOfWork], list[RemovedVideo]]:
    """The batches that bring a mall back under its quota: each claims the oldest videos
    needed to free what is still over, measured afresh (uploads go on meanwhile)."""

    def take(uow: UnitOfWork) -> list[RemovedVideo]:
        excess = uow.retention.mall_storage(mall_id) - quota
        if excess <= 0:
            return []
        return uow.removal.delete_for_quota(deps.scope, mall_id, excess, batch_size)

    return take


@dataclass(frozen=True, slots=True)
class RetentionPeriods:
    default_days: int
    # Malls with a period of their own.
    malls: dict[UUID, int]
    # Malls with a storage quota, in bytes.
    quotas: dict[UUID, int]


def set_retention(cmd: SetRetention, deps: Deps) -> RetentionPeriods:
    with deps.uow() as uow:
        if not uow.retention.set_mall_retention(cmd.mall_id, cmd.days, cmd.max_storage_bytes):
            raise NotFound(f"Mall {cmd.mall_id} not found")
        uow.commit()
    deps.log.info(
        "retention.set",
        extra={
            "mall_id": str(cmd.mall_id),
            "days": cmd.days,
            "max_storage_bytes": cmd.max_storage_bytes,
        },
    )
    return list_retention(deps)


def clear_retention(cmd: ClearRetention, deps: Deps) -> RetentionPeriods:
    with deps.uow() as uow:
        cleared = uow.retention.clear_mall_retention(cmd.mall_id)
        uow.commit()
    if cleared:
        deps.log.info("retention.cleared", extra={"mall_id": str(cmd.mall_id)})
    return list_retention(deps)


def list_retention(deps: Deps) -> RetentionPeriods:
    with deps.uow() as uow:
        periods = uow.retention.mall_retention_days(None)
        quotas = uow.retention.mall_quotas(None)
    return RetentionPeriods(
        default_days=deps.policy.retention_days,
        malls={mall_id: days for mall_id, days in periods if days is not None},
        quotas=dict(quotas),
    )


def set_legal_hold(cmd: SetLegalHold, deps: Deps) -> SetLegalHold:
    """Hold a video (no sweep deletes it) or release it; an explicit delete still may."""
    with deps.uow() as uow:
        if not uow.retention.set_legal_hold(cmd.video_id, cmd.held):
            raise NotFound.video(cmd.video_id)
        uow.commit()
    deps.log.info("video.legal_hold", extra={"video_id": str(cmd.video_id), "held": cmd.held})
    return cmd
