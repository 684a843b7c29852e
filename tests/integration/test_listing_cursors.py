"""Listing at any size on PostgreSQL: capped search totals, a search's own budget, and
cursors that find the same rows as pages, also while rows come and go between pages."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert, text

import handlers
from handlers.access import UNRESTRICTED, Scope
from handlers.errors import InvalidRequest, StatementTimeout
from schemas import GetVideo, ListVideos
from tests.integration.test_statement_budget import locked_videos, nothing_waits
from worker.adapters.postgres.budget import statement_budget
from worker.adapters.postgres.tables import Video

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def with_policy(deps, **changes):
    return replace(deps, policy=replace(deps.policy, **changes))


def test_a_search_counts_exactly_up_to_the_cap_and_says_gte_past_it(deps, catalog, search_read):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    for i in range(7):
        catalog.video(mall, pin, upload_objects=False, original_filename=f"lobby_{i}.mp4")
    catalog.video(mall, pin, upload_objects=False, original_filename="dock.mp4")

    for cap, total, relation in ((5, 5, "gte"), (6, 6, "gte"), (7, 7, "eq"), (50, 7, "eq")):
        page = handlers.list_videos(
            ListVideos(q="LOBBY", page_size=3), with_policy(deps, search_total_cap=cap)
        )
        assert (page.total, page.total_relation, page.total_pages) == (
            total,
            relation,
            -(-total // 3),
        ), cap
    # A last page, short, says its own exact total.
    last = handlers.list_videos(
        ListVideos(q="lobby", page=3, page_size=3), with_policy(deps, search_total_cap=9)
    )
    assert len(last.videos) == 1 and (last.total, last.total_relation) == (7, "eq")
    exact = handlers.list_videos(ListVideos(page_size=3), with_policy(deps, search_total_cap=2))
    assert (exact.total, exact.total_relation) == (8, "eq")


def test_a_search_past_its_budget_is_cancelled_in_postgresql_and_answered_timeout(
    deps, engine, catalog
):
    mall = catalog.mall()
    video = catalog.video(mall, catalog.pin(mall), upload_objects=False)
    searching = with_policy(deps, search_timeout_ms=300)
    handlers.list_videos(ListVideos(q="video"), searching)  # the shapes exist first

    # The task's own budget (10 s for videos.list) is around it, as at the task edge.
    with statement_budget(10_000):
        with locked_videos(engine):
            with pytest.raises(StatementTimeout) as raised:
                handlers.list_videos(ListVideos(q="video"), searching)
            assert nothing_waits(engine), "the search still runs on the server"
        assert raised.value.code == "timeout"
        assert raised.value.detail == ("Search took longer than 300 ms; add filters or a longer q")
        # The next statements of the process have the task's budget again.
        assert handlers.get_video(GetVideo(video_id=video["id"]), deps).id == video["id"]
        with deps.reads() as uow:
            held = uow.read_path.held().driver_connection
            assert held.execute("SHOW statement_timeout").fetchone()[0] == "10s"
        # A listing without q is not a search: the task's budget alone.
        with locked_videos(engine), statement_budget(600):
            with pytest.raises(StatementTimeout, match="longer than 600 ms"):
                handlers.list_videos(ListVideos(mall_id=mall, page_size=1), searching)


def test_a_task_budget_tighter_than_the_search_budget_keeps_its_own_answer(deps, engine, catalog):
    mall = catalog.mall()
    catalog.video(mall, catalog.pin(mall), upload_objects=False)
    with locked_videos(engine), statement_budget(200):
        with pytest.raises(StatementTimeout, match="longer than 200 ms"):
            handlers.list_videos(ListVideos(q="video"), deps)
        assert nothing_waits(engine)


def test_cursors_altered_or_for_other_filters_or_another_scope_are_refused(deps, catalog):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    for i in range(3):
        catalog.video(mall, pin, upload_objects=False, uploaded_at=T0 - timedelta(minutes=i))
    cursor = handlers.list_videos(ListVideos(page_size=1), deps).next_cursor
    assert cursor is not None

    refused = [
        (deps, {"cursor": cursor[:-3] + "AAA"}),
        (deps, {"cursor": cursor, "page": 2}),
        (deps, {"cursor": cursor, "mall_id": mall}),
        (deps, {"cursor": cursor, "q": "video"}),
        (replace(deps, scope=Scope.operator([mall])), {"cursor": cursor}),
        (replace(deps, scope=Scope.tenant([pin])), {"cursor": cursor}),
    ]
    for caller, kwargs in refused:
        with pytest.raises(InvalidRequest) as raised:
            handlers.list_videos(ListVideos(page_size=1, **kwargs), caller)
        assert raised.value.fields[0]["loc"] == ["cursor"], kwargs
    second = handlers.list_videos(ListVideos(page_size=1, cursor=cursor), deps)
    assert second.page == 2 and second.total == 3


# --------------------------------------------------------------------------- property

STATUSES = ("pending", "processing", "completed", "failed")
NAMES = ("lobby_cam.mp4", "Dock_door.mov", "CAM07_lobby.mp4", "exit.avi")


@pytest.fixture
def world(deps, catalog, engine):
    """Two malls of two pins, 48 videos: many sharing an instant (only ids order them),
    every status, with and without proxies, a few in the trash."""
    rng = random.Random(7)
    malls = [catalog.mall(f"Mall {m}") for m in range(2)]
    pins = {mall: [catalog.pin(mall, f"P{p}") for p in range(2)] for mall in malls}
    for i in range(48):
        mall = malls[i % 2]
        catalog.video(
            mall,
            pins[mall][rng.randrange(2)],
            upload_objects=False,
            proxy=rng.random() < 0.7,
            processing_status=rng.choice(STATUSES),
            original_filename=rng.choice(NAMES),
            uploaded_at=T0 - timedelta(minutes=rng.randrange(12)),
            trashed_at=T0 if rng.random() < 0.1 else None,
        )
    return deps, engine, malls, pins


def rows_of(engine) -> dict[uuid.UUID, dict]:
    with engine.connect() as conn:
        return {row.id: dict(row._mapping) for row in conn.execute(Video.__table__.select())}


def listing(data, malls, pins) -> tuple[Scope, ListVideos]:
    scope = data.draw(
        st.sampled_from(
            [
                UNRESTRICTED,
                Scope.operator([malls[0]]),
                Scope.operator(malls),
                Scope.tenant([pins[malls[1]][0]]),
            ]
        )
    )
    filters = {}
    if data.draw(st.booleans()):
        filters["mall_id"] = data.draw(st.sampled_from(malls))
    if data.draw(st.booleans()):
        filters["processing_status"] = data.draw(st.sampled_from(STATUSES))
    if data.draw(st.booleans()):
        filters["has_proxy"] = data.draw(st.booleans())
    if data.draw(st.booleans()):
        filters["uploaded_after"] = T0 - timedelta(minutes=data.draw(st.integers(3, 11)))
    if data.draw(st.booleans()):
        filters["q"] = data.draw(st.sampled_from(["lobby", "DOCK", "cam0", "mp4"]))
    if data.draw(st.integers(0, 5)) == 0:
        filters["trashed"] = True
    return scope, ListVideos(**filters)


def walk_by_cursor(deps, query: ListVideos, sizes, between=None) -> list[uuid.UUID]:
    seen, cursor, turn = [], None, 0
    while True:
        size = sizes[turn % len(sizes)]
        page = handlers.list_videos(
            query.model_copy(update={"page_size": size, "cursor": cursor}), deps
        )
        seen.extend(item.id for item in page.videos)
        cursor, turn = page.next_cursor, turn + 1
        if cursor is None:
            return seen
        if between is not None:
            between(turn)


def walk_by_page(deps, query: ListVideos, size: int) -> list[uuid.UUID]:
    seen, number = [], 1
    while True:
        page = handlers.list_videos(
            query.model_copy(update={"page": number, "page_size": size}), deps
        )
        if not page.videos:
            return seen
        seen.extend(item.id for item in page.videos)
        number += 1


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_by_cursor_and_by_page_the_same_rows_in_the_same_order_even_as_rows_come_and_go(
    world, search_read, data
):
    deps, engine, malls, pins = world
    scope, query = listing(data, malls, pins)
    caller = replace(deps, scope=scope)
    size = data.draw(st.integers(1, 7))

    by_page = walk_by_page(caller, query, size)
    assert walk_by_cursor(caller, query, [size]) == by_page
    assert len(set(by_page)) == len(by_page)

    # Now rows are inserted and deleted between the pages of a cursor's walk.
    before = rows_of(engine)
    deleted: set[uuid.UUID] = set()
    rng = random.Random(data.draw(st.integers(0, 2**16)))

    def churn(turn: int) -> None:
        # A long walk of short pages may delete every row there was before it.
        left = sorted(set(before) - deleted)
        victims = rng.sample(left, k=min(2, len(left)))
        with engine.begin() as conn:
            conn.execute(delete(Video.__table__).where(Video.__table__.c.id.in_(victims)))
            for _ in range(2):
                row = dict(rng.choice(list(before.values())))
                row["id"] = uuid.uuid4()
                row["uploaded_at"] = T0 - timedelta(minutes=rng.randrange(12))
                conn.execute(insert(Video.__table__).values(**row))
        deleted.update(victims)

    sizes = [size, data.draw(st.integers(1, 7))]
    try:
        walked = walk_by_cursor(caller, query, sizes, churn)
        assert len(set(walked)) == len(walked), "a row listed twice"
        throughout = [video_id for video_id in by_page if video_id not in deleted]
        assert [v for v in walked if v in set(throughout)] == throughout, "a row skipped"
    finally:
        with engine.begin() as conn:
            conn.execute(delete(Video.__table__).where(Video.__table__.c.id.notin_(list(before))))
            for video_id in deleted:
                conn.execute(insert(Video.__table__).values(**before[video_id]))
        assert set(rows_of(engine)) == set(before)


def test_every_statement_of_a_cursor_page_reads_from_the_cursor_on(deps, catalog, engine):
    """The keyset is in the page's own statement: no offset, at any depth."""
    mall = catalog.mall()
    pin = catalog.pin(mall)
    for i in range(5):
        catalog.video(mall, pin, upload_objects=False, uploaded_at=T0 - timedelta(minutes=i))
    sent: list[tuple[str, dict]] = []
    path = deps.read().read_path
    path.tracers.append(lambda sql, values: sent.append((sql, dict(values))))
    try:
        first = handlers.list_videos(ListVideos(page_size=2, mall_id=mall), deps)
        sent.clear()
        handlers.list_videos(ListVideos(page_size=2, mall_id=mall, cursor=first.next_cursor), deps)
    finally:
        path.tracers.clear()
    pages = [(sql, values) for sql, values in sent if "LIMIT" in sql.upper()]
    assert pages and all(values["page_offset"] == 0 for _, values in pages)
    assert all("(videos.uploaded_at, videos.id) <" in sql for sql, _ in pages)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM videos")).scalar_one() == 5


