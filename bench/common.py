"""Shared pieces of the request/reply, signing, stats, deletion and memory benches.

* ``Stack``: the embedded PostgreSQL, Redis and S3 (moto) on loopback, migrated, with
  the bucket created and this process's environment pointing at them; everything it
  started is stopped (and its directory removed) on exit, also on Ctrl-C.
* ``WorkerProcess``: a real ``celery worker`` subprocess for a given app, pool and
  configuration overrides, in its own session so that stopping it stops its pool.
  Overrides go through ``python -m bench.common`` (the launcher at the bottom), which
  imports the app, applies ``app.conf.update(overrides)`` (and optional logger levels)
  and runs ``worker_main``: the only way to try a setting on the real worker without
  editing ``celeryconfig`` or ``worker/logs.py``.
* ``summary``/``Table``/``run_label``: percentiles, the plain-text tables every bench
  prints, and the when-and-where label their titles carry.

Why medians and tails rather than means: the machine is shared (2 cores, other jobs),
so a single slow sample says little; every comparison is also made against a
baseline measured in the same run, in interleaved blocks where that is possible.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


# --- statistics and tables -------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float
    p95: float
    p99: float
    mean: float
    max: float


def summary(values: Sequence[float]) -> Summary:
    ordered = sorted(values)
    if not ordered:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    return Summary(
        n=len(ordered),
        p50=percentile(ordered, 50),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        mean=sum(ordered) / len(ordered),
        max=ordered[-1],
    )


def ratio(ours: float, baseline: float) -> str:
    if not baseline or math.isnan(ours) or math.isnan(baseline):
        return "-"
    return f"{ours / baseline:.2f}x"


def fmt(value: float, digits: int = 2) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


@dataclass
class Table:
    title: str
    headers: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append([c if isinstance(c, str) else fmt(c) for c in cells])

    def render(self) -> str:
        cells = [list(map(str, self.headers)), *[list(map(str, r)) for r in self.rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.headers))]
        lines = [self.title]

        def line(row: Sequence[str]) -> str:
            first = row[0].ljust(widths[0])
            rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
            return "  ".join([first, *rest]).rstrip()

        lines.append(line(cells[0]))
        lines.append("  ".join("-" * w for w in widths))
        lines.extend(line(row) for row in cells[1:])
        lines.extend(self.notes)
        return "\n".join(lines)

    def print(self) -> None:
        print(self.render() + "\n", flush=True)


def run_label(*conditions: str) -> str:
    """When this run measured and on how many cores, plus ``conditions`` ("loopback"), for
    a table's title: read from the clock and the machine now, so a pasted table says when
    and where it was measured, not when this file was last edited."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ran = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return ", ".join([f"run {ran}", f"{cores} cores", *conditions])


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the tables."""
    print(f"  {message}", file=sys.stderr, flush=True)


# --- the embedded stack ----------------------------------------------------------------


class Stack:
    """Embedded PostgreSQL + Redis + moto S3, migrated and exported to ``os.environ``."""

    def __init__(
        self, *, postgres: bool = True, redis: bool = True, s3: bool = True, bucket: str = "videos"
    ) -> None:
        self.want = {"postgres": postgres, "redis": redis, "s3": s3}
        self.bucket = bucket
        self.home: Path | None = None
        self.stack: Any = None
        self.env: dict[str, str] = {}
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> Stack:
        from worker.dev.embedded import EmbeddedStack

        self.home = Path(tempfile.mkdtemp(prefix="videoworker-bench-"))
        self.stack = EmbeddedStack.plan(
            self.home, **self.want, bucket=self.bucket, durable=False, fixed_ports=False
        )
        log(f"starting embedded {', '.join(k for k, v in self.want.items() if v)}")
        try:
            self.env = self.stack.start()
            self.env["S3_PUBLIC_ENDPOINT_URL"] = ""
            self._saved = {key: os.environ.get(key) for key in self.env}
            os.environ.update(self.env)
            from worker.settings import get_settings

            get_settings.cache_clear()
            if self.want["postgres"]:
                with contextlib.redirect_stdout(sys.stderr):
                    from worker.adapters.postgres.migrate import upgrade

                    upgrade(self.env["DATABASE_URL"])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stack is not None:
            log("stopping embedded services")
            self.stack.stop()
            self.stack = None
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved = {}
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    @property
    def broker_url(self) -> str:
        return self.env["CELERY_BROKER_URL"]

    @property
    def backend_url(self) -> str:
        return self.env["CELERY_RESULT_BACKEND"]

    def log_path(self, name: str) -> Path:
        assert self.home is not None
        return self.home / f"{name}.log"


def pick_videos(database_url: str, limit: int = 500) -> list[str]:
    """Ids of live (not trashed) videos that have a proxy and a thumbnail (every target
    signs)."""
    import psycopg

    from bench.dataset import conninfo

    with psycopg.connect(conninfo(database_url)) as conn:
        rows = conn.execute(
            "SELECT id FROM videos WHERE proxy_path IS NOT NULL AND thumbnail_path IS NOT NULL"
            " AND trashed_at IS NULL ORDER BY id LIMIT %s",
            (limit,),
        ).fetchall()
    return [str(row[0]) for row in rows]


# --- worker processes ------------------------------------------------------------------

PRODUCTION_QUEUES = "videos,videos.maintenance"


@dataclass
class WorkerSpec:
    """How to start one worker: which app, which queues, which pool and overrides.

    The defaults are the production command (``celery -A worker worker --loglevel
    INFO -Q videos,videos.maintenance``, prefork, one child per core: 2 here), so a
    spec that only names what it changes measures exactly that change.
    """

    app: str = "worker.runtime.app:app"
    queues: str = PRODUCTION_QUEUES
    pool: str = "prefork"
    concurrency: int = 2
    loglevel: str = "INFO"
    conf: dict[str, Any] = field(default_factory=dict)
    extra: tuple[str, ...] = ()
    # Loggers set to WARNING before the worker starts (e.g. Celery's per-task lines).
    quiet_loggers: tuple[str, ...] = ()
    # gc.freeze() in the main process just before the pool forks (celeryd_after_setup).
    gc_freeze: bool = False
    # Started under ``nice -n``: a lower CPU priority for the worker and its children.
    nice: int = 0

    def argv(self) -> list[str]:
        return [
            *(["nice", "-n", str(self.nice)] if self.nice else []),
            sys.executable,
            "-m",
            "bench.common",
            "--app",
            self.app,
            "--conf",
            json.dumps(self.conf),
            "--quiet",
            ",".join(self.quiet_loggers),
            *(["--gc-freeze"] if self.gc_freeze else []),
            "--",
            "--loglevel",
            self.loglevel,
            "--pool",
            self.pool,
            "--concurrency",
            str(self.concurrency),
            "-Q",
            self.queues,
            "--hostname",
            f"bench-{os.getpid()}-{time.monotonic_ns()}@%h",
            *self.extra,
        ]


class WorkerProcess:
    """A worker subprocess in its own session; ``stop`` ends it and its pool children."""

    def __init__(self, spec: WorkerSpec, env: dict[str, str], log_path: Path) -> None:
        self.spec = spec
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.process = subprocess.Popen(
            self.spec.argv(),
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, ping: Any, timeout: float = 90) -> None:
        """Call ``ping()`` (one request that must be answered) until it succeeds."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.alive():
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker exited early:\n{tail}")
            try:
                ping()
                return
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
        raise RuntimeError(f"worker did not answer within {timeout:.0f}s: {last!r}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            # Warm shutdown (SIGTERM): running tasks finish, children exit.
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Any pool child left behind by a hard stop is still in the worker's session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tree_memory(pid: int) -> dict[str, int]:
    """RSS, PSS and USS of a process and its children (Linux ``smaps`` via psutil).

    RSS counts a page shared after fork in every process that maps it; USS counts
    only pages a process holds alone; PSS splits shared pages between their sharers,
    so the PSS sum is the tree's real share of physical memory.
    """
    import psutil

    main = psutil.Process(pid)
    procs = [main, *main.children(recursive=True)]
    rss = pss = uss = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            info = proc.memory_full_info()
            rss += info.rss
            pss += info.pss
            uss += info.uss
    return {
        "processes": len(procs),
        "rss": rss,
        "pss": pss,
        "uss": uss,
        "main_rss": main.memory_info().rss,
    }


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live children.

    CPU time per request is the figure that survives a busy machine: wall time on
    2 shared cores is mostly waiting for a core, CPU time is what our code costs.
    """
    import psutil

    try:
        main = psutil.Process(pid)
        procs = [main, *main.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


# --- plain Celery callers ----------------------------------------------------------------


def outside_app(broker_url: str, backend_url: str | None, **conf: Any):  # noqa: ANN201 - Celery
    """A caller that imports nothing of this project: plain Celery, JSON only.

    Plain Celery prefers ``CELERY_BROKER_URL``/``CELERY_RESULT_BACKEND`` from the
    environment over the URLs given here; they are the same URLs in every bench.
    """
    from celery import Celery

    app = Celery("bench-caller", broker=broker_url, backend=backend_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        **conf,
    )
    return app


# --- the worker launcher (python -m bench.common) ------------------------------------------


def _launch(argv: Sequence[str]) -> None:
    import argparse

    from celery.utils.imports import symbol_by_name

    parser = argparse.ArgumentParser(prog="python -m bench.common")
    parser.add_argument("--app", required=True, help="module:attribute of the Celery app")
    parser.add_argument("--conf", default="{}", help="JSON object applied with conf.update")
    parser.add_argument("--quiet", default="", help="comma-separated loggers set to WARNING")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() before forking")
    parser.add_argument("worker_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    import logging

    if args.gc_freeze:
        import gc

        from celery.signals import celeryd_after_setup

        @celeryd_after_setup.connect(weak=False)
        def _freeze(**_: Any) -> None:
            # Objects that exist before the fork move to a permanent generation that the
            # collector never visits, so the children's collections do not write to (and
            # so copy) the pages they share with the main process.
            gc.collect()
            gc.freeze()

    for name in filter(None, args.quiet.split(",")):
        # Celery reads isEnabledFor(INFO) once per strategy/tracer, at start-up.
        logging.getLogger(name).setLevel(logging.WARNING)
    app = symbol_by_name(args.app)
    overrides = json.loads(args.conf)
    if overrides:
        app.conf.update(overrides)
    worker_args = [a for a in args.worker_args if a != "--"]
    app.worker_main(["worker", *worker_args])


@contextlib.contextmanager
def stopping(*things: Any) -> Iterator[None]:
    """Stop every started thing on the way out, in reverse order, even on errors."""
    try:
        yield
    finally:
        for thing in reversed(things):
            with contextlib.suppress(Exception):
                thing.stop()


if __name__ == "__main__":
    _launch(sys.argv[1:])
