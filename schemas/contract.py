"""The task table: every task of the message contract, declared once.

A row names everything there is to know about one task: its name, its kwargs and its
answer, the handler that serves it, its queue, the roles that may run it, its time
limits, and why running it twice is safe (every task is acknowledged late). Celery's
tasks and routes (``tasks.entrypoints``), the role table (``handlers.access``), the
visibility timeout (``celeryconfig``), the callers' queues (``worker.client``) and the
JSON Schemas (``worker.ops.schema_export``) are all derived from these rows, so a new
task is one row, one request and answer model, and one handler: a part forgotten is an
error when the worker imports its tasks, not a surprise when a message arrives.

Callers import this module too (the typed client): it holds data only, and names each
handler by its import path rather than importing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from schemas.requests import (
    BulkDelete,
    CancelExport,
    CreateShare,
    DeleteVideo,
    ExportStatus,
    ExportVideos,
    FlushAnalytics,
    FlushStaleStats,
    GetAnalytics,
    GetStats,
    GetVideo,
    IngestAccessLogs,
    ListShares,
    ListTags,
    ListVideos,
    PurgeStorage,
    RefreshStats,
    Reprocess,
    ResolveShare,
    RestoreVideo,
    RevokeShare,
    RunExport,
    SignUrl,
    SignUrls,
    SweepExports,
    SweepRetention,
    TagVideos,
)
from schemas.responses import (
    AccessLogIngestResult,
    AnalyticsFlushResult,
    AnalyticsResult,
    BulkDeleteResult,
    ExportQueued,
    ExportRunResult,
    ExportState,
    ExportSweepResult,
    PurgeResult,
    RefreshStatsResult,
    ReprocessResult,
    RestoreResult,
    RetentionSweepResult,
    ShareCreated,
    ShareList,
    ShareResolved,
    ShareRevoked,
    SignUrlsResult,
    TagList,
    TagResult,
    VideoDeleteResponse,
    VideoDetailResponse,
    VideoListResponse,
    VideoStats,
    VideoStreamUrlResponse,
)

REQUESTS_QUEUE = "videos"
MAINTENANCE_QUEUE = "videos.maintenance"
# Exports: long jobs, on a queue of their own so that dedicated workers can run them
# (``-Q videos.export``) without holding up requests; a worker with no -Q consumes it too.
EXPORT_QUEUE = "videos.export"
# Searches handed over by the requests workers when SEARCH_QUEUE is set (a pool of their
# own: gets never wait behind them); a worker with no -Q consumes it too.
SEARCH_QUEUE = "videos.search"
# Messages set aside after repeated worker loss; nothing consumes it but an operator.
DEAD_LETTERS_QUEUE = "videos.dead-letters"
# Each queue is bound to a direct exchange of its own name with a routing key of its own
# name. On RabbitMQ the queues are quorum queues: a caller that declares one must pass
# exactly these arguments, or RabbitMQ refuses the declaration (PRECONDITION_FAILED).
QUORUM_QUEUE_ARGUMENTS = {"x-queue-type": "quorum"}
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


def is_amqp(broker_url: str) -> bool:
    return broker_url.startswith(AMQP_SCHEMES)


Role = Literal["admin", "operator", "tenant"]
ROLES: tuple[Role, ...] = ("admin", "operator", "tenant")
EVERY_ROLE: frozenset[str] = frozenset(ROLES)
MANAGERS: frozenset[str] = frozenset({"admin", "operator"})
ADMIN_ONLY: frozenset[str] = frozenset({"admin"})

# Soft and hard time limits, in seconds, by the kind of work. A caller waits on a
# request; a sweep or a bulk delete works in batches under a budget within its limit.
REQUEST_LIMITS = (20, 30)
SINGLE_CHANGE_LIMITS = (60, 90)
STATS_LIMITS = (120, 150)
PURGE_LIMITS = (240, 300)
BATCHED_LIMITS = (540, 600)
# An export streams up to EXPORT_MAX_BYTES (100 GiB) in one run: hours at worst. Its
# message is acknowledged when the run starts (``acks_late=False``): the export's row,
# with its heartbeat, is what brings a lost run back, not the broker.
EXPORT_RUN_LIMITS = (4 * 3600, 4 * 3600 + 300)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task of the contract (or of the worker's own plumbing, ``internal``)."""

    name: str
    request: type[BaseModel]
    answer: type[BaseModel]
    # The handler's import path, ``package.module.function``: resolved when the worker
    # registers its tasks, never imported by a caller.
    handler: str
    queue: str
    roles: frozenset[str]
    limits: tuple[int, int]
    # Why a second delivery of the same message does no harm: every task is
    # acknowledged late, so a worker lost mid-task means the message runs again.
    rerun: str
    # Queued by the worker itself (a debounced flush), not part of the callers' contract:
    # no JSON Schema is published for it.
    internal: bool = False
    # Its kwargs carry their own credential (a share's token): no ``auth`` is asked for
    # or verified, and no role applies.
    public: bool = False
    # False: acknowledged when it starts, for work longer than a broker keeps a message
    # unacknowledged (RabbitMQ's consumer_timeout, Redis's visibility timeout), whose
    # own durable state (a lease in its row) brings a lost run back.
    acks_late: bool = True

    @property
    def soft_limit(self) -> int:
        return self.limits[0]

    @property
    def hard_limit(self) -> int:
        return self.limits[1]

    @property
    def statement_budget_ms(self) -> int:
        """How long any one database statement of this task may run: half its soft
        limit, so that a statement past it is cancelled by the server and answered
        ``timeout`` with time to spare, instead of the soft limit interrupting the
        driver mid-statement while the server goes on working for nobody."""
        return self.soft_limit * 1000 // 2


