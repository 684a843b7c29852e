"""A tag is its mall's, and now so are its pairs, always: a video another service moves
to another mall leaves the old mall's tags (the follow trigger deletes its pairs, and
pairs left by earlier moves go now).

A list by tags then needs no check that a pair's mall is its tag's. The planner took
that check for a filter of one pair in twenty: it estimated a tag's pairs in a mall at
a twentieth of their number (59 for 5,000 at 10,000,000 videos) and planned a list by
two tags for a few dozen rows, probing the second tag's index once per pair of the
first (50 ms) and hashing both whole for the page.

The SQL is the literal text this revision runs.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

FOLLOW = """
CREATE OR REPLACE FUNCTION videoworker_video_tags_follow() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.mall_id IS DISTINCT FROM OLD.mall_id THEN
        -- Its tags were the old mall's: they are not the new mall's to show.
        DELETE FROM video_tags WHERE video_id = NEW.id;
        RETURN NULL;
    END IF;
    UPDATE video_tags
    SET pin_id = NEW.pin_id,
        uploaded_at = NEW.uploaded_at,
        trashed = NEW.trashed_at IS NOT NULL
    WHERE video_id = NEW.id;
    RETURN NULL;
END
$$
"""
STRAYS = """
DELETE FROM video_tags AS vt
USING tags AS t
WHERE t.id = vt.tag_id AND t.mall_id <> vt.mall_id
"""
FOLLOW_BEFORE = """
CREATE OR REPLACE FUNCTION videoworker_video_tags_follow() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE video_tags
    SET mall_id = NEW.mall_id,
        pin_id = NEW.pin_id,
        uploaded_at = NEW.uploaded_at,
        trashed = NEW.trashed_at IS NOT NULL
    WHERE video_id = NEW.id;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(FOLLOW)
    op.execute(STRAYS)


def downgrade() -> None:
    op.execute(FOLLOW_BEFORE)
