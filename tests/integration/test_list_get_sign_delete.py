"""The four original requests (list, get, sign, delete) as the seed's 17 "Integration
Tests (To Be Created)" name them, against real Postgres, S3 and Redis.

Each test's name is the seed's wording; its docstring quotes the seed line.
"""

from __future__ import annotations

import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text

import handlers
from handlers import NotAvailable, NotFound
from schemas import DeleteVideo, GetVideo, ListVideos, SignUrl
from schemas.envelope import STATUS_OF

NOON = datetime(2025, 10, 31, 12, 0, tzinfo=UTC)


def row_count(engine, table: str, **where) -> int:
    clause = " AND ".join(f"{column} = :{column}" for column in where) or "true"
    with engine.connect() as conn:
        return conn.execute(
            text(f"SELECT count(*) FROM {table} WHERE {clause}"),  # noqa: S608 - fixed names
            where,
        ).scalar_one()


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own URL
        return response.read()


def test_list_videos_returns_paginated_results(deps, catalog):
    """List videos returns paginated results."""
    mall = catalog.mall()
    pin = catalog.pin(mall)
    rows = [
        catalog.video(mall, pin, upload_objects=False, uploaded_at=NOON - timedelta(minutes=i))
        for i in range(25)
    ]

    pages = [handlers.list_videos(ListVideos(page=p, page_size=10), deps) for p in (1, 2, 3)]

    assert [len(p.videos) for p in pages] == [10, 10, 5]
    assert all((p.total, p.page_size, p.total_pages) == (25, 10, 3) for p in pages)
    assert [p.page for p in pages] == [1, 2, 3]
    assert [v.id for p in pages for v in p.videos] == [r["id"] for r in rows]


def test_list_videos_filters_by_mall_id_correctly(deps, catalog):
    """List videos filters by mall_id correctly."""
    mall_a, mall_b = catalog.mall("A"), catalog.mall("B")
    in_a = [catalog.video(mall_a, catalog.pin(mall_a), upload_objects=False) for _ in range(3)]
    catalog.video(mall_b, catalog.pin(mall_b), upload_objects=False)

    result = handlers.list_videos(ListVideos(mall_id=str(mall_a)), deps)

    assert result.total == 3
    assert {v.id for v in result.videos} == {r["id"] for r in in_a}
    assert {v.mall_id for v in result.videos} == {mall_a}


def test_list_videos_filters_by_processing_status_correctly(deps, catalog):
    """List videos filters by processing_status correctly."""
    mall = catalog.mall()
    pin = catalog.pin(mall)
    by_status = {
        status: catalog.video(mall, pin, upload_objects=False, processing_status=status)["id"]
        for status in ("pending", "processing", "completed", "failed")
    }

    for status, video_id in by_status.items():
        result = handlers.list_videos(ListVideos(processing_status=status), deps)
        assert [(v.id, v.processing_status) for v in result.videos] == [(video_id, status)]


def test_list_videos_filters_by_has_proxy_correctly(deps, catalog):
    """List videos filters by has_proxy correctly."""
    mall = catalog.mall()
    pin = catalog.pin(mall)
    with_proxy = catalog.video(mall, pin, upload_objects=False, proxy=True)
    without_proxy = catalog.video(mall, pin, upload_objects=False, proxy=False)

    proxied = handlers.list_videos(ListVideos(has_proxy=True), deps)
    unproxied = handlers.list_videos(ListVideos(has_proxy=False), deps)

    assert [(v.id, v.has_proxy) for v in proxied.videos] == [(with_proxy["id"], True)]
    assert [(v.id, v.has_proxy) for v in unproxied.videos] == [(without_proxy["id"], False)]


def test_list_videos_filters_by_date_range_correctly(deps, catalog):
    """List videos filters by date range correctly."""
    mall = catalog.mall()
    pin = catalog.pin(mall)
    days = {
        day: catalog.video(mall, pin, upload_objects=False, uploaded_at=NOON.replace(day=day))
        for day in (28, 29, 30, 31)
    }

    result = handlers.list_videos(
        ListVideos(uploaded_after="2025-10-29T00:00:00Z", uploaded_before="2025-10-31T00:00:00Z"),
        deps,
    )

    assert [v.id for v in result.videos] == [days[30]["id"], days[29]["id"]]
    assert result.total == 2


