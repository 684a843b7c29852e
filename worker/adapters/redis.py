"""Redis adapter: the statistics cache, the ``videos.events`` publisher, and the stream
the event relay writes to.

Both are best-effort by design: with Redis down, ``videos.stats`` answers from
Postgres and events are skipped (logged), rather than failing a delete that has
already committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from uuid import UUID

import redis
from pydantic import ValidationError

from schemas.events import (
    EVENTS_CHANNEL,
    EVENTS_STREAM,
    STREAM_EVENT_FIELD,
    STREAM_SUBJECT_FIELD,
    STREAM_TYPE_FIELD,
    Event,
)
from schemas.responses import VideoStats
from worker.adapters.relay import Outgoing, SinkUnavailable

log = logging.getLogger("videoworker.cache")

KEY_PREFIX = "videoworker:stats:"
DIRTY_KEY = "videoworker:stats-dirty"
FLUSH_MARKER_KEY = "videoworker:stats-flush-queued"
GLOBAL_SCOPE = "global"
PIN_KEY_PREFIX = KEY_PREFIX + "pin:"
# Per-pin figures are not refreshed by beat (the malls' are): they live this long at
# most, so a tenant's figure is as fresh as an operator's within a few minutes.
PIN_TTL_SECONDS = 300

# Deletes the entry only while it still holds the bad value read: a fresh figure another
# worker wrote in between is kept.
DELETE_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def stats_key(mall_id: UUID | None) -> str:
    return KEY_PREFIX + (str(mall_id) if mall_id is not None else GLOBAL_SCOPE)


def pin_stats_key(pin_id: UUID) -> str:
    return PIN_KEY_PREFIX + str(pin_id)


def make_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=2,
        health_check_interval=30,
        retry_on_timeout=True,
    )


class RedisStatsCache:
    def __init__(
        self,
        client: redis.Redis,
        ttl_seconds: int,
        flush_marker_seconds: int = 60,
        pin_ttl_seconds: int = PIN_TTL_SECONDS,
    ) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.pin_ttl_seconds = min(ttl_seconds, pin_ttl_seconds)
        # Bounds how long a lost flush message can suppress new ones.
        self.flush_marker_seconds = flush_marker_seconds
        self._delete_if_unchanged = client.register_script(DELETE_IF_UNCHANGED)

    def get(self, mall_id: UUID | None) -> VideoStats | None:
        """The cached figure, or None to recompute it.

        Anything other than this scope's valid figure (bytes from an older release, a
        hand-edited key, a figure of another mall) is a miss: logged, dropped and
        recomputed by the caller, never served and never an error.
        """
        key = stats_key(mall_id)
        try:
            raw = self.client.get(key)
        except redis.RedisError as exc:
            log.warning("stats.cache.unavailable", extra={"error": type(exc).__name__})
            return None
        if raw is None:
            return None
        try:
            stats = VideoStats.model_validate_json(raw)
        except ValidationError:
            stats = None
        if stats is not None and stats.mall_id == mall_id:
            return stats
        # The scope only: the value may be anything, so it is never logged.
        log.warning("stats.cache.invalid", extra={"scope": key.removeprefix(KEY_PREFIX)})
        try:
            self._delete_if_unchanged(keys=[key], args=[raw])
        except redis.RedisError as exc:
            log.warning("stats.cache.unavailable", extra={"error": type(exc).__name__})
        return None

    def put(self, stats: Sequence[VideoStats]) -> None:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for item in stats:
                    pipe.set(stats_key(item.mall_id), item.model_dump_json(), ex=self.ttl_seconds)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("stats.cache.unavailable", extra={"error": type(exc).__name__})

    def get_many(self, mall_ids: Sequence[UUID]) -> dict[UUID, VideoStats]:
        found = self._read_many([stats_key(mall_id) for mall_id in mall_ids])
        return {
            mall_id: stats
            for mall_id, stats in zip(mall_ids, found, strict=True)
            if stats is not None and stats.mall_id == mall_id
        }

    def get_pins(self, pin_ids: Sequence[UUID]) -> dict[UUID, VideoStats]:
        found = self._read_many([pin_stats_key(pin_id) for pin_id in pin_ids])
        return {
            pin_id: stats for pin_id, stats in zip(pin_ids, found, strict=True) if stats is not None
        }

    def _read_many(self, keys: list[str]) -> list[VideoStats | None]:
        """One MGET; an unreadable value is a miss (recomputed and overwritten)."""
        if not keys:
            return []
        try:
            raws = self.client.mget(keys)
        except redis.RedisError as exc:
            log.warning("stats.cache.unavailable", extra={"error": type(exc).__name__})
            return [None] * len(keys)
        found: list[VideoStats | None] = []
        for raw in raws:
            try:
                found.append(None if raw is None else VideoStats.model_validate_json(raw))
            except ValidationError:
                found.append(None)
        return found

    def put_pins(self, figures: Mapping[UUID, VideoStats]) -> None:
        if not figures:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for pin_id, stats in figures.items():
                    pipe.set(
                        pin_stats_key(pin_id), stats.model_dump_json(), ex=self.pin_ttl_seconds
                    )
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("stats.cache.unavailable", extra={"error": type(exc).__name__})

    def forget_pins(self, pin_ids: Iterable[UUID]) -> None:
        keys = [pin_stats_key(pin_id) for pin_id in pin_ids]
        if not keys:
            return
        try:
            self.client.delete(*keys)
        except redis.RedisError as exc:
            log.warning("stats.cache.unavailable", extra={"error": type(exc).__name__})

    def mark_dirty(self, mall_ids: Iterable[UUID]) -> bool:
        """Add the scopes to the stale set; True for the caller that must queue a flush.

        The members are added before the marker is tried, and a flush removes the marker
        before it takes the members, so no mark is ever left without a flush coming.
        """
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.sadd(DIRTY_KEY, GLOBAL_SCOPE, *(str(m) for m in mall_ids))
                pipe.set(FLUSH_MARKER_KEY, "1", nx=True, ex=self.flush_marker_seconds)
                _, claimed = pipe.execute()
        except redis.RedisError as exc:
            log.warning("stats.cache.unavailable", extra={"error": type(exc).__name__})
            return False
        return bool(claimed)

    def take_dirty(self) -> tuple[bool, list[UUID]]:
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(FLUSH_MARKER_KEY)
                pipe.smembers(DIRTY_KEY)
                pipe.delete(DIRTY_KEY)
                _, members, _ = pipe.execute()
        except redis.RedisError as exc:
            log.warning("stats.cache.unavailable", extra={"error": type(exc).__name__})
            return False, []
        scopes = {m.decode() if isinstance(m, bytes) else m for m in members}
        malls = sorted(UUID(scope) for scope in scopes if scope != GLOBAL_SCOPE)
        return GLOBAL_SCOPE in scopes, malls


class RedisPublisher:
    def __init__(self, client: redis.Redis, channel: str = EVENTS_CHANNEL) -> None:
        self.client = client
        self.channel = channel

    def __call__(self, event: Event) -> None:
        try:
            self.client.publish(self.channel, event.model_dump_json())
        except redis.RedisError as exc:
            log.warning(
                "event.publish.failed",
                extra={"event": getattr(event, "event", "?"), "error": type(exc).__name__},
            )


class RedisStreamSink:
    """The stream ``videos:events``: one XADD per event, a batch per pipeline.

    Each entry carries the whole CloudEvent (field ``event``) and its type and subject
    (to filter on without parsing). Every XADD trims by age (``MINID ~``, now less the
    retention): approximate trimming drops whole macro nodes, so it costs next to nothing.
    """

    name = "stream"

    def __init__(
        self, client: redis.Redis, retention_hours: int, stream: str = EVENTS_STREAM
    ) -> None:
        self.client = client
        self.stream = stream
        self.retention_ms = retention_hours * 3600 * 1000

    def publish(self, events: Sequence[Outgoing]) -> dict[int, str]:
        """Refused events (row id: why); raises ``SinkUnavailable`` when Redis is away."""
        if not events:
            return {}
        min_id = max(0, int(time.time() * 1000) - self.retention_ms)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.xadd(
                        self.stream,
                        {
                            STREAM_EVENT_FIELD: event.body,
                            STREAM_TYPE_FIELD: event.type,
                            STREAM_SUBJECT_FIELD: event.subject,
                        },
                        minid=min_id,
                        approximate=True,
                    )
                replies = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise SinkUnavailable(f"Redis: {type(exc).__name__}") from exc
        refused: dict[int, str] = {}
        for event, reply in zip(events, replies, strict=True):
            if isinstance(reply, (redis.ConnectionError, redis.TimeoutError)):
                raise SinkUnavailable(f"Redis: {type(reply).__name__}")
            if isinstance(reply, Exception):
                refused[event.row_id] = f"Redis refused: {str(reply)[:200]}"
        return refused

    def close(self) -> None:
        self.client.close()
