"""The CLI against the real worker, and a worker whose database is unreachable."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.brokers import isolated_environment
from tests.e2e.conftest import outside_app, start_worker, stop_worker, wait_until_answering
from tests.support import run_cli
from worker.dev.embedded import free_port


def test_cli_call_prints_the_envelope(services, catalog, worker_process):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall))

    found = run_cli("call", "videos.get", f"video_id={row['id']}", env=services)
    missing = run_cli("call", "videos.get", f"video_id={uuid.uuid4()}", env=services)
    listed = run_cli("call", "videos.list", "page_size=1", "has_proxy=true", env=services)

    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["data"]["id"] == str(row["id"])
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["error"]["code"] == "not_found"
    assert json.loads(listed.stdout)["data"]["total"] == 1


def test_cli_rejects_malformed_arguments(services):
    result = run_cli("call", "videos.get", "video_id", env=services)

    assert result.returncode == 2
    assert "expected key=value" in result.stderr


def test_schemas_in_docs_are_current(services):
    result = run_cli("schemas", "--check", env=services)

    assert result.returncode == 0, result.stderr


@pytest.fixture
def worker_without_database(services, tmp_path, monkeypatch):
    # A broker of its own, so only this worker sees these messages.
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"
    with isolated_environment(services, "no-database", 7, 8, DATABASE_URL=unreachable) as env:
        # Plain Celery reads these from the environment before its own arguments.
        monkeypatch.setenv("CELERY_BROKER_URL", env["CELERY_BROKER_URL"])
        monkeypatch.setenv("CELERY_RESULT_BACKEND", env["CELERY_RESULT_BACKEND"])
        process = start_worker(env, tmp_path / "worker.log")
        app = outside_app(env)
        try:
            wait_until_answering(app, process)
            yield app, tmp_path / "worker.log"
        finally:
            stop_worker(process)
            app.close()


def test_unreachable_database_is_retried_then_unavailable(worker_without_database):
    app, log = worker_without_database

    envelope = app.send_task(
        "videos.get", kwargs={"video_id": str(uuid.uuid4())}, queue="videos"
    ).get(timeout=60)

    assert envelope["ok"] is False and envelope["status"] == 503
    assert envelope["error"]["code"] == "unavailable"
    assert "PostgreSQL unreachable" in envelope["error"]["detail"]
    assert log.read_text().count("task.retrying") >= 3


def test_client_uses_its_own_urls_over_the_environment(
    services, catalog, worker_process, monkeypatch
):
    from worker.client import VideoClient

    # A calling service whose own Celery points elsewhere must still reach this worker.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://127.0.0.1:1/1")
    client = VideoClient(services["CELERY_BROKER_URL"], services["CELERY_RESULT_BACKEND"])
    try:
        stats = client.stats(timeout=30)
    finally:
        client.close()

    assert stats.total_videos == 0
