"""Whether a message may reach Celery's strategy: pure checks, a verdict, no I/O.

Stock Celery 5 trusts most of a message. A header of the wrong type raises inside its
request object: ``timelimit: ["a", "b"]`` ends the worker (and the message, redelivered,
ends every restart); ``eta: "not a date"`` is discarded unanswered with its whole body
in the log. A body that is not ``[args, kwargs, embed]`` takes the consumer down.
Celery's built-in tasks (``celery.accumulate``, ``celery.chord_unlock``, ...) answer
anyone who names them, and an unknown name is stored as a ``NotRegistered`` failure a
caller in another language cannot read.

So the guarded consumer (``worker.runtime.consumer``) asks ``vet`` about every message
first, and ``verdict`` judges what it is given of it:

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
with the same pieces, and hands over its verdict in the message's properties.

Every string echoed in a detail is cut to ``SHOWN_MAX_CHARS``: a refusal is logged and
stored for the caller, and must never carry a body back.
"""

from __future__ import annotations

import bz2
import lzma
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery.app.task import Context
from celery.exceptions import SecurityError
from celery.utils.time import maybe_iso8601
from kombu.exceptions import ContentDisallowed

from schemas.contract import INTERNAL_TASKS, TASK_NAMES

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


@dataclass(frozen=True)
class Parts:
    """What vetting reads of a message. ``decode`` turns the body into Python values
    (kombu's ``Message.decode``: its accepted content types, its signature check)."""

    headers: object
    properties: object
    content_type: object
    body: object
    decode: Callable[[], object]

    @classmethod
    def of(cls, message: Any) -> Parts:
        return cls(
            message.headers,
            message.properties,
            message.content_type,
            message.body,
            message.decode,
        )


def transport_refusal(properties: object) -> Refusal | None:
    """The Redis transport's verdict, read back from the message's properties."""
    marked = properties.get(REFUSAL_PROPERTY) if isinstance(properties, dict) else None
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


def verdict(
    parts: Parts,
    known_tasks: Any,
    *,
    allowed: Any = ALLOWED_TASKS,
    accepted: str = "application/json",
    max_bytes: int = DEFAULT_MESSAGE_MAX_BYTES,
) -> Refusal | None:
    """Why the message cannot be run, or None if it is a well-formed protocol 2 message.

    ``known_tasks`` are the names the worker registered, ``allowed`` those it may run.
    """
    refused = transport_refusal(parts.properties)
    if refused is not None:
        return refused
    headers = parts.headers
    if not isinstance(headers, dict):
        return Refusal("Message has no headers; send it with Celery message protocol 2")
    name = headers.get("task")
    if not isinstance(name, str) or readable_task_id(headers) is None:
        return Refusal(
            "Message headers must carry the task name and id (Celery message protocol 2)"
        )
    if name not in allowed or name not in known_tasks:
        return Refusal(f"Unknown task {shown(name)}")
    refused = header_refusal(headers)
    if refused is not None:
        return refused
    if not isinstance(parts.content_type, str) or not parts.content_type:
        return Refusal(f"Message has no content type; send {accepted}")
    body = parts.body
    if isinstance(body, bytes | str) and len(body) > max_bytes:
        return Refusal(
            f"Message body of {len(body)} bytes is larger than MESSAGE_MAX_BYTES ({max_bytes})"
        )
    try:
        decoded = parts.decode()
    except ContentDisallowed:
        return Refusal(f"Content type {shown(parts.content_type)} is not accepted; send {accepted}")
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


def vet(
    message: Any,
    known_tasks: Any,
    accepted: str = "application/json",
    max_bytes: int = DEFAULT_MESSAGE_MAX_BYTES,
    allowed: Any = ALLOWED_TASKS,
) -> Refusal | None:
    """``verdict`` on a kombu message."""
    return verdict(
        Parts.of(message), known_tasks, allowed=allowed, accepted=accepted, max_bytes=max_bytes
    )


def decode_refusal(headers: object, exc: Exception) -> Refusal:
    """Why kombu could not build the message. On AMQP it inflates a compressed body
    before the consumer sees it: a failure there is answered as the Redis transport
    answers it."""
    compression = headers.get("compression") if isinstance(headers, dict) else None
    if compression:
        loc = ("headers", "compression")
        problem = HEADER_CHECKS["compression"](compression)
        if problem is not None:
            return Refusal(f"Header 'compression' {problem}", loc)
        return Refusal(f"Message body does not decompress with {shown(compression)}", loc)
    return Refusal(f"Message body could not be decoded: {type(exc).__name__}")
