"""One definition of what a video counts in the figures: the SQL function
``video_figure(videos)``.

What a row of ``videos`` adds to the figures (its key: mall, pin, status, has a proxy,
in the trash; its UTC day and month of ``uploaded_at``; one video, its stored bytes and
its summable duration) was written three times: in the triggers' SQL (migrations 0008
and 0009), in ``videoworker figures check`` and ``rebuild``, and in the repository.
Three copies drift. Now it is this one function; the triggers, the check and the
rebuild all select from it, and the repository's per-row figures can too.

It is ``LANGUAGE sql``, ``IMMUTABLE``, not ``STRICT``, not ``SECURITY DEFINER`` and
sets nothing, so the planner inlines it: ``FROM new_rows AS r CROSS JOIN LATERAL
video_figure(r) AS f`` plans as the expressions themselves over the transition table,
and a statement's writers pay what they paid with the expressions written out (see
``bench.totals``' writers' table). ``IMMUTABLE`` is true of its body: the month is
truncated from the UTC timestamp, not from a date (a date would go through
``timestamptz``, which depends on the session's time zone).

The trigger functions keep what 0009 made them (one statement per statement, the
aggregate once, four upserts, each writer on rows of its own, nothing written when no
figure moves); only their rows now come from ``video_figure``. The old and the new
functions count every row alike, so writers need not wait while they are replaced.
The downgrade reinstalls 0009's functions, as 0009 wrote them.

The SQL is the literal text this revision installs (trailing spaces written
``\\x20``), so editing another migration never changes it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# A bigint sum of two bigints another service stored may overflow: bytes are numeric.
# A duration outside +-1e300 counts as 0: double precision also holds NaN and
# +-Infinity, which would turn a sum into NaN, and values that large stand for no real
# clip (PostgreSQL orders NaN above every number, so one BETWEEN leaves all three out;
# a null duration is 0 too). A set-returning function of one row, so that in FROM it
# is inlined as a subquery and flattened away.
VIDEO_FIGURE = """
CREATE FUNCTION video_figure(v videos)
RETURNS TABLE (
    mall_id uuid,
    pin_id uuid,
    processing_status text,
    has_proxy boolean,
    trashed boolean,
    day date,
    month date,
    videos integer,
    stored_bytes numeric,
    duration_seconds numeric
)
LANGUAGE sql IMMUTABLE PARALLEL SAFE ROWS 1 AS $$
    SELECT v.mall_id, v.pin_id, v.processing_status,
           v.proxy_path IS NOT NULL,
           v.trashed_at IS NOT NULL,
           (v.uploaded_at AT TIME ZONE 'UTC')::date,
           date_trunc('month', v.uploaded_at AT TIME ZONE 'UTC')::date,
           1,
           v.file_size_bytes::numeric + coalesce(v.proxy_size_bytes, 0),
           CASE WHEN v.duration_seconds BETWEEN -1e300 AND 1e300
                THEN v.duration_seconds::numeric ELSE 0 END
