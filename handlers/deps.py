"""The dependencies every handler receives, wired once by ``worker.bootstrap``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from handlers.ports import Clock, Enqueue, ObjectStore, Publish, StatsCache, UnitOfWorkFactory


def utc_now() -> datetime:
    return datetime.now(UTC)


def _discard(_event: object) -> None:
    return None


def _run_nothing(_task: str, _kwargs: dict, _countdown: float) -> None:
    return None


class _NoCache:
    def get(self, mall_id):  # noqa: ANN001, ANN201 - trivial null object
        return None

    def put(self, stats) -> None:  # noqa: ANN001
        return None

    def mark_dirty(self, mall_ids) -> bool:  # noqa: ANN001
        return False

    def take_dirty(self):  # noqa: ANN201
        return False, []


@dataclass(frozen=True)
class Deps:
    uow: UnitOfWorkFactory
    store: ObjectStore
    cache: StatsCache = field(default_factory=_NoCache)
    publish: Publish = _discard
    enqueue: Enqueue = _run_nothing
    clock: Clock = utc_now
    retention_days: int = 90
    # Inline deletes get this head start before purge may retry the same keys.
    purge_grace_seconds: int = 60
    # A sweep stops taking batches after this long and queues its own continuation,
    # ending well inside its time limit and the broker's visibility timeout.
    sweep_time_budget_seconds: float = 120.0
    # Deletes within this window share one stats refresh.
    stats_debounce_seconds: float = 5.0
    # Keys that failed this many times are reported as stuck.
    stuck_after_attempts: int = 8
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("videoworker"))
    # The id of the message being handled (Celery's task id), when there is one.
    request_id: str | None = None