@pytest.mark.parametrize("walk_rows", [2, 50])
def test_a_search_past_its_cap_finds_its_newest_page_walked_or_sorted(
    deps, catalog, monkeypatch, walk_rows, search_read
):
    """Past the cap the page is looked for among the newest videos, then, when they
    hold too few matches (all of them far back in time), sorted from every match: both
    give the newest matches first."""
    from worker.adapters.postgres.rooms import catalogue

    monkeypatch.setattr(catalogue, "WALK_ROWS", walk_rows)
    mall = catalog.mall()
    pin = catalog.pin(mall)
    old = [
        catalog.video(
            mall,
            pin,
            upload_objects=False,
            original_filename=f"dock_{i}.mp4",
            uploaded_at=T0 - timedelta(days=700, minutes=i),
        )
        for i in range(6)
    ]
    for i in range(10):
        catalog.video(mall, pin, upload_objects=False, uploaded_at=T0 - timedelta(minutes=i))
    capped = with_policy(deps, search_total_cap=4)

    first = handlers.list_videos(ListVideos(q="dock", page_size=2), capped)
    second = handlers.list_videos(
        ListVideos(q="dock", page_size=3, cursor=first.next_cursor), capped
    )
    third = handlers.list_videos(ListVideos(q="dock", page=2, page_size=2), capped)

    ids = [str(v["id"]) for v in old]
    assert [str(v.id) for v in first.videos] == ids[:2]
    assert (first.total, first.total_relation) == (4, "gte")
    assert [str(v.id) for v in second.videos] == ids[2:5]
    assert [str(v.id) for v in third.videos] == ids[2:4]


