"""``video_figure(videos)`` (migration 0010) is the one definition of what a video
counts in the figures: the triggers call it, it is inlined where they call it, it
counts the edge cases as the figures always did, and 0010's downgrade gives 0009's
functions back as 0009 wrote them.

The exactness tests (``test_video_counts.py``) compare the triggers' figures with
``videoworker figures check``, which reads the same function; the values here are
written out by hand, so a wrong rule cannot pass by agreeing with itself.
"""

from __future__ import annotations

import json
from decimal import Decimal

from sqlalchemy import text

from worker.adapters.postgres import figures
from worker.adapters.postgres.migrate import downgrade, upgrade

COUNTING = ("videoworker_count_inserted", "videoworker_count_deleted", "videoworker_count_updated")
# Fragments of the rule itself: the triggers' own SQL must name none of them.
RULE_FRAGMENTS = ("1e300", "coalesce", "AT TIME ZONE", "date_trunc", "IS NOT NULL")
FIGURE_FUNCTIONS = (*COUNTING, "videoworker_count_truncated", "video_figure")
DEFINITIONS = """
SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = current_schema() AND p.proname = ANY(:names)
"""


def test_the_triggers_take_each_rows_figure_from_video_figure_and_restate_no_rule(engine):
    with engine.connect() as conn:
        sources = dict(
            conn.execute(
                text("SELECT proname, prosrc FROM pg_proc WHERE proname = ANY(:names)"),
                {"names": list(COUNTING)},
            ).all()
        )
    assert set(sources) == set(COUNTING)
    for name, source in sources.items():
        assert "video_figure(r)" in source, name
        assert [f for f in RULE_FRAGMENTS if f.lower() in source.lower()] == [], name


def test_video_figure_is_declared_so_that_the_planner_inlines_it(engine):
    """LANGUAGE sql, IMMUTABLE, not STRICT, not SECURITY DEFINER, no SET: otherwise
    every writer's statement would call it once a row instead of reading the
    expressions; and the plan of the check's aggregate holds no function scan."""
    with engine.connect() as conn:
        declared = conn.execute(
            text(
                "SELECT l.lanname, p.provolatile, p.proisstrict, p.prosecdef, p.proconfig,"
                " p.proretset FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
                " WHERE p.proname = 'video_figure'"
            )
        ).one()
        (plan,) = conn.execute(
            text(f"EXPLAIN (FORMAT JSON) {figures._fresh(('mall_id', 'pin_id'), 'month')}")
        ).one()
    assert tuple(declared) == ("sql", "i", False, False, None, True)
    assert "Function Scan" not in json.dumps(plan)


def _figure(conn, **row) -> dict:
    """The figure of a ``videos`` row made of these fields (the rest null): no row is
    written, so no foreign key or trigger is involved."""
    return dict(
        conn.execute(
            text(
                "SELECT f.* FROM video_figure("
                "jsonb_populate_record(NULL::videos, CAST(:row AS jsonb))) AS f"
            ),
            {"row": json.dumps(row)},
        )
        .one()
        ._mapping
    )


def test_a_rows_figure_by_hand(engine):
    biggest = 2**63 - 1
    with engine.connect() as conn:
        # The day and month are UTC's whatever the session's zone (here UTC+14).
        conn.execute(text("SET TIME ZONE 'Pacific/Kiritimati'"))
        base = {
            "mall_id": "00000000-0000-0000-0000-00000000000a",
            "pin_id": "00000000-0000-0000-0000-00000000000b",
            "processing_status": "completed",
            "uploaded_at": "2026-03-31T23:30:00-02:00",
        }
        figure = _figure(
            conn,
            **base,
            file_size_bytes=biggest,
            proxy_path="videos/p.mp4",
            proxy_size_bytes=biggest,
            duration_seconds=12.5,
            trashed_at="2026-04-02T00:00:00Z",
        )
        assert {k: str(v) for k, v in figure.items()} == {
            **{k: base[k] for k in ("mall_id", "pin_id", "processing_status")},
            "has_proxy": "True",
            "trashed": "True",
            "day": "2026-04-01",
            "month": "2026-04-01",
            "videos": "1",
            # Two bigints past bigint's range: summed as numeric.
            "stored_bytes": str(2 * biggest),
            "duration_seconds": "12.5",
        }

        plain = _figure(conn, **base, file_size_bytes=10, duration_seconds=-3)
        assert (plain["has_proxy"], plain["trashed"], plain["stored_bytes"]) == (False, False, 10)
        assert plain["duration_seconds"] == -3

        # No duration, or one that stands for no real clip, adds nothing.
        for duration in (None, "NaN", "Infinity", "-Infinity", 1e301, -1e301):
            odd = _figure(conn, **base, file_size_bytes=1, duration_seconds=duration)
            assert odd["duration_seconds"] == 0, duration
        edge = _figure(conn, **base, file_size_bytes=1, duration_seconds=1e300)
        assert edge["duration_seconds"] == Decimal("1e300")


def _definitions(engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(text(DEFINITIONS), {"names": list(FIGURE_FUNCTIONS)})
        return dict(rows.all())


def test_downgrading_0010_gives_back_0009s_functions_as_0009_wrote_them(engine, services, deps):
    url = services["DATABASE_URL"]
    at_head = _definitions(engine)
    try:
        downgrade(url, "0009")
        after_downgrade = _definitions(engine)
        downgrade(url, "0008")
        upgrade(url, "0009")
        as_0009_wrote_them = _definitions(engine)
    finally:
        upgrade(url, "head")
    assert "video_figure" not in after_downgrade
    assert after_downgrade == as_0009_wrote_them
    assert after_downgrade != {k: v for k, v in at_head.items() if k != "video_figure"}
    assert _definitions(engine) == at_head


def test_the_application_restates_no_part_of_a_rows_figure():
    """What a video keeps in the bucket is video_figure's, read by the rooms' statements
    (quotas, summaries, the deleted rows' sizes) as by the triggers: never re-derived."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    restated = [
        str(path.relative_to(root))
        for folder in ("worker", "handlers")
        for path in (root / folder).rglob("*.py")
        if "proxy_size_bytes, 0" in path.read_text()
        or "coalesce(videos.c.proxy_size_bytes" in path.read_text()
    ]
    assert restated == []
