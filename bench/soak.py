"""Soak: many mixed requests on the embedded stack, and whether anything keeps growing.

What it does: loads ``--videos`` rows (``bench.dataset``), starts the production worker
(prefork, 2 children, both queues) and sends ``--requests`` messages (default 100,000)
from 4 caller processes, in batches of 20 whose answers are awaited:

* reads: ``videos.get`` 30%, ``videos.sign_url`` 25% (every target), ``videos.list``
  10% (pages of a mall; half of them with ``q``, some with gallery URLs),
  ``videos.sign_urls`` 5%, ``videos.stats`` 10%;
* changes: a video moved to the trash and restored after every batch, a real delete
  every 100 requests, a ``videos.bulk_delete`` dry run every 100;
* refusals: 10% invalid requests (a bad UUID, an unknown kwarg, an out-of-range page),
  each answered ``invalid_request``;
* and, as beat would, a stats refresh, a purge and a retention sweep's dry run at every
  sample.

Every ``--interval`` seconds (10) it samples the cache and result Redis (keys by kind,
``used_memory``), PostgreSQL (the size of each table with its indexes) and the
worker's resident memory (main process and pool children). Results are kept
``--result-seconds`` (60; production keeps them an hour) so that their keys reach
their steady state within the run: their number is rate × lifetime, and that is what
this shows. Relayed events are kept as long (``EVENTS_KEEP_SENT_SECONDS``), for the
same reason.

Target: every sampled figure ends flat: its peak over the last quarter of the run
within 5% of its peak over the second quarter (peaks, because stores bounded by an age
rise and fall with their expiry). ``deletion_audit`` is left
out of the verdict: one row per deleted video is what it is for, and it is kept for
``AUDIT_RETENTION_DAYS`` (see docs/production.md's stores table). The queues
(``storage_deletions``, ``event_outbox``) are judged by the rows they hold; the size of
their files, which keep the pages of rows that came and went until vacuum reuses them,
is shown beside.
Run: ``python -m bench soak [--requests 100000] [--videos 20000]`` or ``make soak``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from bench.common import (
    SpawnPool,
    Stack,
    WorkerProcess,
    WorkerSpec,
    outside_app,
    pick_videos,
    stopping,
    tree_memory,
)
from bench.harness import Table, bench, log, parser

BATCH = 20
CALLERS = 4
MB = 1024 * 1024
TARGETS = ("proxy", "original", "thumbnail")
LEFT_OUT = ("deletion_audit",)
# Rows come and go: judged by the rows they hold, their files' size only shown.
QUEUES = ("storage_deletions", "event_outbox")
TABLES = (
    "videos",
    "camera_pins",
    "malls",
    "processing_jobs",
    "storage_deletions",
    "mall_retention",
    "deletion_audit",
    "video_counts_daily",
    "video_counts_monthly",
    "video_counts_mall_daily",
    "video_counts_mall_monthly",
    "event_outbox",
)


def request(i: int, ids: Sequence[str], malls: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """The ``i``-th request of the fixed mix (positions 0..99 repeat)."""
    slot, video, mall = i % 100, ids[i % len(ids)], malls[i % len(malls)]
    if slot < 30:
        return "videos.get", {"video_id": video}
    if slot < 55:
        return "videos.sign_url", {"video_id": video, "target": TARGETS[i % 3]}
    if slot < 65:
        kwargs: dict[str, Any] = {"mall_id": mall, "page": 1 + i % 20}
        if slot % 2:
            kwargs["q"] = ("CAM", "incident", "Entrance", "zzz-none")[i % 4]
        if slot == 64:
            kwargs["sign"] = ["thumbnail"]
        return "videos.list", kwargs
    if slot < 70:
        return "videos.sign_urls", {"video_ids": [ids[(i + k) % len(ids)] for k in range(10)]}
    if slot < 80:
        return "videos.stats", {"mall_id": mall} if i % 2 else {}
    if slot < 90:
        bad = (
            {"video_id": "not-a-uuid"},
            {"video_id": video, "colour": "red"},
            {"video_id": video, "expires_minutes": 0},
        )[i % 3]
        return ("videos.get", "videos.sign_url", "videos.sign_url")[i % 3], bad
    if slot == 90:
        return "videos.bulk_delete", {"filters": {"mall_id": mall}, "dry_run": True}
    return "videos.get", {"video_id": video}


def caller_job(job: tuple[str, str, int, int, list[str], list[str], list[str], list[str]]) -> int:
    """One caller: batches of the mix, then a trash and a restore of a video of its own
    (so no other caller reads it while it is in the trash), a delete per 100."""
    broker, backend, start, count, ids, malls, own, doomed = job
    queue_of = {
        "videos.bulk_delete": "videos.maintenance",
        "videos.delete": "videos.maintenance",
        "videos.restore": "videos.maintenance",
    }
    app = outside_app(broker, backend)

    def ask(name: str, kwargs: dict[str, Any]) -> Any:
        return app.send_task(name, kwargs=kwargs, queue=queue_of.get(name, "videos"))

    def expect(result: Any, name: str, kwargs: dict[str, Any]) -> None:
        envelope = result.get(timeout=120)
        invalid = any(v in ("not-a-uuid", "red", 0) for v in kwargs.values())
        wanted = "invalid_request" if invalid else None
        got = None if envelope.get("ok") else envelope["error"]["code"]
        if got != wanted:
            raise RuntimeError(f"{name} {kwargs!r} answered {envelope!r}")

    sent = 0
    try:
        for first in range(start, start + count, BATCH):
            end = min(first + BATCH, start + count)
            calls = [request(i, ids, malls) for i in range(first, end)]
            for result, (name, kwargs) in [(ask(n, k), (n, k)) for n, k in calls]:
                expect(result, name, kwargs)
            video = own[(first // BATCH) % len(own)]
            expect(ask("videos.delete", {"video_id": video, "trash": True}), "trash", {})
            expect(ask("videos.restore", {"video_id": video}), "restore", {})
            sent += len(calls) + 2
            if (first // BATCH) % 5 == 0 and doomed:
                victim = doomed.pop()
                expect(ask("videos.delete", {"video_id": victim}), "delete", {})
                sent += 1
    finally:
        app.close()
    return sent


def sample(stack: Stack, worker: WorkerProcess) -> dict[str, float]:
    import psycopg
    import redis

    from bench.dataset import conninfo

    figures: dict[str, float] = {}
    for name, url in (("cache", stack.env["REDIS_URL"]), ("results", stack.backend_url)):
        client = redis.Redis.from_url(url)
        figures[f"redis {name} keys"] = client.dbsize()
        if name == "cache":
            figures["redis used_memory MB"] = client.info("memory")["used_memory"] / MB
            kinds: dict[str, int] = {}
            for key in client.scan_iter(count=5000):
                kind = key.decode(errors="replace").split(":")[:2]
                kinds[":".join(kind)] = kinds.get(":".join(kind), 0) + 1
            for kind, n in kinds.items():
                figures[f"redis cache {kind}"] = n
        client.close()
    with psycopg.connect(conninfo(stack.database_url)) as conn:
        # Queues are judged by what they hold: their files keep the pages of rows that
        # came and went until vacuum reuses them.
        for table in QUEUES:
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            figures[f"pg {table} rows"] = rows[0] if rows else 0
        unsent = conn.execute("SELECT count(*) FROM event_outbox WHERE sent_at IS NULL").fetchone()
        figures["pg event_outbox unsent rows"] = unsent[0] if unsent else 0
        for table in TABLES:
            size = conn.execute("SELECT pg_total_relation_size(%s::regclass)", [table]).fetchone()
            figures[f"pg {table} MB"] = (size[0] if size else 0) / MB
    figures["worker RSS MB"] = tree_memory(worker.pid)["rss"] / MB
    return figures


def scheduled(app: Any) -> None:
    """What beat sends: each answered, none awaited longer than a sample's interval."""
    for name, kwargs in (
        ("videos.refresh_stats", {}),
        ("videos.purge_storage", {}),
        ("videos.retention_sweep", {"dry_run": True}),
    ):
        app.send_task(name, kwargs=kwargs, queue="videos.maintenance").get(timeout=60)


