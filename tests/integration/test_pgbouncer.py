"""Through PgBouncer in transaction mode (``DB_POOLER=transaction``): nothing the worker
does lives in a session, so nothing leaks to the next client of a server connection.

PgBouncer hands a server connection to one client for one transaction, then to another.
Each hazard is shown first on plain connections (a session setting seen by another
client, a prepared statement's name taken, a session advisory lock held twice), then
the worker's own path is shown to keep clear of it. ``narrow`` has one server
connection, so every client shares it and a leak cannot hide; ``wide`` has four, so a
lock held by one transaction can be tried by another.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

import handlers
from handlers.errors import StatementTimeout
from schemas import GetVideo, ListVideos
from tests.conftest import RecordedEnqueue
from worker.adapters.postgres.budget import statement_budget
from worker.adapters.postgres.rooms.figures import FOLD_LOCK
from worker.adapters.postgres.uow import PostgresUnitOfWork, make_engine
from worker.adapters.relay import RELAY_LOCK_KEY
from worker.dev.cluster import PgBouncer
from worker.settings import ConfigError, load_settings

pytestmark = pytest.mark.skipif(
    not PgBouncer.installed(), reason="pgbouncer is not installed (apt-get install pgbouncer)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def bouncer(services: dict[str, str], pool_size: int) -> Iterator[PgBouncer]:
    server = make_url(services["DATABASE_URL"])
    started = PgBouncer(
        server_host=server.host or "127.0.0.1",
        server_port=server.port or 5432,
        port=free_port(),
        pool_size=pool_size,
        users=(server.username or "postgres",),
    ).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def narrow(services) -> Iterator[PgBouncer]:
    with bouncer(services, pool_size=1) as started:
        yield started


@pytest.fixture(scope="module")
def wide(services) -> Iterator[PgBouncer]:
    with bouncer(services, pool_size=4) as started:
        yield started


def through(pooler: PgBouncer, services: dict[str, str]) -> str:
    server = make_url(services["DATABASE_URL"])
    return pooler.url(server.database or "videoworker", server.username or "postgres")


def raw(url: str, **kwargs) -> psycopg.Connection:
    return psycopg.connect(url.replace("+psycopg", ""), autocommit=True, **kwargs)


def pooled_settings(pooler: PgBouncer, services: dict[str, str]):
    return load_settings(
        database_url=through(pooler, services),
        db_pooler="transaction",
        events_relay_database_url=services["DATABASE_URL"],
    )


@pytest.fixture
def video(catalog):
    mall = catalog.mall()
    return catalog.video(mall, catalog.pin(mall))


@pytest.fixture
def pooled_deps(narrow, services, clean):
    from worker.bootstrap import build_deps

    deps = build_deps(pooled_settings(narrow, services), enqueue=RecordedEnqueue())
    yield deps
    deps.uow().engine.dispose()


def server_statement_timeout(url: str) -> str:
    with raw(url) as other:
        return other.execute("SHOW statement_timeout").fetchone()[0]


# --- session settings ------------------------------------------------------------------


def test_a_session_setting_through_the_pooler_reaches_the_next_client(narrow, services):
    url = through(narrow, services)
    with raw(url) as first:
        first.execute("SELECT set_config('statement_timeout', '4321ms', false)")
    try:
        assert server_statement_timeout(url) == "4321ms"
    finally:
        with raw(url) as first:
            first.execute("RESET statement_timeout")


def test_budgets_through_the_pooler_stay_in_their_transaction(pooled_deps, narrow, services, video):
    url = through(narrow, services)
    default = server_statement_timeout(url)
    with statement_budget(4321):
        # A get on the read path, a list (read path and pooled), a delete (write).
        assert handlers.get_video(GetVideo(video_id=video["id"]), pooled_deps).id == video["id"]
        assert server_statement_timeout(url) == default
        handlers.list_videos(ListVideos(mall_id=video["mall_id"]), pooled_deps)
        assert server_statement_timeout(url) == default
        with pooled_deps.uow() as uow:
            uow.connection.execute(text("SELECT 1"))
            uow.commit()
        assert server_statement_timeout(url) == default


def test_a_budget_through_the_pooler_still_cancels(pooled_deps, engine, video):
    handlers.get_video(GetVideo(video_id=video["id"]), pooled_deps)
    connection = engine.connect()
    transaction = connection.begin()
    connection.execute(text("LOCK TABLE videos IN ACCESS EXCLUSIVE MODE"))
    try:
        for read in (
            lambda: handlers.get_video(GetVideo(video_id=video["id"]), pooled_deps),
            lambda: handlers.list_videos(ListVideos(mall_id=video["mall_id"]), pooled_deps),
        ):
            started = time.monotonic()
            with statement_budget(300), pytest.raises(StatementTimeout):
                read()
            assert time.monotonic() - started < 5
    finally:
        transaction.rollback()
        connection.close()
    assert handlers.get_video(GetVideo(video_id=video["id"]), pooled_deps).id == video["id"]


def test_sessions_through_the_pooler_read_utc_whatever_another_client_set(
    narrow, services, pooled_deps
):
    url = through(narrow, services)
    with raw(url) as other:
        other.execute("SET timezone TO 'Asia/Tokyo'")
        with pooled_deps.read() as uow:
            assert uow.connection.execute(text("SHOW timezone")).scalar_one() == "UTC"
        assert other.execute("SHOW timezone").fetchone()[0] == "Asia/Tokyo"


# --- prepared statements ---------------------------------------------------------------


def test_prepared_statements_collide_through_the_pooler(narrow, services):
    url = through(narrow, services)
    with raw(url) as first, raw(url) as second:
        with pytest.raises(psycopg.errors.DuplicatePreparedStatement):  # noqa: PT012
            for _ in range(10):
                first.execute("SELECT %s::int", (1,))
                second.execute("SELECT %s::int", (2,))


def test_the_worker_through_the_pooler_prepares_nothing(narrow, services, video):
    from worker.bootstrap import build_deps

    settings = pooled_settings(narrow, services)
    two = [build_deps(settings, enqueue=RecordedEnqueue()) for _ in range(2)]
    try:
        for _ in range(20):
            for deps in two:
                assert handlers.get_video(GetVideo(video_id=video["id"]), deps).id == video["id"]
                handlers.list_videos(ListVideos(mall_id=video["mall_id"]), deps)
    finally:
        for deps in two:
            deps.uow().engine.dispose()


# --- advisory locks --------------------------------------------------------------------


def test_a_session_advisory_lock_through_the_pooler_is_held_twice(narrow, services):
    """Why the relay (and a migration) must not go through the pooler.

    A key of the test's own: a worker's relay on this database may hold the relay's."""
    url = through(narrow, services)
    key = RELAY_LOCK_KEY ^ uuid.uuid4().int >> 72
    with raw(url) as one, raw(url) as other:
        try:
            assert one.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
            assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0], (
                "a second client took the 'held' lock: two relays would lead"
            )
        finally:
            one.execute("SELECT pg_advisory_unlock_all()")


