"""Lifecycle: per-mall retention, legal hold, deletion audit, key look-up indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A constant default: PostgreSQL 11+ adds the column without rewriting the table.
    op.add_column(
        "videos",
        sa.Column("legal_hold", sa.Boolean(), nullable=False, server_default=sa.text("false")),
    )
    op.create_index("ix_videos_original_path", "videos", ["original_path"])
    op.create_index("ix_videos_proxy_path", "videos", ["proxy_path"])
    op.create_index("ix_videos_thumbnail_path", "videos", ["thumbnail_path"])

    op.drop_constraint(op.f("ck_storage_deletions_reason"), "storage_deletions", type_="check")
    op.create_check_constraint(
        op.f("ck_storage_deletions_reason"),
        "storage_deletions",
        "reason IN ('request', 'retention', 'reconcile')",
    )
    op.create_index("ix_storage_deletions_object_key", "storage_deletions", ["object_key"])

    op.create_table(
        "mall_retention",
        sa.Column("mall_id", sa.Uuid(), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("mall_id", name="pk_mall_retention"),
        sa.ForeignKeyConstraint(
            ["mall_id"], ["malls.id"], ondelete="CASCADE", name="fk_mall_retention_mall_id_malls"
        ),
        sa.CheckConstraint(
            "retention_days BETWEEN 1 AND 36500", name=op.f("ck_mall_retention_retention_days")
        ),
    )
    op.create_table(
        "deletion_audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("video_id", sa.Uuid(), nullable=False),
        sa.Column("mall_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("object_keys", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_deletion_audit"),
        sa.CheckConstraint(
            "reason IN ('request', 'retention')", name=op.f("ck_deletion_audit_reason")
        ),
        sa.CheckConstraint(
            "outcome IN ('files_queued', 'files_kept', 'files_deleted', 'files_pending')",
            name=op.f("ck_deletion_audit_outcome"),
        ),
    )
    op.create_index("ix_deletion_audit_video_id", "deletion_audit", ["video_id"])
    op.create_index("ix_deletion_audit_mall_at", "deletion_audit", ["mall_id", "at"])


def downgrade() -> None:
    op.drop_table("deletion_audit")
    op.drop_table("mall_retention")
    op.drop_index("ix_storage_deletions_object_key", "storage_deletions")
    op.drop_constraint(op.f("ck_storage_deletions_reason"), "storage_deletions", type_="check")
    op.create_check_constraint(
        op.f("ck_storage_deletions_reason"),
        "storage_deletions",
        "reason IN ('request', 'retention')",
    )
    op.drop_index("ix_videos_thumbnail_path", "videos")
    op.drop_index("ix_videos_proxy_path", "videos")
    op.drop_index("ix_videos_original_path", "videos")
    op.drop_column("videos", "legal_hold")
