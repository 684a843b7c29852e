"""The read path: read-only units of work run without a transaction, on the same pool,
and give their connection back transactional; pooled connections are not pinged."""

from __future__ import annotations

from dataclasses import replace

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import text

import handlers
from schemas import GetVideo
from tests.conftest import RecordedEnqueue
from worker.adapters.postgres.uow import PostgresUnitOfWork, make_engine, reading


def _status(uow) -> TransactionStatus:
    return uow.connection.connection.dbapi_connection.info.transaction_status


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


def test_a_connection_the_server_closed_fails_once_then_the_next_read_reconnects(
    settings, catalog, engine
):
    """No pre-ping: a pooled connection PostgreSQL terminated fails its first statement
    (DatabaseUnavailable, which the task layer retries at once); the pool is discarded,
    so the very next read gets a new connection and answers. One pooled connection, so
    the terminated one is the one the next read takes."""
    from handlers.errors import DatabaseUnavailable
    from worker.bootstrap import build_deps

    deps = build_deps(settings.model_copy(update={"db_pool_size": 1}), enqueue=RecordedEnqueue())
    mall = catalog.mall()
    video = catalog.video(mall, catalog.pin(mall), upload_objects=False)
    query = GetVideo(video_id=str(video["id"]))
    try:
        with deps.reads() as uow:
            pid = uow.connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as admin:
            terminated = admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            assert terminated.scalar_one()

        with pytest.raises(DatabaseUnavailable):
            handlers.get_video(query, deps)
        answer = handlers.get_video(query, deps)
    finally:
        deps.uow().engine.dispose()

    assert answer.id == video["id"]


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

    from worker.adapters.postgres.repositories import _Shaped

    shaped = _Shaped()
    with pytest.raises(RuntimeError, match="binds"):
        shaped.get(("test",), {}, lambda: select(literal(1)))
