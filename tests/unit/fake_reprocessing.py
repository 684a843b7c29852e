"""In-memory fake of the ``Reprocessing`` port, over the fake video table."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from handlers.access import Scope
from handlers.ports import ReprocessBatch, ReprocessCount, ReprocessRequest
from schemas.requests import VideoFilters
from schemas.responses import VideoDetailResponse
from tests.unit.fake_videos import FakeVideoTable


class FakeReprocessing:
    def __init__(self, table: FakeVideoTable) -> None:
        self.table = table
        # reprocess_requests: (request id, video id) -> targets, requested_by, sent.
        self.rows: dict[tuple[str, UUID], dict[str, Any]] = {}

    def snapshot(self) -> Any:
        return copy.deepcopy(self.rows)

    def restore(self, saved: Any) -> None:
        self.rows = saved

    def _selected(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        after: UUID | None,
        request_id: str,
    ) -> list[VideoDetailResponse]:
        if video_ids is not None:
            found = (self.table.seen(scope, video_id) for video_id in set(video_ids))
            chosen = [v for v in found if v is not None and self.table.is_live(v)]
        elif filters is None or filters.is_empty():
            raise ValueError("a re-processing selection needs video ids or at least one filter")
        else:
            chosen = self.table.listed(scope, filters)
        return sorted(
            (
                v
                for v in chosen
                if (after is None or v.id > after) and (request_id, v.id) not in self.rows
            ),
            key=lambda v: v.id,
        )

    def count(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        after: UUID | None,
        request_id: str,
    ) -> ReprocessCount:
        chosen = self._selected(scope, video_ids, filters, after, request_id)
        busy = sum(v.processing_status == "processing" for v in chosen)
        return ReprocessCount(matched=len(chosen), processing=busy)

    def recorded(self, request_id: str) -> int:
        return sum(1 for rid, _ in self.rows if rid == request_id)

    def request_batch(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        after: UUID | None,
        request_id: str,
        targets: Sequence[str],
        by: str | None,
        limit: int,
    ) -> ReprocessBatch:
        taken = self._selected(scope, video_ids, filters, after, request_id)[:limit]
        if not taken:
            return ReprocessBatch([], 0, None, 0)
        requested = []
        for video in taken:
            if video.processing_status == "processing":
                continue
            self.table.rows[video.id] = video.model_copy(
                update={"processing_status": "pending", "processing_error": None}
            )
            self.rows[(request_id, video.id)] = {
                "targets": list(targets),
                "requested_by": by,
                "sent": False,
                "requested_at": datetime.now(UTC),
            }
            requested.append(
                ReprocessRequest(video.id, video.mall_id, video.pin_id, list(targets), by)
            )
        return ReprocessBatch(requested, len(taken) - len(requested), taken[-1].id, len(taken))

    def unsent(self, request_id: str, limit: int) -> list[ReprocessRequest]:
        owed = []
        for (rid, video_id), row in sorted(self.rows.items(), key=lambda item: item[0][1]):
            video = self.table.rows.get(video_id)
            if rid != request_id or row["sent"] or video is None:
                continue
            owed.append(
                ReprocessRequest(
                    video_id, video.mall_id, video.pin_id, row["targets"], row["requested_by"]
                )
            )
        return owed[:limit]

    def prune(self, before: datetime, limit: int) -> int:
        old = [key for key, row in self.rows.items() if row["requested_at"] < before][:limit]
        for key in old:
            del self.rows[key]
        return len(old)

    def mark_sent(self, request_id: str, video_ids: Sequence[UUID]) -> None:
        for video_id in video_ids:
            row = self.rows.get((request_id, video_id))
            if row is not None:
                row["sent"] = True
