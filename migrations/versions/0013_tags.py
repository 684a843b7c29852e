"""Tags: a mall's names for its videos, one row per name, one row per video and tag.

Each tag is a row of ``tags``, and each video carries it through a row of
``video_tags``: a name is never packed with others into one string, so a tag with a
comma in it is one tag, renaming one touches one row, and a video's tags are found by
an index, not by parsing.

- ``tags``: unique on ``(mall_id, lower(name))``: one name in any case is one tag, shown
  as first written; one name in two malls is two tags.
- ``video_tags``: primary key ``(video_id, tag_id)`` (a video's tags, and the FK cascade
  from ``videos``); ``(tag_id, video_id)`` lists a tag's videos and serves the cascade
  from ``tags``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

CREATE_TAGS = """
CREATE TABLE tags (
    id uuid NOT NULL,
    mall_id uuid NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_tags PRIMARY KEY (id),
    CONSTRAINT fk_tags_mall_id_malls FOREIGN KEY (mall_id) REFERENCES malls (id) ON DELETE CASCADE,
    CONSTRAINT ck_tags_name CHECK (char_length(name) BETWEEN 1 AND 64)
)
"""
TAGS_BY_NAME = "CREATE UNIQUE INDEX uq_tags_mall_id_lower_name ON tags (mall_id, lower(name))"
# videos.list(tags=...) names tags in every mall the caller sees.
TAGS_BY_NAME_ANY_MALL = "CREATE INDEX ix_tags_lower_name ON tags (lower(name))"
CREATE_VIDEO_TAGS = """
CREATE TABLE video_tags (
    video_id uuid NOT NULL,
    tag_id uuid NOT NULL,
    tagged_at timestamptz NOT NULL DEFAULT now(),
    tagged_by text,
    CONSTRAINT pk_video_tags PRIMARY KEY (video_id, tag_id),
    CONSTRAINT fk_video_tags_video_id_videos FOREIGN KEY (video_id)
        REFERENCES videos (id) ON DELETE CASCADE,
    CONSTRAINT fk_video_tags_tag_id_tags FOREIGN KEY (tag_id) REFERENCES tags (id) ON DELETE CASCADE
)
"""
VIDEOS_BY_TAG = "CREATE INDEX ix_video_tags_tag_id_video_id ON video_tags (tag_id, video_id)"

UPGRADE = (CREATE_TAGS, TAGS_BY_NAME, TAGS_BY_NAME_ANY_MALL, CREATE_VIDEO_TAGS, VIDEOS_BY_TAG)
DOWNGRADE = ("DROP TABLE video_tags", "DROP TABLE tags")


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
