"""A real worker process (``celery -A worker worker``) on the session's services."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery
from kombu import Exchange, Queue

from tests.support import poll
from worker.client import VideoClient

ROOT = Path(__file__).resolve().parents[2]


def start_worker(
    env: dict[str, str],
    log_path: Path,
    *extra: str,
    queues: str = "videos,videos.maintenance,videos.export",
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        "2",
        "--pool",
        "prefork",
        "-Q",
        queues,
        "--without-mingle",
        "--without-gossip",
        *extra,
    ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def outside_app(env: dict[str, str]) -> Celery:
    """A caller that imports nothing of this project: plain Celery, JSON only, set up
    as the README's recipe says (the queues declared as the worker declares them)."""
    broker = env["CELERY_BROKER_URL"]
    rabbitmq = broker.startswith(("amqp://", "amqps://"))
    app = Celery("outside-caller", broker=broker, backend=env["CELERY_RESULT_BACKEND"])
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_queues=[
            Queue(
                name,
                Exchange(name, type="direct"),
                routing_key=name,
                queue_arguments={"x-queue-type": "quorum"} if rabbitmq else None,
            )
            for name in ("videos", "videos.maintenance", "videos.export")
        ],
    )
    if rabbitmq:
        app.conf.broker_transport_options = {"confirm_publish": True}
    return app


def wait_until_answering(
    app: Celery, process: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    """Until the worker answers a ``videos.stats``; fails at once if it exits first."""

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}")
        result = app.send_task("videos.stats", kwargs={}, queue="videos")
        try:
            result.get(timeout=2)
        except Exception:  # noqa: BLE001 - not up yet
            return False
        return True

    # Each try already waits up to 2 s for its answer: no pause between tries.
    poll(answers, timeout=timeout, interval=0, message="the worker to answer videos.stats")


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(autouse=True)
def _collect_results() -> Iterator[None]:
    yield
    # AsyncResult.__del__ unsubscribes from the result channel: let it happen while Redis
    # is up, not at interpreter exit after the session's Redis has stopped.
    gc.collect()


@pytest.fixture(scope="session")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker") / "worker.log"


@pytest.fixture(scope="session")
def worker_process(services: dict[str, str], worker_log: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = start_worker(services, worker_log)
    app = outside_app(services)
    try:
        wait_until_answering(app, process)
        yield process
    finally:
        stop_worker(process)
        app.close()


@pytest.fixture(scope="session")
def caller(services: dict[str, str], worker_process) -> Iterator[Celery]:
    app = outside_app(services)
    yield app
    app.close()


@pytest.fixture(scope="session")
def client(services: dict[str, str], worker_process) -> Iterator[VideoClient]:
    video_client = VideoClient(services["CELERY_BROKER_URL"], services["CELERY_RESULT_BACKEND"])
    yield video_client
    video_client.close()


@pytest.fixture
def shop(catalog):
    """A mall, a pin and four videos in it, a minute apart, newest first: 0.mp4 … 3.mp4."""
    mall = catalog.mall("Mall A")
    pin = catalog.pin(mall, "Dock")
    now = datetime.now(UTC)
    videos = [
        catalog.video(
            mall, pin, uploaded_at=now - timedelta(minutes=i), original_filename=f"{i}.mp4"
        )
        for i in range(4)
    ]
    return mall, pin, videos
