"""Statistics: served from the cache, recomputed from Postgres on a miss or a refresh."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from handlers.deps import Deps
from schemas.events import StatsRefreshed
from schemas.requests import FlushStaleStats, GetStats, RefreshStats
from schemas.responses import RefreshStatsResult, VideoStats

FLUSH_TASK = "videos.flush_stale_stats"


def get_stats(cmd: GetStats, deps: Deps) -> VideoStats:
    cached = deps.cache.get(cmd.mall_id)
    if cached is not None:
        return cached
    with deps.uow() as uow:
        stats = uow.videos.stats(cmd.mall_id, deps.clock())
    deps.cache.put([stats])
    return stats


def _save(deps: Deps, fresh: list[VideoStats], now: datetime) -> None:
    """One cache write, then one event per scope refreshed."""
    deps.cache.put(fresh)
    for stats in fresh:
        deps.publish(StatsRefreshed(mall_id=stats.mall_id, at=now))


def _refresh(
    deps: Deps, include_global: bool, mall_ids: Iterable[UUID], now: datetime
) -> list[VideoStats]:
    """One aggregate query per scope."""
    with deps.uow() as uow:
        fresh = [uow.videos.stats(None, now)] if include_global else []
        fresh += [uow.videos.stats(mall_id, now) for mall_id in mall_ids]
    _save(deps, fresh, now)
    return fresh


def refresh_stats(cmd: RefreshStats, deps: Deps) -> RefreshStatsResult:
    """Recompute one mall, or the global figure and every mall (two aggregate queries)."""
    now = deps.clock()
    if cmd.mall_id is not None:
        fresh = _refresh(deps, False, [cmd.mall_id], now)
    else:
        with deps.uow() as uow:
            fresh = [uow.videos.stats(None, now), *uow.videos.stats_per_mall(now)]
        _save(deps, fresh, now)
    return RefreshStatsResult(mall_id=cmd.mall_id, scopes_refreshed=len(fresh), refreshed_at=now)


def request_stats_refresh(deps: Deps, mall_ids: set[UUID]) -> None:
    """Mark the global figure and these malls stale; queue one flush per debounce window.

    A burst of deletes marks the same few scopes again and again, but only the first
    mark of a window queues a flush, so a thousand deletes cost a handful of refreshes.
    """
    if deps.cache.mark_dirty(mall_ids):
        deps.enqueue(FLUSH_TASK, {}, deps.policy.stats_debounce_seconds)


def flush_stale_stats(cmd: FlushStaleStats, deps: Deps) -> RefreshStatsResult:
    now = deps.clock()
    include_global, mall_ids = deps.cache.take_dirty()
    fresh = _refresh(deps, include_global, mall_ids, now)
    return RefreshStatsResult(mall_id=None, scopes_refreshed=len(fresh), refreshed_at=now)
