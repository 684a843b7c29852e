"""What a search reads: ``video_search``, the searched text of each video in lower case
beside what a list filters by, kept by triggers on ``videos`` and indexed by period.

At 10,000,000 videos a search through the trigram indexes of ``videos`` cost 40-600 ms:
a broad ``q`` built a bitmap of every candidate in the table (620,000 for
``entrance``) before the first 10,001 were counted, and each match was tested on its
row of ``videos`` (a few rows to a page, ``ILIKE`` lowering both columns each time).

Here each video is one narrow row: its period, mall, pin, upload time, status, whether
it has a proxy, and ``text``, its file name and its notes lowered and joined by
``chr(1)``. One GIN index holds ``(period, mall_period, pin_period, text
gin_trgm_ops)`` (``btree_gin``): a search reads one period at a time, newest first, and
stops once it holds the cap's 10,001 matches, so a broad search reads the newest month,
not the table. A search narrowed to malls or pins reads each period by
``mall_period`` or ``pin_period`` (``<mall_id>:<period>``), the list of that scope's
rows in the period, instead of intersecting the period's list with the scope's. ``text
LIKE lower(pattern)`` is what ``ILIKE`` computes (PostgreSQL lowers both sides itself
for a multi-byte encoding), without lowering each row again.

A period is 30 days of ``uploaded_at`` (``floor(epoch / 2592000)``, clamped to
1970..9999 so every value fits); a video in the trash is in period ``-1 - period``:
the trash and the rest are apart in the index, each searched on its own.
``video_search_periods`` lists every period a row was ever written in, so a search
visits only those (a row uploaded in the year 9999 by another service adds one period,
not 97,000). A period never leaves it: an empty one costs a search one index probe.

``tags`` holds the video's tags, lowered, and is the index's last key: a search with
tags intersects their lists with the text's inside the index, instead of looking up
each candidate's tags.

The copies follow the video: new rows by a statement trigger (one ``INSERT ... SELECT``
per statement, a ``COPY`` included), changes by a row trigger skipped by its ``WHEN``
unless a copied column changed, deletions by the foreign key's cascade; the tags follow
``video_tags`` (a statement trigger for tagging and untagging) and a renamed tag. The
backfill runs in this transaction after the triggers exist: writers of ``videos`` wait for it
(about 4 minutes at 10,000,000 videos with 1,300,000 tags, most of it the copy and the
index build).

The trigram indexes of ``videos`` (migration 0016) are dropped: every search reads this
table. The SQL is literal text, frozen at this revision.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

PERIOD = """
CREATE FUNCTION videoworker_search_period(uploaded_at timestamptz, trashed boolean)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN trashed THEN -1 - p ELSE p END
    FROM (
        SELECT floor(extract(epoch FROM least(
            greatest(uploaded_at, timestamptz '1970-01-01 00:00:00+00'),
            timestamptz '9999-12-31 00:00:00+00'
        )) / 2592000)::integer AS p
    ) AS period
