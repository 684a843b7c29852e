"""Time limits of every task, in one table that the tasks and the broker settings read.

Redis gives a message back to the queue when its worker has not acknowledged it within
the visibility timeout, so that timeout must exceed the longest hard limit: derived
here, never written twice.
"""

from __future__ import annotations

# task name: (soft limit, hard limit), in seconds.
TIME_LIMITS: dict[str, tuple[int, int]] = {
    "videos.list": (20, 30),
    "videos.get": (20, 30),
    "videos.sign_url": (20, 30),
    "videos.sign_urls": (20, 30),
    "videos.stats": (20, 30),
    "videos.delete": (60, 90),
    "videos.restore": (60, 90),
    "videos.bulk_delete": (540, 600),
    "videos.refresh_stats": (120, 150),
    "videos.flush_stale_stats": (120, 150),
    "videos.retention_sweep": (540, 600),
    "videos.purge_storage": (240, 300),
}
LONGEST_HARD_LIMIT = max(hard for _, hard in TIME_LIMITS.values())
# Room for a task that ends right at its hard limit to be acknowledged.
VISIBILITY_MARGIN_SECONDS = 60


def limits(task: str) -> dict[str, int]:
    soft, hard = TIME_LIMITS[task]
    return {"soft_time_limit": soft, "time_limit": hard}
