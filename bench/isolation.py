"""Isolation bench: requests on a ``-Q videos`` worker while a large retention sweep runs
on a ``-Q videos.maintenance`` worker, as the README's "Scaling out" advises.

What it measures: ``--videos`` expired videos (default 100,000, 3 objects each in moto's
bucket, uploaded 200 days ago, so the default 90-day retention deletes every one) and
500 live ones, on the embedded stack. Two workers run the production command, each
on one queue: ``-Q videos`` (requests) and ``-Q videos.maintenance`` (lifecycle), two
pool children each, on the same 2 cores. One outside caller (plain Celery, JSON, in a
process of its own) sends ``videos.sign_url`` for the live videos back to back:

1. ``idle``: ``--calls`` requests with nothing else running (the baseline);
2. ``sweep``: ``videos.retention_sweep`` is sent to the maintenance queue, and requests
   go on until no expired video is left (the sweep and its continuations deleting
   rows, queueing keys, removing objects and publishing events).

Both run once per ``--nice`` value (default ``0,10``): the maintenance worker started
under ``nice -n`` that value, on freshly loaded data each time. On a machine whose
cores the two workers share, a lower priority for lifecycle work is what keeps the
requests' tail short.

Then it checks that every expired video, queued key and object is gone and every live
video is still there. Target: p99 during the sweep <= 15 ms.

Run: ``python -m bench.isolation [--videos 100000] [--calls 2000] [--nice 0,10]``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bench.common import Stack, WorkerProcess, WorkerSpec, outside_app, stopping
from bench.deletion import load_expired, objects_left, put_objects, rows_left
from bench.harness import Table, bench, log, parser, summary

TARGET_P99_MS = 15.0
LIVE = 500


def add_live(database_url: str, count: int) -> list[str]:
    """``count`` videos uploaded now in the first mall: what the caller signs."""
    import psycopg

    from bench.dataset import conninfo

    with psycopg.connect(conninfo(database_url)) as conn:
        mall, pin = conn.execute("SELECT mall_id, id FROM camera_pins LIMIT 1").fetchone()
        ids = [str(uuid.uuid4()) for _ in range(count)]
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY videos (id, mall_id, pin_id, original_filename, original_path,"
                " file_size_bytes, proxy_path, proxy_size_bytes, processing_status, uploaded_at)"
                " FROM STDIN"
            ) as copy,
        ):
            for video in ids:
                copy.write_row(
                    (
                        video, mall, pin, "live.mp4", f"videos/{mall}/original/{video}.mp4",
                        1000, f"videos/{mall}/proxy/{video}.mp4", 100, "completed",
                        datetime.now(UTC),
                    )
                )  # fmt: skip
        conn.commit()
    return ids


def expired_left(database_url: str) -> int:
    import psycopg

    from bench.dataset import conninfo

    with psycopg.connect(conninfo(database_url)) as conn:
        return conn.execute(
            "SELECT count(*) FROM videos WHERE uploaded_at < now() - interval '100 days'"
        ).fetchone()[0]


def caller_process(
    broker_url: str,
    backend_url: str,
    ids: list[str],
    idle_calls: int,
    idle_done: Any,
    stop: Any,
    out: Any,
) -> None:
    """The outside caller, in a process of its own (the bench's process also runs moto's
    S3 server, whose threads would take the caller's GIL during the sweep): ``idle_calls``
    requests, then requests until ``stop``; both lists of latencies go to ``out``."""
    caller = outside_app(broker_url, backend_url)
    cycle = itertools.cycle(ids)

    def sign() -> float:
        started = time.perf_counter()
        envelope = caller.send_task(
            "videos.sign_url", kwargs={"video_id": next(cycle)}, queue="videos"
        ).get(timeout=30)
        if not envelope.get("ok"):
            raise RuntimeError(f"sign_url answered {envelope!r}")
        return (time.perf_counter() - started) * 1000

    for _ in range(200):
        sign()
    idle = [sign() for _ in range(idle_calls)]
    idle_done.set()
    during: list[float] = []
    while not stop.is_set():
        during.append(sign())
    caller.close()
    out.send((idle, during))


def sweep_with_requests(
    stack: Stack, args: argparse.Namespace, nice: int
) -> tuple[list[float], list[float], float, bool]:
    """One run on freshly loaded data: idle requests, then requests during the sweep;
    whether the data ended as expected."""
    import multiprocessing

    bucket = stack.env["S3_BUCKET"]
    log(f"loading {args.videos:,} expired videos and {3 * args.videos:,} objects")
    put_objects(bucket, load_expired(stack.database_url, args.videos))
    live = add_live(stack.database_url, LIVE)
    caller = outside_app(stack.broker_url, stack.backend_url)
    requests = WorkerProcess(WorkerSpec(queues="videos"), stack.env, stack.log_path("req"))
    maintenance = WorkerProcess(
        WorkerSpec(queues="videos.maintenance", nice=nice), stack.env, stack.log_path("maint")
    )
    spawn = multiprocessing.get_context("spawn")
    idle_done, stop = spawn.Event(), spawn.Event()
    receive, send = spawn.Pipe(duplex=False)

    with stopping(requests, maintenance):
        requests.start()
        maintenance.start()
        requests.wait_ready(
            lambda: caller.send_task(
                "videos.sign_url", kwargs={"video_id": live[0]}, queue="videos"
            ).get(timeout=30)
        )
        maintenance.wait_ready(
            lambda: caller.send_task(
                "videos.retention_sweep", kwargs={"dry_run": True}, queue="videos.maintenance"
            ).get(timeout=30)
        )
        process = spawn.Process(
            target=caller_process,
            args=(stack.broker_url, stack.backend_url, live, args.calls, idle_done, stop, send),
        )
        process.start()
        log(f"idle: {args.calls} requests")
        idle_done.wait(timeout=args.timeout)
        log(f"sweeping (maintenance worker at nice {nice}), with requests going on")
        caller.send_task("videos.retention_sweep", kwargs={}, queue="videos.maintenance")
        started = time.monotonic()
        while time.monotonic() - started < args.timeout and expired_left(stack.database_url):
            time.sleep(0.2)
        swept_in = time.monotonic() - started
        stop.set()
        idle, during = receive.recv()
        process.join(30)
    caller.close()
    videos, queued = rows_left(stack.database_url)
    ok = videos == LIVE and queued == 0 and objects_left(bucket) == 0
    return idle, during, swept_in, ok


@bench("isolation")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("isolation", __doc__)
    options.add_argument("--videos", type=int, default=100_000, help="expired videos to sweep")
    options.add_argument("--calls", type=int, default=2000, help="idle requests (baseline)")
    options.add_argument("--timeout", type=float, default=900, help="longest sweep to wait for")
    options.add_argument(
        "--nice", default="0,10", help="CPU priorities (nice) of the maintenance worker to run"
    )
    args = options.parse_args(argv)

    table = Table(
        f"videos.sign_url on a -Q videos worker, {args.videos:,}-video sweep on a -Q "
        "videos.maintenance worker, 1 caller, ms",
        ["phase", "calls", "p50", "p95", "p99", "max", "p99 / idle", "sweep s", "videos/s"],
        conditions=("loopback", "moto S3"),
    )
    all_ok = True
    with Stack() as stack:
        for nice in (int(n) for n in args.nice.split(",")):
            idle, during, swept_in, ok = sweep_with_requests(stack, args, nice)
            all_ok &= ok
            s_idle, s_during = summary(idle), summary(during)
            rate = args.videos / swept_in
            for name, s, values, sweep in (
                ("idle", s_idle, idle, ("-", "-")),
                (f"sweep, maintenance at nice {nice}", s_during, during,
                 (f"{swept_in:.1f}", f"{rate:,.0f}")),
            ):  # fmt: skip
                table.add(
                    name, str(len(values)), s.p50, s.p95, s.p99, s.max,
                    f"{s.p99 / s_idle.p99:.2f}x", *sweep,
                )  # fmt: skip
            table.verdict(
                f"maintenance at nice {nice}: p99 during the sweep <= {TARGET_P99_MS:.0f} ms",
                s_during.p99 <= TARGET_P99_MS,
                f"{s_during.p99:.2f} ms",
            )
            table.verdict(
                f"maintenance at nice {nice}: every expired video, queued key and object "
                f"gone, the {LIVE} live videos kept",
                ok,
                "checked after the sweep",
            )
    table.print()
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
