"""How a task waits for PostgreSQL: one attempt at once on a new connection (pooled
connections are not pinged), then backoff within the retry budget."""

from __future__ import annotations

import pytest

from handlers.errors import DatabaseUnavailable, StorageUnavailable
from worker.runtime import tasking
from worker.runtime.tasking import ContractTask


class Task(ContractTask):
    name = "videos.get"
    soft_time_limit = 60


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(tasking.time, "sleep", slept.append)
    return slept


def failing(times: int, error: Exception):
    calls = []

    def handler(command, deps):
        calls.append(command)
        if len(calls) <= times:
            raise error
        return "answered"

    return handler, calls


def test_a_closed_pooled_connection_is_retried_at_once_without_sleeping(sleeps):
    handler, calls = failing(1, DatabaseUnavailable("server closed the connection"))

    assert Task()._handle_with_retries(handler, "cmd", None) == "answered"
    assert len(calls) == 2
    assert sleeps == []


def test_after_the_immediate_attempt_postgres_is_waited_for_with_backoff(sleeps):
    handler, calls = failing(3, DatabaseUnavailable("connection refused"))

    assert Task()._handle_with_retries(handler, "cmd", None) == "answered"
    assert len(calls) == 4
    # Two waits: 0.125-0.25 s, then 0.25-0.5 s.
    assert len(sleeps) == 2
    assert 0.125 <= sleeps[0] <= 0.25 and 0.25 <= sleeps[1] <= 0.5


def test_postgres_down_for_good_is_given_up_after_the_retries(sleeps):
    handler, calls = failing(100, DatabaseUnavailable("connection refused"))

    with pytest.raises(DatabaseUnavailable):
        Task()._handle_with_retries(handler, "cmd", None)
    # The immediate attempt, then max_retries backed-off ones, after the first call.
    assert len(calls) == 1 + 1 + Task.max_retries
    assert len(sleeps) == Task.max_retries


def test_storage_unavailable_gets_no_immediate_attempt(sleeps):
    handler, calls = failing(1, StorageUnavailable("S3 unreachable"))

    assert Task()._handle_with_retries(handler, "cmd", None) == "answered"
    assert len(calls) == 2
    assert len(sleeps) == 1


def test_a_statement_past_its_budget_is_answered_timeout_once_not_retried(sleeps, monkeypatch):
    """Asking again the same way would time out again: 504 at once, no backoff."""
    from handlers.errors import StatementTimeout
    from tasks.entrypoints import ENTRY_POINTS
    from tests.unit.fakes import Fakes, make_video
    from worker.adapters.postgres import budget

    fakes = Fakes()
    video = make_video()
    fakes.add_videos(video)
    budgets: list[int | None] = []

    def too_slow(*_args, **_kwargs):
        budgets.append(budget.current())
        raise StatementTimeout("A database statement took longer than 10000 ms")

    monkeypatch.setattr("worker.runtime.tasking.get_deps", lambda: fakes.deps)
    monkeypatch.setattr(type(fakes.uow.catalogue), "get", too_slow)

    envelope = ENTRY_POINTS["videos.get"].apply(kwargs={"video_id": str(video.id)}).get()

    assert envelope == {
        "ok": False,
        "status": 504,
        "error": {"code": "timeout", "detail": "A database statement took longer than 10000 ms"},
    }
    assert sleeps == []
    # Tried once, under the task table's budget for videos.get (half its soft limit).
    assert budgets == [10_000]
