"""The message checks the guarded consumer runs, on real kombu messages and, through
``verdict``, on the bare parts of one.
"""

from __future__ import annotations

import bz2
import json
import uuid
import zlib
from typing import Any

import pytest
from celery import Celery
from kombu import Message

from schemas.contract import INTERNAL_TASKS, TASK_NAMES
from worker.runtime.vetting import (
    MAX_NESTING,
    REFUSAL_PROPERTY,
    RESERVED_HEADERS,
    InflatesTooFar,
    NotDecompressible,
    Parts,
    Refusal,
    decode_refusal,
    inflated_size,
    nested_deeper_than,
    readable_task_id,
    shown,
    verdict,
    vet,
)

KNOWN = {*TASK_NAMES, *INTERNAL_TASKS, "celery.accumulate", "celery.chord_unlock"}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def app() -> Celery:
    return Celery("unit-caller", broker="memory://", set_as_current=False)


def celery_message(app: Celery, task: str = "videos.get", **options: Any) -> tuple[dict, bytes]:
    """Headers and JSON body of the protocol 2 message Celery's own client would send."""
    kwargs = options.pop("kwargs", {"video_id": str(uuid.uuid4())})
    headers, _, body, _ = app.amqp.create_task_message(
        str(uuid.uuid4()), task, (), kwargs, **options
    )
    return headers, json.dumps(body).encode()


def message(
    headers: dict | None,
    body: bytes = b"[[], {}, {}]",
    content_type: str | None = "application/json",
    properties: dict | None = None,
) -> Message:
    return Message(
        body=body,
        headers=headers,
        content_type=content_type,
        content_encoding="utf-8",
        properties=properties or {},
        accept=["application/json"],
    )


def headers_for(task: str = "videos.get", **extra: Any) -> dict:
    return {"task": task, "id": str(uuid.uuid4()), **extra}


def refusal_of(headers: dict | None, body: bytes = b"[[], {}, {}]", **kw: Any) -> Refusal | None:
    return vet(message(headers, body, **kw), KNOWN)


# --- what Celery itself sends passes -------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"countdown": 5},
        {"expires": 60},
        {"time_limit": 10, "soft_time_limit": 5},
        {"retries": 2, "root_id": str(uuid.uuid4()), "parent_id": str(uuid.uuid4())},
        {"group_id": str(uuid.uuid4()), "group_index": 0, "shadow": "videos.get"},
        {"ignore_result": False, "origin": "gen1@host"},
    ],
)
def test_what_celerys_client_sends_is_accepted(app, options):
    headers, body = celery_message(app, **options)

    assert vet(message(headers, body), KNOWN) is None


def test_every_contract_task_is_accepted_and_celerys_builtins_are_not(app):
    for name in (*TASK_NAMES, *INTERNAL_TASKS):
        headers, body = celery_message(app, name, kwargs={})
        assert vet(message(headers, body), KNOWN) is None, name

    for builtin in ("celery.accumulate", "celery.chord_unlock"):
        headers, body = celery_message(app, builtin, kwargs={})
        assert vet(message(headers, body), KNOWN) == Refusal(f"Unknown task {builtin!r}")


def test_a_contract_name_the_worker_has_not_registered_is_unknown(app):
    headers, body = celery_message(app, "videos.stats", kwargs={})

    assert vet(message(headers, body), {"videos.get"}) == Refusal("Unknown task 'videos.stats'")


def test_an_unknown_task_name_is_echoed_cut_short():
    refusal = refusal_of(headers_for("x" * 100_000))

    assert refusal is not None and refusal.detail.startswith("Unknown task 'xxx")
    assert len(refusal.detail) < 250


