"""Structured logs: one JSON object per line, a dotted event name, the task's id.

Handlers log with ``log.info("video.deleted", extra={...})``; the formatter turns the
message into ``event`` and the extras into fields, dicts and lists as nested JSON so that a
log pipeline can query them. A person at a terminal gets text instead (``resolve_format``).

Every record, ours or a library's, passes a redaction filter: presigned URL signatures,
credentials in URLs and the S3 secret never reach a log line, and neither does what Celery
attaches to its task lines (the result, a signed URL; the arguments, which can carry a
token). The filter runs in the thread that logs, inside a task, so its cost must be linear
in the record and small: every string is cut to a cap before it is scrubbed, and no pattern
can backtrack (the old URL-password pattern froze a worker for 49 s on a 60 KB task name).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

task_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "task_context", default=None
)

# Attributes every LogRecord has; anything else came in through ``extra``.
STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

# Caps keep a line readable and the filter's work bounded, whatever a caller passes.
MAX_FIELD_CHARS = 8 * 1024
MAX_MESSAGE_CHARS = 8 * 1024
# A chained traceback (psycopg under SQLAlchemy) is long and every frame of it is useful.
MAX_EXCEPTION_CHARS = 64 * 1024
MAX_DEPTH = 8
MAX_ITEMS = 256

REDACTED = "[redacted]"
OMITTED = "[omitted]"
# Celery passes its task lines' context as ``extra={"data": ...}``: the success line's
# result can be a signed URL, any line's kwargs can carry a token.
OMITTED_TASK_FIELDS = frozenset({"return_value", "args", "kwargs"})

# SigV4 query signatures and credentials of presigned URLs. Nothing follows the value
# in the pattern, so a failed attempt costs only the literal prefix.
SIGNATURE = re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s'\"]++", re.I)
# A compact JWT (a caller's ``auth`` token): ``eyJ…`` header, payload, signature. The
# look-behind lets a match start only at the head of a run, so each run is read once.
JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]*+\.[A-Za-z0-9_-]*+(?:\.[A-Za-z0-9_-]*+)?")
# A share link's token (``handlers.sharing``): its fixed head makes it findable, as a
# secret scanner finds a prefixed API key. Share tasks' kwargs are never logged; this
# blanks one that reaches a line some other way (a caller's own message, a traceback).
SHARE_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])vws_[A-Za-z0-9_-]++")

# The old URL-password pattern, ``([a-z][a-z0-9+.-]*://[^:/@\s'"]*:)[^@\s'"]+@``, tried a
# scheme at every letter of a long word and re-read the word each time: quadratic, 49 s on
# a 60 KB task name. The same language is now matched in steps that read each character a
# bounded number of times. USERINFO finds ``://user:``; its literal head lets the search
# skip to each ``://`` at C speed, and the look-behinds, placed after that head, judge the
# scheme where one character can: a letter before ``://`` is a scheme, anything but a
# digit, ``+ . -`` is not, and only a run of those (``s3://``) is left to
# ``_scheme_has_letter``.
USERINFO = re.compile(r"://(?:(?<=[a-z]://)|(?<=[0-9+.-]://)(?P<unsure>))[^:/@\s'\"]*+:", re.I)
PASSWORD_END = re.compile(r"[@\s'\"]")
SCHEME_LETTER = re.compile(r"[a-z]", re.I)  # IGNORECASE adds the letters the old one did
SCHEME_NON_LETTERS = frozenset("0123456789+.-")


def _scheme_has_letter(text: str, end: int) -> bool:
    """Whether the scheme characters just before ``end`` hold a letter, where a scheme starts.

    Runs before different ``://`` never overlap, so all these walks together read each
    character at most once.
    """
    index = end - 1
    while index >= 0 and text[index] in SCHEME_NON_LETTERS:
        index -= 1
    return index >= 0 and SCHEME_LETTER.match(text, index) is not None


def _redact_url_passwords(text: str, cut: bool) -> str:
    """Blank ``scheme://user:PASSWORD@`` in one left-to-right pass.

    A password runs to the first ``@``, whitespace or quote. Any other ``scheme://user:``
    before that character would end at it too, so once one candidate is judged the search
    resumes after it, never inside it: that skip keeps many URLs in one long run linear.
    ``cut`` says the text was truncated: a run that reaches the end may be a password whose
    ``@`` was cut off, and is blanked rather than shown.
    """
    pieces: list[str] = []
    copied = 0
    match = USERINFO.search(text)
    while match is not None:
        start = match.end()
        if match.group("unsure") is not None and not _scheme_has_letter(text, match.start()):
            # Not a URL; its user's colon may still open the next ``://``.
            match = USERINFO.search(text, start - 1)
            continue
        found = PASSWORD_END.search(text, start)
        if found is None:
            if cut and start < len(text):
                pieces += (text[copied:start], REDACTED)
                copied = len(text)
            break
        stop = found.start()
        if stop > start and text[stop] == "@":
            pieces += (text[copied:start], REDACTED)
            copied = stop
        match = USERINFO.search(text, stop + 1)
    if not pieces:
        return text
    pieces.append(text[copied:])
    return "".join(pieces)


def _as_text(value: object) -> str:
    """``str(value)``, except that a broken ``__str__`` must not cost the log line."""
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _omit_task_fields(context: Mapping[str, Any]) -> dict[str, Any]:
    """A copy, so that the dict Celery goes on using keeps its result."""
    return {k: OMITTED if k in OMITTED_TASK_FIELDS else v for k, v in context.items()}


def _unchanged(text: str) -> str:
    return text


def _walk(value: object, text: Callable[[str], str], depth: int = 0) -> Any:
    """A JSON-native copy of ``value`` with ``text`` applied to every string in it.

    Copies rather than edits: Celery logs the same dict it goes on using. Anything JSON has
    no type for becomes its ``str`` here, so that string is scrubbed like any other.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return text(value)
    if depth < MAX_DEPTH:
        # Over the cap, the marker takes the last slot: a second walk (the formatter's,
        # after the filter's) then finds nothing left to cut.
        if isinstance(value, dict):
            copy: dict[str, Any] = {}
            for index, (key, item) in enumerate(value.items()):
                if index == MAX_ITEMS - 1 and len(value) > MAX_ITEMS:
                    copy["…"] = f"[{len(value) - index} more keys]"
                    break
                name = key if isinstance(key, str) else _as_text(key)
                copy[text(name)] = _walk(item, text, depth + 1)
            return copy
        if isinstance(value, list | tuple):
            if len(value) <= MAX_ITEMS:
                return [_walk(item, text, depth + 1) for item in value]
            kept = [_walk(item, text, depth + 1) for item in value[: MAX_ITEMS - 1]]
            return [*kept, f"…[{len(value) - len(kept)} more items]"]
    return text(_as_text(value))


