"""The broker the tests run on, Redis or RabbitMQ, seen through one small interface.

Tests that look at the broker itself (how many messages wait in a queue, whether any is
delivered but unacknowledged, an empty slate between tests, a broker of their own for
the workers they start) ask ``broker_for(url)`` and never a Redis client or
``rabbitmqctl`` directly, so one test body holds for both brokers.

What the two brokers can tell differs in one way that matters for waiting. Redis holds
a transport's state in plain keys, read as it is now. RabbitMQ tells the ready count of
a queue as it is now (a passive declare), but the unacknowledged count only through
``rabbitmqctl list_queues``, whose figures for a quorum queue are refreshed on the
queue's tick (every five seconds by default). So a count that must describe the broker
*after* some moment (``since``) is refused until a tick has surely passed since then.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import redis
from kombu import Connection

from schemas.contract import DEAD_LETTERS_QUEUE, MAINTENANCE_QUEUE, REQUESTS_QUEUE, is_amqp
from tests.support import poll

CONTRACT_QUEUES = (REQUESTS_QUEUE, MAINTENANCE_QUEUE)
ALL_QUEUES = (*CONTRACT_QUEUES, DEAD_LETTERS_QUEUE)
# kombu's Redis transport keeps a message of priority p > 0 in the list "<queue>\x06\x16p".
REDIS_PRIORITY_SEPARATOR = "\x06\x16"
REDIS_PRIORITY_STEPS = (0, 3, 6, 9)
# RabbitMQ's quorum_tick_interval and collect_statistics_interval, both 5 s by default,
# plus a second for the figures to reach ``list_queues``.
RABBITMQ_STATS_LAG_SECONDS = 6.0


@dataclass(frozen=True)
class QueueCounts:
    ready: int
    unacked: int


class Broker(Protocol):
    url: str

    def ready(self, queue: str) -> int:
        """Messages waiting in ``queue`` now, to be delivered."""
        ...

    def counts(self, since: float | None = None) -> dict[str, QueueCounts] | None:
        """Ready and unacknowledged messages of every queue of ``ALL_QUEUES``, or None
        while the broker cannot yet describe itself after ``since`` (``time.monotonic()``)."""
        ...

    def purge(self) -> None:
        """Nothing left queued, nor kept to be given back later (on RabbitMQ, messages a
        live consumer holds stay with it: the tests stop their workers first)."""
        ...

    def queued_tasks(self, queue: str) -> list[str]:
        """Task names of the messages waiting in ``queue``; they stay queued."""
        ...


def broker_for(url: str) -> Broker:
    return RabbitMQBroker(url) if is_amqp(url) else RedisBroker(url)


def wait_until_idle(broker: Broker, *, timeout: float, message: str = "") -> None:
    """Until every contract queue is empty and holds nothing delivered but unacknowledged,
    as seen after this call began."""
    since = time.monotonic()
    last: list[dict[str, QueueCounts] | None] = [None]

    def idle() -> bool:
        counts = broker.counts(since)
        last[0] = counts
        return counts is not None and all(
            counts[queue] == QueueCounts(0, 0) for queue in CONTRACT_QUEUES
        )

    poll(
        idle,
        timeout=timeout,
        interval=0.2,
        message=lambda: f"{message or 'an idle broker'}; last seen {last[0]}",
    )


class RedisBroker:
    """kombu's Redis transport: a list per queue, an ``unacked`` hash of delivered messages."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def ready(self, queue: str) -> int:
        client = self._client()
        return sum(client.llen(name) for name in self._lists(queue))

    def counts(self, since: float | None = None) -> dict[str, QueueCounts]:
        client = self._client()
        unacked = {queue: 0 for queue in ALL_QUEUES}
        for raw in client.hvals("unacked"):
            # Each entry is [message, exchange, routing key]; routing key = queue here.
            routing_key = json.loads(raw)[2]
            if routing_key in unacked:
                unacked[routing_key] += 1
        return {queue: QueueCounts(self.ready(queue), unacked[queue]) for queue in ALL_QUEUES}

    def purge(self) -> None:
        client = self._client()
        # Bindings stay: a running worker declared them once and relies on them.
        stale = [key for key in client.scan_iter() if not key.startswith(b"_kombu.binding.")]
        if stale:
            client.delete(*stale)

    def queued_tasks(self, queue: str) -> list[str]:
        client = self._client()
        return [
            json.loads(raw)["headers"]["task"]
            for name in self._lists(queue)
            for raw in client.lrange(name, 0, -1)
        ]

    @staticmethod
    def _lists(queue: str) -> list[str]:
        return [
            queue if step == 0 else f"{queue}{REDIS_PRIORITY_SEPARATOR}{step}"
            for step in REDIS_PRIORITY_STEPS
        ]


