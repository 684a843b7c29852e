"""Rows other services wrote: odd values in ``videos`` never break a page, leak the
bucket or poison the stats cache. Each odd value is written with raw SQL, as a foreign
writer would, and read back through the handlers on the real adapters."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

import handlers
from handlers.errors import PROXY_NOT_AVAILABLE, THUMBNAIL_NOT_AVAILABLE
from handlers.urls import ORIGINAL_NOT_AVAILABLE, presign_file
from schemas import GetStats, GetVideo, ListVideos, RefreshStats, SignUrl, VideoStats, success
from worker.adapters.postgres.tables import Video
from worker.adapters.redis import stats_key

LATEST = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
NOT_FILES = ["", "   ", "\t\n", "videos/mall/original/", "/"]


def set_columns(engine, video_id, **values: str) -> None:
    """Write text values the way another service's SQL would (``'NaN'``, ``'infinity'``)."""
    assert set(values) <= set(Video.__table__.c.keys())
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    statement = f"UPDATE videos SET {assignments} WHERE id = :id"  # noqa: S608 - column names
    with engine.begin() as conn:
        conn.execute(text(statement), {**values, "id": video_id})


def strict_json(model) -> dict:
    """The envelope as a strict JSON parser in another language would have to read it."""
    return json.loads(json.dumps(success(model), allow_nan=False))


@pytest.fixture
def mall_pin(catalog):
    mall = catalog.mall("Mall A")
    return mall, catalog.pin(mall, "Entrance A")


# --- object keys that name no file ----------------------------------------------------


@pytest.mark.parametrize("path", NOT_FILES)
def test_original_without_a_file_key_is_not_available_and_never_signed(
    deps, catalog, mall_pin, path
):
    video = catalog.video(*mall_pin, upload_objects=False)
    set_columns(catalog.engine, video["id"], original_path=path)

    with pytest.raises(handlers.NotAvailable) as raised:
        handlers.sign_url(SignUrl(video_id=str(video["id"]), target="original"), deps)

    assert raised.value.detail == ORIGINAL_NOT_AVAILABLE == "Original video not available"


@pytest.mark.parametrize("path", NOT_FILES)
@pytest.mark.parametrize(
    ("target", "column", "detail"),
    [
        ("proxy", "proxy_path", PROXY_NOT_AVAILABLE),
        ("thumbnail", "thumbnail_path", THUMBNAIL_NOT_AVAILABLE),
    ],
)
def test_proxy_or_thumbnail_without_a_file_key_is_not_available_and_flagged_absent(
    deps, catalog, mall_pin, path, target, column, detail
):
    video = catalog.video(*mall_pin, upload_objects=False)
    set_columns(catalog.engine, video["id"], **{column: path})

    with pytest.raises(handlers.NotAvailable) as raised:
        handlers.sign_url(SignUrl(video_id=str(video["id"]), target=target), deps)
    [item] = handlers.list_videos(ListVideos(), deps).videos

    assert raised.value.detail == detail
    flags = {"proxy_path": item.has_proxy, "thumbnail_path": item.has_thumbnail}
    assert flags[column] is False
    assert all(flag for name, flag in flags.items() if name != column)


def test_has_proxy_filter_stays_on_the_indexed_predicate_and_the_flag_tells_the_truth(
    deps, catalog, mall_pin
):
    blank = catalog.video(*mall_pin, upload_objects=False)
    set_columns(catalog.engine, blank["id"], proxy_path="")

    [item] = handlers.list_videos(ListVideos(has_proxy=True), deps).videos

    # The filter is "proxy_path IS NOT NULL" (what the partial indexes are built on);
    # only the item's own flag looks at the key itself.
    assert (item.id, item.has_proxy) == (blank["id"], False)
    assert handlers.list_videos(ListVideos(has_proxy=False), deps).total == 0


@pytest.mark.parametrize("key", NOT_FILES + [None])
def test_the_presigner_is_never_asked_to_sign_a_key_that_names_no_file(deps, key):
    with pytest.raises(handlers.NotAvailable):
        presign_file(deps.store, key, 900, datetime.now(UTC).replace(microsecond=0))


def test_a_real_file_key_next_to_blank_ones_is_still_signed_for_that_key(
    deps, catalog, mall_pin, bucket
):
    video = catalog.video(*mall_pin, upload_objects=False)
    set_columns(catalog.engine, video["id"], thumbnail_path=" ")

    result = handlers.sign_url(SignUrl(video_id=str(video["id"]), target="original"), deps)

    assert urlsplit(result.url).path == f"/{bucket}/{video['original_path']}"


# --- NaN and infinities in double precision columns -----------------------------------


@pytest.fixture
def non_finite_rows(catalog, mall_pin):
    mall, pin = mall_pin
    normal = catalog.video(mall, pin, upload_objects=False, duration_seconds=10.0)
    odd = []
    for duration, fps in (("NaN", "NaN"), ("Infinity", "-Infinity"), ("-Infinity", "Infinity")):
        row = catalog.video(mall, pin, upload_objects=False)
        set_columns(catalog.engine, row["id"], duration_seconds=duration, fps=fps)
        odd.append(row)
    return mall, normal, odd


