"""Events lose nothing while relays die and Redis restarts.

Four writers make 10,000 changes (``EVENTS_FAULT_CHANGES``; about 35 s here): direct
UPDATEs of ``processing_status`` as the pipeline makes them, and trash, restore and
delete through the worker's own room and outbox. Meanwhile the worker holding the relay
is killed twice (another takes over) and Redis is restarted once. A consumer group
created before the run and away (reading nothing) for the whole of it (and
``EVENTS_FAULT_AWAY_SECONDS`` more), then reads the stream: every event once after
deduplication by id, and per video in commit order (each
status change starts where the one before it ended; nothing after a delete).
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import text

from handlers import events
from handlers.access import UNRESTRICTED
from schemas.events import EVENTS_STREAM, CloudEvent
from tests.support import poll
from worker.adapters.postgres.uow import PostgresUnitOfWork

CHANGES = int(os.environ.get("EVENTS_FAULT_CHANGES", "10000"))
# How long the subscriber stays away after the last change before it reads (the run
# itself is already away time): ``make fault-events-away`` makes it 10 minutes.
AWAY_SECONDS = float(os.environ.get("EVENTS_FAULT_AWAY_SECONDS", "0"))
WRITERS = 4
VIDEOS = 200
ADVANCE = text(
    "UPDATE videos SET processing_status = CASE processing_status WHEN 'pending' THEN "
    "'processing' WHEN 'processing' THEN 'completed' WHEN 'completed' THEN 'failed' "
    "ELSE 'pending' END WHERE id = :id"
)


def relay_leader(faults) -> int | None:
    """The backend pid holding the relay's advisory lock, if any."""
    with faults.engine.connect() as conn:
        return conn.execute(
            text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = :o"),
            {"o": 0x76776576656E7473 & 0xFFFFFFFF},
        ).scalar()


@pytest.mark.timeout(300 + AWAY_SECONDS)
def test_every_event_arrives_once_in_commit_order_through_relay_kills_and_a_redis_restart(
    faults, workers, mall_and_pin
):
    mall, pin = mall_and_pin
    with faults.engine.begin() as conn:
        conn.execute(text("TRUNCATE event_outbox"))
    rows = faults.insert_videos(mall, pin, VIDEOS, age=timedelta(days=1))
    ids = [row["id"] for row in rows]
    cache = redis.Redis.from_url(faults.env["REDIS_URL"], socket_timeout=5)
    cache.delete(EVENTS_STREAM)
    # The subscriber: its group exists from the start, then it stays away until the end.
    cache.xgroup_create(EVENTS_STREAM, "audit", id="0", mkstream=True)
    relays = [workers.start("-Q", "videos"), workers.start("-Q", "videos")]
    poll(lambda: relay_leader(faults) is not None, timeout=30, message="a relay to lead")

    done = threading.Event()
    made = [0] * WRITERS
    deleted: set[uuid.UUID] = set()
    lock = threading.Lock()

    def write(index: int) -> None:
        rng = random.Random(index)
        per_writer = CHANGES // WRITERS
        while made[index] < per_writer:
            video_id = rng.choice(ids)
            roll = rng.random()
            try:
                if roll < 0.80:
                    with faults.engine.begin() as conn:
                        conn.execute(ADVANCE, {"id": video_id})
                else:
                    with PostgresUnitOfWork(faults.engine) as uow:
                        if roll < 0.89:
                            moved = uow.removal.trash(
                                UNRESTRICTED, video_id, datetime.now(UTC), "fault"
                            )
                            if moved is not None:
                                events.trashed(uow, [moved], "fault")
                        elif roll < 0.98:
                            back = uow.removal.restore(UNRESTRICTED, video_id)
                            if back is not None:
                                events.restored(uow, [back])
                        else:
                            removed = uow.removal.delete(UNRESTRICTED, video_id)
                            if removed is not None:
                                events.deleted(uow, [removed], "request", False)
                                with lock:
                                    deleted.add(video_id)
                        uow.commit()
            except Exception:  # noqa: BLE001, S112 - a connection lost mid-change: try again
                continue
            made[index] += 1
        done.set()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()

    def progress() -> int:
        return sum(made)

    # Kill the relay's worker twice; another takes over each time.
    for kill in range(2):
        poll(lambda k=kill: progress() >= CHANGES * (k + 1) // 4, timeout=120, message="changes")
        leader = relay_leader(faults)
        for worker in relays:
            with faults.engine.connect() as conn:
                port = conn.execute(
                    text("SELECT client_port FROM pg_stat_activity WHERE pid = :p"), {"p": leader}
                ).scalar()
            # The relay runs in the main process, never in a pool child.
            owner = worker if _main_connected(worker, port) else None
            if owner is not None:
                owner.kill()
                relays.remove(owner)
                relays.append(workers.start("-Q", "videos"))
                break
        poll(
            lambda old=leader: relay_leader(faults) not in (None, old),
            timeout=30,
            message="a takeover",
        )
    poll(lambda: progress() >= CHANGES * 3 // 4, timeout=120, message="changes")
    faults.services.redis.stop()
    time.sleep(1)
    faults.services.redis.start()
    for thread in threads:
        thread.join(300)
    assert progress() == CHANGES // WRITERS * WRITERS
    time.sleep(AWAY_SECONDS)

    with faults.engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM event_outbox")).scalar_one()
    poll(
        lambda: _unsent(faults) == 0,
        timeout=120,
        message="every event relayed",
    )
    read = _read_group(cache, "audit")
    unique = {event.id: event for event in read}
    assert len(unique) == total  # all of them, once each after dedup

    chains: dict[str, list[CloudEvent]] = defaultdict(list)
    for event in unique.values():
        chains[event.subject].append(event)
    for subject, chain in chains.items():
        status = None
        for position, event in enumerate(chain):
            if event.type == "video.status_changed":
                step = event.data["processing_status"]
                assert status in (None, step["from"]), f"{subject}: out of commit order"
                status = step["to"]
            if event.type == "video.deleted":
                assert position == len(chain) - 1, f"{subject}: an event after its delete"
    assert {uuid.UUID(s) for s, c in chains.items() if c[-1].type == "video.deleted"} == deleted


def _main_connected(worker, port: int) -> bool:
    import psutil

    try:
        connections = psutil.Process(worker.pid).net_connections("tcp")
    except psutil.NoSuchProcess:
        return False
    return any(c.laddr and c.laddr.port == port for c in connections)


def _unsent(faults) -> int:
    with faults.engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM event_outbox WHERE sent_at IS NULL")
        ).scalar_one()


def _read_group(cache: redis.Redis, group: str) -> list[CloudEvent]:
    found: list[CloudEvent] = []
    while True:
        reply = cache.xreadgroup(group, "c1", {EVENTS_STREAM: ">"}, count=1000, block=2000)
        entries = reply[0][1] if reply else []
        if not entries:
            return found
        for entry_id, fields in entries:
            found.append(CloudEvent.model_validate_json(fields[b"event"]))
            cache.xack(EVENTS_STREAM, group, entry_id)
