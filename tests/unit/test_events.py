"""Events on fakes: each change writes its CloudEvent to the outbox in its own
transaction (none when it rolls back), and the envelope the relay builds is a valid
CloudEvents 1.0 structured event."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SpecEvent

from handlers import bulk_delete, delete_video, refresh_stats, restore_video, sweep_retention
from schemas import BulkDelete, DeleteVideo, RefreshStats, RestoreVideo, SweepRetention
from schemas.events import (
    EVENT_DATA,
    CloudEvent,
    StatsRefreshedData,
    VideoDeletedData,
    VideoStatusChangedData,
)
from tests.unit.fakes import T0, Fakes, make_video
from worker.adapters.relay import envelope

DELETED = "video.deleted"


def outbox(fakes: Fakes, *types: str):
    return fakes.uow.events.of_type(*types) if types else list(fakes.uow.events.entries)


def test_a_delete_writes_video_deleted_with_the_keys_it_queued_in_its_transaction():
    fakes = Fakes()
    video = make_video()
    fakes.add_videos(video)

    delete_video(DeleteVideo(video_id=str(video.id)), fakes.deps)

    (entry,) = outbox(fakes)
    assert (entry.type, entry.subject) == (DELETED, str(video.id))
    assert entry.data == {
        "video_id": str(video.id),
        "mall_id": str(video.mall_id),
        "pin_id": str(video.pin_id),
        "reason": "request",
        "object_keys": [video.original_path, video.proxy_path, video.thumbnail_path],
        "files_kept": False,
    }
    # The v1 channel's event is still published, after the commit.
    assert [e.event for e in fakes.publisher.events] == [DELETED]


def test_a_delete_that_keeps_the_files_says_so():
    fakes = Fakes()
    video = make_video()
    fakes.add_videos(video)

    delete_video(DeleteVideo(video_id=str(video.id), delete_files=False), fakes.deps)

    assert outbox(fakes)[0].data["files_kept"] is True


def test_a_delete_of_nothing_writes_nothing():
    fakes = Fakes()
    with pytest.raises(Exception, match="not found"):
        delete_video(DeleteVideo(video_id=str(uuid.uuid4())), fakes.deps)
    assert outbox(fakes) == []


def test_trash_and_restore_each_write_their_event_and_a_second_trash_writes_none():
    fakes = Fakes()
    video = make_video()
    fakes.add_videos(video)

    delete_video(DeleteVideo(video_id=str(video.id), trash=True), fakes.deps)
    delete_video(DeleteVideo(video_id=str(video.id), trash=True), fakes.deps)
    restore_video(RestoreVideo(video_id=str(video.id)), fakes.deps)

    assert [(e.type, e.subject) for e in outbox(fakes)] == [
        ("video.trashed", str(video.id)),
        ("video.restored", str(video.id)),
    ]
    assert outbox(fakes)[0].data["trashed_at"] == T0.isoformat().replace("+00:00", "Z")


def test_each_bulk_batch_writes_its_deletions_and_its_progress_together():
    fakes = Fakes()
    videos = [make_video() for _ in range(5)]
    fakes.add_videos(*videos)
    deps = fakes.deps.__class__(**{**fakes.deps.__dict__, "request_id": "run-1"})

    bulk_delete(BulkDelete(video_ids=[str(v.id) for v in videos], batch_size=2), deps)

    # Each batch's transaction holds its progress and its deletions (subjects differ:
    # their order within it means nothing).
    kinds = [e.type for e in outbox(fakes)]
    assert kinds == ["bulk_delete.progress", DELETED, DELETED] * 2 + [
        "bulk_delete.progress",
        DELETED,
    ]
    progress = [e.data for e in outbox(fakes, "bulk_delete.progress")]
    assert [p["deleted"] for p in progress] == [2, 4, 5]
    assert {p["matched"] for p in progress} == {5}
    assert {e.subject for e in outbox(fakes, "bulk_delete.progress")} == {"run-1"}


def test_a_bulk_trash_writes_trashed_events_and_progress():
    fakes = Fakes()
    videos = [make_video() for _ in range(3)]
    fakes.add_videos(*videos)

    bulk_delete(BulkDelete(video_ids=[str(v.id) for v in videos], trash=True), fakes.deps)

    assert [e.type for e in outbox(fakes)] == ["video.trashed"] * 3 + ["bulk_delete.progress"]
    assert outbox(fakes, "bulk_delete.progress")[0].data["trash"] is True


def test_a_sweep_writes_video_deleted_with_its_reason():
    fakes = Fakes()
    old = make_video(uploaded_at=datetime(2020, 1, 1, tzinfo=UTC))
    fakes.add_videos(old)

    sweep_retention(SweepRetention(), fakes.deps)

    assert [(e.type, e.data["reason"]) for e in outbox(fakes)] == [(DELETED, "retention")]


def test_a_refresh_writes_stats_refreshed_per_scope():
    fakes = Fakes()
    video = make_video()
    fakes.add_videos(video)

    refresh_stats(RefreshStats(mall_id=str(video.mall_id)), fakes.deps)

    assert [(e.type, e.subject) for e in outbox(fakes)] == [("stats.refreshed", str(video.mall_id))]


def test_a_rolled_back_transaction_leaves_no_event():
    fakes = Fakes()
    with fakes.uow() as uow:
        uow.events.add([StatsRefreshedData(mall_id=None)])
    assert outbox(fakes) == []
    with fakes.uow() as uow:
        uow.events.add([StatsRefreshedData(mall_id=None)])
        uow.commit()
    assert [(e.type, e.subject) for e in outbox(fakes)] == [("stats.refreshed", "global")]


# The envelope ---------------------------------------------------------------------------


def test_the_relays_envelope_is_a_cloudevents_1_0_structured_event():
    """Read back by the CloudEvents SDK, an implementation of the spec of its own."""
    event_id = uuid.uuid4()
    data = {"video_id": str(uuid.uuid4()), "nested": {"é": [1, 2.5, None, True]}}
    body = envelope(event_id, DELETED, data["video_id"], T0, json.dumps(data))

    read = JSONFormat().read(SpecEvent, body.encode())

    attributes = read.get_attributes()
    assert attributes["specversion"] == "1.0"
    assert attributes["id"] == str(event_id)
    assert attributes["source"] == "videoworker"
    assert attributes["type"] == DELETED
    assert attributes["subject"] == data["video_id"]
    assert attributes["time"] == T0
    assert attributes["datacontenttype"] == "application/json"
    assert read.get_data() == data
    assert CloudEvent.model_validate_json(body).data == data
    assert json.loads(body)["time"] == "2025-10-31T12:00:00Z"


def test_every_event_type_has_a_data_model_and_the_trigger_shape_validates():
    assert set(EVENT_DATA) >= {
        "video.created",
        "video.status_changed",
        "video.trashed",
        "video.restored",
        "video.deleted",
        "bulk_delete.progress",
        "stats.refreshed",
    }
    # What migration 0012's trigger writes for an UPDATE.
    written = {
        "video_id": str(uuid.uuid4()),
        "mall_id": str(uuid.uuid4()),
        "pin_id": None,
        "processing_status": {"from": "processing", "to": "completed"},
        "has_proxy": {"from": False, "to": True},
        "has_thumbnail": {"from": False, "to": False},
        "changed": ["processing_status", "has_proxy"],
    }
    parsed = VideoStatusChangedData.model_validate(written)
    assert parsed.model_dump(mode="json", by_alias=True) == written
    assert VideoDeletedData.event_type == DELETED
