"""A Celery consumer that answers malformed messages instead of choking on them.

Stock Celery 5 handles a few bad messages (undecodable bodies, disallowed content
types) but lets others escape its receive callback, for example a JSON body that is
not ``[args, kwargs, embed]``, which takes the consumer down and leaves the message
to be redelivered forever. Unknown task names are stored as a ``NotRegistered``
failure that a caller in another language cannot read.

Every message is vetted here before Celery sees it. A bad one is acknowledged (never
redelivered), logged once, and, when its headers carry a task id, answered in the
result backend with the ``invalid_request`` envelope the caller is waiting for.

With ``acks_late`` and ``task_reject_on_worker_lost``, a message whose task kills its
worker (out of memory, a segfault in a library) would come back forever. The broker
marks such messages ``redelivered`` -- but also messages a worker handed back unstarted
(prefetched at a warm shutdown). So each task marks itself started when it begins
(``mark_started``, in the pool process), and a redelivery counts against the message
only when its previous delivery had started. Past ``MAX_REDELIVERIES`` such losses the
message is set aside in the dead-letter list (``videoworker dead-letters``) and
answered with ``internal``, not run again.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from celery import states
from celery.exceptions import SecurityError
from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed
from vine import promise

from schemas.envelope import failure

log = logging.getLogger("videoworker.consumer")

CONTENT_TYPES = {"json": "application/json", "auth": "application/data"}
MAX_REDELIVERIES = 3
DEAD_LETTERS_KEY = "videoworker:dead-letters"
REDELIVERIES_PREFIX = "videoworker:redeliveries:"
STARTED_PREFIX = "videoworker:started:"
# Longer than any message can wait for redelivery.
MARKER_TTL_SECONDS = 7 * 86400


def vet(message: Any, known_tasks: Any, accepted: str = "application/json") -> str | None:
    """Why the message cannot be run, or None if it is a well-formed protocol 2 message."""
    headers = message.headers
    if not isinstance(headers, dict):
        return "Message has no headers; send it with Celery message protocol 2"
    name, task_id = headers.get("task"), headers.get("id")
    if not isinstance(name, str) or not isinstance(task_id, str) or not task_id:
        return "Message headers must carry the task name and id (Celery message protocol 2)"
    if name not in known_tasks:
        return f"Unknown task {name!r}"
    try:
        body = message.decode()
    except ContentDisallowed:
        return f"Content type {message.content_type!r} is not accepted; send {accepted}"
    except SecurityError:
        return "Message signature could not be verified"
    except Exception:  # noqa: BLE001 - any decoding failure means the same to the caller
        return "Message body is not valid JSON"
    if not (
        isinstance(body, list | tuple)
        and len(body) == 3
        and isinstance(body[0], list | tuple)
        and isinstance(body[1], dict)
        and (body[2] is None or isinstance(body[2], dict))
    ):
        return "Message body must be [args, kwargs, embed] (Celery message protocol 2)"
    return None


class GuardedConsumer(Consumer):
    def create_task_handler(self, promise: Any = promise) -> Any:
        dispatch = super().create_task_handler(promise)

        def on_task_received(message: Any) -> Any:
            problem = vet(message, self.strategies, self.accepted_content_types)
            if problem is not None:
                return self.refuse(message, problem)
            if _redelivered(message) and self.too_many_redeliveries(message):
                return self.set_aside(message)
            try:
                return dispatch(message)
            except Exception as exc:  # noqa: BLE001 - nothing may stop the consumer
                return self.refuse(message, f"Malformed message: {type(exc).__name__}")

        return on_task_received

    @property
    def accepted_content_types(self) -> str:
        accepted = self.app.conf.accept_content or ["json"]
        return " or ".join(CONTENT_TYPES.get(name, name) for name in accepted)

    def refuse(self, message: Any, reason: str) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        task_id = headers.get("id") if isinstance(headers.get("id"), str) else None
        log.error(
            "message.rejected: %s",
            reason,
            extra={
                "reason": reason,
                "task": str(headers.get("task"))[:200],
                "task_id": task_id,
                "content_type": message.content_type,
                "body_bytes": len(message.body or b""),
            },
        )
        if task_id:
            envelope = failure("invalid_request", reason, [{"loc": ["message"], "msg": reason}])
            try:
                self.app.backend.store_result(task_id, envelope, states.SUCCESS)
            except Exception:  # noqa: BLE001 - the ack below must still happen
                log.exception("message.reply_failed", extra={"task_id": task_id})
        message.ack_log_error(log, self.connection_errors)

    def too_many_redeliveries(self, message: Any) -> bool:
        headers = message.headers
        attempt = f"{headers['id']}:{headers.get('retries', 0)}"
        try:
            client = cache_redis()
            # Only a delivery that started and never finished was a lost worker; clear the
            # mark so the next loss is counted once more, not this one again.
            if not client.delete(STARTED_PREFIX + attempt):
                return False
            with client.pipeline(transaction=False) as pipe:
                pipe.incr(REDELIVERIES_PREFIX + attempt)
                pipe.expire(REDELIVERIES_PREFIX + attempt, MARKER_TTL_SECONDS)
                count, _ = pipe.execute()
        except Exception:  # noqa: BLE001 - without Redis, run it: never drop work
            log.exception("message.redelivery_count_failed", extra={"task_id": headers["id"]})
            return False
        log.warning(
            "message.redelivered",
            extra={"task": headers["task"], "task_id": headers["id"], "redeliveries": count},
        )
        return count > MAX_REDELIVERIES

    def set_aside(self, message: Any) -> None:
        headers = message.headers
        body = message.decode()
        entry = {
            "id": headers["id"],
            "task": headers["task"],
            "kwargs": body[1],
            "retries": headers.get("retries", 0),
            "reason": (
                f"redelivered more than {MAX_REDELIVERIES} times: its worker was lost each time"
            ),
            "at": datetime.now(UTC).isoformat(),
        }
        detail = f"{headers['task']} {entry['reason']}; set aside as a dead letter"
        try:
            cache_redis().lpush(DEAD_LETTERS_KEY, json.dumps(entry))
            self.app.backend.store_result(
                headers["id"], failure("internal", detail), states.SUCCESS
            )
        except Exception:  # noqa: BLE001 - keep the message rather than lose it
            log.exception("message.dead_letter_failed", extra={"task_id": headers["id"]})
            message.reject_log_error(log, self.connection_errors, requeue=True)
            return
        log.error(
            "message.dead_lettered", extra={"task": headers["task"], "task_id": headers["id"]}
        )
        message.ack_log_error(log, self.connection_errors)


def _redelivered(message: Any) -> bool:
    return bool(
        message.headers.get("redelivered") or (message.delivery_info or {}).get("redelivered")
    )


_cache_redis: Any = None


def cache_redis() -> Any:
    """This process's client of the cache Redis (counters, marks, dead letters)."""
    global _cache_redis
    if _cache_redis is None:
        from worker.adapters.redis import make_redis
        from worker.settings import get_settings

        _cache_redis = make_redis(get_settings().redis_cache_url)
    return _cache_redis


def mark_started(task_id: str, retries: int) -> None:
    """Note, in the pool process, that this delivery of the task began to run.

    One SET per task; the mark simply expires once the message has been acknowledged.
    """
    try:
        cache_redis().set(f"{STARTED_PREFIX}{task_id}:{retries}", 1, ex=MARKER_TTL_SECONDS)
    except Exception:  # noqa: BLE001 - never fail a task over its bookkeeping
        log.warning("task.start_mark_failed", extra={"task_id": task_id})


def forget_connections() -> None:
    """After fork: the child opens its own connection."""
    global _cache_redis
    _cache_redis = None
