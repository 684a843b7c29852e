"""The event relay: from the outbox to the stream (and the exchange), at least once.

One relay is active across all workers: it holds a session advisory lock on a
connection of its own, and does all its work on that same connection. A worker that
dies drops the connection, PostgreSQL frees the lock with it (and rolls back whatever
the relay had claimed), and a standby, trying the lock every second, takes over. Since
claiming and the lock share a connection, two relays are never active at once, so no
relay ever skips a row another one holds, and each subject's order holds across a
takeover.

Why nothing is skipped: there is no cursor and no high-water mark. Each pass takes the
unsent rows in id order (``FOR UPDATE SKIP LOCKED``; with one relay, nothing is held by
another), publishes them, and marks them relayed in the same transaction. Ids come from
a sequence, so a transaction may commit after a later id was relayed: its rows are still
unsent, and the next pass takes them. Per subject, ids are in commit order (each writer
draws them after locking the subject: ``worker.adapters.postgres.rooms.events``), so a
pass that sees a subject's later event also sees its earlier ones, and publishes them
first.

A publish that fails for a sink as a whole (Redis or RabbitMQ away) rolls back that
sink's batch: the events wait in the outbox and go out in order when it is back. An
event refused on its own (larger than ``EVENTS_MAX_BYTES``, or refused by the server)
is held with backoff, and so is every later event of its subject; other subjects go
on. Both are logged at most once a minute. A publish whose marking is lost (the relay
died in between) is published again with the same id: subscribers deduplicate by it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import psycopg

from schemas.events import CLOUDEVENTS_SPECVERSION, EVENTS_SOURCE
from worker.adapters.postgres.rooms import events as outbox

log = logging.getLogger("videoworker.events")

# The session advisory lock of the active relay: "vwevents" as a 64-bit key.
RELAY_LOCK_KEY = 0x76776576656E7473
# Each sink's bit in ``event_outbox.relayed``: fixed, whatever sinks a worker has.
SINK_BITS = {"stream": 1, "exchange": 2}
PRUNE_EVERY_SECONDS = 60.0
PRUNE_CHUNK = 10_000
HOLD_CAP_SECONDS = 300
SINK_BACKOFF_CAP_SECONDS = 15.0


class SinkUnavailable(Exception):
    """The sink cannot be reached: nothing of the batch counts as relayed to it."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event on its way out: the outbox row's id, and the CloudEvent as JSON."""

    row_id: int
    type: str
    subject: str
    event_id: str
    body: str


class Sink(Protocol):
    name: str

    def publish(self, events: Sequence[Outgoing]) -> dict[int, str]:
        """Publish in this order; answer the events refused one by one (row id: why).
        Raise ``SinkUnavailable`` when the server cannot be reached."""
        ...

    def close(self) -> None: ...


def envelope(event_id: object, type_: str, subject: str, at: datetime, data_json: str) -> str:
    """The CloudEvent in structured JSON mode, ``data`` spliced in as stored (jsonb
    text is JSON already: no parse and dump per event)."""
    head = json.dumps(
        {
            "specversion": CLOUDEVENTS_SPECVERSION,
            "id": str(event_id),
            "source": EVENTS_SOURCE,
            "type": type_,
            "subject": subject,
            "time": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
        },
        separators=(",", ":"),
    )
    return head[:-1] + ',"data":' + data_json + "}"


class EveryMinute:
    """Lets a log line with a given key through at most once a minute."""

    def __init__(self, seconds: float = 60.0) -> None:
        self.seconds = seconds
        self.last: dict[str, float] = {}

    def __call__(self, key: str) -> bool:
        now = time.monotonic()
        if now - self.last.get(key, -self.seconds) >= self.seconds:
            self.last[key] = now
            return True
        return False


@dataclass
class SinkSlot:
    sink: Sink
    bit: int
    failures: int = 0
    down_until: float = 0.0

    def down(self) -> None:
        self.failures += 1
        pause = min(SINK_BACKOFF_CAP_SECONDS, 0.25 * 2 ** min(self.failures, 8))
        self.down_until = time.monotonic() + pause

    def up(self) -> None:
        self.failures = 0
        self.down_until = 0.0


@dataclass
class RelayStats:
    relayed: int = 0
    refused: int = 0
    passes: int = 0
    leading: bool = False
    takeovers: int = 0
    sink_outages: dict[str, int] = field(default_factory=dict)


