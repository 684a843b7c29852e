"""Wires the adapters into the handlers' ``Deps``.

Imports no Celery: the one thing the handlers need from the runtime, a way to ask for
a task later (``Enqueue``), is passed in by whoever builds the dependencies: the
worker's runtime, the CLI, a test or a bench. Nothing connects at import time.
"""

from __future__ import annotations

import logging

from handlers.deps import Deps
from handlers.policy import Policy
from handlers.ports import Enqueue
from worker.adapters.postgres.uow import PostgresUnitOfWork, make_engine, read_path, reading
from worker.adapters.redis import RedisPublisher, RedisStatsCache, make_redis
from worker.adapters.s3.store import S3ObjectStore
from worker.settings import Settings


def policy_from(settings: Settings) -> Policy:
    return Policy(
        retention_days=settings.retention_days,
        trash_days=settings.trash_days,
        bulk_delete_time_budget_seconds=settings.bulk_delete_time_budget_seconds,
        purge_grace_seconds=settings.purge_grace_seconds,
        sweep_time_budget_seconds=settings.sweep_time_budget_seconds,
        stats_debounce_seconds=settings.stats_debounce_seconds,
    )


def build_deps(settings: Settings, *, enqueue: Enqueue) -> Deps:
    engine = make_engine(settings)
    reader = reading(engine)
    reads = read_path(reader)
    cache_client = make_redis(settings.redis_cache_url)
    return Deps(
        uow=lambda: PostgresUnitOfWork(engine),
        read=lambda: PostgresUnitOfWork(reader, reads),
        store=S3ObjectStore(settings),
        cache=RedisStatsCache(
            cache_client,
            settings.stats_cache_ttl_seconds,
            flush_marker_seconds=max(30, int(settings.stats_debounce_seconds * 10)),
        ),
        publish=RedisPublisher(cache_client),
        enqueue=enqueue,
        policy=policy_from(settings),
        log=logging.getLogger("videoworker"),
    )
