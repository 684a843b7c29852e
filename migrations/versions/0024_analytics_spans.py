"""Per-video figures over aligned spans of days, so that a range's top videos read a few
rows per video instead of one per video and day.

``videos.analytics``'s top videos summed every per-video row of the range: 10,000
videos active every day of 90 days is 900,000 rows, most of a second. A span here is
``2**level`` days (level 1 to 8: 2 to 256 days) starting on a day whose number since
1970-01-01 is a multiple of ``2**level``; every range of days is the union of at most
two spans of each level and at most two single days (read from
``video_daily_analytics``), so a 90-day range is about eight rows per video.

Only spans that have ended are kept: ``analytics_span_progress.through`` is the day
every span ending on or before it has been summed from the per-video rows (by the
flush, once a day). A range's days from ``through`` on are read from the per-video
rows. The spans are written once, when they end, and after that only by bytes an
access log brings late: the table is in effect append-only, its pages stay
all-visible, and its covering indexes are read alone. Autovacuum is told to visit it
after 10,000 new or changed rows, not after a fifth of the table.

A span row is keyed by the mall and pin of the daily rows it sums (a video that moves
mall or pin within a span has a row for each), so a caller's scope selects exactly the
figures its daily rows would. ``pin_id`` is the nil UUID where the video had no pin: it
is part of the primary key, and no caller's pin is the nil UUID.

Filled here from the per-video rows, in the migration's transaction.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

# Leads with the mall and covers the figures: a mall's spans are read from it alone.
CREATE = """
CREATE TABLE video_span_analytics (
    mall_id uuid NOT NULL,
    span daterange NOT NULL,
    video_id uuid NOT NULL,
    pin_id uuid NOT NULL,
    stream_urls bigint NOT NULL DEFAULT 0,
    bytes_served bigint NOT NULL DEFAULT 0,
    CONSTRAINT pk_video_span_analytics PRIMARY KEY (mall_id, span, video_id, pin_id)
        INCLUDE (stream_urls, bytes_served)
)
"""
# A pin's spans are few: read from the table, the index half the size of a covering one.
BY_PIN = (
    "CREATE INDEX ix_video_span_analytics_pin_id_span ON video_span_analytics (pin_id, span)"
)
VACUUM_OFTEN = """
ALTER TABLE video_span_analytics SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000
)
"""
CREATE_PROGRESS = """
CREATE TABLE analytics_span_progress (
    one boolean NOT NULL DEFAULT true,
    through date NOT NULL,
    CONSTRAINT pk_analytics_span_progress PRIMARY KEY (one),
    CONSTRAINT ck_analytics_span_progress_one CHECK (one)
)
"""
START_PROGRESS = (
    "INSERT INTO analytics_span_progress (through) VALUES ((now() AT TIME ZONE 'UTC')::date)"
)
# Every span of level 1 to 8 that has ended by ``through``, from the per-video rows.
FILL = """
INSERT INTO video_span_analytics (mall_id, span, video_id, pin_id, stream_urls, bytes_served)
SELECT d.mall_id,
       daterange(DATE '1970-01-01' + s.first, DATE '1970-01-01' + s.first + (1 << l.level)),
       d.video_id, coalesce(d.pin_id, '00000000-0000-0000-0000-000000000000'::uuid),
       sum(d.stream_urls), sum(d.bytes_served)
FROM video_daily_analytics d
CROSS JOIN generate_series(1, 8) AS l(level)
CROSS JOIN LATERAL (
    SELECT ((d.day - DATE '1970-01-01') >> l.level) << l.level AS first
) AS s
WHERE DATE '1970-01-01' + s.first + (1 << l.level)
      <= (SELECT through FROM analytics_span_progress)
GROUP BY 1, 2, 3, 4
"""

UPGRADE = (CREATE, BY_PIN, VACUUM_OFTEN, CREATE_PROGRESS, START_PROGRESS, FILL)
DOWNGRADE = ("DROP TABLE analytics_span_progress", "DROP TABLE video_span_analytics")


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