@pytest.mark.parametrize(
    ("trashed", "walk_rows", "scoped"),
    [
        (False, 5000, None),
        (True, 5000, None),
        (False, 1, None),
        (False, 1, "operator"),
        (True, 5000, "tenant"),
        (False, 1, "tenant"),
    ],
)
def test_a_search_over_many_periods_pages_and_counts_as_the_rows_say(
    deps, catalog, engine, monkeypatch, trashed, walk_rows, scoped, search_read
):
    """Matches spread over periods of 30 days, some periods empty, a cap that stops
    the pass inside a period: every offset page within the cap and every cursor page
    holds the newest matches in list order, and the total is exact or the cap. With a
    walk of one row, a page past the pass is sorted from the periods' matches. An
    operator of two malls (of three) and a tenant of two pins read each period by their
    malls' or pins' keys."""
    from worker.adapters.postgres.rooms import catalogue

    monkeypatch.setattr(catalogue, "WALK_ROWS", walk_rows)
    malls = [catalog.mall() for _ in range(3)]
    pins = [catalog.pin(mall) for mall in malls for _ in range(2)]
    rng = random.Random(7)
    rows = []
    for i in range(120):
        days = rng.choice([0, 1, 31, 32, 95, 200, 201, 202, 380, 381, 400])
        name = f"{rng.choice(['DOCK', 'lobby', 'Dock-east'])}_{i}.mp4"
        pin = rng.choice(pins)
        rows.append(
            catalog.video(
                malls[pins.index(pin) // 2],
                pin,
                upload_objects=False,
                original_filename=name,
                uploaded_at=T0 - timedelta(days=days, minutes=i),
                trashed_at=T0 if trashed else None,
            )
        )
    scope = {
        None: UNRESTRICTED,
        "operator": Scope.operator(malls[:2]),
        "tenant": Scope.tenant([pins[0], pins[3]]),
    }[scoped]
    seen = {
        None: lambda r: True,
        "operator": lambda r: r["mall_id"] in malls[:2],
        "tenant": lambda r: r["pin_id"] in (pins[0], pins[3]),
    }[scoped]
    deps = replace(deps, scope=scope)
    with engine.begin() as conn:
        periods = conn.execute(text("SELECT count(DISTINCT period) FROM video_search")).scalar()
    assert periods >= 6
    newest = sorted(
        (r for r in rows if "dock" in r["original_filename"].lower() and seen(r)),
        key=lambda r: (r["uploaded_at"], r["id"]),
        reverse=True,
    )
    expected = [str(r["id"]) for r in newest]
    for cap in (4, 9, 25, 500):
        capped = with_policy(deps, search_total_cap=cap)
        total = min(len(expected), cap)
        relation = "eq" if len(expected) <= cap else "gte"
        for size in (2, 3):
            for page in range(1, cap // size + 1):
                listed = handlers.list_videos(
                    ListVideos(q="dock", page=page, page_size=size, trashed=trashed), capped
                )
                want = expected[(page - 1) * size : page * size]
                assert [str(v.id) for v in listed.videos] == want, (cap, size, page)
                if want:
                    assert (listed.total, listed.total_relation) == (total, relation)
            walked, cursor = [], None
            while True:
                listed = handlers.list_videos(
                    ListVideos(q="dock", page_size=size, cursor=cursor, trashed=trashed), capped
                )
                walked += [str(v.id) for v in listed.videos]
                assert (listed.total, listed.total_relation) == (total, relation)
                cursor = listed.next_cursor
                if cursor is None:
                    break
            assert walked == expected, (cap, size)
