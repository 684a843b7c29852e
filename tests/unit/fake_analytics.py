"""In-memory fakes of the analytics buffer (Redis) and the ``Analytics`` room."""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

from handlers.access import Scope
from handlers.ports import (
    SHARE_VIEW,
    AnalyticsSelection,
    DayFigures,
    IngestedLog,
    KeyOwner,
    LogObject,
    Served,
    Tally,
    TopVideoRow,
)
from tests.unit.fake_videos import FakeVideoTable

FIGURES = ("stream_urls", "thumbnail_urls", "share_views", "bytes_served")
COLUMN_OF_TARGET = {
    "proxy": "stream_urls",
    "original": "stream_urls",
    "thumbnail": "thumbnail_urls",
    SHARE_VIEW: "share_views",
}


class FakeAnalyticsBuffer:
    """The Redis hash and its flush keys; ``down`` makes every ``add`` a lost count (as
    Redis down would), never an error."""

    def __init__(self) -> None:
        self.buffer: Counter[Tally] = Counter()
        self.flushes: dict[str, Counter[Tally]] = {}
        self.down = False
        self.adds = 0

    @staticmethod
    def _key(tally: Tally) -> Tally:
        return Tally(tally.day, tally.video_id, tally.mall_id, tally.pin_id, tally.target, 1)

    def add(self, tallies: Sequence[Tally]) -> None:
        self.adds += 1
        if self.down:
            return
        for tally in tallies:
            self.buffer[self._key(tally)] += tally.count

    def take(self) -> list[str]:
        if self.buffer:
            self.flushes[str(uuid.uuid4())] = self.buffer
            self.buffer = Counter()
        return sorted(self.flushes)

    def read(self, flush_id: str) -> list[Tally]:
        return [
            Tally(t.day, t.video_id, t.mall_id, t.pin_id, t.target, n)
            for t, n in self.flushes.get(flush_id, Counter()).items()
        ]

    def drop(self, flush_id: str) -> None:
        self.flushes.pop(flush_id, None)


class FakeAccessLogs:
    def __init__(self) -> None:
        self.bodies: dict[str, tuple[str, bytes]] = {}

    def put(self, key: str, body: bytes) -> None:
        self.bodies[key] = (uuid.uuid4().hex, body)

    def objects(self) -> Iterator[LogObject]:
        for key, (etag, body) in sorted(self.bodies.items()):
            yield LogObject(key, etag, len(body))

    def lines(self, key: str) -> Iterator[bytes]:
        yield from self.bodies[key][1].splitlines(keepends=True)


class FakeAnalytics:
    def __init__(self, table: FakeVideoTable) -> None:
        self.table = table
        # video_daily_analytics: (video, day) -> row.
        self.rows: dict[tuple[UUID, date], dict[str, Any]] = {}
        self.flushes: dict[str, datetime] = {}
        self.logs: dict[tuple[str, str], IngestedLog] = {}
        # The days close_spans was asked for, in order.
        self.spans_closed: list[date] = []

    def snapshot(self) -> Any:
        return copy.deepcopy((self.rows, self.flushes, self.logs))

    def restore(self, saved: Any) -> None:
        self.rows, self.flushes, self.logs = saved

    def _row(self, day: date, video_id: UUID, mall_id: UUID, pin_id: UUID | None) -> dict:
        return self.rows.setdefault(
            (video_id, day),
            {"mall_id": mall_id, "pin_id": pin_id, **dict.fromkeys(FIGURES, 0)},
        )

    def fold(self, flush_id: str, at: datetime, tallies: Sequence[Tally]) -> bool:
        if flush_id in self.flushes:
            return False
        self.flushes[flush_id] = at
        for t in tallies:
            column = COLUMN_OF_TARGET.get(t.target)
            if column is not None:
                self._row(t.day, t.video_id, t.mall_id, t.pin_id)[column] += t.count
        return True

    def close_spans(self, today: date) -> int:
        # Every answer is summed from the daily rows here: nothing to keep ahead.
        self.spans_closed.append(today)
        return 0

    def prune_flushes(self, before: datetime) -> int:
        old = [f for f, at in self.flushes.items() if at < before]
        for flush_id in old:
            del self.flushes[flush_id]
        return len(old)

    def owners(self, keys: Sequence[str]) -> dict[str, KeyOwner]:
        wanted = set(keys)
        found: dict[str, KeyOwner] = {}
        for video in self.table.rows.values():
            for key in (video.original_path, video.proxy_path, video.thumbnail_path):
                if key in wanted:
                    found.setdefault(key, KeyOwner(video.id, video.mall_id, video.pin_id))
        return found

    def seen_logs(self, objects: Sequence[LogObject]) -> set[tuple[str, str]]:
        return {(o.key, o.etag) for o in objects if (o.key, o.etag) in self.logs}

    def ingest_log(self, record: IngestedLog, served: Sequence[Served]) -> bool:
        if (record.key, record.etag) in self.logs:
            return False
        self.logs[(record.key, record.etag)] = record
        for s in served:
            o = s.owner
            self._row(s.day, o.video_id, o.mall_id, o.pin_id)["bytes_served"] += s.bytes
        return True

    def _selected(self, scope: Scope, sel: AnalyticsSelection) -> Iterator[tuple[UUID, date, dict]]:
        for (video_id, day), row in self.rows.items():
            if not sel.from_day <= day <= sel.to_day:
                continue
            if scope.role == "operator" and row["mall_id"] not in scope.malls:
                continue
            if scope.role == "tenant" and row["pin_id"] not in scope.pins:
                continue
            if sel.mall_id is not None and row["mall_id"] != sel.mall_id:
                continue
            if sel.pin_id is not None and row["pin_id"] != sel.pin_id:
                continue
            if sel.video_id is not None and video_id != sel.video_id:
                continue
            yield video_id, day, row

    def daily(self, scope: Scope, selection: AnalyticsSelection) -> dict[date, DayFigures]:
        sums: dict[date, Counter[str]] = {}
        for _, day, row in self._selected(scope, selection):
            sums.setdefault(day, Counter()).update({f: row[f] for f in FIGURES})
        return {day: DayFigures(**{f: c[f] for f in FIGURES}) for day, c in sums.items()}

    def top(self, scope: Scope, selection: AnalyticsSelection, limit: int) -> list[TopVideoRow]:
        sums: dict[UUID, Counter[str]] = {}
        for video_id, _, row in self._selected(scope, selection):
            sums.setdefault(video_id, Counter()).update(
                {"stream_urls": row["stream_urls"], "bytes_served": row["bytes_served"]}
            )
        ranked = sorted(
            sums.items(), key=lambda i: (-i[1]["stream_urls"], -i[1]["bytes_served"], str(i[0]))
        )
        out = []
        for video_id, c in ranked[:limit]:
            video = self.table.rows.get(video_id)
            out.append(
                TopVideoRow(
                    video_id,
                    None if video is None else video.original_filename,
                    c["stream_urls"],
                    c["bytes_served"],
                )
            )
        return out
