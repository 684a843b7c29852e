"""kombu's Redis transport, hardened against items that are not kombu messages.

Anything can ``LPUSH`` onto a queue's list. Stock kombu pops the item and builds a
message from it inside the consumer's event loop, trusting every part: bytes that are
not JSON (or nest deep enough to exhaust the decoder's recursion), a body that is not
base64 under ``body_encoding: base64``, an unknown body encoding, a delivery tag that
is not a string all raise there; Celery calls the error unrecoverable and the worker
exits, with the item already gone. A ``delivery_info`` without ``exchange`` makes the
consumer reconnect, handing back every message in flight. And kombu inflates a
compressed body whole: 509 KiB of zlib took the main process up by 1 GiB.

So each popped item is examined (``examine``) before kombu sees it: at most
``message_max_bytes`` (the ``MESSAGE_MAX_BYTES`` setting, through the transport
options) as it arrives, a kombu envelope in every part kombu reads, and a compressed
body that inflates to at most the same cap, measured incrementally and thrown away. An
item that fails:

- is answered when its headers carry a task id: a small stand-in message with that id
  and no body is delivered in its place, with the reason in its properties, for the
  guarded consumer to answer ``invalid_request`` and acknowledge (the reason property
  of any item that arrives is dropped first, so only this transport sets it);
- else is kept in the capped list ``videoworker:unparseable`` on the broker (its first
  64 KiB when larger, with a marker saying how large it was) and logged once as
  ``message.unparseable``, with its size and the reason, never its content.

The headers of an item too large to read are looked for in the item's bytes without
decoding the rest: a JSON string cannot hold an unescaped quote, so ``"headers": {``
appears only outside the body, and the object after it is decoded from a bounded
window.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from worker.runtime.consumer import (
    DEFAULT_MESSAGE_MAX_BYTES,
    HEADER_CHECKS,
    MAX_NESTING,
    REFUSAL_PROPERTY,
    InflatesTooFar,
    NotDecompressible,
    Refusal,
    inflated_size,
    nested_deeper_than,
    readable_task_id,
    shown,
)

log = logging.getLogger("videoworker.transport")

UNPARSEABLE_KEY = "videoworker:unparseable"
UNPARSEABLE_KEPT = 1000
KEPT_PREFIX_BYTES = 64 * 1024
HEADERS_WINDOW_BYTES = 64 * 1024
# Headers are looked for this many times in an oversize item before giving up.
HEADERS_LOOKUPS = 8

_HEADERS_KEY = re.compile(rb'"headers"\s*:\s*')


@dataclass(frozen=True)
class Examined:
    """What ``examine`` found: the envelope to deliver, or why not (and its headers)."""

    payload: dict[str, Any] | None
    refusal: Refusal | None = None
    headers: dict[str, Any] | None = None


def _refused(detail: str, headers: object = None, loc: tuple[str, ...] = ("message",)) -> Examined:
    return Examined(None, Refusal(detail, loc), headers if isinstance(headers, dict) else None)


def examine(raw: bytes, max_bytes: int = DEFAULT_MESSAGE_MAX_BYTES) -> Examined:
    """Whether ``raw`` is a kombu envelope that kombu and Celery can read safely."""
    if len(raw) > max_bytes:
        return _refused(
            f"Message of {len(raw)} bytes is larger than MESSAGE_MAX_BYTES ({max_bytes})",
            headers_of_oversize(raw),
        )
    try:
        payload = loads(bytes_to_str(raw))
    except Exception:  # noqa: BLE001 - not JSON, too deep, bad kombu type tag: all alike
        return _refused("Message is not JSON (a kombu envelope)")
    if not isinstance(payload, dict):
        return _refused("Message is not a kombu envelope (a JSON object)")
    headers = payload.get("headers")
    if headers is not None and not isinstance(headers, dict):
        return _refused("Message envelope's 'headers' must be an object")
    if nested_deeper_than(payload, MAX_NESTING):
        return _refused(f"Message envelope nests deeper than {MAX_NESTING} levels", headers)
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return _refused("Message envelope has no 'properties' object", headers)
    properties.pop(REFUSAL_PROPERTY, None)
    tag = properties.get("delivery_tag")
    if not isinstance(tag, str) or not tag or len(tag) > 255:
        return _refused("Message envelope's 'properties.delivery_tag' must be a string", headers)
    info = properties.get("delivery_info")
    if not (
        isinstance(info, dict)
        and isinstance(info.get("exchange"), str)
        and isinstance(info.get("routing_key"), str)
    ):
        return _refused(
            "Message envelope's 'properties.delivery_info' must name its exchange and routing_key",
            headers,
        )
    body = payload.get("body")
    if not isinstance(body, str):
        return _refused("Message envelope's 'body' must be a string", headers)
    encoding = properties.get("body_encoding")
    data: bytes | str
    if encoding == "base64":
        try:
            data = base64.b64decode(body)
        except (binascii.Error, ValueError):
            return _refused("Message body is not valid base64 (its body_encoding)", headers)
    elif encoding is None or (isinstance(encoding, str) and encoding.lower() == "utf-8"):
        data = body
        try:
            body.encode("utf-8")
        except UnicodeEncodeError:
            return _refused("Message body is not valid UTF-8 text", headers)
    else:
        shown_encoding = shown(encoding) if isinstance(encoding, str) else type(encoding).__name__
        return _refused(
            f"Message body_encoding {shown_encoding} is not accepted; use base64", headers
        )
    compression = (headers or {}).get("compression")
    if compression:
        refusal = compression_refusal(data, compression, max_bytes)
        if refusal is not None:
            return Examined(None, refusal, headers)
    return Examined(payload, None, headers)


def compression_refusal(data: bytes | str, compression: object, max_bytes: int) -> Refusal | None:
    loc = ("headers", "compression")
    problem = HEADER_CHECKS["compression"](compression)
    if problem is not None or not isinstance(compression, str):
        return Refusal(f"Header 'compression' {problem}", loc)
    if not isinstance(data, bytes):
        return Refusal(f"Message body is not compressed with {shown(compression)}", loc)
    try:
        inflated_size(data, compression, max_bytes)
    except InflatesTooFar:
        return Refusal(
            f"Message body inflates to more than MESSAGE_MAX_BYTES ({max_bytes} bytes)", loc
        )
    except NotDecompressible:
        return Refusal(f"Message body does not decompress with {shown(compression)}", loc)
    return None


def headers_of_oversize(raw: bytes) -> dict[str, Any] | None:
    """The headers object of an item too large to decode whole, when it can be found."""
    start = 0
    for _ in range(HEADERS_LOOKUPS):
        found = _HEADERS_KEY.search(raw, start)
        if found is None:
            return None
        start = found.end()
        if found.start() and raw[found.start() - 1 : found.start()] == b"\\":
            continue  # the tail of an escaped quote, inside some string
        if raw[start : start + 1] != b"{":
            continue
        window = raw[start : start + HEADERS_WINDOW_BYTES].decode("utf-8", "ignore")
        try:
            headers, _ = json.JSONDecoder().raw_decode(window)
        except (ValueError, RecursionError):
            continue
        if isinstance(headers, dict):
            return headers
    return None


def stand_in(headers: dict[str, Any], refusal: Refusal, queue: str, item_bytes: int) -> dict:
    """A bodiless envelope that carries a refused item's task id and the reason."""
    task = headers.get("task")
    return {
        "body": "",
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {
            "id": readable_task_id(headers),
            "task": task[:200] if isinstance(task, str) else None,
        },
        "properties": {
            "delivery_tag": str(uuid.uuid4()),
            # The anonymous exchange: a restore puts it back on the same queue.
            "delivery_info": {"exchange": "", "routing_key": queue},
            REFUSAL_PROPERTY: refusal.as_property(item_bytes),
        },
    }


