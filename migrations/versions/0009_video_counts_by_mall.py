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
figure). Their functions are replaced by ones that run a single statement: the
statement's changes are aggregated once, per day and pin, and the four tables are
upserted from that aggregate, instead of each upsert reading the transition tables
again. The new tables are filled from the per-pin figures, which are exact, while
writers of ``videos`` wait on the trigger's lock, so no write is missed or counted
twice.

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
PIN_KEY = V8.KEY
MALL_KEY = ("mall_id", "processing_status", "has_proxy", "trashed")
MONTH = "date_trunc('month', day)::date"
# (table, its key, its period column, that period of a change's day)
TARGETS = (
    ("video_counts_daily", PIN_KEY, "day", "day"),
    ("video_counts_monthly", PIN_KEY, "month", MONTH),
    ("video_counts_mall_daily", MALL_KEY, "day", "day"),
    ("video_counts_mall_monthly", MALL_KEY, "month", MONTH),
)
TABLES = tuple(target[0] for target in TARGETS)
SUMMED = (
    "sum(videos) AS videos, sum(stored_bytes) AS stored_bytes, "
    "sum(duration_seconds) AS duration_seconds"
)
MOVED = "HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0"


def _upsert(table: str, key: tuple[str, ...], period: str, of_day: str) -> str:
    """One table's upsert from the statement's aggregated ``changes``, in key order."""
    columns = ", ".join(key)
    return f"""
    INSERT INTO {table} AS c ({period}, {columns}, slot, videos, stored_bytes,
                               duration_seconds)
    SELECT {of_day} AS {period}, {columns}, slot, {SUMMED}
    FROM changes
    GROUP BY {of_day}, {columns}, slot
    {MOVED}
    ORDER BY {of_day}, {columns}
    {V8.ADD.format(pk=f"pk_{table}")}"""  # noqa: S608


def _apply(changes: str) -> str:
    """One statement: a statement's changes (rows with a ``sign`` of +1 or -1) summed
    once per day, pin and slot, and every table upserted from that, each in its own
    data-modifying CTE (a materialized CTE is computed once)."""
    pin_key = ", ".join(PIN_KEY)
    upserts = [_upsert(*target) for target in TARGETS]
    ctes = ",\n".join(f"upsert_{n} AS ({upsert})" for n, upsert in enumerate(upserts[:-1]))
    return f"""
    WITH changes AS MATERIALIZED (
        SELECT day, {pin_key}, slot, {V8.SUMS}
        FROM ({changes}) AS change_rows
        GROUP BY day, {pin_key}, slot
    ),
    {ctes}
    {upserts[-1]};
"""  # noqa: S608


def _function(name: str, changes: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    writer_slot integer := pg_backend_pid();
BEGIN
    {_apply(changes)}
    RETURN NULL;
END
$$"""


def _truncated(tables: tuple[str, ...]) -> str:
    return (
        "CREATE OR REPLACE FUNCTION videoworker_count_truncated() RETURNS trigger "
        "LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$ "
        f"BEGIN TRUNCATE {', '.join(tables)}; RETURN NULL; END $$"
    )


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


def upgrade() -> None:
    _create("video_counts_mall_daily", "day", ("day", *MALL_KEY, "slot"))
    _create("video_counts_mall_monthly", "month", (*MALL_KEY, "month", "slot"))
    # Writers wait from here to the commit: the new functions and the figures start
    # together.
    op.execute("LOCK TABLE videos IN SHARE ROW EXCLUSIVE MODE")
    for name, changes in V8.FUNCTIONS.items():
        op.execute(_function(name, changes))
    op.execute(_truncated(TABLES))
    key = ", ".join(MALL_KEY)
    # Each per-mall table from the per-pin table of the same period.
    for (table, _, period, _), source in zip(TARGETS[2:], TABLES[:2], strict=True):
        op.execute(
            f"INSERT INTO {table} ({key}, {period}, slot, videos, stored_bytes,"  # noqa: S608
            f" duration_seconds) SELECT {key}, {period}, 0, {SUMMED} FROM {source}"
            f" GROUP BY {key}, {period} {MOVED}"
        )


def downgrade() -> None:
    op.execute("LOCK TABLE videos IN SHARE ROW EXCLUSIVE MODE")
    for name, changes in V8.FUNCTIONS.items():
        op.execute(V8._function(name, changes).replace("CREATE", "CREATE OR REPLACE", 1))
    op.execute(_truncated(TABLES[:2]))
    op.drop_table("video_counts_mall_monthly")
    op.drop_table("video_counts_mall_daily")