$$
"""

TEXT = """
CREATE FUNCTION videoworker_search_text(original_filename text, operator_notes text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(original_filename) || coalesce(chr(1) || lower(operator_notes), '')
$$
"""

TABLE = """
CREATE TABLE video_search (
    video_id uuid NOT NULL,
    period integer NOT NULL,
    mall_period text NOT NULL,
    pin_period text NOT NULL,
    mall_id uuid NOT NULL,
    pin_id uuid NOT NULL,
    uploaded_at timestamptz NOT NULL,
    processing_status text NOT NULL,
    has_proxy boolean NOT NULL,
    text text NOT NULL,
    tags text[] NOT NULL DEFAULT '{}'
) WITH (fillfactor = 90)
"""

PERIODS = """
CREATE TABLE video_search_periods (
    period integer NOT NULL,
    CONSTRAINT pk_video_search_periods PRIMARY KEY (period)
)
"""

# The copy of each row of ``{rows}`` (new rows, or every video for the backfill), with
# the tags ``{tags}``.
COPY = """
    INSERT INTO video_search (
        video_id, period, mall_period, pin_period, mall_id, pin_id, uploaded_at,
        processing_status, has_proxy, text, tags
    )
    SELECT id, period, concat(mall_id, ':', period), concat(pin_id, ':', period), mall_id,
           pin_id, uploaded_at, processing_status, proxy_path IS NOT NULL,
           videoworker_search_text(original_filename, operator_notes), {tags}
    FROM (
        SELECT *, videoworker_search_period(uploaded_at, trashed_at IS NOT NULL) AS period
        FROM {rows}
    ) AS copied"""

INSERTED = """
CREATE FUNCTION videoworker_search_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    <copy>;
    INSERT INTO video_search_periods (period)
    SELECT DISTINCT videoworker_search_period(uploaded_at, trashed_at IS NOT NULL)
    FROM new_rows
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$
""".replace("    <copy>", COPY.format(rows="new_rows", tags="'{}'::text[]"))

UPDATED = """
CREATE FUNCTION videoworker_search_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    new_period integer := videoworker_search_period(NEW.uploaded_at, NEW.trashed_at IS NOT NULL);
BEGIN
    UPDATE video_search
    SET period = new_period,
        mall_period = concat(NEW.mall_id, ':', new_period),
        pin_period = concat(NEW.pin_id, ':', new_period),
        mall_id = NEW.mall_id,
        pin_id = NEW.pin_id,
        uploaded_at = NEW.uploaded_at,
        processing_status = NEW.processing_status,
        has_proxy = NEW.proxy_path IS NOT NULL,
        text = videoworker_search_text(NEW.original_filename, NEW.operator_notes)
    WHERE video_id = NEW.id;
    IF new_period <> videoworker_search_period(OLD.uploaded_at, OLD.trashed_at IS NOT NULL) THEN
        INSERT INTO video_search_periods (period) VALUES (new_period) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$
"""

# A video's tags, lowered (a tag's name is unique in its mall whatever its case), sorted.
TAGS = """
CREATE FUNCTION videoworker_search_tags(video uuid) RETURNS text[]
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT coalesce(array_agg(lower(t.name) ORDER BY lower(t.name)), '{}')
    FROM video_tags AS vt JOIN tags AS t ON t.id = vt.tag_id
    WHERE vt.video_id = video
$$
"""

# Tagging and untagging, many pairs to a statement: each video's tags once.
TAGGED = """
CREATE FUNCTION videoworker_search_tagged() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE video_search SET tags = videoworker_search_tags(video_id)
    WHERE video_id IN (SELECT video_id FROM changed);
    RETURN NULL;
END
$$
"""

# A pair moved to another video or tag, or a tag renamed: rare, a row at a time.
RETAGGED = """
CREATE FUNCTION videoworker_search_retagged() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_TABLE_NAME = 'tags' THEN
        UPDATE video_search SET tags = videoworker_search_tags(video_id)
        WHERE video_id IN (SELECT video_id FROM video_tags WHERE tag_id = NEW.id);
    ELSE
        UPDATE video_search SET tags = videoworker_search_tags(video_id)
        WHERE video_id IN (OLD.video_id, NEW.video_id);
    END IF;
    RETURN NULL;
END
$$
"""

TRIGGERS = (
    "CREATE TRIGGER videos_search_inserted AFTER INSERT ON videos "
    "REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION videoworker_search_inserted()",
    "CREATE TRIGGER videos_search_updated "
    "AFTER UPDATE OF original_filename, operator_notes, mall_id, pin_id, uploaded_at, "
    "trashed_at, processing_status, proxy_path ON videos "
    "FOR EACH ROW WHEN ("
    "NEW.original_filename IS DISTINCT FROM OLD.original_filename "
    "OR NEW.operator_notes IS DISTINCT FROM OLD.operator_notes "
    "OR NEW.mall_id IS DISTINCT FROM OLD.mall_id "
    "OR NEW.pin_id IS DISTINCT FROM OLD.pin_id "
    "OR NEW.uploaded_at IS DISTINCT FROM OLD.uploaded_at "
    "OR (NEW.trashed_at IS NULL) <> (OLD.trashed_at IS NULL) "
    "OR NEW.processing_status IS DISTINCT FROM OLD.processing_status "
    "OR (NEW.proxy_path IS NULL) <> (OLD.proxy_path IS NULL)"
    ") EXECUTE FUNCTION videoworker_search_updated()",
    "CREATE TRIGGER video_tags_search_added AFTER INSERT ON video_tags "
    "REFERENCING NEW TABLE AS changed "
    "FOR EACH STATEMENT EXECUTE FUNCTION videoworker_search_tagged()",
    "CREATE TRIGGER video_tags_search_removed AFTER DELETE ON video_tags "
    "REFERENCING OLD TABLE AS changed "
    "FOR EACH STATEMENT EXECUTE FUNCTION videoworker_search_tagged()",
    # The copies migration 0019 keeps (mall, upload time, trash) change no key: skipped.
    "CREATE TRIGGER video_tags_search_moved AFTER UPDATE OF video_id, tag_id ON video_tags "
    "FOR EACH ROW WHEN ("
    "NEW.video_id IS DISTINCT FROM OLD.video_id OR NEW.tag_id IS DISTINCT FROM OLD.tag_id"
    ") EXECUTE FUNCTION videoworker_search_retagged()",
    "CREATE TRIGGER tags_search_renamed AFTER UPDATE OF name ON tags "
    "FOR EACH ROW WHEN (lower(NEW.name) IS DISTINCT FROM lower(OLD.name)) "
    "EXECUTE FUNCTION videoworker_search_retagged()",
)

# Every video's tags by one aggregate beside the copy, not a look-up per video.
TAGGED_VIDEOS = """videos LEFT JOIN (
            SELECT vt.video_id AS tagged_id,
                   array_agg(lower(t.name) ORDER BY lower(t.name)) AS tag_names
            FROM video_tags AS vt JOIN tags AS t ON t.id = vt.tag_id
            GROUP BY vt.video_id
        ) AS tagged ON tagged.tagged_id = videos.id"""

BACKFILL = (
    COPY.format(rows=TAGGED_VIDEOS, tags="coalesce(tag_names, '{}')")
    + "\n    ORDER BY uploaded_at, id",
    "INSERT INTO video_search_periods (period) SELECT DISTINCT period FROM video_search",
)

# Added after the backfill: one pass each, not a look-up per row.
KEYS = (
    "ALTER TABLE video_search ADD CONSTRAINT pk_video_search PRIMARY KEY (video_id)",
    "ALTER TABLE video_search ADD CONSTRAINT fk_video_search_video_id_videos "
    "FOREIGN KEY (video_id) REFERENCES videos (id) ON DELETE CASCADE",
)

# Built after the backfill: one sort, not a GIN insertion per row.
INDEX = (
    "CREATE INDEX ix_video_search_trgm ON video_search "
    "USING gin (period, mall_period, pin_period, text gin_trgm_ops, tags)"
)

DROP_VIDEOS_TRGM = (
    "DROP INDEX IF EXISTS ix_videos_scoped_filename_trgm",
    "DROP INDEX IF EXISTS ix_videos_scoped_notes_trgm",
)

UPGRADE = (
    PERIOD, TEXT, TABLE, PERIODS, INSERTED, UPDATED, TAGS, TAGGED, RETAGGED, *TRIGGERS,
    *BACKFILL, *KEYS, INDEX, "ANALYZE video_search", *DROP_VIDEOS_TRGM,
)  # fmt: skip

DOWNGRADE = (
    "CREATE INDEX IF NOT EXISTS ix_videos_scoped_filename_trgm ON videos "
    "USING gin (mall_id, pin_id, original_filename gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS ix_videos_scoped_notes_trgm ON videos "
    "USING gin (mall_id, pin_id, operator_notes gin_trgm_ops) "
    "WHERE operator_notes IS NOT NULL",
    "DROP TRIGGER IF EXISTS tags_search_renamed ON tags",
    "DROP TRIGGER IF EXISTS video_tags_search_moved ON video_tags",
    "DROP TRIGGER IF EXISTS video_tags_search_removed ON video_tags",
    "DROP TRIGGER IF EXISTS video_tags_search_added ON video_tags",
    "DROP FUNCTION IF EXISTS videoworker_search_retagged()",
    "DROP FUNCTION IF EXISTS videoworker_search_tagged()",
    "DROP FUNCTION IF EXISTS videoworker_search_tags(uuid)",
    "DROP TRIGGER IF EXISTS videos_search_updated ON videos",
    "DROP TRIGGER IF EXISTS videos_search_inserted ON videos",
    "DROP FUNCTION IF EXISTS videoworker_search_updated()",
    "DROP FUNCTION IF EXISTS videoworker_search_inserted()",
    "DROP TABLE IF EXISTS video_search_periods",
    "DROP TABLE IF EXISTS video_search",
    "DROP FUNCTION IF EXISTS videoworker_search_text(text, text)",
    "DROP FUNCTION IF EXISTS videoworker_search_period(timestamptz, boolean)",
)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
