"""Deletion bench: a retention sweep of N expired videos with 3 objects each.

What it measures: ``handlers.sweep_retention`` (what ``videos.retention_sweep`` runs)
on the real adapters, against the embedded PostgreSQL, Redis and moto's S3 HTTP
server, over ``--videos`` videos (default 20,000), every one uploaded 200 days ago
with an original, a proxy and a thumbnail in the bucket (3N objects). Batches of
``--batch-size`` (default 500, the contract's default) are claimed with ``FOR
UPDATE SKIP LOCKED``, deleted with their keys queued in ``storage_deletions`` in
the same transaction, then removed from S3, settled, audited and announced (one
``video.deleted`` event per video, one debounced stats refresh request per batch).

Two runs on data of the same layout (same seed, reloaded in between):

* ``ours``: the worker's ``S3ObjectStore.delete_many``: ``DeleteObjects`` with up to
  1000 keys per request;
* ``baseline``: the same sweep with one ``DeleteObject`` request per key, as the
  original REST design deleted files. One request per object costs ~20 ms against
  moto on this machine, so 60,000 of them would take ~20 minutes: by default the
  baseline sweeps the first ``--baseline-videos`` (2,000) of the same videos, and the
  comparison is per video (its cost is linear in the number of objects).
  ``--baseline-videos 20000`` runs it on exactly the same set.

Each sweep runs in a fresh child process, so that its memory is its own (the moto
server and the bench's loader live in the parent). The child samples its RSS every
10 ms; ``RSS growth`` is the peak during the sweep minus the RSS just before it
(after the connections are warm). S3 calls are counted with botocore event hooks on
the store's client: ``before-call`` (API calls) and ``before-send`` (HTTP requests,
retries included). After each run the bench checks that no video row is left, the
bucket is empty and the deletion queue holds nothing.

How to read the table: ``videos/s`` = videos deleted / sweep wall time; ``vs
baseline`` = ratio of videos/s. Target: RSS growth <= 50 MB.
Run: ``python -m bench.deletion [--videos 20000] [--baseline-videos 2000]``.
"""

from __future__ import annotations

import multiprocessing
import random
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import Stack
from bench.harness import Table, bench, log, parser, ratio

MALLS = 20
SEED = 20261124
TARGET_RSS_MB = 50.0
MB = 1024 * 1024


# --- data ------------------------------------------------------------------------------


def load_expired(database_url: str, count: int, seed: int = SEED) -> list[str]:
    """Malls, pins and ``count`` completed videos uploaded 200 days ago; returns the keys."""
    import psycopg

    from bench.dataset import conninfo

    rng = random.Random(seed)

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    malls = [new_id() for _ in range(MALLS)]
    pins = {mall: new_id() for mall in malls}
    start = datetime.now(UTC) - timedelta(days=200)
    keys: list[str] = []
    with psycopg.connect(conninfo(database_url)) as conn:
        conn.execute(
            "TRUNCATE malls, camera_pins, videos, processing_jobs, storage_deletions,"
            " deletion_audit, mall_retention CASCADE"
        )
        with conn.cursor() as cur:
            with cur.copy("COPY malls (id, name) FROM STDIN") as copy:
                for n, mall in enumerate(malls):
                    copy.write_row((mall, f"Mall {n}"))
            with cur.copy("COPY camera_pins (id, mall_id, name) FROM STDIN") as copy:
                for mall, pin in pins.items():
                    copy.write_row((pin, mall, "Entrance"))
            columns = (
                "id, mall_id, pin_id, original_filename, original_path, file_size_bytes,"
                " proxy_path, proxy_size_bytes, thumbnail_path, duration_seconds,"
                " processing_status, uploaded_at"
            )
            with cur.copy(f"COPY videos ({columns}) FROM STDIN") as copy:
                for n in range(count):
                    video, mall = new_id(), malls[n % MALLS]
                    original = f"videos/{mall}/original/{video}.mp4"
                    proxy = f"videos/{mall}/proxy/{video}.mp4"
                    thumbnail = f"thumbnails/{mall}/{video}.jpg"
                    keys += [original, proxy, thumbnail]
                    copy.write_row(
                        (
                            video, mall, pins[mall], f"CAM01_{n}.mp4", original, 125_829_120,
                            proxy, 18_874_368, thumbnail, 120.5, "completed",
                            start - timedelta(seconds=n),
                        )
                    )  # fmt: skip
        conn.commit()
        conn.execute("ANALYZE")
    return keys


