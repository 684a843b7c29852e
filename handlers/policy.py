"""The lifecycle policy the handlers apply, with its defaults written once.

Settings read each value from the environment (defaulting to these), the wiring passes
them in, and the unit tests' fakes use them as they are: one source for every default.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Policy:
    # Videos uploaded longer ago than this are swept, unless the request or the mall
    # says otherwise.
    retention_days: int = 90
    # A video in the trash is deleted for good once it has been there this long.
    trash_days: int = 30
    # Inline deletes get this head start before purge may retry the same keys.
    purge_grace_seconds: int = 60
    # A sweep stops taking batches after this long and queues its own continuation,
    # ending well inside its time limit and the broker's visibility timeout.
    sweep_time_budget_seconds: float = 120.0
    # The same for a bulk delete, which answers with the id of its continuation.
    bulk_delete_time_budget_seconds: float = 120.0
    # Deletes within this window share one stats refresh.
    stats_debounce_seconds: float = 5.0
    # deletion_audit rows older than this are pruned by the daily sweep (those whose
    # files are still pending stay until they are settled).
    audit_retention_days: int = 365
    # Keys that failed this many times are reported as stuck.
    stuck_after_attempts: int = 8
    # reconcile --fix leaves orphans younger than this (an upload writes its object
    # before its row) and refuses to remove more than this share of the bucket.
    reconcile_min_age_seconds: float = 24 * 3600.0
    reconcile_max_share: float = 0.1
    # A search counts its matches exactly up to this many, then says "at least" (each
    # match is rechecked on its table page: counting all of a broad one takes seconds).
    search_total_cap: int = 10_000
    # Each statement of a search ends within this, or is cancelled and answered timeout.
    search_timeout_ms: int = 2_000

    # Share links: the longest a link may live (no link lives for ever), how long each
    # URL a resolve mints lives (never past the link's own expiry), and how many wrong
    # passwords a link takes within 15 minutes before it refuses every attempt.
    share_max_minutes: int = 43_200
    share_url_minutes: int = 15
    share_max_attempts: int = 5

    # videos.reprocess: the processing pipeline's task and queue, on the worker's broker.
    reprocess_task: str = "processing.reprocess"
    reprocess_queue: str = "processing"

    # Exports: at most this many videos and bytes per export (refused before any work);
    # the ZIP is deleted this long after it completed.
    export_max_videos: int = 1000
    export_max_bytes: int = 100 * 1024**3
    export_ttl_hours: int = 72
    # A running export whose heartbeat is older than this lost its worker: the sweep
    # takes it up again, at most export_max_attempts runs in all, then fails it.
    export_lease_seconds: int = 90
    export_max_attempts: int = 3
    # A queued export no run has claimed this long had its run message lost (a broker
    # failover, a purge): the sweep sends the run again, at most once per this period.
    export_requeue_minutes: int = 5
    # export.progress events at most this often.
    export_progress_seconds: float = 5.0
    # Parts of an export's ZIP uploading at once while the next one fills: each holds
    # one part (8 MiB up to 100 GiB) in memory.
    export_parts_in_flight: int = 3
    # A multipart upload under exports/ this old that no live export holds is aborted.
    export_upload_grace_seconds: int = 900


DEFAULT_POLICY = Policy()
