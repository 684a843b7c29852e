"""has_proxy: partial index pairs instead of indexes on the expression.

PostgreSQL rewrites ``(proxy_path IS NOT NULL) = false`` into ``proxy_path IS NULL``,
so the expression indexes of 0001 never matched a has_proxy=false filter, and an
expression index cannot answer a count from the index alone. Partial indexes whose
predicates are exactly the two filters serve both values, for lists and counts.

Built CONCURRENTLY: ``videos`` keeps being written by other services meanwhile.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

RECENT = (sa.text("uploaded_at DESC"), sa.text("id DESC"))
HAS_PROXY = sa.text("proxy_path IS NOT NULL")
NO_PROXY = sa.text("proxy_path IS NULL")
PARTIAL = (
    ("ix_videos_proxy_recent", (), HAS_PROXY),
    ("ix_videos_no_proxy_recent", (), NO_PROXY),
    ("ix_videos_mall_proxy_recent", ("mall_id",), HAS_PROXY),
    ("ix_videos_mall_no_proxy_recent", ("mall_id",), NO_PROXY),
    ("ix_videos_pin_proxy_recent", ("pin_id",), HAS_PROXY),
    ("ix_videos_pin_no_proxy_recent", ("pin_id",), NO_PROXY),
    ("ix_videos_status_no_proxy_recent", ("processing_status",), NO_PROXY),
)
EXPRESSION = (
    ("ix_videos_has_proxy_recent", ()),
    ("ix_videos_mall_has_proxy_recent", ("mall_id",)),
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, lead, where in PARTIAL:
            op.create_index(
                name,
                "videos",
                [*lead, *RECENT],
                postgresql_where=where,
                postgresql_concurrently=True,
                if_not_exists=True,
            )
        for name, _ in EXPRESSION:
            op.drop_index(name, "videos", postgresql_concurrently=True, if_exists=True)


def downgrade() -> None:
    for name, lead in EXPRESSION:
        op.create_index(name, "videos", [*lead, sa.text("(proxy_path IS NOT NULL)"), *RECENT])
    for name, _, _ in PARTIAL:
        op.drop_index(name, "videos")