def test_get_video_details_returns_complete_information(deps, catalog):
    """Get video details returns complete information."""
    mall = catalog.mall()
    pin = catalog.pin(mall, "Entrance A")
    job_id = uuid.uuid4()
    row = catalog.video(
        mall,
        pin,
        upload_objects=False,
        processing_job_id=job_id,
        processing_started_at=NOON + timedelta(seconds=30),
        processing_completed_at=NOON + timedelta(minutes=2, seconds=15),
        uploaded_at=NOON,
        operator_notes="Clear weather, good lighting",
    )

    video = handlers.get_video(GetVideo(video_id=str(row["id"])), deps)

    for column in (
        "id",
        "mall_id",
        "pin_id",
        "original_filename",
        "original_path",
        "file_size_bytes",
        "checksum_sha256",
        "proxy_path",
        "proxy_size_bytes",
        "thumbnail_path",
        "width",
        "height",
        "fps",
        "duration_seconds",
        "codec",
        "processing_status",
        "processing_job_id",
        "processing_started_at",
        "processing_completed_at",
        "uploaded_at",
        "recorded_at",
        "operator_notes",
    ):
        assert getattr(video, column) == row[column], column
    assert video.pin_name == "Entrance A"
    assert video.processing_error is None
    # Filled by the database's defaults, in UTC.
    assert video.created_at is not None and video.created_at.utcoffset() == timedelta(0)
    assert video.updated_at is not None
    assert video.model_dump(mode="json")["uploaded_at"] == "2025-10-31T12:00:00Z"


def test_get_video_details_returns_404_for_non_existent_video(deps, catalog):
    """Get video details returns 404 for non-existent video."""
    catalog.video(catalog.mall(), catalog.pin(catalog.malls[-1]), upload_objects=False)
    missing = uuid.uuid4()

    with pytest.raises(NotFound) as raised:
        handlers.get_video(GetVideo(video_id=str(missing)), deps)

    assert raised.value.detail == f"Video {missing} not found"
    assert STATUS_OF[raised.value.code] == 404


def test_stream_url_generation_works_for_proxy(deps, catalog, s3, bucket):
    """Stream URL generation works for proxy."""
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))
    s3.put_object(Bucket=bucket, Key=row["proxy_path"], Body=b"proxy bytes")

    result = handlers.sign_url(SignUrl(video_id=str(row["id"]), target="proxy"), deps)

    assert urlsplit(result.url).path == f"/{bucket}/{row['proxy_path']}"
    assert (result.content_type, result.file_size_bytes, result.duration_seconds) == (
        "video/mp4",
        18_874_368,
        120.5,
    )
    assert download(result.url) == b"proxy bytes"


def test_stream_url_generation_works_for_original(deps, catalog, s3, bucket):
    """Stream URL generation works for original."""
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall), original_filename="lobby.mov")
    s3.put_object(Bucket=bucket, Key=row["original_path"], Body=b"original bytes")

    result = handlers.sign_url(SignUrl(video_id=str(row["id"]), target="original"), deps)

    assert urlsplit(result.url).path == f"/{bucket}/{row['original_path']}"
    assert (result.content_type, result.file_size_bytes, result.duration_seconds) == (
        "video/quicktime",
        125_829_120,
        120.5,
    )
    assert download(result.url) == b"original bytes"


def test_stream_url_fails_gracefully_when_proxy_unavailable(deps, catalog):
    """Stream URL fails gracefully when proxy unavailable."""
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall), proxy=False, processing_status="processing")

    with pytest.raises(NotAvailable) as raised:
        handlers.sign_url(SignUrl(video_id=str(row["id"]), target="proxy"), deps)

    assert raised.value.detail == "Proxy video not available (still processing or failed)"
    assert STATUS_OF[raised.value.code] == 400
    # Graceful: the original is still there to be streamed.
    original = handlers.sign_url(SignUrl(video_id=str(row["id"]), target="original"), deps)
    assert download(original.url) == b"\x00" * 16


