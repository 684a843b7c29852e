"""The catalogue: a page of videos and its exact total, one video, many by id.

Every statement here is built once per shape and run with the caller's values, on the
read path (``worker.adapters.postgres.readpath``) in a read-only unit of work: these
are the reads every caller makes, each a few index look-ups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Integer,
    Select,
    Uuid,
    any_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
)

from handlers.access import Scope
from handlers.urls import is_file_key
from schemas.requests import ListVideos
from schemas.responses import VideoDetailResponse, VideoListItem
from worker.adapters.postgres import spans
from worker.adapters.postgres.readpath import OnConnection
from worker.adapters.postgres.rooms.query import (
    DETAIL_COLUMNS,
    LIST_COLUMNS,
    LIVE,
    NEWEST_FIRST,
    TRASH_LIST_COLUMNS,
    TRASHED,
    WITH_PIN,
    Where,
    by_pin,
    figure_filters,
    figure_tables,
    list_filters,
    pins,
    scope_shape,
    scoped,
    videos,
    within,
)

ZERO = literal_column("0")


def _summed(table: Any, column: Any, conditions: list[Any]) -> ColumnElement[Any]:
    return func.coalesce(
        select(func.sum(table.c.videos)).where(*conditions, column).scalar_subquery(), ZERO
    )


def exact_total(
    scope: Scope, query: ListVideos
) -> tuple[tuple[Any, ...], dict[str, Any], Callable[[], Select]] | None:
    """The exact total of a list without ``q``, from the trigger-kept figures: whole
    months and days summed, the partial days at the range's edges counted from the list
    indexes, in one statement (one snapshot). Answers what shapes the statement beyond
    its parameters' names, the parameters, and how to build it; None when the range
    holds no whole day: the indexes then count it as fast, and with ``tags``, which the
    figures do not know."""
    if query.tags:
        return None
    parts = spans.split(query.uploaded_after, query.uploaded_before)
    if parts is None:
        return None
    pinned = by_pin(scope, query.pin_id)
    daily, monthly = figure_tables(pinned)
    trashed = query.trashed
    # Each term: its filters, and the ranges any of which it counts.
    terms = []
    if parts.months is not None:
        month = within(monthly.c.month, "month", *parts.months)
        terms.append(("monthly", figure_filters(monthly, scope, query, trashed), [month]))
    if parts.days:
        day = daily.c.day
        ranges = [within(day, f"day{i}", *bounds) for i, bounds in enumerate(parts.days)]
        terms.append(("daily", figure_filters(daily, scope, query, trashed), ranges))
    if parts.edges:
        at = videos.c.uploaded_at
        ranges = [within(at, f"edge{i}", *bounds) for i, bounds in enumerate(parts.edges)]
        terms.append(("edges", list_filters(scope, query, trashed, dated=False), ranges))
    values: dict[str, Any] = {}
    for _, where, ranges in terms:
        values.update(where.values)
        for bounds in ranges:
            values.update(bounds.values)

    def build() -> Select:
        built: list[ColumnElement[Any]] = []
        for kind, where, ranges in terms:
            if kind == "monthly":
                built.append(_summed(monthly, ranges[0].combined(), where.conditions()))
            elif kind == "daily":
                any_day = or_(*(bounds.combined() for bounds in ranges))
                built.append(_summed(daily, any_day, where.conditions()))
            else:
                any_edge = or_(*(bounds.combined() for bounds in ranges))
                built.append(
                    select(func.count())
                    .select_from(videos)
                    .where(*where.conditions(), any_edge)
                    .scalar_subquery()
                )
        total = built[0]
        for term in built[1:]:
            total = total + term
        return select(total)

    return (parts.months is not None, pinned), values, build


def _shape(scope: Scope, query: ListVideos, kind: str) -> tuple[Any, ...]:
    return (kind, scope_shape(scope), query.trashed, query.has_proxy)


def list_item(row: Any) -> VideoListItem:
    fields = dict(row._mapping)
    fields.pop("page_total", None)
    files = {
        "original": fields.pop("original_path"),
        "proxy": fields.pop("proxy_path"),
        "thumbnail": fields.pop("thumbnail_path"),
    }
    fields["has_proxy"] = is_file_key(files["proxy"])
    fields["has_thumbnail"] = is_file_key(files["thumbnail"])
    return VideoListItem.model_validate(fields).with_files(files)


def _details(scope: Where, one: bool, trashed: bool = False) -> Select:
    """Videos' detail columns by id (``video_id``) or ids (``video_ids``), within
    ``scope``."""
    by_id = (
        videos.c.id == bindparam("video_id")
        if one
        else videos.c.id == any_(bindparam("video_ids", type_=ARRAY(Uuid)))
    )
    return (
        select(*DETAIL_COLUMNS)
        .select_from(WITH_PIN)
        .where(by_id, TRASHED if trashed else LIVE, *scope.conditions())
    )


class ShapedReads(Protocol):
    def run(
        self, key: tuple[Any, ...], values: Mapping[str, Any], build: Callable[[], Select]
    ) -> Any:
        """The rows of the statement ``build`` makes for shape ``key``, run with ``values``."""
        ...


class PostgresCatalogue:
    def __init__(self, reads: ShapedReads | Connection) -> None:
        """``reads``: a read path's session (``ReadSession``), or a connection of one's
        own, on which the statements run through SQLAlchemy."""
        self.reads = OnConnection(reads) if isinstance(reads, Connection) else reads

    def list(self, scope: Scope, query: ListVideos) -> tuple[list[VideoListItem], int]:
        offset = (query.page - 1) * query.page_size
        where = list_filters(scope, query, query.trashed)
        values = {**where.values, "page_size": query.page_size, "page_offset": offset}
        with_total = query.q is not None

        def page() -> Select:
            return self._page(query, where.conditions(), with_total)

        key = _shape(scope, query, "page")
        if with_total:
            # A search finds its matches through the trigram indexes and rechecks each on
            # its table page: the page and its total are taken in that one pass (a
            # window count), not found twice. Only a page past the end counts apart.
            rows = self.reads.run(key, values, page).all()
            if rows:
                return [list_item(row) for row in rows], rows[0].page_total
            # An empty first page is a total of 0; past the end, the true total is asked.
            return [], self._count(scope, query) if offset else 0
        total = self._total(scope, query)
        if total <= offset:
            return [], total
        rows = self.reads.run(key, values, page)
        return [list_item(row) for row in rows], total

    def _total(self, scope: Scope, query: ListVideos) -> int:
        """The exact total: from the kept figures, or counted when that is as fast."""
        planned = exact_total(scope, query)
        if planned is None:
            return self._count(scope, query)
        shape, values, build = planned
        key = (*_shape(scope, query, "total"), *shape)
        return int(self.reads.run(key, values, build).scalar_one())

    def _count(self, scope: Scope, query: ListVideos) -> int:
        """``count(*)`` of what the list shows, through the list indexes."""
        where = list_filters(scope, query, query.trashed)

        def count() -> Select:
            return select(func.count()).select_from(videos).where(*where.conditions())

        return self.reads.run(_shape(scope, query, "count"), where.values, count).scalar_one()

    def _page(self, query: ListVideos, conditions: list[Any], with_total: bool) -> Select:
        """Deferred join: the page's keys come from the index (an index-only scan that
        skips ``offset`` entries without touching the table, without ``q``); only the
        page's rows are then read and joined to their pins. Page 2,000 costs what page
        1 does."""
        keys = [videos.c.id, videos.c.uploaded_at]
        if with_total:
            keys.append(func.count().over().label("page_total"))
        page = (
            select(*keys)
            .where(*conditions)
            .order_by(*NEWEST_FIRST)
            .limit(bindparam("page_size", type_=Integer))
            .offset(bindparam("page_offset", type_=Integer))
            .subquery("page")
        )
        columns = list(TRASH_LIST_COLUMNS if query.trashed else LIST_COLUMNS)
        if with_total:
            columns.append(page.c.page_total)
        return (
            select(*columns)
            .select_from(
                page.join(videos, videos.c.id == page.c.id).outerjoin(
                    pins, pins.c.id == videos.c.pin_id
                )
            )
            .order_by(page.c.uploaded_at.desc(), page.c.id.desc())
        )

    def get(self, scope: Scope, video_id: UUID) -> VideoDetailResponse | None:
        within_scope = scoped(scope)
        values = {"video_id": video_id, **within_scope.values}
        row = self.reads.run(
            ("detail", scope_shape(scope)), values, lambda: _details(within_scope, one=True)
        ).first()
        return None if row is None else VideoDetailResponse.model_validate(row._mapping)

    def get_many(
        self, scope: Scope, video_ids: Sequence[UUID], trashed: bool = False
    ) -> dict[UUID, VideoDetailResponse]:
        if not video_ids:
            return {}
        within_scope = scoped(scope)
        values = {"video_ids": sorted(set(video_ids)), **within_scope.values}
        rows = self.reads.run(
            ("details", scope_shape(scope), trashed),
            values,
            lambda: _details(within_scope, one=False, trashed=trashed),
        )
        found = (VideoDetailResponse.model_validate(row._mapping) for row in rows)
        return {video.id: video for video in found}
