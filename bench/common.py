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
* ``SpawnPool``: caller processes started once and reused by every measurement.
* ``Catalogue``: the catalogue's reads as the handlers make them, on a database of a
  bench's own, each statement's time recorded.

Timing, figures, tables and verdicts are ``bench.harness``'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import Method, interleaved, log, summary

ROOT = Path(__file__).resolve().parent.parent


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
# Conf of a worker that owns a queue of its own, so that two side by side each take every
# message sent to theirs (a setting about queues only).
OWN_QUEUE = {"task_create_missing_queues": True}


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
    # Settings of this worker alone (e.g. ANALYTICS_ENABLED), over the stack's.
    env: dict[str, str] = field(default_factory=dict)

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
            env={**os.environ, **self.env, **self.spec.env},
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


class SpawnPool:
    """Caller processes, spawned (nothing of this process inherited) once and reused."""

    def __init__(self, size: int) -> None:
        import multiprocessing

        self.pool = multiprocessing.get_context("spawn").Pool(size)

    def stop(self) -> None:
        self.pool.terminate()
        self.pool.join()


# --- the catalogue's reads -------------------------------------------------------------

# A statement as run: its SQL, its parameters, its milliseconds.
Statement = tuple[str, Any, float]
# A page past any total: ``list`` then runs only its total's statement.
PAST_THE_END = 10**12


class NoCache:
    """A stats cache that never holds anything (every read is a miss); ``put`` keeps the
    figures last given, for a bench to compare."""

    def __init__(self) -> None:
        self.last: list[Any] = []

    def get(self, mall_id: Any) -> None:
        return None

    def put(self, stats: Sequence[Any]) -> None:
        self.last = list(stats)

    def get_many(self, mall_ids: Any) -> dict:
        return {}

    def get_pins(self, pin_ids: Any) -> dict:
        return {}

    def put_pins(self, figures: Any) -> None:
        return None

    def forget_pins(self, pin_ids: Any) -> None:
        return None

    def mark_dirty(self, mall_ids: Any) -> bool:
        return False

    def take_dirty(self) -> tuple[bool, list]:
        return False, []


