"""The Redis transport's examination of raw items, built as kombu lays them out."""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from typing import Any

import pytest

from worker.runtime.transport import (
    KEPT_PREFIX_BYTES,
    examine,
    headers_of_oversize,
    kept_form,
    stand_in,
)
from worker.runtime.vetting import REFUSAL_PROPERTY, Refusal, readable_task_id

MiB = 1024 * 1024


def headers_for(task: str = "videos.get", **extra: Any) -> dict:
    return {"task": task, "id": str(uuid.uuid4()), **extra}


def kombu_item(
    headers: dict | None = None,
    body: bytes = b"[[], {}, {}]",
    **overrides: Any,
) -> dict:
    """An envelope as kombu's Redis transport pushes it (base64 body, delivery info)."""
    item = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers_for() if headers is None else headers,
        "properties": {
            "correlation_id": "c",
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "videos", "routing_key": "videos"},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    item.update(overrides)
    return item


def raw(item: object) -> bytes:
    return json.dumps(item).encode()


def test_a_kombu_envelope_passes_and_a_forged_verdict_is_dropped():
    item = kombu_item()
    item["properties"][REFUSAL_PROPERTY] = {"detail": "forged"}

    examined = examine(raw(item))

    assert examined.refusal is None
    assert examined.payload is not None
    assert REFUSAL_PROPERTY not in examined.payload["properties"]


def _with_properties(**changes: Any) -> dict:
    item = kombu_item()
    for key, value in changes.items():
        if value is ...:
            del item["properties"][key]
        else:
            item["properties"][key] = value
    return item


BROKEN_ITEMS = {
    "no properties": lambda: {k: v for k, v in kombu_item().items() if k != "properties"},
    "no delivery_tag": lambda: _with_properties(delivery_tag=...),
    "dict delivery_tag": lambda: _with_properties(delivery_tag={"a": 1}),
    "null delivery_tag": lambda: _with_properties(delivery_tag=None),
    "no delivery_info": lambda: _with_properties(delivery_info=...),
    "empty delivery_info": lambda: _with_properties(delivery_info={}),
    "rot13 body_encoding": lambda: _with_properties(body_encoding="rot13"),
    "invalid base64": lambda: {**kombu_item(), "body": "@@@ not base64 @"},
    "array body": lambda: {**kombu_item(), "body": [[], {}, {}]},
    "compression rot13": lambda: kombu_item(headers_for(compression="rot13")),
    "not zlib": lambda: kombu_item(headers_for(compression="zlib"), b"plain"),
}


@pytest.mark.parametrize("case", list(BROKEN_ITEMS))
def test_a_broken_envelope_is_refused_with_its_headers_kept_for_the_answer(case):
    item = BROKEN_ITEMS[case]()

    examined = examine(raw(item))

    assert examined.payload is None and examined.refusal is not None
    assert readable_task_id(examined.headers) == item["headers"]["id"]


@pytest.mark.parametrize(
    "junk",
    [b"[" * 100_000, b"\xff\xfe", b"[1, 2]", b'{"body": "x", "headers": [1]}', b"null"],
    ids=["deep", "not utf-8", "array", "headers a list", "null"],
)
def test_junk_is_refused_with_no_headers(junk):
    examined = examine(junk)

    assert examined.payload is None and examined.refusal is not None
    assert examined.headers is None


def test_a_compression_bomb_is_refused_by_the_transport():
    bomb = zlib.compress(b"\x00" * (64 * MiB), 9)
    item = kombu_item(headers_for(compression="application/x-gzip"), bomb)

    examined = examine(raw(item), 4 * MiB)

    assert examined.refusal == Refusal(
        f"Message body inflates to more than MESSAGE_MAX_BYTES ({4 * MiB} bytes)",
        ("headers", "compression"),
    )
    assert examined.headers is not None


def test_an_oversize_item_keeps_its_headers_readable_without_decoding_the_body():
    headers = headers_for()
    item = raw(kombu_item(headers, b"[[], {}, {}]" + b" " * (2 * MiB)))

    examined = examine(item, MiB)

    assert examined.refusal is not None and "larger than MESSAGE_MAX_BYTES" in (
        examined.refusal.detail
    )
    assert examined.headers == headers
    assert headers_of_oversize(b'{"body": "\\"headers\\": {\\"id\\": 1}"}') is None
    assert headers_of_oversize(b"x" * 100) is None


def test_the_stand_in_carries_the_id_and_the_reason_only():
    headers = headers_for(task="t" * 1000, eta="garbage")
    refusal = Refusal("why", ("headers", "eta"))

    envelope = stand_in(headers, refusal, "videos", 99)

    assert examine(raw(envelope)).refusal is None  # kombu can read it
    assert envelope["headers"] == {"id": headers["id"], "task": "t" * 200}
    assert envelope["properties"][REFUSAL_PROPERTY] == {
        "detail": "why",
        "loc": ["headers", "eta"],
        "bytes": 99,
    }


def test_the_unparseable_list_keeps_a_capped_prefix_of_a_huge_item():
    small = b"junk"
    huge = b"y" * (10 * MiB)

    assert kept_form(small) == small
    kept = kept_form(huge)
    assert kept.startswith(b"y" * KEPT_PREFIX_BYTES)
    assert len(kept) < KEPT_PREFIX_BYTES + 100
    assert kept.endswith(f"cut at {KEPT_PREFIX_BYTES} of {10 * MiB} bytes]".encode())