def moto_bucket(bucket: str) -> Any:
    """The in-process moto backend behind the embedded S3 server (same process)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["global"], bucket


def put_objects(bucket: str, keys: Sequence[str]) -> None:
    """Write the objects straight into moto's store: 3N HTTP PUTs would take minutes."""
    backend, name = moto_bucket(bucket)
    for key in keys:
        backend.put_object(name, key, b"\x00" * 16, disable_notification=True)


def objects_left(bucket: str) -> int:
    backend, name = moto_bucket(bucket)
    return len(backend.get_bucket(name).keys)


def rows_left(database_url: str) -> tuple[int, int]:
    import psycopg

    from bench.dataset import conninfo

    with psycopg.connect(conninfo(database_url)) as conn:
        videos = conn.execute("SELECT count(*) FROM videos").fetchone()[0]
        queued = conn.execute("SELECT count(*) FROM storage_deletions").fetchone()[0]
    return videos, queued


# --- the sweep, in a child process ------------------------------------------------------


def sweep_child(env: dict[str, str], strategy: str, batch_size: int, out: Any) -> None:
    """Build the worker's dependencies, sweep everything expired, report to ``out``."""
    import dataclasses
    import os

    import psutil

    os.environ.update(env)
    import handlers
    from handlers.ports import DeleteReport
    from schemas import GetStats, SweepRetention
    from worker.adapters.s3.store import S3ObjectStore
    from worker.bootstrap import build_deps
    from worker.settings import get_settings

    class PerObjectStore(S3ObjectStore):
        """The original REST design: one DeleteObject request per key."""

        def delete_many(self, keys: Sequence[str]) -> DeleteReport:
            from botocore.exceptions import BotoCoreError, ClientError

            deleted: list[str] = []
            failed: dict[str, str] = {}
            for key in dict.fromkeys(keys):
                try:
                    self.client.delete_object(Bucket=self.bucket, Key=key)
                except (BotoCoreError, ClientError) as exc:
                    failed[key] = type(exc).__name__
                else:
                    deleted.append(key)
            return DeleteReport(deleted=deleted, failed=failed)

    settings = get_settings()
    enqueued: list[str] = []
    deps = build_deps(settings, enqueue=lambda task, kwargs, countdown: enqueued.append(task))
    store = PerObjectStore(settings) if strategy == "baseline" else deps.store
    calls: dict[str, int] = {}

    def counter(name: str) -> Any:
        def count(**_: Any) -> None:
            calls[name] = calls.get(name, 0) + 1

        return count

    events = store.client.meta.events
    for operation in ("DeleteObjects", "DeleteObject"):
        events.register(f"before-call.s3.{operation}", counter(f"{operation} calls"))
        events.register(f"before-send.s3.{operation}", counter(f"{operation} requests"))
    deps = dataclasses.replace(
        deps,
        store=store,
        # The sweep must not stop on its time budget, nor send tasks nobody runs.
        policy=dataclasses.replace(deps.policy, sweep_time_budget_seconds=86_400.0),
    )
    handlers.get_stats(GetStats(), deps)  # warm: pooled connection, Redis
    store.size("warm-up-probe")  # and the S3 client
    deps.cache.get(None)

    process = psutil.Process()
    before = process.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    cpu_started = time.process_time()
    result = handlers.sweep_retention(
        SweepRetention(older_than_days=90, batch_size=batch_size), deps
    )
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    out.send(
        {
            "seconds": seconds,
            "cpu": cpu,
            "deleted": result.deleted,
            "files_deleted": result.files_deleted,
            "files_pending": result.files_pending,
            "calls": calls,
            "rss_before": before,
            "rss_peak": peak[0],
            "enqueued": len(enqueued),
        }
    )
    out.close()