$$"""
VIDEO_FIGURE_COMMENT = (
    "COMMENT ON FUNCTION video_figure(videos) IS 'What one row of videos adds to the "
    "figures (video_counts_*): its key, UTC day and month, and measures. The triggers, "
    "videoworker figures check and rebuild all read it (migration 0010).'"
)

# Each function: a statement's changes (each row's figure with a ``sign`` of +1 or -1)
# summed once per day and pin, and every table upserted from that, each in its own
# data-modifying CTE (a materialized CTE is computed once).
COUNT_INSERTED = """
CREATE OR REPLACE FUNCTION videoworker_count_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    writer_slot integer := pg_backend_pid();
BEGIN
    WITH changes AS MATERIALIZED (
        SELECT day, month, mall_id, pin_id, processing_status, has_proxy, trashed,
               sum(sign * videos) AS videos, sum(sign * stored_bytes) AS stored_bytes,
               sum(sign * duration_seconds) AS duration_seconds
        FROM (
            SELECT f.*, 1 AS sign FROM new_rows AS r CROSS JOIN LATERAL video_figure(r) AS f
        ) AS change_rows
        GROUP BY day, month, mall_id, pin_id, processing_status, has_proxy, trashed
    ),
    upsert_daily AS (
        INSERT INTO video_counts_daily AS c (day, mall_id, pin_id, processing_status,
            has_proxy, trashed, slot, videos, stored_bytes, duration_seconds)
        SELECT day, mall_id, pin_id, processing_status, has_proxy, trashed, writer_slot,
               sum(videos), sum(stored_bytes), sum(duration_seconds)
        FROM changes
        GROUP BY day, mall_id, pin_id, processing_status, has_proxy, trashed
        HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
        ORDER BY day, mall_id, pin_id, processing_status, has_proxy, trashed
        ON CONFLICT ON CONSTRAINT pk_video_counts_daily DO UPDATE SET
            videos = c.videos + excluded.videos,
            stored_bytes = c.stored_bytes + excluded.stored_bytes,
            duration_seconds = c.duration_seconds + excluded.duration_seconds
    ),
    upsert_monthly AS (
        INSERT INTO video_counts_monthly AS c (month, mall_id, pin_id, processing_status,
            has_proxy, trashed, slot, videos, stored_bytes, duration_seconds)
        SELECT month, mall_id, pin_id, processing_status, has_proxy, trashed, writer_slot,
               sum(videos), sum(stored_bytes), sum(duration_seconds)
        FROM changes
        GROUP BY month, mall_id, pin_id, processing_status, has_proxy, trashed
        HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
        ORDER BY month, mall_id, pin_id, processing_status, has_proxy, trashed
        ON CONFLICT ON CONSTRAINT pk_video_counts_monthly DO UPDATE SET
            videos = c.videos + excluded.videos,
            stored_bytes = c.stored_bytes + excluded.stored_bytes,
            duration_seconds = c.duration_seconds + excluded.duration_seconds
    ),
    upsert_mall_daily AS (
        INSERT INTO video_counts_mall_daily AS c (day, mall_id, processing_status,
            has_proxy, trashed, slot, videos, stored_bytes, duration_seconds)
        SELECT day, mall_id, processing_status, has_proxy, trashed, writer_slot,
               sum(videos), sum(stored_bytes), sum(duration_seconds)
        FROM changes
        GROUP BY day, mall_id, processing_status, has_proxy, trashed
        HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
        ORDER BY day, mall_id, processing_status, has_proxy, trashed
        ON CONFLICT ON CONSTRAINT pk_video_counts_mall_daily DO UPDATE SET
            videos = c.videos + excluded.videos,
            stored_bytes = c.stored_bytes + excluded.stored_bytes,
            duration_seconds = c.duration_seconds + excluded.duration_seconds
    )
    INSERT INTO video_counts_mall_monthly AS c (month, mall_id, processing_status,
        has_proxy, trashed, slot, videos, stored_bytes, duration_seconds)
    SELECT month, mall_id, processing_status, has_proxy, trashed, writer_slot,
           sum(videos), sum(stored_bytes), sum(duration_seconds)
    FROM changes
    GROUP BY month, mall_id, processing_status, has_proxy, trashed
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY month, mall_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_mall_monthly DO UPDATE SET
        videos = c.videos + excluded.videos,
        stored_bytes = c.stored_bytes + excluded.stored_bytes,
        duration_seconds = c.duration_seconds + excluded.duration_seconds;
    RETURN NULL;
