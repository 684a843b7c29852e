"""Fault tests: their own embedded stack, which they stop, kill and restart.

The session's services (``tests/conftest.py``) may be shared or external; these tests
take servers down, so they always start their own PostgreSQL, durable Redis (AOF, so
queued messages survive a restart) and moto S3, on free loopback ports. The worker
reaches S3 through ``S3FaultProxy``; the tests arrange and check objects on moto
directly. Workers are real ``celery -A worker worker`` processes (prefork, two
children), started per test and stopped, with their children, when it ends.

With ``TEST_BROKER_URL`` a RabbitMQ URL, the broker is a vhost of that server made for
these tests (``<vhost>.faults``); Redis stays the result backend and cache. The tests
see the broker through ``tests.brokers``, the same on both.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
import redis
from celery import Celery
from sqlalchemy import Engine, create_engine, insert, text

from schemas.contract import is_amqp
from tests.brokers import Broker, broker_for, isolated_broker, wait_until_idle
from tests.conftest import Catalog
from tests.e2e.conftest import outside_app, start_worker, wait_until_answering
from tests.faults.s3proxy import S3FaultProxy
from tests.support import poll, run_cli
from worker.dev.embedded import EmbeddedStack
from worker.runtime.redeliveries import redeliveries_key

FAULT_BUCKET = "videoworker-faults"
# Short, so a message whose worker was killed comes back within a test; longer than
# any task these tests run and any countdown they schedule, so nothing running is
# redelivered behind the worker's back.
VISIBILITY_TIMEOUT_SECONDS = 6
TABLES = (
    "deletion_audit",
    "storage_deletions",
    "mall_retention",
    "processing_jobs",
    "videos",
    "camera_pins",
    "malls",
)
REQUESTS_QUEUE = "videos"
MAINTENANCE_QUEUE = "videos.maintenance"


def close_caller(app: Celery) -> None:
    """Close a caller once its results are gone.

    A result unsubscribes from its channel when collected; collected later, after the
    stack has stopped, it would fail to reconnect and warn.
    """
    gc.collect()
    app.close()


@dataclass
class WorkerProcess:
    """One ``celery worker`` main process, its pool children and its JSON log."""

    process: subprocess.Popen[bytes]
    log_path: Path
    known_children: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.process.pid

    def children(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.known_children.update(child.pid for child in found)
        return found

    def child_connected_from(self, port: int) -> psutil.Process:
        """The pool child whose TCP connection has this local port."""
        for child in self.children():
            try:
                if any(c.laddr and c.laddr.port == port for c in child.net_connections("tcp")):
                    return child
            except psutil.NoSuchProcess:
                continue
        raise AssertionError(f"no child of worker {self.pid} is connected from port {port}")

    def kill(self) -> None:
        """SIGKILL the main process; its children die with it (Celery sets PDEATHSIG)."""
        children = self.children()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"pool children outlived their killed parent: {alive}"

    def rss_bytes(self) -> int:
        processes = [psutil.Process(self.pid), *self.children()]
        return sum(p.memory_info().rss for p in processes)

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far (Celery's banner and the like are skipped)."""
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return entries

    def events_named(self, event: str, task_id: str | None = None) -> list[dict[str, Any]]:
        return [
            entry
            for entry in self.events()
            if entry.get("event") == event and (task_id is None or entry.get("task_id") == task_id)
        ]

    def completions(self, task_id: str) -> int:
        """How many times a task with this id ran to its end in this worker."""
        marker = f"[{task_id}] succeeded in"
        return sum(marker in entry.get("event", "") for entry in self.events())

    def stop(self) -> None:
        """End the worker after its test: at once, since a warm shutdown takes seconds and
        whatever it would give back to the broker is wiped before the next test anyway."""
        if self.process.poll() is None:
            self.children()
            self.process.kill()
            self.process.wait(10)
        # Children that outlive their parent are ours to end.
        for pid in self.known_children:
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass


