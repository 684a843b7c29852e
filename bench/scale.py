"""Scale bench: the price of PgBouncer, and requests per second by worker processes.

What it measures, on the embedded stack (PostgreSQL, Redis, moto S3) loaded with
``--videos`` rows by ``bench.dataset``:

* the pooler's price in the handler (no broker): ``videos.get`` and ``sign_url`` as a
  pool child runs them (the read path, under the task's statement budget), direct to
  PostgreSQL and through PgBouncer in transaction mode (``DB_POOLER=transaction``:
  each read in a transaction of its own with its budget ``SET LOCAL``), interleaved in
  blocks of 100;
* the same through the broker: a caller, a real worker (prefork, 2 children) direct,
  and one through PgBouncer, each on a Redis database of its own as broker, their
  calls interleaved: ``python -m bench roundtrip``'s latency, with and without the pooler;
* throughput: ``videos.sign_url`` in a closed loop from ``--callers`` caller processes
  against one worker of 1, 2 and 4 prefork processes (``-c``), direct; requests per
  second, median of ``--rounds``.

Run: ``python -m bench scale [--calls 2000] [--seconds 5] [--rounds 3]``.
"""

from __future__ import annotations

import statistics
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
)
from bench.harness import Table, bench, interleaved, log, parser, ratio, short
from bench.roundtrip import CallerConfig, throughput


def pooled_env(stack: Stack, through: str) -> dict[str, str]:
    return {
        "DATABASE_URL": through,
        "DB_POOLER": "transaction",
        "EVENTS_RELAY_DATABASE_URL": stack.database_url,
    }


def handler_table(stack: Stack, through: str, ids: list[str], calls: int) -> None:
    import itertools
    import uuid

    import handlers
    from schemas import GetVideo, SignUrl
    from worker.adapters.postgres.budget import statement_budget
    from worker.bootstrap import build_deps
    from worker.settings import load_settings

    direct = build_deps(load_settings(), enqueue=lambda *a, **k: None)
    pooled = build_deps(
        load_settings(**{k.lower(): v for k, v in pooled_env(stack, through).items()}),
        enqueue=lambda *a, **k: None,
    )
    rotation = itertools.cycle([uuid.UUID(i) for i in ids])

    def get(deps: Any) -> Any:
        return lambda: handlers.get_video(GetVideo(video_id=next(rotation)), deps)

    def sign(deps: Any) -> Any:
        return lambda: handlers.sign_url(SignUrl(video_id=next(rotation)), deps)

    # The task edge's budget for a request (half its soft limit): every call carries one.
    with statement_budget(2500):
        samples = interleaved(
            {
                "get direct": get(direct),
                "get through PgBouncer": get(pooled),
                "sign_url direct": sign(direct),
                "sign_url through PgBouncer": sign(pooled),
            },
            calls,
            block=100,
            warmup=200,
        )
    table = Table(
        "Handler on the read path, direct and through PgBouncer (transaction mode)",
        ["call", "p50 ms", "p95 ms", "CPU us/call", "p50 vs direct"],
        (f"{calls} calls each",),
        number=short,
    )
    for name, got in samples.items():
        base = samples[name.split(" ")[0] + " direct"].summary().p50
        s = got.summary()
        table.add(name, s.p50, s.p95, f"{got.cpu_us():.0f}", ratio(s.p50, base))
    table.print()


def caller_on(broker: str, backend: str) -> Any:
    """A plain-Celery caller publishing to this broker. Its ``broker_url`` would be the
    environment's CELERY_BROKER_URL (the stack's) whatever it is given: Celery reads
    that variable at every use; the write URL is its own."""
    app = outside_app(broker, backend)
    app.conf.broker_write_url = broker
    return app


