"""What a failed command prints: one line a person can act on, never a traceback.

A service that refuses mid-command (a database that does not exist, a server that went
away, a bucket that is not there) is named with the variable that points at it and
where that variable came from; anything else is one line too, and
``VIDEOWORKER_DEBUG=1`` brings the traceback back for whoever debugs the command.
"""

from __future__ import annotations

import os
import re

from worker.settings import setting_source

DEBUG_VARIABLE = "VIDEOWORKER_DEBUG"


def debugging() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _where(variable: str) -> str:
    source = setting_source(variable)
    where = {None: "the default", "environment": "from the environment"}
    return f"{variable} ({where.get(source, f'from {source}')})"


def _postgres(exc: BaseException) -> str:
    text = _first_line(str(getattr(exc, "orig", None) or exc))
    # psycopg's "connection failed: connection to server at …, port … failed: FATAL: …"
    fatal = re.search(r"(?:FATAL|ERROR):\s+(.*)", text)
    reason = fatal.group(1) if fatal else re.sub(r"^\(.*?\)\s*", "", text)
    if "does not exist" in reason and "relation" in reason:
        return f"PostgreSQL: {reason}; run `videoworker migrate`"
    return f"PostgreSQL refused: {reason}; check {_where('DATABASE_URL')}"


def describe(exc: BaseException) -> str | None:
    """One line for a failure of a service the command talks to; None for anything else."""
    module = type(exc).__module__.split(".", 1)[0]
    if module in ("sqlalchemy", "psycopg"):
        name = type(exc).__name__
        if name in ("OperationalError", "InterfaceError", "ProgrammingError"):
            return _postgres(exc)
        return None
    if module == "redis":
        return f"Redis: {_first_line(str(exc))}; check {_where('REDIS_URL')}"
    if module in ("kombu", "amqp"):
        return f"broker: {_first_line(str(exc))}; check {_where('CELERY_BROKER_URL')}"
    if module in ("botocore", "boto3"):
        return f"S3: {_first_line(str(exc))}; check {_where('S3_ENDPOINT_URL')}"
    return None


def unexpected(exc: BaseException) -> str:
    detail = _first_line(str(exc))
    return (
        f"unexpected {type(exc).__name__}{': ' + detail if detail else ''} "
        f"({DEBUG_VARIABLE}=1 shows the traceback)"
    )


__all__ = ["debugging", "describe", "unexpected"]
