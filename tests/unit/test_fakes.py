"""What only the fakes have: the flags and failure switches unit tests arrange and read.

How each fake behaves as a port is pinned, side by side with its real adapter, by the
contract tests in ``tests/integration/test_port_contracts.py`` (their ``[fake]`` half
starts no service).
"""

from __future__ import annotations

from handlers.access import UNRESTRICTED
from handlers.ports import QueuedKey
from tests.unit.fakes import T0, FakeObjectStore, FakeUnitOfWork, make_video


def test_unit_of_work_counts_blocks_and_tells_whether_the_last_one_committed():
    uow = FakeUnitOfWork()
    video = make_video()
    uow.videos.add(video)

    with uow:
        uow.deletions.enqueue([QueuedKey("k", video.id, video.mall_id, "request")], T0)
    assert (uow.transactions, uow.committed) == (1, False)

    with uow:
        uow.removal.delete(UNRESTRICTED, video.id)
        uow.commit()
    assert (uow.transactions, uow.committed) == (2, True)

    with uow:
        pass
    assert (uow.transactions, uow.committed) == (3, False)


def test_object_store_fails_named_keys_every_key_or_the_whole_call():
    store = FakeObjectStore(["a", "b", "c"])
    store.fail("b")
    report = store.delete_many(["a", "b", "missing"])
    assert (report.deleted, list(report.failed)) == (["a", "missing"], ["b"])
    assert store.size("b") == 16 and store.size("a") is None

    store.fail_every_key = True
    assert list(store.delete_many(["c"]).failed) == ["c"]

    store.unavailable = True
    store.fail_every_key = False
    # Like the real store, S3 out of reach fails each key and never raises.
    report = store.delete_many(["c"])
    assert (report.deleted, report.failed) == ([], {"c": "EndpointConnectionError"})
    assert "c" in store.objects