def roundtrip_table(stack: Stack, through: str, ids: list[str], calls: int) -> None:
    base = stack.broker_url.rsplit("/", 1)[0]
    sides = {
        "direct": ({}, f"{base}/4"),
        "through PgBouncer": (pooled_env(stack, through), f"{base}/5"),
    }
    workers = []
    apps = {}
    for name, (env, broker) in sides.items():
        worker = WorkerProcess(
            WorkerSpec(queues="videos"),
            {**env, "CELERY_BROKER_URL": broker},
            stack.log_path(f"scale-worker-{name.replace(' ', '-')}"),
        ).start()
        workers.append(worker)
        apps[name] = caller_on(broker, stack.backend_url)
    with stopping(*workers):
        rotation = iter(ids * (calls * 4 // max(1, len(ids)) + 4))

        def call(app: Any, task: str) -> Any:
            def one() -> None:
                envelope = app.send_task(
                    task, kwargs={"video_id": next(rotation)}, queue="videos"
                ).get(timeout=15)
                if not envelope.get("ok"):
                    raise RuntimeError(f"{task} answered {envelope!r}")

            return one

        for name, worker in zip(sides, workers, strict=True):
            worker.wait_ready(call(apps[name], "videos.get"))
        samples = interleaved(
            {
                f"{task} {name}": call(apps[name], f"videos.{task}")
                for task in ("get", "sign_url")
                for name in sides
            },
            calls,
            block=100,
            warmup=100,
        )
        for app in apps.values():
            app.close()
    table = Table(
        "Round trip through the broker and a worker (prefork, 2), direct and through PgBouncer",
        ["call", "p50 ms", "p95 ms", "p99 ms", "p50 vs direct"],
        (f"{calls} calls each, 1 caller",),
        number=short,
    )
    for name, got in samples.items():
        s = got.summary()
        direct = samples[name.split(" ")[0] + " direct"].summary().p50
        table.add(name, s.p50, s.p95, s.p99, ratio(s.p50, direct))
    table.print()


def throughput_table(
    stack: Stack, ids: list[str], callers: int, seconds: float, rounds: int, sizes: Sequence[int]
) -> None:
    import os

    config = CallerConfig(stack.broker_url, stack.backend_url, tuple(ids))
    pool = SpawnPool(callers)
    table = Table(
        "videos.sign_url throughput by worker processes (prefork -c N, one node)",
        ["processes", "req/s (median)", "rounds", "vs 1 process"],
        (f"{callers} caller processes, {seconds:g} s rounds", f"{os.cpu_count()} cores"),
    )
    first = None
    with stopping(pool):
        for size in sizes:
            worker = WorkerProcess(
                WorkerSpec(queues="videos", concurrency=size),
                {},
                stack.log_path(f"scale-throughput-{size}"),
            ).start()
            with stopping(worker):
                app = outside_app(stack.broker_url, stack.backend_url)
                worker.wait_ready(
                    lambda app=app: app.send_task(
                        "videos.get", kwargs={"video_id": ids[0]}, queue="videos"
                    ).get(timeout=5)
                )
                app.close()
                rates = [
                    throughput(pool.pool, config, "videos.sign_url", "videos", callers, seconds)[0]
                    for _ in range(rounds)
                ]
            rate = statistics.median(rates)
            first = first or rate
            log(f"{size} processes: {rate:.0f} req/s ({', '.join(f'{r:.0f}' for r in rates)})")
            table.add(str(size), rate, ", ".join(f"{r:.0f}" for r in rates), ratio(rate, first))
    table.print()


@bench("scale")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("scale", __doc__)
    options.add_argument("--calls", type=int, default=2000, help="latency samples per variant")
    options.add_argument("--seconds", type=float, default=5.0, help="per throughput round")
    options.add_argument("--rounds", type=int, default=3, help="throughput rounds (median)")
    options.add_argument("--callers", type=int, default=4, help="caller processes")
    options.add_argument("--processes", default="1,2,4", help="worker processes to try")
    options.add_argument("--videos", type=int, default=10_000, help="catalog rows to load")
    args = options.parse_args(argv)

    from sqlalchemy.engine import make_url

    from bench.dataset import load
    from worker.dev.cluster import PgBouncer

    if not PgBouncer.installed():
        log("pgbouncer is not installed (apt-get install -y pgbouncer): no pooler tables")
    with Stack() as stack:
        load(stack.database_url, args.videos, log=False)
        ids = pick_videos(stack.database_url)
        server = make_url(stack.database_url)
        if PgBouncer.installed():
            bouncer = PgBouncer(server_port=server.port or 5432, users=(server.username,)).start()
            with stopping(bouncer):
                through = bouncer.url(server.database or "videoworker", server.username)
                started = time.monotonic()
                handler_table(stack, through, ids, args.calls)
                roundtrip_table(stack, through, ids, args.calls // 2)
                log(f"pooler tables in {time.monotonic() - started:.0f} s")
        sizes = [int(n) for n in args.processes.split(",")]
        throughput_table(stack, ids, args.callers, args.seconds, args.rounds, sizes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
