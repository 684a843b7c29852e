"""Object keys an XML body cannot carry, through the real worker: a key holding a control
character is removed like any other, and the keys beside it are not held back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

# Run once, in `make test`, whatever the broker: what is tested is the S3 removal of such keys.
pytestmark = pytest.mark.broker_independent


@pytest.fixture
def unsafe_keys_removed(s3, bucket):
    """Removes, one by one, keys a test left that no DeleteObjects body can carry: the
    next test's bucket clean-up sends one."""
    yield
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    for key in [obj["Key"] for page in pages for obj in page.get("Contents", [])]:
        if not key.isprintable():
            s3.delete_object(Bucket=bucket, Key=key)


def bucket_keys(s3, bucket: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def queued_keys(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM storage_deletions")).scalar_one()


def test_a_sweep_with_a_control_character_in_one_key_removes_every_video_and_file(
    client, catalog, engine, s3, bucket, unsafe_keys_removed
):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    uploaded_at = datetime.now(UTC) - timedelta(days=100)
    rows = [catalog.video(mall, pin, uploaded_at=uploaded_at) for _ in range(5)]
    odd_id = uuid.uuid4()
    rows.append(
        catalog.video(
            mall,
            pin,
            id=odd_id,
            uploaded_at=uploaded_at,
            original_path=f"videos/{mall}/original/cam\x01{odd_id}.mp4",
        )
    )
    keys = [key for row in rows for key in catalog.keys(row)]
    assert len(keys) == 18 and all(catalog.object_exists(key) for key in keys)

    swept = client.retention_sweep(older_than_days=90, mall_id=mall, timeout=60)

    assert (swept.matched, swept.deleted, swept.files_deleted, swept.files_pending) == (
        6,
        6,
        18,
        0,
    )
    assert not any(catalog.object_exists(key) for key in keys)
    assert bucket_keys(s3, bucket) == set()
    assert queued_keys(engine) == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM videos")).scalar_one() == 0


def test_a_delete_whose_thumbnail_key_holds_a_control_character_removes_all_three_files(
    client, catalog, engine, s3, bucket, unsafe_keys_removed
):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    video_id = uuid.uuid4()
    row = catalog.video(
        mall, pin, id=video_id, thumbnail_path=f"thumbnails/{mall}/\x01{video_id}.jpg"
    )
    keys = catalog.keys(row)
    assert len(keys) == 3 and all(catalog.object_exists(key) for key in keys)

    result = client.delete(video_id, timeout=30)

    assert sorted(result.files_deleted) == sorted(keys)
    assert result.files_pending == []
    assert result.message == "Video deleted successfully. 3 file(s) removed from storage."
    assert not any(catalog.object_exists(key) for key in keys)
    assert bucket_keys(s3, bucket) == set()
    assert queued_keys(engine) == 0
