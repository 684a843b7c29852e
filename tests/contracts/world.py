"""One arranging API over the in-memory fakes and over the real adapters.

A port contract test arranges malls, pins, videos and objects through a ``World``,
drives a port, and reads back what the bucket, the deletion queue and the audit log
hold. The same test body then runs on ``FakeWorld`` (``tests/unit/fakes.py``, no
services) and on ``RealWorld`` (PostgreSQL, HTTP S3 and Redis as
``worker.bootstrap.build_deps`` wires them), so a fake cannot drift from its adapter.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from pydantic import TypeAdapter
from sqlalchemy import insert, select, text

from handlers.access import UNRESTRICTED, Scope
from handlers.ports import ObjectStore, Publish, StatsCache, UnitOfWork, Window
from schemas.events import EVENTS_CHANNEL, Event, StatsRefreshed, VideoDeleted
from schemas.requests import ListVideos
from schemas.responses import VideoDetailResponse
from tests.support import poll
from tests.unit.fakes import T0, Fakes
from worker.adapters.postgres.tables import DeletionAudit, MallRetention, StorageDeletion, Video

R = TypeVar("R")

# How long a published event may take to reach a subscriber on the real side.
EVENT_DEADLINE_SECONDS = 5.0
EVENTS = TypeAdapter(VideoDeleted | StatsRefreshed)


@dataclass(frozen=True)
class QueueRow:
    id: int
    object_key: str
    video_id: UUID | None
    mall_id: UUID | None
    reason: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime


@dataclass(frozen=True)
class AuditRow:
    video_id: UUID
    mall_id: UUID
    reason: str
    object_keys: list[str]
    outcome: str
    request_id: str | None
    actor: str | None = None


# Columns of the worker's own, which no answer of ``get`` carries.
OWN_COLUMNS = ("legal_hold", "trashed_at", "trashed_by")


def video_columns(mall_id: UUID, pin_id: UUID, **overrides: Any) -> dict[str, Any]:
    """Every column of a ``videos`` row, so both worlds store exactly the same values."""
    video_id = overrides.pop("id", None) or uuid.uuid4()
    proxy = overrides.pop("proxy", True)
    thumbnail = overrides.pop("thumbnail", True)
    columns: dict[str, Any] = {
        "id": video_id,
        "mall_id": mall_id,
        "pin_id": pin_id,
        "original_filename": "video_001.mp4",
        "original_path": f"videos/{mall_id}/original/{video_id}.mp4",
        "file_size_bytes": 1_000,
        "checksum_sha256": "abc123",
        "proxy_path": f"videos/{mall_id}/proxy/{video_id}.mp4" if proxy else None,
        "proxy_size_bytes": 100 if proxy else None,
        "thumbnail_path": f"thumbnails/{mall_id}/{video_id}.jpg" if thumbnail else None,
        "width": 1920,
        "height": 1080,
        "fps": 30.0,
        "duration_seconds": 120.5,
        "codec": "h264",
        "processing_status": "completed" if proxy else "pending",
        "processing_job_id": None,
        "processing_error": None,
        "processing_started_at": None,
        "processing_completed_at": None,
        "uploaded_at": T0 - timedelta(days=1),
        "recorded_at": T0 - timedelta(days=1, hours=1),
        "created_at": T0 - timedelta(days=1),
        "updated_at": T0 - timedelta(days=1),
        "operator_notes": None,
        "legal_hold": False,
    }
    columns.update(overrides)
    return columns


class World:
    """The ports under test, and the arranging and reading helpers both sides share."""

    uow: Callable[[], UnitOfWork]
    store: ObjectStore
    cache: StatsCache
    publish: Publish

    def __init__(self) -> None:
        self._pin_names: dict[UUID, str] = {}
        self._default_pins: dict[UUID, UUID] = {}

    # Arranging.
    def mall(self, retention_days: int | None = None, max_storage_bytes: int | None = None) -> UUID:
        """A mall, with a ``mall_retention`` row when a period or a quota is given."""
        raise NotImplementedError

    def pin(self, mall_id: UUID, name: str = "Entrance A") -> UUID:
        pin_id = self._insert_pin(mall_id, name)
        self._pin_names[pin_id] = name
        return pin_id

    def video(
        self, mall_id: UUID, pin_id: UUID | None = None, **columns: Any
    ) -> VideoDetailResponse:
        """A row with ``video_columns`` defaults; returns what ``get`` should answer for it
        (``get_many(trashed=True)`` for one given a ``trashed_at``)."""
        if pin_id is None:
            if mall_id not in self._default_pins:
                self._default_pins[mall_id] = self.pin(mall_id)
            pin_id = self._default_pins[mall_id]
        row = video_columns(mall_id, pin_id, **columns)
        detail = {k: v for k, v in row.items() if k not in OWN_COLUMNS}
        video = VideoDetailResponse(**detail, pin_name=self._pin_names[pin_id])
        self._insert_video(row, video)
        return video

    def put_object(self, key: str, body: bytes = b"x") -> None:
        raise NotImplementedError

    def refuse_deletes_under(self, prefix: str) -> None:
        """S3 answers AccessDenied, key by key, for deletes of objects under ``prefix``."""
        raise NotImplementedError

    def _insert_pin(self, mall_id: UUID, name: str) -> UUID:
        raise NotImplementedError

    def _insert_video(self, row: dict[str, Any], video: VideoDetailResponse) -> None:
        raise NotImplementedError

    # Reading back what is stored, outside any transaction of the test's.
    def bucket_keys(self) -> set[str]:
        raise NotImplementedError

    def queued(self) -> list[QueueRow]:
        """The deletion queue, by id."""
        raise NotImplementedError

    def queued_keys(self) -> list[str]:
        raise NotImplementedError

    def audit(self) -> list[AuditRow]:
        """The audit log, oldest first."""
        raise NotImplementedError

    def outcomes(self, video_id: UUID) -> list[tuple[str, str]]:
        """(reason, outcome) of each audit row of this video."""
        raise NotImplementedError

    def trash_mark(self, video_id: UUID) -> tuple[datetime, str | None] | None:
        """When the video went into the trash and by whom; None when it is not in it."""
        raise NotImplementedError

    def listen(self) -> Callable[[int], list[Event]]:
        """Start receiving published events; the result waits for that many of them."""
        raise NotImplementedError

    def outbox(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(type, subject, data) of each event in the outbox, in id order."""
        raise NotImplementedError

    # Running a port call in a transaction of its own.
    def read(self, action: Callable[[UnitOfWork], R]) -> R:
        with self.uow() as uow:
            return action(uow)

    def write(self, action: Callable[[UnitOfWork], R]) -> R:
        with self.uow() as uow:
            result = action(uow)
            uow.commit()
        return result


