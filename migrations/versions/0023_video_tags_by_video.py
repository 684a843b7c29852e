"""A tag's live videos in video id order, so a list by two or more tags counts its total
by merging index runs instead of probing one pair per video.

The total of a list by tags is counted mall by mall: the first tag's live pairs joined
by video to each other tag's pairs. ``ix_video_tags_live_tag_recent`` gives the first
tag's pairs newest first, which suits the page and not the join: the planner probes the
other tag's index once per pair (100,000 probes, 50 ms, for a tag on 100,000 videos at
10,000,000 rows). Read in video id order, like ``ix_video_tags_tag_id_video_id`` reads
the other tag's, both sides are already sorted and a merge join counts them in one pass
(18 ms). Mall and pin ride along, as in the listing index, for scoped totals read from
the index alone.

Built ``CONCURRENTLY`` (outside a transaction): taggers are not blocked. The SQL is the
literal text this revision runs.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

CREATE = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_video_tags_live_tag_video ON video_tags "
    "(tag_id, video_id) INCLUDE (mall_id, pin_id) WHERE NOT trashed"
)
DROP = "DROP INDEX CONCURRENTLY IF EXISTS ix_video_tags_live_tag_video"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(CREATE)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(DROP)
