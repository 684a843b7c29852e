"""``videoworker run``: start what is missing of the stack, migrate, then keep the
worker and beat (and Flower, when asked) running until Ctrl-C or one of them exits.

Each child runs in a session of its own, so the terminal's Ctrl-C reaches this process
only: the children then get SIGTERM, Celery's warm shutdown, and running tasks finish.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from worker.settings import get_settings

POLL_SECONDS = 0.2
# A warm shutdown lets running tasks finish; past this the child is killed.
STOP_TIMEOUT_SECONDS = 60


def run(args: argparse.Namespace, home: Path) -> int:
    """Start what is missing of the stack under ``home``, migrate, then supervise."""
    from worker.dev.embedded import EmbeddedStack
    from worker.ops.preflight import REDIS_VARS

    stack = EmbeddedStack.plan(
        home,
        postgres="DATABASE_URL" not in os.environ,
        redis=not any(name in os.environ for name in REDIS_VARS),
        s3="S3_ENDPOINT_URL" not in os.environ,
        bucket=os.environ.get("S3_BUCKET", "videos"),
    )
    embedded = [name for name in ("postgres", "redis", "s3") if getattr(stack, name)]
    env_file = home / "stack.env"
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    # From here a Ctrl-C only asks to stop: whatever has started stops in order below,
    # the worker and beat first, the services they use last.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if embedded:
            print(f"videoworker: starting embedded {', '.join(embedded)} under {home}/")
            from worker.ops.preflight import moved_ports

            for line in moved_ports(stack):
                print(line)
            os.environ.update(stack.start())
            stack.write_env_file(env_file)
        get_settings.cache_clear()
        if stopping:
            return 0
        from worker.adapters.postgres.migrate import upgrade

        upgrade(get_settings().direct_database_url)
        if stopping:
            return 0
        _start_children(args, children)
        settings = get_settings()
        print(
            "videoworker: ready (worker"
            + ("" if args.no_beat else " and beat")
            + f"); broker {redact(settings.celery_broker_url)}"
            + (f"; embedded services listed in {env_file}" if embedded else "")
            + "; Ctrl-C stops everything",
            flush=True,
        )
        while not stopping:
            if any(child.poll() is not None for child in children):
                print("videoworker: a child process exited; stopping", file=sys.stderr)
                return 1
            time.sleep(POLL_SECONDS)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop_children(children)
        if embedded:
            stack.stop()
            env_file.unlink(missing_ok=True)
        print("videoworker: stopped", flush=True)


def _start_children(args: argparse.Namespace, children: list[subprocess.Popen[bytes]]) -> None:
    """Each child joins ``children`` as it starts, so a failure later still stops it."""
    celery = [sys.executable, "-m", "celery", "-A", "worker"]
    worker_cmd = [*celery, "worker", "--loglevel", args.loglevel, "-Q", "videos,videos.maintenance"]
    if args.concurrency:
        worker_cmd += ["--concurrency", str(args.concurrency)]
    children.append(subprocess.Popen(worker_cmd, start_new_session=True))
    if not args.no_beat:
        beat_cmd = [*celery, "beat", "--loglevel", args.loglevel]
        children.append(subprocess.Popen(beat_cmd, start_new_session=True))
    if args.flower:
        from worker.ops import flower

        flower_cmd, flower_port = flower.command(celery, args.loglevel)
        children.append(subprocess.Popen(flower_cmd, start_new_session=True))
        print(f"videoworker: Flower at {flower.url(flower_port)}", flush=True)


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)  # warm shutdown: running tasks finish
    for child in children:
        try:
            child.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def redact(url: str) -> str:
    """The URL with its password hidden, fit to print."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy can parse; show the scheme only
        return url.split("://", 1)[0] + "://…"
