"""Lifecycle through real worker processes, each test on a broker of its own (a Redis
database, or a RabbitMQ vhost) so that only the workers it starts see its messages."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.brokers import isolated_environment
from tests.e2e.conftest import outside_app, start_worker, stop_worker, wait_until_answering
from tests.integration.test_lifecycle import (
    EventCollector,
    insert_videos,
    object_keys,
    remaining_ids,
    row_exists,
    scalar,
    sql_stats,
    stats_figures,
)
from tests.support import poll
from worker.dev.embedded import free_port


@pytest.fixture
def isolated(services, monkeypatch):
    """An environment whose broker and result backend are of its own (``tests.brokers``)."""
    with contextlib.ExitStack() as made:

        def make(broker_db: int, backend_db: int, **overrides: str) -> dict[str, str]:
            env = made.enter_context(
                isolated_environment(
                    services, f"lifecycle-{broker_db}", broker_db, backend_db, **overrides
                )
            )
            # Plain Celery reads these from the environment before its own arguments.
            monkeypatch.setenv("CELERY_BROKER_URL", env["CELERY_BROKER_URL"])
            monkeypatch.setenv("CELERY_RESULT_BACKEND", env["CELERY_RESULT_BACKEND"])
            return env

        yield make


@contextlib.contextmanager
def running_workers(
    env: dict[str, str], logs: list[Path], *extra: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One worker per log file, named apart; yields once every one answers a ping."""
    processes = [
        start_worker(env, log, "-n", f"lifecycle-{i}@%h", *extra) for i, log in enumerate(logs)
    ]
    app = outside_app(env)
    try:
        wait_until_answering(app, processes[0])

        def every_worker_answers() -> bool:
            assert all(p.poll() is None for p in processes), "a worker exited"
            return len(app.control.ping(timeout=1.0)) >= len(processes)

        # Each ping already waits a second for its answers: no pause between tries.
        poll(every_worker_answers, timeout=60, interval=0, message="every worker to answer a ping")
        yield processes
    finally:
        for process in processes:
            stop_worker(process)
        app.close()


def _moto_backend(bucket: str):
    from moto.s3.models import s3_backends

    for regions in s3_backends.values():
        backend = regions["aws"]
        if bucket in backend.buckets:
            return backend
    raise LookupError(bucket)


def put_objects(stack, s3, bucket: str, keys: list[str]) -> None:
    """Write empty objects fast.

    The embedded S3 (moto, in this process) serves ~150 requests/s, far too few for tens
    of thousands of PUTs, so its objects are written straight into its backend; every
    read and delete still goes through HTTP. An external S3 gets PUTs from a pool.
    """
    if stack.s3 is not None:
        backend = _moto_backend(bucket)
        for key in keys:
            backend.put_object(bucket, key, b"")
        return
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b""), keys))


