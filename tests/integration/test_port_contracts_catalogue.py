"""Port contracts of Catalogue: list (filters, pages, the trash, search), get and get_many.

As every ``test_port_contracts*.py``: each test takes ``world`` and runs on the in-memory
fake (``[fake]``) and on the real adapter (``[real]``), so the handlers' unit tests,
which trust the fakes, test what PostgreSQL does.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import pytest

from handlers.access import UNRESTRICTED, Scope
from schemas.requests import ListVideos
from schemas.responses import VideoListItem
from tests.contracts.world import World, searched, world_of
from tests.integration.test_port_contracts import (
    ids,
    listed,
    removed,
    scoped_world,
)
from tests.unit.fakes import T0

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    return world_of(request)


# Listing


def test_list_applies_each_filter_and_combines_them_with_and(world):
    mall_a, mall_b = world.mall(), world.mall()
    pin_a1, pin_a2 = world.pin(mall_a, "A1"), world.pin(mall_a, "A2")
    done = world.video(mall_a, pin_a1, uploaded_at=T0 - timedelta(hours=1))
    raw = world.video(mall_a, pin_a2, proxy=False, uploaded_at=T0 - timedelta(hours=2))
    failed = world.video(
        mall_a, pin_a1, proxy=False, processing_status="failed", uploaded_at=T0 - timedelta(hours=3)
    )
    elsewhere = world.video(mall_b, uploaded_at=T0 - timedelta(hours=4))

    cases = {
        (): [done, raw, failed, elsewhere],
        (("mall_id", mall_a),): [done, raw, failed],
        (("pin_id", pin_a1),): [done, failed],
        (("processing_status", "failed"),): [failed],
        (("has_proxy", True),): [done, elsewhere],
        (("has_proxy", False),): [raw, failed],
        (("mall_id", mall_a), ("has_proxy", True)): [done],
        (("pin_id", pin_a1), ("processing_status", "pending")): [],
        (("mall_id", mall_b), ("pin_id", pin_a1)): [],
    }
    for filters, expected in cases.items():
        assert listed(world, **dict(filters)) == ([v.id for v in expected], len(expected)), filters


def test_list_items_carry_the_pins_name_and_what_files_exist_newest_first_then_by_id(world):
    mall = world.mall()
    pin = world.pin(mall, "Food court")
    same_time = T0 - timedelta(hours=1)
    tied = [world.video(mall, pin, id=uuid.uuid4(), uploaded_at=same_time) for _ in range(3)]
    newest = world.video(mall, pin, proxy=False, thumbnail=False, uploaded_at=T0)
    oldest = world.video(mall, pin, thumbnail=False, uploaded_at=T0 - timedelta(days=3))

    items, total = world.read(lambda uow: uow.catalogue.list(UNRESTRICTED, ListVideos()))

    tied_by_id_desc = sorted(tied, key=lambda v: v.id, reverse=True)
    expected = [
        VideoListItem(
            **v.model_dump(include=set(VideoListItem.model_fields)),
            has_proxy=v.proxy_path is not None,
            has_thumbnail=v.thumbnail_path is not None,
        ).with_files(
            {"original": v.original_path, "proxy": v.proxy_path, "thumbnail": v.thumbnail_path}
        )
        for v in [newest, *tied_by_id_desc, oldest]
    ]
    assert (items, total) == (expected, 5)
    assert {item.pin_name for item in items} == {"Food court"}
    assert (items[0].has_proxy, items[0].has_thumbnail) == (False, False)
    assert (items[-1].has_proxy, items[-1].has_thumbnail) == (True, False)


def test_list_date_range_is_half_open(world):
    mall = world.mall()
    at = {hour: world.video(mall, uploaded_at=T0 + timedelta(hours=hour)) for hour in (0, 1, 2)}

    window = {"uploaded_after": T0, "uploaded_before": T0 + timedelta(hours=2)}
    assert listed(world, **window) == ([at[1].id, at[0].id], 2)
    assert listed(world, uploaded_after=T0 + timedelta(hours=1)) == ([at[2].id, at[1].id], 2)
    assert listed(world, uploaded_before=T0 + timedelta(hours=1)) == ([at[0].id], 1)


def test_list_pages_keep_the_true_total_and_a_page_past_the_end_is_empty(world):
    mall = world.mall()
    videos = [world.video(mall, uploaded_at=T0 - timedelta(minutes=i)) for i in range(5)]
    newest_first = [v.id for v in videos]

    assert listed(world, page=1, page_size=2) == (newest_first[0:2], 5)
    assert listed(world, page=3, page_size=2) == (newest_first[4:5], 5)
    assert listed(world, page=4, page_size=2) == ([], 5)
    assert listed(world, mall_id=uuid.uuid4(), page=2) == ([], 0)


def test_listed_items_carry_the_object_keys_a_gallery_signs_and_a_search_its_true_total(
    world, search_read
):
    mall = world.mall()
    with_all = world.video(mall, original_filename="dock_1.mp4", uploaded_at=T0)
    bare = world.video(
        mall,
        original_filename="dock_2.mp4",
        proxy=False,
        thumbnail=False,
        uploaded_at=T0 - timedelta(hours=1),
    )
    world.video(mall, original_filename="lobby.mp4")

    items, total = world.read(
        lambda uow: uow.catalogue.list(UNRESTRICTED, ListVideos(q="DOCK", page_size=1))
    )
    second, _ = world.read(
        lambda uow: uow.catalogue.list(UNRESTRICTED, ListVideos(q="dock", page=2, page_size=1))
    )
    past_end, past_total = world.read(
        lambda uow: uow.catalogue.list(UNRESTRICTED, ListVideos(q="dock", page=3, page_size=1))
    )

    assert total == 2 and (past_end, past_total) == ([], 2)
    assert items[0].files == {
        "original": with_all.original_path,
        "proxy": with_all.proxy_path,
        "thumbnail": with_all.thumbnail_path,
    }
    assert second[0].files == {"original": bare.original_path, "proxy": None, "thumbnail": None}
    assert "files" not in items[0].model_dump(mode="json")


# The trash listed


def test_list_leaves_the_trash_out_and_trashed_true_lists_only_it_with_trashed_at(world):
    mall = world.mall()
    live = world.video(mall, uploaded_at=T0 - HOUR)
    went_in_last = world.video(mall, uploaded_at=T0 - 2 * HOUR, trashed_at=T0 - 5 * DAY)
    went_in_first = world.video(mall, uploaded_at=T0 - 3 * HOUR, trashed_at=T0 - 9 * DAY)

    assert listed(world) == (ids(live), 1)
    items, total = world.read(
        lambda uow: uow.catalogue.list(UNRESTRICTED, ListVideos(trashed=True))
    )

    # Newest upload first, as every list; when each went in is what the item adds.
    assert ([i.id for i in items], total) == (ids(went_in_last, went_in_first), 2)
    assert [i.trashed_at for i in items] == [T0 - 5 * DAY, T0 - 9 * DAY]
    live_items, _ = world.read(lambda uow: uow.catalogue.list(UNRESTRICTED, ListVideos()))
    assert live_items[0].trashed_at is None
    assert listed(world, trashed=True, page=2, page_size=1) == (ids(went_in_first), 2)


def test_list_of_the_trash_applies_the_filters_and_the_scope(world):
    mall_a, mall_b = world.mall(), world.mall()
    pin_a1, pin_a2 = world.pin(mall_a, "A1"), world.pin(mall_a, "A2")
    in_a1 = world.video(mall_a, pin_a1, uploaded_at=T0 - HOUR, trashed_at=T0)
    in_a2 = world.video(mall_a, pin_a2, proxy=False, uploaded_at=T0 - 2 * HOUR, trashed_at=T0)
    in_b = world.video(mall_b, uploaded_at=T0 - 3 * HOUR, trashed_at=T0)
    world.video(mall_a, pin_a1)

    assert listed(world, trashed=True, mall_id=mall_a) == (ids(in_a1, in_a2), 2)
    assert listed(world, trashed=True, has_proxy=False) == (ids(in_a2), 1)
    assert listed(world, Scope.operator([mall_b]), trashed=True) == (ids(in_b), 1)
    assert listed(world, Scope.tenant([pin_a1]), trashed=True, mall_id=mall_b) == ([], 0)


# Search


def test_search_matches_the_filename_or_the_notes_case_insensitively_anywhere_in_them(
    world, search_read
):
    mall = world.mall()
    at = [T0 - timedelta(minutes=m) for m in range(4)]
    by_name = world.video(mall, original_filename="Entrance_MORNING.MP4", uploaded_at=at[0])
    by_notes = world.video(
        mall, original_filename="clip.mp4", operator_notes="Camera moved", uploaded_at=at[1]
    )
    both = world.video(
        mall, original_filename="moved.mov", operator_notes="morning shift", uploaded_at=at[2]
    )
    neither = world.video(mall, original_filename="night.avi", uploaded_at=at[3])

    cases = {
        "morning": [by_name, both],
        "MOVED": [by_notes, both],
        "ing.m": [by_name],
        "mp4": [by_name, by_notes],
        "mov": [by_notes, both],
        "night.avi": [neither],
        "Night.AVI": [neither],
        "tape": [],
    }
    for q, expected in cases.items():
        assert searched(world, q=q) == (ids(*expected), len(expected)), q


def test_search_lowers_each_character_as_ilike_does_not_unicode_case_folding(world, search_read):
    mall = world.mall()
    cafe = world.video(mall, original_filename="Café Ärger.mp4", uploaded_at=T0)
    street = world.video(mall, operator_notes="Straße 5", uploaded_at=T0 - HOUR)

    assert searched(world, q="CAFÉ äRGER") == (ids(cafe), 1)
    assert searched(world, q="STRAßE") == (ids(street), 1)
    assert searched(world, q="strasse") == ([], 0)


def test_search_takes_percent_underscore_and_backslash_literally(world, search_read):
    mall = world.mall()
    names = [
        "x50%_off.mp4",
        "x500.mp4",
        "aaa_b.mp4",
        "aaaxb.mp4",
        "x100%%.mp4",
        "back\\slash.mp4",
        "backslash.mp4",
    ]
    named = {
        name: world.video(mall, original_filename=name, uploaded_at=T0 - timedelta(minutes=i))
        for i, name in enumerate(names)
    }
    noted = world.video(
        mall,
        original_filename="plain.mp4",
        operator_notes="x25% off_peak C:\\cams",
        uploaded_at=T0 - DAY,
    )

    # Each q holds the run of 3 letters or digits a search needs, and wildcards that,
    # were they not literal, would match the names beside.
    cases = {
        "x50%": ["x50%_off.mp4"],
        "x50%_": ["x50%_off.mp4"],
        "x50__": [],
        "aaa_b": ["aaa_b.mp4"],
        "100%%": ["x100%%.mp4"],
        "100%%%": [],
        "ack\\s": ["back\\slash.mp4"],
        "ack\\\\s": [],
    }
    for q, expected in cases.items():
        want = [named[name].id for name in expected]
        assert searched(world, q=q) == (want, len(want)), q
    assert searched(world, q="X25% OFF_") == ([noted.id], 1)
    assert searched(world, q="off_p") == ([noted.id], 1)
    assert searched(world, q="C:\\cam") == ([noted.id], 1)
    # Searched as one text, the name and the notes are joined by chr(1): a q holding it
    # still matches within one column only.
    joined = world.video(
        mall, original_filename="dock", operator_notes="east gate", uploaded_at=T0 - DAY
    )
    assert searched(world, q="dock\x01east") == ([], 0)
    weird = world.video(mall, original_filename="cam\x01east", uploaded_at=T0 - DAY * 2)
    assert searched(world, q="CAM\x01EAST") == ([weird.id], 1)
    assert searched(world, q="east") == ([joined.id, weird.id], 2)


def test_search_is_combined_with_the_other_filters_the_trash_and_the_scope(world, search_read):
    mall_a, mall_b = world.mall(), world.mall()
    pin_a1, pin_a2 = world.pin(mall_a, "A1"), world.pin(mall_a, "A2")
    at = [T0 - timedelta(minutes=m) for m in range(5)]
    lobby_a1 = world.video(mall_a, pin_a1, original_filename="lobby-1.mp4", uploaded_at=at[0])
    lobby_a2 = world.video(
        mall_a, pin_a2, proxy=False, operator_notes="lobby door", uploaded_at=at[1]
    )
    lobby_b = world.video(mall_b, original_filename="LOBBY.mp4", uploaded_at=at[2])
    lobby_trashed = world.video(
        mall_a, pin_a1, original_filename="lobby-old.mp4", uploaded_at=at[3], trashed_at=T0
    )
    world.video(mall_a, pin_a1, original_filename="parking.mp4", uploaded_at=at[4])

    assert searched(world, q="lobby") == (ids(lobby_a1, lobby_a2, lobby_b), 3)
    assert searched(world, q="lobby", mall_id=mall_a) == (ids(lobby_a1, lobby_a2), 2)
    assert searched(world, q="lobby", has_proxy=False) == (ids(lobby_a2), 1)
    assert searched(world, q="lobby", processing_status="pending", pin_id=pin_a2) == (
        ids(lobby_a2),
        1,
    )
    assert searched(world, q="lobby", uploaded_before=at[1]) == (ids(lobby_b), 1)
    assert searched(world, q="lobby", trashed=True) == (ids(lobby_trashed), 1)
    assert searched(world, Scope.operator([mall_b]), q="lobby") == (ids(lobby_b), 1)
    assert searched(world, Scope.tenant([pin_a2]), q="lobby") == (ids(lobby_a2), 1)
    assert searched(world, Scope.tenant([pin_a2]), q="lobby", mall_id=mall_b) == ([], 0)
    # Several malls or pins: each one's rows of a period are read by its own key.
    both = ids(lobby_a1, lobby_a2, lobby_b)
    assert searched(world, Scope.operator([mall_a, mall_b]), q="lobby") == (both, 3)
    assert searched(world, Scope.tenant([pin_a1, pin_a2]), q="lobby") == (
        ids(lobby_a1, lobby_a2),
        2,
    )
    assert searched(world, Scope.tenant([pin_a1, pin_a2]), q="lobby", trashed=True) == (
        ids(lobby_trashed),
        1,
    )
    assert searched(world, Scope.operator([mall_a, mall_b]), q="lobby", pin_id=pin_a1) == (
        ids(lobby_a1),
        1,
    )


# get and get_many


def test_get_answers_every_column_with_the_pins_name_and_none_for_an_unknown_id(world):
    mall = world.mall()
    pin = world.pin(mall, "Parking P2")
    video = world.video(
        mall,
        pin,
        proxy=False,
        processing_status="failed",
        processing_error="ffmpeg exited 1",
        processing_job_id=uuid.uuid4(),
        operator_notes="camera moved",
        duration_seconds=None,
    )

    assert world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, video.id)) == video
    assert video.pin_name == "Parking P2"
    assert world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, uuid.uuid4())) is None


def test_get_is_none_for_a_trashed_video_and_get_many_answers_either_state_within_the_scope(
    world,
):
    mall_a, mall_b = world.mall(), world.mall()
    live = world.video(mall_a)
    in_trash = world.video(mall_a, trashed_at=T0 - DAY)
    live_b = world.video(mall_b)
    trash_b = world.video(mall_b, trashed_at=T0 - DAY)
    every = [live.id, in_trash.id, live_b.id, trash_b.id, uuid.uuid4(), live.id]

    def get_many(scope, trashed):
        return world.read(lambda uow: uow.catalogue.get_many(scope, every, trashed=trashed))

    assert world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, in_trash.id)) is None
    assert world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, live.id)) == live
    assert get_many(UNRESTRICTED, False) == {live.id: live, live_b.id: live_b}
    assert get_many(UNRESTRICTED, True) == {in_trash.id: in_trash, trash_b.id: trash_b}
    assert get_many(Scope.operator([mall_b]), True) == {trash_b.id: trash_b}
    assert get_many(Scope.tenant([]), False) == {}
    assert world.read(lambda uow: uow.catalogue.get_many(UNRESTRICTED, [], trashed=True)) == {}


# Access scope: the query builder's filter on every read


def test_list_get_and_delete_see_only_the_scopes_videos_and_filters_intersect_it(world):
    mall_a, mall_b, (pin_a1, pin_a2, pin_b1), v = scoped_world(world)
    operator_a = Scope.operator([mall_a], subject="alice")
    tenant_a1 = Scope.tenant([pin_a1], subject="tom")

    def ids(scope, **query):
        items, total = world.read(lambda uow: uow.catalogue.list(scope, ListVideos(**query)))
        return [item.id for item in items], total

    assert ids(operator_a) == ([v["a1"].id, v["a1_old"].id, v["a2"].id], 3)
    assert ids(operator_a, mall_id=mall_b) == ([], 0)
    assert ids(operator_a, pin_id=pin_a2) == ([v["a2"].id], 1)
    assert ids(tenant_a1) == ([v["a1"].id, v["a1_old"].id], 2)
    assert ids(tenant_a1, mall_id=mall_a, has_proxy=False) == ([v["a1_old"].id], 1)
    assert ids(tenant_a1, pin_id=pin_b1) == ([], 0)
    assert ids(Scope.operator([])) == ([], 0)
    assert ids(Scope.tenant([])) == ([], 0)
    assert ids(Scope.admin("root"))[1] == 4

    assert world.read(lambda uow: uow.catalogue.get(operator_a, v["a2"].id)) == v["a2"]
    assert world.read(lambda uow: uow.catalogue.get(operator_a, v["b1"].id)) is None
    assert world.read(lambda uow: uow.catalogue.get(tenant_a1, v["a2"].id)) is None

    assert world.write(lambda uow: uow.removal.delete(operator_a, v["b1"].id)) is None
    assert world.write(lambda uow: uow.removal.delete(tenant_a1, v["a2"].id)) is None
    assert world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, v["b1"].id)) == v["b1"]
    gone = world.write(lambda uow: uow.removal.delete(operator_a, v["a2"].id))
    assert gone == removed(v["a2"]) and gone.pin_id == pin_a2


def test_scoped_reads_equal_an_unscoped_read_filtered_by_the_scope_rule(world):
    """Property-style: random scopes and filters over one catalogue, each scoped answer
    compared with the unscoped answer filtered in Python by ``Scope.sees``."""
    rng = random.Random(20261201)
    malls = [world.mall() for _ in range(3)]
    pins = {mall: [world.pin(mall, f"P{i}") for i in range(2)] for mall in malls}
    every_pin = [pin for mall in malls for pin in pins[mall]]
    catalogue = []
    for index in range(24):
        mall = rng.choice(malls)
        catalogue.append(
            world.video(
                mall,
                rng.choice(pins[mall]),
                uploaded_at=T0 - timedelta(minutes=index * 7 + rng.randrange(5)),
                proxy=rng.random() < 0.6,
                processing_status=rng.choice(["pending", "processing", "completed", "failed"]),
            )
        )
    by_id = {video.id: video for video in catalogue}

    def random_scope() -> Scope:
        role = rng.choice(["admin", "operator", "tenant"])
        if role == "operator":
            return Scope.operator(rng.sample(malls + [uuid.uuid4()], rng.randrange(0, 4)))
        if role == "tenant":
            return Scope.tenant(rng.sample(every_pin + [uuid.uuid4()], rng.randrange(0, 5)))
        return Scope.admin()

    def random_query() -> dict:
        query: dict = {"page_size": 100}
        if rng.random() < 0.4:
            query["mall_id"] = rng.choice(malls)
        if rng.random() < 0.3:
            query["pin_id"] = rng.choice(every_pin)
        if rng.random() < 0.3:
            query["has_proxy"] = rng.random() < 0.5
        if rng.random() < 0.3:
            query["processing_status"] = rng.choice(["pending", "completed", "failed"])
        return query

    for _ in range(40):
        scope, query = random_scope(), random_query()
        everything, _ = world.read(
            lambda uow, q=query: uow.catalogue.list(UNRESTRICTED, ListVideos(**q))
        )
        expected = [i.id for i in everything if scope.sees(i.mall_id, i.pin_id)]
        items, total = world.read(
            lambda uow, s=scope, q=query: uow.catalogue.list(s, ListVideos(**q))
        )
        assert ([i.id for i in items], total) == (expected, len(expected)), (scope, query)

        video = rng.choice(catalogue)
        got = world.read(lambda uow, s=scope, v=video: uow.catalogue.get(s, v.id))
        assert (got is not None) == scope.sees(video.mall_id, video.pin_id), (scope, video.id)

        mall_filter = query.get("mall_id")
        figure = world.read(lambda uow, s=scope, m=mall_filter: uow.figures.stats(s, m, T0))
        seen = [
            v
            for v in by_id.values()
            if scope.sees(v.mall_id, v.pin_id) and (mall_filter is None or v.mall_id == mall_filter)
        ]
        assert figure.total_videos == len(seen), (scope, mall_filter)
        assert figure.total_storage_bytes == sum(
            v.file_size_bytes + (v.proxy_size_bytes or 0) for v in seen
        )
