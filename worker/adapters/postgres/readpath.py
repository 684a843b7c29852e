"""The read path: the catalogue's statements, built once per shape, compiled once, and
run straight on the driver's cursor.

Long because it is one component on purpose: the statement cache, the compiled form,
the result API, the connections it holds and the check against SQLAlchemy's answer
are one fast path with one owner, not pieces spread over the rooms.

A ``videos.get`` or ``sign_url`` is one primary-key SELECT. Through SQLAlchemy each one
paid a statement's construction, a pool checkout and checkin, an execution context, a
cache-key walk and a result object: about 0.2 ms of CPU in all, several times what
PostgreSQL takes to answer it (``bench/roundtrip.py``). Here a statement is built once
per shape (``Shapes``: its values are all named parameters), compiled once by
SQLAlchemy's own compiler for the engine's dialect, casts included, with the dialect's
bind and result processors, and then run with psycopg on a connection of the engine's
pool: the same SQL, the same values on both sides.

``ReadPath`` is that component, one per engine (a process's own: the wiring is rebuilt
after a fork). What it does that SQLAlchemy did:

- the result: ``Rows`` has the result API the callers use (``first``, ``one``,
  ``one_or_none``, ``scalar``, ``scalar_one``, ``scalars``, ``mappings``, ``all``,
  iteration), rows by position, by name and ``_mapping``;
- tracing: ``ReadPath.tracers`` is called with the SQL and the parameters of every
  statement it sends, so a test sees what production runs;
- connections: the process's main thread (a prefork child, the solo pool) holds one
  connection across units of work; it is replaced once older than ``recycle`` (the
  pool's ``pool_recycle``), or when the server closed it (the failure is
  ``DatabaseUnavailable``, which the task runs again at once). Any other thread or
  greenlet (the threads and gevent pools) checks one out of the pool for its unit of
  work and gives it back at the end, so the pool bounds them as it bounds the rest;
- its own check: the first run of each shape is also run through SQLAlchemy and the
  two answers compared; a shape that differs is logged and runs through SQLAlchemy from
  then on. The private parts of SQLAlchemy it mirrors (``_bind_processors``,
  ``_cached_result_processor``) are those of the versions in ``MIRRORED`` (pinned in
  ``pyproject.toml``, re-checked by ``tests/unit/test_upstream_shapes.py``); with any
  other installed, every statement runs through SQLAlchemy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlalchemy
from sqlalchemy import Connection, Engine, Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter

from handlers.errors import DatabaseUnavailable
from worker.adapters.postgres import budget

log = logging.getLogger("videoworker")

# The release series whose private compilation and processing API this module uses.
MIRRORED = {"sqlalchemy": "2.1.", "psycopg": "3."}
INSTALLED = {"sqlalchemy": sqlalchemy.__version__, "psycopg": psycopg.__version__}


def mirrors_installed() -> bool:
    return all(INSTALLED[name].startswith(series) for name, series in MIRRORED.items())


Processor = Callable[[Any], Any] | None
Tracer = Callable[[str, Mapping[str, Any]], None]
# Why a connection could not be had: the server is down or restarting (the pool hands
# on the driver's own error, unwrapped), or the pool is exhausted for longer than its
# timeout. Anything else is a bug, answered ``internal``.
UNREACHABLE = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
)


class Row(tuple):
    """A row as SQLAlchemy gives one: a tuple, its fields by name and ``_mapping``."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _index: Mapping[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._index[name]]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))

    def _asdict(self) -> dict[str, Any]:
        return self._mapping

    def _tuple(self) -> tuple[Any, ...]:
        return tuple(self)


def row_type(names: Sequence[str]) -> type[Row]:
    fields = tuple(names)
    index = {name: i for i, name in enumerate(fields)}
    return type("Row", (Row,), {"__slots__": (), "_fields": fields, "_index": index})


