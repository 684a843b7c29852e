"""sign_url on fakes: targets, content types, expiry arithmetic and the contract's texts."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from handlers import NotAvailable, NotFound, sign_url
from handlers.errors import PROXY_NOT_AVAILABLE, THUMBNAIL_NOT_AVAILABLE
from handlers.urls import content_type_for
from schemas import SignUrl
from tests.unit.fakes import T0, Fakes, make_video


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
