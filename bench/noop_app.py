"""A bench-only Celery app: the worker's own configuration and one empty task.

``bench.noop`` is the floor of a request/reply through Celery: everything a contract
task pays (broker, prefork pool, result backend, the guarded consumer, structured
logs and the task-context signals) except validation, Postgres, S3 and the envelope
model. It reuses every value of ``celeryconfig`` and only swaps the queues (its own
``bench.noop`` queue, so it can run next to a real worker without taking its work;
any other name given with ``-Q`` is created, so that two no-op workers can be
compared side by side) and drops the beat schedule. Importing ``worker.runtime.app``
connects the same process-wide signal handlers (logging, task context) that the real
worker runs.

Start it with ``python -m bench.common --app bench.noop_app:app -- <worker args>``.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

import celeryconfig
import worker.runtime.app  # noqa: F401 - same signal handlers as the real worker
from worker.runtime import consumer

QUEUE = "bench.noop"
TASK = "bench.noop"

app = Celery("bench-noop")
app.config_from_object(celeryconfig)
app.conf.update(
    task_queues=(Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE),),
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_routes={TASK: {"queue": QUEUE}},
    task_create_missing_queues=True,
    beat_schedule={},
)


# The guarded consumer runs only the contract's task names (and those the app knows):
# this app's one task is added to that list, in this process only.
consumer.ALLOWED_TASKS = consumer.ALLOWED_TASKS | {TASK}


@app.task(name=TASK, typing=False)
def noop(*args, **kwargs):
    """Answers the smallest envelope a contract task answers."""
    return {"ok": True, "status": 200, "data": {}}
