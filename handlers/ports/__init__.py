"""The ports the video service depends on, one module per room.

Handlers see only these Protocols and the values they pass; ``worker.bootstrap`` wires
the PostgreSQL, S3 and Redis adapters in, and unit tests wire in-memory fakes (each
room's fake is checked against its adapter by ``tests/integration/test_port_contracts_*``).
Each room's port sits in a module of its own name; everything is also importable from
``handlers.ports`` itself.
"""

from __future__ import annotations

from handlers.ports.analytics import (
    SHARE_VIEW,
    AccessLogStore,
    Analytics,
    AnalyticsBuffer,
    AnalyticsSelection,
    DayFigures,
    IngestedLog,
    KeyOwner,
    LogObject,
    Served,
    Tally,
    TopVideoRow,
)
from handlers.ports.catalogue import Catalogue, Window
from handlers.ports.deletions import (
    DeleteReport,
    DeletionAuditLog,
    DeletionQueue,
    PastDeletion,
    QueuedDeletion,
    QueuedKey,
)
from handlers.ports.events import Outbox
from handlers.ports.exports import (
    ArchiveStore,
    Exports,
    MultipartUpload,
    NewExport,
    StoredExport,
    UploadedPart,
)
from handlers.ports.figures import Figures
from handlers.ports.references import References
from handlers.ports.removal import (
    ExpiredSummary,
    Removal,
    RemovedVideo,
    RetentionScope,
    TrashedVideo,
)
from handlers.ports.reprocessing import (
    ReprocessBatch,
    ReprocessCount,
    Reprocessing,
    ReprocessRequest,
)
from handlers.ports.retention import RetentionSettings
from handlers.ports.services import (
    Clock,
    Dispatch,
    Enqueue,
    ObjectStore,
    Publish,
    StatsCache,
    UnitOfWork,
    UnitOfWorkFactory,
)
from handlers.ports.shares import NewShare, SharedFiles, Shares, StoredShare
from handlers.ports.tags import TagChanges, Tags

__all__ = [
    "AccessLogStore",
    "Analytics",
    "AnalyticsBuffer",
    "AnalyticsSelection",
    "ArchiveStore",
    "Catalogue",
    "Clock",
    "DayFigures",
    "DeleteReport",
    "DeletionAuditLog",
    "DeletionQueue",
    "Dispatch",
    "Enqueue",
    "ExpiredSummary",
    "Exports",
    "Figures",
    "IngestedLog",
    "KeyOwner",
    "LogObject",
    "MultipartUpload",
    "UploadedPart",
    "NewExport",
    "NewShare",
    "ObjectStore",
    "Outbox",
    "PastDeletion",
    "Publish",
    "QueuedDeletion",
    "QueuedKey",
    "References",
    "Removal",
    "RemovedVideo",
    "ReprocessBatch",
    "ReprocessCount",
    "ReprocessRequest",
    "Reprocessing",
    "RetentionScope",
    "RetentionSettings",
    "SHARE_VIEW",
    "Served",
    "SharedFiles",
    "Shares",
    "StatsCache",
    "StoredExport",
    "StoredShare",
    "TagChanges",
    "Tags",
    "Tally",
    "TopVideoRow",
    "TrashedVideo",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "Window",
]
