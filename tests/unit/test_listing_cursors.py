"""Listing at any size on fakes: capped search totals, cursors, and what is refused."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from pydantic import SecretStr

from handlers import list_videos
from handlers.access import UNRESTRICTED, Scope
from handlers.cursors import Position, open_cursor, seal
from handlers.errors import InvalidRequest
from handlers.policy import Policy
from schemas import ListVideos
from tests.unit.fakes import T0, Fakes, make_video
from worker.bootstrap import cursor_key
from worker.settings import load_settings

MALL = uuid.uuid4()


def catalogue(count: int, *, same_instant: int = 0, cap: int = 10_000, **fields) -> Fakes:
    """``count`` videos of one mall, newest last; the first ``same_instant`` share one
    uploaded_at (only their ids order them)."""
    fakes = Fakes(policy=Policy(search_total_cap=cap))
    videos = [
        make_video(
            mall_id=MALL,
            uploaded_at=T0 - timedelta(minutes=max(i, same_instant)),
            original_filename=f"lobby_{i:03d}.mp4",
            **fields,
        )
        for i in range(count)
    ]
    fakes.add_videos(*videos)
    return fakes


def by_cursor(deps, query: ListVideos, page_size: int) -> list[list[uuid.UUID]]:
    pages, cursor = [], None
    while True:
        update = {"page_size": page_size, "cursor": cursor}
        page = list_videos(ListVideos(**{**query.model_dump(exclude_unset=True), **update}), deps)
        pages.append([item.id for item in page.videos])
        cursor = page.next_cursor
        if cursor is None:
            return pages


def by_page(deps, query: ListVideos, page_size: int) -> list[list[uuid.UUID]]:
    pages, number = [], 1
    while True:
        page = list_videos(query.model_copy(update={"page": number, "page_size": page_size}), deps)
        if not page.videos:
            return pages
        pages.append([item.id for item in page.videos])
        number += 1


def refusal(deps, **kwargs) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        list_videos(ListVideos(**kwargs), deps)
    return raised.value


@pytest.mark.parametrize("page_size", [1, 3, 7, 20])
def test_cursor_pages_are_the_offset_pages_ties_broken_by_id(page_size):
    deps = catalogue(20, same_instant=8).deps

    for query in (ListVideos(), ListVideos(q="lobby"), ListVideos(mall_id=MALL)):
        assert by_cursor(deps, query, page_size) == by_page(deps, query, page_size)


def test_the_last_page_has_no_next_cursor_and_a_page_of_any_size_may_follow():
    deps = catalogue(5).deps

    first = list_videos(ListVideos(page_size=2), deps)
    second = list_videos(ListVideos(page_size=3, cursor=first.next_cursor), deps)
    assert second.next_cursor is None
    assert len(second.videos) == 3 and second.total == 5
    # The page these videos would be at with this page_size.
    assert second.page == 1 and first.page == 1
    third = list_videos(ListVideos(page_size=1, cursor=first.next_cursor), deps)
    assert third.page == 3
    assert list_videos(ListVideos(page_size=5), deps).next_cursor is None


def test_a_search_counts_exactly_up_to_the_cap_then_says_at_least_the_cap():
    for cap, total, relation in ((6, 6, "gte"), (7, 7, "eq"), (100, 7, "eq"), (3, 3, "gte")):
        deps = catalogue(7, cap=cap).deps
        page = list_videos(ListVideos(q="lobby", page_size=2), deps)
        assert (page.total, page.total_relation, page.total_pages) == (
            total,
            relation,
            -(-total // 2),
        ), cap
    # Without q a total is exact, whatever the cap.
    page = list_videos(ListVideos(page_size=2), catalogue(7, cap=3).deps)
    assert (page.total, page.total_relation) == (7, "eq")


def test_a_search_past_its_cap_is_walked_to_its_end_by_cursor():
    deps = catalogue(9, cap=4).deps

    pages = by_cursor(deps, ListVideos(q="lobby"), 2)

    assert sum(len(p) for p in pages) == 9


def test_with_q_a_page_past_the_cap_is_refused_and_told_to_use_the_cursor():
    deps = catalogue(3, cap=100).deps

    error = refusal(deps, q="lobby", page=11, page_size=10)

    assert error.fields[0]["loc"] == ["page"]
    assert "use cursor" in error.fields[0]["msg"]
    assert list_videos(ListVideos(q="lobby", page=10, page_size=10), deps).videos == []
    # Without q, offset pages go on.
    assert list_videos(ListVideos(page=11, page_size=10), deps).total == 3


def test_a_cursor_with_a_page_is_refused():
    deps = catalogue(3).deps
    cursor = list_videos(ListVideos(page_size=1), deps).next_cursor

    for page in (1, 2):
        error = refusal(deps, page=page, page_size=1, cursor=cursor)
        assert error.fields[0]["loc"] == ["cursor"]


@pytest.mark.parametrize(
    "other",
    [
        {"mall_id": str(MALL)},
        {"q": "lobby"},
        {"processing_status": "completed"},
        {"has_proxy": True},
        {"uploaded_after": "2025-01-01T00:00:00Z"},
        {"trashed": True},
    ],
)
def test_a_cursor_for_other_filters_is_refused(other):
    deps = catalogue(3).deps
    cursor = list_videos(ListVideos(page_size=1), deps).next_cursor

    error = refusal(deps, page_size=1, cursor=cursor, **other)

    assert error.fields == [{"loc": ["cursor"], "msg": error.fields[0]["msg"]}]
    assert "other filters" in error.fields[0]["msg"]


def test_a_cursor_from_another_scope_or_another_worker_key_is_refused():
    deps = catalogue(3).deps
    cursor = list_videos(ListVideos(page_size=1), deps).next_cursor

    for scope in (Scope.operator([MALL]), Scope.tenant([uuid.uuid4()]), Scope.operator([])):
        error = refusal(replace(deps, scope=scope), page_size=1, cursor=cursor)
        assert error.fields[0]["loc"] == ["cursor"]
    error = refusal(replace(deps, cursor_key=b"another worker"), page_size=1, cursor=cursor)
    assert "not a cursor this worker issued" in error.fields[0]["msg"]


def test_an_altered_or_made_up_cursor_is_refused():
    deps = catalogue(3).deps
    cursor = list_videos(ListVideos(page_size=1), deps).next_cursor
    flipped = cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]

    for bad in (flipped, cursor[:-2], cursor + "AA", "x", "!!!!", "A" * 96):
        error = refusal(deps, page_size=1, cursor=bad)
        assert error.fields[0]["loc"] == ["cursor"], bad


def test_a_cursor_holds_its_position_for_its_listing_only():
    key, query = b"k" * 32, ListVideos(q="lobby")
    position = Position(T0, uuid.uuid4(), 40)

    cursor = seal(key, UNRESTRICTED, query, position)

    assert open_cursor(key, UNRESTRICTED, query.model_copy(update={"page_size": 5}), cursor) == (
        position
    )
    assert len(cursor) < 100


def test_the_cursor_key_is_stable_derived_and_never_the_secret_itself():
    settings = load_settings(aws_secret_access_key="s3-secret")
    again = load_settings(aws_secret_access_key="s3-secret")
    chosen = load_settings(aws_secret_access_key="s3-secret", cursor_secret=SecretStr("mine"))

    assert cursor_key(settings) == cursor_key(again)
    assert cursor_key(chosen) != cursor_key(settings)
    assert b"s3-secret" not in cursor_key(settings) and len(cursor_key(settings)) == 32
    assert cursor_key(load_settings(aws_secret_access_key="other")) != cursor_key(settings)
