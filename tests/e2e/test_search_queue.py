"""SEARCH_QUEUE: searches run on workers of their own, gets and pages where they arrive.

A caller sends ``videos.list(q=...)`` to ``videos`` as always; the requests worker hands
it over to ``videos.search`` under the same task id, and the caller's wait ends with the
search worker's answer. Nothing changes for the caller, on either broker."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.brokers import isolated_environment
from tests.e2e.conftest import outside_app, start_worker, stop_worker, wait_until_answering


@pytest.fixture
def env(services, monkeypatch):
    """A broker and results of this test's own: no other worker takes its messages."""
    with isolated_environment(services, "search-queue", 9, 10, SEARCH_QUEUE="videos.search") as env:
        # Plain Celery reads these from the environment before its own arguments.
        monkeypatch.setenv("CELERY_BROKER_URL", env["CELERY_BROKER_URL"])
        monkeypatch.setenv("CELERY_RESULT_BACKEND", env["CELERY_RESULT_BACKEND"])
        yield env


def test_searches_wait_for_the_search_workers_while_everything_else_is_answered(env, tmp_path):
    requests = start_worker(env, tmp_path / "requests.log", "-n", "requests@%h")
    app = outside_app(env)
    searches = None
    try:
        wait_until_answering(app, requests)
        search = app.send_task(
            "videos.list", kwargs={"q": "entrance", "page_size": 5}, queue="videos"
        )
        page = app.send_task("videos.list", kwargs={"page_size": 5}, queue="videos")
        missing = app.send_task(
            "videos.get", kwargs={"video_id": str(uuid.uuid4())}, queue="videos"
        )
        short = app.send_task("videos.list", kwargs={"q": "P2"}, queue="videos")

        # No worker consumes videos.search yet: everything but the search is answered.
        assert page.get(timeout=30)["ok"] is True
        assert missing.get(timeout=30)["error"]["code"] == "not_found"
        refused = short.get(timeout=30)
        assert refused["error"]["code"] == "invalid_request"
        assert refused["error"]["fields"][0]["loc"] == ["q"]
        time.sleep(2)
        assert not search.ready()

        # A search worker comes: the caller's wait on the same task id ends with its answer.
        searches = start_worker(
            env, tmp_path / "search.log", "-n", "searches@%h", "-c", "1", queues="videos.search"
        )
        envelope = search.get(timeout=60)
        assert envelope["ok"] is True and envelope["status"] == 200, envelope
        assert envelope["data"]["total_relation"] == "eq"
        again = app.send_task("videos.list", kwargs={"q": "lobby"}, queue="videos")
        assert again.get(timeout=30)["ok"] is True
    finally:
        if searches is not None:
            stop_worker(searches)
        stop_worker(requests)
        app.close()
