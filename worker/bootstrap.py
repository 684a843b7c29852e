"""Wires the adapters into the handlers' ``Deps``, once per process.

Built lazily: nothing connects at import time, and a forked pool child builds its
own engine and clients rather than sharing sockets with its parent.
"""

from __future__ import annotations

import logging
import threading

from handlers.deps import Deps
from worker.cache import RedisPublisher, RedisStatsCache, make_redis
from worker.db import PostgresUnitOfWork, make_engine
from worker.settings import Settings, get_settings
from worker.storage import S3ObjectStore

_lock = threading.Lock()
_deps: Deps | None = None


def celery_enqueue(task: str, kwargs: dict, countdown: float) -> None:
    """The handlers' Enqueue port: send a task by name to its queue."""
    from worker.celery_app import app
    from worker.routing import QUEUE_OF

    app.send_task(task, kwargs=kwargs, countdown=countdown or None, queue=QUEUE_OF[task])


def build_deps(settings: Settings) -> Deps:
    engine = make_engine(settings)
    cache_client = make_redis(settings.redis_cache_url)
    return Deps(
        uow=lambda: PostgresUnitOfWork(engine),
        store=S3ObjectStore(settings),
        cache=RedisStatsCache(
            cache_client,
            settings.stats_cache_ttl_seconds,
            flush_marker_seconds=max(30, int(settings.stats_debounce_seconds * 10)),
        ),
        publish=RedisPublisher(cache_client),
        enqueue=celery_enqueue,
        retention_days=settings.retention_days,
        purge_grace_seconds=settings.purge_grace_seconds,
        sweep_time_budget_seconds=settings.sweep_time_budget_seconds,
        stats_debounce_seconds=settings.stats_debounce_seconds,
        log=logging.getLogger("videoworker"),
    )


def get_deps() -> Deps:
    global _deps
    if _deps is None:
        with _lock:
            if _deps is None:
                _deps = build_deps(get_settings())
    return _deps


def reset_deps() -> None:
    """Forget the wired dependencies (after fork, or when settings change in tests)."""
    global _deps
    with _lock:
        _deps = None
