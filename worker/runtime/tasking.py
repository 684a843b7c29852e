"""The one path every contract task takes: validate, handle, answer with an envelope.

A task never raises to Celery (an exception would reach the caller as a pickled-style
failure it cannot read). Domain errors become their envelope codes; Postgres or S3
being unreachable is retried with exponential backoff and jitter a bounded number of
times, then answered ``unavailable``; anything else is answered ``internal``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import BaseModel, ValidationError

from handlers.deps import Deps
from handlers.errors import DatabaseUnavailable, InvalidRequest, Unavailable, VideoError
from schemas.contract import TASK_OF
from schemas.envelope import failure, success
from worker.adapters.postgres.budget import statement_budget
from worker.runtime.app import get_deps
from worker.runtime.auth import Forbidden, Unauthorized, authorize
from worker.settings import get_settings

log = logging.getLogger("videoworker.task")

# The task a search is: handed over to SEARCH_QUEUE when it is set.
LIST_TASK = "videos.list"

Handler = Callable[[Any, Deps], BaseModel]


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) if not isinstance(p, int) else p for p in err["loc"]], "msg": err["msg"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def describe_invalid(fields: list[dict[str, Any]]) -> str:
    """One readable line: the seed's own texts stand alone, others are prefixed by the field."""
    parts = []
    for item in fields:
        loc = ".".join(str(p) for p in item["loc"])
        msg = item["msg"]
        parts.append(msg if not loc or msg.startswith("Invalid ") else f"{loc}: {msg}")
    return "; ".join(parts) or "Invalid request"


def invalid_request(detail: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    return failure("invalid_request", detail, fields)


class ContractTask(Task):
    """Base of the contract tasks. Subclass attributes tune retries per queue."""

    abstract = True
    # Celery checks call signatures against ``run`` unless told not to; the schemas do it.
    typing = False
    # Retries of unreachable dependencies: delay = base * 2**n, jittered, capped.
    max_retries = 3
    retry_base_seconds = 0.25
    retry_cap_seconds = 2.0

    def respond(
        self,
        model: type[BaseModel],
        handler: Handler,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        if args:
            fields = [{"loc": ["args"], "msg": "Positional arguments are not accepted"}]
            return invalid_request(
                f"{self.name} takes keyword arguments only; got {len(args)} positional", fields
            )
        # The caller first: someone without a valid token learns nothing of the kwargs.
        try:
            scope = authorize(self.name, kwargs)
        except (Unauthorized, Forbidden) as exc:
            return failure(exc.code, exc.detail)  # type: ignore[arg-type]
        try:
            command = model.model_validate(kwargs)
        except ValidationError as exc:
            fields = field_errors(exc)
            return invalid_request(describe_invalid(fields), fields)

        if self._searches_elsewhere(command):
            # Ignore: this message is acknowledged, the same task id answers from there.
            raise self.replace(self.signature((), kwargs, queue=get_settings().search_queue))
        deps = replace(get_deps(), request_id=self.request.id, scope=scope)
        try:
            with statement_budget(self.statement_budget_ms):
                result = self._handle_with_retries(handler, command, deps)
        except InvalidRequest as exc:
            return invalid_request(exc.detail, exc.fields)
        except Unavailable as exc:
            log.error("task.unavailable", extra={"task": self.name, "error": exc.detail})
            return failure("unavailable", exc.detail)
        except VideoError as exc:
            return failure(exc.code, exc.detail)  # type: ignore[arg-type]
        except SoftTimeLimitExceeded:
            log.error("task.timed_out", extra={"task": self.name})
            return failure("unavailable", f"{self.name} timed out after {self.soft_time_limit}s")
        except Exception as exc:
            log.exception("task.failed", extra={"task": self.name})
            return failure("internal", f"{self.name} failed: {type(exc).__name__}")
        return success(result)

    def _searches_elsewhere(self, command: BaseModel) -> bool:
        """A search (``videos.list`` with ``q``) to hand over to ``SEARCH_QUEUE``: one
        that arrived on another queue, when the setting names one. Its own workers then
        run every search, at most their pool's size at once, and the requests workers
        stay free for the gets and pages that take a few milliseconds."""
        queue = get_settings().search_queue
        if queue is None or self.name != LIST_TASK or getattr(command, "q", None) is None:
            return False
        delivery = self.request.delivery_info or {}
        return delivery.get("routing_key") not in (queue, None)

    @property
    def statement_budget_ms(self) -> int | None:
        """The task table's budget for this task's statements (none for a task outside
        the table, such as a bench's no-op)."""
        spec = TASK_OF.get(self.name)
        return spec.statement_budget_ms if spec is not None else None

    def _handle_with_retries(self, handler: Handler, command: BaseModel, deps: Deps) -> BaseModel:
        """Run the handler, trying again with backoff while PostgreSQL is unreachable.

        Retries happen here, in the process holding the message, not by re-publishing it
        with a countdown: a delayed message on a RabbitMQ quorum queue needs topic
        exchanges and Celery's native delayed delivery (with its own open reports), and
        a countdown message held by a worker takes a prefetch slot it cannot give back
        under per-consumer QoS. Waiting in place keeps one path on both brokers; the
        message stays unacknowledged, so a worker lost meanwhile gives it back. The waits
        together stay within half the soft time limit, so the answer comes in time.
        """
        budget = (self.soft_time_limit or 60) / 2
        started = time.monotonic()
        attempt = 0
        reconnected = False
        while True:
            try:
                return handler(command, deps)
            except DatabaseUnavailable as exc:
                if not reconnected:
                    # Pooled connections are not pinged: after a server restart the first
                    # statement meets a closed connection, and the pool is then discarded.
                    # One immediate attempt, on a new connection, before any backoff.
                    reconnected = True
                    log.info("task.reconnecting", extra={"task": self.name, "error": exc.detail})
                    continue
                attempt = self._back_off(exc, attempt, started, budget)
            except Unavailable as exc:
                attempt = self._back_off(exc, attempt, started, budget)

    def _back_off(self, exc: Unavailable, attempt: int, started: float, budget: float) -> int:
        """Sleep before the next attempt, or raise ``exc`` when none is left."""
        step = min(self.retry_cap_seconds, self.retry_base_seconds * 2**attempt)
        delay = random.uniform(step / 2, step)
        if attempt == self.max_retries or time.monotonic() - started + delay > budget:
            raise exc
        attempt += 1
        log.warning(
            "task.retrying", extra={"task": self.name, "attempt": attempt, "error": exc.detail}
        )
        time.sleep(delay)
        return attempt


class MaintenanceTask(ContractTask):
    """Lifecycle work nobody waits on interactively: more patience before giving up."""

    abstract = True
    max_retries = 5
    retry_base_seconds = 2.0
    retry_cap_seconds = 60.0
