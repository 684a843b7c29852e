"""Task messages laid out by hand, as the README's "From other languages" recipe says,
and put on either broker without a Celery app.

On Redis a message is a kombu envelope (a JSON object) ``LPUSH``ed with redis-py onto
the list named like the queue. On RabbitMQ it is published with py-amqp's
``basic_publish`` to the exchange named like the queue, with publisher confirms and no
declaration: what a caller in any language with an AMQP 0-9-1 client does. Tests that
break the envelope on purpose start from ``kombu_envelope`` and change it; on RabbitMQ
the same dict is published as the AMQP properties, headers and body it stands for.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import amqp
import redis

from tests.support import poll

REQUESTS_QUEUE = "videos"
MAINTENANCE_QUEUE = "videos.maintenance"
DEAD_LETTERS_QUEUE = "videos.dead-letters"
RESULT_KEY_PREFIX = "celery-task-meta-"
# The embed of a message that asks for no workflow.
NO_WORKFLOW = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
# Headers the worker adds to what the dead-letter queue keeps.
REASON_HEADER = "x-videoworker-reason"
KEPT_BODY_BYTES_HEADER = "x-videoworker-body-bytes"
# A header of the tests' own on messages without a task id, to find them once kept.
PROBE_HEADER = "x-test-probe"


def is_rabbitmq(broker_url: str) -> bool:
    return broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))


def protocol2_headers(task: str, task_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The Celery protocol 2 headers, every one the README lists, filled in by hand."""
    return {
        "lang": "go",
        "task": task,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
        "argsrepr": "()",
        "kwargsrepr": json.dumps(kwargs),
        "origin": "billing-service@host-1",
    }


def request_body(kwargs: dict[str, Any]) -> bytes:
    """``[args, kwargs, embed]`` as JSON bytes: no positional args, no workflow."""
    return json.dumps([[], kwargs, NO_WORKFLOW]).encode("utf-8")


def kombu_envelope(
    headers: dict[str, Any] | None, body: bytes, queue: str = REQUESTS_QUEUE
) -> dict[str, Any]:
    """The item kombu's Redis transport keeps on the queue's list, per the README."""
    item: dict[str, Any] = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": (headers or {}).get("id"),
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    if item["properties"]["correlation_id"] is None:
        del item["properties"]["correlation_id"]
    return item


def amqp_properties(task_id: str) -> dict[str, Any]:
    """The AMQP message properties of a request, per the README."""
    return {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "correlation_id": task_id,
        "delivery_mode": 2,
    }


@dataclass(frozen=True)
class Request:
    """One request, built by hand: its headers and body, and its item for the Redis list."""

    task_id: str
    queue: str
    headers: dict[str, Any]
    body: bytes
    item: dict[str, Any]


def foreign_request(task: str, kwargs: dict[str, Any], queue: str) -> Request:
    task_id = str(uuid.uuid4())
    headers = protocol2_headers(task, task_id, kwargs)
    body = request_body(kwargs)
    return Request(task_id, queue, headers, body, kombu_envelope(headers, body, queue))


def send(queues: Queues, request: Request) -> None:
    """As the README says: ``LPUSH`` the envelope onto the list named like the queue, or
    publish headers, body and properties to the exchange named like the queue."""
    if isinstance(queues, RabbitQueues):
        queues.publish(
            request.queue,
            request.queue,
            request.body,
            request.headers,
            **amqp_properties(request.task_id),
        )
    else:
        queues.push(request.queue, request.item)


def result_key(task_id: str) -> str:
    return f"{RESULT_KEY_PREFIX}{task_id}"


def read_result(results: redis.Redis, task_id: str) -> dict[str, Any] | None:
    """The result record of ``task_id``, decoded, or None while there is none."""
    raw = results.get(result_key(task_id))
    return None if raw is None else json.loads(raw)


# --- the two brokers ---------------------------------------------------------------


class Queues(Protocol):
    rabbitmq: bool

    def push(self, queue: str, *items: dict[str, Any] | bytes) -> None: ...

    def idle(self, *queues: str) -> bool: ...

    def close(self) -> None: ...


class RedisQueues:
    """The queues as Redis lists: ``LPUSH`` onto them, as a caller in any language does."""

    rabbitmq = False

    def __init__(self, broker_url: str) -> None:
        self.client = redis.Redis.from_url(broker_url)

    def push(self, queue: str, *items: dict[str, Any] | bytes) -> None:
        # One LPUSH: the items are taken (BRPOP) in the order given.
        self.client.lpush(queue, *(_item_bytes(item) for item in items))

    def idle(self, *queues: str) -> bool:
        return not (any(self.client.llen(q) for q in queues) or self.client.hlen("unacked"))

    def close(self) -> None:
        self.client.close()


