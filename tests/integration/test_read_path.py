"""The read path: read-only units of work run without a transaction, on the same pool,
and give their connection back transactional; pooled connections are not pinged; the
statements built by shape run on the process's held connection and answer exactly as
through SQLAlchemy."""

from __future__ import annotations

from dataclasses import replace

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import text

import handlers
from schemas import GetVideo
from tests.conftest import RecordedEnqueue
from worker.adapters.postgres.held import ReadConnection
from worker.adapters.postgres.uow import PostgresUnitOfWork, make_engine, reading


def _status(uow) -> TransactionStatus:
    connection = uow.connection
    if isinstance(connection, ReadConnection):
        connection = connection.pooled()
    return connection.connection.dbapi_connection.info.transaction_status


def _held_pid(deps) -> int:
    from sqlalchemy import func, select

    with deps.reads() as uow:
        return uow.held.run(select(func.pg_backend_pid()), {}).scalar_one()


def test_a_read_runs_its_statements_outside_any_transaction(deps):
    with deps.reads() as uow:
        uow.connection.execute(text("SELECT 1"))
        assert _status(uow) == TransactionStatus.IDLE


def test_a_write_after_a_read_on_the_same_connection_is_in_a_transaction_again(settings):
    engine = make_engine(settings.model_copy(update={"db_pool_size": 1}))
    try:
        with PostgresUnitOfWork(reading(engine)) as uow:
            uow.connection.execute(text("SELECT 1"))
            assert _status(uow) == TransactionStatus.IDLE
            read_pid = uow.connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with PostgresUnitOfWork(engine) as uow:
            write_pid = uow.connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            assert _status(uow) == TransactionStatus.INTRANS
    finally:
        engine.dispose()
    # The same pooled connection served both.
    assert read_pid == write_pid


def test_a_read_only_unit_of_work_refuses_to_commit(deps):
    with deps.reads() as uow, pytest.raises(RuntimeError, match="read-only"):
        uow.commit()


def test_gets_run_on_the_held_connection_without_a_pool_checkout_or_a_transaction(deps, catalog):
    from sqlalchemy import event

    mall = catalog.mall()
    video = catalog.video(mall, catalog.pin(mall), upload_objects=False)
    query = GetVideo(video_id=str(video["id"]))
    handlers.get_video(query, deps)  # the first read checks the held connection out
    pid = _held_pid(deps)
    with deps.reads() as uow:
        held = uow.held
    runs = held.runs
    pool = deps.uow().engine.pool
    checkouts: list[object] = []

    def checked_out(*_: object) -> None:
        checkouts.append(1)

    event.listen(pool, "checkout", checked_out)
    try:
        answers = [handlers.get_video(query, deps) for _ in range(5)]
    finally:
        event.remove(pool, "checkout", checked_out)
    assert [a.id for a in answers] == [video["id"]] * 5
    assert held.runs == runs + 5
    assert checkouts == []
    assert _held_pid(deps) == pid
    state = held._driver().driver_connection.info.transaction_status
    assert state == TransactionStatus.IDLE


def test_a_held_connection_the_server_closed_fails_once_then_the_next_read_reconnects(
    settings, catalog, engine
):
    """A held connection PostgreSQL terminated fails its next statement
    (DatabaseUnavailable, which the task layer retries at once); it is dropped, so the
    very next read holds a new connection and answers."""
    from handlers.errors import DatabaseUnavailable
    from worker.bootstrap import build_deps

    deps = build_deps(settings.model_copy(update={"db_pool_size": 1}), enqueue=RecordedEnqueue())
    mall = catalog.mall()
    video = catalog.video(mall, catalog.pin(mall), upload_objects=False)
    query = GetVideo(video_id=str(video["id"]))
    try:
        pid = _held_pid(deps)
        with engine.connect() as admin:
            terminated = admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            assert terminated.scalar_one()

        with pytest.raises(DatabaseUnavailable):
            handlers.get_video(query, deps)
        answer = handlers.get_video(query, deps)
        new_pid = _held_pid(deps)
    finally:
        deps.uow().engine.dispose()

    assert answer.id == video["id"]
    assert new_pid != pid


def test_a_pooled_connection_the_server_closed_fails_once_then_the_next_read_reconnects(
    settings, engine
):
    """No pre-ping: a pooled connection PostgreSQL terminated fails its first statement
    (DatabaseUnavailable); the pool is discarded, so the very next read gets a new
    connection and answers. One pooled connection, so the terminated one is the one the
    next read takes."""
    from handlers.errors import DatabaseUnavailable
    from worker.bootstrap import build_deps

    deps = build_deps(settings.model_copy(update={"db_pool_size": 1}), enqueue=RecordedEnqueue())
    try:
        with deps.reads() as uow:
            pid = uow.connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as admin:
            terminated = admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            assert terminated.scalar_one()

        with pytest.raises(DatabaseUnavailable), deps.reads() as uow:
            uow.connection.execute(text("SELECT 1"))
        with deps.reads() as uow:
            new_pid = uow.connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    finally:
        deps.uow().engine.dispose()

    assert new_pid != pid


