"""Tags and share links at size: a list by one tag and by two (exact totals), tagging
1,000 videos, and a share resolve of 20 videos against a sign_urls of 20.

The issue's size is 10M videos, 1M of them tagged, one tag on 100k; the defaults here
(1M videos, 100k tagged, the big tag on 10k) are what this machine builds in minutes:
``--videos 10000000 --tagged 1000000 --big 100000`` runs the issue's size. Every call
goes through the handlers as the worker wires them (``build_deps``), in this process:
the time is the handler's, its statements and its CPU, without the broker.

Tags are laid out as a deployment would have them: each tagged video carries one of
``--names`` everyday tags of its mall (spread evenly), the videos of ``big`` carry it
too, and ``second`` is on half of those and on as many others.
"""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Callable, Sequence

import psycopg

from bench.common import Stack
from bench.harness import MS, bench, log, parser, run_label, summary, verdict

TAGS_SQL = """
WITH tagged AS (
    SELECT id, mall_id, row_number() OVER (ORDER BY id) AS n
    FROM videos ORDER BY id LIMIT %(tagged)s
)
INSERT INTO tags (id, mall_id, name)
SELECT gen_random_uuid(), m.mall_id, 'tag ' || g
FROM (SELECT DISTINCT mall_id FROM tagged) AS m, generate_series(1, %(names)s) AS g
UNION ALL
SELECT gen_random_uuid(), m.mall_id, x
FROM (SELECT DISTINCT mall_id FROM tagged) AS m, unnest(ARRAY['big', 'second']) AS x
"""
PAIRS_SQL = """
WITH tagged AS (
    SELECT id, mall_id, pin_id, uploaded_at, trashed_at IS NOT NULL AS trashed,
           row_number() OVER (ORDER BY id) AS n
    FROM videos ORDER BY id LIMIT %(tagged)s
)
INSERT INTO video_tags (video_id, tag_id, tagged_by, mall_id, pin_id, uploaded_at, trashed)
SELECT v.id, t.id, 'bench', v.mall_id, v.pin_id, v.uploaded_at, v.trashed
FROM tagged AS v JOIN tags AS t ON t.mall_id = v.mall_id
  AND (t.name = 'tag ' || (v.n %% %(names)s + 1)
       OR (t.name = 'big' AND v.n %% %(every)s = 0)
       OR (t.name = 'second' AND v.n %% %(every)s IN (0, 1) AND v.n %% (2 * %(every)s) < 2))
"""


def timed(call: Callable[[], object], samples: int) -> list[float]:
    took = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        took.append((time.perf_counter() - started) * MS)
    return took


def lay_out(database_url: str, tagged: int, big: int, names: int) -> None:
    every = max(1, tagged // big)
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        conn.execute("TRUNCATE tags CASCADE")
        conn.execute(TAGS_SQL, {"tagged": tagged, "names": names})
        conn.execute(PAIRS_SQL, {"tagged": tagged, "names": names, "every": every})
        conn.execute("ANALYZE tags")
        counts = conn.execute(
            "SELECT t.name, count(*) FROM video_tags vt JOIN tags t ON t.id = vt.tag_id "
            "WHERE t.name IN ('big', 'second') GROUP BY t.name ORDER BY t.name"
        ).fetchall()
        pairs = conn.execute("SELECT count(*) FROM video_tags").fetchone()[0]
    # As autovacuum leaves pairs that old: visible to all, so a total reads the index only.
    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) video_tags")
    log(f"laid out {pairs:,} pairs; {dict(counts)}")


