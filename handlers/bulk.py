"""Bulk delete: many videos by id or by filter, in batches, with a dry run and progress.

The seed's "delete old videos" loop sent one message per id of the first page it
listed, and never reached the second. Here one message selects, by ``video_ids`` or by
the filters of ``videos.list`` (never neither: an empty filter would select a whole
platform), and the worker deletes in batches claimed with ``FOR UPDATE SKIP LOCKED``:
a sweep or a second bulk delete running over the same videos takes other rows and
never waits. Each batch has the guarantees of ``videos.delete`` (or moves its videos
to the trash), and is followed by a ``bulk_delete.progress`` event. A run that reaches
its time budget queues a continuation under a task id it answers with, so a caller
can await the rest; one that ends its budget with its last batch has nothing to hand
over and queues none (a continuation of no ids would be refused).

A run delivered again after its process died finds what it already deleted gone: the
audit rows written under its own task id (by the same caller, within its scope, as a
single delete answered again) count as matched and deleted, not as ``not_found``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from uuid import UUID

from handlers import events
from handlers.deletion import Budget, Tally, delete_in_batches, trash_changed
from handlers.deps import Deps
from handlers.ports import RemovedVideo, TrashedVideo, UnitOfWork
from schemas.events import BulkDeleteProgress
from schemas.requests import BulkDelete
from schemas.responses import BulkDeleteResult

TASK = "videos.bulk_delete"


def bulk_delete(cmd: BulkDelete, deps: Deps) -> BulkDeleteResult:
    scope = deps.scope
    # A redelivery (its process killed mid-run) finds part of its selection gone by its
    # own hand: that part counts as matched and deleted, as the first run would have
    # answered. Only deletions are audited; a trash run counts what it moves now.
    looks_back = deps.request_id is not None and not cmd.dry_run and not cmd.trash
    with deps.uow() as uow:
        if cmd.video_ids is not None:
            found = uow.removal.find_selected(scope, cmd.video_ids)
            missing = [
                video_id for video_id in dict.fromkeys(cmd.video_ids) if video_id not in found
            ]
            earlier = (
                uow.audit.done_by(scope, deps.request_id, missing) if looks_back and missing else []
            )
            done_before = {past.video_id for past in earlier}
            not_found = [video_id for video_id in missing if video_id not in done_before]
            matched = len(found)
            ids: list[UUID] | None = sorted(found)
        else:
            matched = uow.removal.summarise_selected(scope, cmd.filters).count
            earlier = uow.audit.done_by(scope, deps.request_id) if looks_back else []
            not_found, ids = [], None
    matched += len(earlier)
    tally = Tally()
    tally.count_past(earlier)
    result = dict(matched=matched, not_found=not_found, dry_run=cmd.dry_run)
    if cmd.dry_run or matched == len(earlier):
        return BulkDeleteResult(
            **result,
            deleted=tally.deleted,
            files_deleted=tally.files_deleted,
            files_pending=tally.files_pending,
            continued=False,
            continuation_id=None,
        )

    budget = Budget(deps.policy.bulk_delete_time_budget_seconds)

    def progress() -> None:
        deps.publish(
            BulkDeleteProgress(
                task_id=deps.request_id, matched=matched, deleted=tally.deleted, at=deps.clock()
            )
        )

    def record(uow: UnitOfWork, batch: Sequence[RemovedVideo | TrashedVideo]) -> None:
        # In the batch's transaction: its progress event exists if and only if it does.
        events.bulk_progress(uow, deps.request_id, matched, tally.deleted + len(batch), cmd.trash)

    def take(uow: UnitOfWork) -> list[RemovedVideo]:
        batch = uow.removal.delete_selected(scope, ids, cmd.filters, cmd.batch_size)
        if batch:
            record(uow, batch)
        return batch

    if cmd.trash:
        out_of_time = _trash_in_batches(deps, cmd, ids, budget, tally, progress, record)
    else:
        out_of_time = delete_in_batches(
            deps,
            take,
            reason="bulk",
            delete_files=cmd.delete_files,
            batch_size=cmd.batch_size,
            budget=budget,
            tally=tally,
            after_batch=progress,
        )
    # Out of time right after the last batch, nothing is left to hand over.
    if out_of_time and (
        (ids is not None and set(ids) <= set(tally.ids))
        or (ids is None and tally.deleted >= matched)
    ):
        out_of_time = False
    continuation_id = _continue(deps, cmd, ids, tally.ids) if out_of_time else None
    deps.log.info(
        "videos.bulk_deleted",
        extra={
            "matched": matched,
            "deleted": tally.deleted,
            "trash": cmd.trash,
            "files_pending": tally.files_pending,
            "continued": out_of_time,
        },
    )
    return BulkDeleteResult(
        **result,
        deleted=tally.deleted,
        files_deleted=tally.files_deleted,
        files_pending=tally.files_pending,
        continued=out_of_time,
        continuation_id=continuation_id,
    )


def _trash_in_batches(
    deps: Deps,
    cmd: BulkDelete,
    ids: list[UUID] | None,
    budget: Budget,
    tally: Tally,
    progress: Callable[[], None],
    record: Callable[[UnitOfWork, Sequence[TrashedVideo]], None],
) -> bool:
    """Move the selection into the trash, batch by batch; True when out of time."""
    while not budget.exhausted():
        with deps.uow() as uow:
            batch = _trash_batch(deps, uow, cmd, ids)
            if batch:
                events.trashed(uow, batch, deps.scope.subject)
                record(uow, batch)
            uow.commit()
        if not batch:
            return False
        trash_changed(deps, batch)
        tally.deleted += len(batch)
        tally.ids.extend(video.id for video in batch)
        budget.done += len(batch)
        progress()
        if len(batch) < cmd.batch_size:
            return False
    return True


def _trash_batch(deps: Deps, uow: UnitOfWork, cmd: BulkDelete, ids: list[UUID] | None):  # noqa: ANN202
    return uow.removal.trash_selected(
        deps.scope, ids, cmd.filters, cmd.batch_size, deps.clock(), deps.scope.subject
    )


def _continue(deps: Deps, cmd: BulkDelete, ids: list[UUID] | None, done: Sequence[UUID]) -> str:
    """Queue the run that carries on, under an id the caller is told: by filter the same
    selection (what is done no longer matches), by id only the ids not yet done."""
    kwargs = cmd.model_dump(mode="json", exclude_none=True)
    if ids is not None:
        finished = set(done)
        kwargs["video_ids"] = [str(video_id) for video_id in ids if video_id not in finished]
    continuation_id = str(uuid.uuid4())
    deps.enqueue(TASK, kwargs, 0, task_id=continuation_id)
    return continuation_id
