"""How many times a message's worker was lost under it, counted in the cache Redis.

With ``acks_late`` and ``task_reject_on_worker_lost``, a message whose task kills its
worker (out of memory, a segfault in a library) would come back forever. The broker
marks such messages ``redelivered`` -- but also messages a worker handed back unstarted
(prefetched at a warm shutdown). So each delivery is marked when its task begins (in
the pool process), and a redelivery counts against the message only when the previous
delivery's mark is there. The count is kept here rather than taken from RabbitMQ's
``x-delivery-count``, which also counts the prefetched messages a warm shutdown gives
back.

A delivery is one task id at one ``retries``: a retry is a new message, counted afresh.
The keys are this module's alone; everything else asks ``Redeliveries``.
"""

from __future__ import annotations

from typing import Any

from worker.adapters.redis import make_redis

STARTED_PREFIX = "videoworker:started:"
REDELIVERIES_PREFIX = "videoworker:redeliveries:"
# Longer than any message can wait for redelivery.
MARKER_TTL_SECONDS = 7 * 86400


def started_key(task_id: str, retries: int) -> str:
    return f"{STARTED_PREFIX}{task_id}:{retries}"


def redeliveries_key(task_id: str, retries: int) -> str:
    return f"{REDELIVERIES_PREFIX}{task_id}:{retries}"


class Redeliveries:
    """The start marks and the lost-worker counts, on one Redis client.

    Errors are the caller's to weigh: the consumer runs a message it could not count
    rather than drop work, and a task never fails over its start mark.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def at(cls, url: str) -> Redeliveries:
        return cls(make_redis(url))

    def mark_started(self, task_id: str, retries: int) -> None:
        """One SET when a task begins; ``forget`` clears it when the task ends, and the
        expiry only bounds the marks of deliveries whose worker was lost for good."""
        self.client.set(started_key(task_id, retries), 1, ex=MARKER_TTL_SECONDS)

    def count_loss(self, task_id: str, retries: int) -> int | None:
        """The lost workers of this delivery so far, this one included; None when the
        previous delivery never started (handed back, not lost)."""
        # Clearing the mark makes the next loss count once more, not this one again.
        if not self.client.delete(started_key(task_id, retries)):
            return None
        key = redeliveries_key(task_id, retries)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, MARKER_TTL_SECONDS)
            count, _ = pipe.execute()
        return int(count)

    def forget(self, task_id: str, retries: int) -> None:
        """The delivery is over (its task ended), or a requeued message starts its count
        of lost workers again from zero: one DEL of both keys."""
        self.client.delete(redeliveries_key(task_id, retries), started_key(task_id, retries))
