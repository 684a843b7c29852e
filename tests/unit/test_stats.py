"""get_stats and refresh_stats on fakes: cache hit, miss, refresh and events."""

from __future__ import annotations

import uuid
from datetime import timedelta

from handlers import flush_stale_stats, get_stats, refresh_stats
from schemas import (
    FlushStaleStats,
    GetStats,
    RefreshStats,
    StatsRefreshed,
    StatusCounts,
    VideoStats,
)
from tests.unit.fakes import T0, Fakes, make_video


def two_malls() -> tuple[Fakes, uuid.UUID, uuid.UUID]:
    fakes = Fakes()
    mall_a, mall_b = uuid.uuid4(), uuid.uuid4()
    fakes.add_videos(
        make_video(mall_id=mall_a, processing_status="completed"),
        make_video(
            mall_id=mall_a,
            processing_status="pending",
            proxy_path=None,
            proxy_size_bytes=None,
            duration_seconds=None,
            file_size_bytes=1_000,
        ),
        make_video(
            mall_id=mall_b,
            processing_status="failed",
            proxy_path=None,
            proxy_size_bytes=None,
            file_size_bytes=500,
            duration_seconds=10.0,
        ),
    )
    return fakes, mall_a, mall_b


def test_cache_hit_is_answered_without_touching_the_database():
    fakes = Fakes()
    cached = VideoStats(
        mall_id=None,
        total_videos=42,
        by_status=StatusCounts(completed=42),
        total_storage_bytes=1,
        total_duration_seconds=2.0,
        refreshed_at=T0 - timedelta(hours=1),
    )
    fakes.cache.entries[None] = cached

    assert get_stats(GetStats(), fakes.deps) == cached
    assert fakes.uow.transactions == 0


def test_cache_miss_computes_from_the_database_and_caches_the_result():
    fakes, mall_a, _ = two_malls()

    result = get_stats(GetStats(), fakes.deps)

    assert result.mall_id is None
    assert result.total_videos == 3
    assert result.by_status == StatusCounts(pending=1, processing=0, completed=1, failed=1)
    # Originals plus proxies.
    assert result.total_storage_bytes == 125_829_120 + 18_874_368 + 1_000 + 500
    assert result.total_duration_seconds == 130.5
    assert result.refreshed_at == T0
    assert fakes.cache.entries == {None: result}


def test_mall_stats_are_scoped_and_cached_under_the_mall():
    fakes, mall_a, _ = two_malls()

    result = get_stats(GetStats(mall_id=str(mall_a)), fakes.deps)

    assert (result.mall_id, result.total_videos) == (mall_a, 2)
    assert result.total_storage_bytes == 125_829_120 + 18_874_368 + 1_000
    assert set(fakes.cache.entries) == {mall_a}
    assert fakes.cache.gets == [mall_a]


def test_second_call_is_served_from_the_cache_with_the_first_refreshed_at():
    fakes, _, _ = two_malls()
    first = get_stats(GetStats(), fakes.deps)
    fakes.clock.advance(timedelta(minutes=5))

    second = get_stats(GetStats(), fakes.deps)

    assert second.refreshed_at == first.refreshed_at == T0
    assert fakes.uow.transactions == 1


def test_global_refresh_rewrites_the_global_figure_and_every_mall_and_announces_each():
    fakes, mall_a, mall_b = two_malls()
    get_stats(GetStats(), fakes.deps)
    fakes.clock.advance(timedelta(minutes=5))
    now = fakes.clock.now

    result = refresh_stats(RefreshStats(), fakes.deps)

    assert (result.mall_id, result.scopes_refreshed, result.refreshed_at) == (None, 3, now)
    assert set(fakes.cache.entries) == {None, mall_a, mall_b}
    assert all(stats.refreshed_at == now for stats in fakes.cache.entries.values())
    assert sorted(fakes.publisher.events, key=lambda e: str(e.mall_id)) == sorted(
        [StatsRefreshed(mall_id=m, at=now) for m in (None, mall_a, mall_b)],
        key=lambda e: str(e.mall_id),
    )
    assert get_stats(GetStats(), fakes.deps).refreshed_at == now


def test_mall_refresh_touches_only_that_mall():
    fakes, mall_a, _ = two_malls()

    result = refresh_stats(RefreshStats(mall_id=str(mall_a)), fakes.deps)

    assert (result.mall_id, result.scopes_refreshed) == (mall_a, 1)
    assert set(fakes.cache.entries) == {mall_a}
    assert fakes.publisher.events == [StatsRefreshed(mall_id=mall_a, at=T0)]


def test_refresh_caches_zeros_for_a_mall_whose_videos_are_all_gone():
    fakes, _, _ = two_malls()
    empty_mall = uuid.uuid4()
    fakes.uow.videos.malls.add(empty_mall)

    refresh_stats(RefreshStats(), fakes.deps)

    emptied = fakes.cache.entries[empty_mall]
    assert (emptied.total_videos, emptied.total_storage_bytes) == (0, 0)
    assert emptied.by_status == StatusCounts()


def test_flush_refreshes_only_the_scopes_marked_stale_and_rearms_the_debounce():
    fakes, mall_a, mall_b = two_malls()
    fakes.cache.mark_dirty([mall_a])

    result = flush_stale_stats(FlushStaleStats(), fakes.deps)

    assert (result.mall_id, result.scopes_refreshed, result.refreshed_at) == (None, 2, T0)
    assert set(fakes.cache.entries) == {None, mall_a}
    assert [e.mall_id for e in fakes.publisher.events] == [None, mall_a]
    assert fakes.cache.dirty == set()
    # The flush took the marker, so the next delete queues a new flush.
    assert fakes.cache.mark_dirty([mall_b]) is True


def test_flush_with_nothing_stale_refreshes_nothing():
    fakes, _, _ = two_malls()

    result = flush_stale_stats(FlushStaleStats(), fakes.deps)

    assert result.scopes_refreshed == 0
    assert fakes.cache.entries == {}
    assert fakes.publisher.events == []
