"""Re-processing: hand videos back to the processing pipeline, by id or by filter.

A video is set back to ``pending`` (its ``processing_error`` cleared) in the same
transaction that writes ``video.reprocess_requested`` to the outbox and records the
(video, request) pair in ``reprocess_requests``; the pipeline's message is sent only
after that commit, and the row is then marked sent. So:

- a rolled-back batch sends nothing, and a committed one owes exactly its rows;
- a run delivered again (its process killed, or the same task id sent twice) skips the
  videos its request already recorded and first sends what it still owes: a video's
  message goes out once per request, except when the process dies between the send
  and the mark; that resend carries the same message id (``message_id``), derived from
  the request and the video, so the pipeline can drop it;
- a video the pipeline is ``processing`` now is left alone and counted.

Batches are taken in id order under the bulk time budget; a run out of time queues a
continuation that starts after the last id it took (``after``) and answers its id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from handlers.deletion import Budget
from handlers.deps import Deps
from handlers.errors import VideoError
from handlers.ports import ReprocessRequest
from schemas.events import VideoReprocessRequestedData
from schemas.requests import Reprocess
from schemas.responses import ReprocessResult

TASK = "videos.reprocess"
BATCH_SIZE = 500
# Unsent rows sent per round trip to the database.
SEND_BATCH = 500
# The namespace of the pipeline's message ids (uuid5 of request id and video id).
MESSAGE_NAMESPACE = uuid.UUID("6b1f3c55-3f9e-4d0c-9d6f-2f3d7f0a4e11")


def message_id(request_id: str, video_id: uuid.UUID) -> str:
    """The pipeline's message id for this video in this request: the same on a resend."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{request_id}/{video_id}"))


def reprocess(cmd: Reprocess, deps: Deps) -> ReprocessResult:
    # Without a message id (the operator's own tools calling in process) a run is its own.
    request_id = deps.request_id or str(uuid.uuid4())
    scope = deps.scope
    with deps.uow() as uow:
        earlier = uow.reprocessing.recorded(request_id)
        counted = uow.reprocessing.count(scope, cmd.video_ids, cmd.filters, cmd.after, request_id)
    if cmd.dry_run:
        return ReprocessResult(
            matched=counted.matched,
            requested=counted.matched - counted.processing,
            skipped_processing=counted.processing,
            dry_run=True,
        )
    if deps.dispatch is None:
        raise VideoError("No broker is wired to send re-processing requests")
    # A redelivery first sends what its earlier delivery committed and never sent.
    if earlier:
        _send_owed(deps, request_id)

    budget = Budget(deps.policy.bulk_delete_time_budget_seconds)
    requested, skipped = earlier, 0
    after = cmd.after
    out_of_time = False
    while True:
        if budget.exhausted():
            out_of_time = True
            break
        with deps.uow() as uow:
            batch = uow.reprocessing.request_batch(
                scope,
                cmd.video_ids,
                cmd.filters,
                after,
                request_id,
                cmd.targets,
                scope.subject,
                BATCH_SIZE,
            )
            uow.events.add([_requested_event(row, request_id) for row in batch.requested])
            uow.commit()
        _send(deps, request_id, batch.requested)
        requested += len(batch.requested)
        skipped += batch.skipped_processing
        budget.done += max(batch.taken, 1)
        if batch.last_id is None or batch.taken < BATCH_SIZE:
            break
        after = batch.last_id
    continuation_id = _continue(deps, cmd, after) if out_of_time else None
    deps.log.info(
        "videos.reprocess_requested",
        extra={
            "matched": counted.matched + earlier,
            "requested": requested,
            "skipped_processing": skipped,
            "continued": out_of_time,
        },
    )
    return ReprocessResult(
        matched=counted.matched + earlier,
        requested=requested,
        skipped_processing=skipped,
        dry_run=False,
        continued=out_of_time,
        continuation_id=continuation_id,
    )


def _requested_event(row: ReprocessRequest, request_id: str) -> VideoReprocessRequestedData:
    return VideoReprocessRequestedData(
        video_id=row.video_id,
        mall_id=row.mall_id,
        pin_id=row.pin_id,
        targets=list(row.targets),
        requested_by=row.requested_by,
        request_id=request_id,
    )


def _send(deps: Deps, request_id: str, rows: Sequence[ReprocessRequest]) -> None:
    """Send each row's message, then mark them sent. A send that fails leaves its row
    (and those after it) unsent: the task's retry, or a redelivery, sends them."""
    if not rows:
        return
    assert deps.dispatch is not None
    policy = deps.policy
    for row in rows:
        deps.dispatch(
            policy.reprocess_task,
            {
                "video_id": str(row.video_id),
                "targets": list(row.targets),
                "requested_by": row.requested_by,
            },
            policy.reprocess_queue,
            message_id(request_id, row.video_id),
        )
    with deps.uow() as uow:
        uow.reprocessing.mark_sent(request_id, [row.video_id for row in rows])
        uow.commit()


def _send_owed(deps: Deps, request_id: str) -> None:
    while True:
        with deps.uow() as uow:
            owed = uow.reprocessing.unsent(request_id, SEND_BATCH)
        _send(deps, request_id, owed)
        if len(owed) < SEND_BATCH:
            return


def _continue(deps: Deps, cmd: Reprocess, after: object) -> str:
    kwargs = cmd.model_dump(mode="json", exclude_none=True)
    kwargs["after"] = str(after)
    continuation_id = str(uuid.uuid4())
    deps.enqueue(TASK, kwargs, 0, task_id=continuation_id)
    return continuation_id