def bucket_keys(s3, bucket: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


@pytest.fixture
def emptied_bucket(stack, s3, bucket):
    """Whatever a failed run leaves in the bucket is removed without listing it over HTTP."""
    yield
    if stack.s3 is not None:
        backend = _moto_backend(bucket)
        for key in list(backend.buckets[bucket].keys.keys()):
            backend.delete_object(bucket, key)


def scope_kwargs(mall_id) -> dict[str, str]:
    return {} if mall_id is None else {"mall_id": str(mall_id)}


def call(app, task: str, timeout: float = 60, **kwargs) -> dict:
    queue = "videos" if task == "videos.stats" else "videos.maintenance"
    envelope = app.send_task(task, kwargs=kwargs, queue=queue).get(timeout=timeout)
    assert envelope["ok"], envelope
    return envelope["data"]


# Run once, in `make test`, whatever the broker: the sweeps' rows are claimed in PostgreSQL.
@pytest.mark.broker_independent
def test_four_sweeps_on_two_workers_delete_ten_thousand_videos_exactly_once(
    isolated, stack, catalog, engine, s3, bucket, redis_client, tmp_path, emptied_bucket
):
    env = isolated(3, 4)
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    malls = [catalog.mall(f"Mall {i}") for i in range(4)]
    pins = [catalog.pin(mall) for mall in malls]
    # One message per process at a time, so the four sweeps spread over both workers.
    with running_workers(env, logs, "--prefetch-multiplier", "1"):
        expired = [
            row for mall, pin in zip(malls, pins, strict=True)
            for row in insert_videos(engine, mall, pin, 2_500, days_old=100)
        ]  # fmt: skip
        young = [
            row for mall, pin in zip(malls, pins, strict=True)
            for row in insert_videos(engine, mall, pin, 5, days_old=1)
        ]  # fmt: skip
        put_objects(stack, s3, bucket, object_keys(expired + young))
        expired_ids = {str(row["id"]) for row in expired}
        app = outside_app(env)
        call(app, "videos.refresh_stats")  # the cache now holds the figures before the sweep

        still_there: list[str] = []

        def check_row_gone(event: dict) -> None:
            # The first few: the row must already be gone when its event arrives.
            if event["event"] == "video.deleted" and len(still_there) < 50:
                still_there.append(
                    event["video_id"] if row_exists(engine, event["video_id"]) else ""
                )

        collector = EventCollector(redis_client, on_event=check_row_gone)
        started = time.monotonic()
        try:
            sweeps = [
                app.send_task(
                    "videos.retention_sweep", kwargs={"batch_size": 200}, queue="videos.maintenance"
                )
                for _ in range(4)
            ]
            answers = [result.get(timeout=90) for result in sweeps]
            swept_in = time.monotonic() - started
            deleted_events = collector.wait_for("video.deleted", 10_000, timeout=30)

            # The debounced flush brings the cached figures to the database's by itself.
            def cache_agrees() -> bool:
                return all(
                    stats_figures(call(app, "videos.stats", **scope_kwargs(m)))
                    == sql_stats(engine, m)
                    for m in (None, *malls)
                )

            poll(cache_agrees, timeout=30, message="the cached stats to match SQL", interval=0.5)
            flushed = [e for e in collector.of("stats.refreshed") if e["mall_id"] is None]
        finally:
            collector.close()
        purged = call(app, "videos.purge_storage")
        app.close()

    assert [a["ok"] for a in answers] == [True] * 4, answers
    data = [a["data"] for a in answers]
    assert sum(d["deleted"] for d in data) == 10_000
    assert sum(d["files_deleted"] for d in data) == 30_000
    assert sum(d["files_pending"] for d in data) == 0
    assert all(d["matched"] <= 10_000 for d in data)
    assert all("retention.swept" in log.read_text() for log in logs), "a worker did no sweep"

    with engine.connect() as conn:
        audit = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT video_id),"
                " count(*) FILTER (WHERE reason = 'retention' AND outcome = 'files_deleted')"
                " FROM deletion_audit"
            )
        ).one()
        audited = {
            str(i) for i in conn.execute(text("SELECT video_id FROM deletion_audit")).scalars()
        }
        remaining = {r.id for r in conn.execute(text("SELECT id FROM videos"))}
    assert tuple(audit) == (10_000, 10_000, 10_000)
    assert audited == expired_ids
    assert remaining == {row["id"] for row in young}
    assert scalar(engine, "SELECT count(*) FROM storage_deletions") == 0
    assert purged["remaining"] == 0
    # Nothing left of the deleted videos, nothing missing of the kept ones.
    assert bucket_keys(s3, bucket) == set(object_keys(young))

    assert len(deleted_events) == 10_000
    assert {e["video_id"] for e in deleted_events} == expired_ids
    assert all(len(e["files_deleted"]) == 3 and e["files_pending"] == [] for e in deleted_events)
    assert still_there == [""] * 50
    # A handful of debounced flushes (one per 5 s window, plus the one before), not thousands.
    assert 1 <= len(flushed) <= swept_in / 5 + 3, (len(flushed), swept_in)


def test_a_sweep_out_of_time_continues_by_itself_until_every_expired_video_is_gone(
    isolated, catalog, engine, tmp_path
):
    env = isolated(5, 6, SWEEP_TIME_BUDGET_SECONDS="0.05")
    mall = catalog.mall()
    pin = catalog.pin(mall)
    expired = insert_videos(engine, mall, pin, 60, days_old=200)
    young = insert_videos(engine, mall, pin, 3, days_old=10)
    log = tmp_path / "worker.log"

    with running_workers(env, [log]):
        app = outside_app(env)
        first = call(app, "videos.retention_sweep", batch_size=5, older_than_days=30)

        def expired_left() -> int:
            return scalar(
                engine,
                "SELECT count(*) FROM videos WHERE uploaded_at < now() - '30 days'::interval",
            )

        poll(lambda: expired_left() == 0, timeout=60, message="the continuations to finish")
        poll(
            lambda: scalar(engine, "SELECT count(*) FROM storage_deletions") == 0,
            timeout=10,
            message="the last continuation's queue to empty",
        )
        app.close()

    assert first["matched"] == 60
    assert first["deleted"] < first["matched"]
    with engine.connect() as conn:
        audited = list(conn.execute(text("SELECT video_id FROM deletion_audit")).scalars())
    assert len(audited) == 60
    assert set(audited) == {row["id"] for row in expired}
    assert remaining_ids(engine) == {row["id"] for row in young}
    assert log.read_text().count("retention.swept") >= 2


def test_the_worker_answers_stats_and_deletes_with_its_cache_redis_down(
    isolated, catalog, engine, tmp_path
):
    env = isolated(9, 10, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    north, south = catalog.mall("North"), catalog.mall("South")
    doomed = catalog.video(north, catalog.pin(north), upload_objects=False)
    catalog.video(north, catalog.pin(north), upload_objects=False, proxy=False)
    catalog.video(south, catalog.pin(south), upload_objects=False, processing_status="failed")

    scopes = (None, north, south)
    expected = {scope: sql_stats(engine, scope) for scope in scopes}

    with running_workers(env, [tmp_path / "worker.log"]):
        app = outside_app(env)
        before = {scope: call(app, "videos.stats", **scope_kwargs(scope)) for scope in scopes}
        deleted = call(app, "videos.delete", video_id=str(doomed["id"]))
        after = call(app, "videos.stats")
        app.close()

    assert {scope: stats_figures(stats) for scope, stats in before.items()} == expected
    assert expected[None]["total_videos"] == 3
    assert deleted["deleted"] is True and deleted["files_deleted"] == catalog.keys(doomed)
    assert stats_figures(after) == sql_stats(engine)
    assert stats_figures(after)["total_videos"] == 2
