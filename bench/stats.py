"""Statistics bench: the cached ``videos.stats`` read, a cache miss and the refresh,
against the same figures aggregated over ``videos``.

What it measures, in process, on the real adapters (``worker.bootstrap.build_deps``:
SQLAlchemy/psycopg to the embedded PostgreSQL, redis-py to the embedded Redis), with
``--videos`` rows loaded by ``bench.dataset`` (default 1,000,000):

* ``cached read``: ``handlers.get_stats`` with the Redis entry warm (one GET and the
  pydantic parse), global and for the busiest mall;
* ``cache miss``: what a miss runs, ``PostgresVideoRepository.stats``: a sum of the
  trigger-kept monthly figures (migration 0008), global and for that mall;
* ``refresh``: ``handlers.refresh_stats`` with no mall, i.e. ``videos.refresh_stats``:
  the fold of the writers' figure rows, the global figure, every mall's, one pipelined
  cache write and one ``stats.refreshed`` event per scope;
* the baseline, measured in the same rounds: the same aggregate over ``videos`` itself,
  which is how a miss and a refresh were computed before the figures. The bench checks
  that it gives the figures the repository gives, scope by scope.

The operations run in interleaved rounds (cached reads, then aggregates, then one
refresh), so a busy moment on the shared machine is spread over all of them.

How to read the table: milliseconds per operation; ``vs cached`` is the ratio of p50
to the cached global read's. Targets: cached read p50 <= 1 ms; refresh p95 <= 1 s
(at 10M rows: ``--videos 10000000``).
Run: ``python -m bench.stats [--videos 1000000] [--rounds 10]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import Stack, Table, log, ratio, run_label, summary
from handlers.access import UNRESTRICTED

CACHED_PER_ROUND = 200
TARGET_CACHED_MS = 1.0
TARGET_REFRESH_MS = 1000.0


def busiest_mall(database_url: str) -> str:
    import psycopg

    from bench.dataset import conninfo

    with psycopg.connect(conninfo(database_url)) as conn:
        row = conn.execute(
            "SELECT mall_id FROM videos GROUP BY mall_id ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    return str(row[0])


def raw_aggregate(connection: Any, mall_id: object | None) -> tuple[int, int, int]:
    """(videos, stored bytes, videos in the trash) counted over ``videos`` itself."""
    from sqlalchemy import func, select

    from worker.adapters.postgres.repositories import LIVE, STORED_BYTES, TRASHED, videos

    stmt = select(
        func.count().filter(LIVE),
        func.coalesce(func.sum(STORED_BYTES).filter(LIVE), 0),
        func.count().filter(TRASHED),
    ).select_from(videos)
    if mall_id is not None:
        stmt = stmt.where(videos.c.mall_id == mall_id)
    count, stored, trashed = connection.execute(stmt).one()
    return count, int(stored), trashed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stats", description=__doc__)
    parser.add_argument("--videos", type=int, default=1_000_000, help="rows to load")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    args = parser.parse_args(argv)

    from bench.dataset import load

    with Stack(s3=False) as stack:
        log(f"loading {args.videos:,} videos")
        report = load(stack.database_url, args.videos, log=False, trashed=0.01)
        log(report.describe())
        mall = busiest_mall(stack.database_url)

        import handlers
        from schemas import GetStats, RefreshStats
        from worker.bootstrap import build_deps
        from worker.settings import get_settings

        deps = build_deps(get_settings(), enqueue=lambda task, kwargs, countdown: None)
        global_query, mall_query = GetStats(), GetStats(mall_id=mall)
        handlers.refresh_stats(RefreshStats(), deps)  # folds, and warms every scope
        if deps.cache.get(None) is None or deps.cache.get(mall_query.mall_id) is None:
            raise SystemExit("the stats cache was not written")

        def kept(mall_id: object | None) -> Callable[[], object]:
            def run() -> object:
                with deps.reads() as uow:
                    return uow.videos.stats(UNRESTRICTED, mall_id, deps.clock())

            return run

        def raw(mall_id: object | None) -> Callable[[], object]:
            def run() -> object:
                with deps.reads() as uow:
                    return raw_aggregate(uow.connection, mall_id)

            return run

        for mall_id in (None, mall_query.mall_id):
            figure = kept(mall_id)()
            counted = raw(mall_id)()
            if counted != (
                figure.total_videos,  # type: ignore[attr-defined]
                figure.total_storage_bytes,  # type: ignore[attr-defined]
                figure.trash.total_videos,  # type: ignore[attr-defined]
            ):
                raise SystemExit(f"the kept figures differ from the rows: {figure} {counted}")

        operations: dict[str, tuple[Callable[[], object], int]] = {
            "cached read, global": (lambda: handlers.get_stats(global_query, deps), 0),
            "cached read, busiest mall": (lambda: handlers.get_stats(mall_query, deps), 0),
            "cache miss, global": (kept(None), 1),
            "cache miss, busiest mall": (kept(mall_query.mall_id), 1),
            "baseline: aggregate over videos, global": (raw(None), 1),
            "baseline: aggregate over videos, busiest mall": (raw(mall_query.mall_id), 1),
            "refresh_stats (fold, global + every mall)": (
                lambda: handlers.refresh_stats(RefreshStats(), deps),
                1,
            ),
        }
        per_round = {0: CACHED_PER_ROUND, 1: 2}
        for call, _ in operations.values():  # warm-up: pool, plans, buffers
            call()
        samples: dict[str, list[float]] = {name: [] for name in operations}
        log(f"{args.rounds} interleaved rounds")
        for _ in range(args.rounds):
            for name, (call, kind) in operations.items():
                for _ in range(per_round[kind]):
                    started = time.perf_counter()
                    call()
                    samples[name].append((time.perf_counter() - started) * 1000)

    stats = {name: summary(values) for name, values in samples.items()}
    base = stats["cached read, global"].p50
    table = Table(
        f"videos.stats on {args.videos:,} videos (1% in the trash), milliseconds per "
        f"operation ({run_label('loopback')})",
        ["operation", "n", "p50", "p95", "p99", "max", "vs cached"],
    )
    for name, s in stats.items():
        table.add(name, s.n, s.p50, s.p95, s.p99, s.max, ratio(s.p50, base))
    cached = max(stats["cached read, global"].p50, stats["cached read, busiest mall"].p50)
    refresh = stats["refresh_stats (fold, global + every mall)"].p95
    verdict = "yes" if cached <= TARGET_CACHED_MS else "NO"
    table.notes.append(f"cached read p50 <= {TARGET_CACHED_MS:g} ms: {verdict} ({cached:.2f} ms)")
    scale = "" if args.videos >= 10_000_000 else f" (on {args.videos:,} rows; the target is 10M)"
    verdict = "yes" if refresh <= TARGET_REFRESH_MS else "NO"
    table.notes.append(
        f"refresh p95 <= {TARGET_REFRESH_MS:g} ms: {verdict} ({refresh:.1f} ms){scale}"
    )
    miss = stats["cache miss, global"].p50
    raw_global = stats["baseline: aggregate over videos, global"].p50
    table.notes.append(f"cache miss, global: {raw_global / miss:.0f}x faster than the aggregate")
    table.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
