"""A row registered on an object key waits for, or holds off, the removal engine.

The engine (``handlers.deletion``) takes a transaction advisory lock per key, on
``hashtextextended(key, 0)``, then reads the key's references, then calls S3, holding
the locks until it commits. A row another service registered on the key between the
check and the S3 call lost its object. Now every writer of ``videos`` takes the same
lock, in its own transaction, for each key it registers (INSERT, or an UPDATE that
gives a row a key it did not hold):

- a writer that takes the lock first holds it until it commits: the engine waits, then
  reads the references again (a new snapshot under READ COMMITTED), sees the row, and
  keeps the object;
- a writer that comes second waits until the engine has committed; what it registers
  then is for the writer to have uploaded after (see the README, "How deletes stay
  consistent").

Once it holds the lock, the writer drops the queued deletions of those keys (a key
registered again wins over a deletion queued before), and settles the audit rows of
the videos whose queue rows it dropped, as the engine settles a key it keeps. Rows an
engine has claimed (``FOR UPDATE``) are skipped, not waited for: that engine waits on
the writer's lock and keeps the key itself, and a writer never waits on a row lock
while holding a key lock an engine wants.

Locks are taken in hash order (the engine's order), all keys of an INSERT statement in
one go (a statement-level trigger over its transition table), so a multi-row insert and
an engine never deadlock over keys; an UPDATE takes them per row, for the rare update
that changes a key (the trigger fires only when a key column changes). ``SECURITY
DEFINER``: a service allowed to write ``videos`` need not be allowed to write the
deletion queue or the audit.

The SQL is the literal text this revision installs, so editing another migration never
changes it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

REGISTER_KEYS = """
CREATE FUNCTION videoworker_register_keys(registered text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    dropped uuid[];
BEGIN
    -- The engine's locks (LOCK_KEYS in rooms/deletions.py), in the engine's order.
    PERFORM count(pg_advisory_xact_lock(h)) FROM (
        SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(registered) AS k
        ORDER BY h OFFSET 0
    ) AS ordered;
    WITH gone AS (
        DELETE FROM storage_deletions
        WHERE id IN (
            SELECT id FROM storage_deletions
            WHERE object_key = ANY (registered)
            FOR UPDATE SKIP LOCKED
        )
        RETURNING video_id
    )
    SELECT array_agg(DISTINCT video_id) INTO dropped
    FROM gone WHERE video_id IS NOT NULL;
    IF dropped IS NOT NULL THEN
        UPDATE deletion_audit AS a
        SET outcome = CASE
            WHEN EXISTS (SELECT 1 FROM storage_deletions AS d WHERE d.video_id = a.video_id)
            THEN 'files_pending' ELSE 'files_deleted' END
        WHERE a.video_id = ANY (dropped)
          AND a.outcome IN ('files_queued', 'files_pending');
    END IF;
END
$$
"""

KEYS_INSERTED = """
CREATE FUNCTION videoworker_keys_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    registered text[];
BEGIN
    SELECT array_agg(DISTINCT v.k) INTO registered
    FROM new_rows AS r
    CROSS JOIN LATERAL (VALUES (r.original_path), (r.proxy_path), (r.thumbnail_path)) AS v (k)
    WHERE v.k IS NOT NULL;
    IF registered IS NOT NULL THEN
        PERFORM videoworker_register_keys(registered);
    END IF;
    RETURN NULL;
END
$$
"""

KEYS_UPDATED = """
CREATE FUNCTION videoworker_keys_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    registered text[];
BEGIN
    SELECT array_agg(DISTINCT v.k) INTO registered
    FROM (VALUES (NEW.original_path), (NEW.proxy_path), (NEW.thumbnail_path)) AS v (k)
    WHERE v.k IS NOT NULL
      AND v.k IS DISTINCT FROM OLD.original_path
      AND v.k IS DISTINCT FROM OLD.proxy_path
      AND v.k IS DISTINCT FROM OLD.thumbnail_path;
    IF registered IS NOT NULL THEN
        PERFORM videoworker_register_keys(registered);
    END IF;
    RETURN NULL;
END
$$
"""

TRIGGERS = (
    "CREATE TRIGGER videos_keys_inserted AFTER INSERT ON videos "
    "REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION videoworker_keys_inserted()",
    "CREATE TRIGGER videos_keys_updated "
    "AFTER UPDATE OF original_path, proxy_path, thumbnail_path ON videos "
    "FOR EACH ROW WHEN ("
    "NEW.original_path IS DISTINCT FROM OLD.original_path "
    "OR NEW.proxy_path IS DISTINCT FROM OLD.proxy_path "
    "OR NEW.thumbnail_path IS DISTINCT FROM OLD.thumbnail_path"
    ") EXECUTE FUNCTION videoworker_keys_updated()",
)

DROPS = (
    "DROP TRIGGER IF EXISTS videos_keys_updated ON videos",
    "DROP TRIGGER IF EXISTS videos_keys_inserted ON videos",
    "DROP FUNCTION IF EXISTS videoworker_keys_updated()",
    "DROP FUNCTION IF EXISTS videoworker_keys_inserted()",
    "DROP FUNCTION IF EXISTS videoworker_register_keys(text[])",
)


def upgrade() -> None:
    for function in (REGISTER_KEYS, KEYS_INSERTED, KEYS_UPDATED):
        op.execute(function)
    for trigger in TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    for drop in DROPS:
        op.execute(drop)
