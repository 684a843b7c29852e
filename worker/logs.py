"""Structured JSON logs: one object per line, a dotted event name, the task's id.

Handlers log with ``log.info("video.deleted", extra={...})``; the formatter turns the
message into ``event`` and the extras into fields. Every record, ours or a library's,
passes a redaction filter: presigned URL signatures, credentials in URLs and the S3
secret never reach a log line. Celery's own "task succeeded" line would print the
return value (a signed URL); its format is replaced by one without it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

task_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "task_context", default=None
)

# Attributes every LogRecord has; anything else came in through ``extra``.
STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

REDACTIONS = (
    # SigV4 query signatures and credentials of presigned URLs.
    (
        re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s'\"]+", re.I),
        r"\1[redacted]",
    ),
    # Passwords in connection URLs: scheme://user:password@host
    (re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s'\"]*:)[^@\s'\"]+@", re.I), r"\1[redacted]@"),
)


class Redactor(logging.Filter):
    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = [s for s in (secrets or []) if s and len(s) >= 6]

    def scrub(self, text: str) -> str:
        for pattern, replacement in REDACTIONS:
            text = pattern.sub(replacement, text)
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self.scrub(message)
        if scrubbed != message or record.args:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        for key, value in list(vars(record).items()):
            if key in STANDARD_ATTRS or value is None or isinstance(value, bool | int | float):
                continue
            if key == "data" and isinstance(value, dict) and "return_value" in value:
                # Celery's task-success record carries the task's result here (a signed
                # URL, a video's keys): it never leaves the process.
                value = {**value, "return_value": "[omitted]"}
            setattr(record, key, self.scrub(value if isinstance(value, str) else str(value)))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        context = task_context.get()
        if context:
            entry.update(context)
        for key, value in vars(record).items():
            if key not in STANDARD_ATTRS and key not in entry:
                entry[key] = (
                    value if isinstance(value, str | int | float | bool | None) else str(value)
                )
        if record.exc_text or record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """For people at a terminal: the event, then key=value extras."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{key}={value}" for key, value in vars(record).items() if key not in STANDARD_ATTRS
        )
        context = task_context.get() or {}
        prefix = f"[{context['task_id'][:8]}] " if "task_id" in context else ""
        line = (
            f"{datetime.fromtimestamp(record.created, UTC):%H:%M:%S} {record.levelname:<7} "
            f"{prefix}{record.getMessage()}"
        )
        if extras:
            line += "  " + extras
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def configure(level: str = "INFO", fmt: str = "json", secrets: list[str] | None = None) -> None:
    """Route every logger, Celery's included, through one redacting handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(Redactor(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # celery.worker.strategy writes a "Task … received" line per message: measured at a
    # tenth of the worker's CPU per request, and the "succeeded" line says as much.
    for noisy in (
        "botocore",
        "boto3",
        "urllib3",
        "s3transfer",
        "werkzeug",
        "celery.worker.strategy",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_celery_success_line()


def quiet_celery_success_line() -> None:
    """Celery logs every task's return value on success; ours can hold a signed URL."""
    from celery.app import trace

    trace.LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"
