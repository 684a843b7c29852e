"""Validation of the kwargs of the trash, bulk deletes, search, gallery URLs, per-pin
statistics and retention settings: types are strict, bounds inclusive, unknown keys
refused, and a bulk delete never selects "everything"."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from schemas import (
    BulkDelete,
    DeleteVideo,
    GetStats,
    ListVideos,
    RestoreVideo,
    SignUrls,
    VideoFilters,
)
from schemas.requests import SetRetention

VIDEO_ID = str(uuid.uuid4())
MALL_ID = str(uuid.uuid4())
BY_IDS = {"video_ids": [VIDEO_ID]}
SIGN_URLS = {"video_ids": [VIDEO_ID]}


def rejection(model, **kwargs) -> dict:
    """The single validation error a model raises for these kwargs."""
    with pytest.raises(ValidationError) as raised:
        model(**kwargs)
    [error] = raised.value.errors()
    return error


def ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def test_new_kwargs_default_to_what_v1_did():
    listing = ListVideos()
    assert (listing.q, listing.trashed, listing.sign, listing.sign_expires_minutes) == (
        None,
        False,
        None,
        60,
    )
    assert DeleteVideo(video_id=VIDEO_ID).trash is False
    stats = GetStats()
    assert (stats.pin_id, stats.by_pin) == (None, False)
    bulk = BulkDelete(**BY_IDS)
    assert (bulk.trash, bulk.delete_files, bulk.dry_run, bulk.batch_size) == (
        False,
        True,
        False,
        500,
    )
    urls = SignUrls(**SIGN_URLS)
    assert (urls.target, urls.expires_minutes) == ("proxy", 60)


@pytest.mark.parametrize(
    ("model", "base", "field", "value", "error_type"),
    [
        (ListVideos, {}, "trashed", 1, "bool_type"),
        (ListVideos, {}, "trashed", "true", "bool_type"),
        (ListVideos, {}, "q", 5, "string_type"),
        (ListVideos, {}, "q", b"lobby", "string_type"),
        (ListVideos, {}, "sign", "thumbnail", "list_type"),
        (ListVideos, {}, "sign_expires_minutes", "60", "int_type"),
        (ListVideos, {}, "sign_expires_minutes", 60.0, "int_type"),
        (DeleteVideo, {"video_id": VIDEO_ID}, "trash", 1, "bool_type"),
        (DeleteVideo, {"video_id": VIDEO_ID}, "trash", "yes", "bool_type"),
        (RestoreVideo, {}, "video_id", 123, "uuid_type"),
        (RestoreVideo, {}, "video_id", "not-a-uuid", "uuid_parsing"),
        (SignUrls, {}, "video_ids", VIDEO_ID, "list_type"),
        (SignUrls, SIGN_URLS, "expires_minutes", "60", "int_type"),
        (BulkDelete, {}, "video_ids", VIDEO_ID, "list_type"),
        (BulkDelete, BY_IDS, "trash", 1, "bool_type"),
        (BulkDelete, BY_IDS, "delete_files", "false", "bool_type"),
        (BulkDelete, BY_IDS, "dry_run", 0, "bool_type"),
        (BulkDelete, BY_IDS, "batch_size", "100", "int_type"),
        (BulkDelete, {}, "filters", "mall_id=x", "model_type"),
        (GetStats, {}, "by_pin", 1, "bool_type"),
        (GetStats, {}, "pin_id", 123, "uuid_type"),
        (SetRetention, {"mall_id": MALL_ID}, "max_storage_bytes", "500G", "int_type"),
        (SetRetention, {"mall_id": MALL_ID}, "max_storage_bytes", 1.5e9, "int_type"),
    ],
)
def test_new_kwargs_of_the_wrong_type_are_rejected(model, base, field, value, error_type):
    error = rejection(model, **base, **{field: value})

    assert (error["loc"], error["type"]) == ((field,), error_type)


@pytest.mark.parametrize(
    ("model", "base", "field", "accepted", "rejected"),
    [
        (ListVideos, {}, "sign_expires_minutes", [5, 1440], [4, 1441]),
        (SignUrls, SIGN_URLS, "expires_minutes", [5, 1440], [4, 1441]),
        (BulkDelete, BY_IDS, "batch_size", [1, 1000], [0, 1001]),
        (SetRetention, {"mall_id": MALL_ID}, "max_storage_bytes", [1, 2**63 - 1], [0, 2**63]),
    ],
)
def test_new_integer_bounds_are_inclusive(model, base, field, accepted, rejected):
    for value in accepted:
        assert getattr(model(**base, **{field: value}), field) == value
    for value in rejected:
        error = rejection(model, **base, **{field: value})
        assert error["loc"] == (field,)
        assert error["type"] in ("greater_than_equal", "less_than_equal")


@pytest.mark.parametrize(("model", "most"), [(SignUrls, 100), (BulkDelete, 1000)])
def test_video_ids_take_one_to_a_bounded_number(model, most):
    assert len(model(video_ids=ids(1)).video_ids) == 1
    assert len(model(video_ids=ids(most)).video_ids) == most
    assert model(video_ids=ids(1)).video_ids[0].__class__ is uuid.UUID

    for count, error_type in ((0, "too_short"), (most + 1, "too_long")):
        error = rejection(model, video_ids=ids(count))
        assert (error["loc"], error["type"]) == (("video_ids",), error_type)


@pytest.mark.parametrize("model", [SignUrls, BulkDelete])
def test_a_bad_id_among_video_ids_is_pointed_at(model):
    error = rejection(model, video_ids=[VIDEO_ID, "nope"])

    assert (error["loc"], error["type"]) == (("video_ids", 1), "uuid_parsing")


@pytest.mark.parametrize("model", [ListVideos, VideoFilters])
def test_q_takes_up_to_two_hundred_characters_without_nul(model):
    assert model(q="lob").q == "lob"
    assert model(q="%_\\" * 65 + "abc").q.endswith("abc")
    for value, error_type in (("", "string_too_short"), ("x" * 201, "string_too_long")):
        error = rejection(model, q=value)
        assert (error["loc"], error["type"]) == (("q",), error_type)

    error = rejection(model, q="lobby\x00")
    assert (error["loc"], error["type"]) == (("q",), "nul_character")
    assert error["msg"] == "Text must not contain NUL characters"


@pytest.mark.parametrize("model", [ListVideos, VideoFilters])
@pytest.mark.parametrize(
    "q", ["x", "P2", "%%", "___", "a_b_c", "ab cd", "12-34", "ab\\cd", "%_%_%", "1 2 3 4 5"]
)
def test_q_without_three_letters_or_digits_in_a_row_is_refused(model, q):
    """What no trigram index can look up: every row would be read and rechecked."""
    error = rejection(model, q=q)

    assert (error["loc"], error["type"]) == (("q",), "search_too_short")
    assert error["msg"] == "needs at least 3 letters or digits in a row"


@pytest.mark.parametrize("model", [ListVideos, VideoFilters])
@pytest.mark.parametrize(
    "q", ["abc", "50%_off", "CAM", "x-200", "%%ab1%%", "東京駅", "Straße", "١٢٣"]
)
def test_q_with_three_letters_or_digits_in_a_row_of_any_script_is_taken(model, q):
    assert model(q=q).q == q


def test_bulk_delete_filters_take_the_same_q_rule():
    error = rejection(BulkDelete, filters={"q": "P2"})

    assert (error["loc"], error["type"]) == (("filters", "q"), "search_too_short")


def test_a_cursor_is_a_short_non_empty_string():
    assert ListVideos(cursor="abc").cursor == "abc"
    for value, error_type in (
        ("", "string_too_short"),
        ("c" * 513, "string_too_long"),
        (5, "string_type"),
    ):
        error = rejection(ListVideos, cursor=value)
        assert (error["loc"], error["type"]) == (("cursor",), error_type)


def test_sign_takes_distinct_known_targets():
    assert ListVideos(sign=["thumbnail", "proxy"]).sign == ["thumbnail", "proxy"]
    assert ListVideos(sign=["original", "proxy", "thumbnail"]).sign == [
        "original",
        "proxy",
        "thumbnail",
    ]

    unknown = rejection(ListVideos, sign=["thumbnail", "hd"])
    assert (unknown["loc"], unknown["type"]) == (("sign", 1), "invalid_target")
    assert unknown["msg"] == "Invalid target: must be proxy|original|thumbnail"
    twice = rejection(ListVideos, sign=["proxy", "proxy"])
    assert (twice["loc"], twice["type"]) == (("sign",), "duplicates")
    empty = rejection(ListVideos, sign=[])
    assert (empty["loc"], empty["type"]) == (("sign",), "too_short")


def test_sign_urls_target_is_one_of_the_known_targets():
    error = rejection(SignUrls, **SIGN_URLS, target="hd")

    assert (error["loc"], error["type"]) == (("target",), "invalid_target")


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        (ListVideos, {"signed": True}),
        (ListVideos, {"trash": True}),
        (ListVideos, {"expires_minutes": 10}),
        (DeleteVideo, {"video_id": VIDEO_ID, "trashed": True}),
        (RestoreVideo, {"video_id": VIDEO_ID, "trash": False}),
        (SignUrls, {**SIGN_URLS, "video_id": VIDEO_ID}),
        (SignUrls, {**SIGN_URLS, "targets": ["proxy"]}),
        (BulkDelete, {**BY_IDS, "ids": [VIDEO_ID]}),
        (BulkDelete, {**BY_IDS, "limit": 5}),
        (GetStats, {"pins": True}),
        (SetRetention, {"mall_id": MALL_ID, "days": 30, "quota": 1}),
    ],
)
def test_unknown_kwargs_of_the_new_tasks_are_rejected(model, kwargs):
    with pytest.raises(ValidationError) as raised:
        model(**kwargs)

    assert [e["type"] for e in raised.value.errors()] == ["extra_forbidden"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"trash": True},
        {"video_ids": None, "filters": None},
        {"video_ids": [VIDEO_ID], "filters": {"mall_id": MALL_ID}},
    ],
)
def test_a_bulk_delete_needs_exactly_one_selection(kwargs):
    error = rejection(BulkDelete, **kwargs)

    assert (error["type"], error["msg"]) == (
        "selection",
        "Give exactly one of video_ids or filters",
    )


@pytest.mark.parametrize("filters", [{}, {"mall_id": None, "q": None}])
def test_a_bulk_delete_by_empty_filters_is_rejected(filters):
    error = rejection(BulkDelete, filters=filters)

    assert (error["type"], error["msg"]) == (
        "empty_filters",
        "filters must name at least one filter",
    )


@pytest.mark.parametrize("key", ["page", "page_size", "trashed", "sign", "auth", "mall"])
def test_filters_take_only_the_filter_kwargs_of_list(key):
    error = rejection(BulkDelete, filters={"mall_id": MALL_ID, key: 1})

    assert (error["loc"], error["type"]) == (("filters", key), "extra_forbidden")


def test_filters_are_validated_as_list_filters_are():
    status = rejection(BulkDelete, filters={"processing_status": "done"})
    assert status["loc"] == ("filters", "processing_status")
    proxy = rejection(BulkDelete, filters={"has_proxy": 1})
    assert (proxy["loc"], proxy["type"]) == (("filters", "has_proxy"), "bool_type")
    naive = rejection(BulkDelete, filters={"uploaded_before": "2025-10-31T00:00:00"})
    assert (naive["loc"], naive["type"]) == (("filters", "uploaded_before"), "timezone_aware")
    backwards = rejection(
        BulkDelete,
        filters={"uploaded_after": "2025-11-01T00:00:00Z", "uploaded_before": "2025-10-01T00:00Z"},
    )
    assert (backwards["loc"], backwards["type"]) == (("filters",), "date_range")
    nul = rejection(BulkDelete, filters={"q": "\x00"})
    assert (nul["loc"], nul["type"]) == (("filters", "q"), "nul_character")


def test_every_filter_of_list_is_a_filter_of_bulk_delete():
    filters = BulkDelete(
        filters={
            "mall_id": MALL_ID,
            "pin_id": VIDEO_ID,
            "processing_status": "failed",
            "has_proxy": False,
            "uploaded_after": "2025-10-01T00:00:00Z",
            "uploaded_before": "2025-11-01T00:00:00+01:00",
            "q": "lobby",
        }
    ).filters

    assert set(VideoFilters.model_fields) == {
        "mall_id",
        "pin_id",
        "processing_status",
        "has_proxy",
        "uploaded_after",
        "uploaded_before",
        "q",
        "tags",
    }
    assert str(filters.mall_id) == MALL_ID and filters.has_proxy is False
    assert filters.uploaded_before.isoformat() == "2025-10-31T23:00:00+00:00"


def test_set_retention_needs_days_or_max_storage_bytes():
    error = rejection(SetRetention, mall_id=MALL_ID)

    assert (error["type"], error["msg"]) == (
        "nothing_to_set",
        "Give days, max_storage_bytes or both",
    )
    assert SetRetention(mall_id=MALL_ID, max_storage_bytes=1024).days is None
    both = SetRetention(mall_id=MALL_ID, days=30, max_storage_bytes=2**40)
    assert (both.days, both.max_storage_bytes) == (30, 2**40)
