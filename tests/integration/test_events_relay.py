"""The outbox, its triggers and the relay against real PostgreSQL and Redis.

The relay's claim: every committed event reaches the stream (at least once, the same id
each time), and one subject's events arrive in the order their changes committed, even
when transactions draw their ids in one order and commit in another.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator

import psycopg
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SpecEvent
from sqlalchemy import text

from tests.support import poll
from worker.adapters.redis import RedisStreamSink
from worker.adapters.relay import Outgoing, Relay, SinkUnavailable, conninfo

STATUSES = ("pending", "processing", "completed", "failed")


@pytest.fixture
def outbox(engine, clean) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE event_outbox"))


@pytest.fixture
def stream(redis_client) -> Iterator[str]:
    name = f"test:events:{uuid.uuid4().hex[:8]}"
    yield name
    redis_client.delete(name)


class FlakySink:
    """The stream sink, which can be made unreachable or to refuse a subject."""

    def __init__(self, inner: RedisStreamSink) -> None:
        self.name = inner.name
        self.inner = inner
        self.down = False
        self.batches = 0

    def publish(self, events: list[Outgoing]) -> dict[int, str]:
        if self.down:
            raise SinkUnavailable("Redis: ConnectionError")
        self.batches += 1
        return self.inner.publish(events)

    def close(self) -> None:
        pass


@pytest.fixture
def make_relay(services, redis_client, stream) -> Iterator:
    started: list[tuple[Relay, threading.Thread]] = []

    def make(**options) -> tuple[Relay, FlakySink]:
        sink = FlakySink(RedisStreamSink(redis_client, 168, stream=stream))
        options.setdefault("poll_seconds", 0.2)
        options.setdefault("standby_seconds", 0.2)
        relay = Relay(services["DATABASE_URL"], [sink], **options)
        started.append((relay, relay.start()))
        return relay, sink

    yield make
    for relay, _ in started:
        relay.stop.set()
    for _, thread in started:
        thread.join(10)


def delivered(redis_client, stream: str) -> list[dict]:
    return [json.loads(fields[b"event"]) for _, fields in redis_client.xrange(stream)]


def outbox_count(engine, where: str = "true") -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM event_outbox WHERE {where}")).scalar_one()  # noqa: S608


def pg(services) -> psycopg.Connection:
    return psycopg.connect(conninfo(services["DATABASE_URL"]), autocommit=False)


# The triggers ---------------------------------------------------------------------------


def test_inserts_and_status_updates_other_services_make_are_caught(outbox, catalog, engine):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    video = catalog.video(mall, pin, proxy=False, thumbnail=False, processing_status="pending")
    with engine.begin() as conn:
        conn.execute(text("UPDATE videos SET operator_notes = 'seen'"))  # no status: nothing
        conn.execute(text("UPDATE videos SET processing_status = 'processing'"))
        conn.execute(
            text(
                "UPDATE videos SET processing_status = 'completed', proxy_path = 'p.mp4', "
                "thumbnail_path = 't.jpg'"
            )
        )
        conn.execute(text("UPDATE videos SET proxy_path = 'p2.mp4'"))  # still has a proxy

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT type, subject, data FROM event_outbox ORDER BY id")).all()

    assert [(row.type, row.subject) for row in rows] == [
        ("video.created", str(video["id"])),
        ("video.status_changed", str(video["id"])),
        ("video.status_changed", str(video["id"])),
    ]
    assert rows[0].data["has_proxy"] is False and rows[0].data["processing_status"] == "pending"
    assert rows[0].data["uploaded_at"].endswith("Z")
    assert rows[1].data["changed"] == ["processing_status"]
    assert rows[2].data == {
        "video_id": str(video["id"]),
        "mall_id": str(mall),
        "pin_id": str(pin),
        "processing_status": {"from": "processing", "to": "completed"},
        "has_proxy": {"from": False, "to": True},
        "has_thumbnail": {"from": False, "to": True},
        "changed": ["processing_status", "has_proxy", "has_thumbnail"],
    }


def test_one_statement_of_many_rows_writes_one_event_per_row_that_changed(outbox, catalog, engine):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    for _ in range(30):
        catalog.video(mall, pin, upload_objects=False, processing_status="processing")
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE event_outbox"))
        conn.execute(
            text(
                "UPDATE videos SET processing_status = 'completed' "
                "WHERE id IN (SELECT id FROM videos ORDER BY id LIMIT 20)"
            )
        )
    assert outbox_count(engine, "type = 'video.status_changed'") == 20


# The relay --------------------------------------------------------------------------------


def test_committed_events_reach_the_stream_as_cloudevents_in_order(
    outbox, catalog, engine, make_relay, redis_client, stream
):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    video = catalog.video(mall, pin, upload_objects=False, processing_status="pending")
    for status in ("processing", "completed"):
        with engine.begin() as conn:
            conn.execute(text("UPDATE videos SET processing_status = :s"), {"s": status})
    make_relay()

    events = poll(
        lambda: (found := delivered(redis_client, stream)) and len(found) == 3 and found,
        timeout=10,
        message="three events on the stream",
    )

    assert [e["type"] for e in events] == ["video.created"] + ["video.status_changed"] * 2
    assert {e["subject"] for e in events} == {str(video["id"])}
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT event_id::text FROM event_outbox ORDER BY id")).scalars()
        assert [e["id"] for e in events] == list(ids)
    for event in events:
        JSONFormat().read(SpecEvent, json.dumps(event).encode())  # the SDK's own checks
    fields = redis_client.xrange(stream)[0][1]
    assert fields[b"type"] == b"video.created"
    assert fields[b"subject"] == str(video["id"]).encode()
    poll(lambda: outbox_count(engine, "sent_at IS NULL") == 0, timeout=5, message="all sent")


def test_a_transaction_that_commits_after_a_later_id_was_relayed_is_not_skipped(
    outbox, catalog, services, make_relay, redis_client, stream
):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    slow_video = catalog.video(mall, pin, upload_objects=False, processing_status="pending")
    fast_video = catalog.video(mall, pin, upload_objects=False, processing_status="pending")
    make_relay()
    poll(lambda: len(delivered(redis_client, stream)) == 2, timeout=10, message="the creations")

    with pg(services) as slow, pg(services) as fast:
        slow.execute(
            "UPDATE videos SET processing_status = 'processing' WHERE id = %s",
            (slow_video["id"],),
        )  # draws its id first, and holds it
        fast.execute(
            "UPDATE videos SET processing_status = 'processing' WHERE id = %s",
            (fast_video["id"],),
        )
        fast.commit()
        poll(lambda: len(delivered(redis_client, stream)) == 3, timeout=10, message="fast one")
        slow.commit()

    events = poll(
        lambda: (found := delivered(redis_client, stream)) and len(found) == 4 and found,
        timeout=10,
        message="the slow transaction's event too",
    )
    assert [e["subject"] for e in events[2:]] == [str(fast_video["id"]), str(slow_video["id"])]


def test_concurrent_writers_committing_out_of_id_order_lose_nothing_and_keep_each_video_in_order(
    outbox, catalog, services, engine, make_relay, redis_client, stream
):
    """Eight writers, each transaction holding its ids for a random while before it
    commits (so ids commit out of order all the time), over 20 shared videos, while the
    relay runs in small batches. Every event arrives; per video, each status change
    starts where the one before it ended: the commit order, with nothing missing."""
    mall = catalog.mall()
    pin = catalog.pin(mall)
    videos = [
        catalog.video(mall, pin, upload_objects=False, processing_status="pending")["id"]
        for _ in range(20)
    ]
    make_relay(batch=7)
    writers, changes_each = 8, 60
    rng = random.Random(22)
    delays = [[rng.uniform(0, 0.01) for _ in range(changes_each)] for _ in range(writers)]
    picks = [[rng.choice(videos) for _ in range(changes_each)] for _ in range(writers)]

    def write(index: int) -> None:
        with pg(services) as conn:
            for pick, delay in zip(picks[index], delays[index], strict=True):
                conn.execute(
                    "UPDATE videos SET processing_status = CASE processing_status "
                    "WHEN 'pending' THEN 'processing' WHEN 'processing' THEN 'completed' "
                    "WHEN 'completed' THEN 'failed' ELSE 'pending' END WHERE id = %s",
                    (pick,),
                )
                time.sleep(delay)
                conn.commit()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = len(videos) + writers * changes_each

    events = poll(
        lambda: (found := delivered(redis_client, stream)) and len(found) >= expected and found,
        timeout=30,
        message=f"{expected} events",
    )

    unique = {e["id"]: e for e in events}
    assert len(unique) == expected == outbox_count(engine)
    chains: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        chains[event["subject"]].append(event)
    for subject, chain in chains.items():
        assert chain[0]["type"] == "video.created", subject
        state = chain[0]["data"]["processing_status"]
        for event in chain[1:]:
            step = event["data"]["processing_status"]
            assert step["from"] == state, f"{subject}: a change arrived out of commit order"
            state = step["to"]
    with engine.connect() as conn:
        final = dict(conn.execute(text("SELECT id::text, processing_status FROM videos")).all())
    assert {
        s: c[-1]["data"]["processing_status"]["to"] for s, c in chains.items() if len(c) > 1
    } == {s: final[s] for s, c in chains.items() if len(c) > 1}


def test_a_refused_event_holds_back_its_subject_only_and_goes_out_in_order_later(
    outbox, catalog, engine, make_relay, redis_client, stream
):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    big = catalog.video(mall, pin, upload_objects=False, processing_status="pending")
    small = catalog.video(mall, pin, upload_objects=False, processing_status="pending")
    with engine.begin() as conn:
        # The creation event of ``big`` is made larger than the relay takes.
        conn.execute(
            text(
                "UPDATE event_outbox SET data = data || "
                "jsonb_build_object('pad', repeat('x', 5000)) WHERE subject = :s"
            ),
            {"s": str(big["id"])},
        )
        conn.execute(text("UPDATE videos SET processing_status = 'processing'"))
    relay, _ = make_relay(max_bytes=4000)

    poll(
        lambda: (
            {e["subject"] for e in delivered(redis_client, stream)} == {str(small["id"])}
            and len(delivered(redis_client, stream)) == 2
        ),
        timeout=10,
        message="the other video's two events",
    )
    time.sleep(1)  # several passes: the held subject's later event must not overtake
    assert all(e["subject"] == str(small["id"]) for e in delivered(redis_client, stream))
    with engine.connect() as conn:
        held = conn.execute(
            text("SELECT attempts, last_error FROM event_outbox WHERE subject = :s ORDER BY id"),
            {"s": str(big["id"])},
        ).all()
    assert held[0].attempts >= 1 and "EVENTS_MAX_BYTES" in held[0].last_error
    assert relay.stats.refused >= 1

    relay.max_bytes = 1 << 20
    with engine.begin() as conn:
        conn.execute(text("UPDATE event_outbox SET retry_at = now() WHERE retry_at IS NOT NULL"))
    events = poll(
        lambda: (found := delivered(redis_client, stream)) and len(found) == 4 and found,
        timeout=10,
        message="the held events",
    )
    assert [e["type"] for e in events if e["subject"] == str(big["id"])] == [
        "video.created",
        "video.status_changed",
    ]


def test_events_wait_while_the_sink_is_down_and_go_out_in_order_when_it_is_back(
    outbox, catalog, engine, make_relay, redis_client, stream
):
    relay, sink = make_relay()
    sink.down = True
    mall = catalog.mall()
    pin = catalog.pin(mall)
    video = catalog.video(mall, pin, upload_objects=False, processing_status="pending")
    for status in ("processing", "completed", "failed"):
        with engine.begin() as conn:
            conn.execute(text("UPDATE videos SET processing_status = :s"), {"s": status})
    poll(lambda: relay.stats.sink_outages.get("stream", 0) >= 2, timeout=10, message="retries")
    assert delivered(redis_client, stream) == []
    assert outbox_count(engine, "sent_at IS NULL") == 4

    sink.down = False
    events = poll(
        lambda: (found := delivered(redis_client, stream)) and len(found) == 4 and found,
        timeout=20,
        message="the waiting events",
    )
    assert [e["data"]["processing_status"] for e in events[1:]] == [
        {"from": "pending", "to": "processing"},
        {"from": "processing", "to": "completed"},
        {"from": "completed", "to": "failed"},
    ]
    assert {e["subject"] for e in events} == {str(video["id"])}


def test_one_relay_is_active_and_another_takes_over_when_its_connection_drops(
    outbox, catalog, engine, make_relay, redis_client, stream
):
    first, _ = make_relay()
    poll(lambda: first.stats.leading, timeout=10, message="the first relay to lead")
    second, _ = make_relay()
    time.sleep(0.6)
    assert not second.stats.leading

    with engine.begin() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted AND objid = :low"
            ),
            {"low": 0x76776576656E7473 & 0xFFFFFFFF},
        )
    first.stop.set()  # it would reconnect and stand by; keep the test about the second
    poll(lambda: second.stats.leading, timeout=10, message="the second relay to take over")
    mall = catalog.mall()
    pin = catalog.pin(mall)
    video = catalog.video(mall, pin, upload_objects=False)
    poll(
        lambda: [e["subject"] for e in delivered(redis_client, stream)] == [str(video["id"])],
        timeout=10,
        message="an event relayed by the second relay",
    )


def test_sent_rows_are_pruned_after_their_keeping_time(outbox, catalog, engine, make_relay):
    mall = catalog.mall()
    catalog.video(mall, catalog.pin(mall), upload_objects=False)
    relay, _ = make_relay(keep_sent_seconds=1)
    poll(lambda: outbox_count(engine, "sent_at IS NOT NULL") == 1, timeout=10, message="sent")
    with engine.begin() as conn:
        conn.execute(text("UPDATE event_outbox SET sent_at = now() - interval '1 minute'"))
    relay._pruned_at = 0.0  # noqa: SLF001 - prune on the next pass rather than in a minute
    poll(lambda: outbox_count(engine) == 0, timeout=10, message="the sent row pruned")