@dataclass
class FaultStack:
    """The services of the fault tests, and what tests need to arrange and check them."""

    services: EmbeddedStack
    proxy: S3FaultProxy
    env: dict[str, str]
    engine: Engine
    s3: Any
    bucket: str

    @property
    def broker(self) -> Broker:
        return broker_for(self.env["CELERY_BROKER_URL"])

    @property
    def on_rabbitmq(self) -> bool:
        return is_amqp(self.env["CELERY_BROKER_URL"])

    @property
    def broker_name(self) -> str:
        return "RabbitMQ" if self.on_rabbitmq else "Redis"

    @property
    def cache(self) -> redis.Redis:
        return redis.Redis.from_url(self.env["REDIS_URL"], socket_timeout=5)

    # Keeping the services up ------------------------------------------------------

    def postgres_answers(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means "not up"
            return False

    def ensure_running(self) -> None:
        """Bring back whatever a failed test left down."""
        redis_server = self.services.redis
        assert redis_server is not None and self.services.postgres is not None
        if redis_server.process is None or redis_server.process.poll() is not None:
            redis_server.start()
        if not self.postgres_answers():
            self.services.postgres.start()
            self.engine.dispose()
        if not self.proxy.listening:
            self.proxy.start()
        self.proxy.heal()

    def reset(self) -> None:
        """Empty tables, bucket, queues, results and cache; workers, if any, must be idle."""
        with self.engine.begin() as conn:
            # Backends of killed workers may still hold locks TRUNCATE would wait for.
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        with self.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        keys = sorted(self.bucket_keys())
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": key} for key in keys[start : start + 1000]]
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})
        self.broker.purge()
        for database in ("CELERY_RESULT_BACKEND", "REDIS_URL"):
            redis.Redis.from_url(self.env[database], socket_timeout=5).flushdb()

    # Arranging --------------------------------------------------------------------

    def catalog(self) -> Catalog:
        return Catalog(engine=self.engine, s3=self.s3, bucket=self.bucket)

    def insert_videos(
        self, mall_id: uuid.UUID, pin_id: uuid.UUID, count: int, *, age: timedelta
    ) -> list[dict[str, Any]]:
        """``count`` videos uploaded ``age`` ago, with all three objects in the bucket."""
        from worker.adapters.postgres.tables import Video

        uploaded_at = datetime.now(UTC) - age
        rows = []
        for index in range(count):
            video_id = uuid.uuid4()
            rows.append(
                {
                    "id": video_id,
                    "mall_id": mall_id,
                    "pin_id": pin_id,
                    "original_filename": f"video_{index:04d}.mp4",
                    "original_path": f"videos/{mall_id}/original/{video_id}.mp4",
                    "file_size_bytes": 1_000_000,
                    "proxy_path": f"videos/{mall_id}/proxy/{video_id}.mp4",
                    "proxy_size_bytes": 100_000,
                    "thumbnail_path": f"thumbnails/{mall_id}/{video_id}.jpg",
                    "duration_seconds": 60.0,
                    "processing_status": "completed",
                    # Distinct instants keep the sweep's oldest-first order deterministic.
                    "uploaded_at": uploaded_at - timedelta(seconds=index),
                }
            )
        with self.engine.begin() as conn:
            conn.execute(insert(Video.__table__), rows)
        keys = [key for row in rows for key in Catalog.keys(row)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self._put, keys))
        return rows

    def _put(self, key: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"\x00")

    def make_queue_due(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("UPDATE storage_deletions SET next_attempt_at = now()"))

    # Checking ---------------------------------------------------------------------

    def bucket_keys(self) -> set[str]:
        keys: set[str] = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys.update(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def row_keys(self) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT original_path, proxy_path, thumbnail_path FROM videos")
            ).all()
        return {key for row in rows for key in row if key}

    def queued_keys(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(text("SELECT object_key FROM storage_deletions")).scalars())

    def video_ids(self) -> set[uuid.UUID]:
        with self.engine.connect() as conn:
            return set(conn.execute(text("SELECT id FROM videos")).scalars())

    def audited(self) -> Counter[uuid.UUID]:
        """How many audit rows each deleted video has."""
        with self.engine.connect() as conn:
            return Counter(conn.execute(text("SELECT video_id FROM deletion_audit")).scalars())

    def assert_storage_consistent(self) -> None:
        """No row without its objects; no object without a row or a queued deletion."""
        in_bucket, referenced = self.bucket_keys(), self.row_keys()
        missing = referenced - in_bucket
        orphans = in_bucket - referenced - set(self.queued_keys())
        assert not missing, f"{len(missing)} objects of live rows are gone: {sorted(missing)[:3]}"
        assert not orphans, f"{len(orphans)} objects have no row and no queued deletion"

    def stored_answer(self, task_id: str) -> dict[str, Any] | None:
        """The envelope the result backend holds now for this id (no client-side cache)."""
        results = redis.Redis.from_url(self.env["CELERY_RESULT_BACKEND"], socket_timeout=5)
        raw = results.get(f"celery-task-meta-{task_id}")
        return None if raw is None else json.loads(raw)["result"]

    def redeliveries(self, task_id: str, retries: int = 0) -> int:
        """How many flagged redeliveries ``GuardedConsumer`` has counted for this message."""
        return int(self.cache.get(redeliveries_key(task_id, retries)) or 0)

    def wait_until_broker_idle(self, timeout: float = 30, message: str = "") -> None:
        """Until every queue is empty and nothing is delivered but unacknowledged."""
        wait_until_idle(self.broker, timeout=timeout, message=message)

    def wait_until_unacked_expired(self) -> None:
        """Until the broker would hand every message of a lost worker to the next one.

        RabbitMQ does so as soon as the worker's connection is gone; Redis once the
        visibility timeout has passed since the message was delivered.
        """
        if self.on_rabbitmq:
            return
        broker = redis.Redis.from_url(self.env["CELERY_BROKER_URL"], socket_timeout=5)

        def expired() -> bool:
            scores = [score for _, score in broker.zrange("unacked_index", 0, -1, withscores=True)]
            return bool(scores) and time.time() - max(scores) > VISIBILITY_TIMEOUT_SECONDS + 0.5

        poll(expired, timeout=VISIBILITY_TIMEOUT_SECONDS + 10, message="visibility timeout")

    def ports_of_blocked_deletes(self) -> list[int]:
        """Client ports of the backends whose ``DELETE FROM videos`` waits on a row lock."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT client_port FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE 'DELETE FROM videos%'"
                    )
                ).scalars()
            )

    def blocked_delete_child(self, worker: WorkerProcess) -> psutil.Process | None:
        """The live pool child of ``worker`` whose delete waits on a row lock."""
        for port in self.ports_of_blocked_deletes():
            try:
                return worker.child_connected_from(port)
            except AssertionError:
                continue  # the backend of a child already killed, still waiting for the lock
        return None

    def purge_everything(self, caller: Celery) -> dict[str, Any]:
        """Run ``videos.purge_storage`` on every queued key now; its envelope."""
        self.make_queue_due()
        return caller.send_task(
            "videos.purge_storage", kwargs={"limit": 100_000}, queue=MAINTENANCE_QUEUE
        ).get(timeout=60)

    def assert_purged_clean(self, caller: Celery) -> dict[str, Any]:
        """After a purge: queue empty, and the bucket holds exactly the live rows' objects."""
        envelope = self.purge_everything(caller)
        assert envelope["ok"], envelope
        assert envelope["data"]["remaining"] == 0
        assert self.queued_keys() == []
        assert self.bucket_keys() == self.row_keys()
        return envelope

    def run_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``videoworker ARGS`` against this stack."""
        return run_cli(*args, env=self.env)


@pytest.fixture(scope="package")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    home = tmp_path_factory.mktemp("fault-stack")
    services = EmbeddedStack.plan(
        home / "services",
        postgres=True,
        redis=True,
        s3=True,
        bucket=FAULT_BUCKET,
        durable=True,
        fixed_ports=False,
    )
    # Durable, PostgreSQL included: a killed server with synchronous_commit off would
    # forget transactions it had already acknowledged, which no real crash test allows.
    services.start()
    proxy: S3FaultProxy | None = None
    engine: Engine | None = None
    rabbitmq_vhost = contextlib.ExitStack()
    try:
        assert services.s3 is not None
        proxy = S3FaultProxy(services.s3.url).start()
        base = services.environment()
        if is_amqp(rabbitmq := os.environ.get("TEST_BROKER_URL", "")):
            # Redis stays the result backend and cache; only the broker moves.
            base["CELERY_BROKER_URL"] = rabbitmq_vhost.enter_context(
                isolated_broker(rabbitmq, "faults", 0)
            )
        env = {
            **base,
            "S3_ENDPOINT_URL": proxy.url,
            "S3_PUBLIC_ENDPOINT_URL": "",
            "BROKER_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT_SECONDS),
            # Deletes queue a debounced stats flush; keep that countdown short.
            "STATS_DEBOUNCE_SECONDS": "0.5",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            # The tests count a task's runs by Celery's success lines.
            "LOG_TASK_LINES": "true",
        }
        from worker.adapters.postgres.migrate import upgrade

        upgrade(env["DATABASE_URL"])
        engine = create_engine(env["DATABASE_URL"], pool_pre_ping=True)
        s3 = boto3.client(
            "s3",
            endpoint_url=services.s3.url,
            aws_access_key_id=services.s3.access_key,
            aws_secret_access_key=services.s3.secret_key,
            region_name=services.s3.region,
        )
        with pytest.MonkeyPatch.context() as patch:
            # Plain Celery prefers these variables to the URLs it is given: callers in
            # this process must reach this stack, whatever the session exported.
            patch.setenv("CELERY_BROKER_URL", env["CELERY_BROKER_URL"])
            patch.setenv("CELERY_RESULT_BACKEND", env["CELERY_RESULT_BACKEND"])
            yield FaultStack(
                services=services,
                proxy=proxy,
                env=env,
                engine=engine,
                s3=s3,
                bucket=FAULT_BUCKET,
            )
    finally:
        if engine is not None:
            engine.dispose()
        if proxy is not None:
            proxy.stop()
        services.stop()
        rabbitmq_vhost.close()


@pytest.fixture
def faults(fault_stack: FaultStack) -> Iterator[FaultStack]:
    """The fault stack, running and empty, with a healthy S3 proxy."""
    # Connections of the pool only within a test: a fault test kills backends, restarts
    # the server and abandons statements mid-flight, and a connection it left in one of
    # those states fails the next pre-ping with an error the pool does not take for a
    # disconnect ("can't change 'autocommit' now": a statement still ACTIVE).
    fault_stack.engine.dispose()
    fault_stack.ensure_running()
    fault_stack.reset()
    yield fault_stack
    fault_stack.proxy.heal()


# (broker, test, seconds from a worker's loss to its caller's answer): printed when the
# session ends, so a run's output shows how fast each broker redelivers.
RECOVERY_TIMES: list[tuple[str, str, float]] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if RECOVERY_TIMES:
        terminalreporter.section("recovery after a lost worker (kill -> answer)")
        for broker, test, seconds in RECOVERY_TIMES:
            terminalreporter.write_line(f"{broker}: {seconds:.2f}s  {test}")


# Every worker started and not yet stopped, whichever fixture started it.
RUNNING: list[WorkerProcess] = []


class Workers:
    """Starts workers on the fault stack; every one is stopped when the test ends."""

    def __init__(self, stack: FaultStack, log_dir: Path) -> None:
        self.stack = stack
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def start(self, *extra: str, answering: bool = True) -> WorkerProcess:
        """A worker (``extra``: more ``celery worker`` options), answering unless told not."""
        # A worker left from another scope would take this test's messages.
        strays = [w for w in RUNNING if w not in self.started and w.process.poll() is None]
        assert not strays, "a module's tests use either module_worker or their own workers"
        name = f"fault{len(self.started) + 1}"
        log_path = self.log_dir / f"{name}.log"
        process = start_worker(self.stack.env, log_path, "-n", f"{name}@%h", *extra)
        worker = WorkerProcess(process, log_path)
        self.started.append(worker)
        RUNNING.append(worker)
        if answering:
            app = outside_app(self.stack.env)
            try:
                wait_until_answering(app, process)
            finally:
                close_caller(app)
        worker.children()  # remember the pool's pids, to end any that outlive the parent
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()
            RUNNING.remove(worker)


@pytest.fixture
def workers(faults: FaultStack, tmp_path: Path) -> Iterator[Workers]:
    """Workers of one test."""
    started = Workers(faults, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture(scope="module")
def module_worker(
    fault_stack: FaultStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One worker shared by the tests of a module that never stop or kill it."""
    fault_stack.ensure_running()
    started = Workers(fault_stack, tmp_path_factory.mktemp("module-worker"))
    try:
        yield started.start()
    finally:
        started.stop_all()


@pytest.fixture
def caller(faults: FaultStack) -> Iterator[Celery]:
    """A caller that imports nothing of this project: plain Celery, JSON only."""
    app = outside_app(faults.env)
    yield app
    close_caller(app)


@pytest.fixture
def mall_and_pin(faults: FaultStack) -> tuple[uuid.UUID, uuid.UUID]:
    catalog = faults.catalog()
    mall = catalog.mall()
    return mall, catalog.pin(mall)
