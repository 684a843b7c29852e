"""Re-processing requests: each (request, video) whose message to the pipeline is owed.

``videos.reprocess`` writes a row in the transaction that sets the video back to
``pending`` and marks it ``sent_at`` once the pipeline's message is out: a run delivered
again skips the videos its request already recorded and sends those still unsent, so a
video is asked for once per request. A video deleted takes its rows with it (through
the index on ``video_id``).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-09
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

CREATE_REPROCESS_REQUESTS = """
CREATE TABLE reprocess_requests (
    request_id text NOT NULL,
    video_id uuid NOT NULL,
    targets text[] NOT NULL,
    requested_by text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    CONSTRAINT pk_reprocess_requests PRIMARY KEY (request_id, video_id),
    CONSTRAINT fk_reprocess_requests_video_id_videos FOREIGN KEY (video_id)
        REFERENCES videos (id) ON DELETE CASCADE
)
"""
BY_VIDEO = "CREATE INDEX ix_reprocess_requests_video_id ON reprocess_requests (video_id)"

UPGRADE = (CREATE_REPROCESS_REQUESTS, BY_VIDEO)
DOWNGRADE = ("DROP TABLE reprocess_requests",)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
