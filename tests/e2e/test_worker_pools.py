"""The execution pools the worker runs under: threads share a small connection pool and
give every connection back; the pools it cannot run safely are refused at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from celery.concurrency import get_implementation
from celery.concurrency.base import BasePool

from tests.e2e.conftest import outside_app, start_worker, stop_worker, wait_until_answering


class DummyPool(BasePool):
    """A pool class of someone else's, given as the class itself."""


@pytest.mark.parametrize("pool", ["gevent", "eventlet", "custom.pool:TaskPool"])
def test_a_pool_the_worker_cannot_run_safely_is_refused_at_start_with_a_sentence(pool):
    """gevent and eventlet are not installed here (Celery itself stops before the worker
    starts); were they, the worker's own start-up check refuses them in one sentence."""
    from worker.runtime.app import _refuse_unsupported_pools, app

    # As the command line hands it over: --pool as options["pool"].
    with pytest.raises(SystemExit) as refused:
        _refuse_unsupported_pools(conf=app.conf, options={"pool": pool})
    assert str(refused.value).startswith(f"Invalid configuration: --pool {pool}: the worker")
    for fine in ("prefork", "solo", "threads", None, get_implementation("threads")):
        _refuse_unsupported_pools(conf=app.conf, options={"pool": fine})
    with pytest.raises(SystemExit):
        _refuse_unsupported_pools(conf=app.conf, options={"pool": DummyPool})


@pytest.mark.broker_independent
def test_eight_threads_on_a_pool_of_one_connection_answer_every_read(
    services, tmp_path, catalog, monkeypatch
):
    """Above 2 x DB_POOL_SIZE threads, reads used to answer unavailable: a connection
    held per thread was never given back. Each unit of work now returns its own."""
    mall = catalog.mall()
    pin = catalog.pin(mall)
    videos = [catalog.video(mall, pin) for _ in range(4)]
    # A broker of its own (a Redis database no other test's worker consumes), so that
    # every message is this worker's.
    broker = services["REDIS_URL"].rpartition("/")[0] + "/11"
    redis.Redis.from_url(broker).flushdb()
    env = {**services, "DB_POOL_SIZE": "1", "CELERY_BROKER_URL": broker}
    # Plain Celery prefers the environment's broker to the one it is given.
    monkeypatch.setenv("CELERY_BROKER_URL", broker)
    log_path = tmp_path / "threads.log"
    process = start_worker(
        env, log_path, "--pool", "threads", "--concurrency", "8", "-n", "threads@%h"
    )
    caller = outside_app(env)
    try:
        wait_until_answering(caller, process)
        sent = [
            caller.send_task(task, kwargs={"video_id": str(v["id"])}, queue="videos")
            for _ in range(12)
            for v in videos
            for task in ("videos.get", "videos.sign_url")
        ]
        answers = [result.get(timeout=60) for result in sent]
    finally:
        caller.close()
        stop_worker(process)
    assert [a["status"] for a in answers] == [200] * len(sent), answers[:3]
    # DB_POOL_SIZE, given, wins over the size the threads would derive.
    assert pool_line(log_path)["db_pool_size"] == 1


def pool_line(log_path: Path) -> dict:
    """The worker's start-up line on its database connections, as logged (JSON)."""
    for line in log_path.read_text(errors="replace").splitlines():
        if "database connections:" in line and line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no database connections line in {log_path.name}")


@pytest.mark.broker_independent
def test_a_worker_sizes_its_connections_from_its_pool_and_says_so(services, tmp_path, monkeypatch):
    """Unset, DB_POOL_SIZE follows the pool: one per prefork child (a task at a time),
    one per thread; the start-up line gives the node's most, relay included."""
    broker = services["REDIS_URL"].rpartition("/")[0] + "/11"
    monkeypatch.setenv("CELERY_BROKER_URL", broker)
    env = {**services, "CELERY_BROKER_URL": broker, "LOG_FORMAT": "json"}
    env.pop("DB_POOL_SIZE", None)
    seen = {}
    for name, options in {
        "prefork": ("--pool", "prefork", "--concurrency", "3"),
        "threads": ("--pool", "threads", "--concurrency", "6"),
    }.items():
        log_path = tmp_path / f"{name}.log"
        process = start_worker(env, log_path, *options, "-n", f"{name}-sized@%h")
        caller = outside_app(env)
        try:
            wait_until_answering(caller, process)
        finally:
            caller.close()
            stop_worker(process)
        seen[name] = pool_line(log_path)
    assert (seen["prefork"]["db_pool_size"], seen["prefork"]["node_connections"]) == (1, 7)
    assert (seen["threads"]["db_pool_size"], seen["threads"]["node_connections"]) == (6, 13)
