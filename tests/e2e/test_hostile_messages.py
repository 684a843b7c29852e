"""Hostile messages against the real worker process: none kills it, stalls it or is lost.

Each bad item is put between two well-formed requests, so the one before is still in
the queue, or in flight, when the bad one arrives: on Redis in one ``LPUSH`` onto the
queue's list (as kombu lays items out, or broken on purpose), on RabbitMQ published raw
with a bare AMQP client (the same headers, body and properties). Each test then shows
that the bad item was answered ``invalid_request`` under its task id, or, with no id to
answer, kept aside (Redis: ``videoworker:unparseable``; RabbitMQ: the dead-letter queue
``videos.dead-letters``, with the reason in a header) and logged once; that both
neighbours were answered; that the worker process is still the same live one; and that
no body reached the log. Shapes that only exist on the Redis list (raw bytes, kombu's
envelope fields) are skipped on RabbitMQ.
"""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import text

from tests.e2e.raw_messages import (
    KEPT_BODY_BYTES_HEADER,
    PROBE_HEADER,
    REASON_HEADER,
    Kept,
    RabbitQueues,
    RedisQueues,
    kept_with_probe,
    queues_for,
)
from tests.support import poll, run_cli

UNPARSEABLE_KEY = "videoworker:unparseable"
KEPT_PREFIX_BYTES = 64 * 1024
MiB = 1024 * 1024
GiB = 1024 * MiB
MESSAGE_MAX_BYTES = 4 * MiB
# Put into every bad message's kwargs: it must never reach the worker's log.
BODY_MARKER = "body-must-not-be-logged"


REDIS_LIST_ONLY = (
    "a shape of the Redis list's kombu envelope (or raw bytes on the list); an AMQP "
    "message carries its properties, delivery tag and content type in the protocol"
)
NO_ID_DETAIL = "Message headers must carry the task name and id (Celery message protocol 2)"


@pytest.fixture(scope="module")
def broker(services) -> Iterator[RedisQueues | RabbitQueues]:
    """The session's broker, reached without Celery."""
    queues = queues_for(services["CELERY_BROKER_URL"])
    yield queues
    queues.close()


def redis_only(broker) -> None:
    if broker.rabbitmq:
        pytest.skip(REDIS_LIST_ONLY)


def rabbitmq_only(broker, reason: str) -> None:
    if not broker.rabbitmq:
        pytest.skip(reason)


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
    broker: RedisQueues | RabbitQueues,
    worker_process,
    bad: dict | bytes,
    *,
    queue: str = "videos",
) -> Callable[[], None]:
    """Put a ``videos.stats``, the bad item and a ``videos.get`` at once, in that order.

    Returns the check to make once the bad item has been dealt with: both neighbours are
    answered and the worker is the same live process.
    """
    pid = worker_process.pid
    before = envelope(caller, "videos.stats", {})
    after = envelope(caller, kwargs={"video_id": str(uuid.uuid4())})
    if queue == "videos":
        broker.push("videos", before, bad, after)
    else:
        broker.push("videos", before)
        broker.push(queue, bad)
        broker.push("videos", after)

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


def assert_kept(broker: RedisQueues, item: bytes) -> None:
    poll(
        lambda: any(
            is_kept_form_of(kept, item) for kept in broker.client.lrange(UNPARSEABLE_KEY, 0, 20)
        ),
        timeout=30,
        message="the item kept in videoworker:unparseable",
    )


def assert_dead_lettered(broker: RabbitQueues, probe: str, reason: str) -> Kept:
    """The one message carrying ``probe`` kept in ``videos.dead-letters``, with ``reason``."""
    [kept] = kept_with_probe(broker, probe)
    assert kept.headers[REASON_HEADER] == reason
    assert kept.headers["x-videoworker-queue"] == "videos"
    return kept


