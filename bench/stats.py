"""Statistics bench: the cached ``videos.stats`` read, a cache miss and the refresh,
against the same figures aggregated over ``videos``.

What it measures, in process, on the real adapters (``worker.bootstrap.build_deps``:
SQLAlchemy/psycopg to the embedded PostgreSQL, redis-py to the embedded Redis), with
``--videos`` rows loaded by ``bench.dataset`` (default 1,000,000):

* ``cached read``: ``handlers.get_stats`` with the Redis entry warm (one GET and the
  pydantic parse), global and for the busiest mall;
* ``cache miss``: ``handlers.get_stats`` with a cache that holds nothing, so it runs
  what a miss runs: a sum of the trigger-kept monthly figures (migration 0008), global
  and for that mall;
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

import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import NoCache, Stack
from bench.harness import Table, bench, interleaved, log, parser, ratio

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


# The same figures counted over ``videos`` itself; stored bytes are originals plus proxies.
AGGREGATE = (
    "SELECT count(*) FILTER (WHERE trashed_at IS NULL),"
    " coalesce(sum(file_size_bytes + coalesce(proxy_size_bytes, 0))"
    " FILTER (WHERE trashed_at IS NULL), 0),"
    " count(*) FILTER (WHERE trashed_at IS NOT NULL) FROM videos"
)


def raw_aggregate(conn: Any, mall_id: object | None) -> tuple[int, int, int]:
    """(videos, stored bytes, videos in the trash) counted over ``videos`` itself."""
    if mall_id is None:
        row = conn.execute(AGGREGATE).fetchone()
    else:
        row = conn.execute(AGGREGATE + " WHERE mall_id = %s", (mall_id,)).fetchone()
    count, stored, trashed = row
    return count, int(stored), trashed


@bench("stats")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("stats", __doc__)
    options.add_argument("--videos", type=int, default=1_000_000, help="rows to load")
    options.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    args = options.parse_args(argv)

    from bench.dataset import load

    with Stack(s3=False) as stack:
        log(f"loading {args.videos:,} videos")
        report = load(stack.database_url, args.videos, log=False, trashed=0.01)
        log(report.describe())
        mall = busiest_mall(stack.database_url)

        import psycopg

        import handlers
        from bench.dataset import conninfo
        from schemas import GetStats, RefreshStats
        from worker.bootstrap import build_deps
        from worker.settings import get_settings

        deps = build_deps(get_settings(), enqueue=lambda task, kwargs, countdown: None)
        missing = dataclasses.replace(deps, cache=NoCache())
        global_query, mall_query = GetStats(), GetStats(mall_id=mall)
        handlers.refresh_stats(RefreshStats(), deps)  # folds, and warms every scope
        if deps.cache.get(None) is None or deps.cache.get(mall_query.mall_id) is None:
            raise SystemExit("the stats cache was not written")
        raw = psycopg.connect(conninfo(stack.database_url), autocommit=True)

        def miss(query: GetStats) -> Callable[[], object]:
            return lambda: handlers.get_stats(query, missing)

        def counted(mall_id: object | None) -> Callable[[], object]:
            return lambda: raw_aggregate(raw, mall_id)

        for query in (global_query, mall_query):
            figure = miss(query)()
            found = counted(query.mall_id)()
            kept = (
                figure.total_videos,  # type: ignore[attr-defined]
                figure.total_storage_bytes,  # type: ignore[attr-defined]
                figure.trash.total_videos,  # type: ignore[attr-defined]
            )
            if found != kept:
                raise SystemExit(f"the kept figures differ from the rows: {kept} {found}")

        # Name: (operation, calls per round).
        operations: dict[str, tuple[Callable[[], object], int]] = {
            "cached read, global": (
                lambda: handlers.get_stats(global_query, deps),
                CACHED_PER_ROUND,
            ),
            "cached read, busiest mall": (
                lambda: handlers.get_stats(mall_query, deps),
                CACHED_PER_ROUND,
            ),
            "cache miss, global": (miss(global_query), 2),
            "cache miss, busiest mall": (miss(mall_query), 2),
            "baseline: aggregate over videos, global": (counted(None), 2),
            "baseline: aggregate over videos, busiest mall": (counted(mall_query.mall_id), 2),
            "refresh_stats (fold, global + every mall)": (
                lambda: handlers.refresh_stats(RefreshStats(), deps),
                2,
            ),
        }
        log(f"{args.rounds} interleaved rounds")
        timed = interleaved(
            {name: call for name, (call, _) in operations.items()},
            {name: per_round * args.rounds for name, (_, per_round) in operations.items()},
            block=CACHED_PER_ROUND,
            warmup=1,  # pool, plans, buffers
        )
        raw.close()

    stats = {name: samples.summary() for name, samples in timed.items()}
    base = stats["cached read, global"].p50
    table = Table(
        f"videos.stats on {args.videos:,} videos (1% in the trash), milliseconds per operation",
        ["operation", "n", "p50", "p95", "p99", "max", "vs cached"],
        conditions=("loopback",),
    )
    for name, s in stats.items():
        table.add(name, s.n, s.p50, s.p95, s.p99, s.max, ratio(s.p50, base))
    cached = max(stats["cached read, global"].p50, stats["cached read, busiest mall"].p50)
    refresh = stats["refresh_stats (fold, global + every mall)"].p95
    table.verdict(
        f"cached read p50 <= {TARGET_CACHED_MS:g} ms",
        cached <= TARGET_CACHED_MS,
        f"{cached:.2f} ms",
    )
    scale = "" if args.videos >= 10_000_000 else f" (on {args.videos:,} rows; the target is 10M)"
    table.verdict(
        f"refresh p95 <= {TARGET_REFRESH_MS:g} ms{scale}",
        refresh <= TARGET_REFRESH_MS,
        f"{refresh:.1f} ms",
    )
    miss_p50 = stats["cache miss, global"].p50
    raw_global = stats["baseline: aggregate over videos, global"].p50
    table.notes.append(
        f"cache miss, global: {raw_global / miss_p50:.0f}x faster than the aggregate"
    )
    table.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
