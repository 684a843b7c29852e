"""The read path: read-only units of work run without a transaction, on the same pool,
and give their connection back transactional; pooled connections are not pinged; the
statements built by shape run on the read path (``readpath.ReadPath``: the process's
held connection on its main thread, a connection of the pool for one unit of work on
any other) and answer exactly as through SQLAlchemy."""

from __future__ import annotations

from dataclasses import replace

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import text

import handlers
from schemas import GetVideo
from tests.conftest import RecordedEnqueue
from worker.adapters.postgres.readpath import ReadSession
from worker.adapters.postgres.uow import PostgresUnitOfWork, make_engine, reading


def _status(uow) -> TransactionStatus:
    connection = uow.connection
    if isinstance(connection, ReadSession):
        connection = connection.pooled()
    return connection.connection.dbapi_connection.info.transaction_status


def _held_pid(deps) -> int:
    with deps.reads() as uow:
        return uow.read_path.held().driver_connection.info.backend_pid


def test_a_read_runs_its_statements_outside_any_transaction(deps):
    with deps.reads() as uow:
        uow.connection.execute(text("SELECT 1"))
        assert _status(uow) == TransactionStatus.IDLE


def test_the_workers_sessions_read_utc_and_never_compile_a_statement(deps):
    """JIT off: its compile time (milliseconds) is paid by any statement whose estimate
    crosses jit_above_cost, and no statement of the worker runs long enough to gain."""
    for unit in (deps.reads, deps.uow):
        with unit() as uow:
            shown = uow.connection.execute(
                text("SELECT current_setting('jit'), current_setting('TimeZone')")
            ).one()
        assert tuple(shown) == ("off", "UTC")


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
    path = deps.reads().read_path
    runs = path.runs
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
    assert path.runs == runs + 5
    assert checkouts == []
    assert _held_pid(deps) == pid
    state = path.held().driver_connection.info.transaction_status
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

    from worker.adapters.postgres.readpath import Shapes

    shapes = Shapes()
    with pytest.raises(RuntimeError, match="binds"):
        shapes.get(("test",), {}, lambda: select(literal(1)))


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
        ListVideos(q="ing at 50%"),
        ListVideos(q="aisle", page=4, page_size=5),
        ListVideos(trashed=True),
        ListVideos(trashed=True, q="cam"),
        ListVideos(sign=["thumbnail", "proxy"], page_size=9),
    ]
    runs_before = deps.reads().read_path.runs
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
    runs = deps.reads().read_path.runs - runs_before
    assert compared == len(scopes) * (len(queries) + len(ids))
    # The held path served our side: at least a statement for each read and batch.
    assert runs >= compared + len(scopes)


def _through_both(path, conn, statement, values, runs):
    """Runners of the statement, a shape of its own: on the read path (counting its runs
    in ``runs``) and through SQLAlchemy on ``conn``."""
    key = (repr(statement), *sorted(values))

    def ours():
        runs.append(1)
        session = path.session()
        try:
            return session.run(key, values, lambda: statement)
        finally:
            session.close()

    return ours, lambda: conn.execute(statement, values)


def test_the_read_paths_rows_answer_the_whole_result_api_as_sqlalchemys(settings):
    """first, one, one_or_none, scalar, scalar_one, scalars, mappings, all and
    iteration, by position, by name and ``_mapping``, on the driver path itself (its
    run count goes up), for no row, one and several: the same answers, and the same
    errors, as SQLAlchemy's result."""
    from sqlalchemy import Integer, bindparam, func, literal_column, select
    from sqlalchemy import exc as sa_exc

    from worker.adapters.postgres.uow import read_path

    engine = make_engine(settings)
    path = read_path(reading(engine))
    n = bindparam("n", type_=Integer)
    one, ten = literal_column("1"), literal_column("10")
    series = func.generate_series(one, n).table_valued("value").render_derived()
    statement = select(
        series.c.value.label("value"), (series.c.value * ten).label("tens"), literal_column("'x'")
    ).select_from(series)
    runs: list[int] = []
    try:
        for rows, conn in ((rows, engine.connect()) for rows in (0, 1, 3)):
            with conn:
                ours, theirs = _through_both(path, conn, statement, {"n": rows}, runs)
                assert [tuple(r) for r in ours()] == [tuple(r) for r in theirs()]
                assert ours().all() == theirs().all()
                assert ours().first() == theirs().first()
                assert ours().scalar() == theirs().scalar()
                assert ours().scalars().all() == theirs().scalars().all()
                assert ours().mappings().all() == [dict(m) for m in theirs().mappings().all()]
                assert [r._mapping for r in ours()] == [dict(r._mapping) for r in theirs()]
                assert [(r.value, r.tens) for r in ours()] == [(r.value, r.tens) for r in theirs()]
                for method in ("one", "one_or_none", "scalar_one", "scalar_one_or_none"):
                    answers = []
                    for result in (ours, theirs):
                        try:
                            answers.append(getattr(result(), method)())
                        except (sa_exc.NoResultFound, sa_exc.MultipleResultsFound) as exc:
                            answers.append(type(exc))
                    assert answers[0] == answers[1], (method, rows)
                closed = ours()
                closed.first()
                with pytest.raises(sa_exc.ResourceClosedError):
                    closed.all()
        # Every "ours" above ran on the driver: none was sent through SQLAlchemy.
        assert path.runs == len(runs) > 0
    finally:
        path.forget()
        engine.dispose()


