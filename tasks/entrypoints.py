"""One Celery task per row of the task table, registered when the worker imports this.

Every entry point is the same three lines: the row says which model validates the
kwargs, which handler answers and with what patience; ``ContractTask.respond`` does the
rest. A row whose handler does not resolve fails here, at import, for every worker and
every test, instead of when its first message arrives.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from celery import Task

from schemas.contract import REQUESTS_QUEUE, TASKS, TaskSpec
from worker.runtime.app import app
from worker.runtime.tasking import ContractTask, Handler, MaintenanceTask


def resolve(path: str) -> Handler:
    """The handler a row names by import path (``handlers.module.function``)."""
    module, _, name = path.rpartition(".")
    if not module.startswith("handlers."):
        raise LookupError(f"{path}: a task's handler lives in the handlers package")
    handler = getattr(import_module(module), name, None)
    if not callable(handler):
        raise LookupError(f"{path}: no such handler")
    return handler


def register(spec: TaskSpec) -> Task:
    """The Celery task of one row: its name, limits and patience, all from the row.

    A caller waits on the requests queue, so its tasks give up on an unreachable
    dependency sooner (``ContractTask``); everything else is lifecycle work that
    nobody watches interactively (``MaintenanceTask``).
    """
    handler = resolve(spec.handler)

    def run(self: ContractTask, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.respond(spec.request, handler, args, kwargs)

    run.__name__ = run.__qualname__ = spec.name.rpartition(".")[2]
    run.__doc__ = f"{spec.name}: safe to run twice because {spec.rerun}."
    base = ContractTask if spec.queue == REQUESTS_QUEUE else MaintenanceTask
    return app.task(
        name=spec.name,
        base=base,
        bind=True,
        soft_time_limit=spec.soft_limit,
        time_limit=spec.hard_limit,
        acks_late=spec.acks_late,
    )(run)


ENTRY_POINTS: dict[str, Task] = {spec.name: register(spec) for spec in TASKS}
