"""Celery configuration of the video worker (``app.config_from_object("celeryconfig")``).

Values that depend on the deployment come from ``worker.settings``; the rest are
choices of this worker, each with the reason it was made.
"""

from celery.schedules import crontab
from kombu import Exchange, Queue

from schemas.contract import (
    LONGEST_HARD_LIMIT,
    MAINTENANCE_QUEUE,
    QUEUES,
    QUORUM_QUEUE_ARGUMENTS,
    REQUESTS_QUEUE,
    ROUTES,
    SEARCH_QUEUE,
    is_amqp,
)
from worker.settings import broker_transport as guarded_transport
from worker.settings import get_settings

_settings = get_settings()
# Room for a task that ends right at its hard limit (the task table's longest) to be
# acknowledged before Redis would give its message back.
VISIBILITY_MARGIN_SECONDS = 60

broker_url = _settings.celery_broker_url
_rabbitmq = is_amqp(broker_url)
# kombu's transport of the URL's scheme, guarded against hostile messages: on Redis,
# junk pushed onto a queue's list is kept and logged instead of ending the worker; on
# both, a compressed body is measured before anything inflates it. Every scheme the
# settings accept has one (see worker.settings.GUARDED_TRANSPORTS).
broker_transport = guarded_transport(broker_url)
result_backend = _settings.result_backend_url

# JSON only, in both directions: a pickle body is refused before it is decoded.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
task_protocol = 2
if _settings.signing:
    # Signed messages only (worker.runtime.app calls setup_security); results stay JSON.
    task_serializer = "auth"
    accept_content = ["auth"]
    security_key = _settings.security_key
    security_key_password = (
        _settings.security_key_password.get_secret_value()
        if _settings.security_key_password
        else None
    )
    security_certificate = _settings.security_certificate
    security_cert_store = _settings.security_cert_store
    security_digest = "sha256"
enable_utc = True
timezone = "UTC"

# Each queue has its own direct exchange and routing key, both named after it. A bare
# Queue(name) would inherit the default exchange *and* routing key, binding both
# queues to the same key, so every message would be delivered to both.
# On RabbitMQ both are quorum queues: replicated across nodes, and a message whose
# consumer is lost goes back to a live one at once, not after a timeout.
# With SEARCH_QUEUE set, its queue too: every worker declares it, and one with no -Q
# consumes it.
task_queues = tuple(
    Queue(
        name,
        Exchange(name, type="direct"),
        routing_key=name,
        queue_arguments=QUORUM_QUEUE_ARGUMENTS if _rabbitmq else None,
    )
    for name in (*QUEUES, *((SEARCH_QUEUE,) if _settings.search_queue else ()))
)
task_default_queue = REQUESTS_QUEUE
task_default_exchange = REQUESTS_QUEUE
task_default_routing_key = REQUESTS_QUEUE
task_routes = ROUTES
task_create_missing_queues = False

# A message is acknowledged only when its task has finished, and given back if the
# process running it dies; every task is written to be safe to run twice.
task_acks_late = True
task_reject_on_worker_lost = True
if _rabbitmq:
    # Quorum queues want publisher confirms: a publish returns once the queue's
    # majority has the message, so a task the worker queues (a flush, a sweep's
    # continuation, a dead letter) is never lost to a broker failover.
    broker_transport_options = {"confirm_publish": True}
else:
    broker_transport_options = {
        # Longer than the longest hard time limit (a sweep run: 10 min), so Redis never
        # redelivers a message whose task is still running, and no longer: a message
        # whose worker vanished comes back within LONGEST_HARD_LIMIT + the margin.
        "visibility_timeout": _settings.broker_visibility_timeout_seconds
        or LONGEST_HARD_LIMIT + VISIBILITY_MARGIN_SECONDS,
        # A running worker looks for such messages every 10 s (unacked_restore_interval);
        # kombu's default throttle would scan only every tenth time, 100 s apart.
        "unacked_restore_throttle": 1,
        # The Redis transport refuses items, and compressed bodies once inflated, larger
        # than this (see worker.runtime.transport).
        "message_max_bytes": _settings.message_max_bytes,
    }
result_backend_transport_options = {"retry_policy": {"timeout": 5.0}}
# Short requests: a few messages in hand per process keep it busy without letting one
# process hoard work that an idle sibling could take. On RabbitMQ one: a message held
# unacknowledged behind a 10-minute sweep must not outlive RabbitMQ's consumer_timeout
# (30 min by default), which would close the channel and redeliver everything in it.
worker_prefetch_multiplier = 1 if _rabbitmq else 4
# Callers wait seconds for an answer; an hour is ample to collect it.
result_expires = 3600
task_time_limit = 60
task_soft_time_limit = 45
broker_connection_retry_on_startup = True
broker_connection_max_retries = None
worker_cancel_long_running_tasks_on_connection_loss = False
task_track_started = False
worker_send_task_events = False
# Guards the worker against malformed messages (see worker.runtime.consumer).
worker_consumer = "worker.runtime.consumer:GuardedConsumer"
worker_hijack_root_logger = False

# celery-redbeat keeps the schedule in Redis behind a lock: a second beat (a standby, or
# one started by mistake) waits for the lock instead of sending every periodic task
# twice. The holder extends the lock every tick (at most beat_max_loop_interval apart),
# three times per lease; a standby tries every tick too, so a killed holder is replaced
# within redbeat_lock_timeout + beat_max_loop_interval (40 s). Each entry's last run is
# kept in Redis, so the new holder does not send again what ran in the period; a beat
# that finds its lock taken exits (sibson/redbeat#127, #129) and its supervisor restarts
# it as a standby. Every scheduled task is idempotent besides (docs/scale.md).
beat_scheduler = "redbeat.RedBeatScheduler"
redbeat_redis_url = _settings.redis_cache_url
redbeat_key_prefix = "videoworker:redbeat:"
redbeat_lock_timeout = 30
beat_max_loop_interval = 10

beat_schedule = {
    "retention-sweep-daily": {
        "task": "videos.retention_sweep",
        "schedule": crontab(hour=_settings.retention_sweep_hour_utc, minute=15),
        "kwargs": {},
        "options": {"queue": MAINTENANCE_QUEUE},
    },
    "purge-storage": {
        "task": "videos.purge_storage",
        "schedule": _settings.purge_interval_seconds,
        "kwargs": {},
        "options": {"queue": MAINTENANCE_QUEUE},
    },
    "refresh-stats": {
        "task": "videos.refresh_stats",
        "schedule": _settings.stats_refresh_interval_seconds,
        "kwargs": {},
        "options": {"queue": MAINTENANCE_QUEUE},
    },
    # Exports whose worker was lost are taken up (or failed), uploads nobody will
    # complete aborted, and ZIPs past EXPORT_TTL_HOURS deleted.
    "export-sweep": {
        "task": "videos.export_sweep",
        "schedule": _settings.export_sweep_interval_seconds,
        "kwargs": {},
        "options": {"queue": MAINTENANCE_QUEUE},
    },
}
# Signed URLs counted in Redis, folded into PostgreSQL (docs/analytics.md).
if _settings.analytics_enabled:
    beat_schedule["flush-analytics"] = {
        "task": "videos.flush_analytics",
        "schedule": _settings.analytics_flush_seconds,
        "kwargs": {},
        "options": {"queue": MAINTENANCE_QUEUE},
    }
if _settings.access_log_bucket:
    beat_schedule["ingest-access-logs"] = {
        "task": "videos.ingest_access_logs",
        "schedule": 300,
        "kwargs": {},
        "options": {"queue": MAINTENANCE_QUEUE},
    }
