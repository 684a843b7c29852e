"""The errors a newcomer meets first, each one line saying what to do.

Each runs the real command in its own process with an environment of its own: the
session's service URLs (which other suites export) are left out, so that a test
about a URL that does not answer is never answered by the session's servers.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT
from worker.dev.embedded import EmbeddedError, EmbeddedPostgres, free_port
from worker.ops import preflight
from worker.settings import load_settings

SERVICE_VARS = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "REDIS_URL",
    "S3_ENDPOINT_URL",
    "S3_PUBLIC_ENDPOINT_URL",
    "S3_BUCKET",
)


def cli(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    return subprocess.run(  # noqa: S603 - our own module, arguments as a list
        [sys.executable, "-m", "worker.ops.cli", *args],
        cwd=cwd,
        env={**base, **env, "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        encoding="utf-8",
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (chosen by the kernel, then released)."""
    return free_port()


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback port that accepts connections: a service that answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.mark.parametrize("command", [["run"], ["demo"], ["migrate"], ["reconcile"]])
def test_a_database_url_that_does_not_answer_is_one_line(command, closed_port, listening):
    env = {
        "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{closed_port}/videoworker",
        # The other services answer, so the database is the one thing wrong.
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{listening}/0",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{listening}",
    }
    result = cli(*command, env=env)

    assert result.returncode == 2
    assert one_line(result) == (
        f"videoworker: PostgreSQL at 127.0.0.1:{closed_port} does not answer; start it or "
        "unset DATABASE_URL to use the embedded stack"
    )


def test_a_broker_that_does_not_answer_is_one_line_for_call(closed_port):
    url = f"redis://127.0.0.1:{closed_port}"
    env = {"CELERY_BROKER_URL": f"{url}/0", "CELERY_RESULT_BACKEND": f"{url}/1"}

    result = cli("call", "videos.stats", env=env)

    assert result.returncode == 2
    assert one_line(result) == (
        f"videoworker: Redis at 127.0.0.1:{closed_port} does not answer; start it or unset "
        "CELERY_BROKER_URL and CELERY_RESULT_BACKEND to use the embedded stack"
    )


def test_a_rabbitmq_broker_that_does_not_answer_is_named(closed_port, listening):
    env = {
        "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{closed_port}//",
        "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{listening}/1",
    }

    result = cli("call", "videos.stats", env=env)

    assert result.returncode == 2
    assert one_line(result).startswith(
        f"videoworker: RabbitMQ at 127.0.0.1:{closed_port} does not answer; start it or unset "
        "CELERY_BROKER_URL"
    )


def test_an_s3_endpoint_that_does_not_answer_is_one_line(closed_port, listening):
    env = {
        "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{listening}/videoworker",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{listening}/0",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{closed_port}",
    }

    result = cli("demo", env=env)

    assert result.returncode == 2
    assert one_line(result) == (
        f"videoworker: S3 at 127.0.0.1:{closed_port} does not answer; start it or unset "
        "S3_ENDPOINT_URL to use the embedded stack"
    )


def test_a_redis_for_events_that_does_not_answer_is_one_line(closed_port):
    result = cli("events", env={"REDIS_URL": f"redis://127.0.0.1:{closed_port}/2"})

    assert result.returncode == 2
    assert f"Redis at 127.0.0.1:{closed_port} does not answer" in one_line(result)


def test_a_stale_stack_file_says_to_start_make_run(closed_port, monkeypatch):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port}/videoworker"
    monkeypatch.setattr(preflight, "stack_env_values", lambda: {"DATABASE_URL": url})

    with pytest.raises(preflight.Unready) as raised:
        preflight.require(load_settings(database_url=url), ["postgres"], environ={})

    assert str(raised.value) == (
        f"PostgreSQL at 127.0.0.1:{closed_port} does not answer: the embedded stack is not "
        "running; start `make run` in another terminal and try again"
    )


def test_a_default_url_is_not_tried_but_said_what_to_set(closed_port, monkeypatch):
    # Whatever listens on a default port may be someone else's server: never guessed.
    monkeypatch.setattr(preflight, "stack_env_values", dict)
    settings = load_settings(celery_broker_url=f"redis://127.0.0.1:{closed_port}/0")

    with pytest.raises(preflight.NoStack) as raised:
        preflight.require(settings, ["broker"], environ={})

    assert "no stack found" in str(raised.value)
    assert "start one with `make run`, or set CELERY_BROKER_URL" in str(raised.value)


def test_one_address_behind_several_variables_is_checked_once(listening, closed_port):
    url = f"redis://127.0.0.1:{closed_port}"
    settings = load_settings(
        celery_broker_url=f"{url}/0", celery_result_backend=f"{url}/1", redis_url=f"{url}/2"
    )

    found = preflight.endpoints(settings, ["broker", "backend", "cache"])

    assert [(e.address, e.variables) for e in found] == [
        (f"127.0.0.1:{closed_port}", ["CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_URL"])
    ]


def test_a_second_run_on_the_same_embedded_home_is_refused(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with (home / "run.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242")
        held.flush()

        result = cli("run", env={"VIDEOWORKER_HOME": str(home)})

    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(f"videoworker: the embedded stack under {home.resolve()}/")
    assert "(pid 4242, `make run` in another terminal)" in line
    # Nothing was started: no server directory was made.
    assert sorted(p.name for p in home.iterdir()) == ["run.lock"]


def test_flower_asked_for_but_not_installed_says_how_to_install(tmp_path, listening):
    # A ``flower`` package that cannot be imported stands for one not installed.
    (tmp_path / "flower").mkdir()
    (tmp_path / "flower" / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {
        "PYTHONPATH": str(tmp_path),
        "VIDEOWORKER_HOME": str(tmp_path / "home"),
    }

    result = cli("run", "--flower", env=env)

    assert result.returncode == 2
    assert one_line(result) == (
        "videoworker: --flower needs Flower, which is not installed; pip install -e '.[production]'"
    )


def test_a_port_taken_while_postgres_starts_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = EmbeddedPostgres(tmp_path / "pg", port, durable=False)
        with pytest.raises(EmbeddedError) as raised:
            server.start()

    line = preflight.describe_embedded_failure(str(raised.value), tmp_path)

    assert line == (
        f"another program took port {port} while the embedded PostgreSQL started; "
        "run `make run` again (it picks a free port)"
    )


def fake_python(tmp_path: Path, version: str) -> Path:
    script = tmp_path / "python3"
    script.write_text(
        f'#!/bin/sh\ncase "$1" in -V) echo "Python {version}";; '
        '-c) exec python3 -c "import sys; sys.exit(1)";; *) exit 1;; esac\n'
    )
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("python", ["old", "missing"])
def test_make_stops_without_python_3_11(tmp_path, python):
    given = str(fake_python(tmp_path, "3.9.18")) if python == "old" else ""
    venv = tmp_path / "venv"

    result = subprocess.run(  # noqa: S603 - make, arguments as a list
        ["make", "-s", "-C", str(ROOT), "install", f"PYTHON={given}", f"VENV={venv}"],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
    )

    assert result.returncode != 0
    first = result.stderr.strip().splitlines()[0]
    shown = f"{given} is Python 3.9.18" if given else "no python3 was found"
    assert first == (
        f"make: videoworker needs Python 3.11 or newer; {shown}: install python3.11 "
        "(e.g. apt-get install python3.11) or run make PYTHON=/path/to/python3.11"
    )
    assert not venv.exists()
