"""The dead-letter queue ``videos.dead-letters``, the same on Redis and on RabbitMQ.

A message set aside after repeated worker loss is published there whole (its body,
content type and headers, plus why and when it was set aside and the queue it came
from), so ``videoworker dead-letters requeue`` can put back exactly what a caller sent,
same task id included: the caller still waiting on that id gets the new run's answer.
On RabbitMQ a refused message that carries no task id (nobody to answer) is kept there
too, as a copy cut to ``KEPT_BODY_BYTES``; the Redis transport keeps such an item as it
arrived (``raw_item``) in a list of its own. Nothing consumes the queue but an operator.
On RabbitMQ it is a quorum queue like the others; on Redis it is the list of that name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kombu import Connection, Exchange, Producer, Queue
from kombu.utils.json import dumps

from schemas.contract import DEAD_LETTERS_QUEUE, QUORUM_QUEUE_ARGUMENTS, is_amqp
from worker.logs import JWT, SHARE_TOKEN

# Headers that may repeat the kwargs (Celery writes their repr), and the kwargs that are
# credentials (a caller's token; a share's token and password): none is ever stored in
# the queue. A share resolve requeued without them is answered as a bad request.
REPR_HEADERS = ("argsrepr", "kwargsrepr")
TOKEN_KWARG = "auth"
SECRET_KWARGS = frozenset({TOKEN_KWARG, "token", "password"})
REASON_HEADER = "x-videoworker-reason"
SET_ASIDE_AT_HEADER = "x-videoworker-set-aside-at"
FROM_QUEUE_HEADER = "x-videoworker-queue"
OUR_HEADERS = (REASON_HEADER, SET_ASIDE_AT_HEADER, FROM_QUEUE_HEADER)
# What the queue keeps of the body of a message nobody can be answered for.
KEPT_BODY_BYTES = 64 * 1024
KEPT_BODY_BYTES_HEADER = "x-videoworker-body-bytes"


def dead_letters_queue(broker_url: str) -> Queue:
    return Queue(
        DEAD_LETTERS_QUEUE,
        Exchange(DEAD_LETTERS_QUEUE, type="direct"),
        routing_key=DEAD_LETTERS_QUEUE,
        queue_arguments=QUORUM_QUEUE_ARGUMENTS if is_amqp(broker_url) else None,
    )


def publish_dead_letter(
    producer: Producer, broker_url: str, message: Any, from_queue: str, reason: str
) -> None:
    """Publish ``message`` (a kombu message) to the dead-letter queue, unchanged."""
    queue = dead_letters_queue(broker_url)
    headers = {
        **{
            k: v
            for k, v in (message.headers or {}).items()
            if k not in OUR_HEADERS and k not in REPR_HEADERS
        },
        REASON_HEADER: reason,
        SET_ASIDE_AT_HEADER: datetime.now(UTC).isoformat(),
        FROM_QUEUE_HEADER: from_queue,
    }
    producer.publish(
        without_token(message.body),
        exchange=queue.exchange,
        routing_key=queue.routing_key,
        declare=[queue],
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=2,
        retry=True,
    )


def without_token(body: bytes | str) -> bytes | str:
    """The body with the credentials among its kwargs removed (``SECRET_KWARGS``): a
    token or a password is never stored.

    A body that is not ``[args, kwargs, embed]`` JSON (refused, or cut to a prefix) has
    whatever looks like a compact JWT or a share token in it blanked instead.
    """
    try:
        decoded = json.loads(body)
    except (ValueError, TypeError, RecursionError):
        return _blank_tokens(body)
    if not (isinstance(decoded, list) and len(decoded) == 3 and isinstance(decoded[1], dict)):
        return _blank_tokens(body)
    if SECRET_KWARGS.isdisjoint(decoded[1]):
        return body
    decoded[1] = {k: v for k, v in decoded[1].items() if k not in SECRET_KWARGS}
    return json.dumps(decoded).encode()


def _blank_tokens(body: bytes | str) -> bytes | str:
    text = body.decode("utf-8", "surrogateescape") if isinstance(body, bytes) else body
    blanked = SHARE_TOKEN.sub("[redacted]", JWT.sub("[redacted]", text))
    if blanked == text:
        return body
    return blanked.encode("utf-8", "surrogateescape") if isinstance(body, bytes) else blanked


def raw_item(message: Any) -> bytes | None:
    """The message as the Redis transport received it, to be kept aside; else None."""
    payload = getattr(message, "_raw", None)
    if not isinstance(payload, dict):
        return None
    try:
        return dumps(payload).encode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - keep what can be kept
        return repr(payload).encode("utf-8", "replace")


@dataclass(frozen=True)
class KeptCopy:
    """What the dead-letter queue keeps of a message nobody can be answered for."""

    body: bytes
    headers: dict[str, Any]
    content_type: str | None
    content_encoding: str | None


def kept_copy(message: Any) -> KeptCopy:
    """The message as kombu handed it over, its body cut to ``KEPT_BODY_BYTES``.

    kombu has already inflated a body whose ``compression`` header it could read, so
    that header is dropped; a body it could not inflate is kept as it came, header and all.
    """
    headers = dict(message.headers) if isinstance(message.headers, dict) else {}
    if headers.get("compression") and not getattr(message, "errors", None):
        headers.pop("compression")
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
    if len(body) > KEPT_BODY_BYTES:
        headers[KEPT_BODY_BYTES_HEADER] = len(body)
        body = body[:KEPT_BODY_BYTES]
    content_type = message.content_type if isinstance(message.content_type, str) else None
    encoding = message.content_encoding if isinstance(message.content_encoding, str) else None
    return KeptCopy(body, headers, content_type, encoding)


def with_token(body: bytes | str, token: str) -> bytes:
    decoded = json.loads(body)
    decoded[1] = {**decoded[1], TOKEN_KWARG: token}
    return json.dumps(decoded).encode()


@dataclass(frozen=True)
class DeadLetter:
    id: str
    task: str
    kwargs: Any
    retries: int
    reason: str
    at: str
    queue: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "kwargs": self.kwargs,
            "retries": self.retries,
            "reason": self.reason,
            "at": self.at,
            "queue": self.queue,
        }


def _describe(message: Any) -> DeadLetter:
    headers = message.headers or {}
    try:
        body = json.loads(message.body)
        kwargs = body[1] if isinstance(body, list) and len(body) == 3 else None
    except (ValueError, TypeError, RecursionError):
        # A message kept because nobody could be answered may hold any bytes at all.
        kwargs = None
    return DeadLetter(
        id=str(headers.get("id")),
        task=str(headers.get("task")),
        kwargs=kwargs,
        retries=headers.get("retries", 0),
        reason=str(headers.get(REASON_HEADER, "")),
        at=str(headers.get(SET_ASIDE_AT_HEADER, "")),
        queue=str(headers.get(FROM_QUEUE_HEADER, "")),
    )


class DeadLetters:
    """An operator's view of the queue: list, requeue or drop by task id.

    Messages are taken with ``basic_get`` and each is given back (rejected with requeue)
    unless it is the one being requeued or dropped, so listing changes nothing.
    """

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url

    @contextmanager
    def _held(self) -> Iterator[tuple[Connection, list[Any]]]:
        with Connection(self.broker_url, connect_timeout=5) as connection:
            channel = connection.channel()
            queue = dead_letters_queue(self.broker_url)(channel)
            queue.declare()
            held: list[Any] = []
            try:
                while (message := queue.get(no_ack=False)) is not None:
                    held.append(message)
                yield connection, held
            finally:
                for message in held:
                    if not message.acknowledged:
                        message.requeue()

    def list(self) -> list[DeadLetter]:
        with self._held() as (_, held):
            return [_describe(message) for message in held]

    def drop(self, task_id: str) -> DeadLetter | None:
        with self._held() as (_, held):
            for message in held:
                if _describe(message).id == task_id:
                    message.ack()
                    return _describe(message)
        return None

    def requeue(self, task_id: str, token: str | None = None) -> DeadLetter | None:
        """Publish the message back to the queue it came from, then drop its dead letter.

        Its token was not kept: under ``AUTH_MODE=jwt`` give a fresh one (``token``),
        or the run is answered ``unauthorized``.
        """
        with self._held() as (connection, held):
            for message in held:
                letter = _describe(message)
                if letter.id != task_id:
                    continue
                headers = {k: v for k, v in message.headers.items() if k not in OUR_HEADERS}
                # A fresh start: the redelivery count is per task id and retries.
                headers.pop("redelivered", None)
                Producer(connection.channel()).publish(
                    with_token(message.body, token) if token else message.body,
                    exchange=letter.queue,
                    routing_key=letter.queue,
                    headers=headers,
                    content_type=message.content_type,
                    content_encoding=message.content_encoding,
                    delivery_mode=2,
                    retry=True,
                )
                message.ack()
                return letter
        return None
