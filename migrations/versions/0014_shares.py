"""Share links: a link to some videos for someone without an account.

``shares`` keeps no token, only its SHA-256 (``token_hash``, unique: the look-up), and
no password, only its Argon2id hash (``password_hash``, a self-describing PHC string).
``expires_at`` is required: no link lives for ever. ``views`` is counted by one
conditional UPDATE, so ``max_views`` holds under any number of racing opens.
``failed_attempts`` within the window begun at ``attempts_since`` limit password
guesses; kept here, they survive a worker restart and are shared by every worker.
``mall_ids`` and ``pin_ids`` are the malls and pins of the videos shared, as they were
when the link was made: a caller sees (and may revoke) a share whose malls (operator)
or pins (tenant) it all sees, even once some of its videos are gone.

``share_videos`` lists each share's videos in the order given (``position``); a video
deleted takes its rows with it (the link then leaves it out), through the index on
``video_id``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

CREATE_SHARES = """
CREATE TABLE shares (
    id uuid NOT NULL,
    token_hash bytea NOT NULL,
    password_hash text,
    created_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_by text,
    max_views integer,
    views integer NOT NULL DEFAULT 0,
    last_viewed_at timestamptz,
    label text,
    targets text[] NOT NULL,
    mall_ids uuid[] NOT NULL,
    pin_ids uuid[] NOT NULL,
    video_count integer NOT NULL,
    failed_attempts integer NOT NULL DEFAULT 0,
    attempts_since timestamptz,
    CONSTRAINT pk_shares PRIMARY KEY (id),
    CONSTRAINT ck_shares_token_hash CHECK (octet_length(token_hash) = 32),
    CONSTRAINT ck_shares_max_views CHECK (max_views BETWEEN 1 AND 1000000),
    CONSTRAINT ck_shares_views CHECK (views >= 0),
    CONSTRAINT ck_shares_targets CHECK (
        cardinality(targets) BETWEEN 1 AND 3
        AND targets <@ ARRAY['proxy', 'original', 'thumbnail']::text[]
    ),
    CONSTRAINT ck_shares_expires_at CHECK (expires_at > created_at),
    CONSTRAINT ck_shares_label CHECK (char_length(label) <= 200)
)
"""
SHARES_BY_TOKEN = "CREATE UNIQUE INDEX uq_shares_token_hash ON shares (token_hash)"
# videos.shares: newest first.
SHARES_RECENT = "CREATE INDEX ix_shares_recent ON shares (created_at DESC, id DESC)"
CREATE_SHARE_VIDEOS = """
CREATE TABLE share_videos (
    share_id uuid NOT NULL,
    video_id uuid NOT NULL,
    position integer NOT NULL,
    CONSTRAINT pk_share_videos PRIMARY KEY (share_id, video_id),
    CONSTRAINT fk_share_videos_share_id_shares FOREIGN KEY (share_id)
        REFERENCES shares (id) ON DELETE CASCADE,
    CONSTRAINT fk_share_videos_video_id_videos FOREIGN KEY (video_id)
        REFERENCES videos (id) ON DELETE CASCADE
)
"""
SHARES_OF_VIDEO = "CREATE INDEX ix_share_videos_video_id ON share_videos (video_id)"

UPGRADE = (CREATE_SHARES, SHARES_BY_TOKEN, SHARES_RECENT, CREATE_SHARE_VIDEOS, SHARES_OF_VIDEO)
DOWNGRADE = ("DROP TABLE share_videos", "DROP TABLE shares")


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
