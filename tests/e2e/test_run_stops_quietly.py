"""Ctrl-C on ``make run`` stops everything in order, quietly: the worker and beat first,
then the embedded services they were using, and no traceback on the way.

The terminal sends SIGINT to its whole foreground process group; the embedded servers
used to be in it and died first, under a worker and beat still talking to them. Each
round starts ``videoworker run`` at a pty on a stack home of its own and presses Ctrl-C
at a different moment of its start. ``RUN_STOP_ROUNDS`` sets how many rounds (3 here;
``make stop-check`` runs 10).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.terminal import Terminal, lines_after

pytestmark = pytest.mark.broker_independent

ROUNDS = int(os.environ.get("RUN_STOP_ROUNDS", "3"))
# When Ctrl-C comes: the worker ready, just after the supervisor's "ready" line (worker
# and beat still starting), or while the embedded services start.
MOMENTS = ("celery@", "videoworker: ready", "starting embedded")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def home() -> Iterator[Path]:
    """A fresh stack home outside pytest's own temporary root, which another pytest
    session starting meanwhile makes private again: run as root, the embedded
    PostgreSQL (its own user) would lose its way to its data directory."""
    base = Path(tempfile.mkdtemp(prefix="videoworker-run-"))
    yield base / "home"
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_ctrl_c_stops_run_in_order_and_quietly(round_, home: Path):
    moment = MOMENTS[round_ % len(MOMENTS)]
    run = Terminal.start("run", "--concurrency", "1", env={"VIDEOWORKER_HOME": str(home)})
    try:
        run.wait_for(moment, timeout=120)
        if moment == "celery@":
            run.wait_for(" ready.", timeout=60)
        ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", _stack_env(home))]
        mark = len(run.text)
        run.interrupt()
        code = run.finish(timeout=90)
    finally:
        run.close()

    after = [ANSI.sub("", line) for line in lines_after(run.text, mark)]
    assert "Traceback" not in run.text, run.text[-5000:]
    assert code == 0, run.text[-3000:]
    assert len(after) <= 5, "\n".join(after)
    assert after[-1] == "videoworker: stopped"
    assert not (home / "stack.env").exists()
    assert not [port for port in ports if answers(port)], "an embedded server outlived the run"


def _stack_env(home: Path) -> str:
    path = home / "stack.env"
    return path.read_text() if path.exists() else ""
