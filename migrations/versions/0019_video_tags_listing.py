"""A list by tags reads ``video_tags`` alone: what it filters and orders by is copied there.

``videos.list(tags=...)`` used to find a tag's videos newest first by walking the whole
newest-first index of ``videos`` and asking ``video_tags`` about each row, and to count
them by reading each tagged video's row: 1.1 s for two tags at a million videos. Each
pair now carries its video's ``mall_id``, ``pin_id``, ``uploaded_at`` and whether it is
in the trash, so a tag's page and exact total are read from one index of ``video_tags``
(index-only for the total) and ``videos`` is read for the page's rows only.

The copies follow the video: a row trigger on an UPDATE of ``videos`` that changes one
of those columns rewrites that video's pairs (a handful of rows, found by the primary
key). A row trigger, not a statement one with transition tables: PostgreSQL fires the
latter on every UPDATE of ``videos`` (it takes no column list), and the pipeline's many
status updates would each pay for a join of its transition tables; this one is skipped
by its WHEN unless a copied column changed. Tagging fills the copies from the video's
row, locked (``FOR NO KEY UPDATE``) in the same transaction, so a trash racing a tag
waits for it and then rewrites the new pairs too.

The backfill runs in the migration's transaction after the trigger exists, with writers
of ``videos`` held back by the trigger's creation, so no change is missed.

The SQL is literal text, frozen at this revision.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

ADD_COLUMNS = """
ALTER TABLE video_tags
    ADD COLUMN mall_id uuid,
    ADD COLUMN pin_id uuid,
    ADD COLUMN uploaded_at timestamptz,
    ADD COLUMN trashed boolean
"""

FOLLOW = """
CREATE FUNCTION videoworker_video_tags_follow() RETURNS trigger
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

TRIGGER = (
    "CREATE TRIGGER videos_tags_follow "
    "AFTER UPDATE OF mall_id, pin_id, uploaded_at, trashed_at ON videos "
    "FOR EACH ROW WHEN ("
    "NEW.mall_id IS DISTINCT FROM OLD.mall_id "
    "OR NEW.pin_id IS DISTINCT FROM OLD.pin_id "
    "OR NEW.uploaded_at IS DISTINCT FROM OLD.uploaded_at "
    "OR (NEW.trashed_at IS NULL) <> (OLD.trashed_at IS NULL)"
    ") EXECUTE FUNCTION videoworker_video_tags_follow()"
)

BACKFILL = """
UPDATE video_tags AS vt
SET mall_id = v.mall_id,
    pin_id = v.pin_id,
    uploaded_at = v.uploaded_at,
    trashed = v.trashed_at IS NOT NULL
FROM videos AS v
WHERE v.id = vt.video_id
"""

REQUIRE = """
ALTER TABLE video_tags
    ALTER COLUMN mall_id SET NOT NULL,
    ALTER COLUMN pin_id SET NOT NULL,
    ALTER COLUMN uploaded_at SET NOT NULL,
    ALTER COLUMN trashed SET NOT NULL
"""

# A tag's videos newest first, live or in the trash, each pair in one of the two; the
# scope's columns ride along so a scoped total is counted from the index alone.
LIVE_BY_TAG = (
    "CREATE INDEX ix_video_tags_live_tag_recent ON video_tags "
    "(tag_id, uploaded_at DESC, video_id DESC) INCLUDE (mall_id, pin_id) WHERE NOT trashed"
)
TRASHED_BY_TAG = (
    "CREATE INDEX ix_video_tags_trashed_tag_recent ON video_tags "
    "(tag_id, uploaded_at DESC, video_id DESC) INCLUDE (mall_id, pin_id) WHERE trashed"
)

UPGRADE = (ADD_COLUMNS, FOLLOW, TRIGGER, BACKFILL, REQUIRE, LIVE_BY_TAG, TRASHED_BY_TAG)
DOWNGRADE = (
    "DROP TRIGGER IF EXISTS videos_tags_follow ON videos",
    "DROP FUNCTION IF EXISTS videoworker_video_tags_follow()",
    "DROP INDEX IF EXISTS ix_video_tags_trashed_tag_recent",
    "DROP INDEX IF EXISTS ix_video_tags_live_tag_recent",
    "ALTER TABLE video_tags DROP COLUMN trashed, DROP COLUMN uploaded_at, "
    "DROP COLUMN pin_id, DROP COLUMN mall_id",
)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
