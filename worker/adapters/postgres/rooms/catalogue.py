"""The catalogue: a page of videos and its exact total, one video, many by id.

Every statement here is built once per shape and run with the caller's values, on the
read path (``worker.adapters.postgres.readpath``) in a read-only unit of work: these
are the reads every caller makes, each a few index look-ups.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    DateTime,
    Integer,
    Select,
    Uuid,
    any_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)

from handlers.access import Scope
from handlers.errors import StatementTimeout
from handlers.ports import Window
from handlers.urls import is_file_key
from schemas.requests import ListVideos
from schemas.responses import VideoDetailResponse, VideoListItem
from worker.adapters.postgres import budget, spans
from worker.adapters.postgres.readpath import OnConnection
from worker.adapters.postgres.rooms import tagged
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
    search_condition,
    videos,
    within,
)

ZERO = literal_column("0")
ONE = literal_column("1")


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


# How many of the newest listed videos a search past its cap tests for its page before
# it sorts the page from every match instead: a broad search fills its page long before.
WALK_ROWS = 5_000


def _after_cursor() -> ColumnElement[bool]:
    """Newest first, after the cursor's row: ``(uploaded_at, id) < (…)``."""
    after = tuple_(
        bindparam("after_at", type_=DateTime(timezone=True)),
        bindparam("after_id", type_=Uuid),
    )
    return tuple_(videos.c.uploaded_at, videos.c.id) < after


SEARCH_TOOK_TOO_LONG = "Search took longer than {ms} ms; add filters or a longer q"


@contextlib.contextmanager
def search_budget(ms: int) -> Iterator[None]:
    """A search's statements end within ``ms`` (or the task's own budget, if tighter):
    cancelled by PostgreSQL past it, and answered ``timeout`` saying how to narrow it.
    A cheap message never buys minutes of a server's work."""
    outer = budget.current()
    tighter = ms if outer is None else min(ms, outer)
    with budget.statement_budget(tighter):
        try:
            yield
        except Exception as exc:
            cancelled = isinstance(exc, StatementTimeout) or budget.timed_out(exc) is not None
            if cancelled and tighter == ms:
                raise StatementTimeout(SEARCH_TOOK_TOO_LONG.format(ms=ms)) from exc
            raise


