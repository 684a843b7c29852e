"""Log lines: structured, redacted, and cheap to redact whatever a caller hands the logger.

The timing tests guard against catastrophic backtracking (a 60 KB task name once froze a
worker for 49 s in the URL-password pattern); their bound is generous, not a benchmark.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import string
import time

import pytest
from celery import Celery
from celery.app import trace

from worker import logs

SECRET = "videoworker-secret"
SIGNATURE = "4f0c1d2e3b4a59687766554433221100ffeeddccbbaa99887766554433221100"
SIGNED_URL = (
    "https://videos.s3.example.com/mall-1/pin-7/2024/clip.mp4"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20240101%2Fus-east-1"
    f"&X-Amz-Date=20240101T000000Z&X-Amz-Expires=900&X-Amz-Signature={SIGNATURE}"
)

# The patterns this module used before the linear rewrite: the reference for what is
# redacted, run only on inputs small enough for their backtracking not to matter.
OLD_SIGNATURE = re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s'\"]+", re.I)
OLD_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s'\"]*:)[^@\s'\"]+@", re.I)


def old_scrub(text: str, secrets: list[str]) -> str:
    text = OLD_SIGNATURE.sub(r"\1[redacted]", text)
    text = OLD_URL_PASSWORD.sub(r"\1[redacted]@", text)
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return text


def json_line(record: logging.LogRecord, secrets: list[str] | None = None) -> str:
    assert logs.Redactor(secrets or [SECRET]).filter(record)
    return logs.JsonFormatter().format(record)


def make_record(msg: object = "video.signed", args: object = None, **extra: object):
    record = logging.LogRecord("worker.test", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


@pytest.fixture
def captured_celery_trace(monkeypatch):
    """Records from Celery's own trace logger, with the success format ``configure`` sets."""
    monkeypatch.setattr(trace, "LOG_SUCCESS", trace.LOG_SUCCESS)  # restored afterwards
    logs.quiet_celery_success_line()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("celery.app.trace")
    previous_level, previous_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate


def test_celery_success_line_carries_its_fields_as_json_without_the_result(
    captured_celery_trace,
):
    app = Celery("logs-test", set_as_current=False)

    @app.task(name="videos.sign_url")
    def sign_url(video_id: str, token: str) -> dict:
        return {"ok": True, "data": {"url": SIGNED_URL}}

    result = sign_url.apply(kwargs={"video_id": "v-1", "token": "bearer-token-123456"})
    assert result.get()["data"]["url"] == SIGNED_URL
    [record] = [r for r in captured_celery_trace if "succeeded" in r.msg]
    assert record.data["return_value"]  # Celery did attach the result: this is the real shape

    line = json_line(record)
    entry = json.loads(line)

    assert isinstance(entry["data"], dict)
    assert entry["data"]["id"] == result.id
    assert entry["data"]["name"] == "videos.sign_url"
    assert isinstance(entry["data"]["runtime"], float)
    assert entry["data"]["return_value"] == "[omitted]"
    assert entry["data"]["kwargs"] == "[omitted]"
    assert entry["data"]["args"] == "[omitted]"
    assert entry["event"].startswith(f"Task videos.sign_url[{result.id}] succeeded in ")
    for leaked in (SIGNATURE, SIGNED_URL, "videos.s3.example.com", "bearer-token-123456"):
        assert leaked not in line


# celery.app.trace.LOG_SUCCESS as Celery ships it, before ``configure`` quiets it.
CELERY_LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s"


def test_a_success_record_with_celerys_own_format_still_hides_the_result():
    # The msg/args/extra celery.app.trace.info() passes, with the format that prints the
    # result: should quiet_celery_success_line stop working, the filter still holds.
    context = {
        "id": "0b7e3c1a-0000-4000-8000-000000000001",
        "name": "videos.sign_url",
        "return_value": repr({"ok": True, "data": {"url": SIGNED_URL}}),
        "runtime": 0.0123,
        "args": "()",
        "kwargs": "{'video_id': 'v-1'}",
    }
    record = make_record(CELERY_LOG_SUCCESS, (context,), data=context)

    line = json_line(record)

    entry = json.loads(line)
    assert entry["event"].endswith("succeeded in 0.0123s: [omitted]")
    data = entry["data"]
    assert data["return_value"] == "[omitted]"
    assert data["runtime"] == 0.0123
    assert SIGNATURE not in line and "videos.s3.example.com" not in line
    assert context["return_value"].startswith("{'ok'")  # Celery's own dict is left alone


