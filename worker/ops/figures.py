"""``videoworker figures``: the trigger-kept figures (``worker.adapters.postgres.figures``)
compared with the rows, or rebuilt from them, each on an engine of its own that is
disposed before the command prints.
"""

from __future__ import annotations

from worker.adapters.postgres import figures
from worker.adapters.postgres.uow import make_engine
from worker.settings import Settings


def differing(settings: Settings) -> dict[str, int]:
    """Each figure table's rows that differ from the videos, read in one snapshot."""
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            # One snapshot: a write between two tables' reads is no difference.
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                return figures.differences(conn)
    finally:
        engine.dispose()


def rebuild(settings: Settings) -> dict[str, int]:
    """Recompute every figure from the videos in one transaction (writers wait)."""
    engine = make_engine(settings)
    try:
        with engine.begin() as conn:
            return figures.rebuild(conn)
    finally:
        engine.dispose()
