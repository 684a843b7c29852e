"""Record each deleted video's pin in ``deletion_audit``, beside its mall.

A delete answered again from the audit (a redelivered message) is answered only to a
caller whose scope sees the video, by the same rule reads apply: an operator by its
mall, a tenant by its pin. The mall was recorded; the pin was not.

A nullable column without a default: adding it rewrites nothing. The backfill can only
find pins of rows whose video is still there (an id another service registered again,
with the same mall); every other old row keeps a null pin, which no tenant's scope
matches (``pin_id = ANY(...)`` is never true of a null), while admins and the mall's
operators see it as before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BACKFILL = """
UPDATE deletion_audit AS a
SET pin_id = v.pin_id
FROM videos AS v
WHERE v.id = a.video_id
  AND v.mall_id = a.mall_id
  AND v.pin_id IS NOT NULL
  AND a.pin_id IS NULL
"""


def upgrade() -> None:
    op.add_column("deletion_audit", sa.Column("pin_id", sa.Uuid(), nullable=True))
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_column("deletion_audit", "pin_id")