def test_non_finite_durations_and_fps_come_out_as_null(deps, non_finite_rows):
    _, normal, odd = non_finite_rows

    page = handlers.list_videos(ListVideos(), deps)
    details = [handlers.get_video(GetVideo(video_id=str(row["id"])), deps) for row in odd]
    url = handlers.sign_url(SignUrl(video_id=str(odd[0]["id"])), deps)

    durations = {item.id: item.duration_seconds for item in page.videos}
    assert durations == {normal["id"]: 10.0, **{row["id"]: None for row in odd}}
    assert [(d.duration_seconds, d.fps) for d in details] == [(None, None)] * 3
    assert url.duration_seconds is None
    for model in (page, *details, url):
        strict_json(model)


def test_statistics_skip_non_finite_durations(deps, non_finite_rows):
    mall, _, _ = non_finite_rows

    global_stats = handlers.get_stats(GetStats(), deps)
    mall_stats = handlers.get_stats(GetStats(mall_id=str(mall)), deps)

    assert (global_stats.total_videos, global_stats.total_duration_seconds) == (4, 10.0)
    assert (mall_stats.total_videos, mall_stats.total_duration_seconds) == (4, 10.0)
    strict_json(global_stats)


def test_durations_so_large_their_sum_would_overflow_are_skipped_too(deps, catalog, mall_pin):
    mall, pin = mall_pin
    catalog.video(mall, pin, upload_objects=False, duration_seconds=10.0)
    for _ in range(2):
        catalog.video(mall, pin, upload_objects=False, duration_seconds=1e308)

    handlers.refresh_stats(RefreshStats(), deps)
    stats = handlers.get_stats(GetStats(mall_id=str(mall)), deps)

    assert (stats.total_videos, stats.total_duration_seconds) == (3, 10.0)


def test_refreshed_statistics_with_non_finite_rows_are_cached_and_served_again(
    deps, non_finite_rows, redis_client
):
    mall, _, _ = non_finite_rows

    handlers.refresh_stats(RefreshStats(), deps)
    served = [handlers.get_stats(GetStats(mall_id=m), deps) for m in (None, str(mall))]

    assert [s.total_duration_seconds for s in served] == [10.0, 10.0]
    for scope in (None, mall):
        cached = VideoStats.model_validate_json(redis_client.get(stats_key(scope)))
        assert cached.total_duration_seconds == 10.0


# --- a poisoned stats cache -----------------------------------------------------------

POISON = [
    b"\xff\xfe not json",
    b"{}",
    b"[]",
    b'{"mall_id": null, "total_videos": null, "by_status": {}, "total_storage_bytes": null,'
    b' "total_duration_seconds": null, "refreshed_at": "2025-10-31T10:00:00Z"}',
    b'{"mall_id": null, "total_videos": 1, "by_status": {}, "total_storage_bytes": 5,'
    b' "total_duration_seconds": NaN, "refreshed_at": "2025-10-31T10:00:00Z"}',
    b'{"mall_id": null, "total_videos": 1, "by_status": {}, "total_storage_bytes": 5,'
    b' "total_duration_seconds": 1.0, "refreshed_at": "0001-01-01T00:00:00+01:00"}',
]


@pytest.mark.parametrize("poison", POISON)
@pytest.mark.parametrize("scoped", [False, True])
def test_a_poisoned_cache_entry_is_a_logged_miss_then_recomputed_and_rewritten(
    deps, catalog, mall_pin, redis_client, caplog, poison, scoped
):
    mall, pin = mall_pin
    catalog.video(mall, pin, upload_objects=False, duration_seconds=4.0)
    scope = mall if scoped else None
    redis_client.set(stats_key(scope), poison)

    with caplog.at_level(logging.INFO, logger="videoworker.cache"):
        stats = handlers.get_stats(GetStats(mall_id=str(mall) if scoped else None), deps)

    assert (stats.mall_id, stats.total_videos, stats.total_duration_seconds) == (scope, 1, 4.0)
    assert [r.getMessage() for r in caplog.records] == ["stats.cache.invalid"]
    assert poison.decode(errors="replace") not in caplog.text
    assert VideoStats.model_validate_json(redis_client.get(stats_key(scope))) == stats
    # The rewritten entry is a plain hit from now on: nothing more is logged.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="videoworker.cache"):
        again = handlers.get_stats(GetStats(mall_id=str(mall) if scoped else None), deps)
    assert again == stats and caplog.records == []


def test_a_cache_entry_for_another_scope_is_not_served(deps, catalog, mall_pin, redis_client):
    mall, pin = mall_pin
    other = catalog.mall("Other")
    catalog.video(mall, pin, upload_objects=False)
    foreign = handlers.get_stats(GetStats(mall_id=str(other)), deps)
    redis_client.set(stats_key(mall), foreign.model_dump_json())

    stats = handlers.get_stats(GetStats(mall_id=str(mall)), deps)

    assert (stats.mall_id, stats.total_videos) == (mall, 1)


# --- timestamps outside what a Python datetime holds ----------------------------------


