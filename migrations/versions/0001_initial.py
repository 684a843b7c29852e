"""Initial schema: malls, camera pins, videos, processing jobs and the deletion queue.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _recent(name: str, *lead: sa.TextClause | str) -> None:
    op.create_index(name, "videos", [*lead, sa.text("uploaded_at DESC"), sa.text("id DESC")])


def upgrade() -> None:
    op.create_table(
        "malls",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_malls"),
    )
    op.create_table(
        "camera_pins",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("mall_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_camera_pins"),
        sa.ForeignKeyConstraint(
            ["mall_id"], ["malls.id"], ondelete="CASCADE", name="fk_camera_pins_mall_id_malls"
        ),
    )
    op.create_index("ix_camera_pins_mall_id", "camera_pins", ["mall_id"])
    op.create_table(
        "videos",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("mall_id", sa.Uuid(), nullable=False),
        sa.Column("pin_id", sa.Uuid(), nullable=False),
        sa.Column("original_filename", sa.Text(), nullable=False),
        sa.Column("original_path", sa.Text(), nullable=False),
        sa.Column("file_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("checksum_sha256", sa.Text()),
        sa.Column("proxy_path", sa.Text()),
        sa.Column("proxy_size_bytes", sa.BigInteger()),
        sa.Column("thumbnail_path", sa.Text()),
        sa.Column("width", sa.Integer()),
        sa.Column("height", sa.Integer()),
        sa.Column("fps", sa.Double()),
        sa.Column("duration_seconds", sa.Double()),
        sa.Column("codec", sa.Text()),
        sa.Column(
            "processing_status", sa.Text(), nullable=False, server_default=sa.text("'pending'")
        ),
        sa.Column("processing_job_id", sa.Uuid()),
        sa.Column("processing_error", sa.Text()),
        sa.Column("processing_started_at", TS),
        sa.Column("processing_completed_at", TS),
        sa.Column("uploaded_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("recorded_at", TS),
        sa.Column("created_at", TS, server_default=sa.func.now()),
        sa.Column("updated_at", TS, server_default=sa.func.now()),
        sa.Column("operator_notes", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_videos"),
        sa.ForeignKeyConstraint(["mall_id"], ["malls.id"], name="fk_videos_mall_id_malls"),
        sa.ForeignKeyConstraint(
            ["pin_id"], ["camera_pins.id"], name="fk_videos_pin_id_camera_pins"
        ),
        sa.CheckConstraint(
            "processing_status IN ('pending', 'processing', 'completed', 'failed')",
            # op.f: already the full name; the ck naming convention would prefix it again.
            name=op.f("ck_videos_processing_status"),
        ),
    )
    _recent("ix_videos_recent")
    _recent("ix_videos_mall_recent", "mall_id")
    _recent("ix_videos_pin_recent", "pin_id")
    _recent("ix_videos_status_recent", "processing_status")
    _recent("ix_videos_mall_status_recent", "mall_id", "processing_status")
    _recent("ix_videos_pin_status_recent", "pin_id", "processing_status")
    _recent("ix_videos_has_proxy_recent", sa.text("(proxy_path IS NOT NULL)"))
    _recent("ix_videos_mall_has_proxy_recent", "mall_id", sa.text("(proxy_path IS NOT NULL)"))

    op.create_table(
        "processing_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("video_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.Text()),
        sa.Column("created_at", TS, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_processing_jobs"),
        sa.ForeignKeyConstraint(
            ["video_id"],
            ["videos.id"],
            ondelete="CASCADE",
            name="fk_processing_jobs_video_id_videos",
        ),
    )
    op.create_index("ix_processing_jobs_video_id", "processing_jobs", ["video_id"])

    op.create_table(
        "storage_deletions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("object_key", sa.Text(), nullable=False),
        sa.Column("video_id", sa.Uuid()),
        sa.Column("mall_id", sa.Uuid()),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("next_attempt_at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_storage_deletions"),
        sa.CheckConstraint(
            "reason IN ('request', 'retention')", name=op.f("ck_storage_deletions_reason")
        ),
    )
    op.create_index("ix_storage_deletions_due", "storage_deletions", ["next_attempt_at", "id"])


def downgrade() -> None:
    op.drop_table("storage_deletions")
    op.drop_table("processing_jobs")
    op.drop_table("videos")
    op.drop_table("camera_pins")
    op.drop_table("malls")
