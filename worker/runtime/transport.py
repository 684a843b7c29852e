"""kombu's Redis transport, hardened against items that are not kombu messages.

Anything can ``LPUSH`` onto a queue's list. Stock kombu pops the item and parses it
inside the consumer's event loop; bytes that are not JSON (or JSON that is not a
kombu envelope) raise there, Celery calls the error unrecoverable and the worker
exits, with the item already gone. Here such an item is kept, raw, in the capped list
``videoworker:unparseable`` on the broker, logged once as ``message.unparseable``, and
the worker carries on. Nothing in it can be answered: it has no task id.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

log = logging.getLogger("videoworker.transport")

UNPARSEABLE_KEY = "videoworker:unparseable"
UNPARSEABLE_KEPT = 1000


def envelope_or_none(raw: bytes) -> dict[str, Any] | None:
    """The kombu envelope in ``raw``, or None when it is not one."""
    try:
        payload = loads(bytes_to_str(raw))
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict) or "body" not in payload:
        return None
    properties = payload.get("properties")
    if not isinstance(properties, dict) or "delivery_tag" not in properties:
        return None
    if not isinstance(properties.get("delivery_info", {}), dict):
        return None
    if not isinstance(payload.get("headers", {}), dict | None):
        return None
    return payload


class Channel(kombu_redis.Channel):
    def _brpop_read(self, **options: Any) -> bool:
        # Mirrors kombu.transport.redis.Channel._brpop_read (kombu 5.x); only the parsing
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
            payload = envelope_or_none(item)
            if payload is None:
                self._keep_unparseable(dest, item)
            else:
                self.connection._deliver(payload, dest)
            return True
        finally:
            self._in_poll = None
            flush_reauth = getattr(self, "_flush_brpop_reauth", None)
            if flush_reauth is not None:
                flush_reauth()

    def _keep_unparseable(self, queue: str, item: bytes) -> None:
        log.error("message.unparseable", extra={"queue": queue, "bytes": len(item)})
        try:
            with self.conn_or_acquire() as client:
                pipe = client.pipeline()
                pipe.lpush(UNPARSEABLE_KEY, item)
                pipe.ltrim(UNPARSEABLE_KEY, 0, UNPARSEABLE_KEPT - 1)
                pipe.execute()
        except Exception:  # noqa: BLE001 - logged above; the consumer must go on
            log.exception("message.unparseable_keep_failed", extra={"queue": queue})


class Transport(kombu_redis.Transport):
    Channel = Channel