def conninfo(database_url: str) -> str:
    """A libpq URL from the SQLAlchemy one."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


class Relay:
    def __init__(
        self,
        database_url: str,
        sinks: Sequence[Sink],
        *,
        batch: int = 500,
        poll_seconds: float = 1.0,
        max_bytes: int = 1024 * 1024,
        keep_sent_seconds: int = 3600,
        standby_seconds: float = 1.0,
    ) -> None:
        self.conninfo = conninfo(database_url)
        self.slots = [SinkSlot(sink, SINK_BITS[sink.name]) for sink in sinks]
        self.all_bits = sum(slot.bit for slot in self.slots)
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.max_bytes = max_bytes
        self.keep_sent_seconds = keep_sent_seconds
        self.standby_seconds = standby_seconds
        self.stats = RelayStats()
        self.stop = threading.Event()
        self._say = EveryMinute()
        self._pruned_at = 0.0

    # Leading ------------------------------------------------------------------------

    def run(self) -> None:
        """Until ``stop`` is set: connect, wait for the lock, relay; again on any loss."""
        while not self.stop.is_set():
            try:
                with psycopg.connect(
                    self.conninfo,
                    autocommit=True,
                    connect_timeout=5,
                    options="-c timezone=UTC",
                    # A peer gone without a FIN is noticed within ~30 s, not hours.
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                ) as conn:
                    self._serve(conn)
            except psycopg.Error as exc:
                if self._say("events.relay.postgres"):
                    log.warning("events.relay.postgres_lost", extra={"error": type(exc).__name__})
            finally:
                self.stats.leading = False
            self.stop.wait(self.standby_seconds)
        for slot in self.slots:
            slot.sink.close()

    def _serve(self, conn: psycopg.Connection) -> None:
        while not self.stop.is_set():
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK_KEY,)).fetchone()[0]:
                break
            self.stop.wait(self.standby_seconds)
        else:
            return
        self.stats.leading = True
        self.stats.takeovers += 1
        log.info("events.relay.leading")
        conn.execute(f"LISTEN {outbox.NOTIFY_CHANNEL}")
        while not self.stop.is_set():
            moved = self.pass_once(conn)
            if moved >= self.batch:
                continue  # more is waiting: no sleep
            self._wait(conn)

    def _wait(self, conn: psycopg.Connection) -> None:
        """Until a NOTIFY (psycopg keeps those that came during the pass), the poll
        interval, or the end of a sink's backoff; then every NOTIFY queued is dropped:
        the next pass takes whatever they announced."""
        timeout = self.poll_seconds
        now = time.monotonic()
        for slot in self.slots:
            if slot.down_until > now:
                timeout = min(timeout, slot.down_until - now)
        woken = False
        for _ in conn.notifies(timeout=max(0.01, timeout), stop_after=1):
            woken = True
        if woken:
            for _ in conn.notifies(timeout=0):
                pass

    # One pass -----------------------------------------------------------------------

    def pass_once(self, conn: psycopg.Connection) -> int:
        """Each sink's next batch; answers the most rows one sink took."""
        self.stats.passes += 1
        moved = 0
        now = time.monotonic()
        for slot in self.slots:
            if slot.down_until > now:
                continue
            try:
                moved = max(moved, self._relay(conn, slot))
            except SinkUnavailable as exc:
                slot.down()
                self.stats.sink_outages[slot.sink.name] = (
                    self.stats.sink_outages.get(slot.sink.name, 0) + 1
                )
                if self._say(f"events.sink.{slot.sink.name}"):
                    log.warning(
                        "events.sink.unavailable",
                        extra={"sink": slot.sink.name, "error": str(exc)[:200]},
                    )
            else:
                slot.up()
        if time.monotonic() - self._pruned_at > PRUNE_EVERY_SECONDS:
            self.prune(conn)
        return moved

    def _relay(self, conn: psycopg.Connection, slot: SinkSlot) -> int:
        with conn.transaction(), conn.cursor() as cur:
            held = [row[0] for row in cur.execute(outbox.HELD_SUBJECTS)]
            rows = cur.execute(
                outbox.TAKE, {"bit": slot.bit, "held": held, "limit": self.batch}
            ).fetchall()
            if not rows:
                return 0
            refused: dict[int, str] = {}
            blocked: set[str] = set()
            outgoing: list[Outgoing] = []
            for row_id, event_id, type_, subject, at, data, _attempts in rows:
                if subject in blocked:
                    continue  # behind a refused event of its subject: waits, unmarked
                body = envelope(event_id, type_, subject, at, data)
                size = len(body.encode("utf-8"))
                if size > self.max_bytes:
                    refused[row_id] = f"{size} bytes, over EVENTS_MAX_BYTES ({self.max_bytes})"
                    blocked.add(subject)
                    continue
                outgoing.append(Outgoing(row_id, type_, subject, str(event_id), body))
            refused.update(slot.sink.publish(outgoing))
            done = [event.row_id for event in outgoing if event.row_id not in refused]
            if done:
                cur.execute(
                    outbox.MARK_RELAYED, {"bit": slot.bit, "all": self.all_bits, "ids": done}
                )
            if refused:
                cur.execute(
                    outbox.HOLD,
                    {
                        "ids": list(refused),
                        "errors": list(refused.values()),
                        "cap": HOLD_CAP_SECONDS,
                    },
                )
        self.stats.relayed += len(done)
        if refused:
            self.stats.refused += len(refused)
            if self._say(f"events.refused.{slot.sink.name}"):
                log.warning(
                    "events.relay.refused",
                    extra={
                        "sink": slot.sink.name,
                        "events": len(refused),
                        "error": next(iter(refused.values()))[:200],
                    },
                )
        return len(rows)

    def prune(self, conn: psycopg.Connection) -> int:
        """Drop rows relayed longer ago than ``keep_sent_seconds``, a chunk at a time."""
        self._pruned_at = time.monotonic()
        pruned = 0
        while not self.stop.is_set():
            deleted = conn.execute(
                outbox.PRUNE, {"keep": self.keep_sent_seconds, "limit": PRUNE_CHUNK}
            ).rowcount
            pruned += deleted
            if deleted < PRUNE_CHUNK:
                break
        return pruned

    # Running in a thread --------------------------------------------------------------

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="videoworker-events-relay", daemon=True)
        thread.start()
        return thread


__all__ = [
    "RELAY_LOCK_KEY",
    "Outgoing",
    "Relay",
    "Sink",
    "SinkUnavailable",
    "envelope",
]
