"""Port contracts of the trash, search, bulk selection, quotas and per-pin figures.

As ``test_port_contracts.py``: every test takes ``world`` and runs on the in-memory
fakes (``[fake]``) and on the real adapters (``[real]``), so the handlers' unit tests,
which trust the fakes, test what PostgreSQL does.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from uuid import UUID

import pytest

from handlers.access import UNRESTRICTED, Scope
from handlers.ports import ExpiredSummary, RemovedVideo, RetentionScope, TrashedVideo
from schemas.requests import ListVideos, VideoFilters
from schemas.responses import PinFigures, TrashFigures
from tests.contracts.world import World, world_of
from tests.integration.test_port_contracts import removed
from tests.unit.fakes import T0

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    return world_of(request)


def listed(world: World, scope: Scope = UNRESTRICTED, **query) -> tuple[list[UUID], int]:
    items, total = world.read(lambda uow: uow.videos.list(scope, ListVideos(**query)))
    return [item.id for item in items], total


def ids(*videos) -> list[UUID]:
    return [video.id for video in videos]


def trashed(video, at, newly=True) -> TrashedVideo:
    return TrashedVideo(video.id, video.mall_id, video.pin_id, at, newly=newly)


def by_id(rows):
    return sorted(rows, key=lambda row: row.id)


# Listing: the trash and search


def test_list_leaves_the_trash_out_and_trashed_true_lists_only_it_with_trashed_at(world):
    mall = world.mall()
    live = world.video(mall, uploaded_at=T0 - HOUR)
    went_in_last = world.video(mall, uploaded_at=T0 - 2 * HOUR, trashed_at=T0 - 5 * DAY)
    went_in_first = world.video(mall, uploaded_at=T0 - 3 * HOUR, trashed_at=T0 - 9 * DAY)

    assert listed(world) == (ids(live), 1)
    items, total = world.read(lambda uow: uow.videos.list(UNRESTRICTED, ListVideos(trashed=True)))

    # Newest upload first, as every list; when each went in is what the item adds.
    assert ([i.id for i in items], total) == (ids(went_in_last, went_in_first), 2)
    assert [i.trashed_at for i in items] == [T0 - 5 * DAY, T0 - 9 * DAY]
    live_items, _ = world.read(lambda uow: uow.videos.list(UNRESTRICTED, ListVideos()))
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


def test_search_matches_the_filename_or_the_notes_case_insensitively_anywhere_in_them(world):
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
        "e": [by_name, by_notes, both],
        "night.avi": [neither],
        "Night.AVI": [neither],
        "tape": [],
    }
    for q, expected in cases.items():
        assert listed(world, q=q) == (ids(*expected), len(expected)), q


def test_search_lowers_each_character_as_ilike_does_not_unicode_case_folding(world):
    mall = world.mall()
    cafe = world.video(mall, original_filename="Café Ärger.mp4", uploaded_at=T0)
    street = world.video(mall, operator_notes="Straße 5", uploaded_at=T0 - HOUR)

    assert listed(world, q="CAFÉ äRGER") == (ids(cafe), 1)
    assert listed(world, q="STRAßE") == (ids(street), 1)
    assert listed(world, q="strasse") == ([], 0)


def test_search_takes_percent_underscore_and_backslash_literally(world):
    mall = world.mall()
    names = [
        "50%_off.mp4",
        "500.mp4",
        "a_b.mp4",
        "axb.mp4",
        "100%%.mp4",
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
        operator_notes="25% off_peak C:\\cams",
        uploaded_at=T0 - DAY,
    )

    cases = {
        "50%": ["50%_off.mp4"],
        "a_b": ["a_b.mp4"],
        "%%": ["100%%.mp4"],
        "%": ["50%_off.mp4", "100%%.mp4"],
        "_": ["50%_off.mp4", "a_b.mp4"],
        "%_": ["50%_off.mp4"],
        "__": [],
        "%%%": [],
        "\\": ["back\\slash.mp4"],
        "k\\s": ["back\\slash.mp4"],
        "\\\\": [],
    }
    for q, expected in cases.items():
        want = [named[name].id for name in expected]
        if q in ("%", "_", "\\"):
            want.append(noted.id)
        assert listed(world, q=q) == (want, len(want)), q
    assert listed(world, q="5% OFF_") == ([noted.id], 1)


def test_search_is_combined_with_the_other_filters_the_trash_and_the_scope(world):
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

    assert listed(world, q="lobby") == (ids(lobby_a1, lobby_a2, lobby_b), 3)
    assert listed(world, q="lobby", mall_id=mall_a) == (ids(lobby_a1, lobby_a2), 2)
    assert listed(world, q="lobby", has_proxy=False) == (ids(lobby_a2), 1)
    assert listed(world, q="lobby", processing_status="pending", pin_id=pin_a2) == (
        ids(lobby_a2),
        1,
    )
    assert listed(world, q="lobby", uploaded_before=at[1]) == (ids(lobby_b), 1)
    assert listed(world, q="lobby", trashed=True) == (ids(lobby_trashed), 1)
    assert listed(world, Scope.operator([mall_b]), q="lobby") == (ids(lobby_b), 1)
    assert listed(world, Scope.tenant([pin_a2]), q="lobby") == (ids(lobby_a2), 1)
    assert listed(world, Scope.tenant([pin_a2]), q="lobby", mall_id=mall_b) == ([], 0)


# get and get_many


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
        return world.read(lambda uow: uow.videos.get_many(scope, every, trashed=trashed))

    assert world.read(lambda uow: uow.videos.get(UNRESTRICTED, in_trash.id)) is None
    assert world.read(lambda uow: uow.videos.get(UNRESTRICTED, live.id)) == live
    assert get_many(UNRESTRICTED, False) == {live.id: live, live_b.id: live_b}
    assert get_many(UNRESTRICTED, True) == {in_trash.id: in_trash, trash_b.id: trash_b}
    assert get_many(Scope.operator([mall_b]), True) == {trash_b.id: trash_b}
    assert get_many(Scope.tenant([]), False) == {}
    assert world.read(lambda uow: uow.videos.get_many(UNRESTRICTED, [], trashed=True)) == {}


# trash, restore, delete


def test_trash_moves_a_video_in_once_and_a_second_call_answers_the_first_trashed_at(world):
    mall = world.mall()
    video = world.video(mall)

    first = world.write(lambda uow: uow.videos.trash(UNRESTRICTED, video.id, T0, "alice"))
    again = world.write(lambda uow: uow.videos.trash(UNRESTRICTED, video.id, T0 + HOUR, "bob"))

    assert first == trashed(video, T0, newly=True)
    assert again == trashed(video, T0, newly=False)
    assert first.trashed_at.utcoffset() == timedelta(0)
    assert world.trash_mark(video.id) == (T0, "alice")
    assert world.read(lambda uow: uow.videos.get(UNRESTRICTED, video.id)) is None
    assert listed(world, trashed=True) == (ids(video), 1)


def test_trash_is_none_for_an_unknown_video_and_one_outside_the_scope(world):
    mall, other = world.mall(), world.mall()
    video = world.video(mall)

    def trash(scope, video_id):
        return world.write(lambda uow: uow.videos.trash(scope, video_id, T0, None))

    assert trash(UNRESTRICTED, uuid.uuid4()) is None
    assert trash(Scope.operator([other]), video.id) is None
    assert trash(Scope.tenant([uuid.uuid4()]), video.id) is None
    assert world.trash_mark(video.id) is None
    assert trash(Scope.operator([mall]), video.id) == trashed(video, T0)


def test_restore_puts_a_video_back_once_and_is_none_for_one_not_in_the_trash(world):
    mall, other = world.mall(), world.mall()
    in_trash = world.video(mall, trashed_at=T0 - DAY, trashed_by="alice")
    live = world.video(mall)

    def restore(scope, video_id):
        return world.write(lambda uow: uow.videos.restore(scope, video_id))

    assert restore(Scope.operator([other]), in_trash.id) is None
    assert world.trash_mark(in_trash.id) == (T0 - DAY, "alice")
    # The answer says when it had gone in (what the caller is told it undid).
    assert restore(Scope.operator([mall]), in_trash.id) == trashed(in_trash, T0 - DAY)
    assert restore(UNRESTRICTED, in_trash.id) is None
    assert restore(UNRESTRICTED, live.id) is None
    assert restore(UNRESTRICTED, uuid.uuid4()) is None
    assert world.trash_mark(in_trash.id) is None
    assert world.read(lambda uow: uow.videos.get(UNRESTRICTED, in_trash.id)) == in_trash


def test_delete_of_a_trashed_video_deletes_it(world):
    mall = world.mall()
    in_trash = world.video(mall, trashed_at=T0 - DAY)

    gone = world.write(lambda uow: uow.videos.delete(UNRESTRICTED, in_trash.id))

    assert gone == removed(in_trash)
    assert gone.stored_bytes == 1_100
    assert world.read(lambda uow: uow.videos.get_many(UNRESTRICTED, [in_trash.id], True)) == {}
    assert world.write(lambda uow: uow.videos.delete(UNRESTRICTED, in_trash.id)) is None


# Bulk selection


def test_find_selected_names_the_ids_the_scope_sees_in_the_trash_or_not(world):
    mall_a, mall_b = world.mall(), world.mall()
    live, in_trash = world.video(mall_a), world.video(mall_a, trashed_at=T0)
    elsewhere = world.video(mall_b)
    asked = [live.id, in_trash.id, elsewhere.id, uuid.uuid4(), live.id]

    def find(scope, video_ids):
        return world.read(lambda uow: uow.videos.find_selected(scope, video_ids))

    assert find(UNRESTRICTED, asked) == {live.id, in_trash.id, elsewhere.id}
    assert find(Scope.operator([mall_a]), asked) == {live.id, in_trash.id}
    assert find(Scope.tenant([]), asked) == set()
    assert find(UNRESTRICTED, []) == set()


def test_a_selection_of_neither_ids_nor_a_filter_is_refused_and_deletes_nothing(world):
    mall = world.mall()
    video = world.video(mall)
    nothing = VideoFilters()
    calls = {
        "summarise": lambda uow: uow.videos.summarise_selected(UNRESTRICTED, nothing),
        "delete, no filters": lambda uow: uow.videos.delete_selected(UNRESTRICTED, None, None, 10),
        "delete, empty filters": lambda uow: uow.videos.delete_selected(
            UNRESTRICTED, None, nothing, 10
        ),
        "trash, no filters": lambda uow: uow.videos.trash_selected(
            UNRESTRICTED, None, None, 10, T0, None
        ),
        "trash, empty filters": lambda uow: uow.videos.trash_selected(
            UNRESTRICTED, None, nothing, 10, T0, None
        ),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError):  # noqa: PT011 - the refusal is the point, not its text
            world.write(call)
        assert listed(world) == (ids(video), 1), name


def test_summarise_selected_counts_what_a_list_with_the_filters_shows_and_its_bytes(world):
    mall_a, mall_b = world.mall(), world.mall()
    world.video(mall_a, file_size_bytes=1_000, proxy_size_bytes=100)
    world.video(mall_a, proxy=False, file_size_bytes=2_000)
    world.video(mall_a, file_size_bytes=50_000, trashed_at=T0)
    world.video(mall_b, file_size_bytes=7_000, operator_notes="Lobby")

    def summary(scope, **filters):
        return world.read(lambda uow: uow.videos.summarise_selected(scope, VideoFilters(**filters)))

    assert summary(UNRESTRICTED, mall_id=mall_a) == ExpiredSummary(count=2, bytes=3_100)
    assert summary(UNRESTRICTED, has_proxy=True) == ExpiredSummary(count=2, bytes=8_200)
    assert summary(UNRESTRICTED, q="lobby") == ExpiredSummary(count=1, bytes=7_100)
    assert summary(Scope.operator([mall_b]), mall_id=mall_a) == ExpiredSummary(count=0, bytes=0)


def test_delete_selected_by_ids_takes_the_oldest_up_to_the_limit_trashed_or_not(world):
    mall_a, mall_b = world.mall(), world.mall()
    oldest = world.video(mall_a, uploaded_at=T0 - 4 * DAY, trashed_at=T0)
    older = world.video(mall_a, uploaded_at=T0 - 3 * DAY)
    newer = world.video(mall_a, uploaded_at=T0 - 2 * DAY)
    unseen = world.video(mall_b, uploaded_at=T0 - 9 * DAY)
    asked = [newer.id, unseen.id, uuid.uuid4(), oldest.id, older.id]
    operator_a = Scope.operator([mall_a])

    first = world.write(lambda uow: uow.videos.delete_selected(operator_a, asked, None, 2))
    rest = world.write(lambda uow: uow.videos.delete_selected(operator_a, asked, None, 2))
    nothing = world.write(lambda uow: uow.videos.delete_selected(operator_a, asked, None, 2))

    assert by_id(first) == by_id([removed(oldest), removed(older)])
    assert rest == [removed(newer)]
    assert nothing == []
    assert listed(world) == (ids(unseen), 1)


def test_delete_selected_by_filters_takes_the_oldest_listed_and_leaves_the_trash_alone(world):
    mall, other = world.mall(), world.mall()
    kept_in_trash = world.video(mall, uploaded_at=T0 - 9 * DAY, trashed_at=T0)
    by_age = [world.video(mall, uploaded_at=T0 - d * DAY) for d in (2, 4, 3)]
    elsewhere = world.video(other, uploaded_at=T0 - 9 * DAY)
    in_mall = VideoFilters(mall_id=mall)

    first = world.write(lambda uow: uow.videos.delete_selected(UNRESTRICTED, None, in_mall, 2))
    rest = world.write(lambda uow: uow.videos.delete_selected(UNRESTRICTED, None, in_mall, 10))

    assert {r.id for r in first} == {by_age[1].id, by_age[2].id}
    assert [r.id for r in rest] == [by_age[0].id]
    assert listed(world) == (ids(elsewhere), 1)
    assert listed(world, trashed=True) == (ids(kept_in_trash), 1)


def test_trash_selected_moves_the_oldest_not_yet_in_the_trash_and_skips_those_already_there(
    world,
):
    mall_a, mall_b = world.mall(), world.mall()
    already = world.video(mall_a, uploaded_at=T0 - 9 * DAY, trashed_at=T0 - DAY)
    by_age = [world.video(mall_a, uploaded_at=T0 - d * DAY) for d in (2, 4, 3)]
    unseen = world.video(mall_b, uploaded_at=T0 - 9 * DAY)
    asked = [*ids(already, unseen, *by_age), uuid.uuid4()]
    operator_a = Scope.operator([mall_a])

    def trash(limit, at):
        return world.write(
            lambda uow: uow.videos.trash_selected(operator_a, asked, None, limit, at, "alice")
        )

    first, rest, nothing = trash(2, T0), trash(10, T0 + HOUR), trash(10, T0 + 2 * HOUR)

    assert by_id(first) == by_id([trashed(by_age[1], T0), trashed(by_age[2], T0)])
    assert rest == [trashed(by_age[0], T0 + HOUR)]
    assert nothing == []
    assert world.trash_mark(already.id) == (T0 - DAY, None)
    assert world.trash_mark(by_age[0].id) == (T0 + HOUR, "alice")
    assert world.trash_mark(unseen.id) is None


def test_trash_selected_by_filters_moves_what_a_list_with_them_shows(world):
    mall = world.mall()
    lobby = world.video(mall, operator_notes="lobby", uploaded_at=T0 - 2 * DAY)
    world.video(mall, operator_notes="lobby", uploaded_at=T0 - 3 * DAY, trashed_at=T0 - DAY)
    parking = world.video(mall, operator_notes="parking")

    moved = world.write(
        lambda uow: uow.videos.trash_selected(
            UNRESTRICTED, None, VideoFilters(q="LOBBY"), 10, T0, None
        )
    )

    assert moved == [trashed(lobby, T0)]
    assert listed(world) == (ids(parking), 1)


# The trash emptied


def test_summarise_trash_due_counts_videos_trashed_before_the_bound_never_held(world):
    mall, other = world.mall(), world.mall()
    bound = T0 - 30 * DAY
    world.video(mall, trashed_at=bound - DAY, file_size_bytes=1_000, proxy_size_bytes=100)
    world.video(mall, trashed_at=bound - 2 * DAY, proxy=False, file_size_bytes=2_000)
    world.video(mall, trashed_at=bound)
    world.video(mall, trashed_at=bound - DAY, legal_hold=True)
    world.video(mall, uploaded_at=bound - 400 * DAY)
    world.video(other, trashed_at=bound - DAY, file_size_bytes=5_000)

    def summary(scope, mall_id):
        return world.read(lambda uow: uow.videos.summarise_trash_due(scope, mall_id, bound))

    assert summary(UNRESTRICTED, mall) == ExpiredSummary(count=2, bytes=3_100)
    assert summary(UNRESTRICTED, None) == ExpiredSummary(count=3, bytes=8_200)
    assert summary(Scope.operator([other]), None) == ExpiredSummary(count=1, bytes=5_100)
    assert summary(Scope.operator([other]), mall) == ExpiredSummary(count=0, bytes=0)


def test_delete_trash_due_takes_the_longest_trashed_first_up_to_the_limit(world):
    mall, other = world.mall(), world.mall()
    bound = T0 - 30 * DAY
    # Uploaded in the opposite order to trashed: the trash goes by when they went in.
    by_trashing = [
        world.video(mall, uploaded_at=T0 - d * DAY, trashed_at=bound - (10 - d) * DAY)
        for d in (1, 3, 2)
    ]
    held = world.video(mall, trashed_at=bound - 99 * DAY, legal_hold=True)
    not_due = world.video(mall, trashed_at=bound)
    elsewhere = world.video(other, trashed_at=bound - 99 * DAY)

    def delete(mall_id, limit):
        return world.write(
            lambda uow: uow.videos.delete_trash_due(UNRESTRICTED, mall_id, bound, limit)
        )

    first, rest = delete(mall, 2), delete(mall, 10)

    assert by_id(first) == by_id([removed(by_trashing[0]), removed(by_trashing[2])])
    assert rest == [removed(by_trashing[1])]
    assert delete(mall, 10) == []
    left = world.read(
        lambda uow: uow.videos.get_many(UNRESTRICTED, ids(held, not_due, elsewhere), True)
    )
    assert set(left) == {held.id, not_due.id, elsewhere.id}
    assert [r.id for r in delete(None, 10)] == [elsewhere.id]


def test_delete_trash_due_takes_only_what_the_scope_sees(world):
    mall = world.mall()
    seen_pin, unseen_pin = world.pin(mall), world.pin(mall)
    bound = T0 - 30 * DAY
    seen = world.video(mall, seen_pin, trashed_at=bound - DAY)
    world.video(mall, unseen_pin, trashed_at=bound - DAY)
    tenant = Scope.tenant([seen_pin])

    assert world.read(lambda uow: uow.videos.summarise_trash_due(tenant, None, bound)).count == 1
    gone = world.write(lambda uow: uow.videos.delete_trash_due(tenant, None, bound, 10))
    assert gone == [removed(seen)]
    assert listed(world, trashed=True)[1] == 1


# Quotas


def test_mall_quotas_list_only_malls_with_a_quota(world):
    days_only = world.mall(retention_days=30)
    quota_only = world.mall(max_storage_bytes=5_000)
    both = world.mall(retention_days=7, max_storage_bytes=9_000)
    world.mall()

    assert world.read(lambda uow: uow.videos.mall_quotas(None)) == sorted(
        [(quota_only, 5_000), (both, 9_000)]
    )
    assert world.read(lambda uow: uow.videos.mall_quotas(both)) == [(both, 9_000)]
    assert world.read(lambda uow: uow.videos.mall_quotas(days_only)) == []
    assert world.read(lambda uow: uow.videos.mall_retention_days(quota_only)) == [
        (quota_only, None)
    ]


def test_mall_storage_counts_originals_and_proxies_of_every_video_in_the_trash_too(world):
    mall, other = world.mall(), world.mall()
    world.video(mall, file_size_bytes=1_000, proxy_size_bytes=100)
    world.video(mall, proxy=False, file_size_bytes=2_000)
    world.video(mall, file_size_bytes=3_000, proxy_size_bytes=300, trashed_at=T0)
    world.video(mall, file_size_bytes=4_000, legal_hold=True)
    world.video(other, file_size_bytes=99_000)

    assert world.read(lambda uow: uow.videos.mall_storage(mall)) == 10_500
    assert world.read(lambda uow: uow.videos.mall_storage(world.mall())) == 0


def test_delete_for_quota_deletes_the_oldest_just_enough_to_cover_the_excess(world):
    mall, other = world.mall(), world.mall()
    by_age = [world.video(mall, uploaded_at=T0 - d * DAY) for d in (1, 4, 2, 3)]
    world.video(other, uploaded_at=T0 - 99 * DAY)

    def delete(excess, limit=100):
        return world.write(
            lambda uow: uow.videos.delete_for_quota(UNRESTRICTED, mall, excess, limit)
        )

    # 1,100 bytes each: 1,500 takes two, 1,100 exactly one, nothing over takes none.
    assert by_id(delete(1_500)) == by_id([removed(by_age[1]), removed(by_age[3])])
    assert delete(1_100) == [removed(by_age[2])]
    assert delete(0) == []
    assert delete(-5) == []
    assert world.read(lambda uow: uow.videos.mall_storage(mall)) == 1_100


def test_delete_for_quota_takes_the_trash_too_never_a_held_video_and_stops_at_the_limit(world):
    mall = world.mall()
    held = world.video(mall, uploaded_at=T0 - 9 * DAY, legal_hold=True)
    in_trash = world.video(mall, uploaded_at=T0 - 3 * DAY, trashed_at=T0)
    newer = world.video(mall, uploaded_at=T0 - 2 * DAY)
    newest = world.video(mall, uploaded_at=T0 - DAY)

    def delete(scope, excess, limit):
        return world.write(lambda uow: uow.videos.delete_for_quota(scope, mall, excess, limit))

    assert delete(Scope.operator([uuid.uuid4()]), 10_000, 10) == []
    assert delete(UNRESTRICTED, 10_000, 1) == [removed(in_trash)]
    assert by_id(delete(UNRESTRICTED, 10_000, 10)) == by_id([removed(newer), removed(newest)])
    assert world.read(lambda uow: uow.videos.mall_storage(mall)) == 1_100
    assert world.read(lambda uow: uow.videos.get(UNRESTRICTED, held.id)) == held


def test_set_mall_retention_changes_only_what_is_given_and_clear_removes_both(world):
    mall = world.mall()

    def set_retention(**given):
        return world.write(lambda uow: uow.videos.set_mall_retention(mall, **given))

    def retention():
        return world.read(
            lambda uow: (uow.videos.mall_retention_days(mall), uow.videos.mall_quotas(mall))
        )

    assert set_retention(max_storage_bytes=5_000) is True
    assert retention() == ([(mall, None)], [(mall, 5_000)])
    assert set_retention(days=30) is True
    assert retention() == ([(mall, 30)], [(mall, 5_000)])
    assert set_retention(max_storage_bytes=8_000) is True
    assert retention() == ([(mall, 30)], [(mall, 8_000)])
    assert world.write(lambda uow: uow.videos.set_mall_retention(uuid.uuid4(), None, 1)) is False
    assert world.write(lambda uow: uow.videos.clear_mall_retention(mall)) is True
    assert retention() == ([(mall, None)], [])
    assert world.write(lambda uow: uow.videos.clear_mall_retention(mall)) is False
    with pytest.raises(ValueError):  # noqa: PT011 - the refusal is the point, not its text
        set_retention()
    assert retention() == ([(mall, None)], [])


# Statistics


def test_stats_leave_the_trash_out_of_every_figure_and_count_it_in_trash(world):
    mall = world.mall()
    world.video(mall, file_size_bytes=1_000, proxy_size_bytes=100, duration_seconds=60.0)
    world.video(mall, proxy=False, file_size_bytes=2_000, duration_seconds=30.0, trashed_at=T0)
    world.video(
        mall, processing_status="failed", file_size_bytes=3_000, proxy_size_bytes=300, trashed_at=T0
    )

    figures = world.read(lambda uow: uow.videos.stats(UNRESTRICTED, mall, T0))

    assert figures.total_videos == 1
    assert figures.by_status.model_dump() == {
        "pending": 0,
        "processing": 0,
        "completed": 1,
        "failed": 0,
    }
    assert (figures.total_storage_bytes, figures.total_duration_seconds) == (1_100, 60.0)
    assert figures.trash == TrashFigures(total_videos=2, total_storage_bytes=5_300)
    everywhere = world.read(lambda uow: uow.videos.stats(UNRESTRICTED, None, T0))
    assert (everywhere.total_videos, everywhere.trash) == (1, figures.trash)
    per_mall = world.read(lambda uow: uow.videos.stats_per_mall(T0))
    assert [(s.mall_id, s.total_videos, s.trash) for s in per_mall] == [(mall, 1, figures.trash)]


def test_stats_of_a_pin_intersect_with_the_mall_and_the_scope_and_per_pin_count_the_trash(world):
    mall_a, mall_b = world.mall(), world.mall()
    pin_a1, pin_a2 = world.pin(mall_a, "A1"), world.pin(mall_a, "A2")
    world.video(mall_a, pin_a1, file_size_bytes=1_000)
    world.video(mall_a, pin_a1, file_size_bytes=2_000, trashed_at=T0)
    world.video(mall_a, pin_a2, file_size_bytes=4_000)

    def stats(scope, mall_id, pin_id):
        return world.read(lambda uow: uow.videos.stats(scope, mall_id, T0, pin_id=pin_id))

    of_pin = stats(UNRESTRICTED, None, pin_a1)
    assert (of_pin.total_videos, of_pin.total_storage_bytes) == (1, 1_100)
    assert of_pin.trash == TrashFigures(total_videos=1, total_storage_bytes=2_100)
    assert stats(UNRESTRICTED, mall_a, pin_a1) == of_pin.model_copy(update={"mall_id": mall_a})
    assert stats(UNRESTRICTED, mall_b, pin_a1).total_videos == 0
    assert stats(Scope.tenant([pin_a2]), None, pin_a1).trash == TrashFigures()
    assert stats(Scope.operator([mall_a]), None, pin_a2).total_storage_bytes == 4_100

    per_pin = world.read(lambda uow: uow.videos.stats_per_pin(UNRESTRICTED, [pin_a1], T0))
    assert per_pin[pin_a1] == of_pin


def pin_figures(world, scope=UNRESTRICTED, mall_id=None, pin_id=None, limit=1000):
    return world.read(lambda uow: uow.videos.pin_figures(scope, mall_id, pin_id, limit))


def test_pin_figures_are_largest_storage_first_then_by_pin_id_with_the_pins_name(world):
    mall = world.mall()
    small, big = world.pin(mall, "Small"), world.pin(mall, "Big")
    names = {world.pin(mall, name): name for name in ("Tie one", "Tie two")}
    tied = sorted(names)
    world.video(mall, small, file_size_bytes=500, proxy=False, duration_seconds=10.0)
    world.video(mall, big, file_size_bytes=9_000, proxy_size_bytes=900, duration_seconds=20.0)
    world.video(mall, big, file_size_bytes=1_000, proxy_size_bytes=100, duration_seconds=None)
    for pin in reversed(tied):
        world.video(mall, pin, file_size_bytes=2_000, proxy_size_bytes=200)

    assert pin_figures(world) == [
        PinFigures(
            pin_id=big,
            pin_name="Big",
            total_videos=2,
            total_storage_bytes=11_000,
            total_duration_seconds=20.0,
        ),
        *(
            PinFigures(
                pin_id=pin,
                pin_name=name,
                total_videos=1,
                total_storage_bytes=2_200,
                total_duration_seconds=120.5,
            )
            for pin, name in ((pin, names[pin]) for pin in tied)
        ),
        PinFigures(
            pin_id=small,
            pin_name="Small",
            total_videos=1,
            total_storage_bytes=500,
            total_duration_seconds=10.0,
        ),
    ]
    assert [f.pin_id for f in pin_figures(world, limit=2)] == [big, tied[0]]


def test_pin_figures_take_the_scope_and_the_mall_and_pin_filters_and_leave_the_trash_out(world):
    mall_a, mall_b = world.mall(), world.mall()
    pin_a1, pin_a2, pin_b = world.pin(mall_a, "A1"), world.pin(mall_a, "A2"), world.pin(mall_b)
    world.video(mall_a, pin_a1, file_size_bytes=3_000)
    world.video(mall_a, pin_a1, file_size_bytes=50_000, trashed_at=T0)
    world.video(mall_a, pin_a2, file_size_bytes=2_000)
    world.video(mall_b, pin_b, file_size_bytes=1_000)
    only_trash = world.pin(mall_b, "only trash")
    world.video(mall_b, only_trash, trashed_at=T0)

    def pins(**kwargs):
        return [
            (f.pin_id, f.total_videos, f.total_storage_bytes) for f in pin_figures(world, **kwargs)
        ]

    assert pins() == [(pin_a1, 1, 3_100), (pin_a2, 1, 2_100), (pin_b, 1, 1_100)]
    assert pins(mall_id=mall_b) == [(pin_b, 1, 1_100)]
    assert pins(pin_id=pin_a2) == [(pin_a2, 1, 2_100)]
    assert pins(mall_id=mall_b, pin_id=pin_a2) == []
    assert pins(scope=Scope.operator([mall_a])) == [(pin_a1, 1, 3_100), (pin_a2, 1, 2_100)]
    assert pins(scope=Scope.tenant([pin_b, only_trash])) == [(pin_b, 1, 1_100)]
    assert pins(scope=Scope.tenant([])) == []


# What a removal leaves


def test_every_removal_reports_its_stored_bytes_as_originals_plus_proxies(world):
    mall = world.mall()
    old = T0 - 400 * DAY
    cases = {
        "delete": world.video(mall, file_size_bytes=1_000, proxy_size_bytes=200),
        "delete_selected": world.video(mall, proxy=False, file_size_bytes=3_000),
        "delete_trash_due": world.video(
            mall, file_size_bytes=5_000, proxy_size_bytes=600, trashed_at=old
        ),
        "delete_expired": world.video(mall, file_size_bytes=7_000, uploaded_at=old),
    }
    calls = {
        "delete": lambda uow, v: [uow.videos.delete(UNRESTRICTED, v.id)],
        "delete_selected": lambda uow, v: uow.videos.delete_selected(
            UNRESTRICTED, [v.id], None, 10
        ),
        "delete_trash_due": lambda uow, v: uow.videos.delete_trash_due(UNRESTRICTED, mall, T0, 10),
        "delete_expired": lambda uow, v: uow.videos.delete_expired(
            UNRESTRICTED, RetentionScope(mall_id=mall, cutoff=T0 - 300 * DAY), 10
        ),
    }
    for name, video in cases.items():
        gone: list[RemovedVideo] = world.write(lambda uow, c=calls[name], v=video: c(uow, v))
        assert [(r.id, r.stored_bytes) for r in gone] == [
            (video.id, video.file_size_bytes + (video.proxy_size_bytes or 0))
        ], name

    last = world.video(mall, file_size_bytes=9_000, proxy_size_bytes=900)
    for_quota = world.write(lambda uow: uow.videos.delete_for_quota(UNRESTRICTED, mall, 1, 10))
    assert [(r.id, r.stored_bytes) for r in for_quota] == [(last.id, 9_900)]


def test_listed_items_carry_the_object_keys_a_gallery_signs_and_a_search_its_true_total(world):
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
        lambda uow: uow.videos.list(UNRESTRICTED, ListVideos(q="DOCK", page_size=1))
    )
    second, _ = world.read(
        lambda uow: uow.videos.list(UNRESTRICTED, ListVideos(q="dock", page=2, page_size=1))
    )
    past_end, past_total = world.read(
        lambda uow: uow.videos.list(UNRESTRICTED, ListVideos(q="dock", page=3, page_size=1))
    )

    assert total == 2 and (past_end, past_total) == ([], 2)
    assert items[0].files == {
        "original": with_all.original_path,
        "proxy": with_all.proxy_path,
        "thumbnail": with_all.thumbnail_path,
    }
    assert second[0].files == {"original": bare.original_path, "proxy": None, "thumbnail": None}
    assert "files" not in items[0].model_dump(mode="json")


# Folding the kept figures


def test_folding_the_figures_changes_no_total_and_no_statistic(world):
    mall = world.mall()
    for hours in (1, 30, 24 * 40):
        world.video(mall, uploaded_at=T0 - hours * HOUR)
    world.video(mall, uploaded_at=T0 - 2 * HOUR, trashed_at=T0 - DAY)
    ranged = {"uploaded_after": (T0 - 45 * DAY).isoformat(), "uploaded_before": T0.isoformat()}

    def figures():
        stats = world.read(lambda uow: uow.videos.stats(UNRESTRICTED, mall, T0))
        return listed(world)[1], listed(world, **ranged)[1], listed(world, trashed=True)[1], stats

    before = figures()
    world.write(lambda uow: uow.videos.fold_figures())

    assert before[:3] == (3, 3, 1)
    assert (before[3].total_videos, before[3].trash.total_videos) == (3, 1)
    assert figures() == before
    # A second fold finds nothing left to fold.
    assert world.write(lambda uow: uow.videos.fold_figures()) == 0
