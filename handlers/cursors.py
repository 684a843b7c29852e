"""List cursors: where the next page starts, sealed by the worker so only it makes them.

A cursor carries the last video of a page (its ``uploaded_at`` and ``id``: the keyset
the next page starts after), how many videos the listing had shown up to it (so that
the next page can still say which page it is), and a digest of what it lists: the
filters, the trash flag and the caller's scope. It is signed with HMAC-SHA256 under a
key of the worker's (``CURSOR_SECRET``, or one derived from a secret the worker holds;
never one a caller knows), so a caller can neither forge a position nor carry a cursor
to other filters or another scope: the digest is computed again from the request and
must match. A cursor reveals its position to whoever holds it (it is not encrypted):
the uploaded_at and id of a video that caller has already seen, nothing more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from handlers.access import Scope
from handlers.errors import InvalidRequest
from schemas.requests import ListVideos

VERSION = 1
# version, microseconds since the epoch, video id, rows shown before, listing digest
_LAYOUT = struct.Struct(">Bq16sQ16s")
_TAG_BYTES = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What a cursor is bound to: every filter of the listing, not the page's size or URLs.
BOUND_FIELDS = (
    "mall_id",
    "pin_id",
    "processing_status",
    "has_proxy",
    "uploaded_after",
    "uploaded_before",
    "q",
    "tags",
    "trashed",
)


@dataclass(frozen=True, slots=True)
class Position:
    """The last video a page showed, and how many the listing had shown up to it."""

    uploaded_at: datetime
    video_id: UUID
    shown: int


def _refused(msg: str) -> InvalidRequest:
    return InvalidRequest(f"cursor: {msg}", [{"loc": ["cursor"], "msg": msg}])


def listing_digest(scope: Scope, query: ListVideos) -> bytes:
    """What a cursor is bound to: the listing's filters and the caller's scope."""
    filters = {name: getattr(query, name, None) for name in BOUND_FIELDS}
    bound = {
        "filters": {k: v if v is None else str(v) for k, v in filters.items()},
        "role": scope.role,
        "malls": sorted(str(m) for m in scope.malls),
        "pins": sorted(str(p) for p in scope.pins),
    }
    return hashlib.sha256(json.dumps(bound, sort_keys=True).encode()).digest()[:16]


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:_TAG_BYTES]


def seal(key: bytes, scope: Scope, query: ListVideos, position: Position) -> str:
    at = position.uploaded_at.astimezone(UTC)
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    body = _LAYOUT.pack(
        VERSION, micros, position.video_id.bytes, position.shown, listing_digest(scope, query)
    )
    return base64.urlsafe_b64encode(body + _tag(key, body)).rstrip(b"=").decode()


def open_cursor(key: bytes, scope: Scope, query: ListVideos, cursor: str) -> Position:
    """The position a cursor holds, if this worker sealed it for this very listing;
    else ``invalid_request`` at ``cursor``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError):
        raise _refused("not a cursor this worker issued") from None
    body, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    if len(body) != _LAYOUT.size or not hmac.compare_digest(tag, _tag(key, body)):
        raise _refused("not a cursor this worker issued (altered or truncated)")
    version, micros, video_id, shown, digest = _LAYOUT.unpack(body)
    if version != VERSION:
        raise _refused("a cursor of another version; list from the first page again")
    if not hmac.compare_digest(digest, listing_digest(scope, query)):
        raise _refused(
            "issued for other filters or another caller; send the same filters, or none "
            "of the cursor"
        )
    try:
        at = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise _refused("not a cursor this worker issued") from None
    return Position(at, UUID(bytes=video_id), shown)