@pytest.fixture
def edge_rows(catalog, mall_pin):
    """Rows whose uploaded_at sorts first and last, among ordinary ones."""
    mall, pin = mall_pin
    now = datetime.now(UTC)
    ordinary = [
        catalog.video(mall, pin, upload_objects=False, uploaded_at=now - timedelta(hours=i))
        for i in range(3)
    ]
    edges = {}
    for name, value in (
        ("infinity", "infinity"),
        ("year_20000", "20000-01-01 00:00:00+00"),
        ("minus_infinity", "-infinity"),
        ("bc", "0044-03-15 12:00:00+00 BC"),
    ):
        row = catalog.video(mall, pin, upload_objects=False)
        set_columns(catalog.engine, row["id"], uploaded_at=value)
        edges[name] = row
    return mall, ordinary, edges


def test_a_first_page_holding_infinity_rows_is_served_with_clamped_instants(deps, edge_rows):
    _, ordinary, edges = edge_rows

    page = handlers.list_videos(ListVideos(page_size=100), deps)

    # Order stays on the stored values: infinity above year 20000, above today, ...
    expected = [edges["infinity"], edges["year_20000"], *ordinary, edges["bc"]]
    expected.append(edges["minus_infinity"])
    assert [item.id for item in page.videos] == [row["id"] for row in expected]
    assert [item.uploaded_at for item in page.videos[:2]] == [LATEST, LATEST]
    assert [item.uploaded_at for item in page.videos[-2:]] == [EARLIEST, EARLIEST]
    body = strict_json(page)
    assert body["data"]["videos"][0]["uploaded_at"] == "9999-12-31T23:59:59.999999Z"
    assert body["data"]["videos"][-1]["uploaded_at"] == "0001-01-01T00:00:00Z"


def test_the_first_page_of_two_starts_with_the_infinity_row(deps, edge_rows):
    _, _, edges = edge_rows

    first = handlers.list_videos(ListVideos(page_size=2), deps)
    last = handlers.list_videos(ListVideos(page=4, page_size=2), deps)

    assert [item.id for item in first.videos] == [
        edges["infinity"]["id"],
        edges["year_20000"]["id"],
    ]
    assert [item.id for item in last.videos] == [edges["minus_infinity"]["id"]]


def test_date_filters_compare_the_stored_values(deps, edge_rows):
    _, ordinary, edges = edge_rows

    future = handlers.list_videos(ListVideos(uploaded_after="9000-01-01T00:00:00Z"), deps)
    past = handlers.list_videos(ListVideos(uploaded_before="0002-01-01T00:00:00Z"), deps)

    assert {item.id for item in future.videos} == {
        edges["infinity"]["id"],
        edges["year_20000"]["id"],
    }
    assert {item.id for item in past.videos} == {edges["bc"]["id"], edges["minus_infinity"]["id"]}


@pytest.mark.parametrize("name", ["infinity", "year_20000", "minus_infinity", "bc"])
def test_get_and_sign_url_of_an_edge_row_answer(deps, edge_rows, name):
    _, _, edges = edge_rows
    row = edges[name]

    detail = handlers.get_video(GetVideo(video_id=str(row["id"])), deps)
    url = handlers.sign_url(SignUrl(video_id=str(row["id"])), deps)

    assert detail.uploaded_at == (LATEST if name in ("infinity", "year_20000") else EARLIEST)
    assert url.video_id == row["id"] and url.url
    strict_json(detail)


def test_optional_timestamps_outside_the_calendar_come_out_as_null(deps, catalog, mall_pin):
    video = catalog.video(*mall_pin, upload_objects=False)
    set_columns(
        catalog.engine,
        video["id"],
        recorded_at="infinity",
        created_at="-infinity",
        updated_at="20000-01-01 00:00:00+00",
        processing_started_at="0044-03-15 00:00:00+00 BC",
        processing_completed_at="infinity",
    )

    detail = handlers.get_video(GetVideo(video_id=str(video["id"])), deps)
    [item] = handlers.list_videos(ListVideos(), deps).videos

    assert (
        detail.recorded_at,
        detail.created_at,
        detail.updated_at,
        detail.processing_started_at,
        detail.processing_completed_at,
    ) == (None,) * 5
    assert item.recorded_at is None
    assert detail.uploaded_at == video["uploaded_at"]


def test_ordinary_timestamps_read_back_exactly_in_utc(deps, catalog, mall_pin):
    uploaded = datetime(2025, 10, 31, 10, 0, 0, 123_456, tzinfo=UTC)
    video = catalog.video(*mall_pin, upload_objects=False, uploaded_at=uploaded)
    set_columns(catalog.engine, video["id"], created_at="9999-12-31 23:59:59.999999+00")

    detail = handlers.get_video(GetVideo(video_id=str(video["id"])), deps)
    [item] = handlers.list_videos(ListVideos(), deps).videos

    assert detail.uploaded_at == item.uploaded_at == uploaded
    assert detail.recorded_at == item.recorded_at == video["recorded_at"]
    assert detail.created_at == LATEST
    assert strict_json(detail)["data"]["uploaded_at"] == "2025-10-31T10:00:00.123456Z"
