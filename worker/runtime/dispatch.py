"""Messages to another service's queue on the worker's own broker (the ``Dispatch`` port).

The processing pipeline consumes ``REPROCESS_QUEUE``; the worker does not, so the queue
is not one of its own. It is declared on each new connection as the worker declares its
own (a direct exchange of the same name, bound by the same key; on RabbitMQ a quorum
queue), so a message sent before the pipeline ever started waits for it instead of
being dropped by an exchange with no queue. On RabbitMQ a queue the pipeline declared
first with other arguments refuses this declaration (PRECONDITION_FAILED): the send
fails, is retried, and says so in the log, rather than publishing into the void.
"""

from __future__ import annotations

from collections.abc import Callable

from amqp.exceptions import AMQPError
from celery import Celery
from kombu import Exchange, Queue
from kombu.exceptions import KombuError, OperationalError

from handlers.errors import Unavailable
from schemas.contract import QUORUM_QUEUE_ARGUMENTS, is_amqp


def foreign_queue(name: str, broker_url: str) -> Queue:
    return Queue(
        name,
        Exchange(name, type="direct"),
        routing_key=name,
        queue_arguments=QUORUM_QUEUE_ARGUMENTS if is_amqp(broker_url) else None,
    )


def celery_dispatch(app: Celery) -> Callable[[str, dict, str, str], None]:
    broker_url = app.conf.broker_url or ""
    queues: dict[str, Queue] = {}

    def dispatch(task: str, kwargs: dict, queue: str, task_id: str) -> None:
        if queue not in queues:
            queues[queue] = foreign_queue(queue, broker_url)
        try:
            app.send_task(task, kwargs=kwargs, queue=queues[queue], task_id=task_id)
        except (OperationalError, KombuError, AMQPError, OSError) as exc:
            raise Unavailable(f"Broker refused the message to {queue}: {exc}") from exc

    return dispatch
