"""Record which task deleted a video, so a redelivered delete gets the same answer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deletion_audit", sa.Column("request_id", sa.Text(), nullable=True))
    op.create_index("ix_deletion_audit_request_id", "deletion_audit", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_deletion_audit_request_id", "deletion_audit")
    op.drop_column("deletion_audit", "request_id")