# --- headers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("timelimit", ["a", "b"]),
        ("timelimit", [1]),
        ("timelimit", [-1, None]),
        ("timelimit", [float("nan"), None]),
        ("timelimit", "60"),
        ("timelimit", [True, None]),
        ("eta", "not a date"),
        ("eta", 12),
        ("eta", {"at": "now"}),
        ("expires", "garbage"),
        ("expires", 60),
        ("countdown", "soon"),
        ("countdown", -1),
        ("retries", "1"),
        ("retries", -1),
        ("retries", None),
        ("retries", True),
        ("retries", 1.5),
        ("group_index", "0"),
        ("root_id", 5),
        ("parent_id", ["x"]),
        ("group", "g" * 300),
        ("shadow", "s" * 300),
        ("argsrepr", 5),
        ("kwargsrepr", {"a": 1}),
        ("ignore_result", "no"),
        ("stamped_headers", "x"),
        ("stamps", [1]),
        ("compression", "rot13"),
        ("compression", "application/zlib"),
        ("compression", 5),
    ],
)
def test_an_ill_typed_header_is_refused_by_name(header, value):
    refusal = refusal_of(headers_for(**{header: value}))

    assert refusal is not None
    assert refusal.detail.startswith(f"Header {header!r} must be")
    assert refusal.loc == ("headers", header)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("timelimit", [None, None]),
        ("timelimit", [60, 45.5]),
        ("timelimit", (0, None)),
        ("eta", "2025-10-31T10:00:00Z"),
        ("eta", "2025-10-31T10:00:00+02:00"),
        ("eta", None),
        ("expires", "2025-10-31T10:00:00.123456+00:00"),
        ("countdown", 2.5),
        ("retries", 0),
        ("compression", None),
        ("callbacks", None),
        ("traceparent", "00-abc-def-01"),
    ],
)
def test_a_well_typed_header_is_accepted(header, value):
    assert refusal_of(headers_for(**{header: value})) is None


@pytest.mark.parametrize("header", ["callbacks", "chord", "is_eager", "hostname", "delivery_info"])
def test_a_header_that_would_overwrite_the_task_request_is_refused(header):
    assert header in RESERVED_HEADERS

    refusal = refusal_of(headers_for(**{header: [{"task": "videos.delete"}]}))

    assert refusal == Refusal(
        f"Header {header!r} is reserved: the worker sets it itself", ("headers", header)
    )


def test_an_eta_out_of_a_timestamps_range_is_refused():
    refusal = refusal_of(headers_for(eta="0001-01-01T00:00:00+14:00"))

    assert refusal is not None and refusal.loc == ("headers", "eta")


def test_headers_without_a_readable_task_id_are_refused():
    for headers in ({"task": "videos.get"}, {"task": "videos.get", "id": ""}, {"id": "x"}):
        refusal = refusal_of(headers)
        assert refusal is not None and refusal.detail.startswith("Message headers must carry")
    assert readable_task_id({"id": "x" * 256}) is None
    assert readable_task_id({"id": "x" * 255}) == "x" * 255
    assert readable_task_id(["id"]) is None


# --- body and embed ---------------------------------------------------------------------


def test_a_body_without_a_top_level_content_type_is_refused():
    refusal = refusal_of(headers_for(), content_type=None)

    assert refusal == Refusal("Message has no content type; send application/json")


def test_a_body_larger_than_the_cap_is_refused():
    body = json.dumps([[], {"video_id": "x" * 2000}, {}]).encode()

    refusal = vet(message(headers_for(), body), KNOWN, max_bytes=1000)

    assert refusal is not None
    assert refusal.detail == (
        f"Message body of {len(body)} bytes is larger than MESSAGE_MAX_BYTES (1000)"
    )


def test_a_body_nested_too_deep_is_refused():
    deep = "[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1)
    body = f'[[], {{"video_id": {deep}}}, {{}}]'.encode()

    refusal = refusal_of(headers_for(), body)

    assert refusal == Refusal(f"Message body nests deeper than {MAX_NESTING} levels")


def test_nesting_is_measured_without_recursion():
    value: Any = []
    for _ in range(100_000):
        value = [value]

    assert nested_deeper_than(value, 32)
    assert not nested_deeper_than([[{"a": [1]}]], 4)
    assert nested_deeper_than([[{"a": [1]}]], 3)


@pytest.mark.parametrize(
    ("embed", "key"),
    [
        ({"callbacks": "garbage"}, "callbacks"),
        ({"chain": 5}, "chain"),
        ({"errbacks": [1]}, "errbacks"),
        ({"chord": "x"}, "chord"),
        ({"callbacks": [{"task": "videos.stats"}]}, "callbacks"),
        ({"chain": [{"task": "videos.delete"}]}, "chain"),
        ({"chord": {"task": "celery.chord_unlock"}}, "chord"),
    ],
)
def test_any_workflow_in_the_embed_is_refused(embed, key):
    body = json.dumps([[], {"video_id": str(uuid.uuid4())}, embed]).encode()

    refusal = refusal_of(headers_for("videos.delete"), body)

    assert refusal is not None
    assert refusal.detail.startswith(f"Message embed {key!r} must be null")
    assert refusal.loc == ("embed", key)


