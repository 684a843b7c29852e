"""Gallery URLs on fakes: list(sign=[...]) signs a whole page, sign_urls many videos."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from handlers import list_videos, sign_urls
from handlers.access import Scope
from schemas import ListVideos, SignUrls
from tests.unit.fakes import T0, Fakes, FixedClock, make_video

# A clock between two seconds: SigV4 signs whole seconds, and so must the expiry.
MID_SECOND = T0 + timedelta(microseconds=654_321)
V1_ITEM_KEYS = {
    "id",
    "mall_id",
    "pin_id",
    "pin_name",
    "original_filename",
    "file_size_bytes",
    "duration_seconds",
    "processing_status",
    "has_proxy",
    "has_thumbnail",
    "uploaded_at",
    "recorded_at",
}
V1_PAGE_KEYS = {"videos", "total", "page", "page_size", "total_pages"}
# Contract v1.2: every page says whether its total is exact and where the next one starts.
PAGE_KEYS = V1_PAGE_KEYS | {"total_relation", "next_cursor"}
# Contract v1.2: every item carries its tags.
ITEM_KEYS = V1_ITEM_KEYS | {"tags"}


def url(key: str, expires_in: int) -> str:
    return f"http://s3.fake/bucket/{key}?X-Amz-Expires={expires_in}"


def gallery(*videos) -> Fakes:
    fakes = Fakes(clock=FixedClock(MID_SECOND))
    fakes.add_videos(*videos)
    return fakes


def oldest_first(count: int, **fields) -> list:
    return [make_video(uploaded_at=T0 - timedelta(hours=count - i), **fields) for i in range(count)]


def test_a_signed_page_gives_each_item_one_url_per_target_and_null_where_a_file_is_missing():
    complete, no_thumbnail, blank_thumbnail, folder_proxy = oldest_first(4)
    no_thumbnail = no_thumbnail.model_copy(update={"thumbnail_path": None})
    blank_thumbnail = blank_thumbnail.model_copy(update={"thumbnail_path": "  "})
    folder_proxy = folder_proxy.model_copy(update={"proxy_path": "videos/mall/proxy/"})
    fakes = gallery(complete, no_thumbnail, blank_thumbnail, folder_proxy)

    page = list_videos(ListVideos(sign=["thumbnail", "proxy"], sign_expires_minutes=15), fakes.deps)

    by_id = {item.id: item.urls for item in page.videos}
    assert by_id == {
        complete.id: {
            "thumbnail": url(complete.thumbnail_path, 900),
            "proxy": url(complete.proxy_path, 900),
        },
        no_thumbnail.id: {"thumbnail": None, "proxy": url(no_thumbnail.proxy_path, 900)},
        blank_thumbnail.id: {"thumbnail": None, "proxy": url(blank_thumbnail.proxy_path, 900)},
        folder_proxy.id: {"thumbnail": url(folder_proxy.thumbnail_path, 900), "proxy": None},
    }
    assert all(list(item.urls) == ["thumbnail", "proxy"] for item in page.videos)
    assert page.urls_expire_at == T0 + timedelta(minutes=15)
    assert page.model_dump(mode="json")["urls_expire_at"] == "2025-10-31T12:15:00Z"
    # A key that names no file is never handed to the presigner.
    assert {key for key, _ in fakes.store.presigned} == {
        complete.thumbnail_path,
        complete.proxy_path,
        no_thumbnail.proxy_path,
        blank_thumbnail.proxy_path,
        folder_proxy.thumbnail_path,
    }


def test_a_signed_page_signs_only_the_page_and_keeps_the_v1_fields():
    videos = oldest_first(3)
    fakes = gallery(*videos)

    page = list_videos(ListVideos(sign=["original"], page_size=2), fakes.deps)

    assert [item.id for item in page.videos] == [videos[2].id, videos[1].id]
    assert len(fakes.store.presigned) == 2
    dumped = page.model_dump(mode="json")
    assert set(dumped) == PAGE_KEYS | {"urls_expire_at"}
    assert {frozenset(item) for item in dumped["videos"]} == {frozenset(ITEM_KEYS | {"urls"})}
    assert dumped["videos"][0]["urls"] == {"original": url(videos[2].original_path, 3600)}
    assert dumped["urls_expire_at"] == "2025-10-31T13:00:00Z"


def test_without_sign_a_page_has_exactly_the_v1_keys_and_the_two_of_v1_2():
    fakes = gallery(*oldest_first(2))

    dumped = list_videos(ListVideos(), fakes.deps).model_dump(mode="json")

    assert set(dumped) == PAGE_KEYS
    assert all(set(item) == ITEM_KEYS for item in dumped["videos"])
    assert fakes.store.presigned == []


def test_an_empty_signed_page_still_says_when_its_urls_would_expire():
    fakes = gallery()

    page = list_videos(ListVideos(sign=["proxy"]), fakes.deps)

    assert (page.videos, page.total) == ([], 0)
    assert page.urls_expire_at == T0 + timedelta(hours=1)


def test_a_signed_page_of_the_trash_signs_the_trashed_videos():
    [video] = oldest_first(1)
    fakes = gallery(video)
    fakes.uow.videos.trashed[video.id] = (T0, None)

    page = list_videos(ListVideos(trashed=True, sign=["thumbnail"]), fakes.deps)

    [item] = page.videos
    assert item.urls == {"thumbnail": url(video.thumbnail_path, 3600)}
    assert item.trashed_at == T0 and item.purge_after == T0 + timedelta(days=30)


def test_sign_urls_keeps_the_order_asked_and_lists_the_missing_apart():
    first, second, no_proxy, binned = oldest_first(4)
    no_proxy = no_proxy.model_copy(update={"proxy_path": None, "proxy_size_bytes": None})
    fakes = gallery(first, second, no_proxy, binned)
    fakes.uow.videos.trashed[binned.id] = (T0, None)
    unknown = uuid.uuid4()

    result = sign_urls(
        SignUrls(
            video_ids=[str(i) for i in (second.id, unknown, no_proxy.id, binned.id, first.id)],
            expires_minutes=10,
        ),
        fakes.deps,
    )

    assert [(u.video_id, u.url) for u in result.urls] == [
        (second.id, url(second.proxy_path, 600)),
        (first.id, url(first.proxy_path, 600)),
    ]
    assert all(u.expires_at == T0 + timedelta(minutes=10) for u in result.urls)
    assert all(u.content_type == "video/mp4" for u in result.urls)
    assert result.urls[0].file_size_bytes == second.proxy_size_bytes
    assert (result.not_found, result.not_available) == ([unknown, binned.id], [no_proxy.id])
    assert len(fakes.store.presigned) == 2


@pytest.mark.parametrize(
    ("target", "key_field", "content_type"),
    [("thumbnail", "thumbnail_path", "image/jpeg"), ("original", "original_path", "video/mp4")],
)
def test_sign_urls_signs_the_target_asked(target, key_field, content_type):
    [video] = oldest_first(1)
    fakes = gallery(video)

    result = sign_urls(SignUrls(video_ids=[str(video.id)], target=target), fakes.deps)

    [signed] = result.urls
    assert (signed.url, signed.content_type) == (url(getattr(video, key_field), 3600), content_type)


def test_sign_urls_answers_a_video_outside_the_scope_as_not_found():
    ours, theirs = oldest_first(2)
    fakes = gallery(ours, theirs)
    operator = replace(fakes.deps, scope=Scope.operator([ours.mall_id]))

    result = sign_urls(SignUrls(video_ids=[str(theirs.id), str(ours.id)]), operator)

    assert [u.video_id for u in result.urls] == [ours.id]
    assert (result.not_found, result.not_available) == ([theirs.id], [])
    assert [key for key, _ in fakes.store.presigned] == [ours.proxy_path]
