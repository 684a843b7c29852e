"""A list by tags, read from ``video_tags``: its page and exact total.

Each pair carries its video's mall, pin, upload instant and whether it is in the trash
(migration 0019), so a tag's videos are found newest first, and counted, from one index
of ``video_tags`` (``ix_video_tags_live_tag_recent`` or its trashed twin) instead of
walking every video's newest-first index and asking about each row. Tags belong to a
mall, so everything is done mall by mall: each mall's tag of the first name (one index
look-up of ``tags``), joined to the same mall's tags of the other names (a mall without
one of them drops out), then, laterally, that tag's pairs joined by video to the other
tags' pairs. A mall's page is at most ``offset + page_size`` rows of its index; the
malls' pages are then merged and cut. Only the page's rows are read from ``videos``
(the deferred join the other lists use).

Filters on the copied columns (the scope, ``mall_id``, ``pin_id``, the upload range, a
cursor) narrow the index scan itself; ``processing_status`` and ``has_proxy`` join each
pair's video by its primary key. ``q`` is not served here: a search has its own budget
and capped total (``catalogue._search``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    FromClause,
    Integer,
    Select,
    Text,
    Uuid,
    bindparam,
    exists,
    func,
    literal_column,
    select,
    true,
    tuple_,
)

from handlers.access import Scope
from schemas.requests import ListVideos
from worker.adapters.postgres.rooms.query import (
    LIST_COLUMNS,
    TRASH_LIST_COLUMNS,
    Where,
    pins,
    scope_shape,
    scoped,
    tags,
    video_tags,
    videos,
)


def served(query: ListVideos) -> bool:
    """Whether this list is read from ``video_tags``: it names tags and searches no text."""
    return bool(query.tags) and query.q is None


def shape(scope: Scope, query: ListVideos, kind: str) -> tuple[Any, ...]:
    """What shapes a statement beyond the names of its parameters."""
    return ("tagged", kind, scope_shape(scope), query.trashed, query.has_proxy)


class Plan:
    """One list's statements, built once per shape, and the values they are run with."""

    def __init__(self, scope: Scope, query: ListVideos) -> None:
        self.query = query
        names = list(query.tags or ())
        self.first = tags.alias("tag0")
        self.others = [
            (tags.alias(f"tag{i}"), video_tags.alias(f"pair{i}")) for i in range(1, len(names))
        ]
        self.pair = video_tags.alias("pair0")
        self.values: dict[str, Any] = {f"tag{i}": name for i, name in enumerate(names)}
        # On the first name's tags: the malls it may be in.
        self.malls = Where()
        # On each pair of the first name's tags.
        self.pairs = Where()
        pair = self.pair
        self.pairs.add(pair.c.trashed if query.trashed else ~pair.c.trashed)
        # A pair's mall is its tag's (migration 0023): malls are chosen among the tags.
        if scope.role == "operator":
            self.malls.extend(scoped(scope, self.first))
        else:
            self.pairs.extend(scoped(scope, pair))
        if query.mall_id is not None:
            first = self.first
            self.malls.bind("mall_id", query.mall_id, lambda p: first.c.mall_id == p, Uuid)
        if query.pin_id is not None:
            self.pairs.bind("pin_id", query.pin_id, lambda p: pair.c.pin_id == p, Uuid)
        if query.uploaded_after is not None:
            self.pairs.bind(
                "uploaded_after", query.uploaded_after, lambda p: pair.c.uploaded_at >= p
            )
        if query.uploaded_before is not None:
            self.pairs.bind(
                "uploaded_before", query.uploaded_before, lambda p: pair.c.uploaded_at < p
            )
        # On the pair's video, when a filter is not copied to the pairs.
        self.video = Where()
        video = self.video_row = videos.alias("video")
        if query.processing_status is not None:
            self.video.bind(
                "processing_status",
                query.processing_status,
                lambda p: video.c.processing_status == p,
            )
        if query.has_proxy is not None:
            # As the list indexes' predicates are written.
            proxy = video.c.proxy_path
            self.video.add(proxy.is_not(None) if query.has_proxy else proxy.is_(None))
        for where in (self.malls, self.pairs, self.video):
            self.values.update(where.values)

    def _malls(self) -> FromClause:
        """Each mall's tag of the first name, joined to its tags of the others."""
        first = self.first
        joined: FromClause = first
        for i, (other, _) in enumerate(self.others, start=1):
            joined = joined.join(
                other,
                (other.c.mall_id == first.c.mall_id)
                & (func.lower(other.c.name) == func.lower(_name(i))),
            )
        return joined

    def _mall_conditions(self) -> list[ColumnElement[bool]]:
        return [func.lower(self.first.c.name) == func.lower(_name(0)), *self.malls.conditions()]

    def _hits(self, *columns: Any, probe: bool = False) -> Select:
        """A mall's videos carrying every name: its first tag's pairs, joined by video to
        the pairs of its other tags (and to the video itself when a filter needs it).

        Joined, for a total: each mall's pairs of the two tags hashed together. ``probe``,
        for a page: each pair, newest first, asks each other tag about its video until
        the page is full. As a join the planner may hash both tags' pairs whole and sort
        them (inside the lateral it cannot know a tag's size: 29 ms for two tags on
        100,000 videos at 10,000,000 rows, where the probes take 2); ``OFFSET 0`` keeps
        the EXISTS a per-row probe, never a join."""
        pair = self.pair
        joined: FromClause = pair
        probes: list[ColumnElement[bool]] = []
        for other, other_pair in self.others:
            carries = (other_pair.c.video_id == pair.c.video_id) & (
                other_pair.c.tag_id == other.c.id
            )
            if probe:
                asked = (
                    select(literal_column("1"))
                    .select_from(other_pair)
                    .where(carries)
                    .offset(literal_column("0"))
                    .correlate_except(other_pair)
                )
                probes.append(exists(asked))
            else:
                joined = joined.join(other_pair, carries)
        video_conditions = self.video.conditions()
        if video_conditions:
            joined = joined.join(self.video_row, self.video_row.c.id == pair.c.video_id)
        return (
            select(*columns)
            .select_from(joined)
            .where(
                # A pair's mall is its tag's (migration 0023 keeps it so): no check of it,
                # which the planner would take for a filter of one pair in twenty.
                pair.c.tag_id == self.first.c.id,
                *self.pairs.conditions(),
                *video_conditions,
                *probes,
            )
        )

    def total(self) -> Select:
        """Counted mall by mall, each from its tag's index (index-only without the
        video's own filters)."""
        counted = self._hits(func.count().label("videos")).lateral("counted")
        return (
            select(func.coalesce(func.sum(counted.c.videos), literal_column("0")))
            .select_from(self._malls().join(counted, true()))
            .where(*self._mall_conditions())
        )

    def page(self, keyset: bool) -> Select:
        """Each mall's newest ``offset + page_size`` from its tag's index, merged and cut;
        then the page's rows read from ``videos`` and joined to their pins."""
        pair = self.pair
        size = bindparam("page_size", type_=Integer)
        offset = bindparam("page_offset", type_=Integer)
        hits = self._hits(pair.c.video_id, pair.c.uploaded_at, probe=True)
        if keyset:
            after = tuple_(
                bindparam("after_at", type_=DateTime(timezone=True)),
                bindparam("after_id", type_=Uuid),
            )
            hits = hits.where(tuple_(pair.c.uploaded_at, pair.c.video_id) < after)
        newest = (
            hits.order_by(pair.c.uploaded_at.desc(), pair.c.video_id.desc())
            .limit(size + offset)
            .lateral("newest")
        )
        page = (
            select(newest.c.video_id.label("id"), newest.c.uploaded_at)
            .select_from(self._malls().join(newest, true()))
            .where(*self._mall_conditions())
            .order_by(newest.c.uploaded_at.desc(), newest.c.video_id.desc())
            .limit(size)
            .offset(offset)
            .subquery("page")
        )
        columns = list(TRASH_LIST_COLUMNS if self.query.trashed else LIST_COLUMNS)
        return (
            select(*columns)
            .select_from(
                page.join(videos, videos.c.id == page.c.id).outerjoin(
                    pins, pins.c.id == videos.c.pin_id
                )
            )
            .order_by(page.c.uploaded_at.desc(), page.c.id.desc())
        )


def _name(index: int) -> Any:
    return bindparam(f"tag{index}", type_=Text)


def listed(
    reads: Any, scope: Scope, query: ListVideos, window: Any, offset: int, limit: int
) -> tuple[list[Any], int]:
    """The page's rows and the exact total, on ``reads`` (``catalogue.ShapedReads``)."""
    plan = Plan(scope, query)
    keyset = window.after is not None
    total = int(reads.run(shape(scope, query, "total"), plan.values, plan.total).scalar_one())
    if total <= offset and not keyset:
        return [], total
    values = {**plan.values, "page_size": limit, "page_offset": offset}
    if keyset:
        values["after_at"], values["after_id"] = window.after
    rows = reads.run((*shape(scope, query, "page"), keyset), values, lambda: plan.page(keyset))
    return list(rows), total
