"""``videoworker health``: can this process reach everything it needs?

Each check is a real round trip with a short timeout: the broker connection, the
result backend and the cache Redis answer PING, PostgreSQL answers ``SELECT 1`` and
the bucket answers HEAD; ``stores`` reports how much each store the worker writes
holds (``worker.ops.stores``). ``--worker`` also asks the worker on this host to answer a
remote-control ping, which is what a container liveness probe wants to know.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from worker.settings import Settings


def _timed(check: Callable[[], object]) -> dict[str, object]:
    """A check's verdict and time; a check that answers a dict has it merged in."""
    started = time.perf_counter()
    try:
        answer = check()
    except Exception as exc:  # noqa: BLE001 - every failure is a result here
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    verdict: dict[str, object] = {
        "ok": True,
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }
    if isinstance(answer, dict):
        verdict.update(answer)
    return verdict


def run_checks(
    settings: Settings, worker: bool = False, stores: bool = True
) -> dict[str, dict[str, object]]:
    import redis
    from kombu import Connection
    from sqlalchemy import create_engine, text

    from worker.adapters.s3.store import S3ObjectStore

    def broker() -> None:
        with Connection(settings.celery_broker_url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)

    def redis_ping(url: str) -> Callable[[], object]:
        return lambda: redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()

    def postgres() -> None:
        engine = create_engine(settings.database_url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()

    def s3() -> None:
        store = S3ObjectStore(settings)
        store.client.head_bucket(Bucket=settings.s3_bucket)

    results = {
        "broker": _timed(broker),
        "result_backend": _timed(redis_ping(settings.result_backend_url)),
        "cache": _timed(redis_ping(settings.redis_cache_url)),
        "postgres": _timed(postgres),
        "s3": _timed(s3),
    }
    if worker:
        results["worker"] = _timed(lambda: _ping_local_worker())
    if stores:
        from worker.ops.stores import sizes

        results["stores"] = _timed(lambda: sizes(settings))
    return results


def _ping_local_worker() -> None:
    from worker.runtime.app import app

    name = f"celery@{socket.gethostname()}"
    replies = app.control.ping(destination=[name], timeout=5)
    if not replies:
        raise RuntimeError(f"{name} did not answer a ping")
