"""Task names and queues of the message contract, shared by the worker and its callers."""

from __future__ import annotations

REQUESTS_QUEUE = "videos"
MAINTENANCE_QUEUE = "videos.maintenance"
# Messages set aside after repeated worker loss; nothing consumes it but an operator.
DEAD_LETTERS_QUEUE = "videos.dead-letters"
# Each queue is bound to a direct exchange of its own name with a routing key of its own
# name. On RabbitMQ the queues are quorum queues: a caller that declares one must pass
# exactly these arguments, or RabbitMQ refuses the declaration (PRECONDITION_FAILED).
QUORUM_QUEUE_ARGUMENTS = {"x-queue-type": "quorum"}
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


def is_amqp(broker_url: str) -> bool:
    return broker_url.startswith(AMQP_SCHEMES)


REQUEST_TASKS = (
    "videos.list",
    "videos.get",
    "videos.sign_url",
    "videos.sign_urls",
    "videos.stats",
)
MAINTENANCE_TASKS = (
    "videos.delete",
    "videos.restore",
    "videos.bulk_delete",
    "videos.refresh_stats",
    "videos.retention_sweep",
    "videos.purge_storage",
)
# Queued by the worker itself, not part of the callers' contract.
INTERNAL_TASKS = ("videos.flush_stale_stats",)
TASK_NAMES = REQUEST_TASKS + MAINTENANCE_TASKS

QUEUE_OF = {
    **dict.fromkeys(REQUEST_TASKS, REQUESTS_QUEUE),
    **dict.fromkeys(MAINTENANCE_TASKS + INTERNAL_TASKS, MAINTENANCE_QUEUE),
}
ROUTES = {name: {"queue": queue} for name, queue in QUEUE_OF.items()}
