"""PostgreSQL repositories behind the ports: videos, the deletion queue, the audit log.

``storage_deletions`` holds every key a deleted row leaves behind until S3 confirms its
removal; ``deletion_audit`` holds one row per deleted video and how its files ended.

Queries are SQLAlchemy Core over the typed ORM tables: rows go straight into the
response models, without ORM identity-map overhead on every list page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Double,
    Integer,
    Select,
    Table,
    Text,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    false,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter

from handlers.access import Scope
from handlers.ports import (
    ExpiredSummary,
    PastDeletion,
    QueuedDeletion,
    QueuedKey,
    RemovedVideo,
    RetentionScope,
    TrashedVideo,
)
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
from worker.adapters.postgres import spans
from worker.adapters.postgres.tables import (
    FIGURE_MODELS,
    CameraPin,
    DeletionAudit,
    Mall,
    MallRetention,
    StorageDeletion,
    Video,
    VideoCountsDaily,
    VideoCountsMallDaily,
    VideoCountsMallMonthly,
    VideoCountsMonthly,
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
STORED_BYTES = videos.c.file_size_bytes + func.coalesce(videos.c.proxy_size_bytes, 0)

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


def _readable(column: Column[Any]) -> ColumnElement[Any]:
    """A column as it can be loaded, whatever another service stored in it."""
    if column is videos.c.uploaded_at:
        return _clamped_instant(column)
    if isinstance(column.type, DateTime):
        return _instant_or_null(column)
    return column


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
    # sign (see _list_item); the has_proxy filter keeps the indexed predicate.
    videos.c.proxy_path,
    videos.c.thumbnail_path,
    videos.c.original_path,
    _readable(videos.c.uploaded_at),
    _readable(videos.c.recorded_at),
)
TRASH_LIST_COLUMNS = (*LIST_COLUMNS, _readable(videos.c.trashed_at))
# The columns of the contract's detail: not the worker's own (hold, trash).
OWN_COLUMNS = ("legal_hold", "trashed_at", "trashed_by")
DETAIL_COLUMNS = (
    *(_readable(c) for c in videos.c if c.name not in OWN_COLUMNS),
    pins.c.name.label("pin_name"),
)
REMOVED_COLUMNS = (
    videos.c.id,
    videos.c.mall_id,
    videos.c.original_path,
    videos.c.proxy_path,
    videos.c.thumbnail_path,
    videos.c.pin_id,
    STORED_BYTES.label("stored_bytes"),
)
TRASHED_COLUMNS = (
    videos.c.id,
    videos.c.mall_id,
    videos.c.pin_id,
    _readable(videos.c.trashed_at),
)
WITH_PIN = videos.outerjoin(pins, pins.c.id == videos.c.pin_id)


def visible(scope: Scope, table: Table = videos) -> list[ColumnElement[bool]]:
    """The conditions that keep a statement to what the scope sees: the one place the
    access scope becomes SQL, added to every read and every delete of ``videos`` and to
    every sum of its trigger-kept figures (``table``: a table with the same ``mall_id``,
    and ``pin_id`` for a tenant's scope; see ``by_pin``).

    An operator's malls and a tenant's pins are equality-indexed columns, so the filter
    narrows the same indexes the other filters use. Several ids are one array parameter
    (``mall_id = ANY(:scope_ids)``, which PostgreSQL plans as it plans ``IN``), so a
    statement's text is the same for every caller of a role: it can be built once and
    prepared once (see ``_Shaped``). One id (a tenant of one pin, an operator of one
    mall: the common case) is an equality, ``pin_id = :scope_id``: then the newest-first
    page is read from the pin's or the mall's own list index, as for a ``pin_id``
    filter, where an ``ANY`` may be planned as a scan of every live video's index.
    """
    ids = _scope_ids(scope)
    if ids is None:
        return []
    if not ids:
        return [false()]
    column = table.c.mall_id if scope.role == "operator" else table.c.pin_id
    if len(ids) == 1:
        return [column == bindparam(SCOPE_ID, next(iter(ids)), type_=Uuid)]
    return [column == any_(bindparam(SCOPE_IDS, sorted(ids), type_=ARRAY(Uuid)))]


SCOPE_IDS = "scope_ids"
SCOPE_ID = "scope_id"


def _scope_ids(scope: Scope) -> frozenset[UUID] | None:
    """The malls or pins a scope is limited to; None for one that sees everything."""
    if scope.role == "admin":
        return None
    return scope.malls if scope.role == "operator" else scope.pins


def scope_shape(scope: Scope) -> str:
    """What ``visible`` makes of a scope, without its ids."""
    ids = _scope_ids(scope)
    if ids is None:
        return "admin"
    if not ids:
        return "nobody"
    return f"{scope.role}:one" if len(ids) == 1 else scope.role


def scope_parameters(scope: Scope) -> dict[str, Any]:
    """The ids ``visible`` binds, as execution parameters of a statement built once."""
    ids = _scope_ids(scope)
    if not ids:
        return {}
    return {SCOPE_ID: next(iter(ids))} if len(ids) == 1 else {SCOPE_IDS: sorted(ids)}


def search_pattern(q: str) -> str:
    """``q`` as an ILIKE pattern matching it anywhere, its ``%``, ``_`` and ``\\`` literal."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_condition(q: str) -> ColumnElement[bool]:
    # ILIKE, not lower() LIKE: the trigram indexes are on the columns themselves.
    pattern = bindparam("q_pattern", search_pattern(q), type_=Text)
    return or_(
        videos.c.original_filename.ilike(pattern, escape="\\"),
        videos.c.operator_notes.ilike(pattern, escape="\\"),
    )


# The filters that are values (the rest shape the statement): each one bind parameter,
# named as the field, in every statement that takes it.
VALUE_FILTERS = ("mall_id", "pin_id", "processing_status")


def _list_filters(scope: Scope, query: VideoFilters, trashed: bool = False) -> list[Any]:
    conditions: list[Any] = [TRASHED if trashed else LIVE, *visible(scope)]
    for name in VALUE_FILTERS:
        value = getattr(query, name)
        if value is not None:
            conditions.append(videos.c[name] == bindparam(name, value))
    if query.has_proxy is not None:
        # Written exactly as the partial indexes' predicates, so the planner matches them.
        conditions.append(HAS_PROXY if query.has_proxy else videos.c.proxy_path.is_(None))
    if query.uploaded_after is not None:
        conditions.append(videos.c.uploaded_at >= bindparam("uploaded_after", query.uploaded_after))
    if query.uploaded_before is not None:
        conditions.append(
            videos.c.uploaded_at < bindparam("uploaded_before", query.uploaded_before)
        )
    if query.q is not None:
        conditions.append(search_condition(query.q))
    return conditions


def _filter_values(query: VideoFilters, dated: bool = True) -> dict[str, Any]:
    """The bind parameters ``_list_filters`` gives these filters (without the dates
    unless ``dated``)."""
    values = {name: getattr(query, name) for name in VALUE_FILTERS}
    if dated:
        values["uploaded_after"] = query.uploaded_after
        values["uploaded_before"] = query.uploaded_before
    if query.q is not None:
        values["q_pattern"] = search_pattern(query.q)
    return {name: value for name, value in values.items() if value is not None}


def _figure_filters(table: Table, scope: Scope, query: VideoFilters, trashed: bool) -> list[Any]:
    """``_list_filters`` without the dates and ``q``, on a table of trigger-kept figures."""
    conditions: list[Any] = [table.c.trashed.is_(trashed), *visible(scope, table)]
    for name in (*VALUE_FILTERS, "has_proxy"):
        value = getattr(query, name)
        if value is not None:
            conditions.append(table.c[name] == bindparam(name, value))
    return conditions


def _summed(table: Table, column: Any, conditions: list[Any]) -> ColumnElement[Any]:
    return func.coalesce(
        select(func.sum(table.c.videos)).where(*conditions, column).scalar_subquery(), ZERO
    )


ZERO = literal_column("0")


def _in(column: Any, name: str, start: Any, end: Any) -> ColumnElement[bool]:
    """``start <= column < end``, a None bound open; the bounds are the bind parameters
    ``<name>_from`` and ``<name>_to`` (see ``_bounds``)."""
    parts = []
    if start is not None:
        parts.append(column >= bindparam(f"{name}_from", start))
    if end is not None:
        parts.append(column < bindparam(f"{name}_to", end))
    return and_(*parts) if parts else true()


def _bounds(name: str, start: Any, end: Any, values: dict[str, Any]) -> None:
    """The parameters of ``_in(column, name, start, end)``."""
    if start is not None:
        values[f"{name}_from"] = start
    if end is not None:
        values[f"{name}_to"] = end


def exact_total(
    scope: Scope, query: ListVideos
) -> tuple[tuple[Any, ...], dict[str, Any], Callable[[], Select]] | None:
    """The exact total of a list without ``q``, from the trigger-kept figures: whole
    months and days summed, the partial days at the range's edges counted from the list
    indexes, in one statement (one snapshot). Answers what shapes the statement beyond
    its parameters' names, the parameters, and how to build it; None when the range
    holds no whole day: the indexes then count it as fast."""
    parts = spans.split(query.uploaded_after, query.uploaded_before)
    if parts is None:
        return None
    values = {**scope_parameters(scope), **_filter_values(query, dated=False)}
    if query.has_proxy is not None:
        values["has_proxy"] = query.has_proxy
    if parts.months is not None:
        _bounds("month", *parts.months, values)
    for i, (start, end) in enumerate(parts.days):
        _bounds(f"day{i}", start, end, values)
    for i, (start, end) in enumerate(parts.edges):
        _bounds(f"edge{i}", start, end, values)

    pinned = by_pin(scope, query.pin_id)
    daily, monthly = figure_tables(pinned)

    def build() -> Select:
        terms: list[ColumnElement[Any]] = []
        if parts.months is not None:
            terms.append(
                _summed(
                    monthly,
                    _in(monthly.c.month, "month", *parts.months),
                    _figure_filters(monthly, scope, query, query.trashed),
                )
            )
        if parts.days:
            day = daily.c.day
            terms.append(
                _summed(
                    daily,
                    or_(*(_in(day, f"day{i}", *bounds) for i, bounds in enumerate(parts.days))),
                    _figure_filters(daily, scope, query, query.trashed),
                )
            )
        if parts.edges:
            undated = query.model_copy(update={"uploaded_after": None, "uploaded_before": None})
            at = videos.c.uploaded_at
            edges = (_in(at, f"edge{i}", *bounds) for i, bounds in enumerate(parts.edges))
            terms.append(
                select(func.count())
                .select_from(videos)
                .where(*_list_filters(scope, undated, trashed=query.trashed), or_(*edges))
                .scalar_subquery()
            )
        total: ColumnElement[Any] = terms[0]
        for term in terms[1:]:
            total = total + term
        return select(total)

    return (parts.months is not None, pinned), values, build


class _Shaped:
    """Statements built once per shape and run with the caller's values.

    A read's statements are the same SQL for every call with the same filters present,
    the same scope role, has_proxy and trash flags: only values differ, and every value
    is a named bind parameter. Built anew, they cost more CPU than PostgreSQL takes to
    answer a primary-key read (~0.25 ms for a get, ~0.5 ms for a list page and its
    total: construction and SQLAlchemy's cache-key walk); kept, a dictionary look-up. A statement
    is kept only if every parameter it binds is one the caller passes (checked once, when
    it is built), so no value of the call that built it can reach another call.
    """

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.built: dict[tuple[Any, ...], Select] = {}
        # The statements kept, by identity: ``owns`` tells the held read connections
        # (``held.py``) which statements bind nothing but the caller's named values.
        self.kept: dict[int, Select] = {}

    def get(
        self, key: tuple[Any, ...], values: dict[str, Any], build: Callable[[], Select]
    ) -> Select:
        key = (*key, frozenset(values))
        statement = self.built.get(key)
        if statement is None:
            statement = build()
            bound = {
                node.key for node in visitors.iterate(statement) if isinstance(node, BindParameter)
            }
            if bound != set(values):
                raise RuntimeError(f"statement binds {sorted(bound)}, given {sorted(values)}")
            if len(self.built) >= self.limit:
                self.built.clear()
                self.kept.clear()
            self.built[key] = statement
            self.kept[id(statement)] = statement
        return statement

    def owns(self, statement: object) -> bool:
        return self.kept.get(id(statement)) is statement


SHAPED = _Shaped()


def _shape(scope: Scope, query: ListVideos, kind: str) -> tuple[Any, ...]:
    return (kind, scope_shape(scope), query.trashed, query.has_proxy)


def _selection(
    scope: Scope, video_ids: Sequence[UUID] | None, filters: VideoFilters | None
) -> list[Any]:
    """What a bulk delete takes: these ids (in the trash or not), or what a list with these
    filters shows (not the trash). Never neither: the schema refuses it, and so does this."""
    if video_ids is not None:
        return [videos.c.id.in_(sorted(set(video_ids))), *visible(scope)]
    if filters is None or filters.is_empty():
        raise ValueError("a bulk selection needs video ids or at least one filter")
    return _list_filters(scope, filters)


def _figure(column: Any, *where: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column).filter(*where), 0)


