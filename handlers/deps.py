"""The dependencies every handler receives, wired once by ``worker.bootstrap``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from handlers.ports import Clock, ObjectStore, Publish, StatsCache, UnitOfWorkFactory


def utc_now() -> datetime:
    return datetime.now(UTC)


def _discard(_event: object) -> None:
    return None


class _NoCache:
    def get(self, mall_id):  # noqa: ANN001, ANN201 - trivial null object
        return None

    def put(self, stats) -> None:  # noqa: ANN001
        return None


@dataclass(frozen=True)
class Deps:
    uow: UnitOfWorkFactory
    store: ObjectStore
    cache: StatsCache = field(default_factory=_NoCache)
    publish: Publish = _discard
    clock: Clock = utc_now
    retention_days: int = 90
    # Inline deletes get this head start before purge may retry the same keys.
    purge_grace_seconds: int = 60
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("videoworker"))
