"""A row registered on an object key waits for, or holds off, the removal engine.

The engine (``handlers.deletion``) takes a transaction advisory lock per key, on
``hashtextextended(key, 0)``, then reads the key's references, then calls S3, holding
the locks until it commits. A row another service registered on the key between the
check and the S3 call lost its object. Now every writer of ``videos`` takes the same
lock, in its own transaction, for each key it registers (INSERT, or an UPDATE that
gives a row a key it did not hold), or one lock for all of them (the fence, below):

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

Locks are taken in hash order (the engine's order), all keys of a statement in one go
(statement-level triggers over its transition tables; an UPDATE registers the keys a
row did not hold before, rows matched by id), so a multi-row statement and an engine
never deadlock over keys.

A statement registering more than 1,000 keys (a COPY or ``INSERT ... SELECT`` of a
backlog, a bulk ``UPDATE`` of ``proxy_path``) would need a lock per key in one
transaction and run out of the server's lock table ("out of shared memory"). It takes
the registration fence instead: one advisory lock (FENCE below) that every engine
transaction takes shared before its key locks. Held exclusively, it waits for the
engines in flight to commit and holds every later one off until the writer commits;
each then reads the references under its locks and sees the new rows. The queued
deletions of the keys go, and the audit rows settle, in set-based statements. An engine
holding the fence shared and waiting for a small writer's key lock is no cycle (the
small writer never waits for the fence), nor is a bulk writer waiting for the fence
while holding no key. ``SECURITY DEFINER``: a service allowed to write ``videos`` need
not be allowed to write the deletion queue or the audit.

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

# FENCE, 0x767766656E6365 ("vwfence"): one advisory lock no other lock uses. The
# engine takes it shared before its key locks (REGISTRATION_FENCE in rooms/deletions.py);
# a statement registering more than 1,000 keys takes it exclusively instead of a lock
# per key. Written out as 33345328923960165 in the SQL below.

SETTLE_DROPPED = """
CREATE FUNCTION videoworker_settle_dropped(dropped uuid[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path FROM CURRENT AS $$
    UPDATE deletion_audit AS a
    SET outcome = CASE
        WHEN EXISTS (SELECT 1 FROM storage_deletions AS d WHERE d.video_id = a.video_id)
        THEN 'files_pending' ELSE 'files_deleted' END
    WHERE a.video_id = ANY (dropped)
      AND a.outcome IN ('files_queued', 'files_pending');
$$
"""

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
        PERFORM videoworker_settle_dropped(dropped);
    END IF;
END
$$
"""

KEYS_INSERTED = """
CREATE FUNCTION videoworker_keys_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    registered text[];
    dropped uuid[];
BEGIN
    IF (SELECT count(original_path) + count(proxy_path) + count(thumbnail_path)
        FROM new_rows) > 1000 THEN
        -- The fence (FENCE above): engines in flight commit first, later ones wait
        -- for this transaction and then see its rows.
        PERFORM pg_advisory_xact_lock(33345328923960165);
        WITH registered AS (
            SELECT original_path AS k FROM new_rows
            UNION ALL SELECT proxy_path FROM new_rows
            UNION ALL SELECT thumbnail_path FROM new_rows
        ), gone AS (
            DELETE FROM storage_deletions
            WHERE id IN (
                SELECT d.id FROM storage_deletions AS d
                JOIN registered AS r ON r.k = d.object_key
                FOR UPDATE OF d SKIP LOCKED
            )
            RETURNING video_id
        )
        SELECT array_agg(DISTINCT video_id) INTO dropped
        FROM gone WHERE video_id IS NOT NULL;
        IF dropped IS NOT NULL THEN
            PERFORM videoworker_settle_dropped(dropped);
        END IF;
        RETURN NULL;
    END IF;
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
    dropped uuid[];
BEGIN
    -- A key a row did not hold before the statement (rows matched by id).
    IF (SELECT count(*) FROM (
            SELECT 1 FROM new_rows AS r JOIN old_rows AS o ON o.id = r.id
            CROSS JOIN LATERAL (VALUES (r.original_path), (r.proxy_path), (r.thumbnail_path))
                AS v (k)
            WHERE v.k IS NOT NULL
              AND v.k IS DISTINCT FROM o.original_path
              AND v.k IS DISTINCT FROM o.proxy_path
              AND v.k IS DISTINCT FROM o.thumbnail_path
            LIMIT 1001
        ) AS changed) > 1000 THEN
        PERFORM pg_advisory_xact_lock(33345328923960165);
        WITH registered AS (
            SELECT v.k FROM new_rows AS r JOIN old_rows AS o ON o.id = r.id
            CROSS JOIN LATERAL (VALUES (r.original_path), (r.proxy_path), (r.thumbnail_path))
                AS v (k)
            WHERE v.k IS NOT NULL
              AND v.k IS DISTINCT FROM o.original_path
              AND v.k IS DISTINCT FROM o.proxy_path
              AND v.k IS DISTINCT FROM o.thumbnail_path
        ), gone AS (
            DELETE FROM storage_deletions
            WHERE id IN (
                SELECT d.id FROM storage_deletions AS d
                JOIN registered AS r ON r.k = d.object_key
                FOR UPDATE OF d SKIP LOCKED
            )
            RETURNING video_id
        )
        SELECT array_agg(DISTINCT video_id) INTO dropped
        FROM gone WHERE video_id IS NOT NULL;
        IF dropped IS NOT NULL THEN
            PERFORM videoworker_settle_dropped(dropped);
        END IF;
        RETURN NULL;
    END IF;
    SELECT array_agg(DISTINCT v.k) INTO registered
    FROM new_rows AS r JOIN old_rows AS o ON o.id = r.id
    CROSS JOIN LATERAL (VALUES (r.original_path), (r.proxy_path), (r.thumbnail_path)) AS v (k)
    WHERE v.k IS NOT NULL
      AND v.k IS DISTINCT FROM o.original_path
      AND v.k IS DISTINCT FROM o.proxy_path
      AND v.k IS DISTINCT FROM o.thumbnail_path;
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
    # No column list: PostgreSQL refuses one beside transition tables.
    "CREATE TRIGGER videos_keys_updated AFTER UPDATE ON videos "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION videoworker_keys_updated()",
)

DROPS = (
    "DROP TRIGGER IF EXISTS videos_keys_updated ON videos",
    "DROP TRIGGER IF EXISTS videos_keys_inserted ON videos",
    "DROP FUNCTION IF EXISTS videoworker_keys_updated()",
    "DROP FUNCTION IF EXISTS videoworker_keys_inserted()",
    "DROP FUNCTION IF EXISTS videoworker_register_keys(text[])",
    "DROP FUNCTION IF EXISTS videoworker_settle_dropped(uuid[])",
)


def upgrade() -> None:
    for function in (SETTLE_DROPPED, REGISTER_KEYS, KEYS_INSERTED, KEYS_UPDATED):
        op.execute(function)
    for trigger in TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    for drop in DROPS:
        op.execute(drop)
