"""The guarded consumer's bookkeeping of lost workers, on a Redis stand-in.

The message checks it runs are ``tests/unit/test_vetting.py``'s; the Redis transport's
are ``tests/unit/test_transport.py``'s.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from schemas.contract import INTERNAL_TASKS, TASK_NAMES
from worker.runtime import consumer
from worker.runtime.consumer import GuardedConsumer
from worker.runtime.redeliveries import MARKER_TTL_SECONDS, Redeliveries


class StandInRedis:
    """The few Redis commands the counter sends, with their answers."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.ttls: dict[str, int] = {}

    def set(self, key: str, value: Any, ex: int | None = None) -> None:
        self.values[key] = value
        if ex is not None:
            self.ttls[key] = ex

    def delete(self, *keys: str) -> int:
        return sum(self.values.pop(key, None) is not None for key in keys)

    def pipeline(self, transaction: bool = True) -> StandInPipeline:
        return StandInPipeline(self)


class StandInPipeline:
    def __init__(self, redis: StandInRedis) -> None:
        self.redis = redis
        self.answers: list[Any] = []

    def __enter__(self) -> StandInPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def incr(self, key: str) -> None:
        self.redis.values[key] = int(self.redis.values.get(key, 0)) + 1
        self.answers.append(self.redis.values[key])

    def expire(self, key: str, seconds: int) -> None:
        self.redis.ttls[key] = seconds
        self.answers.append(True)

    def execute(self) -> list[Any]:
        return self.answers


class DownRedis:
    def __getattr__(self, name: str) -> Any:
        raise ConnectionError("Redis is down")


@pytest.fixture
def redis(monkeypatch) -> StandInRedis:
    client = StandInRedis()
    monkeypatch.setattr(consumer, "_redeliveries", Redeliveries(client))
    monkeypatch.setattr(consumer, "delivery_limit", lambda: 2)
    return client


def redelivered(task_id: str, retries: int = 0) -> SimpleNamespace:
    headers = {"id": task_id, "task": "videos.delete", "retries": retries, "redelivered": True}
    return SimpleNamespace(headers=headers, delivery_info={"redelivered": True})


def too_many(message: SimpleNamespace) -> bool:
    # The check touches nothing of the consumer but the process's counter.
    return GuardedConsumer.too_many_redeliveries(None, message)  # type: ignore[arg-type]


def test_a_delivery_handed_back_unstarted_is_not_counted(redis):
    task_id = str(uuid.uuid4())

    assert too_many(redelivered(task_id)) is False
    assert redis.values == {}


def test_each_lost_worker_counts_once_and_past_the_limit_the_message_is_set_aside(redis):
    task_id = str(uuid.uuid4())
    answers = []
    for _ in range(3):
        consumer.mark_started(task_id, 0)
        answers.append(too_many(redelivered(task_id)))
        # A redelivery the worker hands back before starting it counts nothing.
        answers.append(too_many(redelivered(task_id)))

    assert answers == [False, False, False, False, True, False]
    assert redis.values == {f"videoworker:redeliveries:{task_id}:0": 3}
    assert redis.ttls[f"videoworker:redeliveries:{task_id}:0"] == MARKER_TTL_SECONDS


def test_a_retry_is_a_new_delivery_counted_afresh(redis):
    task_id = str(uuid.uuid4())
    consumer.mark_started(task_id, 0)
    consumer.mark_started(task_id, 1)

    too_many(redelivered(task_id, retries=1))

    assert f"videoworker:started:{task_id}:0" in redis.values
    assert redis.values[f"videoworker:redeliveries:{task_id}:1"] == 1


def test_without_redis_the_message_runs_and_the_task_does_not_fail(monkeypatch):
    monkeypatch.setattr(consumer, "_redeliveries", Redeliveries(DownRedis()))

    consumer.mark_started("t", 0)
    assert too_many(redelivered("t")) is False


def test_a_requeued_message_counts_its_lost_workers_from_zero(redis):
    consumer.mark_started("t", 2)
    too_many(redelivered("t", retries=2))
    consumer.mark_started("t", 2)

    Redeliveries(redis).forget("t", 2)

    assert redis.values == {}


def test_after_fork_the_process_builds_its_own_counter(monkeypatch):
    monkeypatch.setattr(consumer, "_redeliveries", Redeliveries(StandInRedis()))

    consumer.forget_connections()

    assert consumer._redeliveries is None


def test_the_names_other_modules_read_here_stay():
    assert frozenset(TASK_NAMES + INTERNAL_TASKS) == consumer.ALLOWED_TASKS
    assert consumer.REDELIVERIES_PREFIX == "videoworker:redeliveries:"
    assert {"mark_started", "forget_connections", "GuardedConsumer", "Refusal"} <= set(
        consumer.__all__
    )
