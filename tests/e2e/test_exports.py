"""Export as ZIP as another service drives it (contract v1.2, "Export as ZIP"): plain
Celery messages by task name to the session's worker, on whichever broker the session
runs; the ZIP fetched through the URL export_status presigns."""

from __future__ import annotations

import csv
import io
import urllib.request
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.messages import call, data
from tests.support import poll


def ended(caller, export_id: str) -> dict:
    state: dict = {}

    def done() -> bool:
        state.update(data(caller, "videos.export_status", export_id=export_id))
        return state["status"] not in ("queued", "running")

    poll(done, timeout=60, message="the export to end")
    return state


@pytest.fixture
def shop(catalog, s3, bucket):
    mall = catalog.mall("Mall E")
    pin = catalog.pin(mall, "Gate/1")
    now = datetime.now(UTC)
    videos = [
        catalog.video(mall, pin, uploaded_at=now - timedelta(minutes=i), original_filename="a.mp4")
        for i in range(3)
    ]
    for n, video in enumerate(videos):
        s3.put_object(Bucket=bucket, Key=video["proxy_path"], Body=bytes([n]) * (70_000 + n))
    s3.delete_object(Bucket=bucket, Key=videos[2]["proxy_path"])
    return mall, pin, videos


def test_an_export_ends_with_a_zip_of_the_videos_and_a_manifest(caller, shop, s3, bucket):
    _, _, videos = shop
    queued = data(caller, "videos.export", video_ids=[str(v["id"]) for v in videos], name="dock")

    assert (queued["status"], queued["videos"]) == ("queued", 3)
    state = ended(caller, queued["export_id"])
    assert state["status"] == "completed", state
    with urllib.request.urlopen(state["url"], timeout=30) as response:  # noqa: S310 - our S3
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    assert archive.testzip() is None
    entries = [name for name in archive.namelist() if name != "manifest.csv"]
    assert len(entries) == 2 and all(name.startswith("Gate_1/") for name in entries)
    assert len(set(entries)) == 2  # the same file name twice, made unique
    rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [r["video_id"] for r in rows] == [str(v["id"]) for v in videos]
    assert [r["status"] for r in rows] == ["ok", "ok", "missing"]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_cancelled_export_leaves_no_upload_and_says_so(caller, shop, s3, bucket):
    _, _, videos = shop
    queued = data(caller, "videos.export", video_ids=[str(videos[0]["id"])])
    cancelled = data(caller, "videos.export_cancel", export_id=queued["export_id"])

    assert cancelled["status"] in ("cancelled", "completed")
    state = ended(caller, queued["export_id"])
    assert state["status"] in ("cancelled", "completed")
    if state["status"] == "cancelled":
        assert (state["url"], state["error"]) == (None, "Export cancelled.")
    poll(
        lambda: not s3.list_multipart_uploads(Bucket=bucket, Prefix="exports/").get("Uploads"),
        timeout=30,
        message="no multipart upload left",
    )


def test_a_bad_export_is_answered_not_run(caller, shop):
    _, _, videos = shop
    neither = call(caller, "videos.export", target="proxy")
    unknown = call(caller, "videos.export_status", export_id="00000000-0000-0000-0000-000000000000")

    assert neither["error"]["code"] == "invalid_request"
    assert unknown["error"] == {
        "code": "not_found",
        "detail": "Export 00000000-0000-0000-0000-000000000000 not found",
    }
