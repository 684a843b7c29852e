"""Figures per mall as well as per pin: ``video_counts_mall_daily`` and
``video_counts_mall_monthly``.

A total without a pin (every list of an admin or an operator that names no pin, and
the statistics of a mall or of everything) summed the per-pin figures of migration
0008: every pin's rows for every month, ~60,000 rows at a million videos, 3-5 ms a
total. The same figures kept per mall, status, has-a-proxy and in-the-trash, without
the pin, are a few rows per mall and period, so such a total sums a few hundred rows.
A pin's total and a tenant's (scoped by pins) still read the per-pin tables.

The same statement-level triggers keep them, in the same way (one aggregate per
statement, each writer on rows of its own, nothing written by an update that moves no
figure). Their functions are replaced by ones that run a single statement: the
statement's changes are aggregated once, per day and pin, and the four tables are
upserted from that aggregate, instead of each upsert reading the transition tables
again. The new tables are filled from the per-pin figures, which are exact, while
writers of ``videos`` wait on the trigger's lock, so no write is missed or counted
twice.

The SQL is written out as the literal text this revision installs, and its downgrade
reinstalls migration 0008's functions from their own literal copy here: no migration
reads another's code, so editing one never changes what another installs. Trailing
spaces of that text are written ``\\x20``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Each function: a statement's changes (rows with a ``sign`` of +1 or -1) summed once
# per day, pin and slot, and every table upserted from that, each in its own
# data-modifying CTE (a materialized CTE is computed once).
COUNT_INSERTED = """
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

COUNT_DELETED = """
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

COUNT_UPDATED = """
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

COUNT_TRUNCATED = (
    "CREATE OR REPLACE FUNCTION videoworker_count_truncated() RETURNS trigger "
    "LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$ "
    "BEGIN TRUNCATE video_counts_daily, video_counts_monthly, video_counts_mall_daily, "
    "video_counts_mall_monthly; RETURN NULL; END $$"
)

# Each per-mall table from the per-pin table of the same period.
FILL_MALL_DAILY = (
    "INSERT INTO video_counts_mall_daily (mall_id, processing_status, has_proxy, trashed,"
    " day, slot, videos, stored_bytes, duration_seconds)"
    " SELECT mall_id, processing_status, has_proxy, trashed, day, 0,"
    " sum(videos) AS videos, sum(stored_bytes) AS stored_bytes,"
    " sum(duration_seconds) AS duration_seconds FROM video_counts_daily"
    " GROUP BY mall_id, processing_status, has_proxy, trashed, day"
    " HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0"
)
FILL_MALL_MONTHLY = (
    "INSERT INTO video_counts_mall_monthly (mall_id, processing_status, has_proxy, trashed,"
    " month, slot, videos, stored_bytes, duration_seconds)"
    " SELECT mall_id, processing_status, has_proxy, trashed, month, 0,"
    " sum(videos) AS videos, sum(stored_bytes) AS stored_bytes,"
    " sum(duration_seconds) AS duration_seconds FROM video_counts_monthly"
    " GROUP BY mall_id, processing_status, has_proxy, trashed, month"
    " HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0"
)

# Migration 0008's functions, as 0008 installed them, for the downgrade.
COUNT_INSERTED_0008 = """
CREATE OR REPLACE FUNCTION videoworker_count_inserted() RETURNS trigger
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

COUNT_DELETED_0008 = """
CREATE OR REPLACE FUNCTION videoworker_count_deleted() RETURNS trigger
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

COUNT_UPDATED_0008 = """
CREATE OR REPLACE FUNCTION videoworker_count_updated() RETURNS trigger
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

COUNT_TRUNCATED_0008 = (
    "CREATE OR REPLACE FUNCTION videoworker_count_truncated() RETURNS trigger "
    "LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$ "
    "BEGIN TRUNCATE video_counts_daily, video_counts_monthly; RETURN NULL; END $$"
)


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
        "video_counts_mall_daily",
        sa.Column("mall_id", sa.Uuid(), nullable=False),
        sa.Column("processing_status", sa.Text(), nullable=False),
        sa.Column("has_proxy", sa.Boolean(), nullable=False),
        sa.Column("trashed", sa.Boolean(), nullable=False),
        *_figures(),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "mall_id",
            "processing_status",
            "has_proxy",
            "trashed",
            "slot",
            name="pk_video_counts_mall_daily",
        ),
    )
    op.create_table(
        "video_counts_mall_monthly",
        sa.Column("mall_id", sa.Uuid(), nullable=False),
        sa.Column("processing_status", sa.Text(), nullable=False),
        sa.Column("has_proxy", sa.Boolean(), nullable=False),
        sa.Column("trashed", sa.Boolean(), nullable=False),
        *_figures(),
        sa.Column("month", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint(
            "mall_id",
            "processing_status",
            "has_proxy",
            "trashed",
            "month",
            "slot",
            name="pk_video_counts_mall_monthly",
        ),
    )
    # Writers wait from here to the commit: the new functions and the figures start
    # together.
    op.execute("LOCK TABLE videos IN SHARE ROW EXCLUSIVE MODE")
    for function in (COUNT_INSERTED, COUNT_DELETED, COUNT_UPDATED, COUNT_TRUNCATED):
        op.execute(function)
    op.execute(FILL_MALL_DAILY)
    op.execute(FILL_MALL_MONTHLY)


def downgrade() -> None:
    op.execute("LOCK TABLE videos IN SHARE ROW EXCLUSIVE MODE")
    for function in (
        COUNT_INSERTED_0008,
        COUNT_DELETED_0008,
        COUNT_UPDATED_0008,
        COUNT_TRUNCATED_0008,
    ):
        op.execute(function)
    op.drop_table("video_counts_mall_monthly")
    op.drop_table("video_counts_mall_daily")
