"""Port contracts of Outbox: events written in the unit of work's transaction.

As every ``test_port_contracts*.py``: each test takes ``world`` and runs on the in-memory
fake (``[fake]``) and on the real adapter (``[real]``). The real side also has the
triggers of migration 0012, which write ``video.created`` for the rows a test arranges;
these tests read back only the subjects they wrote.
"""

from __future__ import annotations

import uuid

import pytest

from handlers import events
from handlers.access import UNRESTRICTED
from schemas.events import BulkDeleteProgressData, StatsRefreshedData
from tests.contracts.world import World, world_of


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    if request.param == "real":
        request.getfixturevalue("clean")
        with request.getfixturevalue("engine").begin() as conn:
            from sqlalchemy import text

            conn.execute(text("TRUNCATE event_outbox"))
    return world_of(request)


def about(world: World, *subjects: str) -> list[tuple[str, str, dict]]:
    return [entry for entry in world.outbox() if entry[1] in subjects]


def test_events_are_kept_in_the_order_written_once_committed(world):
    mall = uuid.uuid4()

    def write(uow):
        uow.events.add(
            [
                StatsRefreshedData(mall_id=mall),
                BulkDeleteProgressData(task_id="run-1", matched=3, deleted=1, trash=False),
                StatsRefreshedData(mall_id=None),
            ]
        )
        uow.events.add([BulkDeleteProgressData(task_id="run-1", matched=3, deleted=3, trash=False)])

    world.write(write)

    assert about(world, str(mall), "run-1", "global") == [
        ("stats.refreshed", str(mall), {"mall_id": str(mall)}),
        (
            "bulk_delete.progress",
            "run-1",
            {"task_id": "run-1", "matched": 3, "deleted": 1, "trash": False},
        ),
        ("stats.refreshed", "global", {"mall_id": None}),
        (
            "bulk_delete.progress",
            "run-1",
            {"task_id": "run-1", "matched": 3, "deleted": 3, "trash": False},
        ),
    ]


def test_a_unit_of_work_left_uncommitted_writes_no_event(world):
    with world.uow() as uow:
        uow.events.add([StatsRefreshedData(mall_id=None)])
    world.write(lambda uow: uow.events.add([]))

    assert about(world, "global") == []


def test_removal_and_its_events_commit_together(world):
    mall = world.mall()
    video = world.video(mall)
    gone = world.video(mall)

    def trash_and_delete(uow):
        moved = uow.removal.trash(UNRESTRICTED, video.id, video.uploaded_at, "alice")
        events.trashed(uow, [moved], "alice")
        removed = uow.removal.delete(UNRESTRICTED, gone.id)
        events.deleted(uow, [removed], "request", True)

    world.write(trash_and_delete)
    world.write(lambda uow: events.restored(uow, [uow.removal.restore(UNRESTRICTED, video.id)]))

    written = about(world, str(video.id), str(gone.id))
    # The real side's trigger also saw both rows inserted.
    assert [kind for kind, *_ in written if kind != "video.created"] == [
        "video.trashed",
        "video.deleted",
        "video.restored",
    ]
    deleted = next(data for kind, _, data in written if kind == "video.deleted")
    assert deleted["object_keys"] == [gone.original_path, gone.proxy_path, gone.thumbnail_path]
    trashed = next(data for kind, _, data in written if kind == "video.trashed")
    assert trashed["trashed_by"] == "alice"
    assert trashed["pin_id"] == str(video.pin_id)