class FakeWorld(World):
    def __init__(self) -> None:
        super().__init__()
        self.fakes = Fakes()
        self.uow = self.fakes.uow
        self.store = self.fakes.store
        self.cache = self.fakes.cache
        self.publish = self.fakes.publisher

    def mall(self, retention_days: int | None = None, max_storage_bytes: int | None = None) -> UUID:
        mall_id = uuid.uuid4()
        self.fakes.uow.videos.malls.add(mall_id)
        if retention_days is not None:
            self.fakes.uow.videos.retention_days_of[mall_id] = retention_days
        if max_storage_bytes is not None:
            self.fakes.uow.videos.quota_of[mall_id] = max_storage_bytes
        return mall_id

    def _insert_pin(self, mall_id: UUID, name: str) -> UUID:
        # The fake keeps no pins table: each video carries its pin's name.
        return uuid.uuid4()

    def _insert_video(self, row: dict[str, Any], video: VideoDetailResponse) -> None:
        self.fakes.uow.videos.add(video)
        if row["legal_hold"]:
            self.fakes.uow.videos.held.add(video.id)
        if row.get("trashed_at") is not None:
            self.fakes.uow.videos.trashed[video.id] = (row["trashed_at"], row.get("trashed_by"))

    def put_object(self, key: str, body: bytes = b"x") -> None:
        self.fakes.store.objects[key] = len(body)

    def refuse_deletes_under(self, prefix: str) -> None:
        self.fakes.store.fail(*(key for key in self.fakes.store.objects if key.startswith(prefix)))

    def bucket_keys(self) -> set[str]:
        return set(self.fakes.store.objects)

    def queued(self) -> list[QueueRow]:
        entries = sorted(self.fakes.uow.deletions.entries.values(), key=lambda e: e.id)
        return [
            QueueRow(
                id=e.id,
                object_key=e.object_key,
                video_id=e.video_id,
                mall_id=e.mall_id,
                reason=e.reason,
                attempts=e.attempts,
                last_error=e.last_error,
                next_attempt_at=e.next_attempt_at,
            )
            for e in entries
        ]

    def queued_keys(self) -> list[str]:
        return self.fakes.uow.deletions.keys()

    def audit(self) -> list[AuditRow]:
        return [
            AuditRow(
                e.video_id,
                e.mall_id,
                e.reason,
                list(e.object_keys),
                e.outcome,
                e.request_id,
                e.actor,
            )
            for e in self.fakes.uow.audit.entries
        ]

    def outcomes(self, video_id: UUID) -> list[tuple[str, str]]:
        return self.fakes.uow.audit.outcome_of(video_id)

    def trash_mark(self, video_id: UUID) -> tuple[datetime, str | None] | None:
        return self.fakes.uow.videos.trashed.get(video_id)

    def listen(self) -> Callable[[int], list[Event]]:
        return lambda count: list(self.fakes.publisher.events)

    def outbox(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [(e.type, e.subject, e.data) for e in self.fakes.uow.events.entries]


class RealWorld(World):
    """PostgreSQL, S3 and Redis, arranged with the integration fixtures' ``catalog``."""

    def __init__(
        self,
        deps: Any,
        catalog: Any,
        engine: Any,
        s3: Any,
        bucket: str,
        redis_client: Any,
        deny: Any,
    ) -> None:
        super().__init__()
        self.uow = deps.uow
        self.store = deps.store
        self.cache = deps.cache
        self.publish = deps.publish
        self.redis_client = redis_client
        self.catalog = catalog
        self.engine = engine
        self.s3 = s3
        self.bucket = bucket
        # Lazily requested: the bucket policy is set only by the tests that need it.
        self._deny = deny

    def mall(self, retention_days: int | None = None, max_storage_bytes: int | None = None) -> UUID:
        mall_id = self.catalog.mall()
        if retention_days is not None or max_storage_bytes is not None:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(MallRetention.__table__).values(
                        mall_id=mall_id,
                        retention_days=retention_days,
                        max_storage_bytes=max_storage_bytes,
                    )
                )
        return mall_id

    def _insert_pin(self, mall_id: UUID, name: str) -> UUID:
        return self.catalog.pin(mall_id, name)

    def _insert_video(self, row: dict[str, Any], video: VideoDetailResponse) -> None:
        columns = {k: v for k, v in row.items() if k not in ("mall_id", "pin_id")}
        self.catalog.video(row["mall_id"], row["pin_id"], upload_objects=False, **columns)

    def put_object(self, key: str, body: bytes = b"x") -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def refuse_deletes_under(self, prefix: str) -> None:
        self._deny()(prefix)

    def bucket_keys(self) -> set[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return {obj["Key"] for page in pages for obj in page.get("Contents", [])}

    def _rows(self, stmt: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(stmt))

    def queued(self) -> list[QueueRow]:
        table = StorageDeletion.__table__
        columns = [table.c[name] for name in QueueRow.__dataclass_fields__]
        return [QueueRow(*row) for row in self._rows(select(*columns).order_by(table.c.id))]

    def queued_keys(self) -> list[str]:
        return [row.object_key for row in self.queued()]

    def audit(self) -> list[AuditRow]:
        table = DeletionAudit.__table__
        columns = [table.c[name] for name in AuditRow.__dataclass_fields__]
        return [AuditRow(*row) for row in self._rows(select(*columns).order_by(table.c.id))]

    def outcomes(self, video_id: UUID) -> list[tuple[str, str]]:
        return [(row.reason, row.outcome) for row in self.audit() if row.video_id == video_id]

    def trash_mark(self, video_id: UUID) -> tuple[datetime, str | None] | None:
        table = Video.__table__
        rows = self._rows(
            select(table.c.trashed_at, table.c.trashed_by).where(
                table.c.id == video_id, table.c.trashed_at.is_not(None)
            )
        )
        return (rows[0].trashed_at, rows[0].trashed_by) if rows else None

    def listen(self) -> Callable[[int], list[Event]]:
        pubsub = self.redis_client.pubsub()
        pubsub.subscribe(EVENTS_CHANNEL)
        # Subscribed once the server confirms it: only then is a publish sure to arrive.
        poll(
            lambda: (m := pubsub.get_message(timeout=0.1)) is not None and m["type"] == "subscribe",
            timeout=EVENT_DEADLINE_SECONDS,
            message="the subscribe confirmation",
        )

        def received(count: int) -> list[Event]:
            events: list[Event] = []

            def enough() -> bool:
                message = pubsub.get_message(timeout=0.1)
                if message is not None and message["type"] == "message":
                    events.append(EVENTS.validate_json(message["data"]))
                return len(events) >= count

            try:
                poll(enough, timeout=EVENT_DEADLINE_SECONDS, message=f"{count} events")
            finally:
                pubsub.close()
            return events

        return received

    def outbox(self) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self._rows(text("SELECT type, subject, data FROM event_outbox ORDER BY id"))
        return [(row.type, row.subject, row.data) for row in rows]


def world_of(request: Any) -> World:
    """The world a ``world`` fixture parametrised ``["fake", "real"]`` gives its test; the
    real one's services are requested only then, so ``[fake]`` starts none."""
    if request.param == "fake":
        return FakeWorld()
    return RealWorld(
        deps=request.getfixturevalue("deps"),
        catalog=request.getfixturevalue("catalog"),
        engine=request.getfixturevalue("engine"),
        s3=request.getfixturevalue("s3"),
        bucket=request.getfixturevalue("bucket"),
        redis_client=request.getfixturevalue("redis_client"),
        deny=lambda: request.getfixturevalue("deny_deletes_under"),
    )


def searched(world: World, scope: Scope = UNRESTRICTED, **query: Any) -> tuple[list[UUID], int]:
    """A search as the port answers it without a cap and as ``videos.list`` asks for it
    (a capped total: read from ``video_search``): the same."""
    answers = []
    for window in (None, Window(count_cap=10_000)):
        items, total = world.read(
            lambda uow, w=window: uow.catalogue.list(scope, ListVideos(**query), w)
        )
        answers.append(([item.id for item in items], total))
    assert answers[0] == answers[1], query
    return answers[0]
