"""Validation at the edge: every bound, type and text the contract names."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from schemas import (
    DeleteVideo,
    FlushStaleStats,
    GetStats,
    GetVideo,
    ListVideos,
    PurgeStorage,
    RefreshStats,
    SignUrl,
    SweepRetention,
    failure,
)

VIDEO_ID = str(uuid.uuid4())


def rejection(model, **kwargs) -> dict:
    """The single validation error a model raises for these kwargs."""
    with pytest.raises(ValidationError) as raised:
        model(**kwargs)
    [error] = raised.value.errors()
    return error


@pytest.mark.parametrize(
    ("model", "field", "base", "accepted", "rejected"),
    [
        (ListVideos, "page", {}, [1, 10_000], [0, -1]),
        (ListVideos, "page_size", {}, [1, 100], [0, 101]),
        (SignUrl, "expires_minutes", {"video_id": VIDEO_ID}, [5, 1440], [4, 1441]),
        (SweepRetention, "batch_size", {}, [1, 1000], [0, 1001]),
        (SweepRetention, "older_than_days", {}, [1, 3650], [0, -5]),
        (PurgeStorage, "limit", {}, [1, 100_000], [0, 100_001]),
    ],
)
def test_integer_bounds_are_inclusive_and_enforced(model, field, base, accepted, rejected):
    for value in accepted:
        assert getattr(model(**base, **{field: value}), field) == value
    for value in rejected:
        error = rejection(model, **base, **{field: value})
        assert error["loc"] == (field,)
        assert error["type"] in ("greater_than_equal", "less_than_equal")


def test_defaults_follow_the_contract():
    listing = ListVideos()
    assert (listing.page, listing.page_size) == (1, 20)
    url = SignUrl(video_id=VIDEO_ID)
    assert (url.target, url.expires_minutes) == ("proxy", 60)
    assert DeleteVideo(video_id=VIDEO_ID).delete_files is True
    sweep = SweepRetention()
    assert (sweep.older_than_days, sweep.batch_size, sweep.dry_run, sweep.delete_files) == (
        None,
        500,
        False,
        True,
    )


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (ListVideos, "page", "2"),
        (ListVideos, "page", 2.0),
        (ListVideos, "page", True),
        (ListVideos, "page_size", "20"),
        (SignUrl, "expires_minutes", "60"),
        (SweepRetention, "batch_size", "100"),
    ],
)
def test_ints_are_strict(model, field, value):
    base = {"video_id": VIDEO_ID} if model is SignUrl else {}
    error = rejection(model, **base, **{field: value})
    assert (error["loc"], error["type"]) == ((field,), "int_type")


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (ListVideos, "has_proxy", 1),
        (ListVideos, "has_proxy", "true"),
        (DeleteVideo, "delete_files", 0),
        (DeleteVideo, "delete_files", "false"),
        (SweepRetention, "dry_run", 1),
        (SweepRetention, "delete_files", "yes"),
    ],
)
def test_bools_are_strict(model, field, value):
    base = {"video_id": VIDEO_ID} if model is DeleteVideo else {}
    error = rejection(model, **base, **{field: value})
    assert (error["loc"], error["type"]) == ((field,), "bool_type")


def test_strict_values_of_the_right_type_are_accepted():
    listing = ListVideos(has_proxy=False, page=2, page_size=50)
    assert (listing.has_proxy, listing.page, listing.page_size) == (False, 2, 50)


@pytest.mark.parametrize("value", ["not-a-uuid", "1234", "", 123, b"0123456789abcdef", 1.5])
@pytest.mark.parametrize(
    ("model", "field"),
    [(GetVideo, "video_id"), (DeleteVideo, "video_id"), (SignUrl, "video_id")]
    + [(ListVideos, "mall_id"), (ListVideos, "pin_id"), (GetStats, "mall_id")]
    + [(RefreshStats, "mall_id"), (SweepRetention, "mall_id")],
)
def test_bad_uuids_are_rejected(model, field, value):
    error = rejection(model, **{field: value})
    assert error["loc"] == (field,)
    assert error["type"] in ("uuid_type", "uuid_parsing")


def test_uuid_strings_are_parsed():
    video_id = uuid.uuid4()
    assert GetVideo(video_id=str(video_id)).video_id == video_id
    assert GetVideo(video_id=str(video_id).upper()).video_id == video_id


def test_missing_video_id_is_rejected():
    assert rejection(GetVideo)["type"] == "missing"


@pytest.mark.parametrize("field", ["uploaded_after", "uploaded_before"])
@pytest.mark.parametrize("value", ["2025-10-31T10:00:00", "2025-10-31", datetime(2025, 10, 31)])
def test_naive_datetimes_are_rejected(field, value):
    error = rejection(ListVideos, **{field: value})
    assert (error["loc"], error["type"]) == ((field,), "timezone_aware")


@pytest.mark.parametrize("field", ["uploaded_after", "uploaded_before"])
@pytest.mark.parametrize("value", [1_730_000_000, 1_730_000_000.5, 0])
def test_numbers_where_datetimes_are_expected_are_rejected(field, value):
    error = rejection(ListVideos, **{field: value})
    assert (error["loc"], error["type"]) == ((field,), "datetime_type")
    assert error["msg"] == "Input should be an ISO 8601 datetime string with an offset"


def test_aware_datetimes_are_normalised_to_utc():
    listing = ListVideos(
        uploaded_after="2025-10-31T12:00:00+02:00", uploaded_before="2025-10-31T10:30:00Z"
    )
    assert listing.uploaded_after == datetime(2025, 10, 31, 10, 0, tzinfo=UTC)
    assert listing.uploaded_after.utcoffset().total_seconds() == 0
    assert listing.uploaded_before == datetime(2025, 10, 31, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("after", "before"),
    [
        ("2025-10-31T10:00:00Z", "2025-10-31T10:00:00Z"),
        ("2025-10-31T10:00:01Z", "2025-10-31T10:00:00Z"),
        # Same instant written in two offsets is still an empty range.
        ("2025-10-31T12:00:00+02:00", "2025-10-31T10:00:00Z"),
    ],
)
def test_uploaded_after_not_before_uploaded_before_is_rejected(after, before):
    error = rejection(ListVideos, uploaded_after=after, uploaded_before=before)
    assert error["type"] == "date_range"
    assert error["msg"] == "uploaded_after must be earlier than uploaded_before"


def test_open_ended_date_ranges_are_accepted():
    assert ListVideos(uploaded_after="2025-10-31T00:00:00Z").uploaded_before is None
    assert ListVideos(uploaded_before="2025-10-31T00:00:00Z").uploaded_after is None


@pytest.mark.parametrize("value", ["done", "COMPLETED", "", 1])
def test_bad_processing_status_carries_the_seed_text(value):
    error = rejection(ListVideos, processing_status=value)
    assert error["loc"] == ("processing_status",)
    assert error["msg"] == "Invalid processing_status: must be pending|processing|completed|failed"


@pytest.mark.parametrize("status", ["pending", "processing", "completed", "failed"])
def test_every_processing_status_is_accepted(status):
    assert ListVideos(processing_status=status).processing_status == status


def test_bad_target_names_the_allowed_targets():
    error = rejection(SignUrl, video_id=VIDEO_ID, target="hd")
    assert error["msg"] == "Invalid target: must be proxy|original|thumbnail"


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        (ListVideos, {"mall": VIDEO_ID}),
        (GetVideo, {"video_id": VIDEO_ID, "include_jobs": True}),
        (SignUrl, {"video_id": VIDEO_ID, "stream_type": "proxy"}),
        (DeleteVideo, {"video_id": VIDEO_ID, "delete_from_storage": False}),
        (GetStats, {"malls": []}),
        (RefreshStats, {"force": True}),
        (SweepRetention, {"days": 30}),
        (PurgeStorage, {"batch": 5}),
        (FlushStaleStats, {"mall_id": VIDEO_ID}),
    ],
)
def test_unknown_kwargs_are_rejected(model, kwargs):
    with pytest.raises(ValidationError) as raised:
        model(**kwargs)
    assert [e["type"] for e in raised.value.errors()] == ["extra_forbidden"]


def test_commands_are_frozen():
    command = DeleteVideo(video_id=VIDEO_ID)
    with pytest.raises(ValidationError):
        command.delete_files = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("invalid_request", 400),
        ("not_available", 400),
        ("not_found", 404),
        ("unavailable", 503),
        ("internal", 500),
    ],
)
def test_failure_envelope_carries_the_contract_status(code, status):
    detail = f"Video {VIDEO_ID} not found"
    assert failure(code, detail) == {
        "ok": False,
        "status": status,
        "error": {"code": code, "detail": detail},
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("uploaded_after", "0001-01-01T00:00:00+01:00"),
        ("uploaded_after", "0001-01-01T00:59:59.999999+01:00"),
        ("uploaded_before", "9999-12-31T23:59:59-01:00"),
        ("uploaded_before", "9999-12-31T23:00:00-23:59"),
        ("uploaded_after", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))),
    ],
)
def test_datetimes_that_leave_the_calendar_once_in_utc_are_field_errors(field, value):
    error = rejection(ListVideos, **{field: value})

    assert (error["loc"], error["type"]) == ((field,), "datetime_range")
    assert error["msg"] == "Datetime out of range once converted to UTC"


@pytest.mark.parametrize(
    ("value", "in_utc"),
    [
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("0001-01-01T01:00:00+01:00", datetime(1, 1, 1, tzinfo=UTC)),
        ("0001-01-01T00:00:00-01:00", datetime(1, 1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59.999999Z", datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
        ("9999-12-31T23:59:59+01:00", datetime(9999, 12, 31, 22, 59, 59, tzinfo=UTC)),
    ],
)
def test_datetimes_at_the_edge_of_the_calendar_that_stay_in_it_are_accepted(value, in_utc):
    assert ListVideos(uploaded_after=value).uploaded_after == in_utc
    assert ListVideos(uploaded_before=value).uploaded_before == in_utc


def test_both_ends_out_of_range_are_reported_together():
    with pytest.raises(ValidationError) as raised:
        ListVideos(
            uploaded_after="0001-01-01T00:00:00+01:00",
            uploaded_before="9999-12-31T23:59:59-01:00",
        )

    assert [(e["loc"], e["type"]) for e in raised.value.errors()] == [
        (("uploaded_after",), "datetime_range"),
        (("uploaded_before",), "datetime_range"),
    ]
