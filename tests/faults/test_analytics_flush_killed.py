"""Signed URLs counted exactly while flushes run every second and one is SIGKILLed in
the middle of its fold.

A worker of two pool children answers 1,000 ``videos.sign_url`` from four callers while
``videos.flush_analytics`` is sent every second. Half-way, ``analytics_flushes`` is held
locked so the next flush stops inside its transaction, after it set the buffer aside;
the pool child running it is killed (SIGKILL) and the lock released. The flush key it
held is folded by a later flush, once: the figure ends at exactly 1,000.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from tests.faults.conftest import MAINTENANCE_QUEUE, REQUESTS_QUEUE
from tests.support import poll

SIGNS = 1000
CALLERS = 4


def streams(engine, video_id) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT coalesce(sum(stream_urls), 0) FROM video_daily_analytics "
                "WHERE video_id = :v"
            ),
            {"v": video_id},
        ).scalar_one()


def waiting_flush_port(engine) -> int | None:
    """The client port of a worker connection waiting on the lock of analytics_flushes."""
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT client_port FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query ILIKE '%analytics_flushes%' LIMIT 1"
            )
        ).scalar()


def test_a_flush_killed_mid_fold_loses_and_doubles_nothing(faults, workers, caller, mall_and_pin):
    mall, pin = mall_and_pin
    video = faults.catalog().video(mall, pin)
    with faults.engine.begin() as conn:
        conn.execute(text("TRUNCATE video_daily_analytics, analytics_flushes"))
    for key in faults.cache.scan_iter("videoworker:analytics:*"):
        faults.cache.delete(key)
    worker = workers.start("--concurrency", "2")
    stop = threading.Event()

    def flush_every_second() -> None:
        while not stop.wait(1.0):
            caller.send_task("videos.flush_analytics", kwargs={}, queue=MAINTENANCE_QUEUE)

    def sign(_: int) -> bool:
        answer = caller.send_task(
            "videos.sign_url", kwargs={"video_id": str(video["id"])}, queue=REQUESTS_QUEUE
        ).get(timeout=120)
        return answer["ok"]

    flusher = threading.Thread(target=flush_every_second, daemon=True)
    flusher.start()
    try:
        with ThreadPoolExecutor(CALLERS) as pool:
            first = list(pool.map(sign, range(SIGNS // 2)))
            with faults.engine.connect() as holder:
                holder.execute(text("LOCK TABLE analytics_flushes IN ACCESS EXCLUSIVE MODE"))
                port = poll(
                    lambda: waiting_flush_port(faults.engine),
                    timeout=30,
                    message="a flush to wait on analytics_flushes",
                )
                victim = worker.child_connected_from(port)
                victim.kill()
                victim.wait(10)
                holder.rollback()
            rest = list(pool.map(sign, range(SIGNS - SIGNS // 2)))
    finally:
        stop.set()
        flusher.join()
    assert all(first) and all(rest)

    def flush() -> None:
        caller.send_task("videos.flush_analytics", kwargs={}, queue=MAINTENANCE_QUEUE).get(
            timeout=60
        )

    def folded() -> bool:
        # Each process writes what it counted within 0.2 s: flush until all is in.
        flush()
        return streams(faults.engine, video["id"]) >= SIGNS

    poll(folded, timeout=60, interval=0.5, message=f"{SIGNS} streams folded")
    time.sleep(1)
    flush()
    assert not any(faults.cache.scan_iter("videoworker:analytics:*"))
    assert streams(faults.engine, video["id"]) == SIGNS
