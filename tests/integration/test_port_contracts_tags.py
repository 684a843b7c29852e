"""Port contracts of Tags (tag, counts) and of the catalogue's tag filter and names.

As every ``test_port_contracts*.py``: each test takes ``world`` and runs on the in-memory
fake (``[fake]``) and on the real adapter (``[real]``).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from handlers.access import UNRESTRICTED, Scope
from schemas.requests import ListVideos, VideoFilters
from tests.contracts.world import World, searched, world_of
from tests.unit.fakes import T0


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    return world_of(request)


def tag(world: World, scope: Scope, ids, add=(), remove=(), by=None):
    return world.write(lambda uow: uow.tags.tag(scope, ids, list(add), list(remove), T0, by))


def listed(world: World, scope: Scope = UNRESTRICTED, **filters):
    items, total = world.read(lambda uow: uow.catalogue.list(scope, ListVideos(**filters)))
    return [item.id for item in items], total


def test_a_pair_is_added_once_and_removed_once(world):
    mall = world.mall()
    video = world.video(mall)

    first = tag(world, UNRESTRICTED, [video.id], add=["Dock", "night"])
    again = tag(world, UNRESTRICTED, [video.id], add=["dock", "NIGHT"])
    gone = tag(world, UNRESTRICTED, [video.id], remove=["DOCK"])
    gone_again = tag(world, UNRESTRICTED, [video.id], remove=["dock"])

    assert sorted(first.added) == [(video.id, "Dock"), (video.id, "night")]
    assert (again.added, again.removed) == ([], [])
    assert gone.removed == [(video.id, "Dock")] and gone_again.removed == []
    assert first.found == {video.id: (mall, video.pin_id)}


def test_a_name_keeps_its_first_spelling_within_a_mall_and_is_a_tag_of_each_mall(world):
    mall_a, mall_b = world.mall(), world.mall()
    one, two = world.video(mall_a), world.video(mall_a)
    other = world.video(mall_b)

    tag(world, UNRESTRICTED, [one.id], add=["Loading Dock"])
    later = tag(world, UNRESTRICTED, [two.id, other.id], add=["LOADING DOCK"])

    assert sorted(later.added) == sorted([(two.id, "Loading Dock"), (other.id, "LOADING DOCK")])
    got = world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, two.id))
    assert got.tags == ["Loading Dock"]


def test_get_and_list_carry_the_tags_sorted_case_insensitively(world):
    mall = world.mall()
    video = world.video(mall)
    tag(world, UNRESTRICTED, [video.id], add=["beta", "Alpha", "gamma", "Beta 2"])

    got = world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, video.id))
    items, _ = world.read(lambda uow: uow.catalogue.list(UNRESTRICTED, ListVideos()))
    many = world.read(lambda uow: uow.catalogue.get_many(UNRESTRICTED, [video.id]))

    expected = ["Alpha", "beta", "Beta 2", "gamma"]
    assert got.tags == expected and items[0].tags == expected and many[video.id].tags == expected


def test_only_videos_the_scope_sees_and_not_in_the_trash_are_tagged(world):
    mall_a, mall_b = world.mall(), world.mall()
    mine = world.video(mall_a)
    theirs = world.video(mall_b)
    binned = world.video(mall_a, trashed_at=T0)
    operator = Scope.operator([mall_a], subject="op")

    changes = tag(world, operator, [mine.id, theirs.id, binned.id], add=["x"], by="op")

    assert set(changes.found) == {mine.id}
    assert changes.added == [(mine.id, "x")]
    assert world.read(lambda uow: uow.catalogue.get(UNRESTRICTED, theirs.id)).tags == []


def test_list_by_tags_keeps_videos_carrying_all_of_them_with_exact_totals(world):
    mall = world.mall()
    videos = [world.video(mall, uploaded_at=T0 - timedelta(hours=i)) for i in range(5)]
    tag(world, UNRESTRICTED, [v.id for v in videos[:4]], add=["Dock"])
    tag(world, UNRESTRICTED, [v.id for v in videos[1:3]], add=["night"])
    tag(world, UNRESTRICTED, [videos[4].id], add=["night"])

    assert listed(world, tags=["dock"]) == ([v.id for v in videos[:4]], 4)
    assert listed(world, tags=["DOCK", "Night"]) == ([videos[1].id, videos[2].id], 2)
    assert listed(world, tags=["dock"], page=2, page_size=3) == ([videos[3].id], 4)
    assert listed(world, tags=["dock"], page=3, page_size=3) == ([], 4)
    assert listed(world, tags=["nothing"]) == ([], 0)
    # With the figures' filters too: the total never comes from figures blind to tags.
    assert listed(world, tags=["dock"], mall_id=mall) == ([v.id for v in videos[:4]], 4)
    after = T0 - timedelta(days=40)
    assert listed(world, tags=["night"], uploaded_after=after) == (
        [videos[1].id, videos[2].id, videos[4].id],
        3,
    )


def test_the_tag_filter_is_the_same_name_in_every_mall_the_scope_sees(world):
    mall_a, mall_b = world.mall(), world.mall()
    a, b = world.video(mall_a, uploaded_at=T0), world.video(mall_b, uploaded_at=T0 - timedelta(1))
    tag(world, UNRESTRICTED, [a.id, b.id], add=["Dock"])

    assert listed(world, tags=["dock"]) == ([a.id, b.id], 2)
    assert listed(world, Scope.operator([mall_b]), tags=["dock"]) == ([b.id], 1)
    assert listed(world, Scope.tenant([a.pin_id]), tags=["dock"]) == ([a.id], 1)


def test_bulk_selection_by_tags_takes_only_the_tagged(world):
    mall = world.mall()
    tagged, plain = world.video(mall), world.video(mall)
    tag(world, UNRESTRICTED, [tagged.id], add=["purge me"])

    summary = world.read(
        lambda uow: uow.removal.summarise_selected(UNRESTRICTED, VideoFilters(tags=["Purge Me"]))
    )
    trashed = world.write(
        lambda uow: uow.removal.trash_selected(
            UNRESTRICTED, None, VideoFilters(tags=["purge me"]), 10, T0, "op"
        )
    )

    assert summary.count == 1
    assert [v.id for v in trashed] == [tagged.id]
    assert world.trash_mark(plain.id) is None


def test_counts_cover_visible_videos_not_in_the_trash_most_used_first_then_by_name(world):
    mall_a, mall_b = world.mall(), world.mall()
    pin_a1, pin_a2 = world.pin(mall_a, "A1"), world.pin(mall_a, "A2")
    a1 = [world.video(mall_a, pin_a1) for _ in range(3)]
    a2 = world.video(mall_a, pin_a2)
    b = world.video(mall_b)
    tag(world, UNRESTRICTED, [v.id for v in a1], add=["zebra"])
    tag(world, UNRESTRICTED, [a1[0].id, a2.id], add=["Apple", "banana"])
    tag(world, UNRESTRICTED, [b.id], add=["zebra"])

    def counts(scope, mall_id=None, prefix=None, limit=100):
        found = world.read(lambda uow: uow.tags.counts(scope, mall_id, prefix, limit))
        return [(t.name, t.mall_id, t.videos) for t in found]

    assert counts(UNRESTRICTED, mall_a) == [
        ("zebra", mall_a, 3),
        ("Apple", mall_a, 2),
        ("banana", mall_a, 2),
    ]
    assert counts(UNRESTRICTED)[:2] == [("zebra", mall_a, 3), ("Apple", mall_a, 2)]
    assert ("zebra", mall_b, 1) in counts(UNRESTRICTED)
    assert counts(UNRESTRICTED, mall_a, prefix="B") == [("banana", mall_a, 2)]
    assert counts(UNRESTRICTED, mall_a, limit=1) == [("zebra", mall_a, 3)]
    # A tenant of pin A2 sees only what its pin's videos carry.
    assert counts(Scope.tenant([pin_a2])) == [("Apple", mall_a, 1), ("banana", mall_a, 1)]
    assert counts(Scope.operator([mall_b])) == [("zebra", mall_b, 1)]


def test_a_trashed_video_leaves_the_counts_and_comes_back_with_its_tags(world):
    mall = world.mall()
    video = world.video(mall)
    tag(world, UNRESTRICTED, [video.id], add=["keep"])

    world.write(lambda uow: uow.removal.trash(UNRESTRICTED, video.id, T0, None))
    during = world.read(lambda uow: uow.tags.counts(UNRESTRICTED, mall, None, 10))
    world.write(lambda uow: uow.removal.restore(UNRESTRICTED, video.id))
    after = world.read(lambda uow: uow.tags.counts(UNRESTRICTED, mall, None, 10))

    assert during == [] and [(t.name, t.videos) for t in after] == [("keep", 1)]


def test_a_prefix_is_literal(world):
    mall = world.mall()
    video = world.video(mall)
    tag(world, UNRESTRICTED, [video.id], add=["50%_off", "500 cams"])

    found = world.read(lambda uow: uow.tags.counts(UNRESTRICTED, mall, "50%", 10))

    assert [t.name for t in found] == ["50%_off"]


def test_a_deleted_video_takes_its_pairs_with_it(world):
    mall = world.mall()
    video = world.video(mall)
    tag(world, UNRESTRICTED, [video.id], add=["gone"])

    world.write(lambda uow: uow.removal.delete(UNRESTRICTED, video.id))

    assert world.read(lambda uow: uow.tags.counts(UNRESTRICTED, mall, None, 10)) == []


def test_a_search_with_tags_finds_the_same_rows_capped_or_not(world, search_read):
    """With ``q`` the tags are a key of the search index (``video_search.tags``); without
    a cap the list tests each video's pairs: both answer alike, in any case."""
    mall_a, mall_b = world.mall(), world.mall()
    at = [T0 - timedelta(minutes=m) for m in range(5)]
    both = world.video(mall_a, original_filename="dock-1.mp4", uploaded_at=at[0])
    one = world.video(mall_a, operator_notes="Dock at night", uploaded_at=at[1])
    untagged = world.video(mall_a, original_filename="dock-2.mp4", uploaded_at=at[2])
    other_mall = world.video(mall_b, original_filename="DOCK.mp4", uploaded_at=at[3])
    elsewhere = world.video(mall_a, original_filename="lobby.mp4", uploaded_at=at[4])
    tag(world, UNRESTRICTED, [both.id, one.id, elsewhere.id], add=["Incident"])
    tag(world, UNRESTRICTED, [both.id, other_mall.id], add=["reviewed"])
    tag(world, UNRESTRICTED, [untagged.id], add=["other"])

    assert searched(world, q="dock", tags=["INCIDENT"]) == ([both.id, one.id], 2)
    assert searched(world, q="dock", tags=["incident", "Reviewed"]) == ([both.id], 1)
    assert searched(world, q="dock", tags=["reviewed"]) == ([both.id, other_mall.id], 2)
    assert searched(world, Scope.operator([mall_b]), q="dock", tags=["reviewed"]) == (
        [other_mall.id],
        1,
    )
    assert searched(world, q="dock", tags=["nothing"]) == ([], 0)
    tag(world, UNRESTRICTED, [one.id], remove=["incident"])
    assert searched(world, q="dock", tags=["incident"]) == ([both.id], 1)