class PostgresCatalogue:
    def __init__(self, reads: ShapedReads | Connection) -> None:
        """``reads``: a read path's session (``ReadSession``), or a connection of one's
        own, on which the statements run through SQLAlchemy."""
        self.reads = OnConnection(reads) if isinstance(reads, Connection) else reads

    def list(
        self, scope: Scope, query: ListVideos, window: Window | None = None
    ) -> tuple[list[VideoListItem], int]:
        window = window or Window()
        if query.q is not None and window.search_ms is not None:
            with search_budget(window.search_ms):
                return self._list(scope, query, window)
        return self._list(scope, query, window)

    def _list(
        self, scope: Scope, query: ListVideos, window: Window
    ) -> tuple[list[VideoListItem], int]:
        keyset = window.after is not None
        offset = 0 if keyset else (query.page - 1) * query.page_size
        limit = query.page_size + (1 if window.peek else 0)
        where = list_filters(scope, query, query.trashed)
        values = {**where.values, "page_size": limit, "page_offset": offset}
        if window.after is not None:
            values["after_at"], values["after_id"] = window.after

        def page() -> Select:
            return self._page(query, where.conditions(), keyset)

        key = (*_shape(scope, query, "page"), keyset)
        if query.q is not None:
            return self._search(scope, query, window, where, values, (key, page))
        if tagged.served(query):
            rows, total = tagged.listed(self.reads, scope, query, window, offset, limit)
            return [list_item(row) for row in rows], total
        total = self._total(scope, query)
        if total <= offset and not keyset:
            return [], total
        rows = self.reads.run(key, values, page)
        return [list_item(row) for row in rows], total

    def _search(
        self,
        scope: Scope,
        query: ListVideos,
        window: Window,
        where: Where,
        values: dict[str, Any],
        paged: tuple[tuple[Any, ...], Callable[[], Select]],
    ) -> tuple[list[VideoListItem], int]:
        """A search's page and its total. Every match found is rechecked on its table
        page, which is most of a search's cost: an offset page and its capped count are
        taken in one pass over at most ``cap + 1`` matches (the page sorted from them),
        and only a search past the cap reads its page again (``_newest_matches``). A
        cursor's page starts after its row, so it is read on its own the same way and the
        matches counted beside."""
        key, page = paged
        cap = window.count_cap
        keyset = window.after is not None
        if keyset or cap is None:
            rows = self._newest_matches(scope, query, values, key, keyset) if cap else None
            if rows is None:
                rows = self.reads.run(key, values, page).all()
            return [list_item(row) for row in rows], self._count(scope, query, cap)
        counted_values = {**values, "count_limit": cap + 1}

        def found() -> Select:
            return self._found_page(query, where.conditions())

        rows = self.reads.run((*key, "found"), counted_values, found).all()
        if not rows:
            offset = values["page_offset"]
            return [], self._count(scope, query, cap) if offset else 0
        total = rows[0].page_total
        if total > cap:
            rows = self._newest_matches(scope, query, values, key, keyset)
        return [list_item(row) for row in rows], total

    def _newest_matches(
        self,
        scope: Scope,
        query: ListVideos,
        values: dict[str, Any],
        key: tuple[Any, ...],
        keyset: bool,
    ) -> list[Any]:
        """A search's page among more matches than one pass reads: first among the
        ``WALK_ROWS`` newest videos of the listing (an index scan in list order that stops
        once the page is full: a broad search's page is there), else sorted from every
        match (found through the trigram indexes, then the newest taken). Walking on
        instead would read every newer video before matches that are all far back in
        time (a month two years ago: seconds, then the budget's timeout)."""
        walk_values = {**values, "walk_rows": WALK_ROWS}
        rows = self.reads.run(
            (*key, "walk"), walk_values, lambda: self._walked_page(scope, query, keyset)
        ).all()
        if len(rows) >= values["page_size"]:
            return rows
        return self.reads.run(
            (*key, "sorted"), values, lambda: self._sorted_page(scope, query, keyset)
        ).all()

    def _walked_page(self, scope: Scope, query: ListVideos, keyset: bool) -> Select:
        """The page among the newest ``walk_rows`` videos the listing holds without its
        ``q``, each tested for ``q`` as it is read."""
        plain = list_filters(scope, query.model_copy(update={"q": None}), query.trashed)
        conditions = plain.conditions()
        if keyset:
            conditions.append(_after_cursor())
        recent = (
            select(
                videos.c.id,
                videos.c.uploaded_at,
                search_condition(query.q or "").label("hit"),
            )
            .where(*conditions)
            .order_by(*NEWEST_FIRST)
            .limit(bindparam("walk_rows", type_=Integer))
            .subquery("recent")
        )
        page = (
            select(recent.c.id, recent.c.uploaded_at)
            .where(recent.c.hit)
            .order_by(recent.c.uploaded_at.desc(), recent.c.id.desc())
            .limit(bindparam("page_size", type_=Integer))
            .offset(bindparam("page_offset", type_=Integer))
            .subquery("page")
        )
        return self._joined(query, page)

    def _sorted_page(self, scope: Scope, query: ListVideos, keyset: bool) -> Select:
        """The page sorted from every match: the matches first, on their own
        (materialized, so found through the trigram indexes, never by walking the list
        index), then the newest of them."""
        conditions = list_filters(scope, query, query.trashed).conditions()
        if keyset:
            conditions.append(_after_cursor())
        matches = (
            select(videos.c.id, videos.c.uploaded_at)
            .where(*conditions)
            .cte("matches")
            .prefix_with("MATERIALIZED")
        )
        page = (
            select(matches.c.id, matches.c.uploaded_at)
            .order_by(matches.c.uploaded_at.desc(), matches.c.id.desc())
            .limit(bindparam("page_size", type_=Integer))
            .offset(bindparam("page_offset", type_=Integer))
            .subquery("page")
        )
        return self._joined(query, page)

    def _found_page(self, query: ListVideos, conditions: list[Any]) -> Select:
        """The page among at most ``count_limit`` matches, each row with how many there
        were (``page_total``): all of them when there are no more."""
        found = (
            select(videos.c.id, videos.c.uploaded_at)
            .where(*conditions)
            .limit(bindparam("count_limit", type_=Integer))
            .cte("found")
        )
        page = (
            select(found.c.id, found.c.uploaded_at)
            .order_by(found.c.uploaded_at.desc(), found.c.id.desc())
            .limit(bindparam("page_size", type_=Integer))
            .offset(bindparam("page_offset", type_=Integer))
            .subquery("page")
        )
        counted = select(func.count()).select_from(found).scalar_subquery()
        columns = [*(TRASH_LIST_COLUMNS if query.trashed else LIST_COLUMNS)]
        return (
            select(*columns, counted.label("page_total"))
            .select_from(
                page.join(videos, videos.c.id == page.c.id).outerjoin(
                    pins, pins.c.id == videos.c.pin_id
                )
            )
            .order_by(page.c.uploaded_at.desc(), page.c.id.desc())
        )

    def _total(self, scope: Scope, query: ListVideos) -> int:
        """The exact total: from the kept figures, or counted when that is as fast."""
        planned = exact_total(scope, query)
        if planned is None:
            return self._count(scope, query)
        shape, values, build = planned
        key = (*_shape(scope, query, "total"), *shape)
        return int(self.reads.run(key, values, build).scalar_one())

    def _count(self, scope: Scope, query: ListVideos, cap: int | None = None) -> int:
        """``count(*)`` of what the list shows, through the list indexes; with ``cap``,
        of at most ``cap + 1`` of them (a search's matches are each rechecked on their
        table page: the cap bounds that work, whatever ``q`` matches)."""
        where = list_filters(scope, query, query.trashed)
        values = dict(where.values)
        if cap is not None:
            values["count_limit"] = cap + 1

        def count() -> Select:
            if cap is None:
                return select(func.count()).select_from(videos).where(*where.conditions())
            found = (
                select(ONE)
                .select_from(videos)
                .where(*where.conditions())
                .limit(bindparam("count_limit", type_=Integer))
                .subquery("found")
            )
            return select(func.count()).select_from(found)

        key = (*_shape(scope, query, "count"), cap is not None)
        return self.reads.run(key, values, count).scalar_one()

    def _page(self, query: ListVideos, conditions: list[Any], keyset: bool) -> Select:
        """Deferred join: the page's keys come from the index (an index-only scan that
        skips ``offset`` entries without touching the table, without ``q``); only the
        page's rows are then read and joined to their pins. Page 2,000 costs what page
        1 does. By keyset (a cursor), the scan starts right after the cursor's row
        (``(uploaded_at, id) < (…)``, in the same index order): any depth costs what
        page 1 does, with ``q`` too."""
        if keyset:
            conditions = [*conditions, _after_cursor()]
        page = (
            select(videos.c.id, videos.c.uploaded_at)
            .where(*conditions)
            .order_by(*NEWEST_FIRST)
            .limit(bindparam("page_size", type_=Integer))
            .offset(bindparam("page_offset", type_=Integer))
            .subquery("page")
        )
        return self._joined(query, page)

    def _joined(self, query: ListVideos, page: Any) -> Select:
        """A page's keys joined to their rows and pins, in the page's order."""
        columns = list(TRASH_LIST_COLUMNS if query.trashed else LIST_COLUMNS)
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
