"""The catalogue: a page of videos and its exact total, one video, many by id.

Every statement here is built once per shape and run with the caller's values, on the
read path (``worker.adapters.postgres.readpath``) in a read-only unit of work: these
are the reads every caller makes, each a few index look-ups.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    DateTime,
    Float,
    Integer,
    Select,
    Text,
    Uuid,
    any_,
    bindparam,
    case,
    column,
    false,
    func,
    literal_column,
    or_,
    select,
    table,
    tablesample,
    true,
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
from worker.adapters.postgres.rooms import search_plan, tagged
from worker.adapters.postgres.rooms.query import (
    DETAIL_COLUMNS,
    LIST_COLUMNS,
    LIVE,
    NEWEST_FIRST,
    SCOPE_ID,
    SCOPE_IDS,
    SEARCH_SEPARATOR,
    TRASH_LIST_COLUMNS,
    TRASHED,
    WITH_PIN,
    Where,
    by_pin,
    figure_filters,
    figure_tables,
    list_filters,
    pins,
    scope_ids,
    scope_shape,
    scoped,
    search,
    search_condition,
    search_filters,
    search_periods,
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
    fields.pop("page_complete", None)
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

    def execute(self, statement: Any, values: Mapping[str, Any] | None = None) -> Any:
        """The rows of a statement that is not shaped."""
        ...


# How many of the newest listed videos a search past its cap tests for its page before
# it sorts the page from every match instead: a broad search fills its page long before.
WALK_ROWS = 5_000


def _after_cursor(at: Any = videos.c.uploaded_at, key: Any = videos.c.id) -> ColumnElement[bool]:
    """Newest first, after the cursor's row: ``(uploaded_at, id) < (…)``, on ``videos``
    or on another table's copies of the two columns."""
    after = tuple_(
        bindparam("after_at", type_=DateTime(timezone=True)),
        bindparam("after_id", type_=Uuid),
    )
    return tuple_(at, key) < after


def _split(query: ListVideos) -> bool:
    """Whether ``q`` holds the separator of ``video_search.text``: then each match is
    tested on its own row too (a statement of its own shape)."""
    return SEARCH_SEPARATOR in (query.q or "")


def _period_of(value: Any, trashed: bool) -> ColumnElement[int]:
    return func.videoworker_search_period(value, true() if trashed else false(), type_=Integer)


def _read_by(scope: Scope, query: ListVideos) -> tuple[Any, Any, bool]:
    """The key of the index each period is read by: with a pin (a filter, or a tenant's
    pins) the pins' rows of the period (``pin_period``), with a mall (a filter, or an
    operator's malls) the malls', else the period's (``(None, None, False)``). A
    scope's own list of the period is a fraction of the period's: intersecting the two
    read every row of the period's (the scope's filters still apply, row by row).

    Answers the key column, the id (a parameter) or ids (a column of ``unnest``) the
    keys are made of, and whether there are several."""
    ids = scope_ids(scope) or ()
    if query.pin_id is not None:
        return search.c.pin_period, bindparam("pin_id", type_=Uuid), False
    if scope.role == "tenant" and ids:
        return (search.c.pin_period, *_scope_owners(ids))
    if query.mall_id is not None:
        return search.c.mall_period, bindparam("mall_id", type_=Uuid), False
    if scope.role == "operator" and ids:
        return (search.c.mall_period, *_scope_owners(ids))
    return None, None, False


def _scope_owners(ids: Iterable[UUID]) -> tuple[Any, bool]:
    """The scope's one id (the ``scope_id`` parameter ``scoped`` binds), or its ids
    (``scope_ids``) as the rows of ``unnest``."""
    if len(tuple(ids)) == 1:
        return bindparam(SCOPE_ID, type_=Uuid), False
    owner = func.unnest(bindparam(SCOPE_IDS, type_=ARRAY(Uuid))).table_valued("owner")
    return owner.render_derived(), True


def _key(owner: Any, period: Any) -> ColumnElement[str]:
    """``<id>:<period>``, as migration 0025's triggers write ``mall_period``."""
    return func.concat(owner, literal_column("':'"), period, type_=Text)