def kept_form(item: bytes) -> bytes:
    """What the unparseable list keeps of an item: all of it, or its start and its size."""
    if len(item) <= KEPT_PREFIX_BYTES:
        return item
    marker = f"\n[videoworker: cut at {KEPT_PREFIX_BYTES} of {len(item)} bytes]".encode()
    return item[:KEPT_PREFIX_BYTES] + marker


class Channel(kombu_redis.Channel):
    from_transport_options = kombu_redis.Channel.from_transport_options + ("message_max_bytes",)
    message_max_bytes = DEFAULT_MESSAGE_MAX_BYTES

    def _brpop_read(self, **options: Any) -> bool:
        # Mirrors kombu.transport.redis.Channel._brpop_read (kombu 5.x); only the handling
        # of the popped item differs.
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise kombu_redis.Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            self._receive_item(dest, item)
            return True
        finally:
            self._in_poll = None
            flush_reauth = getattr(self, "_flush_brpop_reauth", None)
            if flush_reauth is not None:
                flush_reauth()

    def _receive_item(self, queue: str, item: bytes) -> None:
        examined = examine(item, self.message_max_bytes)
        payload = examined.payload
        if examined.refusal is not None:
            if readable_task_id(examined.headers) is None:
                self._keep_unparseable(queue, item, examined.refusal.detail)
                return
            payload = stand_in(examined.headers or {}, examined.refusal, queue, len(item))
        try:
            self.connection._deliver(payload, queue)
        except self.connection_errors:
            raise
        except Exception as exc:  # noqa: BLE001 - kept, never lost, and the worker goes on
            self._keep_unparseable(queue, item, f"Message not deliverable: {type(exc).__name__}")

    def _keep_unparseable(self, queue: str, item: bytes, reason: str) -> None:
        log.error(
            "message.unparseable", extra={"queue": queue, "bytes": len(item), "reason": reason}
        )
        try:
            self.keep_aside(item)
        except Exception:  # noqa: BLE001 - logged above; the consumer must go on
            log.exception("message.unparseable_keep_failed", extra={"queue": queue})

    def keep_aside(self, item: bytes) -> None:
        """Push ``item`` (cut when large) onto the capped unparseable list."""
        with self.conn_or_acquire() as client:
            pipe = client.pipeline()
            pipe.lpush(UNPARSEABLE_KEY, kept_form(item))
            pipe.ltrim(UNPARSEABLE_KEY, 0, UNPARSEABLE_KEPT - 1)
            pipe.execute()


class Transport(kombu_redis.Transport):
    Channel = Channel
