"""Analytics: signed URLs and share views counted, bytes served from access logs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol
from uuid import UUID

from handlers.access import Scope

# Analytics (contract v1.2).
SHARE_VIEW = "share_view"


@dataclass(frozen=True, slots=True)
class Tally:
    """How many URLs of one target of one video were signed on one UTC day (or, as
    ``target`` ``share_view``, how many times a share showed it). The video's mall and pin
    travel with it: the counts outlive the video."""

    day: date
    video_id: UUID
    mall_id: UUID
    pin_id: UUID | None
    target: str
    count: int = 1


class AnalyticsBuffer(Protocol):
    """URL counts between the signing path and PostgreSQL: one cheap write per message,
    folded in later by ``videos.flush_analytics``. ``add`` never raises: counting is
    best effort, and a signing never fails for it."""

    def add(self, tallies: Sequence[Tally]) -> None: ...

    def take(self) -> list[str]:
        """Set the buffer aside under a new flush id, atomically (if there is one), and
        answer it with every flush id still waiting (a dead flush's leftovers)."""
        ...

    def read(self, flush_id: str) -> list[Tally]: ...

    def drop(self, flush_id: str) -> None:
        """The flush id was folded (by this run or another): forget its counts."""
        ...


@dataclass(frozen=True, slots=True)
class KeyOwner:
    video_id: UUID
    mall_id: UUID
    pin_id: UUID | None


@dataclass(frozen=True, slots=True)
class Served:
    day: date
    owner: KeyOwner
    bytes: int


@dataclass(frozen=True, slots=True)
class LogObject:
    key: str
    etag: str
    size: int


@dataclass(frozen=True, slots=True)
class IngestedLog:
    key: str
    etag: str
    lines: int
    bytes_counted: int
    garbage_lines: int
    at: datetime


@dataclass(frozen=True, slots=True)
class AnalyticsSelection:
    mall_id: UUID | None
    pin_id: UUID | None
    video_id: UUID | None
    from_day: date
    to_day: date


@dataclass(frozen=True, slots=True)
class DayFigures:
    stream_urls: int = 0
    thumbnail_urls: int = 0
    share_views: int = 0
    bytes_served: int = 0


@dataclass(frozen=True, slots=True)
class TopVideoRow:
    video_id: UUID
    original_filename: str | None
    stream_urls: int
    bytes_served: int


class Analytics(Protocol):
    """Daily figures per video, with the video's mall and pin copied beside them (no
    foreign key: a deleted video's history stays in its mall's and pin's totals). A scope
    sees the rows of its malls (operator) or pins (tenant), by those copies."""

    def fold(self, flush_id: str, at: datetime, tallies: Sequence[Tally]) -> bool:
        """Add a flush's counts and record its id, in the caller's transaction; False
        (nothing added) when that id was recorded before."""
        ...

    def prune_flushes(self, before: datetime) -> int: ...

    def close_spans(self, today: date) -> int:
        """Sum the figures of what has ended before ``today``, so that ranges over it are
        read from a few rows (the answers of ``top`` are the same before and after);
        once a day does it, later calls the same day do nothing. Rows written."""
        ...

    def owners(self, keys: Sequence[str]) -> dict[str, KeyOwner]:
        """The video naming each key as its original, proxy or thumbnail; one query."""
        ...

    def seen_logs(self, objects: Sequence[LogObject]) -> set[tuple[str, str]]:
        """(key, etag) of those already ingested."""
        ...

    def ingest_log(self, record: IngestedLog, served: Sequence[Served]) -> bool:
        """Record a log object and add its bytes, in the caller's transaction; False
        (nothing added) when it was recorded before."""
        ...

    def daily(self, scope: Scope, selection: AnalyticsSelection) -> dict[date, DayFigures]:
        """The days of the range with any figure."""
        ...

    def top(self, scope: Scope, selection: AnalyticsSelection, limit: int) -> list[TopVideoRow]:
        """Most stream URLs first, then most bytes, then video id."""
        ...


class AccessLogStore(Protocol):
    """S3 server access log objects: listed, and read as a stream of lines."""

    def objects(self) -> Iterator[LogObject]: ...

    def lines(self, key: str) -> Iterator[bytes]: ...
