"""PostgreSQL engine and unit of work: one connection, one transaction per ``with``.

Connection-level failures become ``DatabaseUnavailable``, the one error the task
layer retries; everything else is a bug and surfaces as ``internal``.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc

from worker.adapters.postgres import budget
from worker.adapters.postgres.readpath import ReadPath, ReadSession, unreachable
from worker.adapters.postgres.rooms.analytics import PostgresAnalytics
from worker.adapters.postgres.rooms.catalogue import PostgresCatalogue
from worker.adapters.postgres.rooms.deletions import PostgresDeletionAudit, PostgresDeletionQueue
from worker.adapters.postgres.rooms.events import PostgresOutbox
from worker.adapters.postgres.rooms.exports import PostgresExports
from worker.adapters.postgres.rooms.figures import PostgresFigures
from worker.adapters.postgres.rooms.references import PostgresReferences
from worker.adapters.postgres.rooms.removal import PostgresRemoval
from worker.adapters.postgres.rooms.reprocessing import PostgresReprocessing
from worker.adapters.postgres.rooms.retention import PostgresRetentionSettings
from worker.adapters.postgres.rooms.shares import PostgresShares
from worker.adapters.postgres.rooms.tags import PostgresTags
from worker.settings import Settings

# Connection-level failures: the server is down, restarting or unreachable.
CONNECTION_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError)
# A connection older than this is replaced, pooled or held by the read path: the
# server's or a proxy's idle and lifetime limits never close one under a statement.
POOL_RECYCLE_SECONDS = 1800


def make_engine(settings: Settings) -> Engine:
    if settings.db_pooler == "transaction":
        return _transaction_pooled_engine(settings)
    return create_engine(
        settings.database_url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        # No SELECT 1 on every checkout (a round trip per message): a connection the
        # server closed fails its first statement instead, which invalidates the pool
        # and raises DatabaseUnavailable; the task then runs again at once, on a new
        # connection (ContractTask._handle_with_retries).
        pool_pre_ping=False,
        pool_recycle=POOL_RECYCLE_SECONDS,
        connect_args={
            "connect_timeout": 5,
            # UTC sessions: results carry Z whatever the server's TimeZone setting is. No
            # JIT: a statement of a few milliseconds whose estimate crosses
            # jit_above_cost (a list by two tags at 10M: 5-12 ms of compiling on a 50 ms
            # statement) would pay it on every call; nothing here is long enough to win it
            # back.
            "options": (
                f"-c timezone=UTC -c statement_timeout={settings.db_statement_timeout_ms}"
                " -c jit=off"
            ),
        },
    )


def _transaction_pooled_engine(settings: Settings) -> Engine:
    """The engine behind a transaction pooler (``DB_POOLER=transaction``).

    A server connection serves one transaction, then another client: nothing may live
    in the session. So: no server-side prepared statements (psycopg prepares a
    statement it ran five times, and the next transaction would find it missing: the
    statement and the connection it was prepared on part; PgBouncer 1.21's
    ``max_prepared_statements`` would carry them, 1.18 cannot); no startup ``options``
    (PgBouncer refuses them): the time zone is SET once, which PgBouncer tracks and
    gives back to this client on every server connection; statement budgets go into
    each transaction (``budget.POOLED``); session advisory locks and LISTEN go over
    ``EVENTS_RELAY_DATABASE_URL``, direct (the settings insist on it)."""
    engine = create_engine(
        settings.database_url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_pre_ping=False,
        pool_recycle=POOL_RECYCLE_SECONDS,
        connect_args={"connect_timeout": 5, "prepare_threshold": None},
    )
    default_ms = settings.db_statement_timeout_ms

    @event.listens_for(engine, "connect")
    def _pooled_session(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute("SET timezone TO 'UTC'")
        dbapi_connection.commit()
        record.info[budget.POOLED] = default_ms

    return engine


def reading(engine: Engine) -> Engine:
    """The same pool, its connections in autocommit while a read-only unit of work holds
    them (reset when they go back)."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def read_path(engine: Engine) -> ReadPath:
    """This process's read path over ``reading(engine)`` (``readpath.ReadPath``)."""
    return ReadPath(engine, recycle=POOL_RECYCLE_SECONDS)