def _stats_columns(t: Table) -> tuple[Any, ...]:
    """Figures of what is not in the trash, and of what is, summed from the trigger-kept
    monthly figures ``t`` (a few rows per mall, or pin, and month): FILTERs of one
    aggregate."""
    live, trashed, status = t.c.trashed.is_(False), t.c.trashed.is_(True), t.c.processing_status
    return (
        _figure(t.c.videos, live).label("total_videos"),
        *(
            _figure(t.c.videos, live, status == name).label(name)
            for name in StatusCounts.model_fields
        ),
        _figure(t.c.stored_bytes, live).label("total_storage_bytes"),
        _figure(t.c.duration_seconds, live).label("total_duration_seconds"),
        _figure(t.c.videos, trashed).label("trash_videos"),
        _figure(t.c.stored_bytes, trashed).label("trash_bytes"),
    )


# A constant of this worker's own (an arbitrary bigint): the fold's advisory lock.
FOLD_LOCK = 0x76776F666F6C64
# Every writer's rows (slot = its pid) of one table moved into slot 0, summed per key
# and period; rows a writer's open transaction holds are skipped.
FOLD = """
WITH moved AS (
    DELETE FROM {table} AS d
    WHERE d.ctid IN (SELECT ctid FROM {table} WHERE slot <> 0 FOR UPDATE SKIP LOCKED)
    RETURNING d.*
), folded AS (
    INSERT INTO {table} AS c ({period}, {key}, slot, videos, stored_bytes, duration_seconds)
    SELECT {period}, {key}, 0, sum(videos), sum(stored_bytes), sum(duration_seconds)
    FROM moved
    GROUP BY {period}, {key}
    ORDER BY {period}, {key}
    ON CONFLICT ON CONSTRAINT {pk} DO UPDATE SET
        videos = c.videos + excluded.videos,
        stored_bytes = c.stored_bytes + excluded.stored_bytes,
        duration_seconds = c.duration_seconds + excluded.duration_seconds
)
SELECT count(*) FROM moved
"""


