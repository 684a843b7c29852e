"""sign_url on fakes: targets, content types, expiry arithmetic and the contract's texts."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from handlers import NotAvailable, NotFound, sign_url
from handlers.errors import PROXY_NOT_AVAILABLE, THUMBNAIL_NOT_AVAILABLE
from handlers.urls import (
    FILE_NOT_AVAILABLE,
    ORIGINAL_NOT_AVAILABLE,
    content_type_for,
    is_file_key,
    presign_file,
)
from schemas import SignUrl, success
from tests.unit.fakes import T0, FakeObjectStore, Fakes, make_video


def signed(video, **kwargs):
    fakes = Fakes()
    fakes.add_videos(video)
    return sign_url(SignUrl(video_id=str(video.id), **kwargs), fakes.deps), fakes


def test_error_texts_are_the_seeds():
    assert PROXY_NOT_AVAILABLE == "Proxy video not available (still processing or failed)"
    assert THUMBNAIL_NOT_AVAILABLE == "Thumbnail not available (still processing)"


def test_proxy_is_the_default_target_with_proxy_size_and_duration():
    video = make_video()

    result, fakes = signed(video)

    assert fakes.store.presigned == [(video.proxy_path, 3600)]
    assert result.url == f"http://s3.fake/bucket/{video.proxy_path}?X-Amz-Expires=3600"
    assert result.video_id == video.id
    assert result.content_type == "video/mp4"
    assert result.file_size_bytes == video.proxy_size_bytes
    assert result.duration_seconds == video.duration_seconds


def test_original_uses_the_original_key_file_size_and_a_type_from_the_file_name():
    video = make_video(original_filename="lobby.MOV")

    result, fakes = signed(video, target="original")

    assert fakes.store.presigned == [(video.original_path, 3600)]
    assert result.content_type == "video/quicktime"
    assert result.file_size_bytes == video.file_size_bytes
    assert result.duration_seconds == video.duration_seconds


def test_original_is_signed_even_while_the_proxy_is_still_processing():
    video = make_video(proxy_path=None, proxy_size_bytes=None, processing_status="processing")

    result, _ = signed(video, target="original")

    assert result.content_type == "video/mp4"


def test_thumbnail_is_a_jpeg_without_size_or_duration():
    video = make_video()

    result, fakes = signed(video, target="thumbnail")

    assert fakes.store.presigned == [(video.thumbnail_path, 3600)]
    assert (result.content_type, result.file_size_bytes, result.duration_seconds) == (
        "image/jpeg",
        None,
        None,
    )


def test_proxy_missing_is_not_available_with_the_seed_text_and_nothing_is_signed():
    video = make_video(proxy_path=None, proxy_size_bytes=None, processing_status="failed")
    fakes = Fakes()
    fakes.add_videos(video)

    with pytest.raises(NotAvailable) as raised:
        sign_url(SignUrl(video_id=str(video.id), target="proxy"), fakes.deps)

    assert raised.value.detail == "Proxy video not available (still processing or failed)"
    assert raised.value.code == "not_available"
    assert fakes.store.presigned == []


def test_thumbnail_missing_is_not_available_with_the_seed_text():
    video = make_video(thumbnail_path=None, processing_status="processing")
    fakes = Fakes()
    fakes.add_videos(video)

    with pytest.raises(NotAvailable) as raised:
        sign_url(SignUrl(video_id=str(video.id), target="thumbnail"), fakes.deps)

    assert raised.value.detail == "Thumbnail not available (still processing)"


@pytest.mark.parametrize("target", ["proxy", "original", "thumbnail"])
def test_unknown_video_is_not_found_whatever_the_target(target):
    missing = uuid.uuid4()

    with pytest.raises(NotFound) as raised:
        sign_url(SignUrl(video_id=str(missing), target=target), Fakes().deps)

    assert raised.value.detail == f"Video {missing} not found"


@pytest.mark.parametrize("minutes", [5, 60, 240, 1440])
def test_expiry_is_passed_in_seconds_and_expires_at_is_signing_time_plus_expiry(minutes):
    video = make_video()
    fakes = Fakes()
    fakes.add_videos(video)
    fakes.clock.now = T0 + timedelta(seconds=7, microseconds=999_999)

    result = sign_url(SignUrl(video_id=str(video.id), expires_minutes=minutes), fakes.deps)

    assert fakes.store.presigned == [(video.proxy_path, minutes * 60)]
    # SigV4 dates are whole seconds, so the sub-second part of the clock is dropped.
    assert result.expires_at == T0 + timedelta(seconds=7) + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("a.mp4", "video/mp4"),
        ("A.MP4", "video/mp4"),
        ("a.mov", "video/quicktime"),
        ("a.m4v", "video/x-m4v"),
        ("a.mkv", "video/x-matroska"),
        ("a.webm", "video/webm"),
        ("a.avi", "video/x-msvideo"),
        ("a.ts", "video/mp2t"),
        ("a.mpeg", "video/mpeg"),
        ("archive.2025.10.31.mov", "video/quicktime"),
        ("no_extension", "application/octet-stream"),
        ("notes.txt", "application/octet-stream"),
    ],
)
def test_content_type_of_an_original_follows_its_extension(filename, content_type):
    assert content_type_for(filename) == content_type


# Keys written by other services: an empty or blank key, or a "directory", names no file.
NOT_FILES = ["", " ", "\t\n ", "videos/mall/original/", "/"]


@pytest.mark.parametrize("key", NOT_FILES)
def test_original_whose_key_names_no_file_is_not_available_and_nothing_is_signed(key):
    video = make_video(original_path=key)
    fakes = Fakes()
    fakes.add_videos(video)

    with pytest.raises(NotAvailable) as raised:
        sign_url(SignUrl(video_id=str(video.id), target="original"), fakes.deps)

    assert raised.value.detail == ORIGINAL_NOT_AVAILABLE == "Original video not available"
    assert fakes.store.presigned == []


@pytest.mark.parametrize("key", NOT_FILES)
@pytest.mark.parametrize(
    ("target", "field", "detail"),
    [
        ("proxy", "proxy_path", PROXY_NOT_AVAILABLE),
        ("thumbnail", "thumbnail_path", THUMBNAIL_NOT_AVAILABLE),
    ],
)
def test_proxy_or_thumbnail_whose_key_names_no_file_keeps_the_seed_text(key, target, field, detail):
    video = make_video(**{field: key})
    fakes = Fakes()
    fakes.add_videos(video)

    with pytest.raises(NotAvailable) as raised:
        sign_url(SignUrl(video_id=str(video.id), target=target), fakes.deps)

    assert raised.value.detail == detail
    assert fakes.store.presigned == []


@pytest.mark.parametrize(
    ("key", "is_file"),
    [
        (None, False),
        *((key, False) for key in NOT_FILES),
        ("videos/m/original/v.mp4", True),
        ("v.mp4", True),
        (" leading space.mp4", True),
        ("videos/m/original/.mp4/x", True),
    ],
)
def test_a_file_key_is_non_blank_and_not_a_directory(key, is_file):
    assert is_file_key(key) is is_file


@pytest.mark.parametrize("key", [None, *NOT_FILES])
def test_the_presigning_guard_answers_not_available_without_asking_the_store(key):
    store = FakeObjectStore()

    with pytest.raises(NotAvailable) as raised:
        presign_file(store, key, 900, T0)

    assert raised.value.detail == FILE_NOT_AVAILABLE
    assert store.presigned == []


def test_the_presigning_guard_passes_a_file_key_through_with_its_expiry():
    store = FakeObjectStore()

    url = presign_file(store, "videos/m/proxy/v.mp4", 900, T0)

    assert store.presigned == [("videos/m/proxy/v.mp4", 900)]
    assert url == "http://s3.fake/bucket/videos/m/proxy/v.mp4?X-Amz-Expires=900"


@pytest.mark.parametrize("duration", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_duration_is_signed_with_a_null_duration(duration):
    result, _ = signed(make_video(duration_seconds=duration))

    assert result.duration_seconds is None
    assert success(result)["data"]["duration_seconds"] is None
