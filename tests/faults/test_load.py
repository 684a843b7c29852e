"""Load: 5,000 mixed requests from four concurrent callers against one worker.

Every request is answered with the envelope its input calls for (none lost, none
answered wrongly under contention), and the worker's memory (main process and pool
children) stays flat between a warm-up and the end of the run.
"""

from __future__ import annotations

import itertools
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from celery.result import ResultSet

from tests.e2e.conftest import outside_app
from tests.faults.conftest import REQUESTS_QUEUE, close_caller

pytestmark = pytest.mark.load

CALLERS = 4
WARM_UP_REQUESTS = 1_000
REQUESTS = 5_000
RSS_GROWTH_LIMIT_BYTES = 30 * 1024 * 1024
# About 30 s on two idle cores; generous for a busy CI machine.
ANSWER_TIMEOUT_SECONDS = 240

# (task, kwargs, expected status, expected error code or None)
Request = tuple[str, dict[str, Any], int, str | None]


def request_mix(videos: list[dict], bare: list[dict], malls: list[uuid.UUID]) -> list[Request]:
    """One round of every kind of request, ok and expected errors alike."""
    video, bare_video, mall = random.choice(videos), random.choice(bare), random.choice(malls)
    return [
        ("videos.get", {"video_id": str(video["id"])}, 200, None),
        ("videos.get", {"video_id": str(uuid.uuid4())}, 404, "not_found"),
        ("videos.sign_url", {"video_id": str(video["id"])}, 200, None),
        ("videos.sign_url", {"video_id": str(video["id"]), "target": "original"}, 200, None),
        ("videos.sign_url", {"video_id": str(bare_video["id"])}, 400, "not_available"),
        ("videos.list", {"mall_id": str(mall), "page_size": 20}, 200, None),
        ("videos.list", {"has_proxy": True, "page": 2, "page_size": 10}, 200, None),
        ("videos.list", {"page_size": 1000}, 400, "invalid_request"),
        ("videos.stats", {}, 200, None),
        ("videos.stats", {"mall_id": str(mall)}, 200, None),
    ]


def plan(count: int, videos: list[dict], bare: list[dict], malls: list[uuid.UUID]):
    rounds = (request_mix(videos, bare, malls) for _ in itertools.count())
    return list(itertools.islice(itertools.chain.from_iterable(rounds), count))


def call_all(env: dict[str, str], requests: list[Request]) -> list[Any]:
    """One caller: send every request, then collect every answer."""
    app = outside_app(env)
    try:
        sent = [
            app.send_task(task, kwargs=kwargs, queue=REQUESTS_QUEUE)
            for task, kwargs, *_ in requests
        ]
        return ResultSet(sent).join_native(timeout=ANSWER_TIMEOUT_SECONDS, propagate=False)
    finally:
        close_caller(app)


def run_concurrently(env: dict[str, str], requests: list[Request]) -> list[tuple[Request, Any]]:
    shares = [requests[index::CALLERS] for index in range(CALLERS)]
    with ThreadPoolExecutor(CALLERS) as pool:
        answers = list(pool.map(lambda share: call_all(env, share), shares))
    return [
        pair
        for share, got in zip(shares, answers, strict=True)
        for pair in zip(share, got, strict=True)
    ]


def unexpected(pairs: list[tuple[Request, Any]]) -> list[tuple[str, dict, Any]]:
    wrong = []
    for (task, kwargs, status, code), envelope in pairs:
        answered_as = (
            isinstance(envelope, dict)
            and envelope.get("status") == status
            and (envelope["ok"] if code is None else envelope["error"]["code"] == code)
        )
        if not answered_as:
            wrong.append((task, kwargs, envelope))
    return wrong


def test_five_thousand_mixed_requests_are_all_answered_and_memory_stays_flat(
    faults, workers, mall_and_pin
):
    random.seed(20251031)
    mall, pin = mall_and_pin
    catalog = faults.catalog()
    other_mall = catalog.mall("Other mall")
    other_pin = catalog.pin(other_mall)
    videos = [catalog.video(mall, pin, upload_objects=False) for _ in range(30)]
    videos += [catalog.video(other_mall, other_pin, upload_objects=False) for _ in range(20)]
    bare = [
        catalog.video(mall, pin, upload_objects=False, proxy=False, thumbnail=False)
        for _ in range(10)
    ]
    # Two log lines per request at INFO would cost the worker more than some requests do.
    worker = workers.start("--loglevel", "WARNING")

    warm_up = run_concurrently(faults.env, plan(WARM_UP_REQUESTS, videos, bare, [mall, other_mall]))
    assert unexpected(warm_up) == []
    rss_after_warm_up = worker.rss_bytes()

    pairs = run_concurrently(faults.env, plan(REQUESTS, videos, bare, [mall, other_mall]))
    rss_after_run = worker.rss_bytes()

    assert len(pairs) == REQUESTS
    wrong = unexpected(pairs)
    assert wrong == [], f"{len(wrong)} unexpected answers, e.g. {wrong[:3]}"
    faults.wait_until_broker_idle(timeout=30, message="every message acknowledged")
    assert worker.process.poll() is None
    growth = rss_after_run - rss_after_warm_up
    assert growth < RSS_GROWTH_LIMIT_BYTES, (
        f"worker RSS grew {growth / 2**20:.1f} MiB over {REQUESTS} requests "
        f"({rss_after_warm_up / 2**20:.1f} → {rss_after_run / 2**20:.1f} MiB)"
    )
