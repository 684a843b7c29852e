"""In-memory fakes of the video rooms' ports (``Catalogue``, ``Removal``,
``RetentionSettings``, ``Figures``, ``References`` in ``handlers.ports``), over one
shared table of rows, as the adapters are over one database."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from uuid import UUID

from handlers.access import UNRESTRICTED, Scope
from handlers.ports import ExpiredSummary, RemovedVideo, RetentionScope, TrashedVideo, Window
from handlers.urls import is_file_key
from schemas.requests import ListVideos, VideoFilters
from schemas.responses import (
    PinFigures,
    StatusCounts,
    TrashFigures,
    VideoDetailResponse,
    VideoListItem,
    VideoStats,
)


def object_keys(video: VideoDetailResponse) -> list[str]:
    return [k for k in (video.original_path, video.proxy_path, video.thumbnail_path) if k]


def stored_bytes(video: VideoDetailResponse) -> int:
    return video.file_size_bytes + (video.proxy_size_bytes or 0)


def _removed(video: VideoDetailResponse) -> RemovedVideo:
    return RemovedVideo(
        id=video.id,
        mall_id=video.mall_id,
        original_path=video.original_path,
        proxy_path=video.proxy_path,
        thumbnail_path=video.thumbnail_path,
        pin_id=video.pin_id,
        stored_bytes=stored_bytes(video),
    )


def _lowered(text: str) -> str:
    # As ILIKE: each character lowered on its own (so "ß" never matches "SS", and "İ"
    # is "i"), not Unicode case folding.
    return "".join(ch.lower()[0] for ch in text)


def _contains(text: str | None, q: str) -> bool:
    return text is not None and _lowered(q) in _lowered(text)


def _visible(scope: Scope, video: VideoDetailResponse) -> bool:
    return scope.sees(video.mall_id, video.pin_id)


def _matches(
    video: VideoDetailResponse, query: VideoFilters, tags: dict[UUID, dict[str, str]]
) -> bool:
    checks = (
        query.mall_id is None or video.mall_id == query.mall_id,
        query.pin_id is None or video.pin_id == query.pin_id,
        query.processing_status is None or video.processing_status == query.processing_status,
        query.has_proxy is None or (video.proxy_path is not None) == query.has_proxy,
        query.uploaded_after is None or video.uploaded_at >= query.uploaded_after,
        query.uploaded_before is None or video.uploaded_at < query.uploaded_before,
        query.q is None
        or _contains(video.original_filename, query.q)
        or _contains(video.operator_notes, query.q),
        all(name.lower() in tags.get(video.id, {}) for name in query.tags or ()),
    )
    return all(checks)


class FakeVideoTable:
    """The rows the fake rooms share, as the adapters share the tables: ``videos``
    (with its trash marks and legal holds), ``malls`` and ``mall_retention``. Tests
    arrange and inspect it; handlers reach it only through the rooms' ports.
    """

    def __init__(self) -> None:
        self.rows: dict[UUID, VideoDetailResponse] = {}
        # Like the malls table: a mall stays known after its last video is deleted.
        self.malls: set[UUID] = set()
        # mall_retention rows, and the videos under legal hold.
        self.retention_days_of: dict[UUID, int] = {}
        self.quota_of: dict[UUID, int] = {}
        self.held: set[UUID] = set()
        # The trash: when each trashed video went in, and by whom.
        self.trashed: dict[UUID, tuple[datetime, str | None]] = {}
        # video_tags, by video: each tag's lower-cased name and its spelling; and the
        # tags table: each mall's spelling of each lower-cased name, first one kept.
        self.video_tags: dict[UUID, dict[str, str]] = {}
        self.tag_names: dict[tuple[UUID, str], str] = {}

    def tags_of(self, video_id: UUID) -> list[str]:
        return sorted(self.video_tags.get(video_id, {}).values(), key=lambda n: (n.lower(), n))

    def tagged(self, video: VideoDetailResponse) -> VideoDetailResponse:
        return video.model_copy(update={"tags": self.tags_of(video.id)})

    def is_live(self, video: VideoDetailResponse) -> bool:
        return video.id not in self.trashed

    def add(self, *videos: VideoDetailResponse) -> None:
        for video in videos:
            self.rows[video.id] = video
            self.malls.add(video.mall_id)

    def newest_first(self, videos: Iterable[VideoDetailResponse]) -> list[VideoDetailResponse]:
        return sorted(videos, key=lambda v: (v.uploaded_at, v.id), reverse=True)

    def listed(self, scope: Scope, query: VideoFilters, trashed: bool = False):  # noqa: ANN202
        return [
            v
            for v in self.rows.values()
            if _visible(scope, v)
            and _matches(v, query, self.video_tags)
            and self.is_live(v) != trashed
        ]

    def seen(self, scope: Scope, video_id: UUID) -> VideoDetailResponse | None:
        """Any row the scope sees, in the trash or not."""
        video = self.rows.get(video_id)
        return video if video is not None and _visible(scope, video) else None

    def drop(self, video: VideoDetailResponse) -> RemovedVideo:
        del self.rows[video.id]
        self.trashed.pop(video.id, None)
        self.video_tags.pop(video.id, None)
        self.held.discard(video.id)
        return _removed(video)


class FakeCatalogue:
    def __init__(self, table: FakeVideoTable) -> None:
        self.table = table

    def list(
        self, scope: Scope, query: ListVideos, window: Window | None = None
    ) -> tuple[list[VideoListItem], int]:
        window = window or Window()
        matching = self.table.newest_first(self.table.listed(scope, query, query.trashed))
        total = len(matching)
        if query.q is not None and window.count_cap is not None:
            total = min(total, window.count_cap + 1)
        start = (query.page - 1) * query.page_size
        if window.after is not None:
            start = sum(1 for v in matching if (v.uploaded_at, v.id) >= window.after)
        page = matching[start : start + query.page_size + (1 if window.peek else 0)]
        items = [
            VideoListItem(
                **v.model_dump(include=set(VideoListItem.model_fields) - {"tags"}),
                has_proxy=is_file_key(v.proxy_path),
                has_thumbnail=is_file_key(v.thumbnail_path),
                trashed_at=self.table.trashed[v.id][0] if query.trashed else None,
                tags=self.table.tags_of(v.id),
            ).with_files(
                {"original": v.original_path, "proxy": v.proxy_path, "thumbnail": v.thumbnail_path}
            )
            for v in page
        ]
        return items, total

    def get(self, scope: Scope, video_id: UUID) -> VideoDetailResponse | None:
        video = self.table.seen(scope, video_id)
        return self.table.tagged(video) if video is not None and self.table.is_live(video) else None

    def get_many(
        self, scope: Scope, video_ids: Sequence[UUID], trashed: bool = False
    ) -> dict[UUID, VideoDetailResponse]:
        found = (self.table.seen(scope, video_id) for video_id in set(video_ids))
        return {
            v.id: self.table.tagged(v)
            for v in found
            if v is not None and self.table.is_live(v) != trashed
        }


class FakeRemoval:
    def __init__(self, table: FakeVideoTable) -> None:
        self.table = table

    def delete(self, scope: Scope, video_id: UUID) -> RemovedVideo | None:
        video = self.table.seen(scope, video_id)
        return None if video is None else self.table.drop(video)

    def _trashed(self, video: VideoDetailResponse, newly: bool) -> TrashedVideo:
        return TrashedVideo(
            id=video.id,
            mall_id=video.mall_id,
            pin_id=video.pin_id,
            trashed_at=self.table.trashed[video.id][0],
            newly=newly,
        )

    def trash(
        self, scope: Scope, video_id: UUID, at: datetime, by: str | None
    ) -> TrashedVideo | None:
        video = self.table.seen(scope, video_id)
        if video is None:
            return None
        newly = video.id not in self.table.trashed
        if newly:
            self.table.trashed[video.id] = (at, by)
        return self._trashed(video, newly)

    def restore(self, scope: Scope, video_id: UUID) -> TrashedVideo | None:
        video = self.table.seen(scope, video_id)
        if video is None or video.id not in self.table.trashed:
            return None
        restored = self._trashed(video, True)
        del self.table.trashed[video.id]
        return restored

    def _selected(
        self, scope: Scope, video_ids: Sequence[UUID] | None, filters: VideoFilters | None
    ) -> list[VideoDetailResponse]:
        if video_ids is not None:
            found = (self.table.seen(scope, video_id) for video_id in set(video_ids))
            chosen = [v for v in found if v is not None]
        elif filters is None or filters.is_empty():
            # As the adapter: nothing selected is never "everything".
            raise ValueError("a bulk selection needs video ids or at least one filter")
        else:
            chosen = self.table.listed(scope, filters)
        return sorted(chosen, key=lambda v: (v.uploaded_at, v.id))

    def find_selected(self, scope: Scope, video_ids: Sequence[UUID]) -> set[UUID]:
        return {v.id for v in self._selected(scope, video_ids, None)}

    def summarise_selected(self, scope: Scope, filters: VideoFilters) -> ExpiredSummary:
        chosen = self._selected(scope, None, filters)
        return ExpiredSummary(count=len(chosen), bytes=sum(map(stored_bytes, chosen)))

    def delete_selected(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        limit: int,
    ) -> list[RemovedVideo]:
        return [self.table.drop(v) for v in self._selected(scope, video_ids, filters)[:limit]]

    def trash_selected(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        limit: int,
        at: datetime,
        by: str | None,
    ) -> list[TrashedVideo]:
        live = [v for v in self._selected(scope, video_ids, filters) if self.table.is_live(v)][
            :limit
        ]
        return [self.trash(scope, v.id, at, by) for v in live]  # type: ignore[misc]

    def _trash_due(
        self, scope: Scope, mall_id: UUID | None, before: datetime
    ) -> list[VideoDetailResponse]:
        due = [
            v
            for v in self.table.rows.values()
            if v.id in self.table.trashed
            and self.table.trashed[v.id][0] < before
            and v.id not in self.table.held
            and _visible(scope, v)
            and (mall_id is None or v.mall_id == mall_id)
        ]
        return sorted(due, key=lambda v: (self.table.trashed[v.id][0], v.id))

    def summarise_trash_due(
        self, scope: Scope, mall_id: UUID | None, before: datetime
    ) -> ExpiredSummary:
        due = self._trash_due(scope, mall_id, before)
        return ExpiredSummary(count=len(due), bytes=sum(map(stored_bytes, due)))

    def delete_trash_due(
        self, scope: Scope, mall_id: UUID | None, before: datetime, limit: int
    ) -> list[RemovedVideo]:
        return [self.table.drop(v) for v in self._trash_due(scope, mall_id, before)[:limit]]

    def _expired(self, scope: Scope, retention: RetentionScope) -> list[VideoDetailResponse]:
        expired = [
            v
            for v in self.table.rows.values()
            if v.mall_id == retention.mall_id
            and v.uploaded_at < retention.cutoff
            and v.id not in self.table.held
            and _visible(scope, v)
        ]
        return sorted(expired, key=lambda v: (v.uploaded_at, v.id))

    def summarise_expired(self, scope: Scope, retention: RetentionScope) -> ExpiredSummary:
        expired = self._expired(scope, retention)
        size = sum(v.file_size_bytes + (v.proxy_size_bytes or 0) for v in expired)
        return ExpiredSummary(count=len(expired), bytes=size)

    def delete_expired(
        self, scope: Scope, retention: RetentionScope, limit: int
    ) -> list[RemovedVideo]:
        return [self.table.drop(v) for v in self._expired(scope, retention)[:limit]]

    def delete_for_quota(
        self, scope: Scope, mall_id: UUID, excess: int, limit: int
    ) -> list[RemovedVideo]:
        candidates = sorted(
            (
                v
                for v in self.table.rows.values()
                if v.mall_id == mall_id and v.id not in self.table.held and _visible(scope, v)
            ),
            key=lambda v: (v.uploaded_at, v.id),
        )[:limit]
        taken, freed = [], 0
        for video in candidates:
            if freed >= excess:
                break
            taken.append(video)
            freed += max(stored_bytes(video), 0)
        return [self.table.drop(v) for v in taken]


class FakeRetentionSettings:
    def __init__(self, table: FakeVideoTable) -> None:
        self.table = table

    def mall_retention_days(self, mall_id: UUID | None) -> list[tuple[UUID, int | None]]:
        malls = (
            sorted(self.table.malls)
            if mall_id is None
            else [m for m in self.table.malls if m == mall_id]
        )
        return [(mall, self.table.retention_days_of.get(mall)) for mall in malls]

    def mall_quotas(self, mall_id: UUID | None) -> list[tuple[UUID, int]]:
        return sorted(
            (mall, quota)
            for mall, quota in self.table.quota_of.items()
            if mall_id is None or mall == mall_id
        )

    def mall_storage(self, mall_id: UUID) -> int:
        return sum(stored_bytes(v) for v in self.table.rows.values() if v.mall_id == mall_id)

    def set_mall_retention(
        self, mall_id: UUID, days: int | None = None, max_storage_bytes: int | None = None
    ) -> bool:
        if days is None and max_storage_bytes is None:
            raise ValueError("a mall's retention needs days, a storage quota or both")
        if mall_id not in self.table.malls:
            return False
        if days is not None:
            self.table.retention_days_of[mall_id] = days
        if max_storage_bytes is not None:
            self.table.quota_of[mall_id] = max_storage_bytes
        return True

    def clear_mall_retention(self, mall_id: UUID) -> bool:
        had_days = self.table.retention_days_of.pop(mall_id, None) is not None
        had_quota = self.table.quota_of.pop(mall_id, None) is not None
        return had_days or had_quota

    def set_legal_hold(self, video_id: UUID, held: bool) -> bool:
        if video_id not in self.table.rows:
            return False
        if held:
            self.table.held.add(video_id)
        else:
            self.table.held.discard(video_id)
        return True


class FakeFigures:
    def __init__(self, table: FakeVideoTable) -> None:
        self.table = table

    def stats(
        self, scope: Scope, mall_id: UUID | None, at: datetime, pin_id: UUID | None = None
    ) -> VideoStats:
        seen = [
            v
            for v in self.table.rows.values()
            if _visible(scope, v)
            and (mall_id is None or v.mall_id == mall_id)
            and (pin_id is None or v.pin_id == pin_id)
        ]
        return self._figures(mall_id, seen, at)

    def _figures(
        self, mall_id: UUID | None, videos: list[VideoDetailResponse], at: datetime
    ) -> VideoStats:
        trashed = [v for v in videos if not self.table.is_live(v)]
        figures = _figures(mall_id, [v for v in videos if self.table.is_live(v)], at)
        return figures.model_copy(
            update={
                "trash": TrashFigures(
                    total_videos=len(trashed),
                    total_storage_bytes=sum(map(stored_bytes, trashed)),
                )
            }
        )

    def pin_figures(
        self, scope: Scope, mall_id: UUID | None, pin_id: UUID | None, limit: int
    ) -> list[PinFigures]:
        by_pin: dict[UUID, list[VideoDetailResponse]] = {}
        for v in self.table.rows.values():
            if (
                self.table.is_live(v)
                and _visible(scope, v)
                and (mall_id is None or v.mall_id == mall_id)
                and (pin_id is None or v.pin_id == pin_id)
            ):
                by_pin.setdefault(v.pin_id, []).append(v)
        figures = [
            PinFigures(
                pin_id=pin,
                pin_name=videos[0].pin_name,
                total_videos=len(videos),
                total_storage_bytes=sum(map(stored_bytes, videos)),
                total_duration_seconds=sum(v.duration_seconds or 0.0 for v in videos),
            )
            for pin, videos in by_pin.items()
        ]
        figures.sort(key=lambda f: (-f.total_storage_bytes, f.pin_id))
        return figures[:limit]

    def fold_figures(self) -> int:
        return 0  # figures are counted from the rows: nothing to fold

    def stats_per_mall(self, at: datetime) -> list[VideoStats]:
        return [self.stats(UNRESTRICTED, mall_id, at) for mall_id in sorted(self.table.malls)]

    def stats_per_pin(
        self, scope: Scope, pin_ids: Sequence[UUID], at: datetime
    ) -> dict[UUID, VideoStats]:
        return {
            pin_id: self._figures(
                None,
                [v for v in self.table.rows.values() if v.pin_id == pin_id and _visible(scope, v)],
                at,
            )
            for pin_id in sorted(set(pin_ids))
        }


class FakeReferences:
    def __init__(self, table: FakeVideoTable) -> None:
        self.table = table

    def referenced_keys(self, keys: Sequence[str]) -> set[str]:
        in_use = {key for video in self.table.rows.values() for key in object_keys(video)}
        return in_use.intersection(keys)

    def referenced_keys_in_order(self, prefix: str = "") -> Iterator[str]:
        keys = {
            key
            for video in self.table.rows.values()
            for key in object_keys(video)
            if key.startswith(prefix)
        }
        yield from sorted(keys, key=lambda key: key.encode("utf-8"))


def _figures(mall_id: UUID | None, videos: list[VideoDetailResponse], at: datetime) -> VideoStats:
    counts = {s: 0 for s in ("pending", "processing", "completed", "failed")}
    for video in videos:
        counts[video.processing_status] += 1
    return VideoStats(
        mall_id=mall_id,
        total_videos=len(videos),
        by_status=StatusCounts(**counts),
        total_storage_bytes=sum(v.file_size_bytes + (v.proxy_size_bytes or 0) for v in videos),
        total_duration_seconds=sum(v.duration_seconds or 0.0 for v in videos),
        refreshed_at=at,
    )
