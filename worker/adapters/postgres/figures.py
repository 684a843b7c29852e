"""Checking the trigger-kept figures (migrations 0008 and 0009) against the rows, and
rebuilding them from the rows.

The triggers keep the figures exact for every write that fires them. A write that
does not fire them leaves them wrong:
- ``pg_restore --disable-triggers``;
- ``session_replication_role = replica`` (logical replication's apply worker, some bulk
  loaders);
- ``ALTER TABLE videos DISABLE TRIGGER``.

``videoworker figures check`` says whether the figures still match; ``videoworker
figures rebuild`` recomputes them while writers of ``videos`` wait. The SQL is this
module's constants and the ORM's table names and keys only.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from worker.adapters.postgres.tables import FIGURE_MODELS

# A row of videos' period, by the name of a table's period column.
PERIOD_OF_ROW = {
    "day": "(uploaded_at AT TIME ZONE 'UTC')::date",
    "month": "date_trunc('month', uploaded_at AT TIME ZONE 'UTC')::date",
}
# (table, its key, its period column, that period of a row of videos)
TABLES = tuple(
    (model.__tablename__, ", ".join(model.key_columns), model.period, PERIOD_OF_ROW[model.period])
    for model in FIGURE_MODELS
)
# A video as the triggers count it (see migration 0008), summed per key and period.
FRESH = """
SELECT {period} AS period, {key}, count(*) AS videos, sum(stored_bytes) AS stored_bytes,
       sum(duration_seconds) AS duration_seconds
FROM (
    SELECT uploaded_at, mall_id, pin_id, processing_status,
           proxy_path IS NOT NULL AS has_proxy, trashed_at IS NOT NULL AS trashed,
           file_size_bytes::numeric + coalesce(proxy_size_bytes, 0) AS stored_bytes,
           CASE WHEN duration_seconds BETWEEN -1e300 AND 1e300
                THEN duration_seconds::numeric ELSE 0 END AS duration_seconds
    FROM videos
) AS counted
GROUP BY {period}, {key}
"""
KEPT = """
SELECT {period} AS period, {key}, sum(videos) AS videos, sum(stored_bytes) AS stored_bytes,
       sum(duration_seconds) AS duration_seconds
FROM {table} GROUP BY {period}, {key}
HAVING sum(videos) <> 0 OR sum(stored_bytes) <> 0 OR sum(duration_seconds) <> 0
"""
DIFFERENCES = """
SELECT count(*) FROM (
    (({kept}) EXCEPT ({fresh})) UNION ALL (({fresh}) EXCEPT ({kept}))
) AS differing
"""


def differences(connection: Connection) -> dict[str, int]:
    """Per table, how many (period, key) figures differ from a fresh aggregate of the
    rows, in one snapshot (run it in a REPEATABLE READ transaction for that)."""
    found = {}
    for table, key, period, expression in TABLES:
        kept = KEPT.format(period=period, key=key, table=table)
        fresh = FRESH.format(period=expression, key=key)
        found[table] = connection.execute(
            text(DIFFERENCES.format(kept=kept, fresh=fresh))
        ).scalar_one()
    return found


def rebuild(connection: Connection) -> dict[str, int]:
    """Recompute every figure from the rows, in the caller's transaction: writers of
    ``videos`` wait from the lock to its commit (seconds at ten million rows), so no
    write is missed or counted twice. Answers how many rows each table holds after."""
    connection.execute(text("LOCK TABLE videos IN SHARE ROW EXCLUSIVE MODE"))
    rows = {}
    for table, key, period, expression in TABLES:
        connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - a constant
        fresh = FRESH.format(period=expression, key=key)
        rows[table] = connection.execute(
            text(
                f"INSERT INTO {table} ({period}, {key}, slot, videos, stored_bytes,"  # noqa: S608
                f" duration_seconds) SELECT period, {key}, 0, videos, stored_bytes,"
                f" duration_seconds FROM ({fresh}) AS fresh"
            )
        ).rowcount
    return rows
