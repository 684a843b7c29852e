"""The command line on real services, as a person meets it: at a terminal (a pty), into
a pipe whose reader has left, and pointed at a PostgreSQL that lacks its database."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime

from schemas.events import EVENTS_CHANNEL, BulkDeleteProgress, VideoDeleted
from tests.support import poll, run_cli
from tests.terminal import Terminal, into_closed_pipe, screen
from worker.adapters.redis import RedisPublisher


def subscribed(redis_client) -> int:
    return dict(redis_client.pubsub_numsub(EVENTS_CHANNEL)).get(EVENTS_CHANNEL.encode(), 0)


def test_reconcile_at_a_terminal_leaves_no_spinner_line(services, catalog, s3, bucket):
    for index in range(3):
        s3.put_object(Bucket=bucket, Key=f"videos/stray/{index}.mp4", Body=b"x")
    reconcile = Terminal.start("reconcile", env=services)
    try:
        code = reconcile.finish(timeout=60)
    finally:
        reconcile.close()

    shown = screen(reconcile.text)
    assert code == 0, reconcile.text
    assert "objects in bucket:        3" in shown
    assert not [line for line in shown if "objects scanned" in line], shown
    assert "Traceback" not in reconcile.text


def test_events_at_a_terminal_shows_bulk_delete_progress_as_a_line(services, redis_client):
    before = subscribed(redis_client)
    events = Terminal.start("events", "--count", "1", env=services)
    try:
        poll(lambda: subscribed(redis_client) > before, timeout=30, message="events to listen")
        run_id = str(uuid.uuid4())
        progress = BulkDeleteProgress(
            task_id=run_id, matched=1200, deleted=500, at=datetime.now(UTC)
        )
        RedisPublisher(redis_client)(progress)
        code = events.finish(timeout=30)
    finally:
        events.close()

    shown = "\n".join(screen(events.text))
    assert code == 0, events.text
    assert f"bulk_delete.progress  run={run_id}  500 of 1,200 deleted" in shown
    assert "{" not in shown.split("bulk_delete.progress", 1)[1]


def test_events_into_a_pipe_whose_reader_left_ends_quietly(services, redis_client):
    publish = RedisPublisher(redis_client)
    before = subscribed(redis_client)
    done: list = []
    thread = threading.Thread(
        target=lambda: done.append(into_closed_pipe("events", env=services, timeout=60))
    )
    thread.start()
    poll(lambda: subscribed(redis_client) > before, timeout=30, message="events to listen")

    def publish_until_it_ends() -> bool:
        if done:
            return True
        publish(
            VideoDeleted(
                video_id=uuid.uuid4(),
                mall_id=uuid.uuid4(),
                files_deleted=[],
                files_pending=[],
                at=datetime.now(UTC),
            )
        )
        return False

    poll(publish_until_it_ends, timeout=30, interval=0.2, message="events to see its reader gone")
    thread.join(30)
    result = done[0]

    assert result.returncode in (0, 141)
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr


def test_a_database_that_does_not_exist_is_one_line(services):
    url = services["DATABASE_URL"].rsplit("/", 1)[0] + "/videoworker_not_there"

    result = run_cli("figures", "check", env={**services, "DATABASE_URL": url}, check=2)

    lines = result.stderr.strip().splitlines()
    assert lines == [
        'videoworker figures: PostgreSQL refused: database "videoworker_not_there" does not '
        "exist; check DATABASE_URL (from the environment)"
    ]
    assert json.loads(result.stdout or "null") is None
