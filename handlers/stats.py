"""Statistics: served from the cache, recomputed from Postgres on a miss or a refresh."""

from __future__ import annotations

from handlers.deps import Deps
from schemas.events import StatsRefreshed
from schemas.requests import GetStats, RefreshStats
from schemas.responses import RefreshStatsResult, VideoStats


def get_stats(cmd: GetStats, deps: Deps) -> VideoStats:
    cached = deps.cache.get(cmd.mall_id)
    if cached is not None:
        return cached
    with deps.uow() as uow:
        stats = uow.videos.stats(cmd.mall_id, deps.clock())
    deps.cache.put([stats])
    return stats


def refresh_stats(cmd: RefreshStats, deps: Deps) -> RefreshStatsResult:
    """Recompute one mall, or the global figure and every mall (two aggregate queries)."""
    now = deps.clock()
    with deps.uow() as uow:
        if cmd.mall_id is not None:
            fresh = [uow.videos.stats(cmd.mall_id, now)]
        else:
            fresh = [uow.videos.stats(None, now), *uow.videos.stats_per_mall(now)]
    deps.cache.put(fresh)
    for stats in fresh:
        deps.publish(StatsRefreshed(mall_id=stats.mall_id, at=now))
    return RefreshStatsResult(mall_id=cmd.mall_id, scopes_refreshed=len(fresh), refreshed_at=now)
