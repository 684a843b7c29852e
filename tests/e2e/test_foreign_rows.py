"""Rows other services wrote, through the real worker: every answer is an envelope that a
strict JSON parser reads (no NaN), no URL is signed for a key that names no file, and a
page holding a row dated 'infinity' answers ``ok``.

Envelopes are read raw from the result backend (``celery-task-meta-<id>``), as a caller
in another language would, not through Celery's lenient decoder.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis

from tests.integration.test_foreign_rows import set_columns
from worker.adapters.redis import stats_key

# Run once, in `make test`, whatever the broker:
# what is tested is how rows are read from PostgreSQL.
pytestmark = pytest.mark.broker_independent


REQUEST_TASKS = ("videos.list", "videos.get", "videos.sign_url", "videos.stats")


def refuse_constant(name: str) -> float:
    raise ValueError(f"not JSON: {name}")


@pytest.fixture(scope="session")
def results(services) -> redis.Redis:
    return redis.Redis.from_url(services["CELERY_RESULT_BACKEND"])


@pytest.fixture
def ask(caller, results):
    """Send a task by name and return its envelope as parsed strictly from the backend."""

    def send(task: str, **kwargs) -> dict:
        queue = "videos" if task in REQUEST_TASKS else "videos.maintenance"
        sent = caller.send_task(task, kwargs=kwargs, queue=queue)
        sent.get(timeout=30)
        raw = results.get(f"celery-task-meta-{sent.id}")
        meta = json.loads(raw, parse_constant=refuse_constant)
        assert meta["status"] == "SUCCESS"
        return meta["result"]

    return send


@pytest.fixture
def foreign_rows(catalog):
    """One ordinary video and one of each odd kind, in one mall."""
    mall = catalog.mall("Mall A")
    pin = catalog.pin(mall, "Entrance A")
    now = datetime.now(UTC)
    rows = {}
    for i, name in enumerate(
        ("ordinary", "infinity", "nan", "empty_original", "blank_proxy", "directory_thumb")
    ):
        rows[name] = catalog.video(
            mall, pin, upload_objects=False, uploaded_at=now - timedelta(minutes=i)
        )
    odd = {
        "infinity": {"uploaded_at": "infinity", "recorded_at": "-infinity"},
        "nan": {"duration_seconds": "NaN", "fps": "Infinity"},
        "empty_original": {"original_path": ""},
        "blank_proxy": {"proxy_path": "  "},
        "directory_thumb": {"thumbnail_path": f"thumbnails/{mall}/"},
    }
    for name, values in odd.items():
        set_columns(catalog.engine, rows[name]["id"], **values)
    return mall, rows


def test_a_first_page_holding_foreign_rows_answers_ok_in_strict_json(ask, foreign_rows):
    _, rows = foreign_rows

    envelope = ask("videos.list", page_size=100)

    assert envelope["ok"] is True
    items = {item["id"]: item for item in envelope["data"]["videos"]}
    first = envelope["data"]["videos"][0]
    assert first["id"] == str(rows["infinity"]["id"])
    assert (first["uploaded_at"], first["recorded_at"]) == ("9999-12-31T23:59:59.999999Z", None)
    assert items[str(rows["nan"]["id"])]["duration_seconds"] is None
    assert items[str(rows["blank_proxy"]["id"])]["has_proxy"] is False
    assert items[str(rows["directory_thumb"]["id"])]["has_thumbnail"] is False
    assert items[str(rows["ordinary"]["id"])]["has_proxy"] is True
    assert envelope["data"]["total"] == len(rows)


def test_a_two_item_first_page_starting_with_infinity_answers_ok(ask, foreign_rows):
    _, rows = foreign_rows

    envelope = ask("videos.list", page_size=2)

    assert envelope["ok"] is True
    assert envelope["data"]["videos"][0]["id"] == str(rows["infinity"]["id"])


@pytest.mark.parametrize(
    "name", ["ordinary", "infinity", "nan", "empty_original", "blank_proxy", "directory_thumb"]
)
def test_get_of_each_foreign_row_answers_ok_in_strict_json(ask, foreign_rows, name):
    _, rows = foreign_rows

    envelope = ask("videos.get", video_id=str(rows[name]["id"]))

    assert envelope["ok"] is True
    assert envelope["data"]["id"] == str(rows[name]["id"])
    if name == "nan":
        assert (envelope["data"]["duration_seconds"], envelope["data"]["fps"]) == (None, None)


@pytest.mark.parametrize(
    ("name", "target", "detail"),
    [
        ("empty_original", "original", "Original video not available"),
        ("blank_proxy", "proxy", "Proxy video not available (still processing or failed)"),
        ("directory_thumb", "thumbnail", "Thumbnail not available (still processing)"),
    ],
)
def test_no_url_is_signed_for_a_key_that_names_no_file(ask, foreign_rows, name, target, detail):
    _, rows = foreign_rows

    envelope = ask("videos.sign_url", video_id=str(rows[name]["id"]), target=target)

    assert envelope == {
        "ok": False,
        "status": 400,
        "error": {"code": "not_available", "detail": detail},
    }


@pytest.mark.parametrize("name", ["infinity", "nan"])
@pytest.mark.parametrize("target", ["proxy", "original", "thumbnail"])
def test_odd_rows_with_real_keys_are_signed_in_strict_json(ask, foreign_rows, name, target):
    _, rows = foreign_rows

    envelope = ask("videos.sign_url", video_id=str(rows[name]["id"]), target=target)

    assert envelope["ok"] is True
    key = {
        "proxy": "proxy_path",
        "original": "original_path",
        "thumbnail": "thumbnail_path",
    }[target]
    assert rows[name][key] in envelope["data"]["url"]
    expected_duration = None if name == "nan" or target == "thumbnail" else 120.5
    assert envelope["data"]["duration_seconds"] == expected_duration


def test_statistics_over_non_finite_durations_stay_strict_json_from_miss_cache_and_refresh(
    ask, foreign_rows, redis_client
):
    mall, _ = foreign_rows
    finite_total = 120.5 * 5

    miss = ask("videos.stats")
    hit = ask("videos.stats")
    refresh = ask("videos.refresh_stats")
    after_refresh = ask("videos.stats", mall_id=str(mall))

    assert miss["data"]["total_duration_seconds"] == finite_total
    assert hit == miss
    assert refresh["ok"] is True
    assert after_refresh["data"]["total_duration_seconds"] == finite_total
    json.loads(redis_client.get(stats_key(mall)), parse_constant=refuse_constant)


@pytest.mark.parametrize("poison", [b"\x00garbage", b"{}", b'{"total_videos": null}'])
def test_a_poisoned_stats_entry_is_answered_ok_and_rewritten(
    ask, foreign_rows, redis_client, poison
):
    redis_client.set(stats_key(None), poison)

    envelope = ask("videos.stats")

    assert envelope["ok"] is True
    assert envelope["data"]["total_videos"] == 6
    cached = json.loads(redis_client.get(stats_key(None)), parse_constant=refuse_constant)
    assert cached["total_videos"] == 6


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("uploaded_after", "0001-01-01T00:00:00+01:00"),
        ("uploaded_before", "9999-12-31T23:59:59-01:00"),
    ],
)
def test_request_datetimes_that_leave_the_calendar_in_utc_are_invalid_requests(ask, field, value):
    envelope = ask("videos.list", **{field: value})

    assert (envelope["ok"], envelope["status"], envelope["error"]["code"]) == (
        False,
        400,
        "invalid_request",
    )
    assert envelope["error"]["fields"] == [
        {"loc": [field], "msg": "Datetime out of range once converted to UTC"}
    ]