def run_sweep(env: dict[str, str], strategy: str, batch_size: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=sweep_child, args=(env, strategy, batch_size, sender))
    child.start()
    sender.close()
    try:
        report = receiver.recv()
    except EOFError:
        child.join()
        raise RuntimeError(f"the {strategy} sweep died (exit code {child.exitcode})") from None
    child.join(60)
    if child.is_alive():
        child.terminate()
        child.join()
    return report


# --- the bench -----------------------------------------------------------------------------


@bench("deletion")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("deletion", __doc__)
    options.add_argument("--videos", type=int, default=20_000)
    options.add_argument(
        "--baseline-videos",
        type=int,
        default=2_000,
        help="videos for the per-object baseline (at most --videos)",
    )
    options.add_argument("--batch-size", type=int, default=500)
    args = options.parse_args(argv)
    baseline_videos = min(args.baseline_videos, args.videos)

    reports: dict[str, tuple[int, dict[str, Any]]] = {}
    with Stack() as stack:
        bucket = stack.env["S3_BUCKET"]
        env = {**stack.env, "SWEEP_TIME_BUDGET_SECONDS": "86400", "LOG_LEVEL": "WARNING"}
        for strategy, count in (("ours", args.videos), ("baseline", baseline_videos)):
            log(f"{strategy}: loading {count:,} videos and {3 * count:,} objects")
            keys = load_expired(stack.database_url, count)
            put_objects(bucket, keys)
            if objects_left(bucket) != len(keys):
                raise SystemExit("the bucket does not hold the objects just written")
            log(f"{strategy}: sweeping")
            report = run_sweep(env, strategy, args.batch_size)
            videos, queued = rows_left(stack.database_url)
            left = objects_left(bucket)
            if videos or queued or left or report["files_pending"]:
                raise SystemExit(
                    f"{strategy} sweep left {videos} videos, {queued} queued keys, "
                    f"{left} objects, {report['files_pending']} pending"
                )
            reports[strategy] = (count, report)

    base_rate = reports["baseline"][1]["deleted"] / reports["baseline"][1]["seconds"]
    table = Table(
        f"retention sweep of expired videos, 3 objects each, batch {args.batch_size}",
        ["run", "videos", "seconds", "videos/s", "vs baseline", "CPU ms/video",
         "DeleteObjects calls", "DeleteObject calls", "HTTP requests", "RSS before MB",
         "RSS growth MB"],
        conditions=("loopback", "moto S3"),
    )  # fmt: skip
    for strategy, (count, r) in reports.items():
        calls = r["calls"]
        rate = r["deleted"] / r["seconds"]
        requests = calls.get("DeleteObjects requests", 0) + calls.get("DeleteObject requests", 0)
        table.add(
            strategy,
            count,
            r["seconds"],
            rate,
            ratio(rate, base_rate),
            r["cpu"] / r["deleted"] * 1000,
            calls.get("DeleteObjects calls", 0),
            calls.get("DeleteObject calls", 0),
            requests,
            r["rss_before"] / MB,
            (r["rss_peak"] - r["rss_before"]) / MB,
        )
    growth = (reports["ours"][1]["rss_peak"] - reports["ours"][1]["rss_before"]) / MB
    table.verdict(
        f"ours: RSS growth <= {TARGET_RSS_MB:g} MB", growth <= TARGET_RSS_MB, f"{growth:.1f} MB"
    )
    table.notes.append("every run left no row, no queued key and no object (checked)")
    table.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
