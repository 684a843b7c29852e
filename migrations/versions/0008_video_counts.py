"""Exact figures kept by triggers: ``video_counts_daily`` and ``video_counts_monthly``.

Every list total and every statistic used to count or sum the matching rows of
``videos``, which at millions of rows is most of a list's time. These tables hold the
figures (videos, stored bytes, summable duration) per key (mall, pin, status, has a
proxy, in the trash) and per UTC day or month of ``uploaded_at``; a total then sums a few
hundred rows, and only the partial days at a date range's edges are counted from the
list indexes.

Other services write ``videos``, so the figures are kept by the database itself:
statement-level ``AFTER`` triggers with transition tables, one aggregate per statement
(a ``COPY`` of a million rows is one upsert per key, not a million). They are exact under
concurrent writers because each change lands in the writer's own transaction, with its
rows:

- A writer adds to rows of its own: ``slot`` is its backend's pid. Two backends never
  write one row, so the triggers add no lock wait and no deadlock to concurrent writers
  of the same key; readers sum the slots. The worker's stats refresh folds the slots
  into slot 0 (``PostgresVideoRepository.compact_figures``), skipping rows a writer
  holds, so the tables stay a few rows per key and period.
- An update that moves no figure (notes, paths of the same kind, the hold) writes
  nothing: its old and new rows cancel out before any row is touched.
- The functions are ``SECURITY DEFINER``: a service allowed to write ``videos`` need not
  be granted these tables.

The tables are filled in the migration's transaction, after the triggers exist and with
writers of ``videos`` held back by the trigger's lock, so no write is counted twice or
missed. At ten million rows that is seconds of blocked writes, once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEY = ("mall_id", "pin_id", "processing_status", "has_proxy", "trashed")


def _figures() -> tuple[sa.Column, ...]:
    return (
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("videos", sa.BigInteger(), nullable=False),
        sa.Column("stored_bytes", sa.Numeric(), nullable=False),
        sa.Column("duration_seconds", sa.Numeric(), nullable=False),
    )


# One video as the tables see it. Bytes are added as numeric (two bigints another
# service stored may overflow bigint). A duration outside +-1e300 counts as 0: double
# precision also holds NaN and +-Infinity, which would turn a sum into NaN, and values
# that large stand for no real clip (PostgreSQL orders NaN above every number, so one
# BETWEEN leaves all three out).
ROW_FIGURES = """
    SELECT mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy,
           trashed_at IS NOT NULL AS trashed,
           (uploaded_at AT TIME ZONE 'UTC')::date AS day,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
"""
KEY_LIST = ", ".join(KEY)
SUMS = (
    "sum(sign) AS videos, sum(sign * stored_bytes) AS stored_bytes, "
    "sum(sign * duration_seconds) AS duration_seconds"
)
MOVED = (
    "HAVING sum(sign) <> 0 OR sum(sign * stored_bytes) <> 0 OR sum(sign * duration_seconds) <> 0"
)
ADD = (
    "ON CONFLICT ON CONSTRAINT {pk} DO UPDATE SET videos = c.videos + excluded.videos, "
    "stored_bytes = c.stored_bytes + excluded.stored_bytes, "
    "duration_seconds = c.duration_seconds + excluded.duration_seconds"
)


def _apply(changes: str) -> str:
    """The two upserts of one statement's changes (rows with a ``sign`` of +1 or -1),
    built from this module's constants only."""
    return f"""
    INSERT INTO video_counts_daily AS c (day, {KEY_LIST}, slot, videos, stored_bytes,
                                         duration_seconds)
    SELECT day, {KEY_LIST}, slot, {SUMS}
    FROM ({changes}) AS changes
    GROUP BY day, {KEY_LIST}, slot
    {MOVED}
    ORDER BY day, {KEY_LIST}
    {ADD.format(pk="pk_video_counts_daily")};

    INSERT INTO video_counts_monthly AS c ({KEY_LIST}, month, slot, videos, stored_bytes,
                                           duration_seconds)
    SELECT {KEY_LIST}, date_trunc('month', day)::date AS month, slot, {SUMS}
    FROM ({changes}) AS changes
    GROUP BY {KEY_LIST}, date_trunc('month', day)::date, slot
    {MOVED}
    ORDER BY {KEY_LIST}, date_trunc('month', day)::date
    {ADD.format(pk="pk_video_counts_monthly")};
"""  # noqa: S608


def _side(table: str, sign: int, slot: str = "writer_slot") -> str:
    return f"{ROW_FIGURES}, {sign} AS sign, {slot} AS slot FROM {table}"


def _function(name: str, changes: str) -> str:
    return f"""
CREATE FUNCTION {name}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    writer_slot integer := pg_backend_pid();
BEGIN
    {_apply(changes)}
    RETURN NULL;
END
$$"""


FUNCTIONS = {
    "videoworker_count_inserted": _side("new_rows", 1),
    "videoworker_count_deleted": _side("old_rows", -1),
    "videoworker_count_updated": f"{_side('new_rows', 1)} UNION ALL {_side('old_rows', -1)}",
}
TRIGGERS = (
    ("videos_count_inserted", "INSERT", "NEW TABLE AS new_rows", "videoworker_count_inserted"),
    ("videos_count_deleted", "DELETE", "OLD TABLE AS old_rows", "videoworker_count_deleted"),
    (
        "videos_count_updated",
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "videoworker_count_updated",
    ),
)


def _create(table: str, period: str, primary_key: tuple[str, ...]) -> None:
    # Column order follows the ORM's (the schema test compares them).
    op.create_table(
        table,
        *(sa.Column(name, sa.Uuid(), nullable=False) for name in ("mall_id", "pin_id")),
        sa.Column("processing_status", sa.Text(), nullable=False),
        *(sa.Column(name, sa.Boolean(), nullable=False) for name in ("has_proxy", "trashed")),
        *_figures(),
        sa.Column(period, sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint(*primary_key, name=f"pk_{table}"),
    )


def upgrade() -> None:
    _create("video_counts_daily", "day", ("day", *KEY, "slot"))
    _create("video_counts_monthly", "month", (*KEY, "month", "slot"))
    for name, changes in FUNCTIONS.items():
        op.execute(_function(name, changes))
    op.execute(
        "CREATE FUNCTION videoworker_count_truncated() RETURNS trigger "
        "LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$ "
        "BEGIN TRUNCATE video_counts_daily, video_counts_monthly; RETURN NULL; END $$"
    )
    # Writers wait from here to the commit: the triggers and the figures start together.
    op.execute("LOCK TABLE videos IN SHARE ROW EXCLUSIVE MODE")
    for trigger, event, referencing, function in TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {trigger} AFTER {event} ON videos "
            f"REFERENCING {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    op.execute(
        "CREATE TRIGGER videos_count_truncated AFTER TRUNCATE ON videos "
        "FOR EACH STATEMENT EXECUTE FUNCTION videoworker_count_truncated()"
    )
    op.execute(_apply(_side("videos", 1, slot="0")))


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS videos_count_truncated ON videos")
    for trigger, _, _, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON videos")
    for name in (*FUNCTIONS, "videoworker_count_truncated"):
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("video_counts_monthly")
    op.drop_table("video_counts_daily")
