"""What every suite waits and runs with: a deadline-bound ``poll`` and the ``videoworker``
command in its own process.

One ``poll`` so that every wait has a deadline and fails as an assertion saying what it
waited for, never a bare sleep that hopes, and never a hand-written loop that forgets
the deadline or the final check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
CLI_MODULE = "worker.ops.cli"

T = TypeVar("T")


def poll(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "",
) -> T:
    """The first truthy value of ``predicate()``; an ``AssertionError`` once ``timeout``
    seconds have passed without one.

    ``message`` says what is awaited ("every message acknowledged"); a callable is
    evaluated only on failure, so it can describe the last state seen. The predicate is
    called once more at the deadline, so a slow sleep never costs the last chance. An
    exception from the predicate (an assertion that a process is still alive, say)
    ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            awaited = message() if callable(message) else message
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for "
                f"{awaited or getattr(predicate, '__qualname__', repr(predicate))}"
            )
        time.sleep(min(interval, remaining))


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    input: str | None = None,  # noqa: A002 - the name subprocess.run gives it
    check: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """``videoworker ARGS`` in its own process, run from the repository's root.

    ``env`` goes over this process's environment (the services a test started);
    output is decoded as UTF-8 whatever the locale. ``check``: the exit code it must end
    with, asserted with its output in the message.
    """
    result = subprocess.run(  # noqa: S603 - our own module, arguments as a list
        [sys.executable, "-m", CLI_MODULE, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {}), "PYTHONIOENCODING": "utf-8"},
        input=input,
        capture_output=True,
        encoding="utf-8",
        timeout=timeout,
    )
    if check is not None:
        assert result.returncode == check, (
            f"videoworker {' '.join(args)} exited {result.returncode}, not {check}\n"
            f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
        )
    return result
