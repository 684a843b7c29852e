"""A Celery consumer that answers malformed messages instead of choking on them.

Stock Celery 5 trusts most of a message. A header of the wrong type raises inside its
request object: ``timelimit: ["a", "b"]`` ends the worker (and the message, redelivered,
ends every restart); ``eta: "not a date"`` is discarded unanswered with its whole body
in the log. A body that is not ``[args, kwargs, embed]`` takes the consumer down.
Celery's built-in tasks (``celery.accumulate``, ``celery.chord_unlock``, ...) answer
anyone who names them, and an unknown name is stored as a ``NotRegistered`` failure a
caller in another language cannot read.

So every message is vetted here (``vet``) before Celery's strategy sees it:

- the task name: only the contract's tasks run (``schemas.contract.TASK_NAMES`` and
  ``INTERNAL_TASKS``), never a built-in;
- every header Celery reads, by type and range (``timelimit``, ``eta``, ``expires``,
  ``retries``, ``countdown``, ``compression``, the ids, ...). ``expires`` must be a
  datetime: Celery's client turns a number of seconds into one before sending, and its
  worker cannot read a number (it would discard the message unanswered);
- headers named after fields of Celery's task request (``callbacks``, ``is_eager``,
  ``hostname``, ...): Celery copies headers into the request, where they would
  override what the worker decided, so they are refused unless null;
- the body: at most ``MESSAGE_MAX_BYTES`` once decompressed, ``[args, kwargs, embed]``,
  nested at most ``MAX_NESTING`` deep;
- the embed. The contract has no callbacks, so this worker runs no workflows:
  ``callbacks``, ``errbacks``, ``chain`` and ``chord`` must be null (or empty), and a
  message that asks for one is refused before its task runs. Running the task and
  failing its callback afterwards would, for ``videos.delete``, delete the video yet
  answer FAILURE, and the caller's retry would then get ``not_found``.

The Redis transport (``worker.runtime.transport``) checks what must be checked before
kombu builds a message at all (the envelope, the body encoding, the decompressed size)
and hands over its verdict in the message's properties.

A refused message is acknowledged (never redelivered) and logged once, with sizes and
the header's name, never its body; every string echoed in a detail or a log field is
cut to ``SHOWN_MAX_CHARS``. When its headers carry a task id, it is answered in the
result backend with the ``invalid_request`` envelope the caller is waiting for;
otherwise it is kept aside: in ``videoworker:unparseable`` on the Redis broker, in the
dead-letter queue ``videos.dead-letters`` (reason in a header, body cut to 64 KiB) on
RabbitMQ.

With ``acks_late`` and ``task_reject_on_worker_lost``, a message whose task kills its
worker (out of memory, a segfault in a library) would come back forever. The broker
marks such messages ``redelivered`` -- but also messages a worker handed back unstarted
(prefetched at a warm shutdown). So each task marks itself started when it begins
(``mark_started``, in the pool process), and a redelivery counts against the message
only when its previous delivery had started. Past ``BROKER_DELIVERY_LIMIT`` such losses
the message is set aside, whole, in the dead-letter queue ``videos.dead-letters`` (on
either broker; ``videoworker dead-letters``) and answered with ``internal``, not run
again. The count is kept in Redis rather than taken from RabbitMQ's ``x-delivery-count``,
which also counts the prefetched messages a warm shutdown gives back.
"""

from __future__ import annotations

import bz2
import logging
import lzma
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery import states
from celery.app.task import Context
from celery.exceptions import SecurityError
from celery.utils.time import maybe_iso8601
from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed
from kombu.utils.json import dumps
from vine import promise

from schemas.contract import INTERNAL_TASKS, QUEUE_OF, REQUESTS_QUEUE, TASK_NAMES
from schemas.envelope import failure
from worker.runtime.dead_letters import publish_dead_letter

log = logging.getLogger("videoworker.consumer")

CONTENT_TYPES = {"json": "application/json", "auth": "application/data"}
REDELIVERIES_PREFIX = "videoworker:redeliveries:"
STARTED_PREFIX = "videoworker:started:"
# Longer than any message can wait for redelivery.
MARKER_TTL_SECONDS = 7 * 86400