def _in_periods(
    scope: Scope, query: ListVideos, found: Where, keyset: bool, *, newest_first: bool, limit: str
) -> Select:
    """Matches of ``found`` (``search_filters``), a period at a time, newest period
    first, at most ``limit`` of them: one index scan per period (the period is the GIN
    index's first key), stopped as soon as ``limit`` are held, so a search that matches
    much reads the newest periods only. ``newest_first``: each period's matches sorted
    newest first, so the rows come out in list order.

    A period in the trash is ``-1 - period``: the trash's periods are the negative ones,
    newest first in increasing order. The periods visited are those of the upload range
    asked for, and after a cursor's only those at or before its row's."""
    trashed = query.trashed
    period = search_periods.c.period
    at = DateTime(timezone=True)

    def not_before(bound: ColumnElement[int]) -> ColumnElement[bool]:
        return period <= bound if trashed else period >= bound

    def not_after(bound: ColumnElement[int]) -> ColumnElement[bool]:
        return period >= bound if trashed else period <= bound

    visited = [period < ZERO if trashed else period >= ZERO]
    if query.uploaded_after is not None:
        visited.append(not_before(_period_of(bindparam("uploaded_after", type_=at), trashed)))
    if query.uploaded_before is not None:
        visited.append(not_after(_period_of(bindparam("uploaded_before", type_=at), trashed)))
    conditions = found.conditions()
    if keyset:
        visited.append(not_after(_period_of(bindparam("after_at", type_=at), trashed)))
        conditions.append(_after_cursor(search.c.uploaded_at, search.c.video_id))
    # Each period with the key (or keys) its index scan reads by.
    column, owner, several = _read_by(scope, query)
    if column is None:
        listed = select(period)
    elif several:
        keys = func.array_agg(_key(owner.c.owner, period)).label("period_keys")
        each = search_periods.join(owner, true())
        listed = select(period, keys).select_from(each).group_by(period)
    else:
        listed = select(period, _key(owner, period).label("key"))
    periods = (
        listed.where(*visited)
        .order_by(period.asc() if trashed else period.desc())
        .subquery("periods")
    )
    if column is None:
        read_by = search.c.period == periods.c.period
    elif several:
        read_by = column == any_(periods.c.period_keys)
    else:
        read_by = column == periods.c.key
    per_period = _matched([read_by, *conditions], newest_first, limit).lateral("matched")
    # A nested loop over the periods in their order: the rows come out period by period.
    return (
        select(per_period.c.id, per_period.c.uploaded_at, per_period.c.period)
        .select_from(periods.join(per_period, true()))
        .limit(bindparam(limit, type_=Integer))
    )


def _in_table(
    query: ListVideos, found: Where, keyset: bool, *, newest_first: bool, limit: str
) -> Select:
    """Matches of ``found`` in one index scan of the whole table, at most ``limit`` of
    them (in the table's order unless ``newest_first``): for a search expected to match
    up to twice its cap, which would read every period or most of them, each period's
    scan decoding that period's long list again."""
    # The sign of the period tells the trash, tested on each row: ``period + 0`` is no
    # key of the index, whose list of every period would be decoded otherwise.
    period = search.c.period + ZERO
    conditions = [period < ZERO if query.trashed else period >= ZERO, *found.conditions()]
    if keyset:
        conditions.append(_after_cursor(search.c.uploaded_at, search.c.video_id))
    return _matched(conditions, newest_first, limit)


def _matched(conditions: list[Any], newest_first: bool, limit: str) -> Select:
    """At most ``limit`` rows of ``video_search`` meeting ``conditions``: their id, upload
    time and period, newest first if asked."""
    matched = select(search.c.video_id.label("id"), search.c.uploaded_at, search.c.period).where(
        *conditions
    )
    if newest_first:
        matched = matched.order_by(search.c.uploaded_at.desc(), search.c.video_id.desc())
    return matched.limit(bindparam(limit, type_=Integer))


def _matches_of(
    scope: Scope,
    query: ListVideos,
    found: Where,
    keyset: bool,
    few: bool,
    *,
    newest_first: bool,
    limit: str,
) -> Select:
    """The matches, read as the search's plan says: the whole table in one scan, or a
    period at a time (``_in_table``, ``_in_periods``)."""
    if few:
        return _in_table(query, found, keyset, newest_first=newest_first, limit=limit)
    return _in_periods(scope, query, found, keyset, newest_first=newest_first, limit=limit)


def _table_rows() -> Select:
    """How many rows ``video_search`` holds, as the statistics last counted them."""
    classes = table("pg_class", column("oid"), column("reltuples", Float))
    return select(classes.c.reltuples).where(
        classes.c.oid == literal_column("'video_search'::regclass")
    )


