"""What a newcomer met with the command line, each now one line or a clean exit.

Every test runs the real ``videoworker`` in a process of its own, with the session's
service URLs left out (``tests.terminal.environment``) and a stack home of its own, so
that the machine's own PostgreSQL and Redis on the default ports (the "unrelated
services" case) are never what answers. Services that answer are sockets of the
test's own: one that accepts and never speaks stands for a server mid-request.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from schemas.contract import TASK_NAMES
from tests.support import ROOT
from tests.terminal import command, environment, into_closed_pipe
from worker.dev.embedded import free_port
from worker.ops.cli import build_parser
from worker.runtime.consumer import GuardedConsumer
from worker.runtime.vetting import Refusal

MALL = "22ba739b-a812-5f3a-9e37-86808016bdaa"


def cli(
    *args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own module, arguments as a list
        command(*args),
        cwd=cwd,
        env=environment(env),
        capture_output=True,
        encoding="utf-8",
        timeout=timeout,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    return lines[0]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A stack home with no stack in it."""
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A folder outside the checkout, as /tmp was for the newcomer."""
    (tmp_path / "elsewhere").mkdir()
    return tmp_path / "elsewhere"


class SilentServer:
    """Accepts connections and never answers: a server busy or wedged mid-request."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port = self.socket.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.socket.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


# 1. No guessing: with nothing named, one line, at once, whatever listens on the defaults.


@pytest.mark.parametrize(
    ("args", "missing"),
    [
        (["bulk-delete", "--q", "x", "--dry-run"], "CELERY_BROKER_URL"),
        (["call", "videos.stats"], "CELERY_BROKER_URL"),
        (["demo"], "DATABASE_URL, CELERY_BROKER_URL, S3_ENDPOINT_URL"),
        (["reconcile"], "DATABASE_URL, S3_ENDPOINT_URL"),
        (["health"], "DATABASE_URL, CELERY_BROKER_URL, S3_ENDPOINT_URL"),
        (["figures", "check"], "DATABASE_URL"),
        (["events"], "CELERY_BROKER_URL"),
    ],
)
def test_with_no_stack_a_command_says_so_in_one_line(args, missing, home, elsewhere):
    started = time.monotonic()
    result = cli(*args, env={"VIDEOWORKER_HOME": str(home)}, cwd=elsewhere)

    assert time.monotonic() - started < 5
    assert result.returncode == 1
    assert one_line(result) == (
        f"videoworker: no stack found (no {home}/stack.env): start one with `make run`, "
        f"or set {missing}"
    )


def test_the_stack_is_looked_for_in_the_checkout_whatever_the_folder(elsewhere):
    if (ROOT / ".videoworker" / "stack.env").exists():
        pytest.skip("a `make run` is up in this checkout: its stack would answer")

    result = cli("call", "videos.stats", env={}, cwd=elsewhere)

    assert result.returncode == 1
    assert f"(no {ROOT}/.videoworker/stack.env)" in one_line(result)


def test_a_stack_file_is_found_from_another_folder(home, elsewhere):
    port = free_port()  # a stack that stopped without removing its file (killed)
    (home / "stack.env").write_text(
        f"CELERY_BROKER_URL=redis://127.0.0.1:{port}/0\n"
        f"CELERY_RESULT_BACKEND=redis://127.0.0.1:{port}/1\n"
    )

    result = cli("call", "videos.stats", env={"VIDEOWORKER_HOME": str(home)}, cwd=elsewhere)

    assert result.returncode == 2
    assert one_line(result) == (
        f"videoworker: Redis at 127.0.0.1:{port} does not answer: the embedded stack is not "
        "running; start `make run` in another terminal and try again"
    )


def test_config_shows_each_setting_and_its_source_without_secrets(home, elsewhere):
    (home / "stack.env").write_text(
        "DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:55432/videoworker\n"
    )
    env = {
        "VIDEOWORKER_HOME": str(home),
        "CELERY_BROKER_URL": "redis://:hunter2@127.0.0.1:6390/0",
        "AWS_SECRET_ACCESS_KEY": "very-secret",
    }

    result = cli("config", env=env, cwd=elsewhere)

    assert result.returncode == 0, result.stderr
    lines = {line.split("=", 1)[0]: line for line in result.stdout.splitlines()}
    assert lines["DATABASE_URL"].endswith(f"# {home}/stack.env")
    assert "127.0.0.1:55432/videoworker" in lines["DATABASE_URL"]
    assert lines["CELERY_BROKER_URL"].endswith("# environment")
    assert lines["RETENTION_DAYS"].endswith("# default")
    assert "hunter2" not in result.stdout and "very-secret" not in result.stdout
    assert "redis://:***@127.0.0.1:6390/0" in lines["CELERY_BROKER_URL"]


# 3. A bad number of days is one line with the range.


@pytest.mark.parametrize("days", ["0", "-5", "36501", "ten"])
def test_retention_days_out_of_range_is_one_short_line(days, home):
    result = cli("retention", "set", MALL, "--", days, env={"VIDEOWORKER_HOME": str(home)})

    assert result.returncode == 2
    assert len(result.stderr) < 400
    assert "1 to 36500" in result.stderr.strip().splitlines()[-1]
    assert "36499" not in result.stderr


def test_retention_set_help_explains_days_and_the_option():
    text = build_parser()._subparsers._group_actions[0].choices["retention"]
    set_help = text._subparsers._group_actions[0].choices["set"].format_help()

    assert "days a video is kept, 1 to 36500" in set_help
    assert "the same as DAYS, as an option" in set_help


# 4. A reader that left: no traceback, the shell's exit code for it.


