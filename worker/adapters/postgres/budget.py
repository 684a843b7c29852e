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


def apply_session(driver: Any, info: MutableMapping[str, Any]) -> None:
    """Give an autocommit connection (psycopg's) the current budget, if it has another."""
    wanted = _budget_ms.get()
    if info.get(SET_TO, None) == wanted:
        return
    if wanted is None:
        driver.execute("RESET statement_timeout")
    else:
        driver.execute(SET_SESSION, {"ms": _setting(wanted)})
    info[SET_TO] = wanted


def apply_local(execute: Any, info: MutableMapping[str, Any]) -> None:
    """Give a transaction the current budget, unless the connection has it already."""
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
