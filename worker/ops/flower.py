"""Flower beside ``videoworker run --flower``: the Celery monitor, on loopback only.

Flower ships no login by default, so it listens on 127.0.0.1: a developer's browser
reaches it, the network does not. It is one more supervised child of ``run``; the
``production`` extra installs it.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.dev.embedded import LOOPBACK, free_port

FLOWER_PORT = 5555


def installed() -> bool:
    try:
        import flower  # noqa: F401
    except ImportError:
        return False
    return True


def command(celery: Sequence[str], loglevel: str) -> tuple[list[str], int]:
    """The Flower command line and the port it will serve on (5555 when that is free)."""
    port = free_port(FLOWER_PORT)
    argv = [
        *celery,
        "flower",
        f"--port={port}",
        f"--address={LOOPBACK}",
        f"--logging={loglevel.lower()}",
    ]
    return argv, port


def url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"