@pytest.mark.parametrize("args", [["config"], ["--help"], ["call", "--help"]])
def test_a_closed_pipe_ends_quietly(args, home):
    result = into_closed_pipe(*args, env={"VIDEOWORKER_HOME": str(home)})

    assert result.returncode in (0, 141)
    assert result.stderr == ""


# 5. Ctrl-C mid-command: one line, exit 130.


# As from a terminal: a suite started in the background (`cmd &`) ignores SIGINT, and a
# child inherits that (Python then never raises KeyboardInterrupt); this puts SIGINT back
# to its default, then runs the command in its place.
RESTORE_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def interruptible(argv: list[str]) -> list[str]:
    return [sys.executable, "-c", RESTORE_SIGINT, *argv]


@pytest.mark.parametrize(
    ("args", "services"),
    [
        (["call", "videos.stats"], ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")),
        (["bulk-delete", "--q", "x", "--dry-run"], ("CELERY_BROKER_URL",)),
        (["demo"], ("DATABASE_URL", "CELERY_BROKER_URL", "S3_ENDPOINT_URL")),
        (["reconcile"], ("DATABASE_URL", "S3_ENDPOINT_URL")),
    ],
)
def test_ctrl_c_mid_command_is_one_line_and_exit_130(args, services, silent, home):
    urls = {
        "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{silent.port}/videoworker",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{silent.port}/0",
        "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{silent.port}/1",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{silent.port}",
    }
    env = {"VIDEOWORKER_HOME": str(home), **{name: urls[name] for name in services}}
    process = subprocess.Popen(  # noqa: S603 - our own module, arguments as a list
        interruptible(command(*args)),
        cwd=ROOT,
        env=environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        start_new_session=True,
    )
    try:
        # Past the preflight's probe (one connection, closed at once): now mid-request.
        deadline = time.monotonic() + 30
        while len(silent.accepted) < 2 and process.poll() is None:
            assert time.monotonic() < deadline, "the command never reached the server"
            time.sleep(0.05)
        time.sleep(0.3)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()

    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"videoworker {args[0]}: interrupted"
    assert process.returncode == 130


# 6. A service down mid-way through a command that reports: one line.


def test_figures_check_with_postgres_down_is_one_line(home):
    port = free_port()
    env = {
        "VIDEOWORKER_HOME": str(home),
        "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{port}/videoworker",
    }

    result = cli("figures", "check", env=env)

    assert result.returncode == 2
    assert one_line(result) == (
        f"videoworker: PostgreSQL at 127.0.0.1:{port} does not answer; start it or unset "
        "DATABASE_URL to use the embedded stack"
    )


def test_health_piped_is_one_json_line(home):
    port = free_port()
    env = {
        "VIDEOWORKER_HOME": str(home),
        "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{port}/videoworker",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }

    result = cli("health", env=env)

    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 1
    checks = json.loads(result.stdout)
    assert set(checks) == {"broker", "result_backend", "cache", "postgres", "s3", "stores"}
    assert not any(check["ok"] for check in checks.values())


# 7. Options anywhere.


def test_call_takes_options_between_its_kwargs(home):
    port = free_port()
    env = {"VIDEOWORKER_HOME": str(home), "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0"}

    result = cli("call", "videos.list", "--timeout", "5", "page_size=1", env=env)

    # Parsed: it got as far as the broker, which does not answer.
    assert result.returncode == 2
    assert f"Redis at 127.0.0.1:{port} does not answer" in one_line(result)
    parsed = build_parser().parse_args(["call", "videos.list", "--timeout", "5", "page_size=1"])
    assert (parsed.task, parsed.kwargs, parsed.timeout) == ("videos.list", ["page_size=1"], 5.0)


# 9. Help a person can read.


def test_top_level_help_lists_every_command_without_markup(home):
    result = cli("--help", env={"VIDEOWORKER_HOME": str(home)})

    assert result.returncode == 0
    assert "``" not in result.stdout
    commands = build_parser()._subparsers._group_actions[0].choices
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ")]
    assert set(commands) <= set(listed), result.stdout


def test_call_help_lists_the_tasks_and_the_timeout_unit(home):
    result = cli("call", "--help", env={"VIDEOWORKER_HOME": str(home)})

    assert result.returncode == 0
    for name in TASK_NAMES:
        assert f"  {name} " in result.stdout
    assert "--timeout SECONDS" in result.stdout
    assert "seconds to wait for the answer" in result.stdout


def test_a_mistyped_task_gets_a_suggestion_before_anything_is_sent(home):
    result = cli("call", "videos.lst", env={"VIDEOWORKER_HOME": str(home)})

    assert result.returncode == 2
    assert one_line(result) == (
        "videoworker call: no task 'videos.lst'; did you mean videos.list? "
        "(`videoworker call --help` lists them)"
    )


def test_the_worker_logs_an_unknown_task_as_a_warning(caplog):
    stored = []
    consumer = SimpleNamespace(
        app=SimpleNamespace(backend=SimpleNamespace(store_result=lambda *a: stored.append(a))),
        connection_errors=(),
    )
    message = SimpleNamespace(
        headers={"id": "t-1", "task": "videos.lst"},
        body=b"[]",
        content_type="application/json",
        ack_log_error=lambda *a: None,
    )

    with caplog.at_level(logging.INFO, logger="videoworker"):
        GuardedConsumer.refuse(consumer, message, Refusal("Unknown task 'videos.lst'"))
        GuardedConsumer.refuse(consumer, message, Refusal("Malformed message: ValueError"))

    levels = [r.levelno for r in caplog.records if r.getMessage().startswith("message.rejected")]
    assert levels == [logging.WARNING, logging.ERROR]
    assert len(stored) == 2


# 10. The install says nothing about its own metadata.


def test_the_license_is_an_spdx_string_setuptools_takes_without_a_warning():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())

    assert project["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in project["build-system"]["requires"]
