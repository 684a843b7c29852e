"""The execution pools the worker runs under: threads share a small connection pool and
give every connection back; the pools it cannot run safely are refused at start."""

from __future__ import annotations

import pytest
import redis

from tests.e2e.conftest import outside_app, start_worker, stop_worker, wait_until_answering


@pytest.mark.parametrize("pool", ["gevent", "eventlet", "custom.pool:TaskPool"])
def test_a_pool_the_worker_cannot_run_safely_is_refused_at_start_with_a_sentence(pool):
    """gevent and eventlet are not installed here (Celery itself stops before the worker
    starts); were they, the worker's own start-up check refuses them in one sentence."""
    from worker.runtime.app import _refuse_unsupported_pools, app

    with pytest.raises(SystemExit) as refused:
        _refuse_unsupported_pools(conf=app.conf, options={"pool_cls": pool})
    assert str(refused.value).startswith(f"Invalid configuration: --pool {pool}: the worker")
    for fine in ("prefork", "solo", "threads", None):
        _refuse_unsupported_pools(conf=app.conf, options={"pool_cls": fine})


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
