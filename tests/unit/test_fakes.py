"""The fakes behave like the adapters they stand in for, where handlers rely on it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from handlers import StorageUnavailable
from handlers.ports import QueuedKey
from tests.unit.fakes import T0, FakeObjectStore, FakeUnitOfWork, make_video


def test_unit_of_work_rolls_back_unless_committed():
    uow = FakeUnitOfWork()
    video = make_video()
    uow.videos.add(video)

    with uow:
        uow.videos.delete(video.id)
        uow.deletions.enqueue([QueuedKey("k", video.id, video.mall_id, "request")], T0)
    assert (uow.committed, uow.videos.get(video.id), uow.deletions.pending()) == (False, video, 0)

    with uow:
        uow.videos.delete(video.id)
        uow.commit()
    assert (uow.committed, uow.videos.get(video.id)) == (True, None)


def test_rolled_back_queue_ids_are_not_reused_like_an_identity_column():
    uow = FakeUnitOfWork()
    key = QueuedKey("k", None, None, "request")
    with uow:
        assert uow.deletions.enqueue([key], T0) == [1]
    with uow:
        assert uow.deletions.enqueue([key, key], T0) == [2, 3]


def test_deletion_queue_claims_due_entries_oldest_first_and_backs_off():
    uow = FakeUnitOfWork()
    ids = uow.deletions.enqueue([QueuedKey(k, None, None, "request") for k in "abc"], T0)
    uow.deletions.retry_later({ids[0]: ("SlowDown", T0 + timedelta(minutes=1))})

    assert [d.object_key for d in uow.deletions.claim_due(T0, 10)] == ["b", "c"]
    assert [d.object_key for d in uow.deletions.claim_due(T0 + timedelta(minutes=1), 2)] == [
        "a",
        "b",
    ]
    assert uow.deletions.entries[ids[0]].attempts == 1


def test_object_store_fails_named_keys_every_key_or_the_whole_call():
    store = FakeObjectStore(["a", "b", "c"])
    store.fail("b")
    report = store.delete_many(["a", "b", "missing"])
    assert (report.deleted, list(report.failed)) == (["a", "missing"], ["b"])
    assert store.size("b") == 16 and store.size("a") is None

    store.fail_every_key = True
    assert list(store.delete_many(["c"]).failed) == ["c"]

    store.unavailable = True
    with pytest.raises(StorageUnavailable):
        store.delete_many(["c"])