def no_id_message(body: bytes, headers: dict | None, probe: str) -> dict:
    """A message without a readable task id, as an AMQP publish of ``body``."""
    item = {
        "body": base64.b64encode(body).decode(),
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": None if headers is None else {**headers, PROBE_HEADER: probe},
        "properties": {"body_encoding": "base64", "delivery_mode": 2},
    }
    return item


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
    redis_only(broker)
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
    redis_only(broker)
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
    redis_only(broker)
    bad = _without_id(envelope(caller))
    tag = bad["properties"]["delivery_tag"]
    logged = events(worker_log, "message.rejected")

    check = survives(caller, broker, worker_process, bad)
    check()

    def kept() -> dict | None:
        for item in broker.client.lrange(UNPARSEABLE_KEY, 0, 20):
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


NO_ID_CASES: dict[str, tuple[dict | None, bytes]] = {
    "no headers at all": (None, b'[[], {"note": "%(probe)s"}, {}]'),
    "a task but no id": ({"task": "videos.get"}, b"[[], {}, {}]"),
    "an id that is a number": ({"task": "videos.get", "id": 12345}, b"[[], {}, {}]"),
    "an id too long": ({"task": "videos.get", "id": "i" * 300}, b"[[], {}, {}]"),
    "no id and a body not JSON": ({"task": "videos.get"}, b"{this is not json"),
    "no id and a body not UTF-8": ({"task": "videos.get"}, b"\xff\xfe\x00 binary"),
    "no id and deep brackets": ({"task": "videos.get"}, b"[" * 100_000),
}


@pytest.mark.parametrize("case", list(NO_ID_CASES))
def test_a_message_without_a_readable_task_id_is_dead_lettered_with_its_reason(
    case, caller, broker, worker_process, worker_log
):
    rabbitmq_only(
        broker,
        "on Redis the transport keeps such items in videoworker:unparseable (tests above)",
    )
    headers, body = NO_ID_CASES[case]
    probe = str(uuid.uuid4())
    if headers is None:
        body = body.replace(b"%(probe)s", probe.encode())
    logged = events(worker_log, "message.rejected")

    check = survives(caller, broker, worker_process, no_id_message(body, headers, probe))
    check()

    kept = assert_dead_lettered(broker, probe, NO_ID_DETAIL)
    # Whole, or (when larger) its first 64 KiB and how large it was.
    assert kept.body == body[:KEPT_PREFIX_BYTES]
    assert kept.headers.get(KEPT_BODY_BYTES_HEADER) == (
        len(body) if len(body) > KEPT_PREFIX_BYTES else None
    )
    assert kept.content_type == "application/json"
    if headers is not None:
        assert {k: v for k, v in kept.headers.items() if k in headers} == headers
    poll(
        lambda: events(worker_log, "message.rejected") == logged + 1,
        timeout=10,
        message="exactly one log line for the message",
    )
    poll(lambda: broker.idle("videos"), timeout=30, message="the queue empty, nothing unacked")
    assert_body_never_logged(worker_log)


def test_the_operator_lists_what_was_kept_whatever_its_body(
    services, caller, broker, worker_process
):
    rabbitmq_only(broker, "on Redis such items are kept in videoworker:unparseable, not listed")

    def kept_for_no_id() -> int:
        listed = run_cli("dead-letters", "list", env=services, check=0)
        return sum(entry["reason"] == NO_ID_DETAIL for entry in json.loads(listed.stdout))

    before = kept_for_no_id()
    probe = str(uuid.uuid4())
    bad = no_id_message(b"[" * 100_000, {"task": "videos.get"}, probe)

    survives(caller, broker, worker_process, bad)()

    # Listed (its body, too deep to decode, shown as no kwargs), and left in place.
    poll(lambda: kept_for_no_id() == before + 1, timeout=30, message="the kept message listed")
    assert len(kept_with_probe(broker, probe)) == 1


# --- sizes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zlib_bomb() -> bytes:
    """About 1 MiB of zlib that inflates to 1 GiB of zeros, made without holding 1 GiB."""
    compressor = zlib.compressobj(9)
    zeros = b"\x00" * MiB
    parts = [compressor.compress(zeros) for _ in range(1024)]
    return b"".join(parts) + compressor.flush()


@dataclass(frozen=True)
class Memory:
    """A process's resident set now, and the most it has ever held (``VmHWM``)."""

    rss: int
    peak: int


