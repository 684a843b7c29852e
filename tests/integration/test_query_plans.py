"""The list query the repository really sends is served by an index at realistic sizes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

import handlers
from handlers.access import UNRESTRICTED
from schemas import ListVideos
from worker.adapters.postgres.rooms.query import list_filters, videos

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
    """The statements the list sends on the read path, as production sends them."""
    path = deps.reads().read_path
    statements: list[tuple[str, object]] = []

    def record(sql, parameters):
        statements.append((sql, parameters))

    runs = path.runs
    path.tracers.append(record)
    try:
        result = handlers.list_videos(query, deps)
    finally:
        path.tracers.remove(record)
    assert len(result.videos) == query.page_size
    # Each ran on the driver, none through SQLAlchemy.
    assert path.runs - runs == len(statements)
    return statements


def scans(plan: dict, *, subplans: bool = True) -> list[tuple[str, str | None, str | None]]:
    """(node type, relation, index) of every node in an EXPLAIN (FORMAT JSON) plan;
    without ``subplans``, those of the correlated subqueries (a row's tags) left out."""
    found = [(plan["Node Type"], plan.get("Relation Name"), plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        if subplans or child.get("Parent Relationship") != "SubPlan":
            found.extend(scans(child, subplans=subplans))
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
    # (Each row's tags come from a subquery the planner may sort by name: not the page.)
    page_nodes = scans(plan, subplans=False)
    assert any(relation == "videos" for _, relation, _ in page_nodes), page_nodes
    assert "Sort" not in [node for node, _, _ in page_nodes], page_nodes


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


def plan_of_connection(conn, sql: str, parameters: object) -> dict:
    plan_json = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, parameters).scalar_one()
    return (plan_json if isinstance(plan_json, list) else json.loads(plan_json))[0]["Plan"]


def plan_of(engine, sql: str, parameters: object) -> dict:
    with engine.connect() as conn:
        return plan_of_connection(conn, sql, parameters)


@pytest.mark.parametrize(
    ("has_proxy", "index"),
    [(True, "ix_videos_live_mall_proxy_recent"), (False, "ix_videos_live_mall_no_proxy_recent")],
)
def test_has_proxy_total_sums_the_kept_figures_and_the_deep_page_uses_the_partial_index(
    has_proxy, index, deps, catalog, engine
):
    mall_id = fill(catalog, engine)
    query = ListVideos(mall_id=str(mall_id), has_proxy=has_proxy, page=3, page_size=20)

    count_statement, page_statement = captured_statements(deps, query)[-2:]
    count_plan = scans(plan_of(engine, *count_statement))
    page_plan = scans(plan_of(engine, *page_statement))

    # Without a date range the total is whole months, and without a pin the mall's:
    # the videos table is not read.
    assert {relation for _, relation, _ in count_plan} - {None} == {"video_counts_mall_monthly"}
    assert index in {name for _, _, name in page_plan}
    assert ("Seq Scan", "videos", None) not in page_plan


@pytest.mark.parametrize("by", ["pin filter", "tenant scope"])
def test_a_pins_total_sums_the_per_pin_figures(by, deps, catalog, engine):
    from dataclasses import replace

    from handlers.access import Scope

    fill(catalog, engine)
    with engine.connect() as conn:
        pin_id = conn.execute(text("SELECT pin_id FROM videos LIMIT 1")).scalar_one()
    if by == "pin filter":
        wiring, query = deps, ListVideos(pin_id=str(pin_id), page_size=20)
    else:
        wiring, query = replace(deps, scope=Scope.tenant([pin_id])), ListVideos(page_size=20)

    count_statement = captured_statements(wiring, query)[-2]
    count_plan = scans(plan_of(engine, *count_statement))

    assert {relation for _, relation, _ in count_plan} - {None} == {"video_counts_monthly"}


def test_a_dated_total_counts_only_its_partial_edge_days_from_the_list_index(deps, catalog, engine):
    """uploaded_after/before that are not midnights: whole days and months come from the
    kept figures, the instants before the first midnight and after the last from the
    mall's list index, never a scan of the table."""
    mall_id = fill(catalog, engine)
    query = ListVideos(
        mall_id=str(mall_id),
        uploaded_after=(datetime.now(UTC) - timedelta(days=40, hours=5)).isoformat(),
        uploaded_before=(datetime.now(UTC) - timedelta(hours=7)).isoformat(),
        page_size=20,
    )

    count_statement = captured_statements(deps, query)[-2]
    count_plan = scans(plan_of(engine, *count_statement))

    relations = {relation for _, relation, _ in count_plan} - {None}
    # Whole months between the whole days depend on today's date; days and edges do not.
    assert {"video_counts_mall_daily", "videos"} <= relations, count_plan
    assert relations <= {"video_counts_mall_monthly", "video_counts_mall_daily", "videos"}, (
        count_plan
    )
    assert ("Seq Scan", "videos", None) not in count_plan, count_plan
    # Index scans of videos, or bitmap scans whose index nodes carry no relation.
    assert any((name or "").startswith("ix_videos_live_mall") for _, _, name in count_plan), (
        count_plan
    )


def test_a_search_reads_video_search_through_its_trigram_index(deps, catalog, engine, search_read):
    """The search's statement finds its matches through ``video_search``'s GIN index:
    one index scan per period (its first key), or one of the whole table for a search
    expected to match fewer videos than its cap; never by reading every row of a table.
    Which plan wins depends on the table's size: at 5,000 rows reading every row is
    cheaper, at millions the index is (the plans are printed by ``python -m bench
    search``)."""
    fill(catalog, engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE videos SET original_filename = 'Loading_Dock_' || id || '.mp4'"
                " WHERE id IN (SELECT id FROM videos ORDER BY id LIMIT 15)"
            )
        )
        conn.execute(text("ANALYZE video_search"))
    query = ListVideos(q="loading_DOCK", page_size=10)
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        statements = captured_statements(deps, query)
        plans = [scans(plan_of_connection(conn, *statement)) for statement in statements]
        conn.rollback()

    # "loading_dock" with a literal underscore is in the 15 names.
    assert handlers.list_videos(query, deps).total == 15
    found = plans[-1]
    assert ("Bitmap Index Scan", None, "ix_video_search_trgm") in found, found
    by_period = {
        ("Index Only Scan", "video_search_periods", "pk_video_search_periods"),
        ("Index Scan", "video_search_periods", "pk_video_search_periods"),
    }
    assert bool(by_period & set(found)) == (search_read == "periods"), found
    assert not {
        node for node in found if node[0] == "Seq Scan" and node[1] != "video_search_periods"
    }


def test_the_search_statement_over_videos_finds_its_candidates_in_video_search(catalog, engine):
    """Bulk deletes, reprocessing and exports by a filter with ``q`` test each row of
    ``videos`` (``search_condition``) only among what ``video_search``'s index found."""
    fill(catalog, engine)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE video_search"))
    predicate = (
        select(func.count())
        .select_from(videos)
        .where(list_filters(UNRESTRICTED, ListVideos(q="dock")).combined())
    )
    compiled = predicate.compile(dialect=engine.dialect)
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = scans(plan_of_connection(conn, str(compiled), compiled.params))
    assert ("Bitmap Index Scan", None, "ix_video_search_trgm") in plan, plan


def test_the_trash_is_listed_from_its_own_indexes(deps, catalog, engine):
    fill(catalog, engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE videos SET trashed_at = now()"
                " WHERE id IN (SELECT id FROM videos ORDER BY id LIMIT 40)"
            )
        )
        conn.execute(text("ANALYZE videos"))
    query = ListVideos(trashed=True, page_size=20)

    count_statement, page_statement = captured_statements(deps, query)[-2:]

    plans = scans(plan_of(engine, *page_statement)) + scans(plan_of(engine, *count_statement))

    # Either partial index of the trash (both hold only its 40 rows), never the table.
    assert {"ix_videos_trashed_recent", "ix_videos_trashed_at"} & {name for _, _, name in plans}
    assert ("Seq Scan", "videos", None) not in plans