def test_celery_failure_line_omits_the_arguments_but_keeps_the_traceback(captured_celery_trace):
    app = Celery("logs-test", set_as_current=False)

    @app.task(name="videos.delete")
    def delete(token: str) -> None:
        raise RuntimeError(f"backend said no to redis://svc:hunter2hunter2@cache:6379/0 {SECRET}")

    delete.apply(kwargs={"token": "bearer-token-123456"})
    [record] = [r for r in captured_celery_trace if r.levelno == logging.ERROR]

    line = json_line(record)
    entry = json.loads(line)

    assert entry["data"]["kwargs"] == "[omitted]"
    assert "RuntimeError" in entry["exception"]
    assert "redis://svc:[redacted]@cache" in entry["exception"]
    for leaked in ("bearer-token-123456", "hunter2hunter2", SECRET):
        assert leaked not in line


def test_nested_extras_are_scrubbed_and_stay_nested():
    record = make_record(
        extra_items=[{"url": SIGNED_URL, "n": 3, "ok": None}, ("redis://:pw123@h:6379/0", 1.5)],
        context={"depth": {"secret": f"key={SECRET}", "keys": ["a", "b"]}},
    )

    line = json_line(record)
    entry = json.loads(line)

    first, second = entry["extra_items"]
    assert first["url"].endswith("X-Amz-Signature=[redacted]")
    assert first["n"] == 3 and first["ok"] is None
    assert second == ["redis://:[redacted]@h:6379/0", 1.5]
    assert entry["context"] == {"depth": {"secret": "key=[redacted]", "keys": ["a", "b"]}}
    assert SIGNATURE not in line and SECRET not in line and "pw123" not in line


def test_values_json_has_no_type_for_become_scrubbed_strings():
    class Opaque:
        def __str__(self) -> str:
            return f"opaque {SECRET}"

    class Broken:
        def __str__(self) -> str:
            raise ValueError("no")

    record = make_record(thing={"o": Opaque(), (1, 2): {3, 4}, "b": Broken()})

    entry = json.loads(json_line(record))

    assert entry["thing"] == {
        "o": "opaque [redacted]",
        "(1, 2)": "{3, 4}",
        "b": "<unprintable Broken>",
    }


def test_text_formatter_prints_nested_extras_as_compact_json():
    record = make_record("video.listed", data={"id": "t-1", "return_value": "x"}, count=2)
    assert logs.Redactor([SECRET]).filter(record)

    line = logs.TextFormatter().format(record)

    assert 'data={"id":"t-1","return_value":"[omitted]"}' in line
    assert "count=2" in line
    assert " video.listed  " in line


def test_dotted_event_and_task_context_stay_in_the_json_line():
    token = logs.task_context.set({"task_id": "abc123", "task": "videos.delete"})
    try:
        entry = json.loads(json_line(make_record("video.deleted", deleted=4)))
    finally:
        logs.task_context.reset(token)

    assert entry["event"] == "video.deleted"
    assert (entry["task_id"], entry["task"], entry["deleted"]) == ("abc123", "videos.delete", 4)
    assert entry["level"] == "info" and entry["logger"] == "worker.test"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amqp://guest:guest@127.0.0.1:5672//", "amqp://guest:[redacted]@127.0.0.1:5672//"),
        ("redis://:pw@host:6379/0", "redis://:[redacted]@host:6379/0"),
        ("postgresql+psycopg://u:p%40ss@h/db", "postgresql+psycopg://u:[redacted]@h/db"),
        (
            "broker 'rediss://app:s3cr:et@r:6380' down",
            "broker 'rediss://app:[redacted]@r:6380' down",
        ),
        ("s3://key:secret@bucket/x", "s3://key:[redacted]@bucket/x"),
        (
            f"GET {SIGNED_URL} 200",
            "GET "
            + SIGNED_URL.replace(SIGNATURE, "[redacted]").replace(
                "AKIAEXAMPLE%2F20240101%2Fus-east-1", "[redacted]"
            )
            + " 200",
        ),
        ("x-amz-security-token=FQoGZXIvYXdz&a=1", "x-amz-security-token=[redacted]&a=1"),
        (f"secret is {SECRET}!", "secret is [redacted]!"),
        # What must survive: no password, or not a URL.
        ("http://minio:9000/videos/key.mp4", "http://minio:9000/videos/key.mp4"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("mail me at a@b.c: ok", "mail me at a@b.c: ok"),
        ("1://u:p@h", "1://u:p@h"),
    ],
)
def test_passwords_signatures_and_secrets_are_redacted(text, expected):
    assert logs.Redactor([SECRET, "short"]).scrub(text) == expected