END
$$"""

COUNT_DELETED = """
CREATE OR REPLACE FUNCTION videoworker_count_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    writer_slot integer := pg_backend_pid();
BEGIN
    WITH changes AS MATERIALIZED (
        SELECT day, month, mall_id, pin_id, processing_status, has_proxy, trashed,
               sum(sign * videos) AS videos, sum(sign * stored_bytes) AS stored_bytes,
               sum(sign * duration_seconds) AS duration_seconds
        FROM (
            SELECT f.*, -1 AS sign FROM old_rows AS r CROSS JOIN LATERAL video_figure(r) AS f
        ) AS change_rows
        GROUP BY day, month, mall_id, pin_id, processing_status, has_proxy, trashed
    ),
    upsert_daily AS (
        INSERT INTO video_counts_daily AS c (day, mall_id, pin_id, processing_status,
            has_proxy, trashed, slot, videos, stored_bytes, duration_seconds)
        SELECT day, mall_id, pin_id, processing_status, has_proxy, trashed, writer_slot,
               sum(videos), sum(stored_bytes), sum(duration_seconds)
        FROM changes
        GROUP BY day, mall_id, pin_id, processing_status, has_proxy, trashed
        HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
        ORDER BY day, mall_id, pin_id, processing_status, has_proxy, trashed
        ON CONFLICT ON CONSTRAINT pk_video_counts_daily DO UPDATE SET
            videos = c.videos + excluded.videos,
            stored_bytes = c.stored_bytes + excluded.stored_bytes,
            duration_seconds = c.duration_seconds + excluded.duration_seconds
    ),
    upsert_monthly AS (
        INSERT INTO video_counts_monthly AS c (month, mall_id, pin_id, processing_status,
            has_proxy, trashed, slot, videos, stored_bytes, duration_seconds)
        SELECT month, mall_id, pin_id, processing_status, has_proxy, trashed, writer_slot,
               sum(videos), sum(stored_bytes), sum(duration_seconds)
        FROM changes
        GROUP BY month, mall_id, pin_id, processing_status, has_proxy, trashed
        HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
        ORDER BY month, mall_id, pin_id, processing_status, has_proxy, trashed
        ON CONFLICT ON CONSTRAINT pk_video_counts_monthly DO UPDATE SET
            videos = c.videos + excluded.videos,
            stored_bytes = c.stored_bytes + excluded.stored_bytes,
            duration_seconds = c.duration_seconds + excluded.duration_seconds
    ),
    upsert_mall_daily AS (
        INSERT INTO video_counts_mall_daily AS c (day, mall_id, processing_status,
            has_proxy, trashed, slot, videos, stored_bytes, duration_seconds)
        SELECT day, mall_id, processing_status, has_proxy, trashed, writer_slot,
               sum(videos), sum(stored_bytes), sum(duration_seconds)
        FROM changes
        GROUP BY day, mall_id, processing_status, has_proxy, trashed
        HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
        ORDER BY day, mall_id, processing_status, has_proxy, trashed
        ON CONFLICT ON CONSTRAINT pk_video_counts_mall_daily DO UPDATE SET
            videos = c.videos + excluded.videos,
            stored_bytes = c.stored_bytes + excluded.stored_bytes,
            duration_seconds = c.duration_seconds + excluded.duration_seconds
    )
    INSERT INTO video_counts_mall_monthly AS c (month, mall_id, processing_status,
        has_proxy, trashed, slot, videos, stored_bytes, duration_seconds)
    SELECT month, mall_id, processing_status, has_proxy, trashed, writer_slot,
           sum(videos), sum(stored_bytes), sum(duration_seconds)
    FROM changes
    GROUP BY month, mall_id, processing_status, has_proxy, trashed
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY month, mall_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_mall_monthly DO UPDATE SET
        videos = c.videos + excluded.videos,
        stored_bytes = c.stored_bytes + excluded.stored_bytes,
        duration_seconds = c.duration_seconds + excluded.duration_seconds;
    RETURN NULL;
