"""In-memory fake of the ``Tags`` port, over the fake video table."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from handlers.access import Scope
from handlers.ports import TagChanges
from schemas.responses import TagCount
from tests.unit.fake_videos import FakeVideoTable


class FakeTags:
    def __init__(self, table: FakeVideoTable) -> None:
        self.table = table

    def snapshot(self) -> Any:
        return copy.deepcopy((self.table.video_tags, self.table.tag_names))

    def restore(self, saved: Any) -> None:
        self.table.video_tags, self.table.tag_names = saved

    def tag(
        self,
        scope: Scope,
        video_ids: Sequence[UUID],
        add: Sequence[str],
        remove: Sequence[str],
        at: datetime,
        by: str | None,
    ) -> TagChanges:
        found = {}
        for video_id in sorted(set(video_ids)):
            video = self.table.seen(scope, video_id)
            if video is not None and self.table.is_live(video):
                found[video.id] = (video.mall_id, video.pin_id)
        added: list[tuple[UUID, str]] = []
        removed: list[tuple[UUID, str]] = []
        for video_id, (mall_id, _) in found.items():
            carried = self.table.video_tags.setdefault(video_id, {})
            for name in add:
                spelling = self.table.tag_names.setdefault((mall_id, name.lower()), name)
                if name.lower() not in carried:
                    carried[name.lower()] = spelling
                    added.append((video_id, spelling))
            for name in remove:
                if name.lower() in carried:
                    removed.append((video_id, carried.pop(name.lower())))
        return TagChanges(found, added, removed)

    def counts(
        self, scope: Scope, mall_id: UUID | None, prefix: str | None, limit: int
    ) -> list[TagCount]:
        used: Counter[tuple[UUID, str]] = Counter()
        for video_id, carried in self.table.video_tags.items():
            video = self.table.seen(scope, video_id)
            if video is None or not self.table.is_live(video):
                continue
            if mall_id is not None and video.mall_id != mall_id:
                continue
            for lowered in carried:
                if prefix is None or lowered.startswith(prefix.lower()):
                    used[(video.mall_id, lowered)] += 1
        counts = [
            TagCount(name=self.table.tag_names[key], mall_id=key[0], videos=count)
            for key, count in used.items()
        ]
        counts.sort(key=lambda t: (-t.videos, t.name.lower(), t.name, str(t.mall_id)))
        return counts[:limit]
