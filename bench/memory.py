"""Memory bench: resident memory of a real worker, idle and after many requests.

What it measures: real worker processes (the production command, prefork with 2
children, as ``bench.roundtrip`` starts them) on the embedded stack loaded with
``--videos`` rows by ``bench.dataset``. Memory is read with psutil from each process's
``smaps`` and summed over the main process and its pool children:

* RSS: what ``ps`` shows; a page shared after fork counts in every process;
* PSS: shared pages split between their sharers: the sum is the real physical share;
* USS: pages only one process holds.

Two workers run side by side on their own queues and get the same requests, in the
same order, at the same time:

* ``production``: the worker as deployed;
* ``gc.freeze``: the same worker whose main process calls ``gc.collect(); gc.freeze()``
  just before the pool forks (``celeryd_after_setup``), a candidate for the lead. A
  forked child that runs a full collection writes to every object it inherited,
  turning pages it shared with its parent into private copies; frozen objects are
  never visited, so those pages stay shared. ``--no-variant`` runs production only.

Points: ``idle`` just after the worker first answered; ``warm`` after ``--warm``
requests (imports done, connection pools and caches filled: a worker after a minute
in service); then after every quarter of ``--requests`` (default 20,000 per worker;
``--requests 100000`` for the full figure). Requests are a fixed mix sent by 4 caller
processes in batches of 20: ``videos.get`` 40%, ``videos.sign_url`` 40% (all three
targets), ``videos.list`` 10% (pages 1..50 of a mall), ``videos.stats`` 10%, rotating
over 500 videos and every mall. Every answer is checked to be ``ok``.

How to read the table: MB; ``growth`` is against ``warm``. A leak shows as steady
growth from quarter to quarter (the ``per 10k`` note is the slope from the first
quarter to the last); a one-off step is a cache filling or pages being unshared. The
last note says whether the pool children are the processes the worker started with
(prefork replaces a child only if configured to, which this worker is not).
Run: ``python -m bench.memory [--requests 20000] [--no-variant]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.common import (
    OWN_QUEUE,
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
MIX = (
    ("videos.get", 4),
    ("videos.sign_url", 4),
    ("videos.list", 1),
    ("videos.stats", 1),
)
TARGETS = ("proxy", "original", "thumbnail")


def malls(database_url: str) -> list[str]:
    import psycopg

    from bench.dataset import conninfo

    with psycopg.connect(conninfo(database_url)) as conn:
        return [str(r[0]) for r in conn.execute("SELECT id FROM malls ORDER BY id").fetchall()]


def requests_for(n: int, offset: int, ids: Sequence[str], mall_ids: Sequence[str]) -> list:
    """The ``n`` requests starting at position ``offset`` of the fixed mix."""
    names = [name for name, weight in MIX for _ in range(weight)]
    out = []
    for i in range(offset, offset + n):
        name = names[i % len(names)]
        if name == "videos.get":
            kwargs: dict[str, Any] = {"video_id": ids[i % len(ids)]}
        elif name == "videos.sign_url":
            kwargs = {"video_id": ids[i % len(ids)], "target": TARGETS[i % 3]}
        elif name == "videos.list":
            kwargs = {"mall_id": mall_ids[i % len(mall_ids)], "page": 1 + i % 50}
        else:
            kwargs = {"mall_id": mall_ids[i % len(mall_ids)]} if i % 2 else {}
        out.append((name, kwargs))
    return out


def caller_job(job: tuple[str, str, Sequence[str], list[tuple[str, dict[str, Any]]]]) -> int:
    """One caller process: each batch goes to every queue, then all answers are checked."""
    broker, backend, queues, calls = job
    app = outside_app(broker, backend)
    try:
        for start in range(0, len(calls), BATCH):
            pending = [
                app.send_task(name, kwargs=kwargs, queue=queue)
                for name, kwargs in calls[start : start + BATCH]
                for queue in queues
            ]
            for result in pending:
                envelope = result.get(timeout=60)
                if not envelope.get("ok"):
                    raise RuntimeError(f"answered {envelope!r}")
    finally:
        app.close()
    return len(calls)


def send(pool: Any, stack: Stack, queues: Sequence[str], calls: list) -> None:
    share = -(-len(calls) // CALLERS)
    jobs = [
        (stack.broker_url, stack.backend_url, list(queues), calls[i : i + share])
        for i in range(0, len(calls), share)
    ]
    pool.map(caller_job, jobs, chunksize=1)


@bench("memory")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("memory", __doc__)
    options.add_argument("--requests", type=int, default=20_000, help="per worker")
    options.add_argument("--warm", type=int, default=1_000)
    options.add_argument("--videos", type=int, default=10_000, help="catalog rows to load")
    options.add_argument("--no-variant", action="store_true", help="production worker only")
    args = options.parse_args(argv)

    from bench.dataset import load

    specs = {"production": WorkerSpec(queues="videos.a", conf=OWN_QUEUE)}
    if not args.no_variant:
        specs["gc.freeze"] = WorkerSpec(queues="videos.b", conf=OWN_QUEUE, gc_freeze=True)
    queues = [spec.queues for spec in specs.values()]
    points: dict[str, list[tuple[str, int, dict[str, int]]]] = {name: [] for name in specs}

    def measure(label: str, count: int) -> None:
        for name, worker in workers.items():
            points[name].append((label, count, tree_memory(worker.pid)))

    with Stack() as stack:
        load(stack.database_url, args.videos, log=False)
        ids, mall_ids = pick_videos(stack.database_url), malls(stack.database_url)
        workers = {
            name: WorkerProcess(spec, stack.env, stack.log_path(name.replace(".", "-")))
            for name, spec in specs.items()
        }
        app = outside_app(stack.broker_url, stack.backend_url)
        pool = SpawnPool(CALLERS)
        with stopping(*workers.values(), pool):
            for worker in workers.values():
                worker.start()
            for worker in workers.values():
                queue = worker.spec.queues
                worker.wait_ready(lambda q=queue: app.send_task("videos.stats", queue=q).get(3))
            time.sleep(1)
            children = {name: _children(w.pid) for name, w in workers.items()}
            measure("idle", 0)
            log(f"warm-up: {args.warm:,} requests per worker")
            send(pool.pool, stack, queues, requests_for(args.warm, 0, ids, mall_ids))
            measure("warm", args.warm)
            done = 0
            quarter = args.requests // 4
            for q in range(4):
                n = quarter if q < 3 else args.requests - done
                log(f"requests {done + 1:,}..{done + n:,} per worker")
                send(pool.pool, stack, queues, requests_for(n, args.warm + done, ids, mall_ids))
                done += n
                measure(f"after {done:,}", args.warm + done)
            same = {name: children[name] == _children(w.pid) for name, w in workers.items()}
            app.close()

    table = Table(
        "worker memory, main + 2 prefork children, MB; both workers served the same "
        "requests at the same time",
        ["worker", "point", "requests", "RSS", "PSS", "USS", "RSS growth", "PSS growth",
         "USS growth"],
        conditions=("loopback",),
    )  # fmt: skip
    for name, series in points.items():
        warm = series[1][2]
        for label, count, mem in series:
            table.add(
                name,
                label,
                count,
                mem["rss"] / MB,
                mem["pss"] / MB,
                mem["uss"] / MB,
                (mem["rss"] - warm["rss"]) / MB,
                (mem["pss"] - warm["pss"]) / MB,
                (mem["uss"] - warm["uss"]) / MB,
            )
    for name, series in points.items():
        first, last = series[2], series[-1]
        span = max(1, last[1] - first[1])
        slope = {k: (last[2][k] - first[2][k]) / MB / span * 10_000 for k in ("rss", "pss")}
        table.notes.append(
            f"{name}: per 10k requests from the first quarter to the last: RSS "
            f"{slope['rss']:+.2f} MB, PSS {slope['pss']:+.2f} MB; pool children "
            f"{'unchanged' if same[name] else 'REPLACED'}"
        )
    table.print()
    return 0


def _children(pid: int) -> set[int]:
    import psutil

    return {c.pid for c in psutil.Process(pid).children(recursive=True)}


if __name__ == "__main__":
    sys.exit(main())
