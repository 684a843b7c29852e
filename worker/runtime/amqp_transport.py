"""kombu's AMQP transport, with compressed bodies checked before anything inflates them.

kombu decompresses a message's body as it builds the message, before the consumer can
look at it: a megabyte of zeros compressed (a "zip bomb") takes the worker's main
process to gigabytes for a moment. Here a body that names a compression is first
inflated piece by piece only up to ``MESSAGE_MAX_BYTES`` (the Redis transport's check,
``worker.runtime.transport.compression_refusal``); one that would go further, or does
not decompress, reaches the consumer still compressed, its ``compression`` header moved
to ``x-videoworker-compression`` (so nothing inflates it later), carrying the reason: the
consumer answers it ``invalid_request`` under its task id, or keeps it aside as it came.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import pyamqp

from worker.runtime.consumer import REFUSAL_PROPERTY, Refusal
from worker.runtime.transport import compression_refusal

COMPRESSION_KEPT_HEADER = "x-videoworker-compression"


def _limit() -> int:
    from worker.settings import get_settings

    return get_settings().message_max_bytes


class Message(pyamqp.Message):
    def __init__(self, msg: Any, channel: Any = None, **kwargs: Any) -> None:
        properties = msg.properties or {}
        headers = properties.get("application_headers") or {}
        compression = headers.get("compression") if isinstance(headers, dict) else None
        if compression:
            body = msg.body
            if isinstance(body, str):
                body = body.encode("utf-8", "surrogateescape")
            try:
                refusal = compression_refusal(bytes(body or b""), compression, _limit())
            except Exception as exc:  # noqa: BLE001 - a refusal, never a crash of the consumer
                refusal = Refusal(f"Message could not be examined: {type(exc).__name__}")
            if refusal is not None:
                # Built as base.Message would, without the header that makes it inflate.
                kept = {k: v for k, v in headers.items() if k != "compression"}
                kept[COMPRESSION_KEPT_HEADER] = compression
                super(pyamqp.Message, self).__init__(
                    body=bytes(body or b""),
                    channel=channel,
                    delivery_tag=msg.delivery_tag,
                    content_type=properties.get("content_type"),
                    content_encoding=properties.get("content_encoding"),
                    delivery_info=msg.delivery_info,
                    properties={
                        **properties,
                        REFUSAL_PROPERTY: refusal.as_property(len(body or b"")),
                    },
                    headers=kept,
                    **kwargs,
                )
                return
        super().__init__(msg, channel=channel, **kwargs)


class Channel(pyamqp.Channel):
    Message = Message


class Connection(pyamqp.Connection):
    Channel = Channel


class Transport(pyamqp.Transport):
    Connection = Connection


class SSLTransport(Transport):
    """``amqps://``: the same guard over TLS, as kombu's own ``SSLTransport`` does it
    (which a transport given by name would otherwise lose, and port 5671 with it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.client.ssl:
            self.client.ssl = True