def test_secrets_shorter_than_six_characters_are_not_redacted():
    assert logs.Redactor(["abc12", ""]).scrub("abc12 stays") == "abc12 stays"


def test_scrub_redacts_exactly_what_the_old_patterns_did():
    rnd = random.Random(20240601)
    alphabet = ["://", ":", "@", "/", " ", "'", '"', "&", "a", "Z", "1", "+", ".", "-", "x"]
    alphabet += ["\u017f", "X-Amz-Signature=", "x-amz-credential=", SECRET, "redis", "%"]
    redactor = logs.Redactor([SECRET])
    for _ in range(5000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40)))
        assert redactor.scrub(text) == old_scrub(text, [SECRET]), text


def _random_url_soup(size: int) -> str:
    rnd = random.Random(7)
    alphabet = string.printable + "://" * 20 + ":" * 20 + "@" * 20
    return "".join(rnd.choices(alphabet, k=size))


def _unknown_task_line(size: int) -> str:
    # Celery's "Received unregistered task" error names the task verbatim: one long word.
    return f"Received unregistered task of type '{'a' * size}'.\nThe message has been ignored."


ADVERSARIAL = {
    "colons": lambda: "a://" + ":" * 1_000_000,
    "long-user": lambda: "x://" + "a" * 1_000_000 + ":",
    "signature-params": lambda: "X-Amz-Signature=" * 60_000,
    "random-printable": lambda: _random_url_soup(1_000_000),
    # Every candidate's password runs to the same far space: each must not rescan the run.
    "many-userinfos": lambda: "a://b:" * 170_000 + " done",
    # One candidate every few characters: a quadratic scan would need minutes even at
    # this size, while a linear one pays a fixed cost per candidate.
    "dense-passwords": lambda: "a://b:c@" * 25_000,
    "dense-non-urls": lambda: "1://:" * 40_000,
    "unknown-task-60k": lambda: _unknown_task_line(60_000),
    "hex-word-60k": lambda: "deadbeef" * 7_500,
}


@pytest.mark.parametrize("shape", sorted(ADVERSARIAL))
def test_scrub_takes_linear_time_on_adversarial_input(shape):
    text = ADVERSARIAL[shape]()
    redactor = logs.Redactor([SECRET])

    started = time.perf_counter()
    redactor.scrub(text)
    elapsed = time.perf_counter() - started

    assert elapsed < 0.5, f"{shape}: {elapsed:.2f}s for {len(text)} chars"


@pytest.mark.parametrize("shape", sorted(ADVERSARIAL))
def test_a_record_of_adversarial_input_is_filtered_quickly_and_capped(shape):
    text = ADVERSARIAL[shape]()
    record = make_record(text, None, blob=text, nested={"blob": [text]})
    record.exc_text = text

    started = time.perf_counter()
    line = json_line(record)
    elapsed = time.perf_counter() - started

    assert elapsed < 0.5, f"{shape}: {elapsed:.2f}s"
    entry = json.loads(line)
    # Redaction may lengthen what the cut kept ("c" becomes "[redacted]"), by a bounded factor.
    for value in (entry["event"], entry["blob"], entry["nested"]["blob"][0]):
        assert len(value) < 3 * logs.MAX_FIELD_CHARS
    assert len(entry["exception"]) < 3 * logs.MAX_EXCEPTION_CHARS
    if len(text) > logs.MAX_FIELD_CHARS:
        assert entry["blob"].endswith(f"…[truncated {len(text) - logs.MAX_FIELD_CHARS} chars]")


