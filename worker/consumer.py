"""A Celery consumer that answers malformed messages instead of choking on them.

Stock Celery 5 handles a few bad messages (undecodable bodies, disallowed content
types) but lets others escape its receive callback, for example a JSON body that is
not ``[args, kwargs, embed]``, which takes the consumer down and leaves the message
to be redelivered forever. Unknown task names are stored as a ``NotRegistered``
failure that a caller in another language cannot read.

Every message is vetted here before Celery sees it. A bad one is acknowledged (never
redelivered), logged once, and, when its headers carry a task id, answered in the
result backend with the ``invalid_request`` envelope the caller is waiting for.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import states
from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed
from vine import promise

from schemas.envelope import failure

log = logging.getLogger("videoworker.consumer")


def vet(message: Any, known_tasks: Any) -> str | None:
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
        return f"Content type {message.content_type!r} is not accepted; send application/json"
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
            problem = vet(message, self.strategies)
            if problem is not None:
                return self.refuse(message, problem)
            try:
                return dispatch(message)
            except Exception as exc:  # noqa: BLE001 - nothing may stop the consumer
                return self.refuse(message, f"Malformed message: {type(exc).__name__}")

        return on_task_received

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
