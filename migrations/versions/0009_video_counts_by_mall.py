"""Figures per mall as well as per pin: ``video_counts_mall_daily`` and
``video_counts_mall_monthly``.

A total without a pin (every list of an admin or an operator that names no pin, and
the statistics of a mall or of everything) summed the per-pin figures of migration
0008: every pin's rows for every month, ~60,000 rows at a million videos, 3-5 ms a
total. The same figures kept per mall, status, has-a-proxy and in-the-trash, without
the pin, are a few rows per mall and period, so such a total sums a few hundred rows.
A pin's total and a tenant's (scoped by pins) still read the per-pin tables.

The same statement-level triggers keep them, in the same way (one aggregate per
statement, each writer on rows of its own, nothing written by an update that moves no
figure): the functions of 0008 are replaced by ones that upsert these two tables too.
Writers of ``videos`` pay two more upserts per statement (``bench/totals.py`` measures
it). The new tables are filled from the per-pin figures, which are exact, while writers
of ``videos`` wait on the trigger's lock, so no write is missed or counted twice.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _figures_0008() -> ModuleType:
    """Migration 0008, whose SQL builders the triggers' functions are made of."""
    path = Path(__file__).with_name("0008_video_counts.py")
    spec = importlib.util.spec_from_file_location("videoworker_migration_0008", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


V8 = _figures_0008()
MALL_KEY = ("mall_id", "processing_status", "has_proxy", "trashed")
BY_MALL = (
    V8.Target("video_counts_mall_daily", MALL_KEY, "day", "day"),
    V8.Target("video_counts_mall_monthly", MALL_KEY, "month", V8.MONTH_OF_DAY),
)
TABLES = ("video_counts_daily", "video_counts_monthly") + tuple(t.table for t in BY_MALL)


def _create(table: str, period: str, primary_key: tuple[str, ...]) -> None:
    # Column order follows the ORM's (the schema test compares them).
    op.create_table(
        table,
        sa.Column("mall_id", sa.Uuid(), nullable=False),
        sa.Column("processing_status", sa.Text(), nullable=False),
        *(sa.Column(name, sa.Boolean(), nullable=False) for name in ("has_proxy", "trashed")),
        *V8._figures(),
        sa.Column(period, sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint(*primary_key, name=f"pk_{table}"),
    )


def _functions(targets: tuple, tables: tuple[str, ...]) -> None:
    for name, changes in V8.FUNCTIONS.items():
        op.execute(V8._function(name, changes, targets, create="CREATE OR REPLACE"))
    op.execute(
        "CREATE OR REPLACE FUNCTION videoworker_count_truncated() RETURNS trigger "
        "LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$ "
        f"BEGIN TRUNCATE {', '.join(tables)}; RETURN NULL; END $$"
    )


def upgrade() -> None:
    _create("video_counts_mall_daily", "day", ("day", *MALL_KEY, "slot"))
    _create("video_counts_mall_monthly", "month", (*MALL_KEY, "month", "slot"))
    # Writers wait from here to the commit: the new functions and the figures start
    # together.
    op.execute("LOCK TABLE videos IN SHARE ROW EXCLUSIVE MODE")
    _functions(V8.TARGETS + BY_MALL, TABLES)
    key = ", ".join(MALL_KEY)
    for target, source in zip(BY_MALL, ("video_counts_daily", "video_counts_monthly"), strict=True):
        op.execute(
            f"INSERT INTO {target.table} ({key}, {target.period}, slot, videos, stored_bytes,"  # noqa: S608
            f" duration_seconds) SELECT {key}, {target.period}, 0, sum(videos),"
            f" sum(stored_bytes), sum(duration_seconds) FROM {source}"
            f" GROUP BY {key}, {target.period}"
            " HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0"
        )


def downgrade() -> None:
    op.execute("LOCK TABLE videos IN SHARE ROW EXCLUSIVE MODE")
    _functions(V8.TARGETS, TABLES[:2])
    op.drop_table("video_counts_mall_monthly")
    op.drop_table("video_counts_mall_daily")
