"""The Celery application (``celery -A worker worker``)."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace

from celery import Celery
from celery.concurrency import ALIASES
from celery.signals import (
    before_task_publish,
    celeryd_after_setup,
    celeryd_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from handlers.deps import Deps
from schemas.contract import QUEUE_OF
from worker import logs
from worker.adapters.analytics_buffer import Batched, RedisAnalyticsBuffer
from worker.bootstrap import build_deps, build_relay
from worker.runtime import auth, consumer
from worker.runtime.dispatch import celery_dispatch
from worker.settings import get_settings

app = Celery("videoworker")
app.config_from_object("celeryconfig")
app.conf.include = ["tasks.entrypoints"]
if get_settings().signing:
    app.setup_security(allowed_serializers=["json"], serializer="json")
auth.check_configuration()


log = logging.getLogger("videoworker.worker")

_deps_lock = threading.Lock()
_deps: Deps | None = None
# This worker's execution pool and concurrency, as it starts (celeryd_init, before any
# fork): each of its processes sizes its database pool from them (Settings.for_worker).
_execution: tuple[str, int] | None = None


def celery_enqueue(task: str, kwargs: dict, countdown: float, task_id: str | None = None) -> None:
    """The handlers' Enqueue port: send a task by name to its queue."""
    app.send_task(
        task, kwargs=kwargs, countdown=countdown or None, queue=QUEUE_OF[task], task_id=task_id
    )


def get_deps() -> Deps:
    """This process's wired dependencies, built on first use (after any fork)."""
    global _deps
    if _deps is None:
        with _deps_lock:
            if _deps is None:
                settings = get_settings()
                if _execution is not None:
                    settings = settings.for_worker(*_execution)
                deps = build_deps(settings, enqueue=celery_enqueue, dispatch=celery_dispatch(app))
                if isinstance(deps.analytics_buffer, RedisAnalyticsBuffer):
                    # Counts added up in memory, written by a thread of this process
                    # (and as it stops: _send_counts).
                    deps = replace(deps, analytics_buffer=Batched(deps.analytics_buffer))
                _deps = deps
    return _deps


def reset_deps() -> None:
    """Forget the wired dependencies (after fork, or when settings change in tests)."""
    global _deps
    with _deps_lock:
        _deps = None


# The execution pools this worker runs under. prefork and solo: each process holds its
# read connection; threads: each thread checks one out per unit of work and gives it
# back, and its statement budget is its own. gevent and eventlet would need psycopg,
# redis-py and botocore monkey-patched for cooperative I/O, which nothing here does: a
# blocked greenlet would stall every other one, so they are refused at start.
SUPPORTED_POOLS = ("prefork", "processes", "solo", "threads")


def pool_name(conf: object = None, options: object = None) -> str:
    """The execution pool a starting worker was given, by Celery's name for it.

    The command line's ``--pool`` arrives as ``options["pool"]``: a name, or the class
    Celery resolved for its default (``prefork`` under ``worker_pool``)."""
    chosen = options if isinstance(options, dict) else {}
    pool = chosen.get("pool") or chosen.get("pool_cls") or getattr(conf, "worker_pool", None)
    if not pool:
        return "prefork"
    if isinstance(pool, str):
        return pool
    path = f"{getattr(pool, '__module__', '')}:{getattr(pool, '__name__', repr(pool))}"
    return next((alias for alias, known in ALIASES.items() if known == path), path)


@celeryd_init.connect
def _refuse_unsupported_pools(conf: object = None, options: object = None, **_: object) -> None:
    name = pool_name(conf, options)
    if name.rpartition(":")[0] or name not in SUPPORTED_POOLS:
        raise SystemExit(
            f"Invalid configuration: --pool {name}: the worker runs under "
            + ", ".join(p for p in SUPPORTED_POOLS if p != "processes")
            + " (gevent and eventlet would need its database, Redis and S3 clients "
            "patched for cooperative I/O)"
        )


