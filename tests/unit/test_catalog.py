"""list_videos and get_video on fakes: paging arithmetic, not-found text."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from handlers import NotFound, get_video, list_videos
from schemas import GetVideo, ListVideos
from tests.unit.fakes import T0, Fakes, make_video


def fakes_with(count: int, **video_fields) -> Fakes:
    fakes = Fakes()
    fakes.add_videos(
        *(make_video(uploaded_at=T0 - timedelta(minutes=i), **video_fields) for i in range(count))
    )
    return fakes


@pytest.mark.parametrize(
    ("total", "page_size", "total_pages"),
    [(0, 20, 0), (1, 20, 1), (20, 20, 1), (21, 20, 2), (150, 20, 8), (7, 1, 7), (100, 100, 1)],
)
def test_total_pages_is_the_ceiling_of_total_over_page_size(total, page_size, total_pages):
    fakes = fakes_with(total)

    result = list_videos(ListVideos(page_size=page_size), fakes.deps)

    assert (result.total, result.total_pages) == (total, total_pages)
    assert result.page_size == page_size
    assert len(result.videos) == min(total, page_size)


def test_last_page_holds_the_remainder_and_a_page_past_the_end_is_empty_with_the_true_total():
    fakes = fakes_with(21)

    last = list_videos(ListVideos(page=2, page_size=20), fakes.deps)
    beyond = list_videos(ListVideos(page=3, page_size=20), fakes.deps)

    assert len(last.videos) == 1
    assert (beyond.videos, beyond.total, beyond.page, beyond.total_pages) == ([], 21, 3, 2)


def test_list_returns_newest_first_with_list_item_flags():
    fakes = Fakes()
    older = make_video(uploaded_at=T0 - timedelta(hours=2), proxy_path=None, thumbnail_path=None)
    newer = make_video(uploaded_at=T0 - timedelta(hours=1))
    fakes.add_videos(older, newer)

    result = list_videos(ListVideos(), fakes.deps)

    assert [v.id for v in result.videos] == [newer.id, older.id]
    assert (result.videos[0].has_proxy, result.videos[0].has_thumbnail) == (True, True)
    assert (result.videos[1].has_proxy, result.videos[1].has_thumbnail) == (False, False)


def test_list_runs_in_a_transaction_that_is_not_committed():
    fakes = fakes_with(1)

    list_videos(ListVideos(), fakes.deps)

    assert fakes.uow.transactions == 1
    assert fakes.uow.committed is False


def test_get_video_returns_every_detail_field_with_the_pin_name():
    fakes = Fakes()
    video = make_video(pin_name="Food Court", operator_notes="Clear weather")
    fakes.add_videos(video)

    result = get_video(GetVideo(video_id=str(video.id)), fakes.deps)

    assert result == video
    assert result.pin_name == "Food Court"


def test_get_video_of_an_unknown_id_raises_not_found_with_the_contract_text():
    missing = uuid.uuid4()

    with pytest.raises(NotFound) as raised:
        get_video(GetVideo(video_id=str(missing)), Fakes().deps)

    assert raised.value.detail == f"Video {missing} not found"
    assert raised.value.code == "not_found"