class PostgresUnitOfWork:
    """One connection and one transaction; rolled back unless ``commit()`` was called.

    Read-only (given ``reading(engine)``): the connection runs in autocommit, each
    statement on its own (the same READ COMMITTED snapshot per statement a transaction
    would give), without the BEGIN and ROLLBACK that would double a single SELECT's
    round trips. For handlers that only read (``Deps.reads``); nothing they run could
    be rolled back. Given a ``ReadPath`` as well, the catalogue's statements run on it,
    and a pooled connection is checked out only for the others.
    """

    catalogue: PostgresCatalogue
    removal: PostgresRemoval
    retention: PostgresRetentionSettings
    figures: PostgresFigures
    references: PostgresReferences
    deletions: PostgresDeletionQueue
    audit: PostgresDeletionAudit
    tags: PostgresTags
    shares: PostgresShares
    reprocessing: PostgresReprocessing
    analytics: PostgresAnalytics
    exports: PostgresExports
    events: PostgresOutbox

    def __init__(self, engine: Engine, read_path: ReadPath | None = None) -> None:
        self.engine = engine
        # Read-only when given the engine of ``reading(engine)``.
        self.read_only = engine.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        if read_path is not None and not self.read_only:
            raise ValueError("the read path serves read-only units of work only")
        self.read_path = read_path
        self.connection: Connection | ReadSession | None = None

    def __enter__(self) -> PostgresUnitOfWork:
        try:
            if self.read_path is not None:
                self.connection = self.read_path.session()
            else:
                self.connection = self.engine.connect()
                if self.read_only:
                    budget.apply_session(
                        self.connection.connection.driver_connection, self.connection.info
                    )
                else:
                    budget.apply_local(self.connection.exec_driver_sql, self.connection.info)
        except CONNECTION_ERRORS as exc:
            if self.connection is not None:
                self.connection.close()
                self.connection = None
            raise unreachable(exc) from exc
        self.catalogue = PostgresCatalogue(self.connection)
        self.removal = PostgresRemoval(self.connection)
        self.retention = PostgresRetentionSettings(self.connection)
        self.figures = PostgresFigures(self.connection)
        self.references = PostgresReferences(self.connection)
        self.deletions = PostgresDeletionQueue(self.connection)
        self.audit = PostgresDeletionAudit(self.connection)
        self.tags = PostgresTags(self.connection)
        self.shares = PostgresShares(self.connection)
        self.reprocessing = PostgresReprocessing(self.connection)
        self.analytics = PostgresAnalytics(self.connection)
        self.exports = PostgresExports(self.connection)
        self.events = PostgresOutbox(self.connection)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.connection is not None
        connection, self.connection = self.connection, None
        if isinstance(connection, ReadSession):
            connection.close()
        else:
            # Interrupted mid-statement: cancelled and thrown away, never rolled back
            # (the driver would refuse: another command is in progress).
            if exc is not None and not connection.invalidated:
                if budget.abandon(connection.connection.driver_connection):
                    connection.invalidate()
            try:
                # A read has no transaction to end: closing gives the connection back.
                if not self.read_only and not connection.invalidated:
                    connection.rollback()
            except CONNECTION_ERRORS:
                pass
            finally:
                connection.close()
        if exc is not None and (timeout := budget.timed_out(exc)) is not None:
            raise timeout from exc
        if isinstance(exc, CONNECTION_ERRORS):
            raise unreachable(exc) from exc

    def commit(self) -> None:
        assert self.connection is not None
        if self.read_only:
            raise RuntimeError("a read-only unit of work has nothing to commit")
        self.connection.commit()