class Catalogue:
    """The catalogue's reads as their handlers run them (``handlers.list_videos``,
    ``handlers.get_video``): each on a unit of work, one pooled connection and a
    transaction rolled back at its end, on the database at ``url``. ``statements`` holds
    what the last calls ran, each with its time (SQLAlchemy's cursor events; with them
    listened to, no read takes the held-connection path).

    ``repository``: ``module:Class`` of another implementation of ``list``, built on the
    unit of work's connection: a change to measure before making it.
    """

    def __init__(self, url: str, repository: str | None = None) -> None:
        import importlib

        from sqlalchemy import create_engine, event

        import handlers
        from worker.adapters.postgres.uow import PostgresUnitOfWork

        self.engine = create_engine(
            url, pool_size=1, max_overflow=2, connect_args={"options": "-c timezone=UTC"}
        )
        self.statements: list[Statement] = []
        self.cache = NoCache()
        self.deps = handlers.Deps(
            uow=lambda: PostgresUnitOfWork(self.engine),
            store=None,  # type: ignore[arg-type] - a list without ``sign`` signs nothing
            cache=self.cache,  # type: ignore[arg-type]
            publish=lambda _event: None,
            enqueue=lambda *_: None,
        )
        self.alternative = None
        if repository:
            module, _, name = repository.partition(":")
            self.alternative = getattr(importlib.import_module(module), name)
        started = [0.0]

        @event.listens_for(self.engine, "before_cursor_execute")
        def _start(*_: Any) -> None:
            started[0] = time.perf_counter()

        @event.listens_for(self.engine, "after_cursor_execute")
        def _end(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            self.statements.append(
                (statement, parameters, (time.perf_counter() - started[0]) * 1000)
            )

    def scoped(self, scope: Any) -> Any:
        import dataclasses

        return dataclasses.replace(self.deps, scope=scope)

    def list(self, scope: Any, query: Any) -> tuple[list[Any], int]:
        """A page and its exact total, as ``videos.list`` answers them."""
        if self.alternative is not None:
            with self.deps.uow() as uow:
                return self.alternative(uow.connection).list(scope, query)
        import handlers

        response = handlers.list_videos(query, self.scoped(scope))
        return response.videos, response.total

    def total(self, scope: Any, query: Any) -> int:
        """The exact total alone: ``list`` of a page past the end runs nothing else."""
        return self.list(scope, query.model_copy(update={"page": PAST_THE_END}))[1]

    def get(self, scope: Any, video_id: Any) -> Any:
        import handlers
        from schemas import GetVideo

        return handlers.get_video(GetVideo(video_id=video_id), self.scoped(scope))

    def count(self, scope: Any, filters: dict[str, Any], q: str | None = None) -> int:
        """How many videos a list with these filters shows, counted by the bench's own
        SQL (``count(*)``; ``q`` with ``position()`` on ``lower()``, not ``ILIKE``, so
        the product's escaping of ``%`` and ``_`` is checked too)."""
        where = ["trashed_at IS NOT NULL" if filters.get("trashed") else "trashed_at IS NULL"]
        values: dict[str, Any] = {}
        if scope.role != "admin":
            column = "mall_id" if scope.role == "operator" else "pin_id"
            where.append(f"{column} = ANY(%(scope)s)")
            values["scope"] = sorted(scope.malls if scope.role == "operator" else scope.pins)
        for name in ("mall_id", "pin_id", "processing_status"):
            if filters.get(name) is not None:
                where.append(f"{name} = %({name})s")
                values[name] = str(filters[name])
        if filters.get("has_proxy") is not None:
            where.append(f"proxy_path IS {'NOT ' if filters['has_proxy'] else ''}NULL")
        for name, operator in (("uploaded_after", ">="), ("uploaded_before", "<")):
            if filters.get(name) is not None:
                where.append(f"uploaded_at {operator} %({name})s")
                values[name] = filters[name]
        for index, name in enumerate(filters.get("tags") or ()):
            tagged = (
                "EXISTS (SELECT 1 FROM video_tags vt JOIN tags t ON t.id = vt.tag_id"
                " WHERE vt.video_id = videos.id AND lower(t.name) = lower(%(tag{})s))"
            )
            where.append(tagged.format(index))
            values[f"tag{index}"] = name
        if q is not None:
            where.append(
                "(position(lower(%(q)s) in lower(original_filename)) > 0"
                " OR position(lower(%(q)s) in lower(coalesce(operator_notes, ''))) > 0)"
            )
            values["q"] = q
        # Every part is the bench's own text; the values are parameters.
        statement = "SELECT count(*) FROM videos WHERE " + " AND ".join(where)  # noqa: S608
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(statement, values).scalar_one()

    def plans(self, scope: Any, query: Any) -> list[tuple[str, dict[str, Any], str]]:
        """(``count`` or ``page``, JSON plan, text plan) of each statement a list runs."""
        self.statements.clear()
        self.list(scope, query)
        ran = list(self.statements)
        return [
            ("page" if "LIMIT" in statement.upper() else "count", *self.explain(statement, values))
            for statement, values, _ in ran
        ]

    def explain(self, statement: str, parameters: Any) -> tuple[dict[str, Any], str]:
        """``EXPLAIN (ANALYZE, BUFFERS)`` of one statement as run: its JSON plan and its
        text plan (the statement runs twice, rolled back after)."""
        with self.engine.connect() as conn:
            raw = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters
            ).scalar_one()
            text = "\n".join(
                line
                for (line,) in conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters
                )
            )
            conn.rollback()
        return (json.loads(raw) if isinstance(raw, str) else raw)[0], text

    def dispose(self) -> None:
        self.engine.dispose()


@dataclass
class ListTiming:
    """Timed calls of one list: their times, each call's statements' times, its total."""

    page: int = 1
    total: int = -1
    calls: list[float] = field(default_factory=list)
    statements: list[list[float]] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return summary(self.calls).p50

    @property
    def p95(self) -> float:
        return summary(self.calls).p95

    def statement_p50(self) -> list[float]:
        return [summary(list(s)).p50 for s in zip(*self.statements, strict=False)]


def time_lists(
    catalogue: Catalogue,
    lists: dict[str, tuple[Any, Any]],
    samples: int,
    *,
    block: int,
    warmup: int,
) -> dict[str, ListTiming]:
    """``samples`` calls of each ``(scope, query)`` list, taking turns in blocks, each
    with the times of the statements it ran and the total it answered."""
    timings = {name: ListTiming(page=query.page) for name, (_, query) in lists.items()}

    def method(name: str, scope: Any, query: Any) -> Method:
        timing = timings[name]

        def call() -> None:
            timing.total = catalogue.list(scope, query)[1]

        def after() -> None:
            timing.statements.append([ms for *_, ms in catalogue.statements])

        return Method(call, before=catalogue.statements.clear, after=after)

    methods = {name: method(name, *pair) for name, pair in lists.items()}
    for name, samples_of in interleaved(methods, samples, block=block, warmup=warmup).items():
        timing = timings[name]
        timing.calls = samples_of.times
        timing.statements = timing.statements[-len(samples_of.times) :]
    return timings


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def head_revision() -> str:
    """The migrations' head, which a kept bench database must have been loaded at."""
    from alembic.script import ScriptDirectory

    from worker.adapters.postgres.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head()


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
