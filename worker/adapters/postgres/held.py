"""Reads on one psycopg connection held per process, without SQLAlchemy's per-call work.

A ``videos.get`` or ``sign_url`` is one primary-key SELECT. Through SQLAlchemy each one
paid a pool checkout and checkin, an execution context, a cache-key walk and a result
object: about 0.2 ms of CPU in all, several times what PostgreSQL takes to answer it
(``bench/roundtrip.py``). The statements the catalogue builds once per shape
(``rooms.shaped.SHAPED``) are compiled here once more, to their SQL text and the
dialect's bind and result processors, and then run straight on the driver's cursor of
a connection this process keeps checked out of the engine's pool. Everything else a
read runs goes through SQLAlchemy as before, on a pooled connection taken only then,
and so does every statement while anything listens to the engine's cursor events.

What stays the same: the SQL (SQLAlchemy's own compilation for the psycopg dialect,
casts included), the values on both sides (the same processors applied), psycopg's own
prepared statements after five runs of the same SQL, autocommit (a read-only unit of
work has no transaction to end), the session's time zone and statement timeout (the
engine's connect arguments). A connection the server closed fails its statement,
is invalidated and replaced on the next read; the failure is ``DatabaseUnavailable``,
which the task runs again at once (``ContractTask._handle_with_retries``), as a dead
pooled connection was handled without pre-ping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, Select
from sqlalchemy import exc as sa_exc

from handlers.errors import DatabaseUnavailable

Processor = Callable[[Any], Any] | None
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


@dataclass
class Compiled:
    """One statement as the driver runs it."""

    sql: str
    names: tuple[str, ...]
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]
    types: tuple[Any, ...]
    dialect: Any
    # The result processors depend on the column types the server reports (numeric's
    # OID, for one): taken from the first run's cursor description.
    results: tuple[Processor, ...] | None = None

    def processors(self, description: Sequence[Any]) -> None:
        if self.results is None:
            self.results = tuple(
                kind._cached_result_processor(self.dialect, column.type_code)  # noqa: SLF001
                for kind, column in zip(self.types, description, strict=True)
            )

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        if not self.binds:
            return dict(values)
        converted = dict(values)
        for name, process in self.binds:
            if converted.get(name) is not None:
                converted[name] = process(converted[name])
        return converted

    def row(self, raw: Sequence[Any]) -> HeldRow:
        if self.results is not None and any(self.results):
            raw = tuple(
                value if process is None or value is None else process(value)
                for process, value in zip(self.results, raw, strict=True)
            )
        return HeldRow(self.names, tuple(raw))


def compile_for(statement: Select, engine: Engine) -> Compiled:
    dialect = engine.dialect
    compiled = statement.compile(dialect=dialect)
    binds = tuple(
        (name, process)
        for name, process in (compiled._bind_processors or {}).items()  # noqa: SLF001
        if process is not None
    )
    columns = statement.selected_columns
    return Compiled(
        str(compiled),
        tuple(column.key for column in columns),
        binds,
        tuple(column.type for column in columns),
        dialect,
    )


class HeldRow:
    """A row as the catalogue's reads use one: by position, by name, or ``_mapping``."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: tuple[str, ...], values: tuple[Any, ...]) -> None:
        self._names = names
        self._values = values

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._names, self._values, strict=True))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[self._names.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def __getitem__(self, index: int) -> Any:
        return self._values[index]


class HeldResult:
    """The part of SQLAlchemy's result the catalogue's reads use."""

    def __init__(self, rows: list[HeldRow]) -> None:
        self._rows = rows

    def first(self) -> HeldRow | None:
        return self._rows[0] if self._rows else None

    def scalar_one(self) -> Any:
        if len(self._rows) != 1:
            raise LookupError(f"expected one row, got {len(self._rows)}")
        return self._rows[0][0]

    def __iter__(self) -> Iterator[HeldRow]:
        return iter(self._rows)


class HeldConnections:
    """This process's read connections, one per thread, checked out of ``engine``'s
    pool once and kept (the prefork pool runs one thread a child: one connection).

    The engine is the process's own (``worker_process_init`` rebuilds the wiring after
    a fork), so a held connection is never shared with a parent or a sibling.
    """

    def __init__(self, engine: Engine, is_shaped: Callable[[Select], bool]) -> None:
        self.engine = engine
        self.is_shaped = is_shaped
        self._local = threading.local()
        self._compiled: dict[int, tuple[Select, Compiled]] = {}
        self._lock = threading.Lock()
        # Statements run on held connections since start (how much the path serves).
        self.runs = 0

    def compiled(self, statement: Select) -> Compiled:
        entry = self._compiled.get(id(statement))
        # Keyed by identity, the statement kept with it: an id is never reused while
        # its object is alive in this dictionary.
        if entry is None or entry[0] is not statement:
            with self._lock:
                if len(self._compiled) >= 4096:
                    self._compiled.clear()
                entry = (statement, compile_for(statement, self.engine))
                self._compiled[id(statement)] = entry
        return entry[1]

    def observed(self) -> bool:
        """Whether anything listens to the engine's cursor events (a tracer, a test
        counting statements): then every statement goes through SQLAlchemy, where they
        are emitted, so none is hidden from it."""
        dispatch = self.engine.dispatch
        return bool(dispatch.before_cursor_execute) or bool(dispatch.after_cursor_execute)

    def _driver(self) -> Any:
        held = getattr(self._local, "held", None)
        if held is None:
            try:
                held = self.engine.raw_connection()
            except UNREACHABLE as exc:
                raise unreachable(exc) from exc
            held.driver_connection.autocommit = True
            self._local.held = held
        return held

    def run(self, statement: Select, values: Mapping[str, Any]) -> HeldResult:
        compiled = self.compiled(statement)
        held = self._driver()
        try:
            with held.driver_connection.cursor() as cursor:
                cursor.execute(compiled.sql, compiled.parameters(values))
                if compiled.results is None:
                    # Built anew on every access (a column object per field): read once.
                    compiled.processors(cursor.description)
                # Every statement built by shape is a SELECT: there are rows to fetch.
                raw = cursor.fetchall()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            connection = held.driver_connection
            if connection.closed or connection.broken:
                self.forget()
            raise unreachable(exc) from exc
        self.runs += 1
        return HeldResult([compiled.row(row) for row in raw])

    def forget(self) -> None:
        """Drop this thread's connection (broken, or the wiring is being closed)."""
        held = getattr(self._local, "held", None)
        self._local.held = None
        if held is not None:
            held.invalidate()


class ReadConnection:
    """What a read-only unit of work gives its rooms in place of a Connection.

    Statements built by shape, run with their values, go to the held connection; any
    other statement goes through SQLAlchemy on a pooled autocommit connection, taken on
    first need and given back when the unit of work ends.
    """

    def __init__(self, held: HeldConnections, engine: Engine) -> None:
        self.held = held
        self.engine = engine
        self._pooled: Connection | None = None

    def execute(self, statement: Any, values: Mapping[str, Any] | None = None) -> Any:
        if values is not None and self.held.is_shaped(statement) and not self.held.observed():
            return self.held.run(statement, values)
        return self.pooled().execute(statement, values)

    def execution_options(self, **options: Any) -> Connection:
        return self.pooled().execution_options(**options)

    def pooled(self) -> Connection:
        if self._pooled is None:
            self._pooled = self.engine.connect()
        return self._pooled

    def close(self) -> None:
        if self._pooled is not None:
            self._pooled.close()
            self._pooled = None


def unreachable(exc: BaseException) -> DatabaseUnavailable:
    """The error a connection-level failure becomes: the first line of the driver's
    message, without the SQL or bound parameters."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip()
    reason = text.splitlines()[0][:200] if text else type(exc).__name__
    return DatabaseUnavailable(f"PostgreSQL unreachable: {reason}")