def test_stream_url_expires_after_specified_time(deps, catalog):
    """Stream URL expires after specified time."""
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))

    before = datetime.now(UTC).replace(microsecond=0)
    result = handlers.sign_url(SignUrl(video_id=str(row["id"]), expires_minutes=240), deps)
    after = datetime.now(UTC)

    query = parse_qs(urlsplit(result.url).query)
    assert query["X-Amz-Expires"] == [str(240 * 60)]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= result.expires_at - timedelta(minutes=240) <= after
    # expires_at is taken just before boto signs, so it can only be the same second or earlier.
    assert (
        timedelta(0)
        <= signed_at + timedelta(minutes=240) - result.expires_at
        <= timedelta(seconds=1)
    )
    assert download(result.url) == b"\x00" * 16


def test_thumbnail_url_generation_works(deps, catalog, s3, bucket):
    """Thumbnail URL generation works."""
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))
    s3.put_object(Bucket=bucket, Key=row["thumbnail_path"], Body=b"\xff\xd8\xff jpeg")

    result = handlers.sign_url(SignUrl(video_id=str(row["id"]), target="thumbnail"), deps)

    assert (result.content_type, result.file_size_bytes, result.duration_seconds) == (
        "image/jpeg",
        None,
        None,
    )
    assert parse_qs(urlsplit(result.url).query)["X-Amz-Expires"] == ["3600"]
    assert download(result.url) == b"\xff\xd8\xff jpeg"


def test_thumbnail_url_fails_when_thumbnail_unavailable(deps, catalog):
    """Thumbnail URL fails when thumbnail unavailable."""
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall), thumbnail=False, processing_status="processing")

    with pytest.raises(NotAvailable) as raised:
        handlers.sign_url(SignUrl(video_id=str(row["id"]), target="thumbnail"), deps)

    assert raised.value.detail == "Thumbnail not available (still processing)"
    assert STATUS_OF[raised.value.code] == 400


def test_delete_video_removes_database_record(deps, catalog, engine):
    """Delete video removes database record."""
    mall = catalog.mall()
    pin = catalog.pin(mall)
    doomed = catalog.video(mall, pin)
    kept = catalog.video(mall, pin)

    result = handlers.delete_video(DeleteVideo(video_id=str(doomed["id"])), deps)

    assert (result.video_id, result.deleted) == (doomed["id"], True)
    assert row_count(engine, "videos", id=doomed["id"]) == 0
    assert row_count(engine, "videos", id=kept["id"]) == 1
    with pytest.raises(NotFound):
        handlers.get_video(GetVideo(video_id=str(doomed["id"])), deps)


def test_delete_video_removes_files_from_storage(deps, catalog, engine):
    """Delete video removes files from storage."""
    mall = catalog.mall()
    pin = catalog.pin(mall)
    doomed = catalog.video(mall, pin)
    kept = catalog.video(mall, pin)

    result = handlers.delete_video(DeleteVideo(video_id=str(doomed["id"])), deps)

    assert result.files_deleted == catalog.keys(doomed)
    assert result.files_pending == []
    assert result.message == "Video deleted successfully. 3 file(s) removed from storage."
    assert not any(catalog.object_exists(key) for key in catalog.keys(doomed))
    assert all(catalog.object_exists(key) for key in catalog.keys(kept))
    assert row_count(engine, "storage_deletions") == 0


def test_delete_video_with_delete_files_false_keeps_files(deps, catalog, engine):
    """Delete video with delete_files=false keeps files."""
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))

    result = handlers.delete_video(DeleteVideo(video_id=str(row["id"]), delete_files=False), deps)

    assert (result.deleted, result.files_deleted, result.files_pending) == (True, [], [])
    assert result.message == "Video deleted successfully. 0 file(s) removed from storage."
    assert row_count(engine, "videos", id=row["id"]) == 0
    assert all(catalog.object_exists(key) for key in catalog.keys(row))
    assert row_count(engine, "storage_deletions") == 0


def test_delete_video_returns_404_for_non_existent_video(deps, catalog, engine):
    """Delete video returns 404 for non-existent video."""
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))
    missing = uuid.uuid4()

    with pytest.raises(NotFound) as raised:
        handlers.delete_video(DeleteVideo(video_id=str(missing)), deps)

    assert raised.value.detail == f"Video {missing} not found"
    assert STATUS_OF[raised.value.code] == 404
    assert row_count(engine, "videos") == 1
    assert row_count(engine, "storage_deletions") == 0
    assert all(catalog.object_exists(key) for key in catalog.keys(row))