def _trashed_video(row: Any, newly: bool) -> TrashedVideo:
    """A row of TRASHED_COLUMNS: its ``trashed_at``, read as UTC wall-clock time (see
    ``_utc``), is given its zone back, as every datetime the ports hand out has one."""
    video_id, mall_id, pin_id, trashed_at = row
    if trashed_at is not None:
        trashed_at = trashed_at.replace(tzinfo=UTC)
    return TrashedVideo(video_id, mall_id, pin_id, trashed_at, newly=newly)


def _list_item(row: Any) -> VideoListItem:
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


def _stats_from_row(row: Any, mall_id: UUID | None, at: datetime) -> VideoStats:
    # The figures are numeric sums: whole numbers for counts and bytes.
    return VideoStats(
        mall_id=mall_id,
        total_videos=int(row.total_videos),
        by_status=StatusCounts(
            pending=int(row.pending),
            processing=int(row.processing),
            completed=int(row.completed),
            failed=int(row.failed),
        ),
        total_storage_bytes=int(row.total_storage_bytes),
        total_duration_seconds=float(row.total_duration_seconds),
        refreshed_at=at,
        trash=TrashFigures(
            total_videos=int(row.trash_videos), total_storage_bytes=int(row.trash_bytes)
        ),
    )


def _zero_stats(mall_id: UUID | None, at: datetime) -> VideoStats:
    return VideoStats(
        mall_id=mall_id,
        total_videos=0,
        by_status=StatusCounts(),
        total_storage_bytes=0,
        total_duration_seconds=0.0,
        refreshed_at=at,
    )


