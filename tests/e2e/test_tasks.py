"""Every contract task through the real broker, result backend and worker process."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from worker.client import InvalidRequestError, NotAvailableError, NotFoundError


def call(caller, task: str, **kwargs):
    queue = (
        "videos"
        if task in ("videos.list", "videos.get", "videos.sign_url", "videos.stats")
        else "videos.maintenance"
    )
    return caller.send_task(task, kwargs=kwargs, queue=queue).get(timeout=30)


@pytest.fixture
def mall_with_videos(catalog):
    mall = catalog.mall("Mall A")
    pin = catalog.pin(mall, "Entrance A")
    now = datetime.now(UTC)
    videos = [
        catalog.video(mall, pin, uploaded_at=now - timedelta(hours=i), file_size_bytes=1000 + i)
        for i in range(3)
    ]
    pending = catalog.video(
        mall, pin, proxy=False, thumbnail=False, uploaded_at=now - timedelta(days=1)
    )
    return mall, pin, videos, pending


def test_outside_caller_gets_exact_envelope_for_list(caller, mall_with_videos):
    mall, _, videos, _ = mall_with_videos

    envelope = call(caller, "videos.list", mall_id=str(mall), page_size=2)

    assert set(envelope) == {"ok", "status", "data"}
    assert envelope["ok"] is True and envelope["status"] == 200
    data = envelope["data"]
    assert (data["total"], data["page"], data["page_size"], data["total_pages"]) == (4, 1, 2, 2)
    assert [v["id"] for v in data["videos"]] == [str(videos[0]["id"]), str(videos[1]["id"])]
    assert set(data["videos"][0]) == {
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
        # Contract v1.2: every item carries its tags, sorted case-insensitively.
        "tags",
    }
    assert data["videos"][0]["tags"] == []
    # v1.2: the page says whether its total is exact, and where the next page starts.
    assert data["total_relation"] == "eq" and isinstance(data["next_cursor"], str)
    assert data["videos"][0]["pin_name"] == "Entrance A"
    assert data["videos"][0]["uploaded_at"].endswith("Z")


def test_list_filters_by_status_and_proxy_through_the_worker(client, mall_with_videos):
    mall, _, _, pending = mall_with_videos

    result = client.list(mall_id=mall, has_proxy=False)

    assert [v.id for v in result.videos] == [pending["id"]]
    assert client.list(processing_status="completed").total == 3


def test_list_rejects_bad_input_with_field_errors(caller):
    envelope = call(caller, "videos.list", page_size=101, processing_status="done", bogus=1)

    assert envelope["ok"] is False and envelope["status"] == 400
    assert envelope["error"]["code"] == "invalid_request"
    locs = {tuple(f["loc"]) for f in envelope["error"]["fields"]}
    assert locs == {("page_size",), ("processing_status",), ("bogus",)}
    assert (
        "Invalid processing_status: must be pending|processing|completed|failed"
        in envelope["error"]["detail"]
    )


def test_naive_datetime_and_backwards_range_are_invalid(caller):
    naive = call(caller, "videos.list", uploaded_after="2025-10-31T10:00:00")
    backwards = call(
        caller,
        "videos.list",
        uploaded_after="2025-11-01T00:00:00Z",
        uploaded_before="2025-10-31T00:00:00Z",
    )

    assert naive["error"]["code"] == "invalid_request"
    assert naive["error"]["fields"][0]["loc"] == ["uploaded_after"]
    assert backwards["error"]["code"] == "invalid_request"


def test_get_returns_every_detail_field(client, mall_with_videos):
    _, pin, videos, _ = mall_with_videos

    video = client.get(videos[0]["id"])

    assert video.id == videos[0]["id"] and video.pin_id == pin
    assert video.pin_name == "Entrance A"
    assert video.original_path == videos[0]["original_path"]
    assert video.checksum_sha256 == "abc123" and video.codec == "h264"


def test_get_unknown_video_is_not_found_with_contract_text(caller):
    missing = uuid.uuid4()

    envelope = call(caller, "videos.get", video_id=str(missing))

    assert envelope == {
        "ok": False,
        "status": 404,
        "error": {"code": "not_found", "detail": f"Video {missing} not found"},
    }


def test_get_with_bad_uuid_is_invalid_request(client):
    with pytest.raises(InvalidRequestError) as raised:
        client.get("not-a-uuid")
    assert raised.value.status == 400
    assert raised.value.fields[0]["loc"] == ["video_id"]


def test_sign_url_for_each_target(client, mall_with_videos):
    _, _, videos, _ = mall_with_videos
    row = videos[0]

    proxy = client.sign_url(row["id"])
    original = client.sign_url(row["id"], target="original", expires_minutes=240)
    thumbnail = client.sign_url(row["id"], target="thumbnail", expires_minutes=5)

    assert (proxy.content_type, proxy.file_size_bytes) == ("video/mp4", row["proxy_size_bytes"])
    assert urlparse(proxy.url).path.endswith(row["proxy_path"])
    assert parse_qs(urlparse(original.url).query)["X-Amz-Expires"] == ["14400"]
    assert original.file_size_bytes == row["file_size_bytes"]
    assert (thumbnail.content_type, thumbnail.file_size_bytes, thumbnail.duration_seconds) == (
        "image/jpeg",
        None,
        None,
    )
    assert timedelta(minutes=4) < thumbnail.expires_at - datetime.now(UTC) <= timedelta(minutes=5)


def test_sign_url_not_available_and_out_of_range(client, caller, mall_with_videos):
    _, _, _, pending = mall_with_videos

    with pytest.raises(NotAvailableError) as proxy:
        client.sign_url(pending["id"])
    with pytest.raises(NotAvailableError) as thumbnail:
        client.sign_url(pending["id"], target="thumbnail")
    too_long = call(caller, "videos.sign_url", video_id=str(pending["id"]), expires_minutes=1441)

    assert proxy.value.detail == "Proxy video not available (still processing or failed)"
    assert thumbnail.value.detail == "Thumbnail not available (still processing)"
    assert proxy.value.status == 400
    assert too_long["error"]["code"] == "invalid_request"


def test_delete_removes_row_and_files_exactly_once(client, catalog, mall_with_videos):
    _, _, videos, _ = mall_with_videos
    row = videos[1]

    result = client.delete(row["id"])

    # Runs once: a second delivery of the same message would answer not_found instead.
    assert result.deleted is True
    assert sorted(result.files_deleted) == sorted(catalog.keys(row))
    assert result.files_pending == []
    assert result.message == "Video deleted successfully. 3 file(s) removed from storage."
    assert not any(catalog.object_exists(key) for key in catalog.keys(row))
    with pytest.raises(NotFoundError) as again:
        client.delete(row["id"])
    assert again.value.detail == f"Video {row['id']} not found"


def test_delete_keeping_files(client, catalog, mall_with_videos):
    _, _, videos, _ = mall_with_videos
    row = videos[2]

    result = client.delete(row["id"], delete_files=False)

    assert (result.files_deleted, result.files_pending) == ([], [])
    assert result.message == "Video deleted successfully. 0 file(s) removed from storage."
    assert all(catalog.object_exists(key) for key in catalog.keys(row))


def test_stats_global_and_per_mall(client, caller, mall_with_videos):
    mall, _, videos, pending = mall_with_videos
    other = client.stats(mall_id=uuid.uuid4())

    stats = client.stats(mall_id=mall)

    assert stats.total_videos == 4
    assert stats.by_status.completed == 3 and stats.by_status.pending == 1
    expected_bytes = sum(v["file_size_bytes"] + v["proxy_size_bytes"] for v in videos)
    assert stats.total_storage_bytes == expected_bytes + pending["file_size_bytes"]
    assert other.total_videos == 0
    refreshed = call(caller, "videos.refresh_stats")
    assert refreshed["ok"] and refreshed["data"]["scopes_refreshed"] >= 2


def test_retention_sweep_and_purge_through_the_worker(client, catalog, mall_with_videos):
    mall, pin, _, _ = mall_with_videos
    old = catalog.video(mall, pin, uploaded_at=datetime.now(UTC) - timedelta(days=200))

    dry = client.retention_sweep(older_than_days=90, dry_run=True)
    swept = client.retention_sweep(older_than_days=90, mall_id=mall)
    purged = client.purge_storage()

    assert (dry.matched, dry.deleted, dry.dry_run) == (1, 0, True)
    assert (swept.matched, swept.deleted, swept.files_deleted, swept.files_pending) == (1, 1, 3, 0)
    assert not any(catalog.object_exists(key) for key in catalog.keys(old))
    assert purged.remaining == 0


def test_positional_arguments_are_refused(caller):
    result = caller.send_task("videos.get", args=[str(uuid.uuid4())], queue="videos").get(
        timeout=30
    )

    assert result["ok"] is False and result["error"]["code"] == "invalid_request"
    assert result["error"]["fields"] == [
        {"loc": ["args"], "msg": "Positional arguments are not accepted"}
    ]


def test_a_task_that_ends_leaves_no_redelivery_marks_behind(caller, services, mall_with_videos):
    """The marks that count lost workers track what is in flight: one per message that
    ever ran, kept a week, would fill a busy Redis (300 requests/s: 181M keys)."""
    import redis

    from tests.support import poll
    from worker.runtime.redeliveries import REDELIVERIES_PREFIX, STARTED_PREFIX

    mall, _, videos, pending = mall_with_videos
    cache = redis.Redis.from_url(services["REDIS_URL"])
    sent = [
        caller.send_task("videos.get", kwargs={"video_id": str(v["id"])}, queue="videos")
        for v in videos * 10
    ]
    sent.append(caller.send_task("videos.stats", kwargs={"mall_id": str(mall)}, queue="videos"))
    sent.append(
        caller.send_task(
            "videos.delete",
            kwargs={"video_id": str(pending["id"]), "trash": True},
            queue="videos.maintenance",
        )
    )
    assert all(result.get(timeout=30)["ok"] for result in sent)

    ours = {result.id for result in sent}

    def marks() -> list[str]:
        found = []
        for prefix in (STARTED_PREFIX, REDELIVERIES_PREFIX):
            for key in cache.scan_iter(match=f"{prefix}*", count=1000):
                task_id = key.decode().removeprefix(prefix).rpartition(":")[0]
                found += [key.decode()] if task_id in ours else []
        return found

    # Each mark goes once its task has ended (after the result is stored).
    poll(lambda: not marks(), timeout=10, message="no redelivery marks left")