class Fetched:
    """Fetched items with the methods of SQLAlchemy's results: ``first`` and ``one*``
    close it, as they close a result; ``all`` and iteration take what is left."""

    def __init__(self, items: Iterable[Any]) -> None:
        self._rest: Iterator[Any] | None = iter(items)

    def _open(self) -> Iterator[Any]:
        if self._rest is None:
            raise sa_exc.ResourceClosedError("This result object is closed.")
        return self._rest

    def _closing(self) -> list[Any]:
        rest = list(self._open())
        self._rest = None
        return rest

    def __iter__(self) -> Iterator[Any]:
        return self._open()

    def all(self) -> list[Any]:
        return list(self._open())

    def first(self) -> Any:
        rest = self._closing()
        return rest[0] if rest else None

    def one_or_none(self) -> Any:
        rest = self._closing()
        if len(rest) > 1:
            raise sa_exc.MultipleResultsFound(
                "Multiple rows were found when one or none was required"
            )
        return rest[0] if rest else None

    def one(self) -> Any:
        rest = self._closing()
        if not rest:
            raise sa_exc.NoResultFound("No row was found when one was required")
        if len(rest) > 1:
            raise sa_exc.MultipleResultsFound(
                "Multiple rows were found when exactly one was required"
            )
        return rest[0]


class Rows(Fetched):
    """The rows of one statement."""

    def scalars(self) -> Fetched:
        return Fetched(row[0] for row in self._open())

    def mappings(self) -> Fetched:
        return Fetched(row._mapping for row in self._open())

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]


@dataclass
class Compiled:
    """One statement as the driver runs it."""

    sql: str
    row: type[Row]
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]
    types: tuple[Any, ...]
    dialect: Any
    # The result processors depend on the column types the server reports (numeric's
    # OID, for one): taken from the first run's cursor description.
    results: tuple[Processor, ...] | None = None

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        converted = dict(values)
        for name, process in self.binds:
            if converted.get(name) is not None:
                converted[name] = process(converted[name])
        return converted

    def rows(self, raw: Sequence[Sequence[Any]], description: Sequence[Any]) -> Rows:
        if self.results is None:
            self.results = tuple(
                kind._cached_result_processor(self.dialect, column.type_code)  # noqa: SLF001
                for kind, column in zip(self.types, description, strict=True)
            )
        make = self.row
        if any(self.results):
            processors = self.results
            return Rows(
                make(
                    value if process is None or value is None else process(value)
                    for process, value in zip(processors, values, strict=True)
                )
                for values in raw
            )
        return Rows(make(values) for values in raw)


def compile_for(statement: Select, dialect: Any) -> Compiled:
    compiled = statement.compile(dialect=dialect)
    binds = tuple(
        (name, process)
        for name, process in (compiled._bind_processors or {}).items()  # noqa: SLF001
        if process is not None
    )
    columns = statement.selected_columns
    return Compiled(
        str(compiled),
        row_type([column.key for column in columns]),
        binds,
        tuple(column.type for column in columns),
        dialect,
    )


@dataclass
class Shape:
    """A statement built for one shape, and what the driver runs of it."""

    statement: Select
    compiled: dict[str, Compiled] = field(default_factory=dict)
    # Checked against SQLAlchemy's answer (once, by the first read path to run it), and
    # the verdict.
    probed: bool = False
    through_sqlalchemy: bool = False

    def for_dialect(self, dialect: Any) -> Compiled:
        compiled = self.compiled.get(dialect.name)
        if compiled is None:
            compiled = self.compiled[dialect.name] = compile_for(self.statement, dialect)
        return compiled


class Shapes:
    """Statements built once per shape and run with the caller's values.

    A read's statements are the same SQL for every call with the same filters present,
    the same scope role, has_proxy and trash flags: only values differ, and every value
    is a named bind parameter. Built anew, they cost more CPU than PostgreSQL takes to
    answer a primary-key read (~0.25 ms for a get, ~0.5 ms for a list page and its
    total: construction and SQLAlchemy's cache-key walk); kept, a dictionary look-up. A
    statement is kept only if every parameter it binds is one the caller passes (checked
    once, when it is built), so no value of the call that built it can reach another call.
    """

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._kept: dict[tuple[Any, ...], Shape] = {}
        self._lock = threading.Lock()

    def get(
        self, key: tuple[Any, ...], values: Mapping[str, Any], build: Callable[[], Select]
    ) -> Shape:
        key = (*key, frozenset(values))
        shape = self._kept.get(key)
        if shape is None:
            statement = build()
            bound = {
                node.key for node in visitors.iterate(statement) if isinstance(node, BindParameter)
            }
            if bound != set(values):
                raise RuntimeError(f"statement binds {sorted(bound)}, given {sorted(values)}")
            shape = Shape(statement)
            with self._lock:
                if len(self._kept) >= self.limit:
                    self._kept.clear()
                self._kept[key] = shape
        return shape