def memory(pid: int) -> Memory:
    status = Path(f"/proc/{pid}/status").read_text()
    peak_kib = next(
        int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")
    )
    return Memory(psutil.Process(pid).memory_info().rss, peak_kib * 1024)


def test_a_compression_bomb_is_refused_without_inflating_it(
    caller, broker, worker_process, worker_log, zlib_bomb
):
    bad = envelope(caller, headers={"compression": "application/x-gzip"}, body=zlib_bomb)
    before = memory(worker_process.pid)

    check = survives(caller, broker, worker_process, bad)
    # Both transports measure the body as it inflates, and stop at the cap.
    detail = f"Message body inflates to more than MESSAGE_MAX_BYTES ({MESSAGE_MAX_BYTES} bytes)"
    loc = ["headers", "compression"]
    error = assert_answered(caller, bad["headers"]["id"], detail)
    check()
    after = memory(worker_process.pid)

    print(
        f"worker main process around a {len(zlib_bomb)} byte zlib bomb: "
        f"RSS {before.rss} -> {after.rss}, peak {before.peak} -> {after.peak}"
    )
    assert error["fields"][0]["loc"] == loc
    grew = after.peak - before.peak
    assert grew < 64 * MiB, (before, after)
    assert after.rss - before.rss < 64 * MiB, (before, after)


def test_a_compression_bomb_without_an_id_is_kept_as_a_capped_prefix(
    caller, broker, worker_process, zlib_bomb
):
    if broker.rabbitmq:
        probe = str(uuid.uuid4())
        bad = no_id_message(zlib_bomb, {"task": "videos.get", "compression": "zlib"}, probe)

        check = survives(caller, broker, worker_process, bad)
        check()

        kept = assert_dead_lettered(
            broker,
            probe,
            f"Message body inflates to more than MESSAGE_MAX_BYTES ({MESSAGE_MAX_BYTES} bytes)",
        )
        # Never inflated: the copy is the start of the compressed bytes, and says how
        # many there were and what compressed them.
        assert kept.body == zlib_bomb[:KEPT_PREFIX_BYTES]
        assert kept.headers[KEPT_BODY_BYTES_HEADER] == len(zlib_bomb)
        assert "compression" not in kept.headers
        assert kept.headers["x-videoworker-compression"] == "zlib"
        return
    bad = encoded(_without_id(envelope(caller, headers={"compression": "zlib"}, body=zlib_bomb)))
    assert len(bad) > KEPT_PREFIX_BYTES

    check = survives(caller, broker, worker_process, bad)
    check()

    assert_kept(broker, bad)


def test_an_oversize_item_is_answered_when_its_id_can_be_read(caller, broker, worker_process):
    padding = "x" * (MESSAGE_MAX_BYTES + MiB)
    kwargs = {"video_id": str(uuid.uuid4()), "padding": padding}
    bad = envelope(caller, kwargs=kwargs)
    raw = encoded(bad)

    check = survives(caller, broker, worker_process, bad if broker.rabbitmq else raw)
    if broker.rabbitmq:
        # RabbitMQ carries the body alone; on Redis the whole item is measured.
        size = len(base64.b64decode(bad["body"]))
        detail = f"Message body of {size} bytes is larger than MESSAGE_MAX_BYTES"
    else:
        detail = f"Message of {len(raw)} bytes is larger than MESSAGE_MAX_BYTES"
    assert_answered(caller, bad["headers"]["id"], f"{detail} ({MESSAGE_MAX_BYTES})")
    check()


def test_oversize_junk_is_kept_as_a_capped_prefix(caller, broker, worker_process):
    junk = b"[" + b"1," * (3 * MiB)

    if broker.rabbitmq:
        probe = str(uuid.uuid4())
        check = survives(caller, broker, worker_process, no_id_message(junk, {}, probe))
        check()

        kept = assert_dead_lettered(broker, probe, NO_ID_DETAIL)
        assert kept.body == junk[:KEPT_PREFIX_BYTES]
        assert kept.headers[KEPT_BODY_BYTES_HEADER] == len(junk)
        return
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
