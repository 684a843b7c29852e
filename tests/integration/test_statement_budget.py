"""A statement ends within its task's budget, and one whose caller was interrupted is
cancelled on the server and never leaves its connection to the next caller.

Another session holds a lock on ``videos`` (as a long migration or a stuck writer would);
reads queue behind it. Without a budget, a read waits until the soft time limit cuts it
mid-statement: the driver leaves the connection busy ("another command is already in
progress" for every later read of that process) and the server goes on waiting for
nobody.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text

import handlers
from handlers.errors import StatementTimeout
from schemas import DeleteVideo, GetVideo, ListVideos
from worker.adapters.postgres.budget import statement_budget


class Interrupted(Exception):
    """What Celery's soft time limit is to the code it interrupts: an exception raised
    from a signal handler, in the middle of whatever was running."""


@contextmanager
def locked_videos(engine) -> Iterator[None]:
    """``videos`` locked by another session until the block ends."""
    connection = engine.connect()
    transaction = connection.begin()
    connection.execute(text("LOCK TABLE videos IN ACCESS EXCLUSIVE MODE"))
    try:
        yield
    finally:
        transaction.rollback()
        connection.close()


@contextmanager
def interrupted_after(seconds: float) -> Iterator[None]:
    def interrupt(*_: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def waiting_on_a_lock(engine) -> int:
    """Backends of this database waiting on a lock (our interrupted reads, if any)."""
    with engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
        ).scalar_one()


def nothing_waits(engine, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if waiting_on_a_lock(engine) == 0:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def video(catalog):
    mall = catalog.mall()
    return catalog.video(mall, catalog.pin(mall))


def test_a_read_past_its_budget_is_cancelled_by_the_server_and_answered_timeout(
    deps, engine, video
):
    with locked_videos(engine), statement_budget(300):
        started = time.monotonic()
        with pytest.raises(StatementTimeout, match="longer than 300 ms and was cancelled"):
            handlers.get_video(GetVideo(video_id=video["id"]), deps)
        assert time.monotonic() - started < 5
        assert waiting_on_a_lock(engine) == 0
    # The same process reads again at once, on the same held connection.
    assert handlers.get_video(GetVideo(video_id=video["id"]), deps).id == video["id"]


@pytest.mark.parametrize("read", ["get (held connection)", "list page and total"])
def test_a_read_interrupted_mid_statement_leaves_nothing_running_and_nothing_broken(
    deps, engine, video, read
):
    def run() -> object:
        if read.startswith("get"):
            return handlers.get_video(GetVideo(video_id=video["id"]), deps)
        return handlers.list_videos(ListVideos(mall_id=video["mall_id"]), deps)

    run()  # the held connection and the statement's shape exist before the lock
    with locked_videos(engine):
        with interrupted_after(0.3), pytest.raises(Interrupted):
            run()
        # Cancelled on the server, not left waiting for a caller that has gone.
        assert nothing_waits(engine), "the interrupted statement still runs on the server"
    # Every later read of this process is answered (16 of 16 failed before).
    for _ in range(16):
        assert run() is not None


def test_a_write_interrupted_mid_statement_is_cancelled_and_its_connection_not_reused(
    deps, engine, video
):
    with locked_videos(engine):
        with interrupted_after(0.3), pytest.raises(Interrupted):
            handlers.delete_video(DeleteVideo(video_id=video["id"], trash=True), deps)
        assert nothing_waits(engine)
    answer = handlers.delete_video(DeleteVideo(video_id=video["id"], trash=True), deps)
    assert answer.deleted is True


def test_a_write_past_its_budget_is_answered_timeout_and_rolled_back(deps, engine, video):
    with locked_videos(engine), statement_budget(300):
        with pytest.raises(StatementTimeout):
            handlers.delete_video(DeleteVideo(video_id=video["id"]), deps)
    with engine.connect() as connection:
        still = connection.execute(
            text("SELECT count(*) FROM videos WHERE id = :id"), {"id": video["id"]}
        ).scalar_one()
    assert still == 1


def test_a_budget_set_once_stays_on_the_connection_until_it_changes(deps, video):
    sent: list[str] = []
    path = deps.read().read_path
    path.tracers.append(lambda sql, _: sent.append(sql))
    try:
        with statement_budget(5_000):
            for _ in range(3):
                handlers.get_video(GetVideo(video_id=video["id"]), deps)
            with deps.reads() as uow:
                held = uow.read_path.held().driver_connection
                assert held.execute("SHOW statement_timeout").fetchone()[0] == "5s"
        handlers.get_video(GetVideo(video_id=video["id"]), deps)
        with deps.reads() as uow:
            held = uow.read_path.held().driver_connection
            # Back to the connection's own default once no budget is named.
            assert held.execute("SHOW statement_timeout").fetchone()[0] != "5s"
    finally:
        path.tracers.clear()
    # The reads themselves: one statement each, the budget set beside them, not per read.
    assert len(sent) == 4


def test_reads_of_other_threads_are_interrupted_just_as_safely(deps, engine, video):
    """Under a threads pool each thread checks a connection out per unit of work; the
    budget is the thread's own (a context variable)."""
    answers: list[object] = []

    def read() -> None:
        with statement_budget(300):
            try:
                handlers.get_video(GetVideo(video_id=video["id"]), deps)
            except StatementTimeout as exc:
                answers.append(exc)

    with locked_videos(engine):
        threads = [threading.Thread(target=read) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert len(answers) == 4 and all(isinstance(a, StatementTimeout) for a in answers)
    assert nothing_waits(engine)