def _item_bytes(item: dict[str, Any] | bytes) -> bytes:
    return item if isinstance(item, bytes) else json.dumps(item).encode("utf-8")


@dataclass(frozen=True)
class Kept:
    """A message the worker put in ``videos.dead-letters``, as it lies there."""

    headers: dict[str, Any]
    body: bytes
    content_type: str | None


class RabbitQueues:
    """The queues behind their exchanges on RabbitMQ, through a bare AMQP 0-9-1 client."""

    rabbitmq = True

    def __init__(self, broker_url: str) -> None:
        parts = urlsplit(broker_url)
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        self.vhost = unquote(path) or "/"
        self.connection = amqp.Connection(
            host=f"{parts.hostname or 'localhost'}:{parts.port or 5672}",
            userid=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
            virtual_host=self.vhost,
            confirm_publish=True,
        )
        self.connection.connect()
        self.channel = self.connection.channel()

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: dict[str, Any] | None,
        **properties: Any,
    ) -> None:
        """One ``basic_publish``, returning once RabbitMQ has confirmed it."""
        if headers is not None:
            properties["application_headers"] = headers
        message = amqp.Message(body, **{k: v for k, v in properties.items() if v is not None})
        self.channel.basic_publish(message, exchange=exchange, routing_key=routing_key)

    def push(self, queue: str, *items: dict[str, Any] | bytes) -> None:
        for item in items:
            if isinstance(item, bytes):
                raise TypeError("raw bytes are an item of the Redis list, not an AMQP message")
            body, headers, properties = amqp_form(item)
            self.publish(queue, queue, body, headers, **properties)

    def idle(self, *queues: str) -> bool:
        counts = self.queue_counts()
        return all(counts.get(q, (0, 0)) == (0, 0) for q in queues)

    def queue_counts(self) -> dict[str, tuple[int, int]]:
        """Ready and unacknowledged messages per queue of this vhost (``rabbitmqctl``)."""
        listed = subprocess.run(
            [
                "rabbitmqctl",
                "list_queues",
                "-p",
                self.vhost,
                "--formatter",
                "json",
                "name",
                "messages_ready",
                "messages_unacknowledged",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return {
            row["name"]: (row["messages_ready"], row["messages_unacknowledged"])
            for row in json.loads(listed.stdout)
        }

    def take_kept(self, probe: str) -> list[Kept]:
        """Takes off ``videos.dead-letters`` the messages carrying ``probe`` (in the probe
        header, or in the body of a message without headers); the rest stay."""
        channel = self.connection.channel()
        taken: list[Kept] = []
        try:
            try:
                channel.queue_declare(DEAD_LETTERS_QUEUE, passive=True)
            except amqp.exceptions.NotFound:
                return []
            while (message := channel.basic_get(DEAD_LETTERS_QUEUE, no_ack=False)) is not None:
                headers = message.properties.get("application_headers") or {}
                body = message.body
                if isinstance(body, str):
                    body = body.encode("utf-8")
                if headers.get(PROBE_HEADER) == probe or probe.encode() in body:
                    channel.basic_ack(message.delivery_tag)
                    taken.append(Kept(headers, body, message.properties.get("content_type")))
        finally:
            # Closing the channel gives back every message it holds unacknowledged.
            if channel.is_open:
                channel.close()
        return taken

    def close(self) -> None:
        self.connection.close()


def amqp_form(item: dict[str, Any]) -> tuple[bytes, dict[str, Any] | None, dict[str, Any]]:
    """The body, headers and AMQP properties that a kombu envelope stands for."""
    properties = item.get("properties") or {}
    body = item["body"]
    if properties.get("body_encoding") == "base64":
        data = base64.b64decode(body)
    else:
        data = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode()
    return (
        data,
        item.get("headers"),
        {
            "content_type": item.get("content-type"),
            "content_encoding": item.get("content-encoding"),
            "correlation_id": properties.get("correlation_id"),
            "delivery_mode": properties.get("delivery_mode", 2),
        },
    )


def queues_for(broker_url: str) -> RedisQueues | RabbitQueues:
    return RabbitQueues(broker_url) if is_rabbitmq(broker_url) else RedisQueues(broker_url)


def kept_with_probe(queues: RabbitQueues, probe: str, timeout: float = 30) -> list[Kept]:
    """Polls ``videos.dead-letters`` until the messages carrying ``probe`` are there; takes them."""
    found: list[Kept] = []

    def taken() -> bool:
        found.extend(queues.take_kept(probe))
        return bool(found)

    poll(taken, timeout=timeout, interval=0.2, message=f"a dead letter carrying {probe}")
    return found
