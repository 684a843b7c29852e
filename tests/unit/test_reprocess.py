"""videos.reprocess on fakes: selection by id and by filter, the trash and the scope left
out, processing videos skipped, the outbox, sends after commit and never twice for a
request, resends of what a dead run owed, the dry run, and the continuation."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from pydantic import ValidationError

from handlers.access import Scope
from handlers.errors import Unavailable
from handlers.policy import Policy
from handlers.reprocess import TASK, message_id, reprocess
from schemas.requests import Reprocess
from tests.unit.fakes import Fakes, make_video

REQUEST_ID = "reprocess-run-1"
NO_TIME_LEFT = Policy(bulk_delete_time_budget_seconds=-1.0)


def run(fakes: Fakes, request_id: str | None = REQUEST_ID, scope: Scope | None = None, **kw):
    deps = replace(fakes.deps, request_id=request_id)
    if scope is not None:
        deps = replace(deps, scope=scope)
    return reprocess(Reprocess(**kw), deps)


def videos_of(fakes: Fakes, count: int, mall_id: uuid.UUID | None = None, **fields) -> list:
    mall_id = mall_id or uuid.uuid4()
    videos = [make_video(mall_id=mall_id, **fields) for _ in range(count)]
    fakes.add_videos(*videos)
    return videos


def status(fakes: Fakes, video) -> tuple[str, str | None]:
    row = fakes.uow.videos.rows[video.id]
    return row.processing_status, row.processing_error


def sent_ids(fakes: Fakes) -> list[str]:
    return [kwargs["video_id"] for _, kwargs, _, _ in fakes.dispatch.sent]


def test_failed_videos_go_back_to_pending_and_each_is_sent_once_after_commit():
    fakes = Fakes()
    failed = videos_of(fakes, 3, processing_status="failed", processing_error="ffmpeg: boom")

    result = run(fakes, video_ids=[str(v.id) for v in failed])

    assert (result.matched, result.requested, result.skipped_processing) == (3, 3, 0)
    assert all(status(fakes, v) == ("pending", None) for v in failed)
    assert sorted(sent_ids(fakes)) == sorted(str(v.id) for v in failed)
    task, kwargs, queue, task_id = fakes.dispatch.sent[0]
    assert (task, queue) == ("processing.reprocess", "processing")
    assert kwargs["targets"] == ["proxy", "thumbnail"] and kwargs["requested_by"] is None
    assert task_id == message_id(REQUEST_ID, uuid.UUID(kwargs["video_id"]))
    events = fakes.uow.events.of_type("video.reprocess_requested")
    assert sorted(e.subject for e in events) == sorted(str(v.id) for v in failed)


def test_a_video_being_processed_is_skipped_and_counted():
    fakes = Fakes()
    busy = videos_of(fakes, 2, processing_status="processing")
    done = videos_of(fakes, 1)

    result = run(fakes, video_ids=[str(v.id) for v in busy + done], targets=["thumbnail"])

    assert (result.matched, result.requested, result.skipped_processing) == (3, 1, 2)
    assert all(status(fakes, v)[0] == "processing" for v in busy)
    assert sent_ids(fakes) == [str(done[0].id)]
    assert fakes.dispatch.sent[0][1]["targets"] == ["thumbnail"]


def test_by_filter_the_trash_and_what_the_scope_does_not_see_are_left_out():
    fakes = Fakes()
    mall = uuid.uuid4()
    mine = videos_of(fakes, 2, mall_id=mall, processing_status="failed")
    trashed = videos_of(fakes, 1, mall_id=mall, processing_status="failed")
    fakes.uow.videos.trashed[trashed[0].id] = (fakes.clock(), None)
    other = videos_of(fakes, 1, processing_status="failed")
    operator = Scope(role="operator", malls=frozenset({mall}), subject="op-1")

    result = run(fakes, scope=operator, filters={"processing_status": "failed"})

    assert (result.matched, result.requested) == (2, 2)
    assert sorted(sent_ids(fakes)) == sorted(str(v.id) for v in mine)
    assert status(fakes, trashed[0])[0] == "failed" and status(fakes, other[0])[0] == "failed"
    assert fakes.dispatch.sent[0][1]["requested_by"] == "op-1"


def test_a_dry_run_changes_and_sends_nothing():
    fakes = Fakes()
    failed = videos_of(fakes, 2, processing_status="failed")
    videos_of(fakes, 1, mall_id=failed[0].mall_id, processing_status="processing")

    result = run(fakes, filters={"mall_id": str(failed[0].mall_id)}, dry_run=True)

    assert (result.matched, result.requested, result.skipped_processing) == (3, 2, 1)
    assert result.dry_run and fakes.dispatch.sent == []
    assert all(status(fakes, v)[0] == "failed" for v in failed)
    assert fakes.uow.events.of_type("video.reprocess_requested") == []


def test_the_same_request_again_sends_nothing_twice():
    fakes = Fakes()
    mall = uuid.uuid4()
    videos_of(fakes, 3, mall_id=mall, processing_status="failed")

    first = run(fakes, filters={"mall_id": str(mall)})
    again = run(fakes, filters={"mall_id": str(mall)})

    assert first.requested == 3 and len(fakes.dispatch.sent) == 3
    # Matched by the filter still (pending now), but already this request's: counted, not sent.
    assert (again.matched, again.requested) == (3, 3)
    assert len(fakes.dispatch.sent) == 3


def test_a_send_that_failed_after_commit_is_sent_by_the_next_delivery():
    fakes = Fakes()
    failed = videos_of(fakes, 2, processing_status="failed")
    fakes.dispatch.failure = Unavailable("broker down")

    with pytest.raises(Unavailable):
        run(fakes, video_ids=[str(v.id) for v in failed])
    # Committed before the send: set back, recorded, owed.
    assert all(status(fakes, v)[0] == "pending" for v in failed)
    assert fakes.dispatch.sent == []

    fakes.dispatch.failure = None
    result = run(fakes, video_ids=[str(v.id) for v in failed])

    assert result.requested == 2
    assert sorted(sent_ids(fakes)) == sorted(str(v.id) for v in failed)
    run(fakes, video_ids=[str(v.id) for v in failed])
    assert len(fakes.dispatch.sent) == 2


def test_out_of_time_it_hands_over_after_the_last_id_it_took():
    fakes = Fakes(policy=NO_TIME_LEFT)
    mall = uuid.uuid4()
    videos = videos_of(fakes, 501, mall_id=mall, processing_status="failed")

    result = run(fakes, filters={"mall_id": str(mall)})

    assert result.continued and result.requested == 500
    (task, kwargs, _), continuation_id = fakes.enqueue.calls[0], fakes.enqueue.task_ids[0]
    assert task == TASK and continuation_id == result.continuation_id
    last = sorted(v.id for v in videos)[499]
    assert kwargs["after"] == str(last)
    rest = run(fakes, request_id=continuation_id, **kwargs)
    assert (rest.requested, rest.continued) == (1, False)
    assert len(set(sent_ids(fakes))) == 501 == len(fakes.dispatch.sent)


def test_targets_and_the_selection_are_checked():
    with pytest.raises(ValidationError):
        Reprocess(video_ids=[str(uuid.uuid4())], targets=["original"])
    with pytest.raises(ValidationError):
        Reprocess(video_ids=[str(uuid.uuid4())], filters={"mall_id": str(uuid.uuid4())})
    with pytest.raises(ValidationError):
        Reprocess(filters={})
    with pytest.raises(ValidationError):
        Reprocess(video_ids=[str(uuid.uuid4())], targets=["proxy", "proxy"])
    assert Reprocess(filters={"tags": ["Dock"]}).targets == ["proxy", "thumbnail"]