def _sampled() -> Select:
    """The text and tags of ``sample_share`` of the rows of ``sample_percent`` of
    ``video_search``'s pages: the rows of a page were written together (one mall's
    minutes), so a few rows of many pages spread the sample over time."""
    pages = tablesample(search, func.system(bindparam("sample_percent", type_=Float)))
    return (
        select(pages.c.text, pages.c.tags)
        .where(func.random() < bindparam("sample_share", type_=Float))
        .limit(bindparam("sample_rows", type_=Integer))
    )


def _database(reads: Any) -> Any:
    """What a sample is kept for: the database ``reads`` reads."""
    for holder in (getattr(reads, "path", None), getattr(reads, "connection", None)):
        engine = getattr(holder, "engine", None)
        if engine is not None:
            return str(engine.url)
    return id(reads)


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
            return self._search(scope, query, window, values, (key, page))
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
        values: dict[str, Any],
        paged: tuple[tuple[Any, ...], Callable[[], Select]],
    ) -> tuple[list[VideoListItem], int]:
        """A search's page and its total, from ``video_search`` a period at a time,
        newest first (``_in_periods``). Every match found is tested on its row of that
        table, which is most of a search's cost: an offset page and its capped count
        are taken in one pass that stops at ``cap + 1`` matches, the page sorted from
        them. Only when the page reaches into the period where the pass stopped (whose
        newer matches it may not all hold) is the page read again
        (``_newest_matches``). A cursor's page starts after its row, so it is read on
        its own the same way and the matches counted beside."""
        key, page = paged
        cap = window.count_cap
        keyset = window.after is not None
        if cap is None:
            rows = self.reads.run(key, values, page).all()
            return [list_item(row) for row in rows], self._count(scope, query)
        plan = self._plan(query.q or "", cap, query.tags or ())
        few = plan.few
        found = search_filters(scope, query, plan.parts)
        shape = (*_shape(scope, query, "search"), _split(query), len(plan.parts), few)
        if keyset:
            rows = self._newest_matches(scope, query, found, values, shape, keyset, few)
            return [list_item(row) for row in rows], self._search_count(
                scope, query, found, shape, cap, few
            )
        found_values = {
            **found.values,
            "count_limit": cap + 1,
            "page_size": values["page_size"],
            "page_offset": values["page_offset"],
        }
        rows = self.reads.run(
            (*shape, "found"), found_values, lambda: self._found_page(scope, query, found, few)
        ).all()
        if not rows:
            offset = values["page_offset"]
            return [], self._search_count(scope, query, found, shape, cap, few) if offset else 0
        total, complete = rows[0].page_total, rows[0].page_complete
        if total > cap and complete < values["page_offset"] + len(rows):
            # Past the cap, however the sample guessed: the page among the newest.
            rows = self._newest_matches(scope, query, found, values, shape, keyset, False)
        return [list_item(row) for row in rows], total

    def _plan(self, q: str, cap: int, tags: Sequence[str]) -> search_plan.SearchPlan:
        """How this search reads ``video_search`` (``search_plan``)."""
        return search_plan.sample_for(_database(self.reads), self._sample).plan(q, cap, tags)

    def _sample(self) -> search_plan.TextSample:
        # Not shaped: a shape's first answer is checked against a second run of it,
        # and no two samples are alike.
        execute = self.reads.execute
        rows = float(execute(_table_rows()).scalar_one() or 0)
        wanted = search_plan.SAMPLE_ROWS
        spread = search_plan.SAMPLE_SPREAD
        # Pages for ``spread`` times the rows wanted, one row in ``spread`` of them kept;
        # the limit, past what is expected, only bounds an estimate gone stale.
        percent = 100.0 if rows <= wanted else min(100.0, 100.0 * spread * wanted / rows)
        share = 1.0 if percent >= 100.0 else 1.0 / spread
        texts = execute(
            _sampled(),
            {"sample_percent": percent, "sample_share": share, "sample_rows": 2 * wanted},
        ).all()
        return search_plan.TextSample(
            texts=tuple(row[0] for row in texts),
            rows=max(rows, len(texts)),
            tags=tuple(frozenset(row[1]) for row in texts),
        )

    def _newest_matches(
        self,
        scope: Scope,
        query: ListVideos,
        found: Where,
        values: dict[str, Any],
        shape: tuple[Any, ...],
        keyset: bool,
        few: bool,
    ) -> list[Any]:
        """A search's page among more matches than one pass reads: first among the
        ``WALK_ROWS`` newest videos of the listing (an index scan in list order that stops
        once the page is full: a broad search's page is there), else the newest matches
        of each period in turn until the page is full (``_in_periods``, sorted). Walking
        on instead would read every newer video before matches that are all far back in
        time (a month two years ago). A search expected to match few videos sorts them
        all at once: its page is seldom among the newest."""
        if not few:
            walk_values = {**values, "walk_rows": WALK_ROWS}
            rows = self.reads.run(
                (*shape, "walk", keyset),
                walk_values,
                lambda: self._walked_page(scope, query, keyset),
            ).all()
            if len(rows) >= values["page_size"]:
                return rows
        sorted_values = {
            **found.values,
            "page_size": values["page_size"],
            "page_offset": values["page_offset"],
            "page_need": values["page_offset"] + values["page_size"],
        }
        if keyset:
            sorted_values["after_at"], sorted_values["after_id"] = (
                values["after_at"], values["after_id"],
            )  # fmt: skip
        return self.reads.run(
            (*shape, "sorted", keyset),
            sorted_values,
            lambda: self._sorted_page(scope, query, found, keyset, few),
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

    def _sorted_page(
        self, scope: Scope, query: ListVideos, found: Where, keyset: bool, few: bool
    ) -> Select:
        """The page from each period's newest ``page_need`` matches, the periods newest
        first: the rows come out in list order, and the pass stops once it holds the
        page (a period it reads is sorted whole). With ``few``, every match sorted."""
        matched = _matches_of(
            scope, query, found, keyset, few, newest_first=True, limit="page_need"
        ).subquery("matched_page")
        page = (
            select(matched.c.id, matched.c.uploaded_at)
            .limit(bindparam("page_size", type_=Integer))
            .offset(bindparam("page_offset", type_=Integer))
            .subquery("page")
        )
        return self._joined(query, page)

    def _found_page(self, scope: Scope, query: ListVideos, found: Where, few: bool) -> Select:
        """The page among at most ``count_limit`` matches, each row with how many there
        were (``page_total``: all of them when there are no more) and how many of them
        are in the periods the pass read whole (``page_complete``): the page is the
        newest of every match when it lies among those. One scan of the table (``few``)
        reads all of them or, stopped at the limit, none whole."""
        matches = _matches_of(
            scope, query, found, False, few, newest_first=False, limit="count_limit"
        )
        found_rows = matches.cte("found")
        if few:
            every = func.count() < bindparam("count_limit", type_=Integer)
            complete = case((every, func.count()), else_=ZERO)
        else:
            last = (func.max if query.trashed else func.min)(found_rows.c.period)
            complete = func.count().filter(found_rows.c.period != select(last).scalar_subquery())
        counted = (
            select(func.count().label("total"), complete.label("complete"))
            .select_from(found_rows)
            .subquery("counted")
        )
        page = (
            select(found_rows.c.id, found_rows.c.uploaded_at)
            .order_by(found_rows.c.uploaded_at.desc(), found_rows.c.id.desc())
            .limit(bindparam("page_size", type_=Integer))
            .offset(bindparam("page_offset", type_=Integer))
            .subquery("page")
        )
        columns = [*(TRASH_LIST_COLUMNS if query.trashed else LIST_COLUMNS)]
        return (
            select(
                *columns,
                counted.c.total.label("page_total"),
                counted.c.complete.label("page_complete"),
            )
            .select_from(
                page.join(videos, videos.c.id == page.c.id)
                .outerjoin(pins, pins.c.id == videos.c.pin_id)
                .join(counted, true())
            )
            .order_by(page.c.uploaded_at.desc(), page.c.id.desc())
        )

    def _search_count(
        self,
        scope: Scope,
        query: ListVideos,
        found: Where,
        shape: tuple[Any, ...],
        cap: int,
        few: bool,
    ) -> int:
        """How many videos match, counting at most ``cap + 1``."""

        def count() -> Select:
            matches = _matches_of(
                scope, query, found, False, few, newest_first=False, limit="count_limit"
            )
            return select(func.count()).select_from(matches.subquery("matches"))

        values = {**found.values, "count_limit": cap + 1}
        return int(self.reads.run((*shape, "count"), values, count).scalar_one())

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
