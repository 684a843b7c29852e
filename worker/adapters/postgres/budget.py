"""How long one statement may run: the budget of the task at hand, applied to the
connection it runs on, and what is done with a statement its caller stopped waiting for.

A task's time limits come from the task table; a statement must end well inside them,
or the soft limit interrupts the driver mid-statement and the server goes on working
for nobody. So the task edge names a budget (``statement_budget``) for the time it
runs, and every connection a unit of work uses has its ``statement_timeout`` set to it
first: once per connection while the budget stays the same (a held or pooled
connection remembers what it was given), ``SET LOCAL`` in a write transaction. Past the
budget the server cancels the statement itself (``StatementTimeout``, answered
``timeout``, not retried). Without a budget (the CLI, a bench) the connection's own
default stands: ``DB_STATEMENT_TIMEOUT_MS``, given when it connected.

A statement whose caller is interrupted anyway (a time limit, a signal) leaves its
connection busy: the driver cancels only on Ctrl-C. ``abandon`` cancels it on the
server and the connection is thrown away, never handed to the next caller still in
the middle of an answer ("another command is already in progress").

Behind a transaction pooler (``DB_POOLER=transaction``: PgBouncer's transaction mode)
a session setting would stay on whichever server connection ran it, for that
connection's next client, and an autocommit statement may run on another server
connection than the one before it. There a connection's info carries ``POOLED`` (its
default budget, ``DB_STATEMENT_TIMEOUT_MS``, which no startup option can give), and the
budget only ever goes into a transaction: ``SET LOCAL`` in a write transaction, and the
read path's autocommit statements each in a transaction of their own
(``in_transaction``). A read-only unit of work's other statements (statistics, tags, a
shape's first check) stay in autocommit, which holds no server connection between
statements, under the role's own ``statement_timeout`` (``ALTER ROLE … SET``): in a
transaction they would hold one while the read path waits for another.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from typing import Any

from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from handlers.errors import StatementTimeout

log = logging.getLogger("videoworker")

_budget_ms: ContextVar[int | None] = ContextVar("statement_budget_ms", default=None)
# What a connection's statement_timeout was last set to by this module, in its info.
SET_TO = "videoworker.statement_timeout_ms"
DEFAULT = "default"
SET_SESSION = "SELECT set_config('statement_timeout', %(ms)s, false)"
SET_LOCAL = "SELECT set_config('statement_timeout', %(ms)s, true)"
# In a connection's info when it goes through a transaction pooler: its default budget.
POOLED = "videoworker.transaction_pooled_default_ms"


@contextlib.contextmanager
def statement_budget(ms: int | None) -> Iterator[None]:
    """Every statement run in this context (this thread or greenlet) ends within ``ms``."""
    token = _budget_ms.set(ms)
    try:
        yield
    finally:
        _budget_ms.reset(token)


def current() -> int | None:
    return _budget_ms.get()


def _setting(ms: int | None) -> str:
    return DEFAULT if ms is None else f"{ms}ms"


def _pooled_wanted(info: MutableMapping[str, Any]) -> int:
    wanted = _budget_ms.get()
    return info[POOLED] if wanted is None else wanted


def apply_session(driver: Any, info: MutableMapping[str, Any]) -> None:
    """Give an autocommit connection (psycopg's) the current budget, if it has another."""
    if POOLED in info:
        # Behind a transaction pooler: never on the session (``in_transaction``).
        return
    wanted = _budget_ms.get()
    if info.get(SET_TO, None) == wanted:
        return
    if wanted is None:
        driver.execute("RESET statement_timeout")
    else:
        driver.execute(SET_SESSION, {"ms": _setting(wanted)})
    info[SET_TO] = wanted


@contextlib.contextmanager
def in_transaction(driver: Any, info: MutableMapping[str, Any]) -> Iterator[None]:
    """Around one statement on an autocommit connection: the budget on the session, or
    behind a transaction pooler the statement in a transaction of its own with the
    budget ``SET LOCAL``: three round trips more than without the pooler (PgBouncer 1.18
    drops a pipelined connection, so they are not pipelined)."""
    if POOLED not in info:
        apply_session(driver, info)
        yield
        return
    with driver.transaction():
        driver.execute(SET_LOCAL, {"ms": _setting(_pooled_wanted(info))})
        yield


def apply_local(execute: Any, info: MutableMapping[str, Any]) -> None:
    """Give a transaction the current budget, unless the connection has it already."""
    if POOLED in info:
        execute(SET_LOCAL, {"ms": _setting(_pooled_wanted(info))})
        return
    wanted = _budget_ms.get()
    if info.get(SET_TO, None) == wanted:
        return
    if wanted is None:
        execute("SET LOCAL statement_timeout TO DEFAULT", {})
    else:
        execute(SET_LOCAL, {"ms": _setting(wanted)})


def timed_out(exc: BaseException) -> StatementTimeout | None:
    """The ``timeout`` answer, if the server cancelled a statement at its budget."""
    original = getattr(exc, "orig", None) or exc
    if isinstance(original, pg_errors.QueryCanceled):
        ms = _budget_ms.get()
        within = f"{ms} ms" if ms is not None else "its time budget"
        return StatementTimeout(
            f"A database statement took longer than {within} and was cancelled; "
            "narrow the request (filters, a smaller page) or try again later"
        )
    return None


def abandon(driver: Any) -> bool:
    """Cancel a statement still running on this connection; True if there was one, and
    then the connection must be thrown away."""
    try:
        if driver.closed or driver.pgconn.transaction_status != TransactionStatus.ACTIVE:
            return False
    except Exception:  # noqa: BLE001 - a connection we cannot ask is thrown away
        return True
    try:
        cancel = getattr(driver, "cancel_safe", None)
        if cancel is not None:
            cancel(timeout=2.0)
        else:
            driver.cancel()
    except Exception:  # noqa: BLE001 - the statement's own timeout ends it then
        log.warning("database.cancel_failed")
    log.warning("database.statement_abandoned")
    return True