# Each mall's tags 'big' (every 10th video) and 'second' (every 20th), as tagging
# writes them: with the video's copied columns.
FILL_TAGS = """
INSERT INTO tags (id, mall_id, name)
SELECT gen_random_uuid(), m.mall_id, x.name
FROM (SELECT DISTINCT mall_id FROM videos) AS m, unnest(ARRAY['big', 'second']) AS x (name);
INSERT INTO video_tags (video_id, tag_id, mall_id, pin_id, uploaded_at, trashed)
SELECT v.id, t.id, v.mall_id, v.pin_id, v.uploaded_at, false
FROM (SELECT *, row_number() OVER (ORDER BY id) AS n FROM videos) AS v
JOIN tags AS t ON t.mall_id = v.mall_id
  AND ((t.name = 'big' AND v.n % 10 = 0) OR (t.name = 'second' AND v.n % 20 = 0));
ANALYZE tags;
ANALYZE video_tags
"""


@pytest.mark.parametrize("names", [["big"], ["big", "second"]])
def test_a_list_by_tags_reads_its_page_and_total_from_the_tags_own_index(
    names, deps, catalog, engine
):
    """Not the newest-first index of every video, asking about each row: the tag's
    pairs, newest first, each mall's from its index; ``videos`` only for the page."""
    fill(catalog, engine)
    with engine.begin() as conn:
        conn.execute(text(FILL_TAGS))

    total_statement, page_statement = captured_statements(
        deps, ListVideos(tags=names, page_size=20)
    )[-2:]

    for statement in (total_statement, page_statement):
        nodes = scans(plan_of(engine, *statement))
        indexes = {index for _, _, index in nodes}
        assert "ix_video_tags_live_tag_recent" in indexes, nodes
        assert not {index for index in indexes if index and index.startswith("ix_videos_")}
        assert ("Seq Scan", "videos", None) not in nodes
        assert ("Seq Scan", "video_tags", None) not in nodes