def test_a_held_connection_older_than_the_recycle_age_is_replaced(settings):
    from sqlalchemy import event

    from worker.adapters.postgres.readpath import ReadPath

    now = [1000.0]
    engine = make_engine(settings)
    path = ReadPath(reading(engine), recycle=60, clock=lambda: now[0])
    closed: list[object] = []
    event.listen(engine.pool, "close", lambda *_: closed.append(1))
    try:
        first = path.held().driver_connection.info.backend_pid
        now[0] += 59
        assert path.held().driver_connection.info.backend_pid == first
        assert closed == []
        now[0] += 2  # 61 s after it was taken
        second = path.held().driver_connection.info.backend_pid
        assert second != first
        assert closed == [1]  # the old one closed, not left to the server
        now[0] += 30
        assert path.held().driver_connection.info.backend_pid == second
    finally:
        path.forget()
        engine.dispose()


def test_other_threads_take_a_pooled_connection_per_unit_of_work_and_give_it_back(
    settings, catalog
):
    """Threads (the threads pool; greenlets alike) do not each hold a connection: with
    a pool of 2 (pool size 1, overflow 1), 8 threads reading at once all answer, and
    every connection is back in the pool when they are done."""
    from concurrent.futures import ThreadPoolExecutor

    from worker.bootstrap import build_deps

    deps = build_deps(settings.model_copy(update={"db_pool_size": 1}), enqueue=RecordedEnqueue())
    mall = catalog.mall()
    video = catalog.video(mall, catalog.pin(mall), upload_objects=False)
    query = GetVideo(video_id=str(video["id"]))
    path = deps.reads().read_path
    pool = deps.uow().engine.pool
    try:
        handlers.get_video(query, deps)  # the shape's first run, checked against SQLAlchemy
        runs = path.runs
        held = pool.checkedout()  # the main thread's held connection
        with ThreadPoolExecutor(max_workers=8) as threads:
            answers = list(
                threads.map(lambda _: handlers.get_video(query, deps).id, range(40), timeout=60)
            )
        assert answers == [video["id"]] * 40
        assert path.runs == runs + 40
        assert pool.checkedout() == held
    finally:
        path.forget()
        deps.uow().engine.dispose()


def test_engine_listeners_leave_the_read_path_on_and_its_tracers_see_each_statement(deps, catalog):
    from sqlalchemy import event

    mall = catalog.mall()
    video = catalog.video(mall, catalog.pin(mall), upload_objects=False)
    query = GetVideo(video_id=str(video["id"]))
    handlers.get_video(query, deps)
    path = deps.reads().read_path
    engine = deps.uow().engine
    through_sqlalchemy: list[str] = []
    traced: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        through_sqlalchemy.append(statement)

    runs = path.runs
    event.listen(engine, "before_cursor_execute", record)
    path.tracers.append(lambda sql, parameters: traced.append((sql, parameters)))
    try:
        handlers.get_video(query, deps)
    finally:
        path.tracers.clear()
        event.remove(engine, "before_cursor_execute", record)
    assert path.runs == runs + 1
    assert through_sqlalchemy == []
    [(sql, parameters)] = traced
    assert sql.lstrip().upper().startswith("SELECT") and "FROM videos" in sql
    assert parameters["video_id"] == video["id"]
