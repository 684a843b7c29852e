"""A Celery consumer that answers malformed messages instead of choking on them.

Every message is vetted (``worker.runtime.vetting``) before Celery's strategy sees it.
A refused message is acknowledged (never redelivered) and logged once, with sizes and
the header's name, never its body. When its headers carry a task id, it is answered in
the result backend with the ``invalid_request`` envelope the caller is waiting for;
otherwise it is kept aside: in ``videoworker:unparseable`` on the Redis broker, in the
dead-letter queue ``videos.dead-letters`` (reason in a header, body cut to 64 KiB) on
RabbitMQ.

A redelivered message whose previous delivery had started lost its worker
(``worker.runtime.redeliveries``; each task marks its start with ``mark_started``, in
the pool process). Past ``BROKER_DELIVERY_LIMIT`` such losses the message is set aside,
whole, in the dead-letter queue ``videos.dead-letters`` (on either broker;
``videoworker dead-letters``) and answered with ``internal``, not run again.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import states
from celery.worker.consumer import Consumer
from vine import promise

from schemas.contract import QUEUE_OF, REQUESTS_QUEUE
from schemas.envelope import failure
from worker.runtime.dead_letters import kept_copy, publish_dead_letter, raw_item
from worker.runtime.redeliveries import REDELIVERIES_PREFIX, STARTED_PREFIX, Redeliveries
from worker.runtime.vetting import (
    ALLOWED_TASKS,
    DEFAULT_MESSAGE_MAX_BYTES,
    HEADER_CHECKS,
    MAX_NESTING,
    REFUSAL_PROPERTY,
    InflatesTooFar,
    NotDecompressible,
    Refusal,
    clipped,
    decode_refusal,
    inflated_size,
    nested_deeper_than,
    readable_task_id,
    shown,
    vet,
)

# The transports, the fault tests and the bench read these here.
__all__ = [
    "ALLOWED_TASKS",
    "DEFAULT_MESSAGE_MAX_BYTES",
    "HEADER_CHECKS",
    "MAX_NESTING",
    "REDELIVERIES_PREFIX",
    "REFUSAL_PROPERTY",
    "STARTED_PREFIX",
    "GuardedConsumer",
    "InflatesTooFar",
    "NotDecompressible",
    "Refusal",
    "forget_connections",
    "inflated_size",
    "mark_finished",
    "mark_started",
    "nested_deeper_than",
    "readable_task_id",
    "shown",
]

log = logging.getLogger("videoworker.consumer")

CONTENT_TYPES = {"json": "application/json", "auth": "application/data"}


class GuardedConsumer(Consumer):
    class Blueprint(Consumer.Blueprint):
        # Celery starts native delayed delivery (28 quorum queues and topic exchanges)
        # whenever it sees a quorum queue. This worker retries in place and sends no
        # delayed message but the debounced stats flush (seconds), so it is left out.
        default_steps = [
            step
            for step in Consumer.Blueprint.default_steps
            if not step.endswith(":DelayedDelivery")
        ]

    def create_task_handler(self, promise: Any = promise) -> Any:
        from worker.settings import get_settings

        dispatch = super().create_task_handler(promise)
        max_bytes = get_settings().message_max_bytes

        def on_task_received(message: Any) -> Any:
            try:
                # ALLOWED_TASKS is read at each call: a bench widens it in its process.
                refusal = vet(
                    message,
                    self.strategies,
                    self.accepted_content_types,
                    max_bytes,
                    allowed=ALLOWED_TASKS,
                )
            except Exception as exc:  # noqa: BLE001 - nothing may stop the consumer
                refusal = Refusal(f"Malformed message: {type(exc).__name__}")
            if refusal is not None:
                return self.refuse(message, refusal)
            if _redelivered(message) and self.too_many_redeliveries(message):
                return self.set_aside(message)
            try:
                return dispatch(message)
            except Exception as exc:  # noqa: BLE001 - nothing may stop the consumer
                return self.refuse(message, Refusal(f"Malformed message: {type(exc).__name__}"))

        return on_task_received

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        # Celery's own logs the whole body and answers nothing. When the transport could
        # not even build its message, kombu hands over the raw one: wrap it, bodiless.
        if not hasattr(message, "ack_log_error"):
            message = _bodiless(message)
        self.refuse(message, decode_refusal(message.headers, exc))

    @property
    def accepted_content_types(self) -> str:
        accepted = self.app.conf.accept_content or ["json"]
        return " or ".join(CONTENT_TYPES.get(name, name) for name in accepted)

    def refuse(self, message: Any, refusal: Refusal) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        task_id = readable_task_id(headers)
        body = message.body
        # An unknown task name is the caller's mistake (a typo, a newer caller): a warning.
        level = logging.WARNING if refusal.detail.startswith("Unknown task") else logging.ERROR
        log.log(
            level,
            "message.rejected: %s",
            refusal.detail,
            extra={
                "reason": refusal.detail,
                "task": clipped(headers.get("task")),
                "task_id": task_id,
                "content_type": clipped(message.content_type),
                "body_bytes": len(body) if isinstance(body, bytes | str) else 0,
                "item_bytes": refusal.item_bytes,
            },
        )
        if task_id:
            envelope = failure("invalid_request", refusal.detail, refusal.fields())
            try:
                self.app.backend.store_result(task_id, envelope, states.SUCCESS)
            except Exception:  # noqa: BLE001 - the ack below must still happen
                log.exception("message.reply_failed", extra={"task_id": task_id})
        else:
            self.keep_aside(message, refusal.detail)
        message.ack_log_error(log, self.connection_errors)

    def keep_aside(self, message: Any, reason: str = "Message carries no task id") -> None:
        """Nobody can be answered: keep the message where an operator can read it.

        The Redis transport keeps the item as it arrived in ``videoworker:unparseable``. A
        broker without such a list (RabbitMQ) gets it in the dead-letter queue instead,
        with ``reason`` in a header, rather than losing it with the ack.
        """
        keep = getattr(message.channel, "keep_aside", None)
        item = raw_item(message) if keep is not None else None
        try:
            if item is not None:
                keep(item)
            else:
                with self.app.producer_or_acquire() as producer:
                    publish_dead_letter(
                        producer,
                        self.app.conf.broker_url,
                        kept_copy(message),
                        (message.delivery_info or {}).get("routing_key") or REQUESTS_QUEUE,
                        reason,
                    )
        except Exception:  # noqa: BLE001 - logged; the ack must still happen
            log.exception("message.unparseable_keep_failed")

    def too_many_redeliveries(self, message: Any) -> bool:
        headers = message.headers
        try:
            count = redeliveries().count_loss(headers["id"], headers.get("retries", 0))
        except Exception:  # noqa: BLE001 - without Redis, run it: never drop work
            log.exception("message.redelivery_count_failed", extra={"task_id": headers["id"]})
            return False
        if count is None:
            return False
        log.warning(
            "message.redelivered",
            extra={"task": headers["task"], "task_id": headers["id"], "redeliveries": count},
        )
        return count > delivery_limit()

    def set_aside(self, message: Any) -> None:
        headers = message.headers
        reason = f"redelivered more than {delivery_limit()} times: its worker was lost each time"
        detail = f"{headers['task']} {reason}; set aside as a dead letter"
        from_queue = (message.delivery_info or {}).get("routing_key") or QUEUE_OF.get(
            headers["task"], REQUESTS_QUEUE
        )
        try:
            with self.app.producer_or_acquire() as producer:
                publish_dead_letter(producer, self.app.conf.broker_url, message, from_queue, reason)
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


def _bodiless(raw: Any) -> Any:
    """A kombu message for a raw one kombu could not convert: its ids, not its body."""
    from kombu.message import Message

    properties = dict(getattr(raw, "properties", None) or {})
    headers = properties.get("application_headers")
    delivery_info = getattr(raw, "delivery_info", None) or {}
    return Message(
        body=b"",
        delivery_tag=delivery_info.get("delivery_tag"),
        channel=getattr(raw, "channel", None),
        content_type=properties.get("content_type"),
        content_encoding=properties.get("content_encoding"),
        delivery_info=delivery_info,
        properties=properties,
        headers={k: v for k, v in headers.items() if k != "compression"}
        if isinstance(headers, dict)
        else {},
    )


def delivery_limit() -> int:
    from worker.settings import get_settings

    return get_settings().broker_delivery_limit


def _redelivered(message: Any) -> bool:
    return bool(
        message.headers.get("redelivered") or (message.delivery_info or {}).get("redelivered")
    )


# This process's counter: the consumer's in the main process, each pool child's own.
_redeliveries: Redeliveries | None = None


def redeliveries() -> Redeliveries:
    """This process's counter on the cache Redis, built on first use."""
    global _redeliveries
    if _redeliveries is None:
        from worker.settings import get_settings

        _redeliveries = Redeliveries.at(get_settings().redis_cache_url)
    return _redeliveries


def mark_started(task_id: str, retries: int) -> None:
    """Note, in the pool process, that this delivery of the task began to run."""
    try:
        redeliveries().mark_started(task_id, retries)
    except Exception:  # noqa: BLE001 - never fail a task over its bookkeeping
        log.warning("task.start_mark_failed", extra={"task_id": task_id})


def mark_finished(task_id: str, retries: int) -> None:
    """The delivery ran to its end (in the pool process): its marks go, so that the
    keys track the messages in flight, not every message that ever ran. A worker
    killed after this and before the acknowledgement hands the message back unmarked:
    it runs again, uncounted, which every task allows."""
    try:
        redeliveries().forget(task_id, retries)
    except Exception:  # noqa: BLE001 - never fail a task over its bookkeeping
        log.warning("task.finish_mark_failed", extra={"task_id": task_id})


def forget_connections() -> None:
    """After fork: the child opens its own connection."""
    global _redeliveries
    _redeliveries = None