SHAPES = Shapes()


class OnConnection:
    """The shaped statements on a connection of one's own (a unit of work's, in its
    transaction), through SQLAlchemy."""

    def __init__(self, connection: Connection, shapes: Shapes = SHAPES) -> None:
        self.connection = connection
        self.shapes = shapes
        # The budget the unit of work gave the connection when it began.
        self._budget = budget.current()

    def run(
        self, key: tuple[Any, ...], values: Mapping[str, Any], build: Callable[[], Select]
    ) -> Any:
        self._follow_budget()
        return self.connection.execute(self.shapes.get(key, values, build).statement, values)

    def execute(self, statement: Any, values: Mapping[str, Any] | None = None) -> Any:
        """A statement that is not shaped (its rows differ run to run: a sample)."""
        self._follow_budget()
        return self.connection.execute(statement, values)

    def _follow_budget(self) -> None:
        """A budget set around some statements only (a search's) reaches them here too:
        in the transaction (``SET LOCAL``), or on an autocommit connection's session."""
        wanted = budget.current()
        if wanted == self._budget:
            return
        if self.connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            budget.apply_session(self.connection.connection.driver_connection, self.connection.info)
        elif wanted is None:
            self.connection.exec_driver_sql("SET LOCAL statement_timeout TO DEFAULT")
        else:
            self.connection.exec_driver_sql(budget.SET_LOCAL, {"ms": f"{wanted}ms"})
        self._budget = wanted


def holds_connection() -> bool:
    """Whether this thread may hold a connection across units of work: only a process's
    main thread (a prefork child, the solo pool), of which there is one."""
    return threading.current_thread() is threading.main_thread()


class ReadPath:
    """The catalogue's reads of one engine: shaped statements run on the driver.

    ``engine``: the engine of read-only units of work (autocommit). ``recycle``: the
    age, in seconds, past which a held connection is replaced (the pool's
    ``pool_recycle``; negative: never).
    """

    def __init__(
        self,
        engine: Engine,
        recycle: float = -1,
        clock: Callable[[], float] = time.monotonic,
        shapes: Shapes = SHAPES,
    ) -> None:
        self.engine = engine
        self.recycle = recycle
        self.clock = clock
        self.shapes = shapes
        # Called with the SQL and the parameters of each statement sent: the one place to
        # watch this path (SQLAlchemy's cursor events do not see it).
        self.tracers: list[Tracer] = []
        self.fast = mirrors_installed()
        # Statements run on the driver since start (how much the path serves).
        self.runs = 0
        self._held: Any = None
        self._held_since = 0.0

    def session(self) -> ReadSession:
        """What a read-only unit of work runs its statements on."""
        return ReadSession(self)

    def _checkout(self) -> Any:
        try:
            connection = self.engine.raw_connection()
        except UNREACHABLE as exc:
            raise unreachable(exc) from exc
        connection.driver_connection.autocommit = True
        return connection

    def held(self) -> Any:
        """This process's held connection: checked out once, replaced when too old."""
        held = self._held
        if held is not None and 0 <= self.recycle < self.clock() - self._held_since:
            self.forget()
            held = None
        if held is None:
            held = self._held = self._checkout()
            self._held_since = self.clock()
        return held

    def forget(self) -> None:
        """Drop the held connection (broken, too old, or the wiring is being closed)."""
        held, self._held = self._held, None
        if held is not None:
            held.invalidate()

    def _trace(self, sql: str, parameters: Mapping[str, Any]) -> None:
        for tracer in self.tracers:
            tracer(sql, parameters)

    def run(self, session: ReadSession, shape: Shape, values: Mapping[str, Any]) -> Any:
        if not self.fast or shape.through_sqlalchemy:
            compiled = shape.for_dialect(self.engine.dialect)
            self._trace(compiled.sql, compiled.parameters(values))
            return session.pooled().execute(shape.statement, values)
        compiled = shape.for_dialect(self.engine.dialect)
        parameters = compiled.parameters(values)
        self._trace(compiled.sql, parameters)
        connection = session.driver()
        driver = connection.driver_connection
        try:
            with budget.in_transaction(driver, connection.info):
                cursor = driver.cursor()
                cursor.execute(compiled.sql, parameters)
            with cursor:
                # Every statement built by shape is a SELECT: there are rows to fetch.
                raw = cursor.fetchall()
                description = cursor.description
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if (timeout := budget.timed_out(exc)) is not None:
                raise timeout from exc
            if driver.closed or driver.broken:
                session.lost(connection)
            raise unreachable(exc) from exc
        except BaseException:
            # Interrupted mid-statement (a time limit): cancelled on the server, and the
            # connection, still busy with it, is not used again.
            if budget.abandon(driver):
                session.lost(connection)
            raise
        self.runs += 1
        if not shape.probed:
            return self._probe(session, shape, values, compiled.rows(raw, description))
        return compiled.rows(raw, description)

    def _probe(
        self, session: ReadSession, shape: Shape, values: Mapping[str, Any], rows: Rows
    ) -> Rows:
        """The first answer of a shape, against SQLAlchemy's to the same statement."""
        ours = rows.all()
        theirs = session.pooled().execute(shape.statement, values).all()
        shape.probed = True
        if _printed(ours) != _printed(theirs):
            shape.through_sqlalchemy = True
            log.error(
                "readpath.probe.differs",
                extra={"sql": shape.for_dialect(self.engine.dialect).sql[:200]},
            )
            return Rows(theirs)
        return Rows(ours)


