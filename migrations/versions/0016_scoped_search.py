"""Searches narrowed by scope inside the trigram indexes: ``(mall_id, pin_id, text)``.

A search by an operator (its malls) or a tenant (its pins), or with a ``mall_id`` or
``pin_id`` filter, used to find every match of ``q`` in the whole table through the
trigram index and then keep those of its scope: a mall's search cost what the whole
table's does, and more (the planner ANDed the trigram bitmap with the mall's list
index). With ``btree_gin``, one GIN index holds the mall and the pin beside the text's
trigrams, and the scope's equality is one more key of the same index scan: a scoped
search costs what its scope holds. A search with no scope reads the same index for its
trigrams alone, at the cost of the single-column index it replaces, which is dropped.

The notes' index holds only rows that have notes (most have none); ``ILIKE`` on the
column implies it is not null, so the planner uses it for every search.

Built ``CONCURRENTLY`` (outside a transaction): writers are not blocked while a
10,000,000-row table is indexed. The SQL is the literal text this revision runs.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

CREATE_EXTENSION = "CREATE EXTENSION IF NOT EXISTS btree_gin"
CREATE_FILENAME = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_videos_scoped_filename_trgm ON videos "
    "USING gin (mall_id, pin_id, original_filename gin_trgm_ops)"
)
CREATE_NOTES = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_videos_scoped_notes_trgm ON videos "
    "USING gin (mall_id, pin_id, operator_notes gin_trgm_ops) "
    "WHERE operator_notes IS NOT NULL"
)
DROP_OLD = (
    "DROP INDEX CONCURRENTLY IF EXISTS ix_videos_filename_trgm",
    "DROP INDEX CONCURRENTLY IF EXISTS ix_videos_notes_trgm",
)
CREATE_OLD = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_videos_filename_trgm ON videos "
    "USING gin (original_filename gin_trgm_ops)",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_videos_notes_trgm ON videos "
    "USING gin (operator_notes gin_trgm_ops)",
)
DROP_NEW = (
    "DROP INDEX CONCURRENTLY IF EXISTS ix_videos_scoped_filename_trgm",
    "DROP INDEX CONCURRENTLY IF EXISTS ix_videos_scoped_notes_trgm",
)


def upgrade() -> None:
    op.execute(CREATE_EXTENSION)
    with op.get_context().autocommit_block():
        op.execute(CREATE_FILENAME)
        op.execute(CREATE_NOTES)
        for statement in DROP_OLD:
            op.execute(statement)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for statement in CREATE_OLD:
            op.execute(statement)
        for statement in DROP_NEW:
            op.execute(statement)
    # btree_gin stays: another object may have come to use it since.