def test_the_settings_refuse_a_transaction_pooler_without_a_direct_url(services):
    with pytest.raises(ConfigError, match="EVENTS_RELAY_DATABASE_URL"):
        load_settings(database_url=services["DATABASE_URL"], db_pooler="transaction")
    direct = "postgresql+psycopg://postgres@127.0.0.1:5432/direct"
    settings = load_settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:6432/pooled",
        db_pooler="transaction",
        events_relay_database_url=direct,
    )
    # The relay and `videoworker migrate` (its session lock, CREATE INDEX CONCURRENTLY).
    assert settings.relay_database_url == direct
    assert settings.direct_database_url == direct


def test_transaction_advisory_locks_through_the_pooler_hold_and_go_with_the_transaction(
    wide, services, clean
):
    """The removal engine's per-key locks, the outbox's per-subject ones and the fold's:
    all ``pg_advisory_xact_lock``, held exactly as long as the transaction."""
    settings = pooled_settings(wide, services)
    engine = make_engine(settings)
    direct = raw(services["DATABASE_URL"])
    key = f"videos/{uuid.uuid4()}/original.mp4"
    try:
        with PostgresUnitOfWork(engine) as holder:
            holder.deletions.lock_keys([key])
            holder.figures.fold_figures()
            # Another client of the pooler, and one past it: neither can take them.
            with PostgresUnitOfWork(engine) as other:
                assert other.figures.fold_figures() == 0
                assert not other.connection.execute(
                    text("SELECT pg_try_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key}
                ).scalar_one()
                assert not other.connection.execute(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": FOLD_LOCK}
                ).scalar_one()
            assert not direct.execute(
                "SELECT pg_try_advisory_xact_lock(%s)", (FOLD_LOCK,)
            ).fetchone()[0]
            holder.commit()
        # Gone with the commit, though the server connection lives on in the pool.
        for _ in range(8):
            with PostgresUnitOfWork(engine) as next_client:
                assert next_client.connection.execute(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": FOLD_LOCK}
                ).scalar_one()
        assert direct.execute("SELECT pg_try_advisory_xact_lock(%s)", (FOLD_LOCK,)).fetchone()[0]
    finally:
        direct.close()
        engine.dispose()


def test_two_folds_through_the_pooler_at_once_one_folds(wide, services, clean):
    settings = pooled_settings(wide, services)
    engine = make_engine(settings)
    inside = threading.Event()
    release = threading.Event()
    took: list[bool] = []

    def first() -> None:
        with PostgresUnitOfWork(engine) as uow:
            uow.figures.fold_figures()
            took.append(
                not raw(services["DATABASE_URL"])
                .execute("SELECT pg_try_advisory_xact_lock(%s)", (FOLD_LOCK,))
                .fetchone()[0]
            )
            inside.set()
            release.wait(10)
            uow.commit()

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inside.wait(10)
        with PostgresUnitOfWork(engine) as uow:
            assert uow.figures.fold_figures() == 0
        assert took == [True]
    finally:
        release.set()
        thread.join(10)
        engine.dispose()