ALLOWED_TASKS = frozenset(TASK_NAMES + INTERNAL_TASKS)
SHOWN_MAX_CHARS = 200
TASK_ID_MAX_CHARS = 255
# The deepest contract message (bulk_delete's filters) nests 4 levels; the limit keeps
# the decoders, Celery's pickling to the pool and kombu's restore far from recursion.
MAX_NESTING = 32
DEFAULT_MESSAGE_MAX_BYTES = 4 * 1024 * 1024
# Set by the Redis transport on a message it refused before kombu could read it.
REFUSAL_PROPERTY = "x-videoworker-refusal"
EMBED_KEYS = ("callbacks", "errbacks", "chain", "chord")
# What the dead-letter queue keeps of the body of a message nobody can be answered for.
KEPT_BODY_BYTES = 64 * 1024
KEPT_BODY_BYTES_HEADER = "x-videoworker-body-bytes"


@dataclass(frozen=True)
class Refusal:
    """Why a message is not run: the caller's ``detail`` and the part of it at fault."""

    detail: str
    loc: tuple[str, ...] = ("message",)
    # The size of the item as it arrived, when the transport refused it.
    item_bytes: int | None = None

    def fields(self) -> list[dict[str, Any]]:
        return [{"loc": list(self.loc), "msg": self.detail}]

    def as_property(self, item_bytes: int) -> dict[str, Any]:
        return {"detail": self.detail, "loc": list(self.loc), "bytes": item_bytes}


def shown(text: str, limit: int = SHOWN_MAX_CHARS) -> str:
    """``repr(text)``, cut to ``limit`` characters: safe to echo in a detail or a log."""
    quoted = repr(text[:limit])
    return quoted if len(quoted) <= limit else quoted[: limit - 3] + "..."


def clipped(value: object, limit: int = SHOWN_MAX_CHARS) -> str | None:
    """A log field's value, cut to ``limit`` characters."""
    if value is None:
        return None
    text = value if isinstance(value, str) else type(value).__name__
    return text[:limit]


def readable_task_id(headers: object) -> str | None:
    """The task id a refusal can be answered under, or None."""
    if not isinstance(headers, dict):
        return None
    task_id = headers.get("id")
    if isinstance(task_id, str) and 0 < len(task_id) <= TASK_ID_MAX_CHARS:
        return task_id
    return None


