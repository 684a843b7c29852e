"""videos.stats and videos.refresh_stats against Postgres and the Redis cache."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import handlers
from schemas import EVENTS_CHANNEL, GetStats, RefreshStats, StatusCounts, VideoStats
from tests.support import poll
from worker.adapters.redis import RedisStatsCache, make_redis, stats_key
from worker.dev.embedded import free_port


def clock_at(moment: datetime):
    return lambda: moment


def two_malls(catalog):
    north, south = catalog.mall("North"), catalog.mall("South")
    north_pin, south_pin = catalog.pin(north), catalog.pin(south)
    catalog.video(north, north_pin, upload_objects=False, processing_status="completed")
    catalog.video(
        north,
        north_pin,
        upload_objects=False,
        proxy=False,
        processing_status="processing",
        file_size_bytes=1_000,
        duration_seconds=None,
    )
    catalog.video(
        south,
        south_pin,
        upload_objects=False,
        proxy=False,
        processing_status="failed",
        file_size_bytes=500,
        duration_seconds=9.5,
    )
    catalog.video(
        south,
        south_pin,
        upload_objects=False,
        proxy=False,
        processing_status="pending",
        file_size_bytes=250,
        duration_seconds=None,
    )
    return north, south


def test_global_stats_sum_originals_and_proxies_and_count_by_status(deps, catalog):
    two_malls(catalog)

    stats = handlers.get_stats(GetStats(), deps)

    assert stats.mall_id is None
    assert stats.total_videos == 4
    assert stats.by_status == StatusCounts(pending=1, processing=1, completed=1, failed=1)
    assert stats.total_storage_bytes == 125_829_120 + 18_874_368 + 1_000 + 500 + 250
    assert stats.total_duration_seconds == 130.0
    assert stats.model_dump(mode="json")["refreshed_at"].endswith("Z")


def test_mall_stats_cover_only_that_mall(deps, catalog):
    north, south = two_malls(catalog)

    north_stats = handlers.get_stats(GetStats(mall_id=str(north)), deps)
    south_stats = handlers.get_stats(GetStats(mall_id=str(south)), deps)

    assert (north_stats.mall_id, north_stats.total_videos) == (north, 2)
    assert north_stats.by_status == StatusCounts(processing=1, completed=1)
    assert north_stats.total_storage_bytes == 125_829_120 + 18_874_368 + 1_000
    assert north_stats.total_duration_seconds == 120.5
    assert (south_stats.total_videos, south_stats.total_storage_bytes) == (2, 750)
    assert south_stats.by_status == StatusCounts(pending=1, failed=1)


def test_stats_of_an_empty_catalogue_are_zeros(deps, catalog):
    stats = handlers.get_stats(GetStats(), deps)

    assert (stats.total_videos, stats.total_storage_bytes, stats.total_duration_seconds) == (
        0,
        0,
        0.0,
    )
    assert stats.by_status == StatusCounts()


def test_second_call_is_a_cache_hit_returning_the_cached_refreshed_at(deps, catalog, redis_client):
    north, _ = two_malls(catalog)
    first_time = datetime(2025, 10, 31, 12, 0, tzinfo=UTC)
    first = handlers.get_stats(GetStats(), dataclasses.replace(deps, clock=clock_at(first_time)))
    catalog.video(north, catalog.pin(north), upload_objects=False)

    second = handlers.get_stats(GetStats(), deps)

    assert second == first
    assert second.refreshed_at == first_time
    assert second.total_videos == 4
    cached = VideoStats.model_validate_json(redis_client.get(stats_key(None)))
    assert cached == first
    assert 0 < redis_client.ttl(stats_key(None)) <= 3600


def test_refresh_stats_rewrites_the_cache_for_the_global_figure_and_every_mall(
    deps, catalog, redis_client
):
    north, south = two_malls(catalog)
    handlers.get_stats(GetStats(), deps)
    catalog.video(north, catalog.pin(north), upload_objects=False, proxy=False, file_size_bytes=7)
    refresh_time = datetime.now(UTC) + timedelta(minutes=10)

    result = handlers.refresh_stats(
        RefreshStats(), dataclasses.replace(deps, clock=clock_at(refresh_time))
    )

    assert (result.mall_id, result.scopes_refreshed) == (None, 3)
    after = handlers.get_stats(GetStats(), deps)
    assert (after.total_videos, after.refreshed_at) == (5, refresh_time)
    north_cached = VideoStats.model_validate_json(redis_client.get(stats_key(north)))
    south_cached = VideoStats.model_validate_json(redis_client.get(stats_key(south)))
    assert (north_cached.total_videos, north_cached.refreshed_at) == (3, refresh_time)
    assert (south_cached.total_videos, south_cached.refreshed_at) == (2, refresh_time)


def test_refresh_of_one_mall_leaves_the_others_alone_and_announces_it(deps, catalog, redis_client):
    north, south = two_malls(catalog)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(EVENTS_CHANNEL)

    def next_event() -> dict | None:
        received = pubsub.get_message(timeout=0.1)
        return received if received is not None and received["type"] == "message" else None

    # get_message already waits up to 0.1 s: no pause between tries.
    try:
        poll(
            lambda: pubsub.get_message(timeout=0.1),
            timeout=5,
            interval=0,
            message="the subscribe confirmation",
        )
        handlers.refresh_stats(RefreshStats(mall_id=str(north)), deps)

        assert redis_client.exists(stats_key(north)) == 1
        assert redis_client.exists(stats_key(south)) == 0
        assert redis_client.exists(stats_key(None)) == 0
        received = poll(next_event, timeout=5, interval=0, message="the stats.refreshed event")
    finally:
        pubsub.close()
    message = json.loads(received["data"])
    assert message is not None
    assert (message["event"], message["mall_id"]) == ("stats.refreshed", str(north))


def test_stats_are_still_answered_when_the_cache_redis_is_unreachable(deps, catalog):
    two_malls(catalog)
    unreachable = RedisStatsCache(make_redis(f"redis://127.0.0.1:{free_port()}/0"), 60)
    without_cache = dataclasses.replace(deps, cache=unreachable)

    stats = handlers.get_stats(GetStats(), without_cache)
    refreshed = handlers.refresh_stats(RefreshStats(), without_cache)

    assert (stats.total_videos, stats.total_storage_bytes) == (4, 125_829_120 + 18_874_368 + 1_750)
    assert refreshed.scopes_refreshed == 3
