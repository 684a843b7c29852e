"""Port contracts of References: the keys rows still name.

As every ``test_port_contracts*.py``: each test takes ``world`` and runs on the in-memory
fake (``[fake]``) and on the real adapter (``[real]``), so the handlers' unit tests,
which trust the fakes, test what PostgreSQL does.
"""

from __future__ import annotations

import pytest

from handlers.access import UNRESTRICTED
from tests.contracts.world import World, world_of


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    return world_of(request)


def test_referenced_keys_finds_keys_in_each_path_column_of_live_rows_only(world):
    mall = world.mall()
    video = world.video(mall)
    shared_thumbnail = world.video(mall, proxy=False, thumbnail_path=video.thumbnail_path)
    gone = world.video(mall)
    world.write(lambda uow: uow.removal.delete(UNRESTRICTED, gone.id))
    asked = [
        video.original_path,
        video.proxy_path,
        video.thumbnail_path,
        video.thumbnail_path,
        shared_thumbnail.original_path,
        gone.original_path,
        gone.thumbnail_path,
        "videos/never-stored.mp4",
    ]

    found = world.read(lambda uow: uow.references.referenced_keys(asked))

    assert found == {
        video.original_path,
        video.proxy_path,
        video.thumbnail_path,
        shared_thumbnail.original_path,
    }
    assert world.read(lambda uow: uow.references.referenced_keys([])) == set()
    world.write(lambda uow: uow.removal.delete(UNRESTRICTED, video.id))
    # The shared thumbnail is still held by the other row.
    assert world.read(lambda uow: uow.references.referenced_keys([video.thumbnail_path])) == {
        video.thumbnail_path
    }


def test_referenced_keys_in_order_streams_each_key_once_in_utf8_byte_order(world):
    mall = world.mall()
    shared = "thumbnails/shared.jpg"
    world.video(mall, original_path="videos/Zebra.mp4", proxy_path=None, thumbnail_path=shared)
    world.video(mall, original_path="videos/caf\u00e9.mp4", proxy_path=None, thumbnail_path=shared)
    world.video(mall, original_path="videos/apple.mp4", proxy_path="videos/apple-480.mp4")

    every = world.read(lambda uow: list(uow.references.referenced_keys_in_order()))
    under = world.read(lambda uow: list(uow.references.referenced_keys_in_order("videos/a")))

    assert every == sorted(set(every), key=lambda key: key.encode("utf-8"))
    assert every.count(shared) == 1
    assert every.index("videos/Zebra.mp4") < every.index("videos/apple.mp4")
    assert every.index("videos/apple.mp4") < every.index("videos/caf\u00e9.mp4")
    assert under == ["videos/apple-480.mp4", "videos/apple.mp4"]
