"""Statistics: served from the cache, recomputed from Postgres on a miss or a refresh."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from handlers import events
from handlers.access import UNRESTRICTED
from handlers.deps import Deps
from schemas.events import StatsRefreshed
from schemas.requests import FlushStaleStats, GetStats, RefreshStats
from schemas.responses import RefreshStatsResult, StatusCounts, TrashFigures, VideoStats

FLUSH_TASK = "videos.flush_stale_stats"
# videos.stats(by_pin=true) lists at most this many pins, largest storage first.
MAX_PINS = 1000


def get_stats(cmd: GetStats, deps: Deps) -> VideoStats:
    """The figures asked for, and with ``by_pin`` each pin's, of what the caller sees."""
    stats = _pin_stats(cmd, deps) if cmd.pin_id is not None else _scope_stats(cmd, deps)
    if not cmd.by_pin:
        return stats
    with deps.reads() as uow:
        pins = uow.figures.pin_figures(deps.scope, cmd.mall_id, cmd.pin_id, MAX_PINS)
    return stats.model_copy(update={"pins": pins})


def _pin_stats(cmd: GetStats, deps: Deps) -> VideoStats:
    """One pin's figure: its cached whole figure when the caller sees all of the pin (an
    admin, or a tenant given the pin), else computed over what the caller sees of it."""
    scope, pin_id = deps.scope, cmd.pin_id
    assert pin_id is not None
    now = deps.clock()
    whole_pin = scope.sees_everything or (scope.role == "tenant" and pin_id in scope.pins)
    if whole_pin and cmd.mall_id is None:
        stats = _pin_figures(deps, [pin_id], now)[0]
    else:
        with deps.reads() as uow:
            stats = uow.figures.stats(scope, cmd.mall_id, now, pin_id=pin_id)
    return stats.model_copy(update={"mall_id": cmd.mall_id, "pin_id": pin_id})


def _scope_stats(cmd: GetStats, deps: Deps) -> VideoStats:
    """What the caller sees, from cached figures wherever they add up to the answer.

    An admin's figure is the mall's or the global one. An operator's is the sum of its
    malls' figures (a mall filter outside them sums nothing: zeros). A tenant's is the
    sum of its pins' figures, each cached per pin and computed from the pin index on a
    miss; with a mall filter it is computed over the tenant's pins in that mall.
    """
    scope = deps.scope
    if scope.sees_everything:
        return _mall_or_global(deps, cmd.mall_id)
    now = deps.clock()
    malls = scope.malls_within(cmd.mall_id)
    if malls is not None:
        return _sum(cmd.mall_id, _mall_figures(deps, malls, now), now)
    if cmd.mall_id is not None:
        with deps.reads() as uow:
            return uow.figures.stats(scope, cmd.mall_id, now)
    return _sum(None, _pin_figures(deps, sorted(scope.pins), now), now)


def _mall_or_global(deps: Deps, mall_id: UUID | None) -> VideoStats:
    cached = deps.cache.get(mall_id)
    if cached is not None:
        return cached
    with deps.reads() as uow:
        stats = uow.figures.stats(deps.scope, mall_id, deps.clock())
    deps.cache.put([stats])
    return stats


def _mall_figures(deps: Deps, malls: list[UUID], now: datetime) -> list[VideoStats]:
    """Each mall's whole figure (the caller sees all of each), cached or computed."""
    figures = deps.cache.get_many(malls) if malls else {}
    missing = [mall_id for mall_id in malls if mall_id not in figures]
    if missing:
        with deps.reads() as uow:
            fresh = [uow.figures.stats(deps.scope, mall_id, now) for mall_id in missing]
        deps.cache.put(fresh)
        figures.update((stats.mall_id, stats) for stats in fresh if stats.mall_id is not None)
    return [figures[mall_id] for mall_id in malls]


def _pin_figures(deps: Deps, pins: list[UUID], now: datetime) -> list[VideoStats]:
    figures = deps.cache.get_pins(pins) if pins else {}
    missing = [pin_id for pin_id in pins if pin_id not in figures]
    if missing:
        with deps.reads() as uow:
            fresh = uow.figures.stats_per_pin(deps.scope, missing, now)
        deps.cache.put_pins(fresh)
        figures.update(fresh)
    return [figures[pin_id] for pin_id in pins]


def _sum(mall_id: UUID | None, parts: list[VideoStats], now: datetime) -> VideoStats:
    """Figures of disjoint sets of videos, added up; as fresh as the oldest of them."""
    return VideoStats(
        mall_id=mall_id,
        total_videos=sum(p.total_videos for p in parts),
        by_status=StatusCounts(
            pending=sum(p.by_status.pending for p in parts),
            processing=sum(p.by_status.processing for p in parts),
            completed=sum(p.by_status.completed for p in parts),
            failed=sum(p.by_status.failed for p in parts),
        ),
        total_storage_bytes=sum(p.total_storage_bytes for p in parts),
        total_duration_seconds=sum(p.total_duration_seconds for p in parts),
        refreshed_at=min((p.refreshed_at for p in parts), default=now),
        trash=TrashFigures(
            total_videos=sum(p.trash.total_videos for p in parts),
            total_storage_bytes=sum(p.trash.total_storage_bytes for p in parts),
        ),
    )


def _save(deps: Deps, fresh: list[VideoStats], now: datetime) -> None:
    """One cache write, then one event per scope refreshed (in the outbox, and on the
    v1 channel)."""
    deps.cache.put(fresh)
    with deps.uow() as uow:
        events.stats_refreshed(uow, [stats.mall_id for stats in fresh])
        uow.commit()
    for stats in fresh:
        deps.publish(StatsRefreshed(mall_id=stats.mall_id, at=now))


def _refresh(
    deps: Deps, include_global: bool, mall_ids: Iterable[UUID], now: datetime
) -> list[VideoStats]:
    """One aggregate query per scope.

    Whole figures, whoever queued the refresh: they go into the cache every caller's
    answer is summed from (a flush is queued by an operator's delete, too).
    """
    with deps.reads() as uow:
        fresh = [uow.figures.stats(UNRESTRICTED, None, now)] if include_global else []
        fresh += [uow.figures.stats(UNRESTRICTED, mall_id, now) for mall_id in mall_ids]
    _save(deps, fresh, now)
    return fresh


def refresh_stats(cmd: RefreshStats, deps: Deps) -> RefreshStatsResult:
    """Recompute one mall, or the global figure and every mall (two aggregate queries)."""
    now = deps.clock()
    if cmd.mall_id is not None:
        fresh = _refresh(deps, False, [cmd.mall_id], now)
    else:
        # The scheduled full refresh also keeps the kept figures short (see the port).
        with deps.uow() as uow:
            uow.figures.fold_figures()
            uow.commit()
        with deps.reads() as uow:
            fresh = [uow.figures.stats(UNRESTRICTED, None, now), *uow.figures.stats_per_mall(now)]
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
