"""Exports as ZIP: one row per export, its lease, its upload and its progress.

``video_ids`` keeps the videos in the order of the ZIP's entries; ``mall_ids`` and
``pin_ids`` are their malls and pins when the export was asked for: a caller sees (and
may cancel) an export all of whose malls (operator) or pins (tenant) it sees.
A run holds a ``running`` export by ``run_token`` while ``heartbeat_at`` is fresh; the
sweep takes up one whose heartbeat went stale (``ix_exports_running``). ``upload_id`` is
the multipart upload in progress, or one a lost run left, still to be aborted.
``expires_at`` is when a completed export's ZIP is deleted (``ix_exports_expiring``).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-09
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

CREATE_EXPORTS = """
CREATE TABLE exports (
    id uuid NOT NULL,
    created_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    target text NOT NULL,
    include_thumbnails boolean NOT NULL DEFAULT false,
    video_ids uuid[] NOT NULL,
    mall_ids uuid[] NOT NULL,
    pin_ids uuid[] NOT NULL,
    bytes_estimated bigint NOT NULL,
    status text NOT NULL DEFAULT 'queued',
    attempts integer NOT NULL DEFAULT 0,
    run_token uuid,
    heartbeat_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    object_key text,
    upload_id text,
    done integer NOT NULL DEFAULT 0,
    bytes_written bigint NOT NULL DEFAULT 0,
    size_bytes bigint,
    expires_at timestamptz,
    error text,
    CONSTRAINT pk_exports PRIMARY KEY (id),
    CONSTRAINT ck_exports_status CHECK (
        status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'expired')
    ),
    CONSTRAINT ck_exports_target CHECK (target IN ('proxy', 'original')),
    CONSTRAINT ck_exports_name CHECK (char_length(name) BETWEEN 1 AND 200),
    CONSTRAINT ck_exports_videos CHECK (cardinality(video_ids) BETWEEN 1 AND 100000),
    CONSTRAINT ck_exports_running CHECK (status <> 'running' OR run_token IS NOT NULL)
)
"""
EXPORTS_RUNNING = (
    "CREATE INDEX ix_exports_running ON exports (heartbeat_at) WHERE status = 'running'"
)
EXPORTS_EXPIRING = (
    "CREATE INDEX ix_exports_expiring ON exports (expires_at) WHERE status = 'completed'"
)
EXPORTS_UPLOADS = (
    "CREATE INDEX ix_exports_uploads ON exports (upload_id) WHERE upload_id IS NOT NULL"
)

UPGRADE = (CREATE_EXPORTS, EXPORTS_RUNNING, EXPORTS_EXPIRING, EXPORTS_UPLOADS)
DOWNGRADE = ("DROP TABLE exports",)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