END
$$"""

COUNT_UPDATED = """
CREATE OR REPLACE FUNCTION videoworker_count_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    writer_slot integer := pg_backend_pid();
BEGIN
    WITH changes AS MATERIALIZED (
        SELECT day, month, mall_id, pin_id, processing_status, has_proxy, trashed,
               sum(sign * videos) AS videos, sum(sign * stored_bytes) AS stored_bytes,
               sum(sign * duration_seconds) AS duration_seconds
        FROM (
            SELECT f.*, 1 AS sign FROM new_rows AS r CROSS JOIN LATERAL video_figure(r) AS f
            UNION ALL
            SELECT f.*, -1 AS sign FROM old_rows AS r CROSS JOIN LATERAL video_figure(r) AS f
        ) AS change_rows
        GROUP BY day, month, mall_id, pin_id, processing_status, has_proxy, trashed
    ),
    upsert_daily AS (
        INSERT INTO video_counts_daily AS c (day, mall_id, pin_id, processing_status,
            has_proxy, trashed, slot, videos, stored_bytes, duration_seconds)
        SELECT day, mall_id, pin_id, processing_status, has_proxy, trashed, writer_slot,
               sum(videos), sum(stored_bytes), sum(duration_seconds)
        FROM changes
        GROUP BY day, mall_id, pin_id, processing_status, has_proxy, trashed
        HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
        ORDER BY day, mall_id, pin_id, processing_status, has_proxy, trashed
        ON CONFLICT ON CONSTRAINT pk_video_counts_daily DO UPDATE SET
            videos = c.videos + excluded.videos,
            stored_bytes = c.stored_bytes + excluded.stored_bytes,
            duration_seconds = c.duration_seconds + excluded.duration_seconds
    ),
    upsert_monthly AS (
        INSERT INTO video_counts_monthly AS c (month, mall_id, pin_id, processing_status,
            has_proxy, trashed, slot, videos, stored_bytes, duration_seconds)
        SELECT month, mall_id, pin_id, processing_status, has_proxy, trashed, writer_slot,
               sum(videos), sum(stored_bytes), sum(duration_seconds)
        FROM changes
        GROUP BY month, mall_id, pin_id, processing_status, has_proxy, trashed
        HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
        ORDER BY month, mall_id, pin_id, processing_status, has_proxy, trashed
        ON CONFLICT ON CONSTRAINT pk_video_counts_monthly DO UPDATE SET
            videos = c.videos + excluded.videos,
            stored_bytes = c.stored_bytes + excluded.stored_bytes,
            duration_seconds = c.duration_seconds + excluded.duration_seconds
    ),
    upsert_mall_daily AS (
        INSERT INTO video_counts_mall_daily AS c (day, mall_id, processing_status,
            has_proxy, trashed, slot, videos, stored_bytes, duration_seconds)
        SELECT day, mall_id, processing_status, has_proxy, trashed, writer_slot,
               sum(videos), sum(stored_bytes), sum(duration_seconds)
        FROM changes
        GROUP BY day, mall_id, processing_status, has_proxy, trashed
        HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
        ORDER BY day, mall_id, processing_status, has_proxy, trashed
        ON CONFLICT ON CONSTRAINT pk_video_counts_mall_daily DO UPDATE SET
            videos = c.videos + excluded.videos,
            stored_bytes = c.stored_bytes + excluded.stored_bytes,
            duration_seconds = c.duration_seconds + excluded.duration_seconds
    )
    INSERT INTO video_counts_mall_monthly AS c (month, mall_id, processing_status,
        has_proxy, trashed, slot, videos, stored_bytes, duration_seconds)
    SELECT month, mall_id, processing_status, has_proxy, trashed, writer_slot,
           sum(videos), sum(stored_bytes), sum(duration_seconds)
    FROM changes
    GROUP BY month, mall_id, processing_status, has_proxy, trashed
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY month, mall_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_mall_monthly DO UPDATE SET
        videos = c.videos + excluded.videos,
        stored_bytes = c.stored_bytes + excluded.stored_bytes,
        duration_seconds = c.duration_seconds + excluded.duration_seconds;
    RETURN NULL;
