"""Index the deletion queue by video, for settling audit rows after purge.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_storage_deletions_video_id", "storage_deletions", ["video_id"])


def downgrade() -> None:
    op.drop_index("ix_storage_deletions_video_id", "storage_deletions")