@bench("tags")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("tags", __doc__)
    options.add_argument("--videos", type=int, default=1_000_000)
    options.add_argument("--tagged", type=int, default=100_000)
    options.add_argument("--big", type=int, default=10_000, help="videos carrying 'big'")
    options.add_argument("--names", type=int, default=50, help="everyday tags per mall")
    options.add_argument("--samples", type=int, default=200)
    options.add_argument("--database-url", help="a migrated PostgreSQL to use instead")
    options.add_argument("--keep", action="store_true", help="reuse the catalogue loaded")
    args = options.parse_args(argv)

    from bench.dataset import load
    from handlers.catalog import list_videos
    from handlers.sharing import create_share, resolve_share
    from handlers.tagging import tag_videos
    from handlers.urls import sign_urls
    from schemas.requests import CreateShare, ListVideos, ResolveShare, SignUrls, TagVideos
    from worker.bootstrap import build_deps
    from worker.settings import load_settings

    with Stack(postgres=args.database_url is None, redis=True, s3=True) as stack:
        database_url = args.database_url or stack.database_url
        if not args.keep:
            log(f"loading {args.videos:,} videos")
            load(database_url, args.videos)
        log(f"tagging {args.tagged:,} videos, 'big' on {args.big:,}")
        lay_out(database_url, args.tagged, args.big, args.names)
        deps = build_deps(
            load_settings(database_url=database_url), enqueue=lambda *args, **kwargs: None
        )
        # As a worker's pool process runs a message: what was loaded before the fork is
        # frozen out of the collector's sight (worker.runtime.app, celeryd_after_setup).
        # Unfrozen, a full collection walking every module of this process lands inside
        # one timed call in eight (80 ms here), which no worker pays.
        gc.collect()
        gc.freeze()
        with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
            ids = [
                row[0] for row in conn.execute("SELECT id FROM videos ORDER BY id DESC LIMIT 1000")
            ]
        results: dict[str, list[float]] = {}
        one = ListVideos(tags=["big"])
        two = ListVideos(tags=["big", "second"])
        first = list_videos(one, deps)
        both = list_videos(two, deps)
        log(f"'big': {first.total:,} videos; 'big' and 'second': {both.total:,}")
        results["list tags=[big], exact total"] = timed(
            lambda: list_videos(one, deps), args.samples
        )
        results["list tags=[big, second], exact total"] = timed(
            lambda: list_videos(two, deps), args.samples
        )
        results["list tags=[big] page 50"] = timed(
            lambda: list_videos(ListVideos(tags=["big"], page=50), deps), args.samples
        )

        def tag_round() -> None:
            name = f"bench {uuid.uuid4().hex[:8]}"
            tag_videos(TagVideos(video_ids=ids, add=[name]), deps)

        results["tag 1,000 videos"] = timed(tag_round, max(20, args.samples // 10))
        twenty = ids[:20]
        # The same 20 URLs as the sign_urls (proxies), and the default share's 40
        # (proxies and thumbnails): the first is the like-for-like comparison.
        proxies = ResolveShare(
            token=create_share(CreateShare(video_ids=twenty, targets=["proxy"]), deps).token
        )
        default = ResolveShare(token=create_share(CreateShare(video_ids=twenty), deps).token)
        sign = SignUrls(video_ids=twenty, target="proxy")
        # Interleaved, so a busy moment of the shared machine hits each alike.
        resolves: list[float] = []
        wider: list[float] = []
        signs: list[float] = []
        for _ in range(args.samples):
            resolves += timed(lambda: resolve_share(proxies, deps), 1)
            wider += timed(lambda: resolve_share(default, deps), 1)
            signs += timed(lambda: sign_urls(sign, deps), 1)
        results["share_resolve of 20 videos (proxy)"] = resolves
        results["share_resolve of 20 (proxy, thumbnail)"] = wider
        results["sign_urls of 20 videos (proxy)"] = signs

    print(
        f"\nTags and shares, {args.videos:,} videos, {args.tagged:,} tagged, 'big' on "
        f"{args.big:,} ({run_label('in-process handlers, loopback PostgreSQL')})"
    )
    print(f"{'':40s} {'p50 ms':>9s} {'p95 ms':>9s} {'max ms':>9s}")
    figures = {}
    for name, took in results.items():
        figure = summary(took)
        figures[name] = figure
        print(f"{name:40s} {figure.p50:9.2f} {figure.p95:9.2f} {figure.max:9.2f}")
    print()
    for name in (
        "list tags=[big], exact total",
        "list tags=[big, second], exact total",
    ):
        p95 = figures[name].p95
        print(verdict(f"{name} p95 <= 30 ms", p95 <= 30, f"{p95:.1f} ms"))
    p95 = figures["tag 1,000 videos"].p95
    print(verdict("tagging 1,000 videos p95 <= 100 ms", p95 <= 100, f"{p95:.1f} ms"))
    base = figures["sign_urls of 20 videos (proxy)"].p95
    ours = figures["share_resolve of 20 videos (proxy)"].p95
    print(
        verdict(
            "share_resolve of 20 p95 <= 2x sign_urls of 20 (20 URLs each)",
            ours <= 2 * base,
            f"{ours:.2f} ms vs {base:.2f} ms, {ours / base:.2f}x",
        )
    )
    wide = figures["share_resolve of 20 (proxy, thumbnail)"].p95
    print(f"  (the default share, 40 URLs: {wide:.2f} ms, {wide / base:.2f}x)")
    return 0
