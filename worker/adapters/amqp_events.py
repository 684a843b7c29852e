"""The exchange ``videos.events`` on RabbitMQ: where the relay also puts each event when
the broker is RabbitMQ.

A durable topic exchange; the routing key is the event's type, so a subscriber binds its
own queue with ``video.*`` or ``#`` and gets what was published while it was away (its
queue keeps it). Messages are persistent, and the batch is published under publisher
confirms: it counts as relayed only once the broker has acknowledged every message.
Without any bound queue the broker drops (and still confirms) a message: a subscriber's
history starts when its queue is first bound.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import amqp
from kombu import Connection

from schemas.events import CLOUDEVENTS_CONTENT_TYPE, EVENTS_EXCHANGE
from worker.adapters.relay import Outgoing, SinkUnavailable

CONFIRM_TIMEOUT_SECONDS = 10.0
CONNECTION_ERRORS = (OSError, socket.timeout, amqp.exceptions.AMQPError)


def declare_exchange(channel: amqp.Channel) -> None:
    channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True, auto_delete=False)


class RabbitExchangeSink:
    name = "exchange"

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.connection: Connection | None = None
        self.channel: amqp.Channel | None = None
        self.acked: set[int] = set()
        self.nacked: set[int] = set()
        self.next_tag = 1

    def _open(self) -> amqp.Channel:
        if self.channel is not None:
            return self.channel
        self.connection = Connection(self.broker_url, connect_timeout=5, heartbeat=0)
        raw = self.connection.connection  # the py-amqp connection, opened
        channel = raw.channel()
        declare_exchange(channel)
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self.channel, self.next_tag = channel, 1
        self.acked.clear()
        self.nacked.clear()
        return channel

    def _settle(self, into: set[int], delivery_tag: int, multiple: bool) -> None:
        if multiple:
            into.update(
                tag
                for tag in range(1, delivery_tag + 1)
                if tag not in self.acked and tag not in self.nacked
            )
        else:
            into.add(delivery_tag)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(self.acked, delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(self.nacked, delivery_tag, multiple)

    def publish(self, events: Sequence[Outgoing]) -> dict[int, str]:
        if not events:
            return {}
        try:
            channel = self._open()
            tags: dict[int, int] = {}
            for event in events:
                message = amqp.Message(
                    event.body,
                    content_type=CLOUDEVENTS_CONTENT_TYPE,
                    content_encoding="utf-8",
                    delivery_mode=2,
                    message_id=event.event_id,
                    type=event.type,
                )
                channel.basic_publish(message, exchange=EVENTS_EXCHANGE, routing_key=event.type)
                tags[self.next_tag] = event.row_id
                self.next_tag += 1
            assert self.connection is not None
            raw = self.connection.connection
            while not all(tag in self.acked or tag in self.nacked for tag in tags):
                raw.drain_events(timeout=CONFIRM_TIMEOUT_SECONDS)
        except CONNECTION_ERRORS as exc:
            self.close()
            raise SinkUnavailable(f"RabbitMQ: {type(exc).__name__}") from exc
        refused = {
            row: "RabbitMQ refused (nack)" for tag, row in tags.items() if tag in self.nacked
        }
        self.acked.difference_update(tags)
        self.nacked.difference_update(tags)
        return refused

    def close(self) -> None:
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 - already broken: nothing to hand back
                pass
