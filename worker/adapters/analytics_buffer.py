"""The analytics buffer in Redis: signed URLs counted with one pipelined HINCRBY per
message, and set aside by a flush with one atomic RENAME.

The hash ``videoworker:analytics:buffer`` holds a field per (UTC day, video, mall, pin,
target). A flush renames it to ``videoworker:analytics:flush:<uuid>`` (only if it
exists, in one script, so no increment lands between the test and the rename) and
folds that key; increments after the rename start a new buffer. A flush key stays until
its fold has committed, so one a dead flush left behind is found (SCAN) and folded by
the next, whose record in PostgreSQL keeps it from counting twice.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import date
from uuid import UUID

import redis

from handlers.ports import Tally

log = logging.getLogger("videoworker.analytics")

BUFFER_KEY = "videoworker:analytics:buffer"
FLUSH_PREFIX = "videoworker:analytics:flush:"
NO_PIN = "-"
# Redis down: counting is skipped, and said at most this often per process.
WARN_EVERY_SECONDS = 60.0

RENAME_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('RENAME', KEYS[1], KEYS[2])
    return 1
end
return 0
"""


def field_of(tally: Tally) -> str:
    pin = NO_PIN if tally.pin_id is None else str(tally.pin_id)
    return f"{tally.day.isoformat()}|{tally.video_id}|{tally.mall_id}|{pin}|{tally.target}"


def tally_of(field: str, count: int) -> Tally | None:
    try:
        day, video, mall, pin, target = field.split("|")
        return Tally(
            date.fromisoformat(day),
            UUID(video),
            UUID(mall),
            None if pin == NO_PIN else UUID(pin),
            target,
            count,
        )
    except ValueError:
        log.warning("analytics.bad_field", extra={"field": field})
        return None


class RedisAnalyticsBuffer:
    def __init__(self, client: redis.Redis, key: str = BUFFER_KEY) -> None:
        self.client = client
        self.key = key
        self.flush_prefix = FLUSH_PREFIX if key == BUFFER_KEY else key + ":flush:"
        self._rename = client.register_script(RENAME_IF_EXISTS)
        self._warned_at = -WARN_EVERY_SECONDS
        self.skipped = 0

    def add(self, tallies: Sequence[Tally]) -> None:
        if not tallies:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for tally in tallies:
                pipe.hincrby(self.key, field_of(tally), tally.count)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self.skipped += sum(t.count for t in tallies)
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_SECONDS:
                self._warned_at = now
                log.warning(
                    "analytics.buffer_unavailable",
                    extra={"error": type(exc).__name__, "uncounted": self.skipped},
                )

    def take(self) -> list[str]:
        flush_id = str(uuid.uuid4())
        self._rename(keys=[self.key, self.flush_prefix + flush_id])
        waiting = [
            key.decode() if isinstance(key, bytes) else key
            for key in self.client.scan_iter(match=self.flush_prefix + "*", count=1000)
        ]
        return sorted(key.removeprefix(self.flush_prefix) for key in waiting)

    def read(self, flush_id: str) -> list[Tally]:
        fields = self.client.hgetall(self.flush_prefix + flush_id)
        tallies = []
        for field, value in fields.items():
            name = field.decode() if isinstance(field, bytes) else field
            tally = tally_of(name, int(value))
            if tally is not None:
                tallies.append(tally)
        return tallies

    def drop(self, flush_id: str) -> None:
        self.client.delete(self.flush_prefix + flush_id)


class Batched:
    """The buffer as a worker process uses it: each message's counts added up in memory
    and written by a thread of the process, one pipeline every ``interval`` seconds,
    and once more as the process stops (``send``).

    A signing then costs no Redis round trip at all, and a busy process writes one
    HINCRBY per (day, video, target) and interval instead of one per message (with
    one per message, analytics cost 6-8% of a worker's sign_url throughput). The price:
    a process killed outright (SIGKILL, OOM) loses at most its last ``interval`` of
    counts; a warm shutdown loses none. Started lazily in the process that counts, so
    a prefork child runs its own thread, never the parent's."""

    def __init__(self, inner: RedisAnalyticsBuffer, interval: float = 0.2) -> None:
        self.inner = inner
        self.interval = interval
        self._lock = threading.Lock()
        self._held: Counter[tuple[date, UUID, UUID, UUID | None, str]] = Counter()
        self._pid: int | None = None
        self._stop = threading.Event()

    def add(self, tallies: Sequence[Tally]) -> None:
        with self._lock:
            for t in tallies:
                self._held[(t.day, t.video_id, t.mall_id, t.pin_id, t.target)] += t.count
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._stop = threading.Event()
                threading.Thread(target=self._run, name="analytics-counts", daemon=True).start()

    def send(self) -> None:
        """Write what is held now (never raises: the Redis buffer's ``add`` logs and
        skips when Redis is away)."""
        with self._lock:
            held, self._held = self._held, Counter()
        if held:
            self.inner.add([Tally(*key, count) for key, count in held.items()])

    def stop(self) -> None:
        """The process is stopping: write what is held, and end the thread."""
        self._stop.set()
        self.send()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self.interval):
            self.send()

    def take(self) -> list[str]:
        # A flush in this process first writes what the process holds: a flush killed
        # mid-fold then takes none of its own process's counts with it.
        self.send()
        return self.inner.take()

    def read(self, flush_id: str) -> list[Tally]:
        return self.inner.read(flush_id)

    def drop(self, flush_id: str) -> None:
        self.inner.drop(flush_id)