def nested_deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` holds containers more than ``limit`` levels deep (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


# --- decompression, bounded ---------------------------------------------------------


class NotDecompressible(ValueError):
    """The body does not decompress with the codec its header names."""


class InflatesTooFar(ValueError):
    """The body decompresses to more than the limit."""


# The codecs (and the aliases) kombu registers from the standard library; each has an
# incremental decompressor, so the size can be checked without inflating past the cap.
# bz2 and lzma bodies may hold several streams back to back (kombu reads them all);
# zlib ignores what follows its stream.
_CODECS: dict[str, tuple[Callable[[], Any], bool]] = {
    "application/x-gzip": (zlib.decompressobj, False),
    "application/x-bz2": (bz2.BZ2Decompressor, True),
    "application/x-lzma": (lzma.LZMADecompressor, True),
}
COMPRESSIONS = {
    **{name: "application/x-gzip" for name in ("application/x-gzip", "gzip", "zlib")},
    **{name: "application/x-bz2" for name in ("application/x-bz2", "bzip2", "bzip")},
    **{name: "application/x-lzma" for name in ("application/x-lzma", "lzma", "xz")},
}
_DECOMPRESS_ERRORS = (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError, TypeError)


def inflated_size(data: bytes, compression: str, limit: int) -> int:
    """How many bytes ``data`` decompresses to, reading no further than ``limit`` + 1.

    Raises ``InflatesTooFar`` past ``limit`` and ``NotDecompressible`` when the data is
    not what ``compression`` names, or is cut short.
    """
    make, several_streams = _CODECS[COMPRESSIONS[compression]]
    size = 0
    pending = data
    decompressor = make()
    while True:
        try:
            chunk = decompressor.decompress(pending, limit + 1 - size)
        except _DECOMPRESS_ERRORS as exc:
            raise NotDecompressible(str(exc)) from None
        size += len(chunk)
        if size > limit:
            raise InflatesTooFar(size)
        if decompressor.eof:
            rest = decompressor.unused_data
            if not (several_streams and rest):
                return size
            decompressor, pending = make(), rest
            continue
        # zlib hands back the input it has not reached; bz2 and lzma buffer it.
        pending = getattr(decompressor, "unconsumed_tail", b"")
        if not chunk and not pending:
            raise NotDecompressible("the compressed data is cut short")


# --- headers --------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_timelimit(value: object) -> str | None:
    if value is None:
        return None
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(limit is None or (_is_number(limit) and limit >= 0) for limit in value)
    ):
        return None
    return "must be [hard, soft]: two numbers of seconds >= 0 (or null)"


def _check_datetime(value: object) -> str | None:
    if value is None:
        return None
    message = "must be an ISO 8601 datetime (or null)"
    if not isinstance(value, str | datetime):
        return message
    try:
        # As Celery's request reads it, then as its timer turns it into a timestamp.
        parsed = maybe_iso8601(value)
        if parsed is not None:
            aware = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
            aware.astimezone(UTC).timestamp()
            aware.astimezone()
    except (ValueError, TypeError, AttributeError, OverflowError, OSError):
        return message
    return None


def _check_seconds(value: object) -> str | None:
    if value is None or (_is_number(value) and value >= 0):
        return None
    return "must be a number of seconds >= 0 (or null)"


def _check_retries(value: object) -> str | None:
    return None if _whole(value) else "must be a whole number >= 0"


def _check_optional_whole(value: object) -> str | None:
    return None if value is None or _whole(value) else "must be a whole number >= 0 (or null)"


def _check_task_id(value: object) -> str | None:
    if value is None or (isinstance(value, str) and len(value) <= TASK_ID_MAX_CHARS):
        return None
    return f"must be a task id, a string of at most {TASK_ID_MAX_CHARS} characters (or null)"


def _check_shadow(value: object) -> str | None:
    if value is None or (isinstance(value, str) and len(value) <= SHOWN_MAX_CHARS):
        return None
    return f"must be a task name, a string of at most {SHOWN_MAX_CHARS} characters (or null)"


def _check_string(value: object) -> str | None:
    return None if value is None or isinstance(value, str) else "must be a string (or null)"


def _check_flag(value: object) -> str | None:
    return None if value is None or isinstance(value, bool) else "must be true or false (or null)"


def _check_stamped_headers(value: object) -> str | None:
    if value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return None
    return "must be a list of strings (or null)"


def _check_stamps(value: object) -> str | None:
    return None if value is None or isinstance(value, dict) else "must be an object (or null)"


def _check_compression(value: object) -> str | None:
    if not value or (isinstance(value, str) and value in COMPRESSIONS):
        return None
    return "must be one of " + ", ".join(sorted(_CODECS)) + " (or null)"


# Every header Celery's worker reads (and ours: ``redelivered``), with its check.
HEADER_CHECKS: dict[str, Callable[[object], str | None]] = {
    "timelimit": _check_timelimit,
    "eta": _check_datetime,
    "expires": _check_datetime,
    "countdown": _check_seconds,
    "retries": _check_retries,
    "group_index": _check_optional_whole,
    "replaced_task_nesting": _check_optional_whole,
    "root_id": _check_task_id,
    "parent_id": _check_task_id,
    "group": _check_task_id,
    "shadow": _check_shadow,
    "argsrepr": _check_string,
    "kwargsrepr": _check_string,
    "lang": _check_string,
    "origin": _check_string,
    "ignore_result": _check_flag,
    "redelivered": _check_flag,
    "stamped_headers": _check_stamped_headers,
    "stamps": _check_stamps,
    "compression": _check_compression,
}
# Fields (and methods) of Celery's task request that a header of the same name would
# overwrite; the worker fills them itself.
RESERVED_HEADERS = frozenset(
    name for name in vars(Context) if not name.startswith("__") and name not in HEADER_CHECKS
) - {"id", "task"}


def header_refusal(headers: dict[str, Any]) -> Refusal | None:
    """The first header Celery would choke on or be misled by, or None."""
    for name, value in headers.items():
        check = HEADER_CHECKS.get(name)
        if check is not None:
            problem = check(value)
            if problem is not None:
                return Refusal(f"Header {shown(name)} {problem}", ("headers", name))
        elif name in RESERVED_HEADERS and value is not None:
            return Refusal(
                f"Header {shown(name)} is reserved: the worker sets it itself", ("headers", name)
            )
    if nested_deeper_than(headers, MAX_NESTING):
        return Refusal(f"Message headers nest deeper than {MAX_NESTING} levels", ("headers",))
    return None


def embed_refusal(embed: dict[str, Any] | None) -> Refusal | None:
    """Refuses any workflow: the contract has no callbacks, errbacks, chains or chords."""
    if not embed:
        return None
    for key in embed:
        if key not in EMBED_KEYS:
            return Refusal(
                f"Message embed may carry only callbacks, errbacks, chain and chord, "
                f"not {shown(key)}",
                ("embed", key[:SHOWN_MAX_CHARS]),
            )
    for key in EMBED_KEYS:
        value = embed.get(key)
        if value is None:
            continue
        if key == "chord":
            well_typed = isinstance(value, dict)
            expected = "null or a task signature (an object)"
        else:
            well_typed = isinstance(value, list) and all(isinstance(s, dict) for s in value)
            expected = "null or a list of task signatures (objects)"
        if not well_typed:
            return Refusal(f"Message embed {key!r} must be {expected}", ("embed", key))
        if value:
            return Refusal(
                f"Message embed {key!r} must be null: this worker runs no callbacks, "
                "errbacks, chains or chords",
                ("embed", key),
            )
    return None


def _transport_refusal(message: Any) -> Refusal | None:
    properties = message.properties if isinstance(message.properties, dict) else {}
    marked = properties.get(REFUSAL_PROPERTY)
    if not isinstance(marked, dict) or not isinstance(marked.get("detail"), str):
        return None
    loc, size = marked.get("loc"), marked.get("bytes")
    if not (isinstance(loc, list) and loc and all(isinstance(part, str) for part in loc)):
        loc = ["message"]
    return Refusal(
        marked["detail"][: 4 * SHOWN_MAX_CHARS],
        tuple(part[:SHOWN_MAX_CHARS] for part in loc),
        size if _whole(size) else None,
    )


def vet(
    message: Any,
    known_tasks: Any,
    accepted: str = "application/json",
    max_bytes: int = DEFAULT_MESSAGE_MAX_BYTES,
) -> Refusal | None:
    """Why the message cannot be run, or None if it is a well-formed protocol 2 message."""
    refused = _transport_refusal(message)
    if refused is not None:
        return refused
    headers = message.headers
    if not isinstance(headers, dict):
        return Refusal("Message has no headers; send it with Celery message protocol 2")
    name = headers.get("task")
    if not isinstance(name, str) or readable_task_id(headers) is None:
        return Refusal(
            "Message headers must carry the task name and id (Celery message protocol 2)"
        )
    if name not in ALLOWED_TASKS or name not in known_tasks:
        return Refusal(f"Unknown task {shown(name)}")
    refused = header_refusal(headers)
    if refused is not None:
        return refused
    if not isinstance(message.content_type, str) or not message.content_type:
        return Refusal(f"Message has no content type; send {accepted}")
    body = message.body
    if isinstance(body, bytes | str) and len(body) > max_bytes:
        return Refusal(
            f"Message body of {len(body)} bytes is larger than MESSAGE_MAX_BYTES ({max_bytes})"
        )
    try:
        decoded = message.decode()
    except ContentDisallowed:
        return Refusal(
            f"Content type {shown(message.content_type)} is not accepted; send {accepted}"
        )
    except SecurityError:
        return Refusal("Message signature could not be verified")
    except Exception:  # noqa: BLE001 - any decoding failure means the same to the caller
        return Refusal("Message body is not valid JSON")
    if not (
        isinstance(decoded, list | tuple)
        and len(decoded) == 3
        and isinstance(decoded[0], list | tuple)
        and isinstance(decoded[1], dict)
        and (decoded[2] is None or isinstance(decoded[2], dict))
    ):
        return Refusal("Message body must be [args, kwargs, embed] (Celery message protocol 2)")
    if nested_deeper_than(decoded, MAX_NESTING):
        return Refusal(f"Message body nests deeper than {MAX_NESTING} levels")
    return embed_refusal(decoded[2])


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


def decode_refusal(message: Any, exc: Exception) -> Refusal:
    """Why kombu could not build the message. On AMQP it inflates a compressed body
    before the consumer sees it: a failure there is answered as the Redis transport
    answers it."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    compression = headers.get("compression")
    if compression:
        loc = ("headers", "compression")
        problem = HEADER_CHECKS["compression"](compression)
        if problem is not None:
            return Refusal(f"Header 'compression' {problem}", loc)
        return Refusal(f"Message body does not decompress with {shown(compression)}", loc)
    return Refusal(f"Message body could not be decoded: {type(exc).__name__}")


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
                refusal = vet(message, self.strategies, self.accepted_content_types, max_bytes)
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
        self.refuse(message, decode_refusal(message, exc))

    @property
    def accepted_content_types(self) -> str:
        accepted = self.app.conf.accept_content or ["json"]
        return " or ".join(CONTENT_TYPES.get(name, name) for name in accepted)

    def refuse(self, message: Any, refusal: Refusal) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        task_id = readable_task_id(headers)
        body = message.body
        log.error(
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
