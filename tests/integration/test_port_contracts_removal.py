"""Port contracts of Removal: delete, trash and restore, bulk selections, the expired,
the trash emptied and quotas kept.

As every ``test_port_contracts*.py``: each test takes ``world`` and runs on the in-memory
fake (``[fake]``) and on the real adapter (``[real]``), so the handlers' unit tests,
which trust the fakes, test what PostgreSQL does.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from handlers.access import UNRESTRICTED, Scope
from handlers.ports import ExpiredSummary, RemovedVideo, RetentionScope
from schemas.requests import VideoFilters
from tests.contracts.world import World, world_of
from tests.integration.test_port_contracts import (
    by_id,
    ids,
    listed,
    removed,
    trashed,
)
from tests.unit.fakes import T0

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    return world_of(request)


# One video


def test_delete_returns_the_rows_keys_once_and_a_second_delete_returns_none(world):
    mall = world.mall()
    full = world.video(mall)
    original_only = world.video(mall, proxy=False, thumbnail=False)

    first = world.write(lambda uow: uow.removal.delete(UNRESTRICTED, full.id))
    assert first == removed(full)
    assert first.object_keys == [full.original_path, full.proxy_path, full.thumbnail_path]
    bare = world.write(lambda uow: uow.removal.delete(UNRESTRICTED, original_only.id))
    assert bare.object_keys == [original_only.original_path]

    assert world.write(lambda uow: uow.removal.delete(UNRESTRICTED, full.id)) is None
    assert world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, full.id)) is None


def test_trash_moves_a_video_in_once_and_a_second_call_answers_the_first_trashed_at(world):
    mall = world.mall()
    video = world.video(mall)

    first = world.write(lambda uow: uow.removal.trash(UNRESTRICTED, video.id, T0, "alice"))
    again = world.write(lambda uow: uow.removal.trash(UNRESTRICTED, video.id, T0 + HOUR, "bob"))

    assert first == trashed(video, T0, newly=True)
    assert again == trashed(video, T0, newly=False)
    assert first.trashed_at.utcoffset() == timedelta(0)
    assert world.trash_mark(video.id) == (T0, "alice")
    assert world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, video.id)) is None
    assert listed(world, trashed=True) == (ids(video), 1)


def test_trash_is_none_for_an_unknown_video_and_one_outside_the_scope(world):
    mall, other = world.mall(), world.mall()
    video = world.video(mall)

    def trash(scope, video_id):
        return world.write(lambda uow: uow.removal.trash(scope, video_id, T0, None))

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
        return world.write(lambda uow: uow.removal.restore(scope, video_id))

    assert restore(Scope.operator([other]), in_trash.id) is None
    assert world.trash_mark(in_trash.id) == (T0 - DAY, "alice")
    # The answer says when it had gone in (what the caller is told it undid).
    assert restore(Scope.operator([mall]), in_trash.id) == trashed(in_trash, T0 - DAY)
    assert restore(UNRESTRICTED, in_trash.id) is None
    assert restore(UNRESTRICTED, live.id) is None
    assert restore(UNRESTRICTED, uuid.uuid4()) is None
    assert world.trash_mark(in_trash.id) is None
    assert world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, in_trash.id)) == in_trash


def test_delete_of_a_trashed_video_deletes_it(world):
    mall = world.mall()
    in_trash = world.video(mall, trashed_at=T0 - DAY)

    gone = world.write(lambda uow: uow.removal.delete(UNRESTRICTED, in_trash.id))

    assert gone == removed(in_trash)
    assert gone.stored_bytes == 1_100
    assert world.read(lambda uow: uow.catalogue.get_many(UNRESTRICTED, [in_trash.id], True)) == {}
    assert world.write(lambda uow: uow.removal.delete(UNRESTRICTED, in_trash.id)) is None


# Bulk selection


def test_find_selected_names_the_ids_the_scope_sees_in_the_trash_or_not(world):
    mall_a, mall_b = world.mall(), world.mall()
    live, in_trash = world.video(mall_a), world.video(mall_a, trashed_at=T0)
    elsewhere = world.video(mall_b)
    asked = [live.id, in_trash.id, elsewhere.id, uuid.uuid4(), live.id]

    def find(scope, video_ids):
        return world.read(lambda uow: uow.removal.find_selected(scope, video_ids))

    assert find(UNRESTRICTED, asked) == {live.id, in_trash.id, elsewhere.id}
    assert find(Scope.operator([mall_a]), asked) == {live.id, in_trash.id}
    assert find(Scope.tenant([]), asked) == set()
    assert find(UNRESTRICTED, []) == set()


def test_a_selection_of_neither_ids_nor_a_filter_is_refused_and_deletes_nothing(world):
    mall = world.mall()
    video = world.video(mall)
    nothing = VideoFilters()
    calls = {
        "summarise": lambda uow: uow.removal.summarise_selected(UNRESTRICTED, nothing),
        "delete, no filters": lambda uow: uow.removal.delete_selected(UNRESTRICTED, None, None, 10),
        "delete, empty filters": lambda uow: uow.removal.delete_selected(
            UNRESTRICTED, None, nothing, 10
        ),
        "trash, no filters": lambda uow: uow.removal.trash_selected(
            UNRESTRICTED, None, None, 10, T0, None
        ),
        "trash, empty filters": lambda uow: uow.removal.trash_selected(
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
        return world.read(
            lambda uow: uow.removal.summarise_selected(scope, VideoFilters(**filters))
        )

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

    first = world.write(lambda uow: uow.removal.delete_selected(operator_a, asked, None, 2))
    rest = world.write(lambda uow: uow.removal.delete_selected(operator_a, asked, None, 2))
    nothing = world.write(lambda uow: uow.removal.delete_selected(operator_a, asked, None, 2))

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

    first = world.write(lambda uow: uow.removal.delete_selected(UNRESTRICTED, None, in_mall, 2))
    rest = world.write(lambda uow: uow.removal.delete_selected(UNRESTRICTED, None, in_mall, 10))

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
            lambda uow: uow.removal.trash_selected(operator_a, asked, None, limit, at, "alice")
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
        lambda uow: uow.removal.trash_selected(
            UNRESTRICTED, None, VideoFilters(q="LOBBY"), 10, T0, None
        )
    )

    assert moved == [trashed(lobby, T0)]
    assert listed(world) == (ids(parking), 1)


# What outlived its period


def test_delete_expired_takes_the_oldest_of_the_mall_up_to_the_limit_skipping_legal_holds(world):
    mall, other = world.mall(), world.mall()
    cutoff = T0 - timedelta(days=30)
    by_age = [world.video(mall, uploaded_at=cutoff - timedelta(days=d)) for d in (1, 3, 2, 5)]
    held = world.video(mall, uploaded_at=cutoff - timedelta(days=10), legal_hold=True)
    at_cutoff = world.video(mall, uploaded_at=cutoff)
    other_mall = world.video(other, uploaded_at=cutoff - timedelta(days=9))
    scope = RetentionScope(mall_id=mall, cutoff=cutoff)

    oldest_two = world.write(lambda uow: uow.removal.delete_expired(UNRESTRICTED, scope, 2))
    rest = world.write(lambda uow: uow.removal.delete_expired(UNRESTRICTED, scope, 10))
    nothing_left = world.write(lambda uow: uow.removal.delete_expired(UNRESTRICTED, scope, 10))

    # The batch is the oldest rows; the order within a batch is not part of the port.
    assert {r.id for r in oldest_two} == {by_age[3].id, by_age[1].id}
    assert {r.id for r in rest} == {by_age[2].id, by_age[0].id}
    assert sorted(rest, key=lambda r: str(r.id)) == sorted(
        (removed(by_age[2]), removed(by_age[0])), key=lambda r: str(r.id)
    )
    assert nothing_left == []
    remaining, _ = listed(world, page_size=100)
    assert set(remaining) == {held.id, at_cutoff.id, other_mall.id}


def test_summarise_expired_counts_what_delete_expired_takes_and_its_original_and_proxy_bytes(
    world,
):
    mall, other = world.mall(), world.mall()
    cutoff = T0 - timedelta(days=30)
    old = cutoff - timedelta(days=1)
    world.video(mall, uploaded_at=old, file_size_bytes=1_000, proxy_size_bytes=100)
    world.video(mall, uploaded_at=old, file_size_bytes=2_000, proxy=False)
    world.video(mall, uploaded_at=old, file_size_bytes=50_000, legal_hold=True)
    world.video(mall, uploaded_at=cutoff, file_size_bytes=70_000)
    world.video(other, uploaded_at=old, file_size_bytes=90_000)
    scope = RetentionScope(mall_id=mall, cutoff=cutoff)

    summary = world.read(lambda uow: uow.removal.summarise_expired(UNRESTRICTED, scope))
    assert (summary.count, summary.bytes) == (2, 3_100)
    assert (
        len(world.write(lambda uow: uow.removal.delete_expired(UNRESTRICTED, scope, 100)))
        == summary.count
    )
    empty = world.read(lambda uow: uow.removal.summarise_expired(UNRESTRICTED, scope))
    assert (empty.count, empty.bytes) == (0, 0)


def test_a_held_video_is_never_expired_until_released(world):
    mall = world.mall()
    old = world.video(mall, uploaded_at=T0 - timedelta(days=400))
    scope = RetentionScope(mall_id=mall, cutoff=T0)

    assert world.write(lambda uow: uow.retention.set_legal_hold(old.id, True)) is True
    assert world.read(lambda uow: uow.removal.summarise_expired(UNRESTRICTED, scope)).count == 0
    assert world.write(lambda uow: uow.retention.set_legal_hold(old.id, False)) is True
    assert world.read(lambda uow: uow.removal.summarise_expired(UNRESTRICTED, scope)).count == 1
    assert world.write(lambda uow: uow.retention.set_legal_hold(uuid.uuid4(), True)) is False


def test_sweeps_and_their_summaries_take_only_what_the_scope_sees(world):
    mall = world.mall()
    kept_pin, swept_pin = world.pin(mall), world.pin(mall)
    old = T0 - timedelta(days=400)
    world.video(mall, kept_pin, uploaded_at=old, file_size_bytes=5_000)
    swept = world.video(mall, swept_pin, uploaded_at=old, file_size_bytes=1_000)
    retention = RetentionScope(mall_id=mall, cutoff=T0)
    tenant = Scope.tenant([swept_pin])

    summary = world.read(lambda uow: uow.removal.summarise_expired(tenant, retention))
    assert (summary.count, summary.bytes) == (1, 1_100)
    assert world.read(
        lambda uow: uow.removal.summarise_expired(Scope.operator([uuid.uuid4()]), retention)
    ) == type(summary)(count=0, bytes=0)
    batch = world.write(lambda uow: uow.removal.delete_expired(tenant, retention, 10))
    assert [r.id for r in batch] == [swept.id]
    assert world.read(lambda uow: uow.removal.summarise_expired(UNRESTRICTED, retention)).count == 1


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
        return world.read(lambda uow: uow.removal.summarise_trash_due(scope, mall_id, bound))

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
            lambda uow: uow.removal.delete_trash_due(UNRESTRICTED, mall_id, bound, limit)
        )

    first, rest = delete(mall, 2), delete(mall, 10)

    assert by_id(first) == by_id([removed(by_trashing[0]), removed(by_trashing[2])])
    assert rest == [removed(by_trashing[1])]
    assert delete(mall, 10) == []
    left = world.read(
        lambda uow: uow.catalogue.get_many(UNRESTRICTED, ids(held, not_due, elsewhere), True)
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

    assert world.read(lambda uow: uow.removal.summarise_trash_due(tenant, None, bound)).count == 1
    gone = world.write(lambda uow: uow.removal.delete_trash_due(tenant, None, bound, 10))
    assert gone == [removed(seen)]
    assert listed(world, trashed=True)[1] == 1


# Quotas kept


def test_delete_for_quota_deletes_the_oldest_just_enough_to_cover_the_excess(world):
    mall, other = world.mall(), world.mall()
    by_age = [world.video(mall, uploaded_at=T0 - d * DAY) for d in (1, 4, 2, 3)]
    world.video(other, uploaded_at=T0 - 99 * DAY)

    def delete(excess, limit=100):
        return world.write(
            lambda uow: uow.removal.delete_for_quota(UNRESTRICTED, mall, excess, limit)
        )

    # 1,100 bytes each: 1,500 takes two, 1,100 exactly one, nothing over takes none.
    assert by_id(delete(1_500)) == by_id([removed(by_age[1]), removed(by_age[3])])
    assert delete(1_100) == [removed(by_age[2])]
    assert delete(0) == []
    assert delete(-5) == []
    assert world.read(lambda uow: uow.retention.mall_storage(mall)) == 1_100


def test_delete_for_quota_takes_the_trash_too_never_a_held_video_and_stops_at_the_limit(world):
    mall = world.mall()
    held = world.video(mall, uploaded_at=T0 - 9 * DAY, legal_hold=True)
    in_trash = world.video(mall, uploaded_at=T0 - 3 * DAY, trashed_at=T0)
    newer = world.video(mall, uploaded_at=T0 - 2 * DAY)
    newest = world.video(mall, uploaded_at=T0 - DAY)

    def delete(scope, excess, limit):
        return world.write(lambda uow: uow.removal.delete_for_quota(scope, mall, excess, limit))

    assert delete(Scope.operator([uuid.uuid4()]), 10_000, 10) == []
    assert delete(UNRESTRICTED, 10_000, 1) == [removed(in_trash)]
    assert by_id(delete(UNRESTRICTED, 10_000, 10)) == by_id([removed(newer), removed(newest)])
    assert world.read(lambda uow: uow.retention.mall_storage(mall)) == 1_100
    assert world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, held.id)) == held


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
        "delete": lambda uow, v: [uow.removal.delete(UNRESTRICTED, v.id)],
        "delete_selected": lambda uow, v: uow.removal.delete_selected(
            UNRESTRICTED, [v.id], None, 10
        ),
        "delete_trash_due": lambda uow, v: uow.removal.delete_trash_due(UNRESTRICTED, mall, T0, 10),
        "delete_expired": lambda uow, v: uow.removal.delete_expired(
            UNRESTRICTED, RetentionScope(mall_id=mall, cutoff=T0 - 300 * DAY), 10
        ),
    }
    for name, video in cases.items():
        gone: list[RemovedVideo] = world.write(lambda uow, c=calls[name], v=video: c(uow, v))
        assert [(r.id, r.stored_bytes) for r in gone] == [
            (video.id, video.file_size_bytes + (video.proxy_size_bytes or 0))
        ], name

    last = world.video(mall, file_size_bytes=9_000, proxy_size_bytes=900)
    for_quota = world.write(lambda uow: uow.removal.delete_for_quota(UNRESTRICTED, mall, 1, 10))
    assert [(r.id, r.stored_bytes) for r in for_quota] == [(last.id, 9_900)]