END
$$"""

# Migration 0009's functions, as 0009 installed them, for the downgrade.
COUNT_INSERTED_0009 = """
CREATE OR REPLACE FUNCTION videoworker_count_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    writer_slot integer := pg_backend_pid();
BEGIN
   \x20
    WITH changes AS MATERIALIZED (
        SELECT day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, sum(sign) AS videos, sum(sign * stored_bytes) AS stored_bytes, sum(sign * duration_seconds) AS duration_seconds
        FROM (
    SELECT mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy,
           trashed_at IS NOT NULL AS trashed,
           (uploaded_at AT TIME ZONE 'UTC')::date AS day,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
, 1 AS sign, writer_slot AS slot FROM new_rows) AS change_rows
        GROUP BY day, mall_id, pin_id, processing_status, has_proxy, trashed, slot
    ),
    upsert_0 AS (
    INSERT INTO video_counts_daily AS c (day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                               duration_seconds)
    SELECT day AS day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, sum(videos) AS videos, sum(stored_bytes) AS stored_bytes, sum(duration_seconds) AS duration_seconds
    FROM changes
    GROUP BY day, mall_id, pin_id, processing_status, has_proxy, trashed, slot
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY day, mall_id, pin_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_daily DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds),
upsert_1 AS (
    INSERT INTO video_counts_monthly AS c (month, mall_id, pin_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                               duration_seconds)
    SELECT date_trunc('month', day)::date AS month, mall_id, pin_id, processing_status, has_proxy, trashed, slot, sum(videos) AS videos, sum(stored_bytes) AS stored_bytes, sum(duration_seconds) AS duration_seconds
    FROM changes
    GROUP BY date_trunc('month', day)::date, mall_id, pin_id, processing_status, has_proxy, trashed, slot
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY date_trunc('month', day)::date, mall_id, pin_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_monthly DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds),
upsert_2 AS (
    INSERT INTO video_counts_mall_daily AS c (day, mall_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                               duration_seconds)
    SELECT day AS day, mall_id, processing_status, has_proxy, trashed, slot, sum(videos) AS videos, sum(stored_bytes) AS stored_bytes, sum(duration_seconds) AS duration_seconds
    FROM changes
    GROUP BY day, mall_id, processing_status, has_proxy, trashed, slot
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY day, mall_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_mall_daily DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds)
   \x20
    INSERT INTO video_counts_mall_monthly AS c (month, mall_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                               duration_seconds)
    SELECT date_trunc('month', day)::date AS month, mall_id, processing_status, has_proxy, trashed, slot, sum(videos) AS videos, sum(stored_bytes) AS stored_bytes, sum(duration_seconds) AS duration_seconds
    FROM changes
    GROUP BY date_trunc('month', day)::date, mall_id, processing_status, has_proxy, trashed, slot
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY date_trunc('month', day)::date, mall_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_mall_monthly DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds;

    RETURN NULL;
END
$$"""  # noqa: E501

COUNT_DELETED_0009 = """
CREATE OR REPLACE FUNCTION videoworker_count_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    writer_slot integer := pg_backend_pid();
BEGIN
   \x20
    WITH changes AS MATERIALIZED (
        SELECT day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, sum(sign) AS videos, sum(sign * stored_bytes) AS stored_bytes, sum(sign * duration_seconds) AS duration_seconds
        FROM (
    SELECT mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy,
           trashed_at IS NOT NULL AS trashed,
           (uploaded_at AT TIME ZONE 'UTC')::date AS day,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
, -1 AS sign, writer_slot AS slot FROM old_rows) AS change_rows
        GROUP BY day, mall_id, pin_id, processing_status, has_proxy, trashed, slot
    ),
    upsert_0 AS (
    INSERT INTO video_counts_daily AS c (day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                               duration_seconds)
    SELECT day AS day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, sum(videos) AS videos, sum(stored_bytes) AS stored_bytes, sum(duration_seconds) AS duration_seconds
    FROM changes
    GROUP BY day, mall_id, pin_id, processing_status, has_proxy, trashed, slot
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY day, mall_id, pin_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_daily DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds),
upsert_1 AS (
    INSERT INTO video_counts_monthly AS c (month, mall_id, pin_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                               duration_seconds)
    SELECT date_trunc('month', day)::date AS month, mall_id, pin_id, processing_status, has_proxy, trashed, slot, sum(videos) AS videos, sum(stored_bytes) AS stored_bytes, sum(duration_seconds) AS duration_seconds
    FROM changes
    GROUP BY date_trunc('month', day)::date, mall_id, pin_id, processing_status, has_proxy, trashed, slot
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY date_trunc('month', day)::date, mall_id, pin_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_monthly DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds),
upsert_2 AS (
    INSERT INTO video_counts_mall_daily AS c (day, mall_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                               duration_seconds)
    SELECT day AS day, mall_id, processing_status, has_proxy, trashed, slot, sum(videos) AS videos, sum(stored_bytes) AS stored_bytes, sum(duration_seconds) AS duration_seconds
    FROM changes
    GROUP BY day, mall_id, processing_status, has_proxy, trashed, slot
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY day, mall_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_mall_daily DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds)
   \x20
    INSERT INTO video_counts_mall_monthly AS c (month, mall_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                               duration_seconds)
    SELECT date_trunc('month', day)::date AS month, mall_id, processing_status, has_proxy, trashed, slot, sum(videos) AS videos, sum(stored_bytes) AS stored_bytes, sum(duration_seconds) AS duration_seconds
    FROM changes
    GROUP BY date_trunc('month', day)::date, mall_id, processing_status, has_proxy, trashed, slot
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY date_trunc('month', day)::date, mall_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_mall_monthly DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds;

    RETURN NULL;
