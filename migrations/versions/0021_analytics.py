"""Analytics: daily figures per video, the flushes folded, and the access logs read.

``video_daily_analytics`` has a row per video and UTC day with any activity: URLs
signed (stream: proxy or original; thumbnail), share views, and bytes S3 served. The
video's mall and pin are copied into the row and there is no foreign key to
``videos``: a deleted video's history stays in its mall's and pin's totals. Rows are
kept until an operator removes them (one small row per active video and day).

``analytics_flushes`` records each Redis flush id folded, in the fold's transaction:
a flush that died after its commit is not folded twice. Rows older than a day are
pruned by the flush.

``access_log_objects`` records each S3 access log object read, by key and ETag, in the
transaction that added its bytes.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

CREATE_DAILY = """
CREATE TABLE video_daily_analytics (
    video_id uuid NOT NULL,
    mall_id uuid NOT NULL,
    pin_id uuid,
    day date NOT NULL,
    stream_urls bigint NOT NULL DEFAULT 0,
    thumbnail_urls bigint NOT NULL DEFAULT 0,
    share_views bigint NOT NULL DEFAULT 0,
    bytes_served bigint NOT NULL DEFAULT 0,
    CONSTRAINT pk_video_daily_analytics PRIMARY KEY (video_id, day)
)
"""
BY_MALL = (
    "CREATE INDEX ix_video_daily_analytics_mall_id_day ON video_daily_analytics (mall_id, day)"
)
BY_PIN = "CREATE INDEX ix_video_daily_analytics_pin_id_day ON video_daily_analytics (pin_id, day)"
CREATE_FLUSHES = """
CREATE TABLE analytics_flushes (
    flush_id text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_analytics_flushes PRIMARY KEY (flush_id)
)
"""
CREATE_LOG_OBJECTS = """
CREATE TABLE access_log_objects (
    key text NOT NULL,
    etag text NOT NULL,
    lines bigint NOT NULL,
    bytes_counted bigint NOT NULL,
    garbage_lines bigint NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_access_log_objects PRIMARY KEY (key, etag)
)
"""

UPGRADE = (CREATE_DAILY, BY_MALL, BY_PIN, CREATE_FLUSHES, CREATE_LOG_OBJECTS)
DOWNGRADE = (
    "DROP TABLE access_log_objects",
    "DROP TABLE analytics_flushes",
    "DROP TABLE video_daily_analytics",
)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