_READS_NOTHING_CHANGES = "it only reads"

TASKS: tuple[TaskSpec, ...] = (
    TaskSpec(
        "videos.list",
        ListVideos,
        VideoListResponse,
        "handlers.catalog.list_videos",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        _READS_NOTHING_CHANGES,
    ),
    TaskSpec(
        "videos.get",
        GetVideo,
        VideoDetailResponse,
        "handlers.catalog.get_video",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        _READS_NOTHING_CHANGES,
    ),
    TaskSpec(
        "videos.sign_url",
        SignUrl,
        VideoStreamUrlResponse,
        "handlers.urls.sign_url",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        "signing is computation over a read; a second URL is as valid as the first",
    ),
    TaskSpec(
        "videos.sign_urls",
        SignUrls,
        SignUrlsResult,
        "handlers.urls.sign_urls",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        "signing is computation over a read; a second URL is as valid as the first",
    ),
    TaskSpec(
        "videos.stats",
        GetStats,
        VideoStats,
        "handlers.stats.get_stats",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        "it reads, and at most fills the cache with the same figures",
    ),
    TaskSpec(
        "videos.delete",
        DeleteVideo,
        VideoDeleteResponse,
        "handlers.deletion.delete_video",
        MAINTENANCE_QUEUE,
        MANAGERS,
        SINGLE_CHANGE_LIMITS,
        "a row already gone answers as the audit recorded it, its keys already queued",
    ),
    TaskSpec(
        "videos.restore",
        RestoreVideo,
        RestoreResult,
        "handlers.trash.restore_video",
        MAINTENANCE_QUEUE,
        MANAGERS,
        SINGLE_CHANGE_LIMITS,
        "restoring a video already restored answers not_found",
    ),
    TaskSpec(
        "videos.bulk_delete",
        BulkDelete,
        BulkDeleteResult,
        "handlers.bulk.bulk_delete",
        MAINTENANCE_QUEUE,
        MANAGERS,
        BATCHED_LIMITS,
        "what a first run deleted no longer matches",
    ),
    TaskSpec(
        "videos.refresh_stats",
        RefreshStats,
        RefreshStatsResult,
        "handlers.stats.refresh_stats",
        MAINTENANCE_QUEUE,
        ADMIN_ONLY,
        STATS_LIMITS,
        "it recomputes the same figures from the rows",
    ),
    TaskSpec(
        "videos.retention_sweep",
        SweepRetention,
        RetentionSweepResult,
        "handlers.retention.sweep_retention",
        MAINTENANCE_QUEUE,
        ADMIN_ONLY,
        BATCHED_LIMITS,
        "what a first run deleted is no longer past its cutoff",
    ),
    TaskSpec(
        "videos.purge_storage",
        PurgeStorage,
        PurgeResult,
        "handlers.deletion.purge_storage",
        MAINTENANCE_QUEUE,
        ADMIN_ONLY,
        PURGE_LIMITS,
        "a key already removed has left the queue; S3 deletes are idempotent",
    ),
    TaskSpec(
        "videos.flush_stale_stats",
        FlushStaleStats,
        RefreshStatsResult,
        "handlers.stats.flush_stale_stats",
        MAINTENANCE_QUEUE,
        # Queued by the worker after a delete of any caller allowed to delete; it only
        # recomputes the figures those deletes marked stale.
        EVERY_ROLE,
        STATS_LIMITS,
        "it recomputes the figures marked stale, which a first run already cleared",
        internal=True,
    ),
    TaskSpec(
        "videos.tag",
        TagVideos,
        TagResult,
        "handlers.tagging.tag_videos",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        "a pair already added (or removed) is left as it is",
    ),
    TaskSpec(
        "videos.tags",
        ListTags,
        TagList,
        "handlers.tagging.list_tags",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        _READS_NOTHING_CHANGES,
    ),
    TaskSpec(
        "videos.share",
        CreateShare,
        ShareCreated,
        "handlers.sharing.create_share",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        "a second run makes a second link; the first one's token was never answered, so "
        "nobody holds it, and it expires unused",
    ),
    TaskSpec(
        "videos.share_resolve",
        ResolveShare,
        ShareResolved,
        "handlers.sharing.resolve_share",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        "a second run counts a view of its own and mints URLs of its own, as a second "
        "open of the link would",
        public=True,
    ),
    TaskSpec(
        "videos.share_revoke",
        RevokeShare,
        ShareRevoked,
        "handlers.sharing.revoke_share",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        "a share already revoked is answered revoked again, its first revocation kept",
    ),
    TaskSpec(
        "videos.shares",
        ListShares,
        ShareList,
        "handlers.sharing.list_shares",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        _READS_NOTHING_CHANGES,
    ),
    TaskSpec(
        "videos.export",
        ExportVideos,
        ExportQueued,
        "handlers.exports.export_videos",
        EXPORT_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        "a second run queues a second export of the same videos; the first one's id was "
        "never answered, and its ZIP expires like any other",
    ),
    TaskSpec(
        "videos.export_status",
        ExportStatus,
        ExportState,
        "handlers.exports.export_status",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        "it reads, and signs a URL as valid as the first",
    ),
    TaskSpec(
        "videos.export_cancel",
        CancelExport,
        ExportState,
        "handlers.exports.cancel_export",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        "an export already cancelled (or ended) is answered as it is",
    ),
    TaskSpec(
        "videos.export_run",
        RunExport,
        ExportRunResult,
        "handlers.exports.run_export",
        EXPORT_QUEUE,
        # Queued by the worker for an export whose caller was already judged.
        EVERY_ROLE,
        EXPORT_RUN_LIMITS,
        "a run claims the export with a conditional UPDATE: a second finds it taken (or "
        "ended) and leaves it; one taken up after a lost worker starts a new upload and "
        "aborts the old one",
        internal=True,
        acks_late=False,
    ),
    TaskSpec(
        "videos.export_sweep",
        SweepExports,
        ExportSweepResult,
        "handlers.exports.sweep_exports",
        MAINTENANCE_QUEUE,
        ADMIN_ONLY,
        PURGE_LIMITS,
        "each step is conditional on what it finds: a stale export taken up once, an "
        "upload aborted twice is gone, an expired ZIP deleted twice is gone",
        internal=True,
    ),
    TaskSpec(
        "videos.reprocess",
        Reprocess,
        ReprocessResult,
        "handlers.reprocess.reprocess",
        MAINTENANCE_QUEUE,
        MANAGERS,
        BATCHED_LIMITS,
        "each video a request set back is recorded with it and skipped when the request "
        "runs again, which first sends what it still owed",
    ),
    TaskSpec(
        "videos.analytics",
        GetAnalytics,
        AnalyticsResult,
        "handlers.analytics.analytics",
        REQUESTS_QUEUE,
        EVERY_ROLE,
        REQUEST_LIMITS,
        "it only reads",
    ),
    TaskSpec(
        "videos.flush_analytics",
        FlushAnalytics,
        AnalyticsFlushResult,
        "handlers.analytics.flush_analytics",
        MAINTENANCE_QUEUE,
        ADMIN_ONLY,
        STATS_LIMITS,
        "each flush id is folded in the transaction that records it: one folded before is "
        "dropped, not counted again",
        internal=True,
    ),
    TaskSpec(
        "videos.ingest_access_logs",
        IngestAccessLogs,
        AccessLogIngestResult,
        "handlers.analytics.ingest_access_logs",
        MAINTENANCE_QUEUE,
        ADMIN_ONLY,
        PURGE_LIMITS,
        "each log object's bytes are added in the transaction that records its key and "
        "ETag: one recorded before is not read again",
    ),
)

TASK_OF: dict[str, TaskSpec] = {spec.name: spec for spec in TASKS}
# The callers' contract, and the worker's own plumbing beside it.
TASK_NAMES = tuple(spec.name for spec in TASKS if not spec.internal)
INTERNAL_TASKS = tuple(spec.name for spec in TASKS if spec.internal)
# Every queue a task is routed to, in the order the rows first name them.
QUEUES = tuple(dict.fromkeys(spec.queue for spec in TASKS))
QUEUE_OF = {spec.name: spec.queue for spec in TASKS}
ROUTES = {name: {"queue": queue} for name, queue in QUEUE_OF.items()}
ROLES_OF_TASK: dict[str, frozenset[str]] = {spec.name: spec.roles for spec in TASKS}
# Of the tasks acknowledged late: only their messages wait unacknowledged while they run.
LONGEST_HARD_LIMIT = max(spec.hard_limit for spec in TASKS if spec.acks_late)
# Tasks whose kwargs carry their own credential: no ``auth``, no role.
PUBLIC_TASKS = frozenset(spec.name for spec in TASKS if spec.public)