END
$$"""  # noqa: E501

COUNT_UPDATED_0009 = """
CREATE OR REPLACE FUNCTION videoworker_count_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    writer_slot integer := pg_backend_pid();
BEGIN
   \x20
    WITH changes AS MATERIALIZED (
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
, -1 AS sign, writer_slot AS slot FROM old_rows) AS change_rows
        GROUP BY day, mall_id, pin_id, processing_status, has_proxy, trashed, slot
    ),
    upsert_0 AS (
    INSERT INTO video_counts_daily AS c (day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                               duration_seconds)
    SELECT day AS day, mall_id, pin_id, processing_status, has_proxy, trashed, slot, sum(videos) AS videos, sum(stored_bytes) AS stored_bytes, sum(duration_seconds) AS duration_seconds
    FROM changes
    GROUP BY day, mall_id, pin_id, processing_status, has_proxy, trashed, slot
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY day, mall_id, pin_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_daily DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds),
upsert_1 AS (
    INSERT INTO video_counts_monthly AS c (month, mall_id, pin_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                               duration_seconds)
    SELECT date_trunc('month', day)::date AS month, mall_id, pin_id, processing_status, has_proxy, trashed, slot, sum(videos) AS videos, sum(stored_bytes) AS stored_bytes, sum(duration_seconds) AS duration_seconds
    FROM changes
    GROUP BY date_trunc('month', day)::date, mall_id, pin_id, processing_status, has_proxy, trashed, slot
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY date_trunc('month', day)::date, mall_id, pin_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_monthly DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds),
upsert_2 AS (
    INSERT INTO video_counts_mall_daily AS c (day, mall_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                               duration_seconds)
    SELECT day AS day, mall_id, processing_status, has_proxy, trashed, slot, sum(videos) AS videos, sum(stored_bytes) AS stored_bytes, sum(duration_seconds) AS duration_seconds
    FROM changes
    GROUP BY day, mall_id, processing_status, has_proxy, trashed, slot
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY day, mall_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_mall_daily DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds)
   \x20
    INSERT INTO video_counts_mall_monthly AS c (month, mall_id, processing_status, has_proxy, trashed, slot, videos, stored_bytes,
                               duration_seconds)
    SELECT date_trunc('month', day)::date AS month, mall_id, processing_status, has_proxy, trashed, slot, sum(videos) AS videos, sum(stored_bytes) AS stored_bytes, sum(duration_seconds) AS duration_seconds
    FROM changes
    GROUP BY date_trunc('month', day)::date, mall_id, processing_status, has_proxy, trashed, slot
    HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
    ORDER BY date_trunc('month', day)::date, mall_id, processing_status, has_proxy, trashed
    ON CONFLICT ON CONSTRAINT pk_video_counts_mall_monthly DO UPDATE SET videos = c.videos + excluded.videos, stored_bytes = c.stored_bytes + excluded.stored_bytes, duration_seconds = c.duration_seconds + excluded.duration_seconds;

    RETURN NULL;
END
$$"""  # noqa: E501


def upgrade() -> None:
    op.execute(VIDEO_FIGURE)
    op.execute(VIDEO_FIGURE_COMMENT)
    for function in (COUNT_INSERTED, COUNT_DELETED, COUNT_UPDATED):
        op.execute(function)


def downgrade() -> None:
    for function in (COUNT_INSERTED_0009, COUNT_DELETED_0009, COUNT_UPDATED_0009):
        op.execute(function)
    op.execute("DROP FUNCTION video_figure(videos)")