@celeryd_init.connect
def _note_execution_pool(conf: object = None, options: object = None, **_: object) -> None:
    global _execution
    chosen = options if isinstance(options, dict) else {}
    concurrency = (
        chosen.get("concurrency")
        or getattr(conf, "worker_concurrency", None)
        or os.cpu_count()
        or 1
    )
    _execution = (pool_name(conf, options), int(concurrency))


@celeryd_after_setup.connect
def _freeze_before_fork(**_: object) -> None:
    # Objects alive now are shared with the pool children; frozen, the children's
    # collector never touches them, so their pages are not copied (measured: PSS 0.8x).
    import gc

    gc.collect()
    gc.freeze()


@worker_process_init.connect
def _fresh_connections_per_child(**_: object) -> None:
    # A forked pool child must not reuse the parent's sockets (engine pool, Redis, S3).
    reset_deps()
    consumer.forget_connections()


@setup_logging.connect
def _structured_logs(loglevel: object = None, **_: object) -> None:
    # Connected, so Celery leaves logging to us: JSON lines, secrets redacted.
    settings = get_settings()
    level = loglevel if isinstance(loglevel, str) else settings.log_level
    if isinstance(loglevel, int):
        import logging

        level = logging.getLevelName(loglevel)
    logs.configure(
        level=level,
        fmt=settings.log_format,
        task_lines=settings.log_task_lines,
        secrets=[settings.aws_secret_access_key.get_secret_value(), *auth.log_secrets()],
    )


@task_prerun.connect
def _bind_task_context(task_id: str | None = None, task: object = None, **_: object) -> None:
    logs.task_context.set({"task_id": task_id or "", "task": getattr(task, "name", "")})
    if task_id:
        request = getattr(task, "request", None)
        consumer.mark_started(task_id, getattr(request, "retries", 0) or 0)


@before_task_publish.connect
def _authorize_own_messages(**fields: object) -> None:
    # A sweep's continuation, a stats flush, beat's schedule: see worker.runtime.auth.
    auth.attach_credentials(**fields)


@worker_process_shutdown.connect
@worker_shutdown.connect
def _send_counts(**_: object) -> None:
    # A pool child, or a solo or threads worker, stopping warmly: what it counted and
    # has not written yet goes now.
    deps = _deps
    if deps is not None and isinstance(deps.analytics_buffer, Batched):
        deps.analytics_buffer.stop()


@task_postrun.connect
def _clear_task_context(task_id: str | None = None, task: object = None, **_: object) -> None:
    logs.task_context.set(None)
    auth.forget_caller()
    if task_id:
        request = getattr(task, "request", None)
        consumer.mark_finished(task_id, getattr(request, "retries", 0) or 0)


_relay = None


@worker_ready.connect
def _start_event_relay(**_: object) -> None:
    # The main process only (pool children never see worker_ready): one relay thread per
    # worker, one of them active across all workers (worker.adapters.relay).
    global _relay
    settings = get_settings()
    if _execution is not None:
        pool, concurrency = _execution
        sized = settings.for_worker(pool, concurrency)
        processes = concurrency if pool in ("prefork", "processes") else 1
        # Each pool's size again in overflow, and the relay's own connection.
        most = processes * 2 * sized.pool_size + int(settings.events_relay)
        log.info(
            "database connections: %d per process (%s), up to %d for this node",
            sized.pool_size,
            "DB_POOL_SIZE" if settings.db_pool_size else f"--pool {pool} -c {concurrency}",
            most,
            extra={
                "db_pool_size": sized.pool_size,
                "pool": pool,
                "concurrency": concurrency,
                "node_connections": most,
            },
        )
    if settings.events_relay and _relay is None:
        _relay = build_relay(settings)
        _relay.start()


@worker_shutdown.connect
def _stop_event_relay(**_: object) -> None:
    if _relay is not None:
        _relay.stop.set()
