"""Trash, search and storage quotas.

- ``videos.trashed_at`` / ``trashed_by``: nullable and without defaults, so adding them
  rewrites nothing and the services that write ``videos`` are unaffected.
- The ``videos.list`` indexes become partial on ``trashed_at IS NULL``: a list of what
  is not in the trash (every list but ``trashed=true``) keeps reading the index alone.
  The new ones are built before the old ones go, all CONCURRENTLY, as other services
  keep writing ``videos`` meanwhile. The mall and pin indexes stay whole: the sweep,
  the quota and per-pin statistics read trashed rows too.
- pg_trgm and a trigram index on ``original_filename`` and on ``operator_notes``, for
  ``videos.list(q=...)``.
- ``mall_retention.max_storage_bytes``; ``retention_days`` may now be null (a mall
  with a quota only).
- Deletion reasons ``bulk``, ``trash`` and ``quota`` in the audit log and the queue.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

RECENT = (sa.text("uploaded_at DESC"), sa.text("id DESC"))
LIVE = "trashed_at IS NULL"
NEW_LIST_INDEXES = (
    ("ix_videos_live_recent", (), LIVE),
    ("ix_videos_live_mall_recent", ("mall_id",), LIVE),
    ("ix_videos_live_pin_recent", ("pin_id",), LIVE),
    ("ix_videos_live_status_recent", ("processing_status",), LIVE),
    ("ix_videos_live_mall_status_recent", ("mall_id", "processing_status"), LIVE),
    ("ix_videos_live_pin_status_recent", ("pin_id", "processing_status"), LIVE),
    ("ix_videos_live_proxy_recent", (), f"proxy_path IS NOT NULL AND {LIVE}"),
    ("ix_videos_live_no_proxy_recent", (), f"proxy_path IS NULL AND {LIVE}"),
    ("ix_videos_live_mall_proxy_recent", ("mall_id",), f"proxy_path IS NOT NULL AND {LIVE}"),
    ("ix_videos_live_mall_no_proxy_recent", ("mall_id",), f"proxy_path IS NULL AND {LIVE}"),
    ("ix_videos_live_pin_proxy_recent", ("pin_id",), f"proxy_path IS NOT NULL AND {LIVE}"),
    ("ix_videos_live_pin_no_proxy_recent", ("pin_id",), f"proxy_path IS NULL AND {LIVE}"),
    (
        "ix_videos_live_status_no_proxy_recent",
        ("processing_status",),
        f"proxy_path IS NULL AND {LIVE}",
    ),
    ("ix_videos_trashed_recent", (), "trashed_at IS NOT NULL"),
)
# The 0001/0005 list indexes the partial ones replace: (name, leading columns, predicate).
OLD_LIST_INDEXES = (
    ("ix_videos_recent", (), None),
    ("ix_videos_status_recent", ("processing_status",), None),
    ("ix_videos_mall_status_recent", ("mall_id", "processing_status"), None),
    ("ix_videos_pin_status_recent", ("pin_id", "processing_status"), None),
    ("ix_videos_proxy_recent", (), "proxy_path IS NOT NULL"),
    ("ix_videos_no_proxy_recent", (), "proxy_path IS NULL"),
    ("ix_videos_mall_proxy_recent", ("mall_id",), "proxy_path IS NOT NULL"),
    ("ix_videos_mall_no_proxy_recent", ("mall_id",), "proxy_path IS NULL"),
    ("ix_videos_pin_proxy_recent", ("pin_id",), "proxy_path IS NOT NULL"),
    ("ix_videos_pin_no_proxy_recent", ("pin_id",), "proxy_path IS NULL"),
    ("ix_videos_status_no_proxy_recent", ("processing_status",), "proxy_path IS NULL"),
)
TRIGRAM_INDEXES = (
    ("ix_videos_filename_trgm", "original_filename"),
    ("ix_videos_notes_trgm", "operator_notes"),
)
REASONS = "('request', 'bulk', 'retention', 'trash', 'quota')"
QUEUE_REASONS = "('request', 'bulk', 'retention', 'trash', 'quota', 'reconcile')"


def _where(predicate: str | None):
    return sa.text(predicate) if predicate else None


def _reasons(audit: str, queue: str) -> None:
    for table, reasons in (("deletion_audit", audit), ("storage_deletions", queue)):
        name = op.f(f"ck_{table}_reason")
        op.drop_constraint(name, table, type_="check")
        op.create_check_constraint(name, table, f"reason IN {reasons}")


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.add_column("videos", sa.Column("trashed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("videos", sa.Column("trashed_by", sa.Text(), nullable=True))

    op.add_column("mall_retention", sa.Column("max_storage_bytes", sa.BigInteger(), nullable=True))
    op.alter_column("mall_retention", "retention_days", nullable=True)
    op.create_check_constraint(
        op.f("ck_mall_retention_max_storage_bytes"), "mall_retention", "max_storage_bytes > 0"
    )
    op.create_check_constraint(
        op.f("ck_mall_retention_something_set"),
        "mall_retention",
        "retention_days IS NOT NULL OR max_storage_bytes IS NOT NULL",
    )
    _reasons(REASONS, QUEUE_REASONS)

    with op.get_context().autocommit_block():
        for name, lead, where in NEW_LIST_INDEXES:
            op.create_index(
                name,
                "videos",
                [*lead, *RECENT],
                postgresql_where=_where(where),
                postgresql_concurrently=True,
                if_not_exists=True,
            )
        op.create_index(
            "ix_videos_trashed_at",
            "videos",
            ["trashed_at"],
            postgresql_where=sa.text("trashed_at IS NOT NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        for name, column in TRIGRAM_INDEXES:
            op.create_index(
                name,
                "videos",
                [column],
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
                postgresql_concurrently=True,
                if_not_exists=True,
            )
        for name, _, _ in OLD_LIST_INDEXES:
            op.drop_index(name, "videos", postgresql_concurrently=True, if_exists=True)


def downgrade() -> None:
    for name, lead, where in OLD_LIST_INDEXES:
        op.create_index(name, "videos", [*lead, *RECENT], postgresql_where=_where(where))
    for name, _ in TRIGRAM_INDEXES:
        op.drop_index(name, "videos")
    op.drop_index("ix_videos_trashed_at", "videos")
    for name, _, _ in NEW_LIST_INDEXES:
        op.drop_index(name, "videos")
    # Rows with the new reasons would break the old constraints: they read as requests.
    op.execute("UPDATE deletion_audit SET reason = 'request' WHERE reason IN ('bulk', 'trash')")
    op.execute("UPDATE deletion_audit SET reason = 'retention' WHERE reason = 'quota'")
    op.execute("UPDATE storage_deletions SET reason = 'request' WHERE reason IN ('bulk', 'trash')")
    op.execute("UPDATE storage_deletions SET reason = 'retention' WHERE reason = 'quota'")
    _reasons("('request', 'retention')", "('request', 'retention', 'reconcile')")
    op.drop_constraint(op.f("ck_mall_retention_something_set"), "mall_retention", type_="check")
    op.drop_constraint(op.f("ck_mall_retention_max_storage_bytes"), "mall_retention", type_="check")
    op.execute("DELETE FROM mall_retention WHERE retention_days IS NULL")
    op.alter_column("mall_retention", "retention_days", nullable=False)
    op.drop_column("mall_retention", "max_storage_bytes")
    op.drop_column("videos", "trashed_by")
    op.drop_column("videos", "trashed_at")
