"""The ``videoworker`` command as a person meets it: at a terminal (a pty), into a pipe
whose reader has gone, or stopped by Ctrl-C sent to its process group."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import CLI_MODULE, ROOT

# Every variable that names a service or the stack's home: a test names its own.
SERVICE_VARS = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "REDIS_URL",
    "S3_ENDPOINT_URL",
    "S3_PUBLIC_ENDPOINT_URL",
    "S3_BUCKET",
    "VIDEOWORKER_HOME",
)


def environment(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its services, with ``env`` over it."""
    base = {k: v for k, v in os.environ.items() if k.upper() not in SERVICE_VARS}
    return {**base, **env, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", CLI_MODULE, *args]


def into_closed_pipe(
    *args: str, env: Mapping[str, str], cwd: Path = ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe nobody reads any more, as ``videoworker … | head`` after
    head has exited; stderr captured."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(  # noqa: S603 - our own module, arguments as a list
            command(*args),
            cwd=cwd,
            env=environment(env),
            stdout=write_end,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            timeout=timeout,
        )
    finally:
        os.close(write_end)


@dataclass
class Terminal:
    """A command running at a pty, in a process group of its own as a shell starts it."""

    process: subprocess.Popen[bytes]
    fd: int
    output: bytearray = field(default_factory=bytearray)

    @classmethod
    def start(
        cls, *args: str, env: Mapping[str, str], cwd: Path = ROOT, argv: list[str] | None = None
    ) -> Terminal:
        primary, secondary = pty.openpty()
        process = subprocess.Popen(  # noqa: S603 - our own module, arguments as a list
            argv or command(*args),
            cwd=cwd,
            env={**environment(env), "TERM": "xterm", "COLUMNS": "120", "LINES": "40"},
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            start_new_session=True,
        )
        os.close(secondary)
        return cls(process, primary)

    def read(self, timeout: float) -> bool:
        """Read what comes within ``timeout`` seconds; False once the pty is closed."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], min(remaining, 0.1))
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            self.output += chunk
        return True

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def wait_for(self, marker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.text:
            if time.monotonic() > deadline or not self.read(0.2):
                raise AssertionError(f"no {marker!r} within {timeout:g}s:\n{self.text[-3000:]}")

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the whole foreground process group, as the terminal sends it."""
        os.killpg(self.process.pid, signal.SIGINT)

    def finish(self, timeout: float) -> int:
        """Read to the end and return the exit code; killed (and failed) past ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.read(0.2):
            pass
        try:
            code = self.process.wait(max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(
                f"still running after {timeout:g}s:\n{self.text[-3000:]}"
            ) from None
        self.read(0.2)
        os.close(self.fd)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        try:
            os.close(self.fd)
        except OSError:
            pass


def lines_after(text: str, mark: int) -> list[str]:
    """The non-empty lines written after offset ``mark``, escape sequences left in."""
    return [line for line in text[mark:].replace("\r", "\n").split("\n") if line.strip()]


_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b[()][A-Z0-9]|\x1b[=>]")


def screen(text: str) -> list[str]:
    """The lines a terminal shows once ``text`` is written: enough of VT100 (carriage
    return, cursor up, erase line) to tell a line left on screen from one cleared."""
    lines = [""]
    row, col = 0, 0
    position = 0
    for match in [*_CSI.finditer(text), None]:
        chunk = text[position : match.start() if match else len(text)]
        for char in chunk:
            if char == "\n":
                row += 1
                col = 0
                while len(lines) <= row:
                    lines.append("")
            elif char == "\r":
                col = 0
            elif char >= " ":
                line = lines[row].ljust(col)
                lines[row] = line[:col] + char + line[col + 1 :]
                col += 1
        if match is None:
            break
        position = match.end()
        argument, final = match.group(1) or "", match.group(2)
        if final == "A":
            row = max(row - int(argument or 1), 0)
        elif final == "K":
            lines[row] = lines[row][:col] if argument in ("", "0") else ""
        elif final == "G":
            col = max(int(argument or 1) - 1, 0)
    return [line.rstrip() for line in lines if line.strip()]