@bench("soak")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("soak", __doc__)
    options.add_argument("--requests", type=int, default=100_000)
    options.add_argument("--videos", type=int, default=20_000, help="catalog rows to load")
    options.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    options.add_argument("--result-seconds", type=int, default=60)
    args = options.parse_args(argv)

    from bench.dataset import load

    samples: list[tuple[float, int, dict[str, float]]] = []
    with Stack() as stack:
        load(stack.database_url, args.videos, log=False)
        ids = pick_videos(stack.database_url, limit=2_000)
        live, trashable, doomed = ids[:1_200], ids[1_200:1_400], ids[1_400:]
        malls = _malls(stack.database_url)
        spec = WorkerSpec(conf={"result_expires": args.result_seconds})
        # Relayed events are kept an hour in production; a minute here, so that the
        # outbox reaches within the run the steady state it keeps in service.
        env = {**stack.env, "EVENTS_KEEP_SENT_SECONDS": str(args.result_seconds)}
        worker = WorkerProcess(spec, env, stack.log_path("soak-worker"))
        app = outside_app(stack.broker_url, stack.backend_url)
        pool = SpawnPool(CALLERS)
        done = threading.Event()
        with stopping(worker, pool):
            worker.start()
            worker.wait_ready(lambda: app.send_task("videos.stats", queue="videos").get(3))
            started = time.monotonic()
            share = -(-args.requests // CALLERS)
            jobs = [
                (
                    stack.broker_url,
                    stack.backend_url,
                    n * share,
                    min(share, args.requests - n * share),
                    live,
                    malls,
                    trashable[n::CALLERS],
                    doomed[n::CALLERS],
                )
                for n in range(CALLERS)
            ]
            outcome = pool.pool.map_async(caller_job, jobs, chunksize=1)
            threading.Thread(target=lambda: (outcome.wait(), done.set()), daemon=True).start()
            while True:
                scheduled(app)
                samples.append((time.monotonic() - started, 0, sample(stack, worker)))
                log(f"{samples[-1][0]:6.0f} s: {_brief(samples[-1][2])}")
                if done.wait(args.interval):
                    break
            sent = sum(outcome.get())
            elapsed = time.monotonic() - started
            samples.append((elapsed, sent, sample(stack, worker)))
            app.close()

    return report(samples, sent, elapsed, args)


def report(samples: list, sent: int, elapsed: float, args: Any) -> int:
    """Each figure's peak over the second quarter of the run against its peak over the
    last: stores bounded by an age (results, relayed events) rise and fall with their
    expiry, so one sample at half time and one at the end would compare two phases of
    that cycle; their peaks over a quarter (longer than the cycle) do not."""
    end = samples[-1][0]

    def peak(name: str, low: float, high: float) -> float:
        return max((s[2].get(name, 0.0) for s in samples if low <= s[0] <= high), default=0.0)

    first, last = samples[0][2], samples[-1][2]
    table = Table(
        f"soak: {sent:,} messages in {elapsed:.0f} s ({sent / elapsed:,.0f}/s), "
        f"sampled every {args.interval:.0f} s; results and relayed events kept "
        f"{args.result_seconds} s",
        ["figure", "first", "peak, 2nd quarter", "peak, last quarter", "last", "growth"],
        conditions=("embedded stack", "prefork 2 children"),
    )
    flat = True
    for name in sorted(last):
        before = peak(name, end / 4, end / 2)
        after = peak(name, end * 3 / 4, end)
        growth = (after - before) / before if before else (0.0 if not after else float("inf"))
        left_out = any(t in name for t in LEFT_OUT) or (
            name.endswith(" MB") and any(f" {t} " in name for t in QUEUES)
        )
        if not left_out and growth > 0.05:
            flat = False
        note = f"{growth:+.1%}" + (" (not judged, see doc)" if left_out else "")
        table.add(name, first.get(name, 0.0), before, after, last[name], note)
    table.verdict(
        "every figure flat: peak of the last quarter within 5% of the second's",
        flat,
        f"{sent:,} sent",
    )
    table.print()
    return 0


def _brief(figures: dict[str, float]) -> str:
    keep = ("redis cache keys", "redis results keys", "worker RSS MB", "pg videos MB")
    return ", ".join(f"{k} {figures.get(k, 0):,.1f}" for k in keep)


def _malls(database_url: str) -> list[str]:
    import psycopg

    from bench.dataset import conninfo

    with psycopg.connect(conninfo(database_url)) as conn:
        return [str(r[0]) for r in conn.execute("SELECT id FROM malls ORDER BY id").fetchall()]
