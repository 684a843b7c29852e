"""``videoworker demo`` on the session's real PostgreSQL, Redis and S3."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from tests.support import run_cli
from worker.adapters.postgres.tables import CameraPin, Mall, ProcessingJob, Video
from worker.ops import demo

VIDEOS = 40


def demo_keys(s3, bucket: str) -> set[str]:
    keys: set[str] = set()
    for mall in demo.DEMO_MALL_IDS:
        for prefix in (f"videos/{mall}/", f"thumbnails/{mall}/"):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def rows(engine) -> list:
    with engine.connect() as conn:
        return list(conn.execute(select(Video)).mappings())


def keys_of(video) -> list[str]:
    return [k for k in (video["original_path"], video["proxy_path"], video["thumbnail_path"]) if k]


@pytest.fixture
def loaded(settings, clean):
    return demo.load(settings, videos=VIDEOS)


def test_every_status_with_the_files_each_should_have(loaded, engine, s3, bucket):
    videos = rows(engine)
    by_status = Counter(v["processing_status"] for v in videos)

    assert len(videos) == VIDEOS
    assert set(by_status) == {"pending", "processing", "completed", "failed"}
    for video in videos:
        completed = video["processing_status"] == "completed"
        assert (video["proxy_path"] is not None) == completed
        assert (video["thumbnail_path"] is not None) == completed
        assert (video["processing_error"] is not None) == (video["processing_status"] == "failed")
    referenced = {
        key
        for v in videos
        for key in (v["original_path"], v["proxy_path"], v["thumbnail_path"])
        if key
    }
    assert demo_keys(s3, bucket) == referenced
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Mall)) == 2
        assert conn.scalar(select(func.count()).select_from(CameraPin)) == 5
        jobs = conn.scalar(select(func.count()).select_from(ProcessingJob))
    assert jobs == VIDEOS - by_status["pending"]


def test_the_objects_are_a_playable_mp4_and_a_jpeg(loaded, engine, s3, bucket):
    completed = next(v for v in rows(engine) if v["processing_status"] == "completed")

    original = s3.get_object(Bucket=bucket, Key=completed["original_path"])
    proxy = s3.get_object(Bucket=bucket, Key=completed["proxy_path"])["Body"].read()
    thumbnail = s3.get_object(Bucket=bucket, Key=completed["thumbnail_path"])["Body"].read()
    body = original["Body"].read()

    assert body[4:8] == b"ftyp" and b"avc1" in body  # an ISO MP4 holding H.264
    assert original["ContentType"] == "video/mp4"
    assert len(body) == completed["file_size_bytes"] and len(proxy) == completed["proxy_size_bytes"]
    assert thumbnail[:3] == b"\xff\xd8\xff" and thumbnail[-2:] == b"\xff\xd9"
    assert len(body) < 20_000 and len(thumbnail) < 20_000


def test_uploads_span_three_months_inside_the_retention_period(loaded, engine):
    now = datetime.now(UTC)
    ages = [now - v["uploaded_at"] for v in rows(engine)]

    assert max(ages) > timedelta(days=45)
    assert max(ages) < timedelta(days=90)
    assert min(ages) >= timedelta(0)
    noted = [v for v in rows(engine) if v["operator_notes"]]
    assert noted, "a few videos carry operator notes"


def test_statistics_are_refreshed_in_the_cache(loaded, wired):
    cached = wired.cache.get(None)

    assert cached is not None
    assert cached.total_videos == VIDEOS
    mall_figure = wired.cache.get(demo.DEMO_MALL_IDS[0])
    assert mall_figure is not None and 0 < mall_figure.total_videos < VIDEOS


def test_a_database_with_other_data_is_refused_unless_forced(services, catalog, engine):
    mall = catalog.mall("Someone's mall")
    theirs = catalog.video(mall, catalog.pin(mall))

    refused = run_cli("demo", "--videos", "8", env=services, check=1)
    with engine.connect() as conn:
        demo_malls = conn.scalar(
            select(func.count()).select_from(Mall).where(Mall.id.in_(demo.DEMO_MALL_IDS))
        )

    assert demo_malls == 0
    assert refused.stderr.strip() == (
        "videoworker demo: the database holds data that is not the demo's (1 videos, 1 malls); "
        "refusing to mix the demo into it: use an empty database, or pass --force to add the "
        "demo world beside that data"
    )

    forced = run_cli("demo", "--videos", "8", "--force", env=services, check=0)
    ids = {v["id"] for v in rows(engine)}

    assert theirs["id"] in ids and len(ids) == 9
    assert catalog.object_exists(theirs["original_path"])
    assert "beside 1 videos and 1 malls of other data" in forced.stdout


def test_a_second_run_refreshes_the_demo_world_in_place(loaded, settings, engine, s3, bucket):
    gone = next(v for v in rows(engine) if v["processing_status"] == "completed")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM videos WHERE id = :id"), {"id": gone["id"]})
    s3.delete_object(Bucket=bucket, Key=gone["proxy_path"])

    again = demo.load(settings, videos=VIDEOS)

    assert len(rows(engine)) == VIDEOS
    assert gone["id"] in {v["id"] for v in rows(engine)}
    assert gone["proxy_path"] in demo_keys(s3, bucket)
    assert again.uploaded == 1  # only what was missing
    assert again.foreign_videos == 0

    smaller = demo.load(settings, videos=12)

    assert len(rows(engine)) == 12
    expected = {k for v in rows(engine) for k in keys_of(v)}
    assert demo_keys(s3, bucket) == expected
    assert smaller.removed == len(loaded.world.objects) - len(expected)


def test_the_world_is_the_same_on_every_machine():
    one = demo.build_world(datetime(2025, 11, 1, tzinfo=UTC), videos=30)
    other = demo.build_world(datetime(2025, 11, 1, tzinfo=UTC), videos=30)

    assert one.videos == other.videos
    assert demo.build_world(datetime.now(UTC), videos=30).videos[0]["id"] == one.videos[0]["id"]


def test_the_smallest_world_has_every_status_and_a_video_to_try():
    world = demo.build_world(datetime.now(UTC), videos=4)
    report = demo.DemoReport(world, uploaded=0, removed=0, foreign_malls=0, foreign_videos=0)

    assert set(world.by_status()) == {"pending", "processing", "completed", "failed"}
    assert report.sample()["processing_status"] == "completed"
    assert f"video_id={report.sample()['id']} target=proxy" in "\n".join(
        demo.summary(report, "videos")
    )