def _details(scope: Scope, one: bool, trashed: bool = False) -> Select:
    """Videos' detail columns by id (``video_id``) or ids (``video_ids``)."""
    by_id = (
        videos.c.id == bindparam("video_id")
        if one
        else videos.c.id == any_(bindparam("video_ids", type_=ARRAY(Uuid)))
    )
    return (
        select(*DETAIL_COLUMNS)
        .select_from(WITH_PIN)
        .where(by_id, TRASHED if trashed else LIVE, *visible(scope))
    )


class PostgresVideoRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def list(self, scope: Scope, query: ListVideos) -> tuple[list[VideoListItem], int]:
        offset = (query.page - 1) * query.page_size
        values = {
            **scope_parameters(scope),
            **_filter_values(query),
            "page_size": query.page_size,
            "page_offset": offset,
        }
        with_total = query.q is not None

        def page() -> Select:
            return self._page(query, _list_filters(scope, query, query.trashed), with_total)

        statement = SHAPED.get(_shape(scope, query, "page"), values, page)
        if with_total:
            # A search finds its matches through the trigram indexes and rechecks each on
            # its table page: the page and its total are taken in that one pass (a
            # window count), not found twice. Only a page past the end counts apart.
            rows = list(self.connection.execute(statement, values))
            if rows:
                return [_list_item(row) for row in rows], rows[0].page_total
            # An empty first page is a total of 0; past the end, the true total is asked.
            return [], self._count(scope, query) if offset else 0
        total = self._total(scope, query)
        if total <= offset:
            return [], total
        rows = self.connection.execute(statement, values)
        return [_list_item(row) for row in rows], total

    def _total(self, scope: Scope, query: ListVideos) -> int:
        """The exact total: from the kept figures, or counted when that is as fast."""
        planned = exact_total(scope, query)
        if planned is None:
            return self._count(scope, query)
        shape, values, build = planned
        statement = SHAPED.get((*_shape(scope, query, "total"), *shape), values, build)
        return int(self.connection.execute(statement, values).scalar_one())

    def _count(self, scope: Scope, query: ListVideos) -> int:
        """``count(*)`` of what the list shows, through the list indexes."""
        values = {**scope_parameters(scope), **_filter_values(query)}

        def count() -> Select:
            conditions = _list_filters(scope, query, query.trashed)
            return select(func.count()).select_from(videos).where(*conditions)

        statement = SHAPED.get(_shape(scope, query, "count"), values, count)
        return self.connection.execute(statement, values).scalar_one()

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
        values = {"video_id": video_id, **scope_parameters(scope)}
        statement = SHAPED.get(
            ("detail", scope_shape(scope)), values, lambda: _details(scope, one=True)
        )
        row = self.connection.execute(statement, values).first()
        return None if row is None else VideoDetailResponse.model_validate(row._mapping)

    def get_many(
        self, scope: Scope, video_ids: Sequence[UUID], trashed: bool = False
    ) -> dict[UUID, VideoDetailResponse]:
        if not video_ids:
            return {}
        values = {"video_ids": sorted(set(video_ids)), **scope_parameters(scope)}
        statement = SHAPED.get(
            ("details", scope_shape(scope), trashed),
            values,
            lambda: _details(scope, one=False, trashed=trashed),
        )
        rows = self.connection.execute(statement, values)
        found = (VideoDetailResponse.model_validate(row._mapping) for row in rows)
        return {video.id: video for video in found}

    def trash(
        self, scope: Scope, video_id: UUID, at: datetime, by: str | None
    ) -> TrashedVideo | None:
        row = self.connection.execute(
            update(videos)
            .where(videos.c.id == video_id, LIVE, *visible(scope))
            .values(trashed_at=at, trashed_by=by)
            .returning(*TRASHED_COLUMNS)
        ).first()
        if row is not None:
            return _trashed_video(row, newly=True)
        # Already in the trash: the same answer again (a redelivery, a second click).
        row = self.connection.execute(
            select(*TRASHED_COLUMNS).where(videos.c.id == video_id, TRASHED, *visible(scope))
        ).first()
        return None if row is None else _trashed_video(row, newly=False)

    def restore(self, scope: Scope, video_id: UUID) -> TrashedVideo | None:
        # RETURNING gives the new (null) trashed_at: the old one comes from a self-join.
        old = videos.alias("old")
        row = self.connection.execute(
            update(videos)
            .where(videos.c.id == video_id, TRASHED, *visible(scope), old.c.id == videos.c.id)
            .values(trashed_at=None, trashed_by=None)
            .returning(videos.c.id, videos.c.mall_id, videos.c.pin_id, _readable(old.c.trashed_at))
        ).first()
        return None if row is None else _trashed_video(row, newly=True)

    def find_selected(self, scope: Scope, video_ids: Sequence[UUID]) -> set[UUID]:
        """The ids among these that the scope sees, in the trash or not."""
        return set(
            self.connection.execute(
                select(videos.c.id).where(*_selection(scope, video_ids, None))
            ).scalars()
        )

    def summarise_selected(self, scope: Scope, filters: VideoFilters) -> ExpiredSummary:
        count, total_bytes = self.connection.execute(
            select(func.count(), func.coalesce(func.sum(STORED_BYTES), 0)).where(
                *_selection(scope, None, filters)
            )
        ).one()
        return ExpiredSummary(count=count, bytes=int(total_bytes))

    def _claim(self, conditions: list[Any], limit: int, order: Any = OLDEST_FIRST) -> Any:
        # Rows another remover has locked are skipped rather than waited for.
        return (
            select(videos.c.id)
            .where(*conditions)
            .order_by(*order)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )

    def delete_selected(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        limit: int,
    ) -> list[RemovedVideo]:
        claim = self._claim(_selection(scope, video_ids, filters), limit)
        rows = self.connection.execute(
            delete(videos).where(videos.c.id.in_(claim)).returning(*REMOVED_COLUMNS)
        )
        return [RemovedVideo(*row) for row in rows]

    def trash_selected(
        self,
        scope: Scope,
        video_ids: Sequence[UUID] | None,
        filters: VideoFilters | None,
        limit: int,
        at: datetime,
        by: str | None,
    ) -> list[TrashedVideo]:
        claim = self._claim([*_selection(scope, video_ids, filters), LIVE], limit)
        rows = self.connection.execute(
            update(videos)
            .where(videos.c.id.in_(claim))
            .values(trashed_at=at, trashed_by=by)
            .returning(*TRASHED_COLUMNS)
        )
        return [_trashed_video(row, newly=True) for row in rows]

    def _trash_due(self, scope: Scope, mall_id: UUID | None, before: datetime) -> list[Any]:
        conditions = [TRASHED, videos.c.trashed_at < before, NOT_HELD, *visible(scope)]
        if mall_id is not None:
            conditions.append(videos.c.mall_id == mall_id)
        return conditions

    def summarise_trash_due(
        self, scope: Scope, mall_id: UUID | None, before: datetime
    ) -> ExpiredSummary:
        count, total_bytes = self.connection.execute(
            select(func.count(), func.coalesce(func.sum(STORED_BYTES), 0)).where(
                *self._trash_due(scope, mall_id, before)
            )
        ).one()
        return ExpiredSummary(count=count, bytes=int(total_bytes))

    def delete_trash_due(
        self, scope: Scope, mall_id: UUID | None, before: datetime, limit: int
    ) -> list[RemovedVideo]:
        claim = self._claim(
            self._trash_due(scope, mall_id, before), limit, (videos.c.trashed_at, videos.c.id)
        )
        rows = self.connection.execute(
            delete(videos).where(videos.c.id.in_(claim)).returning(*REMOVED_COLUMNS)
        )
        return [RemovedVideo(*row) for row in rows]

    def mall_quotas(self, mall_id: UUID | None) -> list[tuple[UUID, int]]:
        stmt = select(mall_retention.c.mall_id, mall_retention.c.max_storage_bytes).where(
            mall_retention.c.max_storage_bytes.is_not(None)
        )
        if mall_id is not None:
            stmt = stmt.where(mall_retention.c.mall_id == mall_id)
        return [
            tuple(row) for row in self.connection.execute(stmt.order_by(mall_retention.c.mall_id))
        ]

    def mall_storage(self, mall_id: UUID) -> int:
        """Originals plus proxies of every video of the mall, in the trash too."""
        return int(
            self.connection.execute(
                select(func.coalesce(func.sum(STORED_BYTES), 0)).where(videos.c.mall_id == mall_id)
            ).scalar_one()
        )

    def delete_for_quota(
        self, scope: Scope, mall_id: UUID, excess: int, limit: int
    ) -> list[RemovedVideo]:
        """The mall's oldest videos, never a held one, until ``excess`` bytes are freed.

        The candidates are claimed first (a window function cannot share a query with
        FOR UPDATE); the running sum then keeps those needed, the rest are released at
        commit untouched.
        """
        candidates = (
            select(
                videos.c.id,
                videos.c.uploaded_at,
                func.greatest(STORED_BYTES, 0).label("size"),
            )
            .where(videos.c.mall_id == mall_id, NOT_HELD, *visible(scope))
            .order_by(*OLDEST_FIRST)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("candidates")
        )
        freed_before = (
            func.sum(candidates.c.size).over(order_by=(candidates.c.uploaded_at, candidates.c.id))
            - candidates.c.size
        )
        running = select(candidates.c.id, freed_before.label("freed_before")).subquery("running")
        needed = select(running.c.id).where(running.c.freed_before < excess)
        rows = self.connection.execute(
            delete(videos).where(videos.c.id.in_(needed)).returning(*REMOVED_COLUMNS)
        )
        return [RemovedVideo(*row) for row in rows]

    def delete(self, scope: Scope, video_id: UUID) -> RemovedVideo | None:
        row = self.connection.execute(
            delete(videos)
            .where(videos.c.id == video_id, *visible(scope))
            .returning(*REMOVED_COLUMNS)
        ).first()
        return None if row is None else RemovedVideo(*row)

    def delete_expired(
        self, scope: Scope, retention: RetentionScope, limit: int
    ) -> list[RemovedVideo]:
        # The mall's (mall_id, uploaded_at) index, oldest first; rows another sweep has
        # locked are skipped rather than waited for.
        claim = (
            select(videos.c.id)
            .where(
                videos.c.mall_id == retention.mall_id,
                videos.c.uploaded_at < retention.cutoff,
                NOT_HELD,
                *visible(scope),
            )
            .order_by(*OLDEST_FIRST)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = self.connection.execute(
            delete(videos)
            .where(videos.c.id.in_(claim.scalar_subquery()))
            .returning(*REMOVED_COLUMNS)
        )
        return [RemovedVideo(*row) for row in rows]

    def summarise_expired(self, scope: Scope, retention: RetentionScope) -> ExpiredSummary:
        count, total_bytes = self.connection.execute(
            select(func.count(), func.coalesce(func.sum(STORED_BYTES), 0)).where(
                videos.c.mall_id == retention.mall_id,
                videos.c.uploaded_at < retention.cutoff,
                NOT_HELD,
                *visible(scope),
            )
        ).one()
        return ExpiredSummary(count=count, bytes=int(total_bytes))

    def mall_retention_days(self, mall_id: UUID | None) -> list[tuple[UUID, int | None]]:
        stmt = select(malls.c.id, mall_retention.c.retention_days).select_from(
            malls.outerjoin(mall_retention, mall_retention.c.mall_id == malls.c.id)
        )
        if mall_id is not None:
            stmt = stmt.where(malls.c.id == mall_id)
        return [
            (row.id, row.retention_days)
            for row in self.connection.execute(stmt.order_by(malls.c.id))
        ]

    def referenced_keys(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        key_list = list(set(keys))
        found: set[str] = set()
        for column in (videos.c.original_path, videos.c.proxy_path, videos.c.thumbnail_path):
            found.update(
                self.connection.execute(
                    select(column).where(column.in_(key_list)).distinct()
                ).scalars()
            )
        return found

    def stats(
        self, scope: Scope, mall_id: UUID | None, at: datetime, pin_id: UUID | None = None
    ) -> VideoStats:
        _, t = figure_tables(by_pin(scope, pin_id))
        stmt = select(*_stats_columns(t)).where(*visible(scope, t))
        if mall_id is not None:
            stmt = stmt.where(t.c.mall_id == mall_id)
        if pin_id is not None:
            stmt = stmt.where(t.c.pin_id == pin_id)
        return _stats_from_row(self.connection.execute(stmt).one(), mall_id, at)

    def pin_figures(
        self, scope: Scope, mall_id: UUID | None, pin_id: UUID | None, limit: int
    ) -> list[PinFigures]:
        t = counts_monthly
        conditions = [t.c.trashed.is_(False), *visible(scope, t)]
        if mall_id is not None:
            conditions.append(t.c.mall_id == mall_id)
        if pin_id is not None:
            conditions.append(t.c.pin_id == pin_id)
        storage = func.sum(t.c.stored_bytes)
        per_pin = (
            select(
                t.c.pin_id,
                cast(func.sum(t.c.videos), BigInteger).label("total_videos"),
                cast(storage, BigInteger).label("total_storage_bytes"),
                cast(func.sum(t.c.duration_seconds), Double).label("total_duration_seconds"),
            )
            .where(*conditions)
            .group_by(t.c.pin_id)
            # A pin whose videos are all gone keeps rows of zeros until they are folded.
            .having(func.sum(t.c.videos) > 0)
            .order_by(storage.desc(), t.c.pin_id)
            .limit(limit)
            .subquery("per_pin")
        )
        rows = self.connection.execute(
            select(per_pin, pins.c.name.label("pin_name"))
            .select_from(per_pin.outerjoin(pins, pins.c.id == per_pin.c.pin_id))
            .order_by(per_pin.c.total_storage_bytes.desc(), per_pin.c.pin_id)
        )
        return [PinFigures.model_validate(row._mapping) for row in rows]

    def stats_per_pin(
        self, scope: Scope, pin_ids: Sequence[UUID], at: datetime
    ) -> dict[UUID, VideoStats]:
        wanted = sorted(set(pin_ids))
        if not wanted:
            return {}
        t = counts_monthly
        stmt = (
            select(t.c.pin_id, *_stats_columns(t))
            .where(t.c.pin_id.in_(wanted), *visible(scope, t))
            .group_by(t.c.pin_id)
        )
        found = {
            row.pin_id: _stats_from_row(row, None, at) for row in self.connection.execute(stmt)
        }
        return {pin_id: found.get(pin_id) or _zero_stats(None, at) for pin_id in wanted}

    def fold_figures(self) -> int:
        """One fold at a time (an advisory lock; a second refresh skips it), and it never
        waits: rows a writer holds are skipped, left for the next fold. A writer that
        meets a row being folded waits for the fold's commit and then writes a new row
        (ON CONFLICT retries its insert), so no change is lost or counted twice."""
        if not self.connection.execute(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": FOLD_LOCK}
        ).scalar_one():
            return 0
        folded = 0
        for model in FIGURE_MODELS:
            table = model.__table__
            folded += self.connection.execute(
                text(
                    FOLD.format(
                        table=table.name,
                        period=model.period,
                        key=", ".join(model.key_columns),
                        pk=table.primary_key.name,
                    )
                )
            ).scalar_one()
            c = table.c
            self.connection.execute(
                delete(table).where(
                    c.slot == 0, c.videos == 0, c.stored_bytes == 0, c.duration_seconds == 0
                )
            )
        return folded

    def stats_per_mall(self, at: datetime) -> list[VideoStats]:
        # Malls with no video left still get their zeros, so a mall whose last video just
        # went is not cached stale.
        t = counts_mall_monthly
        stmt = select(t.c.mall_id, *_stats_columns(t)).group_by(t.c.mall_id)
        found = {
            row.mall_id: _stats_from_row(row, row.mall_id, at)
            for row in self.connection.execute(stmt)
        }
        for mall_id in self.connection.execute(select(malls.c.id)).scalars():
            if mall_id not in found:
                found[mall_id] = _zero_stats(mall_id, at)
        return list(found.values())

    def referenced_keys_in_order(self, prefix: str = "") -> Iterator[str]:
        parts = [
            select(column.label("k")).where(
                column.is_not(None), column.startswith(prefix, autoescape=True)
            )
            for column in (videos.c.original_path, videos.c.proxy_path, videos.c.thumbnail_path)
        ]
        keys = union_all(*parts).subquery()
        # Byte order, as S3 lists keys; the collation must be in the select list for DISTINCT.
        stmt = select(keys.c.k.collate("C").label("k")).distinct().order_by(literal_column("k"))
        result = self.connection.execution_options(stream_results=True, yield_per=2000).execute(
            stmt
        )
        for (key,) in result:
            yield key

    def set_mall_retention(
        self, mall_id: UUID, days: int | None = None, max_storage_bytes: int | None = None
    ) -> bool:
        if days is None and max_storage_bytes is None:
            # Nothing to set: the schema refuses it, and so does the table's check.
            raise ValueError("a mall's retention needs days, a storage quota or both")
        if self.connection.execute(select(malls.c.id).where(malls.c.id == mall_id)).first() is None:
            return False
        given = {
            name: value
            for name, value in (("retention_days", days), ("max_storage_bytes", max_storage_bytes))
            if value is not None
        }
        stmt = pg_insert(mall_retention).values(mall_id=mall_id, **given)
        self.connection.execute(
            stmt.on_conflict_do_update(
                index_elements=[mall_retention.c.mall_id],
                set_={**given, "updated_at": func.now()},
            )
        )
        return True

    def clear_mall_retention(self, mall_id: UUID) -> bool:
        removed = self.connection.execute(
            delete(mall_retention)
            .where(mall_retention.c.mall_id == mall_id)
            .returning(mall_retention.c.mall_id)
        ).first()
        return removed is not None

    def set_legal_hold(self, video_id: UUID, held: bool) -> bool:
        changed = self.connection.execute(
            update(videos)
            .where(videos.c.id == video_id)
            .values(legal_hold=held)
            .returning(videos.c.id)
        ).first()
        return changed is not None


# One transaction-level advisory lock per key (64-bit hash of its text).
LOCK_KEYS = text(
    "SELECT count(pg_advisory_xact_lock(h)) FROM ("
    " SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(CAST(:keys AS text[])) AS k"
    " ORDER BY h OFFSET 0) AS ordered"
)


def select_queued() -> Select:
    return select(
        deletions.c.id, deletions.c.object_key, deletions.c.attempts, deletions.c.video_id
    )


class PostgresDeletionQueue:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def enqueue(self, keys: Sequence[QueuedKey], not_before: datetime) -> list[int]:
        if not keys:
            return []
        rows = self.connection.execute(
            insert(deletions).returning(deletions.c.id, sort_by_parameter_order=True),
            [
                {
                    "object_key": key.object_key,
                    "video_id": key.video_id,
                    "mall_id": key.mall_id,
                    "reason": key.reason,
                    "next_attempt_at": not_before,
                }
                for key in keys
            ],
        )
        return list(rows.scalars())

    def claim(self, ids: Sequence[int]) -> list[QueuedDeletion]:
        if not ids:
            return []
        return self._claim(select_queued().where(deletions.c.id.in_(list(ids))), len(ids))

    def claim_due(
        self, now: datetime, limit: int, due_only: bool = True, after_id: int = 0
    ) -> list[QueuedDeletion]:
        stmt = select_queued().where(deletions.c.id > after_id)
        if due_only:
            stmt = stmt.where(deletions.c.next_attempt_at <= now)
        return self._claim(stmt, limit)

    def _claim(self, stmt: Select, limit: int) -> list[QueuedDeletion]:
        rows = self.connection.execute(
            stmt.order_by(deletions.c.id).limit(limit).with_for_update(skip_locked=True)
        )
        return [QueuedDeletion(*row) for row in rows]

    def lock_keys(self, keys: Sequence[str]) -> None:
        # In hash order, so that two removers of overlapping key sets take their locks in
        # the same order and never deadlock; OFFSET 0 keeps the sort below the locking.
        if keys:
            self.connection.execute(LOCK_KEYS, {"keys": list(keys)})

    def complete(self, ids: Iterable[int]) -> None:
        id_list = list(ids)
        if id_list:
            self.connection.execute(delete(deletions).where(deletions.c.id.in_(id_list)))

    def retry_later(self, failures: dict[int, tuple[str, datetime]]) -> None:
        if not failures:
            return
        self.connection.execute(
            update(deletions)
            .where(deletions.c.id == bindparam("queue_id"))
            .values(
                attempts=deletions.c.attempts + 1,
                last_error=bindparam("error"),
                next_attempt_at=bindparam("retry_at"),
            ),
            [
                {"queue_id": queue_id, "error": error[:500], "retry_at": retry_at}
                for queue_id, (error, retry_at) in failures.items()
            ],
        )

    def queued_among(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        return set(
            self.connection.execute(
                select(deletions.c.object_key).where(deletions.c.object_key.in_(list(keys)))
            ).scalars()
        )

    def pending(self) -> int:
        return self.connection.execute(select(func.count()).select_from(deletions)).scalar_one()

    def stuck(self, min_attempts: int) -> int:
        return self.connection.execute(
            select(func.count()).select_from(deletions).where(deletions.c.attempts >= min_attempts)
        ).scalar_one()


class PostgresDeletionAudit:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def record(
        self,
        removed: Sequence[RemovedVideo],
        reason: str,
        outcome: str,
        request_id: str | None = None,
        actor: str | None = None,
    ) -> None:
        if removed:
            self.connection.execute(
                insert(audit),
                [
                    {
                        "video_id": video.id,
                        "mall_id": video.mall_id,
                        "reason": reason,
                        "object_keys": video.object_keys,
                        "outcome": outcome,
                        "request_id": request_id,
                        "actor": actor,
                    }
                    for video in removed
                ],
            )

    def settle(self, video_ids: Iterable[UUID]) -> None:
        ids = list(set(video_ids))
        if not ids:
            return
        still_queued = exists().where(deletions.c.video_id == audit.c.video_id)
        self.connection.execute(
            update(audit)
            .where(
                audit.c.video_id.in_(ids),
                audit.c.outcome.in_(("files_queued", "files_pending")),
            )
            .values(
                outcome=case((still_queued, "files_pending"), else_="files_deleted"),
            )
        )

    def find(self, video_id: UUID, request_id: str) -> PastDeletion | None:
        row = self.connection.execute(
            select(audit.c.object_keys, audit.c.outcome).where(
                audit.c.video_id == video_id, audit.c.request_id == request_id
            )
        ).first()
        if row is None:
            return None
        queued = self.connection.execute(
            select(deletions.c.object_key).where(deletions.c.video_id == video_id)
        ).scalars()
        return PastDeletion(
            video_id=video_id,
            object_keys=list(row.object_keys),
            still_queued=list(queued),
            files_kept=row.outcome == "files_kept",
        )
