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
  into slot 0 (``fold_figures`` in ``worker/adapters/postgres/repositories.py``),
  skipping rows a writer holds, so the tables stay a few rows per key and period.
- An update that moves no figure (notes, paths of the same kind, the hold) writes
  nothing: its old and new rows cancel out before any row is touched.
- The functions are ``SECURITY DEFINER``: a service allowed to write ``videos`` need not
  be granted these tables.

The tables are filled in the migration's transaction, after the triggers exist and with
writers of ``videos`` held back by the trigger's lock, so no write is counted twice or
missed. At ten million rows that is seconds of blocked writes, once.

The SQL is written out as the literal text this revision installs, so that no later
edit can change what a database already at this revision runs (migration 0010 now
holds the one definition of a video's figure). Trailing spaces of that text are written
``\\x20``: what an editor trims is then not the installed text.

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

# One video as the tables see it. Bytes are added as numeric (two bigints another
# service stored may overflow bigint). A duration outside +-1e300 counts as 0: double
# precision also holds NaN and +-Infinity, which would turn a sum into NaN, and values
# that large stand for no real clip (PostgreSQL orders NaN above every number, so one
# BETWEEN leaves all three out). An update adds its new rows and takes its old rows
# away (``sign``), each statement once per key, period and writer (``slot``).
COUNT_INSERTED = """
CREATE FUNCTION videoworker_count_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    writer_slot integer := pg_backend_pid();
BEGIN
   \x20
    INSERT INTO video_counts_daily AS c (day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                                         duration_seconds)
    SELECT day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, sum(sign) AS videos, sum(sign * stored_bytes) AS stored_bytes, sum(sign * duration_seconds) AS duration_seconds
    FROM (
    SELECT mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy,
           trashed_at IS NOT NULL AS trashed,
           (uploaded_at AT TIME ZONE 'UTC')::date AS day,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
, 1 AS sign, writer_slot AS slot FROM new_rows) AS changes
    GROUP BY day, mall_id, pin_id, processing_status, has_proxy, trashed, slot
    HAVING sum(sign) <> 0 OR sum(sign * stored_bytes) <> 0 OR sum(sign * duration_seconds) <> 0
    ORDER BY day, mall_id, pin_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_daily DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds;

    INSERT INTO video_counts_monthly AS c (mall_id, pin_id, processing_status, has_proxy, trashed, month, slot, videos, stored_bytes,
                                           duration_seconds)
    SELECT mall_id, pin_id, processing_status, has_proxy, trashed, date_trunc('month', day)::date AS month, slot, sum(sign) AS videos, sum(sign * stored_bytes) AS stored_bytes, sum(sign * duration_seconds) AS duration_seconds
    FROM (
    SELECT mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy,
           trashed_at IS NOT NULL AS trashed,
           (uploaded_at AT TIME ZONE 'UTC')::date AS day,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
, 1 AS sign, writer_slot AS slot FROM new_rows) AS changes
    GROUP BY mall_id, pin_id, processing_status, has_proxy, trashed, date_trunc('month', day)::date, slot
    HAVING sum(sign) <> 0 OR sum(sign * stored_bytes) <> 0 OR sum(sign * duration_seconds) <> 0
    ORDER BY mall_id, pin_id, processing_status, has_proxy, trashed, date_trunc('month', day)::date
    ON CONFLICT ON CONSTRAINT pk_video_counts_monthly DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds;

    RETURN NULL;
END
$$"""  # noqa: E501

COUNT_DELETED = """
CREATE FUNCTION videoworker_count_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    writer_slot integer := pg_backend_pid();
BEGIN
   \x20
    INSERT INTO video_counts_daily AS c (day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                                         duration_seconds)
    SELECT day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, sum(sign) AS videos, sum(sign * stored_bytes) AS stored_bytes, sum(sign * duration_seconds) AS duration_seconds
    FROM (
    SELECT mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy,
           trashed_at IS NOT NULL AS trashed,
           (uploaded_at AT TIME ZONE 'UTC')::date AS day,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
, -1 AS sign, writer_slot AS slot FROM old_rows) AS changes
    GROUP BY day, mall_id, pin_id, processing_status, has_proxy, trashed, slot
    HAVING sum(sign) <> 0 OR sum(sign * stored_bytes) <> 0 OR sum(sign * duration_seconds) <> 0
    ORDER BY day, mall_id, pin_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_daily DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds;

    INSERT INTO video_counts_monthly AS c (mall_id, pin_id, processing_status, has_proxy, trashed, month, slot, videos, stored_bytes,
                                           duration_seconds)
    SELECT mall_id, pin_id, processing_status, has_proxy, trashed, date_trunc('month', day)::date AS month, slot, sum(sign) AS videos, sum(sign * stored_bytes) AS stored_bytes, sum(sign * duration_seconds) AS duration_seconds
    FROM (
    SELECT mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy,
           trashed_at IS NOT NULL AS trashed,
           (uploaded_at AT TIME ZONE 'UTC')::date AS day,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
, -1 AS sign, writer_slot AS slot FROM old_rows) AS changes
    GROUP BY mall_id, pin_id, processing_status, has_proxy, trashed, date_trunc('month', day)::date, slot
    HAVING sum(sign) <> 0 OR sum(sign * stored_bytes) <> 0 OR sum(sign * duration_seconds) <> 0
    ORDER BY mall_id, pin_id, processing_status, has_proxy, trashed, date_trunc('month', day)::date
    ON CONFLICT ON CONSTRAINT pk_video_counts_monthly DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds;

    RETURN NULL;
END
$$"""  # noqa: E501

COUNT_UPDATED = """
CREATE FUNCTION videoworker_count_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    writer_slot integer := pg_backend_pid();
BEGIN
   \x20
    INSERT INTO video_counts_daily AS c (day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                                         duration_seconds)
    SELECT day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, sum(sign) AS videos, sum(sign * stored_bytes) AS stored_bytes, sum(sign * duration_seconds) AS duration_seconds
    FROM (
    SELECT mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy,
           trashed_at IS NOT NULL AS trashed,
           (uploaded_at AT TIME ZONE 'UTC')::date AS day,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
, 1 AS sign, writer_slot AS slot FROM new_rows UNION ALL\x20
    SELECT mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy,
           trashed_at IS NOT NULL AS trashed,
           (uploaded_at AT TIME ZONE 'UTC')::date AS day,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
, -1 AS sign, writer_slot AS slot FROM old_rows) AS changes
    GROUP BY day, mall_id, pin_id, processing_status, has_proxy, trashed, slot
    HAVING sum(sign) <> 0 OR sum(sign * stored_bytes) <> 0 OR sum(sign * duration_seconds) <> 0
    ORDER BY day, mall_id, pin_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_daily DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds;

    INSERT INTO video_counts_monthly AS c (mall_id, pin_id, processing_status, has_proxy, trashed, month, slot, videos, stored_bytes,
                                           duration_seconds)
    SELECT mall_id, pin_id, processing_status, has_proxy, trashed, date_trunc('month', day)::date AS month, slot, sum(sign) AS videos, sum(sign * stored_bytes) AS stored_bytes, sum(sign * duration_seconds) AS duration_seconds
    FROM (
    SELECT mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy,
           trashed_at IS NOT NULL AS trashed,
           (uploaded_at AT TIME ZONE 'UTC')::date AS day,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
, 1 AS sign, writer_slot AS slot FROM new_rows UNION ALL\x20
    SELECT mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy,
           trashed_at IS NOT NULL AS trashed,
           (uploaded_at AT TIME ZONE 'UTC')::date AS day,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
, -1 AS sign, writer_slot AS slot FROM old_rows) AS changes
    GROUP BY mall_id, pin_id, processing_status, has_proxy, trashed, date_trunc('month', day)::date, slot
    HAVING sum(sign) <> 0 OR sum(sign * stored_bytes) <> 0 OR sum(sign * duration_seconds) <> 0
    ORDER BY mall_id, pin_id, processing_status, has_proxy, trashed, date_trunc('month', day)::date
    ON CONFLICT ON CONSTRAINT pk_video_counts_monthly DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds;

    RETURN NULL;
END
$$"""  # noqa: E501

COUNT_TRUNCATED = (
    "CREATE FUNCTION videoworker_count_truncated() RETURNS trigger "
    "LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$ "
    "BEGIN TRUNCATE video_counts_daily, video_counts_monthly; RETURN NULL; END $$"
)

TRIGGERS = (
    "CREATE TRIGGER videos_count_inserted AFTER INSERT ON videos "
    "REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION videoworker_count_inserted()",
    "CREATE TRIGGER videos_count_deleted AFTER DELETE ON videos "
    "REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION videoworker_count_deleted()",
    "CREATE TRIGGER videos_count_updated AFTER UPDATE ON videos "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION videoworker_count_updated()",
    "CREATE TRIGGER videos_count_truncated AFTER TRUNCATE ON videos "
    "FOR EACH STATEMENT EXECUTE FUNCTION videoworker_count_truncated()",
)

# Every row of videos as it stands, added to slot 0.
FILL = """
    INSERT INTO video_counts_daily AS c (day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                                         duration_seconds)
    SELECT day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, sum(sign) AS videos, sum(sign * stored_bytes) AS stored_bytes, sum(sign * duration_seconds) AS duration_seconds
    FROM (
    SELECT mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy,
           trashed_at IS NOT NULL AS trashed,
           (uploaded_at AT TIME ZONE 'UTC')::date AS day,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
, 1 AS sign, 0 AS slot FROM videos) AS changes
    GROUP BY day, mall_id, pin_id, processing_status, has_proxy, trashed, slot
    HAVING sum(sign) <> 0 OR sum(sign * stored_bytes) <> 0 OR sum(sign * duration_seconds) <> 0
    ORDER BY day, mall_id, pin_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_daily DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds;

    INSERT INTO video_counts_monthly AS c (mall_id, pin_id, processing_status, has_proxy, trashed, month, slot, videos, stored_bytes,
                                           duration_seconds)
    SELECT mall_id, pin_id, processing_status, has_proxy, trashed, date_trunc('month', day)::date AS month, slot, sum(sign) AS videos, sum(sign * stored_bytes) AS stored_bytes, sum(sign * duration_seconds) AS duration_seconds
    FROM (
    SELECT mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy,
           trashed_at IS NOT NULL AS trashed,
           (uploaded_at AT TIME ZONE 'UTC')::date AS day,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
, 1 AS sign, 0 AS slot FROM videos) AS changes
    GROUP BY mall_id, pin_id, processing_status, has_proxy, trashed, date_trunc('month', day)::date, slot
    HAVING sum(sign) <> 0 OR sum(sign * stored_bytes) <> 0 OR sum(sign * duration_seconds) <> 0
    ORDER BY mall_id, pin_id, processing_status, has_proxy, trashed, date_trunc('month', day)::date
    ON CONFLICT ON CONSTRAINT pk_video_counts_monthly DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds;
"""  # noqa: E501


def _figures() -> tuple[sa.Column, ...]:
    return (
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("videos", sa.BigInteger(), nullable=False),
        sa.Column("stored_bytes", sa.Numeric(), nullable=False),
        sa.Column("duration_seconds", sa.Numeric(), nullable=False),
    )


def upgrade() -> None:
    # Column order follows the ORM's (the schema test compares them).
    op.create_table(
        "video_counts_daily",
        sa.Column("mall_id", sa.Uuid(), nullable=False),
        sa.Column("pin_id", sa.Uuid(), nullable=False),
        sa.Column("processing_status", sa.Text(), nullable=False),
        sa.Column("has_proxy", sa.Boolean(), nullable=False),
        sa.Column("trashed", sa.Boolean(), nullable=False),
        *_figures(),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "mall_id",
            "pin_id",
            "processing_status",
            "has_proxy",
            "trashed",
            "slot",
            name="pk_video_counts_daily",
        ),
    )
    op.create_table(
        "video_counts_monthly",
        sa.Column("mall_id", sa.Uuid(), nullable=False),
        sa.Column("pin_id", sa.Uuid(), nullable=False),
        sa.Column("processing_status", sa.Text(), nullable=False),
        sa.Column("has_proxy", sa.Boolean(), nullable=False),
        sa.Column("trashed", sa.Boolean(), nullable=False),
        *_figures(),
        sa.Column("month", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint(
            "mall_id",
            "pin_id",
            "processing_status",
            "has_proxy",
            "trashed",
            "month",
            "slot",
            name="pk_video_counts_monthly",
        ),
    )
    for function in (COUNT_INSERTED, COUNT_DELETED, COUNT_UPDATED, COUNT_TRUNCATED):
        op.execute(function)
    # Writers wait from here to the commit: the triggers and the figures start together.
    op.execute("LOCK TABLE videos IN SHARE ROW EXCLUSIVE MODE")
    for trigger in TRIGGERS:
        op.execute(trigger)
    op.execute(FILL)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS videos_count_truncated ON videos")
    op.execute("DROP TRIGGER IF EXISTS videos_count_inserted ON videos")
    op.execute("DROP TRIGGER IF EXISTS videos_count_deleted ON videos")
    op.execute("DROP TRIGGER IF EXISTS videos_count_updated ON videos")
    op.execute("DROP FUNCTION IF EXISTS videoworker_count_inserted()")
    op.execute("DROP FUNCTION IF EXISTS videoworker_count_deleted()")
    op.execute("DROP FUNCTION IF EXISTS videoworker_count_updated()")
    op.execute("DROP FUNCTION IF EXISTS videoworker_count_truncated()")
    op.drop_table("video_counts_monthly")
    op.drop_table("video_counts_daily")
