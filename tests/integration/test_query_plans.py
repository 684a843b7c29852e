"""The list query the repository really sends is served by an index at realistic sizes."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event, text

import handlers
from schemas import ListVideos

ROWS = 5_000
MALLS = 20

# One statement for the whole table: malls and pins spread evenly, every status, three
# uploads an hour going back in time.
FILL_VIDEOS = """
INSERT INTO videos (id, mall_id, pin_id, original_filename, original_path, file_size_bytes,
                    proxy_path, proxy_size_bytes, thumbnail_path, duration_seconds,
                    processing_status, uploaded_at)
SELECT gen_random_uuid(), pins.mall_id, pins.id, 'video_' || n || '.mp4',
       'videos/' || pins.mall_id || '/original/' || n || '.mp4', 100000000 + n,
       CASE WHEN n % 4 = 2 THEN 'videos/' || pins.mall_id || '/proxy/' || n || '.mp4' END,
       CASE WHEN n % 4 = 2 THEN 10000000 END,
       'thumbnails/' || pins.mall_id || '/' || n || '.jpg', 120.5,
       (ARRAY['pending', 'processing', 'completed', 'failed'])[(n / :pins) % 4 + 1],
       now() - n * interval '20 minutes'
FROM generate_series(1, :rows) AS n
JOIN LATERAL (
    SELECT id, mall_id FROM camera_pins ORDER BY name OFFSET n % :pins LIMIT 1
) AS pins ON true
"""


def captured_statements(deps, query: ListVideos) -> list[tuple[str, object]]:
    engine = deps.uow().engine
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        result = handlers.list_videos(query, deps)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(result.videos) == query.page_size
    return statements


def scans(plan: dict) -> list[tuple[str, str | None, str | None]]:
    """(node type, relation, index) of every node in an EXPLAIN (FORMAT JSON) plan."""
    found = [(plan["Node Type"], plan.get("Relation Name"), plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        found.extend(scans(child))
    return found


def test_first_page_for_a_mall_and_status_uses_an_index_not_a_seq_scan(deps, catalog, engine):
    mall_id = fill(catalog, engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM videos")).scalar_one() == ROWS

    query = ListVideos(mall_id=str(mall_id), processing_status="completed", page_size=20)
    statements = captured_statements(deps, query)
    page_sql, page_parameters = statements[-1]
    assert "LIMIT" in page_sql.upper()

    with engine.connect() as conn:
        plan_json = conn.exec_driver_sql(
            "EXPLAIN (FORMAT JSON) " + page_sql, page_parameters
        ).scalar_one()
    plan = (plan_json if isinstance(plan_json, list) else json.loads(plan_json))[0]["Plan"]
    nodes = scans(plan)

    on_videos = [(node, index) for node, relation, index in nodes if relation == "videos"]
    assert ("Seq Scan", None) not in on_videos, nodes
    assert any(index and index.startswith("ix_videos_live_mall") for _, index in on_videos), nodes
    # The index already delivers uploaded_at desc, id desc: no sort of the matching rows.
    assert "Sort" not in [node for node, _, _ in nodes], nodes


def fill(catalog, engine):
    for m in range(MALLS):
        mall = catalog.mall(f"Mall {m:02d}")
        catalog.pin(mall, f"Pin {m:02d}a")
        catalog.pin(mall, f"Pin {m:02d}b")
    with engine.begin() as conn:
        conn.execute(text(FILL_VIDEOS), {"rows": ROWS, "pins": MALLS * 2})
        conn.execute(text("ANALYZE videos"))
        conn.execute(text("ANALYZE camera_pins"))
        # A mall with videos both with and without a proxy.
        return conn.execute(
            text(
                "SELECT mall_id FROM videos GROUP BY mall_id"
                " HAVING bool_or(proxy_path IS NULL) AND bool_or(proxy_path IS NOT NULL) LIMIT 1"
            )
        ).scalar_one()


def plan_of(engine, sql: str, parameters: object) -> dict:
    with engine.connect() as conn:
        plan_json = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, parameters).scalar_one()
    return (plan_json if isinstance(plan_json, list) else json.loads(plan_json))[0]["Plan"]


@pytest.mark.parametrize(
    ("has_proxy", "index"),
    [(True, "ix_videos_live_mall_proxy_recent"), (False, "ix_videos_live_mall_no_proxy_recent")],
)
def test_has_proxy_count_and_deep_page_use_the_partial_index(
    has_proxy, index, deps, catalog, engine
):
    mall_id = fill(catalog, engine)
    query = ListVideos(mall_id=str(mall_id), has_proxy=has_proxy, page=3, page_size=20)

    count_statement, page_statement = captured_statements(deps, query)[-2:]
    count_plan = scans(plan_of(engine, *count_statement))
    page_plan = scans(plan_of(engine, *page_statement))

    assert index in {name for _, _, name in count_plan}
    assert index in {name for _, _, name in page_plan}
    assert ("Seq Scan", "videos", None) not in count_plan + page_plan
