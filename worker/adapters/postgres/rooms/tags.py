"""Tags: a mall's names for its videos, one row each, and one row per video and tag.

A name is compared as PostgreSQL's ``lower`` compares it, on both sides of every
statement (never a lowering done in Python, which differs from the server's for some
letters): the unique index on ``(mall_id, lower(name))`` is the one judge of whether
two spellings are one tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from uuid import UUID

from sqlalchemy import ARRAY, Connection, Text, bindparam, func, select, text
from sqlalchemy import Uuid as UuidType

from handlers.access import Scope
from handlers.ports import TagChanges
from schemas.responses import TagCount
from worker.adapters.postgres.rooms.query import LIVE, tags, video_tags, videos, visible

# Each mall's tag of each name, made on first use; a name another spelling of which is
# already there keeps that spelling. In a fixed order, so two callers making the same
# tags wait on each other instead of deadlocking.
CREATE_TAGS = text(
    """
    INSERT INTO tags (id, mall_id, name)
    SELECT gen_random_uuid(), m.mall_id, n.name
    FROM unnest(CAST(:malls AS uuid[])) AS m (mall_id)
    CROSS JOIN unnest(CAST(:names AS text[])) WITH ORDINALITY AS n (name, ord)
    ORDER BY m.mall_id, n.ord
    ON CONFLICT (mall_id, lower(name)) DO NOTHING
    """
)
# Each video found gets each tag of its mall with one of the names; pairs there already
# are left alone. Ordered, as above, by the primary key. Each pair copies what a list by
# tags filters and orders by from the video's row, locked since it was found (migration
# 0019's trigger keeps the copies in step from then on).
ADD_PAIRS = text(
    """
    WITH added AS (
        INSERT INTO video_tags
            (video_id, tag_id, tagged_at, tagged_by, mall_id, pin_id, uploaded_at, trashed)
        SELECT v.id, t.id, :at, :by, v.mall_id, v.pin_id, v.uploaded_at, v.trashed_at IS NOT NULL
        FROM unnest(CAST(:video_ids AS uuid[])) AS found (id)
        JOIN videos AS v ON v.id = found.id
        JOIN tags AS t ON t.mall_id = v.mall_id
            AND lower(t.name) IN (SELECT lower(x) FROM unnest(CAST(:names AS text[])) AS x)
        ORDER BY v.id, t.id
        ON CONFLICT (video_id, tag_id) DO NOTHING
        RETURNING video_id, tag_id
    )
    SELECT added.video_id, t.name FROM added JOIN tags AS t ON t.id = added.tag_id
    """
)
REMOVE_PAIRS = text(
    """
    WITH removed AS (
        DELETE FROM video_tags AS vt
        USING tags AS t
        WHERE vt.tag_id = t.id
          AND vt.video_id = ANY(CAST(:video_ids AS uuid[]))
          AND lower(t.name) IN (SELECT lower(x) FROM unnest(CAST(:names AS text[])) AS x)
        RETURNING vt.video_id, t.name
    )
    SELECT video_id, name FROM removed
    """
)


def prefix_pattern(prefix: str) -> str:
    """``prefix`` as a LIKE pattern for names starting with it, its ``%``, ``_`` and
    ``\\`` literal."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


class PostgresTags:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def tag(
        self,
        scope: Scope,
        video_ids: Sequence[UUID],
        add: Sequence[str],
        remove: Sequence[str],
        at: datetime,
        by: str | None,
    ) -> TagChanges:
        # The videos found are locked (as an UPDATE of them would), in id order: their
        # events are then written in the order these transactions commit.
        rows = self.connection.execute(
            select(videos.c.id, videos.c.mall_id, videos.c.pin_id)
            .where(
                videos.c.id == func.any(bindparam("ids", type_=ARRAY(UuidType))),
                LIVE,
                *visible(scope),
            )
            .order_by(videos.c.id)
            .with_for_update(key_share=True),
            # By the UUID's integer (PostgreSQL's order too): UUID's own comparison is
            # Python code, a tenth of a 1,000-video tagging's own time.
            {"ids": sorted(set(video_ids), key=attrgetter("int"))},
        ).all()
        found = {row.id: (row.mall_id, row.pin_id) for row in rows}
        added: list[tuple[UUID, str]] = []
        removed: list[tuple[UUID, str]] = []
        if not found:
            return TagChanges(found, added, removed)
        ids = list(found)
        if add:
            malls = sorted({mall for mall, _ in found.values()})
            self.connection.execute(CREATE_TAGS, {"malls": malls, "names": list(add)})
            added = [
                (row.video_id, row.name)
                for row in self.connection.execute(
                    ADD_PAIRS,
                    {
                        "video_ids": ids,
                        "names": list(add),
                        "at": at,
                        "by": by,
                    },
                )
            ]
        if remove:
            removed = [
                (row.video_id, row.name)
                for row in self.connection.execute(
                    REMOVE_PAIRS, {"video_ids": ids, "names": list(remove)}
                )
            ]
        return TagChanges(found, added, removed)

    def counts(
        self, scope: Scope, mall_id: UUID | None, prefix: str | None, limit: int
    ) -> list[TagCount]:
        used = func.count().label("videos")
        stmt = (
            select(tags.c.name, tags.c.mall_id, used)
            .select_from(
                tags.join(video_tags, video_tags.c.tag_id == tags.c.id).join(
                    videos, videos.c.id == video_tags.c.video_id
                )
            )
            .where(LIVE, *visible(scope))
            .group_by(tags.c.id)
            .order_by(used.desc(), func.lower(tags.c.name), tags.c.name, tags.c.mall_id)
            .limit(bindparam("limit"))
        )
        values: dict[str, object] = {"limit": limit}
        if mall_id is not None:
            stmt = stmt.where(tags.c.mall_id == bindparam("mall_id", type_=UuidType))
            values["mall_id"] = mall_id
        if prefix is not None:
            pattern = bindparam("prefix", type_=Text)
            stmt = stmt.where(func.lower(tags.c.name).like(func.lower(pattern), escape="\\"))
            values["prefix"] = prefix_pattern(prefix)
        return [
            TagCount(name=row.name, mall_id=row.mall_id, videos=row.videos)
            for row in self.connection.execute(stmt, values)
        ]
