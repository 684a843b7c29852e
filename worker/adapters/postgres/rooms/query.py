"""What every room's statements share: the tables, the columns read, the access scope
as SQL (``visible``) and the list filters.

A filter is made by ``Where``: the condition and the value of the parameter it binds
come from one call, so a statement built once per shape and the values it is run with
cannot name different parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    Column,
    ColumnElement,
    DateTime,
    Select,
    Table,
    Text,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by, array
from sqlalchemy.sql.elements import BindParameter

from handlers.access import Scope
from schemas.requests import VideoFilters
from worker.adapters.postgres.tables import (
    CameraPin,
    DeletionAudit,
    Mall,
    MallRetention,
    StorageDeletion,
    Tag,
    Video,
    VideoCountsDaily,
    VideoCountsMallDaily,
    VideoCountsMallMonthly,
    VideoCountsMonthly,
    VideoSearch,
    VideoSearchPeriod,
    VideoTag,
)

videos = Video.__table__
pins = CameraPin.__table__
malls = Mall.__table__
deletions = StorageDeletion.__table__
mall_retention = MallRetention.__table__
audit = DeletionAudit.__table__
counts_daily = VideoCountsDaily.__table__
counts_monthly = VideoCountsMonthly.__table__
counts_mall_daily = VideoCountsMallDaily.__table__
counts_mall_monthly = VideoCountsMallMonthly.__table__
tags = Tag.__table__
video_tags = VideoTag.__table__
search = VideoSearch.__table__
search_periods = VideoSearchPeriod.__table__


def by_pin(scope: Scope, pin_id: UUID | None) -> bool:
    """Whether a total or a statistic must read the per-pin figures: it names a pin, or
    the caller sees only some pins. Every other one sums the per-mall figures, a few
    rows per mall and period instead of a few per pin."""
    return pin_id is not None or scope.role == "tenant"


def figure_tables(pinned: bool) -> tuple[Table, Table]:
    """(daily, monthly) figures: per pin, or per mall."""
    return (counts_daily, counts_monthly) if pinned else (counts_mall_daily, counts_mall_monthly)


HAS_PROXY = videos.c.proxy_path.is_not(None)
# Written exactly as the partial indexes' predicates, so the planner matches them.
LIVE = videos.c.trashed_at.is_(None)
TRASHED = videos.c.trashed_at.is_not(None)
NOT_HELD = videos.c.legal_hold.is_(False)
NEWEST_FIRST = (videos.c.uploaded_at.desc(), videos.c.id.desc())
OLDEST_FIRST = (videos.c.uploaded_at, videos.c.id)
# Originals plus proxies: what a video keeps in the bucket, as quotas and stats count it.
# Defined once, in SQL: migration 0010's video_figure(videos), which the figure triggers
# and ``videoworker figures check|rebuild`` read too. Joined laterally to the row (the
# planner inlines the function: the same index scans as the sum written out), or, where
# one row's value is wanted (RETURNING), as a scalar subquery. numeric: two huge sizes
# never overflow a bigint.
FIGURE = func.video_figure(videos.table_valued()).table_valued("stored_bytes").lateral("figure")
WITH_FIGURE = videos.join(FIGURE, true())
STORED_BYTES = FIGURE.c.stored_bytes
ROW_STORED_BYTES = select(FIGURE.c.stored_bytes).scalar_subquery()

# The instants a Python datetime holds. Other services may store 'infinity', year 20000
# or BC dates, which psycopg refuses to load (DataError), failing the whole page.
# These are SQL constants, not parameters, so the statements still print with literal
# binds (the benches EXPLAIN them that way).
EARLIEST = literal_column("'0001-01-01 00:00:00+00'::timestamptz", DateTime(timezone=True))
LATEST = literal_column("'9999-12-31 23:59:59.999999+00'::timestamptz", DateTime(timezone=True))
UTC_ZONE = literal_column("'UTC'", Text)


def _utc(value: ColumnElement[Any]) -> ColumnElement[datetime]:
    # A UTC wall-clock timestamp: loads the same whatever the session's time zone.
    return func.timezone(UTC_ZONE, value, type_=DateTime())


def _clamped_instant(column: Column[Any]) -> ColumnElement[datetime]:
    """A required timestamp, out-of-range values read as the nearest representable one."""
    return _utc(func.least(func.greatest(column, EARLIEST), LATEST)).label(column.name)


def _instant_or_null(column: Column[Any]) -> ColumnElement[datetime]:
    """An optional timestamp, out-of-range values read as null."""
    return case((column.between(EARLIEST, LATEST), _utc(column)), else_=None).label(column.name)


def readable(column: Column[Any]) -> ColumnElement[Any]:
    """A column as it can be loaded, whatever another service stored in it."""
    if column is videos.c.uploaded_at:
        return _clamped_instant(column)
    if isinstance(column.type, DateTime):
        return _instant_or_null(column)
    return column


# A video's tag names, sorted case-insensitively (ties by the name itself): one index
# look-up per listed row, in the statement that reads the row.
TAG_NAMES = (
    select(
        func.coalesce(
            func.array_agg(aggregate_order_by(tags.c.name, func.lower(tags.c.name), tags.c.name)),
            literal_column("'{}'::text[]"),
        )
    )
    .select_from(video_tags.join(tags, tags.c.id == video_tags.c.tag_id))
    .where(video_tags.c.video_id == videos.c.id)
    .scalar_subquery()
    .label("tags")
)

LIST_COLUMNS = (
    videos.c.id,
    videos.c.mall_id,
    videos.c.pin_id,
    pins.c.name.label("pin_name"),
    videos.c.original_filename,
    videos.c.file_size_bytes,
    videos.c.duration_seconds,
    videos.c.processing_status,
    # The keys themselves, not "IS NOT NULL": the flags say whether a file is there to
    # sign (see catalogue.list_item); the has_proxy filter keeps the indexed predicate.
    videos.c.proxy_path,
    videos.c.thumbnail_path,
    videos.c.original_path,
    readable(videos.c.uploaded_at),
    readable(videos.c.recorded_at),
    TAG_NAMES,
)
TRASH_LIST_COLUMNS = (*LIST_COLUMNS, readable(videos.c.trashed_at))
# The columns of the contract's detail: not the worker's own (hold, trash).
OWN_COLUMNS = ("legal_hold", "trashed_at", "trashed_by")
DETAIL_COLUMNS = (
    *(readable(c) for c in videos.c if c.name not in OWN_COLUMNS),
    pins.c.name.label("pin_name"),
    TAG_NAMES,
)
WITH_PIN = videos.outerjoin(pins, pins.c.id == videos.c.pin_id)


class Where:
    """Conditions, and the values of the parameters they bind, made by the same calls.

    ``bind`` records a parameter's value together with the condition that binds it, so
    the values a statement built once per shape is run with are those its conditions
    name, and no others. The SQLAlchemy expressions are made only when ``conditions``
    is asked for: once per shape, not on every call (they cost more CPU than a
    primary-key read takes PostgreSQL to answer).
    """

    __slots__ = ("_makers", "values")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._makers: list[Callable[[], ColumnElement[bool]]] = []

    def add(self, condition: ColumnElement[bool]) -> None:
        """A condition that binds nothing."""
        self._makers.append(lambda: condition)

    def bind(
        self,
        name: str,
        value: Any,
        condition: Callable[[BindParameter[Any]], ColumnElement[bool]],
        type_: Any = None,
    ) -> None:
        """``condition`` of the parameter ``name``, bound to ``value``."""
        self.values[name] = value
        self._makers.append(lambda: condition(bindparam(name, value, type_=type_)))

    def any_of(self, alternatives: Iterable[Where]) -> None:
        """One condition: any of these (each the AND of its own)."""
        options = list(alternatives)
        for option in options:
            self.values.update(option.values)
        self._makers.append(lambda: or_(*(option.combined() for option in options)))

    def extend(self, other: Where) -> None:
        self.values.update(other.values)
        self._makers.extend(other._makers)  # noqa: SLF001

    def conditions(self) -> list[ColumnElement[bool]]:
        return [make() for make in self._makers]

    def combined(self) -> ColumnElement[bool]:
        """The conditions as one: their AND, true when there is none."""
        made = self.conditions()
        return and_(*made) if made else true()


SCOPE_IDS = "scope_ids"
SCOPE_ID = "scope_id"


def scope_ids(scope: Scope) -> frozenset[UUID] | None:
    """The malls or pins a scope is limited to; None for one that sees everything."""
    if scope.role == "admin":
        return None
    return scope.malls if scope.role == "operator" else scope.pins


def scoped(scope: Scope, table: Table = videos) -> Where:
    """What keeps a statement to what the scope sees: the one place the access scope
    becomes SQL, added to every read and every delete of ``videos`` and to every sum of
    its trigger-kept figures (``table``: a table with the same ``mall_id``, and
    ``pin_id`` for a tenant's scope; see ``by_pin``).

    An operator's malls and a tenant's pins are equality-indexed columns, so the filter
    narrows the same indexes the other filters use. Several ids are one array parameter
    (``mall_id = ANY(:scope_ids)``, which PostgreSQL plans as it plans ``IN``), so a
    statement's text is the same for every caller of a role: it can be built once and
    prepared once (see ``readpath.Shapes``). One id (a tenant of one pin, an operator of
    one mall: the common case) is an equality, ``pin_id = :scope_id``: then the
    newest-first page is read from the pin's or the mall's own list index, as for a
    ``pin_id`` filter, where an ``ANY`` may be planned as a scan of every live video's
    index.
    """
    where = Where()
    ids = scope_ids(scope)
    if ids is None:
        return where
    if not ids:
        where.add(false())
        return where
    column = table.c.mall_id if scope.role == "operator" else table.c.pin_id
    if len(ids) == 1:
        where.bind(SCOPE_ID, next(iter(ids)), lambda p: column == p, Uuid)
    else:
        where.bind(SCOPE_IDS, sorted(ids), lambda p: column == any_(p), ARRAY(Uuid))
    return where


def visible(scope: Scope, table: Table = videos) -> list[ColumnElement[bool]]:
    """``scoped``'s conditions, for a statement run with the values they hold."""
    return scoped(scope, table).conditions()


def scope_shape(scope: Scope) -> str:
    """What ``scoped`` makes of a scope, without its ids."""
    ids = scope_ids(scope)
    if ids is None:
        return "admin"
    if not ids:
        return "nobody"
    return f"{scope.role}:one" if len(ids) == 1 else scope.role


def search_pattern(q: str) -> str:
    """``q`` as an ILIKE pattern matching it anywhere, its ``%``, ``_`` and ``\\`` literal."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# What joins a video's file name to its notes in ``video_search.text`` (migration 0025).
# A ``q`` without it matches the joined text only where it matches one of the two.
SEARCH_SEPARATOR = "\x01"


def _ilike(pattern: BindParameter[Any]) -> ColumnElement[bool]:
    """``q`` tested on a row of ``videos`` itself: what a search means."""
    return or_(
        videos.c.original_filename.ilike(pattern, escape="\\"),
        videos.c.operator_notes.ilike(pattern, escape="\\"),
    )


def search_like(pattern: BindParameter[Any]) -> ColumnElement[bool]:
    """``q`` on ``video_search.text``, through its trigram index: the lowered text
    against the lowered pattern is what ``ILIKE`` computes. True also where ``q`` spans
    the separator; ``search_exact`` rules that out when ``q`` holds one."""
    return search.c.text.like(func.lower(pattern), escape="\\")


def search_exact(pattern: BindParameter[Any]) -> ColumnElement[bool]:
    """``q`` tested on the video's own row: for a ``q`` holding the separator."""
    return (
        select(literal_column("1"))
        .select_from(videos)
        .where(videos.c.id == search.c.video_id, _ilike(pattern))
        .exists()
    )


def _search_part(part: BindParameter[Any]) -> ColumnElement[bool]:
    """The text holds this piece of ``q`` (lowered as the text was): a condition the
    trigram index answers, with the piece's trigrams only."""
    anywhere = literal_column("'%'", Text)
    return search.c.text.like(anywhere.concat(func.lower(part)).concat(anywhere))


def _search_text(q: BindParameter[Any]) -> ColumnElement[bool]:
    """The text holds ``q``, tested on each row the index found: the ILIKE of a literal
    ``q``, as ``search_like`` computes it."""
    return func.strpos(search.c.text, func.lower(q)) > literal_column("0")


def _matches(pattern: BindParameter[Any]) -> ColumnElement[bool]:
    """A video matching ``q``, for the statements over ``videos`` (bulk deletes,
    reprocessing, exports): its candidates found once through ``video_search``'s index
    (an array, so the planner cannot choose to probe it for every row of ``videos``
    instead), each then tested on its own row."""
    found = func.array(select(search.c.video_id).where(search_like(pattern)).scalar_subquery())
    return and_(videos.c.id == any_(found), _ilike(pattern))


def search_condition(q: str) -> ColumnElement[bool]:
    """``q`` tested on each row of ``videos`` as it is read (no index)."""
    return _ilike(bindparam("q_pattern", search_pattern(q), type_=Text))


# The filters that are values (the rest shape the statement): each one bind parameter,
# named as the field, in every statement that takes it.
VALUE_FILTERS = ("mall_id", "pin_id", "processing_status")


def _value_filters(where: Where, table: Table, query: VideoFilters, names: Iterable[str]) -> None:
    for name in names:
        value = getattr(query, name)
        if value is not None:
            where.bind(name, value, lambda p, c=table.c[name]: c == p)


def _uploaded(where: Where, at: Any, query: VideoFilters) -> None:
    """The half-open upload range, ``uploaded_after <= at < uploaded_before``."""
    if query.uploaded_after is not None:
        where.bind("uploaded_after", query.uploaded_after, lambda p: at >= p)
    if query.uploaded_before is not None:
        where.bind("uploaded_before", query.uploaded_before, lambda p: at < p)


def list_filters(
    scope: Scope, query: VideoFilters, trashed: bool = False, dated: bool = True
) -> Where:
    """What a list with these filters shows (the trash, with ``trashed``); without its
    upload range unless ``dated``."""
    where = Where()
    where.add(TRASHED if trashed else LIVE)
    where.extend(scoped(scope))
    _value_filters(where, videos, query, VALUE_FILTERS)
    if query.has_proxy is not None:
        # Written exactly as the partial indexes' predicates, so the planner matches them.
        where.add(HAS_PROXY if query.has_proxy else videos.c.proxy_path.is_(None))
    if dated:
        _uploaded(where, videos.c.uploaded_at, query)
    if query.q is not None:
        where.bind("q_pattern", search_pattern(query.q), _matches, Text)
    _tags(where, query, videos.c.id)
    return where


def _tags(where: Where, query: VideoFilters, video_id: Any) -> None:
    """Every tag asked for (``tag0``, ``tag1``, …), on the video whose id is ``video_id``."""
    for index, name in enumerate(query.tags or ()):
        where.bind(f"tag{index}", name, lambda p: _tagged(p, video_id), Text)


def _tagged(name: BindParameter[Any], video_id: Any) -> ColumnElement[bool]:
    """The video carries a tag of this name (in its mall; any case): one look-up of the
    name's tags, then of the pair, by the primary key of ``video_tags``."""
    return (
        select(literal_column("1"))
        .select_from(video_tags.join(tags, tags.c.id == video_tags.c.tag_id))
        .where(video_tags.c.video_id == video_id, func.lower(tags.c.name) == func.lower(name))
        .exists()
    )


def search_filters(scope: Scope, query: VideoFilters, parts: Sequence[str] = ()) -> Where:
    """``list_filters`` on ``video_search``: the same parameters, bound to the same
    values, on its copies of the columns. The trash is not among them: it is the sign
    of a row's period (see ``catalogue``), chosen by the periods a search visits.

    ``parts``: substrings of ``q`` the trigram index is asked for (``search_plan``),
    ``q`` itself then tested on each candidate; none, and the index is asked for all
    of ``q``."""
    where = Where()
    where.extend(scoped(scope, search))
    _value_filters(where, search, query, VALUE_FILTERS)
    if query.has_proxy is not None:
        where.add(search.c.has_proxy.is_(query.has_proxy))
    _uploaded(where, search.c.uploaded_at, query)
    if query.q is not None:
        pattern = search_pattern(query.q)
        if parts:
            for index, part in enumerate(parts):
                where.bind(f"q_part{index}", part, _search_part, Text)
            where.bind("q_text", query.q, _search_text, Text)
        else:
            where.bind("q_pattern", pattern, search_like, Text)
        if SEARCH_SEPARATOR in query.q:
            where.values["q_pattern"] = pattern
            where.add(search_exact(bindparam("q_pattern", type_=Text)))
    for index, name in enumerate(query.tags or ()):
        where.bind(f"tag{index}", name, _search_tagged, Text)
    return where


def _search_tagged(name: BindParameter[Any]) -> ColumnElement[bool]:
    """The row's tags (lowered) hold this name: a key of the search index, so the
    tag's list and the text's are intersected inside it."""
    return search.c.tags.contains(array([func.lower(name)], type_=Text))


def figure_filters(table: Table, scope: Scope, query: VideoFilters, trashed: bool) -> Where:
    """``list_filters`` without the dates and ``q``, on a table of trigger-kept figures."""
    where = Where()
    where.add(table.c.trashed.is_(trashed))
    where.extend(scoped(scope, table))
    _value_filters(where, table, query, (*VALUE_FILTERS, "has_proxy"))
    return where


def within(column: Any, name: str, start: Any, end: Any) -> Where:
    """``start <= column < end``, a None bound open; the bounds are the parameters
    ``<name>_from`` and ``<name>_to``."""
    where = Where()
    if start is not None:
        where.bind(f"{name}_from", start, lambda p: column >= p)
    if end is not None:
        where.bind(f"{name}_to", end, lambda p: column < p)
    return where


def summary_of(*conditions: Any) -> Select:
    """How many videos match, and their originals plus proxies in bytes."""
    return (
        select(func.count(), func.coalesce(func.sum(STORED_BYTES), 0))
        .select_from(WITH_FIGURE)
        .where(*conditions)
    )
