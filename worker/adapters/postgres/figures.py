"""Checking the trigger-kept figures (migrations 0008 to 0010) against the rows, and
rebuilding them from the rows.

The triggers keep the figures exact for every write that fires them. A write that
does not fire them leaves them wrong:
- ``pg_restore --disable-triggers``;
- ``session_replication_role = replica`` (logical replication's apply worker, some bulk
  loaders);
- ``ALTER TABLE videos DISABLE TRIGGER``.

``videoworker figures check`` says whether the figures still match; ``videoworker
figures rebuild`` recomputes them while writers of ``videos`` wait. Both take each
row's figure from ``video_figure(videos)`` (migration 0010), the function the triggers
call, so what a video counts is written once, in the database; this module only sums
it per table, with the ORM's table names, keys and periods.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from worker.adapters.postgres.tables import FIGURE_MODELS

# (table, its key's columns, its period column: columns of video_figure's too)
TABLES = tuple((model.__tablename__, model.key_columns, model.period) for model in FIGURE_MODELS)
# Every row's figure, summed per key and period. ``{figure_key}``: the key's columns
# qualified with ``f``, as ``videos`` has columns of the same names.
FRESH = """
SELECT f.{period} AS period, {figure_key}, sum(f.videos) AS videos,
       sum(f.stored_bytes) AS stored_bytes, sum(f.duration_seconds) AS duration_seconds
FROM videos AS v CROSS JOIN LATERAL video_figure(v) AS f
GROUP BY f.{period}, {figure_key}
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


def _fresh(key: tuple[str, ...], period: str) -> str:
    return FRESH.format(period=period, figure_key=", ".join(f"f.{column}" for column in key))


def differences(connection: Connection) -> dict[str, int]:
    """Per table, how many (period, key) figures differ from a fresh aggregate of the
    rows, in one snapshot (run it in a REPEATABLE READ transaction for that)."""
    found = {}
    for table, key, period in TABLES:
        kept = KEPT.format(period=period, key=", ".join(key), table=table)
        fresh = _fresh(key, period)
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
    for table, key, period in TABLES:
        columns = ", ".join(key)
        connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - a constant
        rows[table] = connection.execute(
            text(
                f"INSERT INTO {table} ({period}, {columns}, slot, videos, stored_bytes,"  # noqa: S608
                f" duration_seconds) SELECT period, {columns}, 0, videos, stored_bytes,"
                f" duration_seconds FROM ({_fresh(key, period)}) AS fresh"
            )
        ).rowcount
    return rows
