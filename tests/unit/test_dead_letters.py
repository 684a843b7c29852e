"""A dead letter keeps the message a caller sent, but never its token."""

from __future__ import annotations

import json
from types import SimpleNamespace

from worker.runtime.dead_letters import (
    FROM_QUEUE_HEADER,
    KEPT_BODY_BYTES,
    KEPT_BODY_BYTES_HEADER,
    REASON_HEADER,
    kept_copy,
    publish_dead_letter,
    raw_item,
    with_token,
    without_token,
)

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


class RecordingProducer:
    def __init__(self) -> None:
        self.published: list[tuple[object, dict]] = []

    def publish(self, body, **options) -> None:  # noqa: ANN001
        self.published.append((body, options))


def test_the_token_kwarg_leaves_the_body_and_the_rest_stays():
    body = json.dumps([[], {"video_id": "v1", "auth": TOKEN}, {"callbacks": None}]).encode()

    kept = json.loads(without_token(body))

    assert kept == [[], {"video_id": "v1"}, {"callbacks": None}]
    assert json.loads(with_token(without_token(body), "fresh"))[1] == {
        "video_id": "v1",
        "auth": "fresh",
    }
    # Bodies without a token, or not of the protocol's shape, are left byte for byte.
    plain = json.dumps([[], {"video_id": "v1"}, None]).encode()
    assert without_token(plain) is plain
    assert without_token(b"not json") == b"not json"


def test_a_dead_letter_stores_neither_the_token_nor_the_kwargs_repr():
    message = SimpleNamespace(
        body=json.dumps([[], {"video_id": "v1", "auth": TOKEN}, None]).encode(),
        headers={
            "id": "t1",
            "task": "videos.delete",
            "kwargsrepr": repr({"video_id": "v1", "auth": TOKEN}),
            "argsrepr": "()",
        },
        content_type="application/json",
        content_encoding="utf-8",
    )
    producer = RecordingProducer()

    publish_dead_letter(producer, "redis://", message, "videos.maintenance", "lost 4 times")

    [(body, options)] = producer.published
    stored = json.dumps(options["headers"]) + (body.decode() if isinstance(body, bytes) else body)
    assert TOKEN not in stored
    assert options["headers"][REASON_HEADER] == "lost 4 times"
    assert options["headers"][FROM_QUEUE_HEADER] == "videos.maintenance"
    assert options["headers"]["id"] == "t1"
    assert json.loads(body)[1] == {"video_id": "v1"}


def test_a_body_cut_to_a_prefix_keeps_no_token_either():
    prefix = ('[[], {"video_id": "v1", "auth": "' + TOKEN + '", "x": "' + "y" * 100).encode()

    kept = without_token(prefix)

    assert TOKEN.encode() not in kept
    assert kept.startswith(b'[[], {"video_id": "v1", "auth": "[redacted]"')


def test_a_message_nobody_can_be_answered_for_is_kept_cut_to_a_prefix():
    message = SimpleNamespace(
        headers={"task": "videos.get", "compression": "zlib"},
        body=b"x" * (KEPT_BODY_BYTES + 10),
        content_type="application/json",
        content_encoding=None,
        errors=[],
    )

    kept = kept_copy(message)

    assert kept.body == b"x" * KEPT_BODY_BYTES
    # kombu inflated the body already: the header would have it inflated twice.
    assert kept.headers == {"task": "videos.get", KEPT_BODY_BYTES_HEADER: KEPT_BODY_BYTES + 10}
    assert (kept.content_type, kept.content_encoding) == ("application/json", None)


def test_a_body_kombu_could_not_inflate_keeps_its_compression_header():
    message = SimpleNamespace(
        headers={"compression": "zlib"},
        body="plain",
        content_type=None,
        content_encoding="utf-8",
        errors=["decompression failed"],
    )

    kept = kept_copy(message)

    assert (kept.body, kept.headers, kept.content_type) == (b"plain", {"compression": "zlib"}, None)


def test_the_redis_item_is_kept_as_it_arrived():
    assert raw_item(SimpleNamespace(_raw={"body": "e30="})) == b'{"body": "e30="}'
    assert raw_item(SimpleNamespace()) is None


def test_a_share_resolve_is_kept_without_its_token_and_password():
    share_token = "vws_" + "k" * 43
    body = json.dumps(
        [[], {"token": share_token, "password": "hunter2 hunter2", "auth": TOKEN}, None]
    ).encode()

    kept = without_token(body)

    assert json.loads(kept) == [[], {}, None]
    # A body that cannot be read as kwargs still loses what looks like a share token.
    cut = b'[[], {"token": "' + share_token.encode() + b'", "passw'
    assert share_token.encode() not in without_token(cut)
