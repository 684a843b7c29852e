"""An index on ``deletion_audit.at``, for pruning the audit past its retention.

The daily sweep deletes audit rows older than ``AUDIT_RETENTION_DAYS``, oldest first, in
batches: without this index each batch, and the last one that finds nothing, would read
the whole table. Built concurrently, so writers of the audit never wait for it.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_deletion_audit_at ON deletion_audit (at)"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_deletion_audit_at")
