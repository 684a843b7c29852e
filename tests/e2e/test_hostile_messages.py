"""Hostile messages against the real worker process: none kills it, stalls it or is lost.

Each bad item is pushed onto the queue's Redis list (as kombu lays items out, or broken
on purpose) in one ``LPUSH`` between two well-formed requests, so the one before is
still in the queue, or in flight, when the bad one arrives. Each test then shows that
the bad item was answered ``invalid_request`` under its task id, or, with no id to
answer, kept in ``videoworker:unparseable`` and logged once; that both neighbours were
answered; that the worker process is still the same live one; and that no body
reached the log.
"""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from sqlalchemy import text

from tests.support import poll

UNPARSEABLE_KEY = "videoworker:unparseable"
KEPT_PREFIX_BYTES = 64 * 1024
MiB = 1024 * 1024
MESSAGE_MAX_BYTES = 4 * MiB
# Put into every bad message's kwargs: it must never reach the worker's log.
BODY_MARKER = "body-must-not-be-logged"


@pytest.fixture(scope="module")
def broker(services) -> redis.Redis:
    return redis.Redis.from_url(services["CELERY_BROKER_URL"])


def envelope(
    caller,
    task: str = "videos.get",
    kwargs: dict | None = None,
    *,
    queue: str = "videos",
    headers: dict | None = None,
    body: bytes | None = None,
    embed: dict | None = None,
) -> dict[str, Any]:
    """A task message as Celery builds it and kombu's Redis transport pushes it."""
    task_id = str(uuid.uuid4())
    if kwargs is None:
        kwargs = {"video_id": str(uuid.uuid4()), "note": BODY_MARKER}
    message_headers, properties, message_body, _ = caller.amqp.create_task_message(
        task_id, task, (), kwargs
    )
    message_headers.update(headers or {})
    if embed is not None:
        message_body = (message_body[0], message_body[1], embed)
    encoded = json.dumps(message_body).encode() if body is None else body
    return {
        "body": base64.b64encode(encoded).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": message_headers,
        "properties": {
            **properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": queue, "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def encoded(item: dict | bytes) -> bytes:
    return item if isinstance(item, bytes) else json.dumps(item).encode()


def events(log: Path, event: str) -> int:
    """Log lines of ``event``, whichever log format the worker writes."""
    return sum(event in line for line in log.read_text(errors="replace").splitlines())


def survives(
    caller,
    broker: redis.Redis,
    worker_process,
    bad: dict | bytes,
    *,
    queue: str = "videos",
) -> Callable[[], None]:
    """Push a ``videos.stats``, the bad item and a ``videos.get`` at once, in that order.

    Returns the check to make once the bad item has been dealt with: both neighbours are
    answered and the worker is the same live process.
    """
    pid = worker_process.pid
    before = envelope(caller, "videos.stats", {})
    after = envelope(caller, kwargs={"video_id": str(uuid.uuid4())})
    if queue == "videos":
        broker.lpush("videos", encoded(before), encoded(bad), encoded(after))
    else:
        broker.lpush("videos", encoded(before))
        broker.lpush(queue, encoded(bad))
        broker.lpush("videos", encoded(after))

    def neighbours_answered() -> None:
        first = caller.AsyncResult(before["headers"]["id"]).get(timeout=30)
        last = caller.AsyncResult(after["headers"]["id"]).get(timeout=30)
        assert first["ok"] is True, first
        assert last["error"]["code"] == "not_found", last
        assert worker_process.poll() is None
        assert worker_process.pid == pid

    return neighbours_answered


def assert_answered(caller, task_id: str, detail_start: str) -> dict:
    answer = caller.AsyncResult(task_id).get(timeout=30)
    assert answer["ok"] is False and answer["status"] == 400, answer
    assert answer["error"]["code"] == "invalid_request"
    assert answer["error"]["detail"].startswith(detail_start), answer
    return answer["error"]


def is_kept_form_of(kept: bytes, item: bytes) -> bool:
    """The whole item, or (when larger) its first 64 KiB and a marker of its size."""
    if len(item) <= KEPT_PREFIX_BYTES:
        return kept == item
    return (
        kept.startswith(item[:KEPT_PREFIX_BYTES])
        and kept.endswith(f"of {len(item)} bytes]".encode())
        and len(kept) < KEPT_PREFIX_BYTES + 100
    )


def assert_kept(broker: redis.Redis, item: bytes) -> None:
    poll(
        lambda: any(is_kept_form_of(kept, item) for kept in broker.lrange(UNPARSEABLE_KEY, 0, 20)),
        timeout=30,
        message="the item kept in videoworker:unparseable",
    )


def assert_body_never_logged(worker_log: Path) -> None:
    assert BODY_MARKER not in worker_log.read_text(errors="replace")


# --- headers Celery reads -------------------------------------------------------------

HEADER_CASES = {
    "timelimit of strings": ({"timelimit": ["a", "b"]}, None, "Header 'timelimit' must be"),
    "eta not a date": ({"eta": "not a date"}, None, "Header 'eta' must be"),
    "expires garbage": ({"expires": "garbage"}, None, "Header 'expires' must be"),
    "countdown a string": ({"countdown": "soon"}, None, "Header 'countdown' must be"),
    "retries a string": ({"retries": "x"}, None, "Header 'retries' must be"),
    "retries negative": ({"retries": -1}, None, "Header 'retries' must be"),
    "root_id a number": ({"root_id": 5}, None, "Header 'root_id' must be"),
    "argsrepr a list": ({"argsrepr": [1]}, None, "Header 'argsrepr' must be"),
    "callbacks as a header": (
        {"callbacks": [{"task": "videos.delete"}]},
        None,
        "Header 'callbacks' is reserved",
    ),
    "unknown compression": (
        {"compression": "application/zlib"},
        zlib.compress(b"[[], {}, {}]"),
        "Header 'compression' must be",
    ),
    "body that does not decompress": (
        {"compression": "application/x-gzip"},
        b"[[], {}, {}] is not zlib",
        "Message body does not decompress with 'application/x-gzip'",
    ),
}


@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_an_ill_typed_header_is_answered_by_name_and_the_worker_goes_on(
    case, caller, broker, worker_process, worker_log
):
    headers, body, detail_start = HEADER_CASES[case]
    bad = envelope(caller, headers=headers, body=body)

    check = survives(caller, broker, worker_process, bad)
    error = assert_answered(caller, bad["headers"]["id"], detail_start)

    check()
    (name,) = headers
    assert error["fields"] == [{"loc": ["headers", name], "msg": error["detail"]}]
    assert_body_never_logged(worker_log)


# --- envelopes kombu cannot read --------------------------------------------------------


def _without_property(name: str) -> Callable[[dict], None]:
    return lambda item: item["properties"].pop(name)


def _set_property(name: str, value: object) -> Callable[[dict], None]:
    return lambda item: item["properties"].__setitem__(name, value)


def _content_type_in_properties(item: dict) -> None:
    item["properties"]["content_type"] = item.pop("content-type")


ENVELOPE_CASES: dict[str, tuple[Callable[[dict], None], str]] = {
    "no properties": (lambda item: item.pop("properties"), "Message envelope has no 'properties'"),
    "no delivery_tag": (_without_property("delivery_tag"), "Message envelope's 'properties.deli"),
    "dict delivery_tag": (_set_property("delivery_tag", {"a": 1}), "Message envelope's 'prop"),
    "null delivery_tag": (_set_property("delivery_tag", None), "Message envelope's 'properties."),
    "no delivery_info": (_without_property("delivery_info"), "Message envelope's 'properties."),
    "empty delivery_info": (_set_property("delivery_info", {}), "Message envelope's 'properti"),
    "rot13 body_encoding": (_set_property("body_encoding", "rot13"), "Message body_encoding 'r"),
    "invalid base64": (
        lambda item: item.__setitem__("body", "@@@ this is not base64 @"),
        "Message body is not valid base64",
    ),
    "body a JSON array": (
        lambda item: item.__setitem__("body", [[], {"note": BODY_MARKER}, {}]),
        "Message envelope's 'body' must be a string",
    ),
    "content-type only in properties": (
        _content_type_in_properties,
        "Message has no content type; send application/json",
    ),
}


@pytest.mark.parametrize("case", list(ENVELOPE_CASES))
def test_a_broken_envelope_with_a_task_id_is_answered(
    case, caller, broker, worker_process, worker_log
):
    breaks, detail_start = ENVELOPE_CASES[case]
    bad = envelope(caller)
    breaks(bad)

    check = survives(caller, broker, worker_process, bad)
    assert_answered(caller, bad["headers"]["id"], detail_start)

    check()
    assert_body_never_logged(worker_log)


def _without_id(item: dict) -> dict:
    item["headers"].pop("id")
    return item


JUNK_CASES: dict[str, Callable[[Any], bytes]] = {
    "deep brackets": lambda caller: b"[" * 100_000,
    "not UTF-8": lambda caller: b"\xff\xfe\x00 binary",
    "null delivery_tag, no id": lambda caller: encoded(
        _without_id(_apply(envelope(caller), _set_property("delivery_tag", None)))
    ),
    "empty delivery_info, no id": lambda caller: encoded(
        _without_id(_apply(envelope(caller), _set_property("delivery_info", {})))
    ),
    "no properties, no id": lambda caller: encoded(
        _without_id(_apply(envelope(caller), lambda item: item.pop("properties")))
    ),
    "invalid base64, no id": lambda caller: encoded(
        _without_id(_apply(envelope(caller), lambda item: item.__setitem__("body", "@@@")))
    ),
}


def _apply(item: dict, change: Callable[[dict], None]) -> dict:
    change(item)
    return item


@pytest.mark.parametrize("case", list(JUNK_CASES))
def test_an_item_without_a_readable_task_id_is_kept_aside_and_logged_once(
    case, caller, broker, worker_process, worker_log
):
    junk = JUNK_CASES[case](caller)
    logged = events(worker_log, "message.unparseable") + events(worker_log, "message.rejected")

    check = survives(caller, broker, worker_process, junk)
    check()

    assert_kept(broker, junk)
    poll(
        lambda: (
            events(worker_log, "message.unparseable") + events(worker_log, "message.rejected")
            == logged + 1
        ),
        timeout=10,
        message="exactly one log line for the item",
    )
    assert_body_never_logged(worker_log)


def test_a_readable_message_without_a_task_id_is_kept_as_kombu_read_it(
    caller, broker, worker_process, worker_log
):
    bad = _without_id(envelope(caller))
    tag = bad["properties"]["delivery_tag"]
    logged = events(worker_log, "message.rejected")

    check = survives(caller, broker, worker_process, bad)
    check()

    def kept() -> dict | None:
        for item in broker.lrange(UNPARSEABLE_KEY, 0, 20):
            try:
                entry = json.loads(item)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("properties", {}).get("delivery_tag") == tag:
                return entry
        return None

    entry = poll(kept, timeout=30, message="the message kept aside")
    assert entry["body"] == bad["body"] and entry["headers"] == bad["headers"]
    assert events(worker_log, "message.rejected: Message headers must carry") >= 1
    assert events(worker_log, "message.rejected") == logged + 1
    assert_body_never_logged(worker_log)


# --- sizes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zlib_bomb() -> bytes:
    """About 1 MiB of zlib that inflates to 1 GiB of zeros, made without holding 1 GiB."""
    compressor = zlib.compressobj(9)
    zeros = b"\x00" * MiB
    parts = [compressor.compress(zeros) for _ in range(1024)]
    return b"".join(parts) + compressor.flush()


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def test_a_compression_bomb_is_refused_without_inflating_it(
    caller, broker, worker_process, worker_log, zlib_bomb
):
    bad = envelope(caller, headers={"compression": "application/x-gzip"}, body=zlib_bomb)
    before = rss(worker_process.pid)

    check = survives(caller, broker, worker_process, bad)
    error = assert_answered(
        caller,
        bad["headers"]["id"],
        f"Message body inflates to more than MESSAGE_MAX_BYTES ({MESSAGE_MAX_BYTES} bytes)",
    )
    check()
    after = rss(worker_process.pid)

    print(f"worker RSS around a {len(zlib_bomb)} byte zlib bomb: {before} -> {after}")
    assert error["fields"][0]["loc"] == ["headers", "compression"]
    assert after - before < 64 * MiB, (before, after)


def test_a_compression_bomb_without_an_id_is_kept_as_a_capped_prefix(
    caller, broker, worker_process, zlib_bomb
):
    bad = encoded(_without_id(envelope(caller, headers={"compression": "zlib"}, body=zlib_bomb)))
    assert len(bad) > KEPT_PREFIX_BYTES

    check = survives(caller, broker, worker_process, bad)
    check()

    assert_kept(broker, bad)


def test_an_oversize_item_is_answered_when_its_id_can_be_read(caller, broker, worker_process):
    padding = "x" * (MESSAGE_MAX_BYTES + MiB)
    bad = envelope(caller, kwargs={"video_id": str(uuid.uuid4()), "padding": padding})
    raw = encoded(bad)

    check = survives(caller, broker, worker_process, raw)
    assert_answered(
        caller,
        bad["headers"]["id"],
        f"Message of {len(raw)} bytes is larger than MESSAGE_MAX_BYTES ({MESSAGE_MAX_BYTES})",
    )
    check()


def test_oversize_junk_is_kept_as_a_capped_prefix(caller, broker, worker_process):
    junk = b"[" + b"1," * (3 * MiB)

    check = survives(caller, broker, worker_process, junk)
    check()

    assert_kept(broker, junk)


# --- the embed and the task name -----------------------------------------------------

EMBED_CASES = {
    "callbacks garbage": {"callbacks": "garbage", "errbacks": None, "chain": None, "chord": None},
    "chain a number": {"callbacks": None, "errbacks": None, "chain": 5, "chord": None},
    "errbacks of numbers": {"callbacks": None, "errbacks": [1], "chain": None, "chord": None},
    "chord a string": {"callbacks": None, "errbacks": None, "chain": None, "chord": "x"},
    "a real callback": {
        "callbacks": [{"task": "videos.stats", "args": [], "kwargs": {}, "options": {}}],
        "errbacks": None,
        "chain": None,
        "chord": None,
    },
}


@pytest.mark.parametrize("case", list(EMBED_CASES))
def test_a_delete_asking_for_a_workflow_is_refused_and_deletes_nothing(
    case, caller, broker, worker_process, catalog, engine
):
    mall = catalog.mall()
    video = catalog.video(mall, catalog.pin(mall))
    embed = EMBED_CASES[case]
    bad = envelope(
        caller,
        "videos.delete",
        {"video_id": str(video["id"])},
        queue="videos.maintenance",
        embed=embed,
    )

    check = survives(caller, broker, worker_process, bad, queue="videos.maintenance")
    (key,) = [name for name, value in embed.items() if value is not None]
    error = assert_answered(caller, bad["headers"]["id"], f"Message embed {key!r} must be")
    check()

    assert error["fields"][0]["loc"] == ["embed", key]
    with engine.connect() as db:
        still_there = db.execute(
            text("SELECT count(*) FROM videos WHERE id = :id"), {"id": video["id"]}
        ).scalar_one()
    assert still_there == 1
    assert all(catalog.object_exists(k) for k in catalog.keys(video))


@pytest.mark.parametrize(
    "builtin",
    [
        "celery.accumulate",
        "celery.backend_cleanup",
        "celery.chord_unlock",
        "celery.chain",
        "celery.group",
        "celery.map",
        "celery.starmap",
        "celery.chunks",
        "celery.chord",
    ],
)
def test_celerys_builtin_tasks_are_unknown_to_callers(builtin, caller, worker_process):
    answer = caller.send_task(builtin, args=(), kwargs={}, queue="videos").get(timeout=30)

    assert answer == {
        "ok": False,
        "status": 400,
        "error": {
            "code": "invalid_request",
            "detail": f"Unknown task {builtin!r}",
            "fields": [{"loc": ["message"], "msg": f"Unknown task {builtin!r}"}],
        },
    }
    assert worker_process.poll() is None


def test_a_huge_task_name_is_echoed_cut_short(caller, broker, worker_process, worker_log):
    name = "videos." + "n" * 100_000
    bad = envelope(caller)
    bad["headers"]["task"] = name

    check = survives(caller, broker, worker_process, bad)
    error = assert_answered(caller, bad["headers"]["id"], "Unknown task 'videos.nnn")
    check()

    assert len(error["detail"]) <= 250
    longest = max(len(line) for line in worker_log.read_text(errors="replace").splitlines())
    assert longest < 5000
