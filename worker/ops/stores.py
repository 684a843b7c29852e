"""What the worker keeps, and how much of it: the sizes ``videoworker health`` reports.

Each store the worker writes is bounded by a lifetime, a cap or a pruning job (the
table in docs/production.md says which); these figures let an operator see that it
holds. They are read with the same short timeouts as the health checks, and cost one
round trip per figure group; counting keys by kind walks the cache's keyspace with
SCAN, which is fine for an operator's command and never done by the worker itself.
"""

from __future__ import annotations

from typing import Any

from schemas.contract import DEAD_LETTERS_QUEUE
from schemas.events import EVENTS_STREAM
from worker.settings import Settings

# The worker's key families in the cache Redis, by prefix.
CACHE_KEY_KINDS = (
    "videoworker:stats:",
    "videoworker:stats-dirty",
    "videoworker:started:",
    "videoworker:redeliveries:",
    "videoworker:redbeat:",
)
UNPARSEABLE_KEY = "videoworker:unparseable"
RESULT_KEY_PATTERN = "celery-task-meta-*"
# The tables that grow with use; the catalogue's own (malls, pins, videos) grow with the
# platform, not with the worker, and are reported too for scale.
TABLES = (
    "videos",
    "storage_deletions",
    "deletion_audit",
    "event_outbox",
    "video_counts_daily",
    "video_counts_monthly",
    "video_counts_mall_daily",
    "video_counts_mall_monthly",
    "video_tags",
    "shares",
    "reprocess_requests",
    "exports",
)
TABLE_SIZES = """
SELECT c.relname, greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid)
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname = ANY(%(tables)s)
"""


def _client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)


def redis_sizes(settings: Settings) -> dict[str, Any]:
    cache = _client(settings.redis_cache_url)
    try:
        kinds = {
            prefix.rstrip(":"): sum(1 for _ in cache.scan_iter(match=f"{prefix}*", count=1000))
            for prefix in CACHE_KEY_KINDS
        }
        figures: dict[str, Any] = {
            "cache_keys": cache.dbsize(),
            "cache_keys_by_kind": kinds,
            "cache_used_memory_bytes": cache.info("memory").get("used_memory"),
            "events_stream_length": cache.xlen(EVENTS_STREAM),
        }
    finally:
        cache.close()
    results = _client(settings.result_backend_url)
    try:
        figures["results"] = sum(1 for _ in results.scan_iter(match=RESULT_KEY_PATTERN, count=1000))
    finally:
        results.close()
    if settings.celery_broker_url.startswith(("redis://", "rediss://")):
        broker = _client(settings.celery_broker_url)
        try:
            figures["unparseable_kept"] = broker.llen(UNPARSEABLE_KEY)
            figures["dead_letters"] = broker.llen(DEAD_LETTERS_QUEUE)
        finally:
            broker.close()
    return figures


def postgres_sizes(settings: Settings) -> dict[str, Any]:
    import psycopg

    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
        rows = conn.execute(TABLE_SIZES, {"tables": list(TABLES)}).fetchall()
        pending = conn.execute("SELECT count(*) FROM storage_deletions").fetchone()
    return {
        "tables": {name: {"rows_estimate": rows_, "bytes": size} for name, rows_, size in rows},
        "deletions_queued": pending[0] if pending else 0,
    }


def sizes(settings: Settings) -> dict[str, Any]:
    return {"redis": redis_sizes(settings), "postgres": postgres_sizes(settings)}