def test_a_cut_never_leaves_the_head_of_a_password_or_secret():
    redactor = logs.Redactor([SECRET])
    limit = 64
    password = redactor.redact("x" * 40 + "redis://user:hunter2hunter2@cache:6379/0", limit)
    secret = redactor.redact("y" * 55 + " " + SECRET + " tail", limit)

    assert "hunt" not in password and password.startswith("x" * 40 + "redis://user:[redacted]…")
    assert "videowo" not in secret and "[redacted]…[truncated" in secret


def test_many_items_and_deep_nesting_are_bounded():
    deep: object = SECRET
    for _ in range(logs.MAX_DEPTH + 5):
        deep = [deep]
    record = make_record(items=list(range(logs.MAX_ITEMS + 10)), deep=deep)

    entry = json.loads(json_line(record))

    assert len(entry["items"]) == logs.MAX_ITEMS
    assert entry["items"][-1] == "…[11 more items]"
    assert entry["items"][-2] == logs.MAX_ITEMS - 2
    assert SECRET not in json.dumps(entry["deep"])


def test_a_message_whose_arguments_do_not_fit_still_logs_and_does_not_raise():
    record = make_record("video %d of %s", ("x",))

    assert logs.Redactor([SECRET]).filter(record)
    assert record.getMessage() == "video %d of %s"


class FakeStream:
    def __init__(self, tty: object) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        if isinstance(self.tty, Exception):
            raise self.tty
        return bool(self.tty)


@pytest.mark.parametrize(
    ("configured", "stream", "expected"),
    [
        (None, FakeStream(True), "text"),
        (None, FakeStream(False), "json"),
        ("json", FakeStream(True), "json"),
        ("text", FakeStream(False), "text"),
        (None, object(), "json"),
        (None, FakeStream(ValueError("I/O operation on closed file")), "json"),
        (None, io.StringIO(), "json"),
    ],
)
def test_resolve_format_prefers_the_setting_then_asks_the_stream(configured, stream, expected):
    assert logs.resolve_format(configured, stream) == expected


def test_configure_with_no_format_picks_one_from_stderr(monkeypatch):
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    monkeypatch.setattr(trace, "LOG_SUCCESS", trace.LOG_SUCCESS)
    for name in (
        "botocore",
        "boto3",
        "urllib3",
        "s3transfer",
        "werkzeug",
        "celery.worker.strategy",
    ):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    try:
        monkeypatch.setattr("sys.stderr", FakeStream(True))
        logs.configure("INFO", None, [SECRET])
        assert isinstance(root.handlers[0].formatter, logs.TextFormatter)

        monkeypatch.setattr("sys.stderr", io.StringIO())
        logs.configure("INFO", None, [SECRET])
        assert isinstance(root.handlers[0].formatter, logs.JsonFormatter)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_celery_logs_no_line_per_task_at_info_unless_asked(monkeypatch):
    monkeypatch.setattr(trace, "LOG_SUCCESS", trace.LOG_SUCCESS)
    trace_logger = logging.getLogger("celery.app.trace")
    root = logging.getLogger()
    saved = (trace_logger.level, root.level, list(root.handlers))
    try:
        logs.configure("INFO", "json")
        assert not trace_logger.isEnabledFor(logging.INFO)
        assert trace_logger.isEnabledFor(logging.ERROR)  # failures are still logged
        logs.configure("INFO", "json", task_lines=True)
        assert trace_logger.isEnabledFor(logging.INFO)
    finally:
        trace_logger.setLevel(saved[0])
        root.setLevel(saved[1])
        root.handlers[:] = saved[2]


def test_a_share_token_is_blanked_wherever_it_appears():
    token = "vws_" + "Zq9-_" * 8 + "abc"
    redactor = logs.Redactor()

    for text in (token, f"resolve token={token} failed", f"['{token}']", f"x:{token}."):
        assert token not in redactor.scrub(text)
        assert token[4:] not in redactor.scrub(text)
    # Words that merely start like one are kept.
    assert redactor.scrub("prevws_abc and vws") == "prevws_abc and vws"
