"""Wires the adapters into the handlers' ``Deps``.

Imports no Celery: the one thing the handlers need from the runtime, a way to ask for
a task later (``Enqueue``), is passed in by whoever builds the dependencies: the
worker's runtime, the CLI, a test or a bench. Nothing connects at import time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from handlers.deps import Deps
from handlers.policy import Policy
from handlers.ports import Dispatch, Enqueue
from schemas.contract import is_amqp
from worker.adapters.analytics_buffer import RedisAnalyticsBuffer
from worker.adapters.postgres.uow import PostgresUnitOfWork, make_engine, read_path, reading
from worker.adapters.redis import RedisPublisher, RedisStatsCache, RedisStreamSink, make_redis
from worker.adapters.relay import Relay, Sink
from worker.adapters.s3.access_logs import S3AccessLogStore
from worker.adapters.s3.archive import S3ArchiveStore
from worker.adapters.s3.store import S3ObjectStore
from worker.settings import Settings


def policy_from(settings: Settings) -> Policy:
    return Policy(
        retention_days=settings.retention_days,
        trash_days=settings.trash_days,
        audit_retention_days=settings.audit_retention_days,
        bulk_delete_time_budget_seconds=settings.bulk_delete_time_budget_seconds,
        purge_grace_seconds=settings.purge_grace_seconds,
        sweep_time_budget_seconds=settings.sweep_time_budget_seconds,
        stats_debounce_seconds=settings.stats_debounce_seconds,
        search_total_cap=settings.search_total_cap,
        search_timeout_ms=settings.search_timeout_ms,
        share_max_minutes=settings.share_max_minutes,
        share_url_minutes=settings.share_url_minutes,
        share_max_attempts=settings.share_max_attempts,
        reprocess_task=settings.reprocess_task,
        reprocess_queue=settings.reprocess_queue,
        export_max_videos=settings.export_max_videos,
        export_max_bytes=settings.export_max_bytes,
        export_ttl_hours=settings.export_ttl_hours,
        export_lease_seconds=settings.export_lease_seconds,
        export_requeue_minutes=settings.export_requeue_minutes,
        export_parts_in_flight=settings.export_parts_in_flight,
    )


# Fixed: a key derived with it is the same on every worker given the same secret.
CURSOR_KEY_LABEL = b"videoworker list cursors v1"


def cursor_key(settings: Settings) -> bytes:
    """The key list cursors are signed with: ``CURSOR_SECRET``, else one derived from
    the S3 secret key (which every worker of a deployment holds and no caller does),
    so cursors pass between workers without one more secret to deploy. Never the
    secret itself: a cursor's tag reveals nothing of it."""
    secret = settings.cursor_secret or settings.aws_secret_access_key
    return hmac.new(secret.get_secret_value().encode(), CURSOR_KEY_LABEL, hashlib.sha256).digest()


def build_deps(settings: Settings, *, enqueue: Enqueue, dispatch: Dispatch | None = None) -> Deps:
    engine = make_engine(settings)
    reader = reading(engine)
    reads = read_path(reader)
    cache_client = make_redis(settings.redis_cache_url)
    return Deps(
        uow=lambda: PostgresUnitOfWork(engine),
        read=lambda: PostgresUnitOfWork(reader, reads),
        store=S3ObjectStore(settings),
        archive=S3ArchiveStore(settings),
        cache=RedisStatsCache(
            cache_client,
            settings.stats_cache_ttl_seconds,
            flush_marker_seconds=max(30, int(settings.stats_debounce_seconds * 10)),
        ),
        publish=RedisPublisher(cache_client),
        enqueue=enqueue,
        dispatch=dispatch,
        policy=policy_from(settings),
        cursor_key=cursor_key(settings),
        log=logging.getLogger("videoworker"),
        analytics_buffer=RedisAnalyticsBuffer(cache_client) if settings.analytics_enabled else None,
        access_logs=access_log_store(settings),
    )


def access_log_store(settings: Settings) -> S3AccessLogStore | None:
    if not settings.access_log_bucket:
        return None
    return S3AccessLogStore(settings, settings.access_log_bucket, settings.access_log_prefix)


def build_relay(settings: Settings) -> Relay:
    """The event relay: to the stream on REDIS_URL, and to the exchange on RabbitMQ."""
    sinks: list[Sink] = [
        RedisStreamSink(make_redis(settings.redis_cache_url), settings.events_retention_hours)
    ]
    if is_amqp(settings.celery_broker_url):
        from worker.adapters.amqp_events import RabbitExchangeSink

        sinks.append(RabbitExchangeSink(settings.celery_broker_url))
    return Relay(
        settings.relay_database_url,
        sinks,
        batch=settings.events_relay_batch,
        poll_seconds=settings.events_poll_seconds,
        max_bytes=settings.events_max_bytes,
        keep_sent_seconds=settings.events_keep_sent_seconds,
    )