class RabbitMQBroker:
    """A RabbitMQ vhost, read over AMQP where it answers now and with ``rabbitmqctl``
    for what only it knows (unacknowledged counts)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.vhost = vhost_of(url)

    def ready(self, queue: str) -> int:
        with Connection(self.url, connect_timeout=5) as connection:
            channel = connection.channel()
            try:
                return channel.queue_declare(queue, passive=True).message_count
            except connection.channel_errors:
                return 0  # not declared yet: nothing in it

    def counts(self, since: float | None = None) -> dict[str, QueueCounts] | None:
        """As of the queues' last tick: both figures of one moment, even if a past one."""
        if since is not None and time.monotonic() < since + RABBITMQ_STATS_LAG_SECONDS:
            return None
        output = rabbitmqctl(
            "list_queues",
            *("-p", self.vhost, "--quiet", "--formatter", "json"),
            *("name", "messages_ready", "messages_unacknowledged"),
        )
        listed = {row["name"]: row for row in json.loads(output or "[]")}
        return {
            queue: QueueCounts(
                int(listed.get(queue, {}).get("messages_ready", 0)),
                int(listed.get(queue, {}).get("messages_unacknowledged", 0)),
            )
            for queue in ALL_QUEUES
        }

    def purge(self) -> None:
        with Connection(self.url, connect_timeout=5) as connection:
            for queue in ALL_QUEUES:
                channel = connection.channel()
                try:
                    channel.queue_purge(queue)
                except connection.channel_errors:
                    continue  # not declared yet
                finally:
                    with contextlib.suppress(*connection.channel_errors):
                        channel.close()

    def queued_tasks(self, queue: str) -> list[str]:
        """Each message is taken unacknowledged, then all go back when the channel closes."""
        names: list[str] = []
        with Connection(self.url, connect_timeout=5) as connection:
            channel = connection.channel()
            try:
                while (message := channel.basic_get(queue, no_ack=False)) is not None:
                    names.append(message.headers["task"])
            except connection.channel_errors:
                return names  # not declared yet
            finally:
                with contextlib.suppress(*connection.channel_errors):
                    channel.close()
        return names


# Isolated brokers ---------------------------------------------------------------------


def vhost_of(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def with_redis_db(url: str, db: int) -> str:
    return f"{url.rsplit('/', 1)[0]}/{db}"


@contextlib.contextmanager
def isolated_broker(url: str, name: str, redis_db: int) -> Iterator[str]:
    """A broker of its own beside ``url``, empty, that no other worker reads; removed after.

    On Redis it is database ``redis_db`` of the same server; on RabbitMQ the vhost
    ``<vhost>.<name>``, made for the occasion with ``rabbitmqctl``.
    """
    if not is_amqp(url):
        isolated = with_redis_db(url, redis_db)
        client = redis.Redis.from_url(isolated)
        client.flushdb()
        try:
            yield isolated
        finally:
            client.flushdb()  # messages the stopped workers handed back
            client.close()
        return
    base = vhost_of(url)
    vhost = f"{'videoworker-tests' if base == '/' else base}.{name}"
    user = unquote(urlsplit(url).username or "guest")
    rabbitmqctl("delete_vhost", vhost, check=False)  # left by a run that was killed
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    try:
        yield with_vhost(url, vhost)
    finally:
        rabbitmqctl("delete_vhost", vhost, check=False)


def rabbitmqctl(*args: str, check: bool = True) -> str:
    """``rabbitmqctl ARGS``'s output; it must be on PATH (or in /usr/sbin) and allowed to
    reach the node (root, or the rabbitmq user)."""
    command = shutil.which("rabbitmqctl") or shutil.which("rabbitmqctl", path="/usr/sbin")
    if command is None:
        raise RuntimeError("TEST_BROKER_URL is a RabbitMQ URL but rabbitmqctl is not installed")
    result = subprocess.run(  # noqa: S603 - a fixed tool, arguments as a list
        [command, *args], capture_output=True, text=True, timeout=60
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"rabbitmqctl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


@contextlib.contextmanager
def isolated_environment(
    services: dict[str, str], name: str, broker_db: int, backend_db: int, **overrides: str
) -> Iterator[dict[str, str]]:
    """``services`` with a broker and a result backend that only this test's workers use:
    the broker as ``isolated_broker`` makes it (Redis database ``broker_db``, or the vhost
    ``<vhost>.<name>``), results in database ``backend_db`` of the results' Redis. Both
    start empty and are emptied after."""
    with isolated_broker(services["CELERY_BROKER_URL"], name, broker_db) as broker_url:
        backend_url = with_redis_db(services["CELERY_RESULT_BACKEND"], backend_db)
        results = redis.Redis.from_url(backend_url)
        results.flushdb()
        try:
            yield {
                **services,
                "CELERY_BROKER_URL": broker_url,
                "CELERY_RESULT_BACKEND": backend_url,
                **overrides,
            }
        finally:
            results.flushdb()
            results.close()