class Redactor(logging.Filter):
    """Scrubs every record before any formatter sees it, in place, and never rejects one."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        # Shorter strings would match ordinary words and blank half a line.
        self.secrets = [s for s in (secrets or []) if s and len(s) >= 6]

    def scrub(self, text: str) -> str:
        """Every redaction over the whole of ``text``, in time linear in its length."""
        return self._scrub(text, cut=False)

    def redact(self, text: str, limit: int = MAX_FIELD_CHARS) -> str:
        """``scrub``, after cutting ``text`` to ``limit`` so that one field costs a bounded time."""
        if len(text) <= limit:
            return self._scrub(text, cut=False)
        return self._scrub(text[:limit], cut=True) + f"…[truncated {len(text) - limit} chars]"

    def _scrub(self, text: str, cut: bool) -> str:
        text = SIGNATURE.sub(r"\1" + REDACTED, text)
        text = JWT.sub(REDACTED, text)
        text = SHARE_TOKEN.sub(REDACTED, text)
        text = _redact_url_passwords(text, cut)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
            if cut:
                # The cut may have fallen inside the secret: its head must not show either.
                for size in range(min(len(secret) - 1, len(text)), 0, -1):
                    if text.endswith(secret[:size]):
                        text = text[:-size] + REDACTED
                        break
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping) and not OMITTED_TASK_FIELDS.isdisjoint(record.args):
            # Celery formats its task lines from the same context it passes as ``data``:
            # should its success format ever print the result again, "[omitted]" is printed.
            record.args = _omit_task_fields(record.args)
        try:
            message = record.getMessage()
        except Exception:
            # Arguments that do not fit the format. A filter that raises fails the caller
            # (a task) over a log line; the bare format still says where it came from.
            message = _as_text(record.msg)
        record.msg, record.args = self.redact(message, MAX_MESSAGE_CHARS), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text, MAX_EXCEPTION_CHARS)
        for key, value in list(vars(record).items()):
            if key in STANDARD_ATTRS:
                continue
            if key == "data" and isinstance(value, Mapping):
                value = _omit_task_fields(value)
            setattr(record, key, _walk(value, self.redact))
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
                entry[key] = _walk(value, _unchanged)
        if record.exc_text or record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """For people at a terminal: the event, then key=value extras, nested ones as JSON."""

    @staticmethod
    def _value(value: object) -> str:
        if isinstance(value, dict | list | tuple):
            return json.dumps(
                _walk(value, _unchanged), ensure_ascii=False, separators=(",", ":"), default=str
            )
        return _as_text(value)

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{key}={self._value(value)}"
            for key, value in vars(record).items()
            if key not in STANDARD_ATTRS
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


def resolve_format(configured: str | None, stream: Any = None) -> str:
    """The configured format, else ``text`` for a person at a terminal and ``json`` otherwise.

    A terminal means someone is reading; a file, a pipe or a container's log driver means a
    machine that wants one object per line. A stream that cannot tell (no ``isatty``,
    closed, a proxy that raises) counts as a machine: JSON is never wrong, only less
    pleasant. ``stream`` defaults to the ``sys.stderr`` of the call, not of the import.
    """
    if configured:
        return configured
    target = sys.stderr if stream is None else stream
    try:
        return "text" if target.isatty() else "json"
    except Exception:
        return "json"


def configure(
    level: str = "INFO",
    fmt: str | None = None,
    secrets: list[str] | None = None,
    task_lines: bool = False,
) -> None:
    """Route every logger, Celery's included, through one redacting handler.

    ``fmt`` None (``LOG_FORMAT`` unset) lets the handler's stream decide. ``task_lines``
    (``LOG_TASK_LINES``) keeps Celery's per-message success line at INFO; otherwise
    only what goes wrong is logged per message (failures stay at ERROR).
    """
    stream = sys.stderr
    handler = logging.StreamHandler(stream)
    json_lines = resolve_format(fmt, stream) == "json"
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
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
    # Celery asks once, at start-up, whether INFO is on for this logger: off, the success
    # record is not even built.
    logging.getLogger("celery.app.trace").setLevel(
        logging.NOTSET if task_lines else logging.WARNING
    )
    quiet_celery_success_line()


def quiet_celery_success_line() -> None:
    """Celery logs every task's return value on success; ours can hold a signed URL."""
    from celery.app import trace

    trace.LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"