def _printed(rows: Sequence[Sequence[Any]]) -> list[tuple[str, ...]]:
    # repr: NaN equals NaN, and a value of another type is a difference.
    return [tuple(repr(value) for value in row) for row in rows]


class ReadSession:
    """One read-only unit of work's statements: the shaped ones on the read path, any
    other through SQLAlchemy on a pooled autocommit connection, taken on first need.
    Everything it checked out goes back when it closes."""

    def __init__(self, path: ReadPath) -> None:
        self.path = path
        self.holds = holds_connection()
        self._pooled: Connection | None = None

    def run(
        self, key: tuple[Any, ...], values: Mapping[str, Any], build: Callable[[], Select]
    ) -> Any:
        return self.path.run(self, self.path.shapes.get(key, values, build), values)

    def driver(self) -> Any:
        """The connection the shaped statements run on: the process's held one on its
        main thread; on any other, the unit of work's one pooled connection, the same
        SQLAlchemy runs everything else (and the first-run check) on, so that a thread
        never holds two connections at once: eight threads on a pool of two would
        otherwise each hold one and wait for a second until the pool timed out."""
        if self.holds:
            return self.path.held()
        return self.pooled().connection

    def lost(self, connection: Any) -> None:
        if self._pooled is not None and connection is self._pooled.connection:
            self._pooled.invalidate()
            self._pooled.close()
            self._pooled = None
        else:
            self.path.forget()

    def execute(self, statement: Any, values: Mapping[str, Any] | None = None) -> Any:
        return self.pooled().execute(statement, values)

    def execution_options(self, **options: Any) -> Connection:
        return self.pooled().execution_options(**options)

    def pooled(self) -> Connection:
        if self._pooled is None:
            self._pooled = self.path.engine.connect()
        # Every time: a budget may be set around some statements only (a search's).
        budget.apply_session(self._pooled.connection.driver_connection, self._pooled.info)
        return self._pooled

    def close(self) -> None:
        if self._pooled is not None:
            release(self._pooled)
            self._pooled = None


def release(connection: Connection) -> None:
    """Give a SQLAlchemy connection back, or throw it away if a statement interrupted
    by its caller is still running on it (cancelled on the server first)."""
    try:
        busy = not connection.invalidated and budget.abandon(
            connection.connection.driver_connection
        )
    except sa_exc.ResourceClosedError:
        busy = False
    if busy:
        connection.invalidate()
    connection.close()


def unreachable(exc: BaseException) -> DatabaseUnavailable:
    """The error a connection-level failure becomes: the first line of the driver's
    message, without the SQL or bound parameters."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip()
    reason = text.splitlines()[0][:200] if text else type(exc).__name__
    return DatabaseUnavailable(f"PostgreSQL unreachable: {reason}")
