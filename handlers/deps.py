"""The dependencies every handler receives, wired once by ``worker.bootstrap``."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from handlers.access import UNRESTRICTED, Scope
from handlers.policy import DEFAULT_POLICY, Policy
from handlers.ports import (
    AccessLogStore,
    AnalyticsBuffer,
    ArchiveStore,
    Clock,
    Dispatch,
    Enqueue,
    ObjectStore,
    Publish,
    StatsCache,
    UnitOfWork,
    UnitOfWorkFactory,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    uow: UnitOfWorkFactory
    store: ObjectStore
    cache: StatsCache
    publish: Publish
    enqueue: Enqueue
    clock: Clock = utc_now
    policy: Policy = DEFAULT_POLICY
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("videoworker"))
    # The id of the message being handled (Celery's task id), when there is one.
    request_id: str | None = None
    # What the caller sees, as verified at the task edge; every room's read and
    # delete takes it. Unrestricted for the operator's own tools and AUTH_MODE=off.
    scope: Scope = UNRESTRICTED
    # Units of work for handlers that only read: their statements run without a
    # transaction around them (no BEGIN and ROLLBACK for one SELECT). None: ``uow``.
    read: UnitOfWorkFactory | None = None
    # The HMAC key list cursors are sealed with (``handlers.cursors``). The wiring gives
    # one stable across processes; unwired, a random one: cursors of this process only.
    cursor_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    # Messages to another service's queue (the processing pipeline's); None where the
    # wiring has no broker (then a re-processing run refuses to start).
    dispatch: Dispatch | None = None

    # Streams objects and writes multipart uploads: exports (``handlers.exports``).
    archive: ArchiveStore | None = None
    # Where signed URLs are counted (None: ANALYTICS_ENABLED=false), and the S3 access
    # logs bytes served are read from (None: ACCESS_LOG_BUCKET unset).
    analytics_buffer: AnalyticsBuffer | None = None
    access_logs: AccessLogStore | None = None

    def reads(self) -> UnitOfWork:
        """A unit of work to read with; nothing done in it is committed."""
        return (self.read or self.uow)()
