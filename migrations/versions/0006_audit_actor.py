"""Record who deleted each video: the caller's token ``sub`` (null when auth is off).

A nullable column without a default: adding it rewrites nothing, so it is safe on a
large ``deletion_audit`` that deletes keep writing meanwhile.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deletion_audit", sa.Column("actor", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("deletion_audit", "actor")