def test_statements_kept_per_shape_take_each_callers_own_values(deps, catalog):
    """The list's statements are built once per shape: a second caller of the same role
    and filters, with other ids and values, sees its own videos, never the first's."""
    from handlers.access import Scope
    from schemas import ListVideos

    malls = [catalog.mall(f"Mall {n}") for n in range(2)]
    pins = [catalog.pin(mall) for mall in malls]
    owned = {
        mall: {
            catalog.video(mall, pin, upload_objects=False, processing_status="completed")["id"]
            for _ in range(n + 1)
        }
        for n, (mall, pin) in enumerate(zip(malls, pins, strict=True))
    }
    for mall, pin in zip(malls, pins, strict=True):
        for scope in (Scope.operator([mall]), Scope.tenant([pin])):
            for query in (
                ListVideos(processing_status="completed"),
                ListVideos(mall_id=str(mall), uploaded_after="2000-01-01T05:00:00Z"),
            ):
                listed = handlers.list_videos(query, replace(deps, scope=scope))
                assert {v.id for v in listed.videos} == owned[mall]
                assert listed.total == len(owned[mall])


def test_a_statement_that_binds_a_value_it_is_not_given_is_refused():
    from sqlalchemy import literal, select

    from worker.adapters.postgres.rooms.shaped import Shaped

    shaped = Shaped()
    with pytest.raises(RuntimeError, match="binds"):
        shaped.get(("test",), {}, lambda: select(literal(1)))


def test_the_held_path_answers_every_read_as_sqlalchemy_does(deps, catalog):
    """Each read through the held connection (its own compilation, bind and result
    processing) against the same read through SQLAlchemy's execution, field for field:
    gets, batches, lists with and without totals from the kept figures, searches, the
    trash and pages past the end, for every scope role."""
    from datetime import UTC, datetime, timedelta

    from handlers.access import UNRESTRICTED, Scope
    from schemas import ListVideos, SignUrls

    statuses = ("completed", "pending", "processing", "failed")
    start = datetime(2025, 3, 30, 21, 17, tzinfo=UTC)
    malls = [catalog.mall(f"Mall {n}") for n in range(2)]
    pins = {mall: [catalog.pin(mall) for _ in range(2)] for mall in malls}
    ids = []
    for n in range(30):
        mall = malls[n % 2]
        ids.append(
            catalog.video(
                mall,
                pins[mall][n // 2 % 2],
                upload_objects=False,
                proxy=n % 3 != 0,
                thumbnail=n % 4 != 0,
                processing_status=statuses[n % 4],
                uploaded_at=start + timedelta(hours=37 * n, seconds=n),
                original_filename=f"cam{n}_{'entrance' if n % 3 == 0 else 'aisle'}.mp4",
                operator_notes="shoplifting at 50%" if n % 5 == 0 else None,
                duration_seconds=[120.5, None, float("nan"), 3.25][n % 4],
                file_size_bytes=10**12 + n,
                trashed_at=start + timedelta(days=n) if n % 7 == 0 else None,
            )["id"]
        )
    held = replace(deps, clock=lambda: start)
    through_sqlalchemy = replace(held, read=None)
    scopes = [
        UNRESTRICTED,
        Scope.operator([malls[0]]),
        Scope.operator(malls),
        Scope.tenant([pins[malls[1]][0]]),
        Scope.tenant([pins[malls[0]][1], pins[malls[1]][0]]),
    ]
    queries = [
        ListVideos(),
        ListVideos(page_size=7, page=2),
        ListVideos(page=9),
        ListVideos(processing_status="completed", has_proxy=True),
        ListVideos(has_proxy=False, mall_id=str(malls[1])),
        ListVideos(pin_id=str(pins[malls[0]][1])),
        ListVideos(uploaded_after="2025-04-02T05:00:00Z", uploaded_before="2025-05-11T13:30:00Z"),
        ListVideos(uploaded_after="2025-04-01T00:00:00Z", processing_status="failed"),
        ListVideos(q="entrance"),
        ListVideos(q="50%"),
        ListVideos(q="aisle", page=4, page_size=5),
        ListVideos(trashed=True),
        ListVideos(trashed=True, q="cam"),
        ListVideos(sign=["thumbnail", "proxy"], page_size=9),
    ]
    with deps.reads() as uow:
        runs_before = uow.held.runs
    compared = 0
    for scope in scopes:
        ours, theirs = replace(held, scope=scope), replace(through_sqlalchemy, scope=scope)
        for query in queries:
            assert (
                handlers.list_videos(query, ours).model_dump()
                == handlers.list_videos(query, theirs).model_dump()
            ), (scope, query)
            compared += 1
        for video_id in ids:
            answers = []
            for wiring in (ours, theirs):
                try:
                    answers.append(handlers.get_video(GetVideo(video_id=video_id), wiring))
                except handlers.NotFound as exc:
                    answers.append(str(exc))
            assert answers[0] == answers[1]
            compared += 1
        batch = SignUrls(video_ids=[str(v) for v in ids[:25]], target="thumbnail")
        assert handlers.sign_urls(batch, ours) == handlers.sign_urls(batch, theirs)
    with deps.reads() as uow:
        runs = uow.held.runs - runs_before
    assert compared == len(scopes) * (len(queries) + len(ids))
    # The held path served our side: at least a statement for each read and batch.
    assert runs >= compared + len(scopes)
