"""Task names and queues of the message contract, shared by the worker and its callers."""

from __future__ import annotations

REQUESTS_QUEUE = "videos"
MAINTENANCE_QUEUE = "videos.maintenance"

REQUEST_TASKS = ("videos.list", "videos.get", "videos.sign_url", "videos.stats")
MAINTENANCE_TASKS = (
    "videos.delete",
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