def test_an_empty_or_null_embed_is_accepted_and_unknown_embed_keys_are_not():
    for embed in (None, {}, {"callbacks": None, "errbacks": [], "chain": [], "chord": None}):
        body = json.dumps([[], {}, embed]).encode()
        assert refusal_of(headers_for(), body) is None

    body = json.dumps([[], {}, {"id": "someone-else"}]).encode()
    refusal = refusal_of(headers_for(), body)
    assert refusal is not None and refusal.loc == ("embed", "id")


def test_the_transports_verdict_is_what_the_consumer_answers():
    refused = Refusal("Message body is not valid base64 (its body_encoding)")
    properties = {REFUSAL_PROPERTY: refused.as_property(1234)}

    assert refusal_of(headers_for(), b"", properties=properties) == Refusal(
        refused.detail, ("message",), 1234
    )


def test_shown_cuts_and_quotes():
    assert shown("celery.accumulate") == "'celery.accumulate'"
    assert len(shown("\x00" * 10_000)) <= 200


# --- bounded decompression ------------------------------------------------------------


def test_a_zlib_bomb_is_stopped_at_the_cap_without_inflating_it():
    bomb = zlib.compress(b"\x00" * (64 * MiB), 9)

    with pytest.raises(InflatesTooFar):
        inflated_size(bomb, "application/x-gzip", 4 * MiB)
    assert inflated_size(zlib.compress(b"a" * 1000), "zlib", 1000) == 1000


def test_a_second_bz2_stream_counts_toward_the_cap():
    one = bz2.compress(b"\x00" * (3 * MiB))

    assert inflated_size(one, "bzip2", 4 * MiB) == 3 * MiB
    with pytest.raises(InflatesTooFar):
        inflated_size(one + one, "application/x-bz2", 4 * MiB)


@pytest.mark.parametrize(
    "data", [b"not compressed", zlib.compress(b"a" * 10_000)[:20], b""], ids=str
)
def test_data_that_does_not_decompress_is_named_so(data):
    with pytest.raises(NotDecompressible):
        inflated_size(data, "gzip", MiB)


# --- the verdict on bare parts: no kombu message, no broker -----------------------------


def parts(headers: object, decoded: object = ([], {}, None), **changes: Any) -> Parts:
    fields: dict[str, Any] = {
        "headers": headers,
        "properties": {},
        "content_type": "application/json",
        "body": json.dumps(decoded).encode(),
        "decode": lambda: decoded,
        **changes,
    }
    return Parts(**fields)


def test_the_verdict_reads_only_the_parts_it_is_given():
    assert verdict(parts(headers_for()), KNOWN) is None
    assert verdict(parts(None), KNOWN) == Refusal(
        "Message has no headers; send it with Celery message protocol 2"
    )
    assert verdict(parts(headers_for(), [[], {}]), KNOWN) == Refusal(
        "Message body must be [args, kwargs, embed] (Celery message protocol 2)"
    )


def test_a_body_is_not_decoded_once_the_headers_are_refused():
    def never() -> object:
        raise AssertionError("decoded")

    refused = verdict(parts(headers_for(eta="not a date"), decode=never), KNOWN)

    assert refused is not None and refused.loc == ("headers", "eta")


def test_a_decoder_that_fails_means_the_body_is_not_json():
    def broken() -> object:
        raise ValueError("no")

    assert verdict(parts(headers_for(), decode=broken), KNOWN) == Refusal(
        "Message body is not valid JSON"
    )


def test_only_the_allowed_names_run_even_when_the_worker_knows_more():
    headers = headers_for("bench.noop")

    assert verdict(parts(headers), {*KNOWN, "bench.noop"}) == Refusal("Unknown task 'bench.noop'")
    assert verdict(parts(headers), {*KNOWN, "bench.noop"}, allowed={"bench.noop"}) is None


def test_the_accepted_content_types_are_named_in_the_refusal():
    refused = verdict(parts(headers_for(), content_type=""), KNOWN, accepted="application/data")

    assert refused == Refusal("Message has no content type; send application/data")


def test_a_body_kombu_could_not_build_is_refused_by_its_compression_header():
    error = ValueError("bad")

    assert decode_refusal({"compression": "rot13"}, error).loc == ("headers", "compression")
    assert decode_refusal({"compression": "zlib"}, error) == Refusal(
        "Message body does not decompress with 'zlib'", ("headers", "compression")
    )
    assert decode_refusal(None, error) == Refusal("Message body could not be decoded: ValueError")
