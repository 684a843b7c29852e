"""Typed SQLAlchemy models of the tables the worker reads and writes.

Long because every table is here, in one metadata: the schema test compares it with
what the migrations build, index and constraint names included, so a table missing
from this file is a difference the test reports, not a silent gap.

``malls``, ``camera_pins``, ``videos`` and ``processing_jobs`` belong to the wider
platform (other services write them); their columns follow the message contract.
``storage_deletions`` is this worker's own durable queue of object keys to remove.

The indexes on ``videos`` exist for ``videos.list``: every filter combination is
ordered by ``uploaded_at desc, id desc`` and paged, so each index leads with the
equality filters and ends with that order, letting Postgres stop after one page.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, DATERANGE, JSONB, Range
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

PROCESSING_STATUSES = ("pending", "processing", "completed", "failed")
# Why a video was deleted: a caller (one or in bulk), its age, the trash emptied, a
# mall over its storage quota. The queue's keys may also come from reconcile.
AUDIT_REASONS = ("request", "bulk", "retention", "trash", "quota")
QUEUE_REASONS = (*AUDIT_REASONS, "reconcile")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


Timestamp = DateTime(timezone=True)
RECENT = (text("uploaded_at DESC"), text("id DESC"))
LIVE = "trashed_at IS NULL"
TRASHED = text("trashed_at IS NOT NULL")
# (name part, leading equality columns, predicate) of every videos.list index.
LIVE_INDEXES: tuple[tuple[str, tuple[str, ...], object], ...] = tuple(
    (name, lead, text(where))
    for name, lead, where in (
        ("", (), LIVE),
        ("mall_", ("mall_id",), LIVE),
        ("pin_", ("pin_id",), LIVE),
        ("status_", ("processing_status",), LIVE),
        ("mall_status_", ("mall_id", "processing_status"), LIVE),
        ("pin_status_", ("pin_id", "processing_status"), LIVE),
        # has_proxy is "proxy_path IS NOT NULL" / "IS NULL". PostgreSQL rewrites "= false"
        # on an expression into IS NULL, so an index on the expression never matches;
        # pairs of partial indexes with exactly those predicates do, and each row sits
        # in one index of a pair, so a pair costs about what one full index does.
        ("proxy_", (), f"proxy_path IS NOT NULL AND {LIVE}"),
        ("no_proxy_", (), f"proxy_path IS NULL AND {LIVE}"),
        ("mall_proxy_", ("mall_id",), f"proxy_path IS NOT NULL AND {LIVE}"),
        ("mall_no_proxy_", ("mall_id",), f"proxy_path IS NULL AND {LIVE}"),
        ("pin_proxy_", ("pin_id",), f"proxy_path IS NOT NULL AND {LIVE}"),
        ("pin_no_proxy_", ("pin_id",), f"proxy_path IS NULL AND {LIVE}"),
        ("status_no_proxy_", ("processing_status",), f"proxy_path IS NULL AND {LIVE}"),
    )
)


class Mall(Base):
    __tablename__ = "malls"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(Timestamp, server_default=func.now())


class CameraPin(Base):
    __tablename__ = "camera_pins"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    mall_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("malls.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(Timestamp, server_default=func.now())


class Video(Base):
    __tablename__ = "videos"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    mall_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("malls.id"))
    pin_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("camera_pins.id"))
    original_filename: Mapped[str] = mapped_column(Text)
    original_path: Mapped[str] = mapped_column(Text)
    file_size_bytes: Mapped[int] = mapped_column(BigInteger)
    checksum_sha256: Mapped[str | None] = mapped_column(Text)
    proxy_path: Mapped[str | None] = mapped_column(Text)
    proxy_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    thumbnail_path: Mapped[str | None] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[float | None] = mapped_column(Double)
    duration_seconds: Mapped[float | None] = mapped_column(Double)
    codec: Mapped[str | None] = mapped_column(Text)
    processing_status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    processing_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    processing_error: Mapped[str | None] = mapped_column(Text)
    processing_started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    processing_completed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    uploaded_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    recorded_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime | None] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime | None] = mapped_column(Timestamp, server_default=func.now())
    operator_notes: Mapped[str | None] = mapped_column(Text)
    # Set by operators; every retention sweep skips a held video.
    legal_hold: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # In the trash since then (videos.delete(trash=true)), and by whom (the token's sub).
    trashed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    trashed_by: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(
            "processing_status IN ('pending', 'processing', 'completed', 'failed')",
            name="processing_status",
        ),
        # The retention sweep and the quota take a mall's oldest videos, trashed or not;
        # per-pin statistics read a pin's rows, trashed or not.
        Index("ix_videos_mall_recent", "mall_id", *RECENT),
        Index("ix_videos_pin_recent", "pin_id", *RECENT),
        # videos.list: each filter combination of what is not in the trash, as partial
        # indexes whose predicate carries "trashed_at IS NULL", so a page deep in the
        # list and its count still read the index alone, never the trashed rows.
        *(
            Index(f"ix_videos_live_{name}recent", *lead, *RECENT, postgresql_where=where)
            for name, lead, where in LIVE_INDEXES
        ),
        # The trash: listed newest first, emptied by trashed_at; both small.
        Index("ix_videos_trashed_recent", *RECENT, postgresql_where=TRASHED),
        Index("ix_videos_trashed_at", "trashed_at", postgresql_where=TRASHED),
        # Object-key look-ups: reconcile, and the guard that never deletes a key a row
        # still references.
        Index("ix_videos_original_path", "original_path"),
        Index("ix_videos_proxy_path", "proxy_path"),
        Index("ix_videos_thumbnail_path", "thumbnail_path"),
    )


# The columns of a figure's key, in the order of the count tables' primary keys: per
# pin (migration 0008) and per mall (0009).
COUNT_KEY = ("mall_id", "pin_id", "processing_status", "has_proxy", "trashed")
MALL_COUNT_KEY = ("mall_id", "processing_status", "has_proxy", "trashed")


class _MallCounts:
    """The figures of the videos with one key uploaded in one period (a UTC day or month),
    kept exact by statement-level triggers on ``videos`` (migrations 0008 and 0009): list
    totals and statistics sum a few of these rows instead of counting millions.

    Each writing backend adds to rows of its own (``slot`` is its pid), so concurrent
    writers of one key never wait on each other's row; a reader sums the slots, and the
    stats refresh folds them into slot 0.
    """

    # sort_order: the migrations' column order, a per-pin table's pin after the mall.
    mall_id: Mapped[uuid.UUID] = mapped_column(Uuid, sort_order=1)
    processing_status: Mapped[str] = mapped_column(Text, sort_order=3)
    has_proxy: Mapped[bool] = mapped_column(Boolean, sort_order=4)
    trashed: Mapped[bool] = mapped_column(Boolean, sort_order=5)
    slot: Mapped[int] = mapped_column(Integer, sort_order=6)
    videos: Mapped[int] = mapped_column(BigInteger, sort_order=7)
    # Originals plus proxies; durations within +-1e300 (see migration 0008).
    stored_bytes: Mapped[int] = mapped_column(Numeric, sort_order=8)
    duration_seconds: Mapped[float] = mapped_column(Numeric, sort_order=9)


class _VideoCounts(_MallCounts):
    """Figures per pin as well: what a pin's or a tenant's total sums."""

    pin_id: Mapped[uuid.UUID] = mapped_column(Uuid, sort_order=2)


class _Daily:
    """Per UTC day of ``uploaded_at``: read only near a range's edges, so led by the day."""

    key_columns: ClassVar[tuple[str, ...]]
    period: ClassVar[str] = "day"
    day: Mapped[date] = mapped_column(Date, sort_order=10)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[PrimaryKeyConstraint]:
        name = f"pk_{cls.__tablename__}"  # type: ignore[attr-defined]
        return (PrimaryKeyConstraint("day", *cls.key_columns, "slot", name=name),)


class _Monthly:
    """Per UTC month (its first day): what a total without a date range sums, a few rows
    per key and month whatever the number of videos."""

    key_columns: ClassVar[tuple[str, ...]]
    period: ClassVar[str] = "month"
    month: Mapped[date] = mapped_column(Date, sort_order=10)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[PrimaryKeyConstraint]:
        name = f"pk_{cls.__tablename__}"  # type: ignore[attr-defined]
        return (PrimaryKeyConstraint(*cls.key_columns, "month", "slot", name=name),)


class VideoCountsDaily(_Daily, _VideoCounts, Base):
    __tablename__ = "video_counts_daily"
    key_columns = COUNT_KEY


class VideoCountsMonthly(_Monthly, _VideoCounts, Base):
    __tablename__ = "video_counts_monthly"
    key_columns = COUNT_KEY


class VideoCountsMallDaily(_Daily, _MallCounts, Base):
    """``video_counts_daily`` without the pin: a dated total that names no pin."""

    __tablename__ = "video_counts_mall_daily"
    key_columns = MALL_COUNT_KEY


class VideoCountsMallMonthly(_Monthly, _MallCounts, Base):
    """``video_counts_monthly`` without the pin: what a total or a statistic that names
    no pin sums, a few rows per mall and month."""

    __tablename__ = "video_counts_mall_monthly"
    key_columns = MALL_COUNT_KEY


# Every table of figures: what the fold, the check and the rebuild go over.
FIGURE_MODELS = (VideoCountsDaily, VideoCountsMonthly, VideoCountsMallDaily, VideoCountsMallMonthly)


class ProcessingJob(Base):
    __tablename__ = "processing_jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    video_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("videos.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(Timestamp, server_default=func.now())


class StorageDeletion(Base):
    """One object key waiting to be removed from the bucket.

    A row is written in the same transaction that deletes the video row, so a crash
    between the database commit and the S3 call never leaves an orphan object: the
    key stays here until an S3 delete of it has succeeded.
    """

    __tablename__ = "storage_deletions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    object_key: Mapped[str] = mapped_column(Text)
    video_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    mall_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    reason: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    __table_args__ = (
        CheckConstraint(f"reason IN {QUEUE_REASONS}", name="reason"),
        # purge claims due keys oldest first.
        Index("ix_storage_deletions_due", "next_attempt_at", "id"),
        # reconcile asks whether an unreferenced object is already on its way out.
        Index("ix_storage_deletions_object_key", "object_key"),
        # purge settles a video's audit row once none of its keys is left here.
        Index("ix_storage_deletions_video_id", "video_id"),
    )


class MallRetention(Base):
    """A mall's own retention period (overriding ``RETENTION_DAYS``) and storage quota."""

    __tablename__ = "mall_retention"

    mall_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("malls.id", ondelete="CASCADE"), primary_key=True
    )
    retention_days: Mapped[int | None] = mapped_column(Integer)
    # Originals plus proxies the mall may keep; the sweep deletes its oldest beyond it.
    max_storage_bytes: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    __table_args__ = (
        CheckConstraint("retention_days BETWEEN 1 AND 36500", name="retention_days"),
        CheckConstraint("max_storage_bytes > 0", name="max_storage_bytes"),
        CheckConstraint(
            "retention_days IS NOT NULL OR max_storage_bytes IS NOT NULL", name="something_set"
        ),
    )


class DeletionAudit(Base):
    """One row per deleted video: who asked (request or retention), its keys, the outcome.

    Written in the transaction that deletes the video, then updated once its objects
    are gone (``files_deleted``) or still queued (``files_pending``).
    """

    __tablename__ = "deletion_audit"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    video_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    mall_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    reason: Mapped[str] = mapped_column(String(16))
    object_keys: Mapped[list[str]] = mapped_column(ARRAY(Text))
    outcome: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    # The task that deleted it: a redelivery of that same message is answered again.
    request_id: Mapped[str | None] = mapped_column(Text)
    # Who asked: the caller's token ``sub`` (AUTH_MODE=jwt); null when auth is off.
    actor: Mapped[str | None] = mapped_column(Text)
    # The video's pin, so that answering a request again applies the caller's scope as
    # reads do; null on rows written before it was recorded (seen by no tenant).
    pin_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    __table_args__ = (
        CheckConstraint(f"reason IN {AUDIT_REASONS}", name="reason"),
        CheckConstraint(
            "outcome IN ('files_queued', 'files_kept', 'files_deleted', 'files_pending')",
            name="outcome",
        ),
        Index("ix_deletion_audit_video_id", "video_id"),
        Index("ix_deletion_audit_mall_at", "mall_id", "at"),
        Index("ix_deletion_audit_request_id", "request_id"),
        # Pruning past AUDIT_RETENTION_DAYS, oldest first (migration 0020).
        Index("ix_deletion_audit_at", "at"),
    )


class Tag(Base):
    """A mall's name for some of its videos (migration 0013): one row per name, unique
    within the mall whatever its case, kept as first written."""

    __tablename__ = "tags"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    mall_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("malls.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    __table_args__ = (
        CheckConstraint("char_length(name) BETWEEN 1 AND 64", name="name"),
        Index("uq_tags_mall_id_lower_name", "mall_id", func.lower(text("name")), unique=True),
        Index("ix_tags_lower_name", func.lower(text("name"))),
    )


class VideoSearch(Base):
    """What ``videos.list(q=...)`` reads (migration 0025): each video's file name and
    notes lowered and joined by ``chr(1)``, beside what a list filters by, copied by
    triggers on ``videos``. ``period`` is 30 days of ``uploaded_at`` (``-1 - period`` in
    the trash), the GIN index's first key: a search reads a period at a time, newest
    first, and stops at its cap."""

    __tablename__ = "video_search"
    __table_args__ = (
        Index(
            "ix_video_search_trgm",
            "period",
            "mall_period",
            "pin_period",
            "text",
            "tags",
            postgresql_using="gin",
            postgresql_ops={"text": "gin_trgm_ops"},
        ),
    )

    video_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    period: Mapped[int] = mapped_column(Integer)
    # "<mall_id>:<period>", "<pin_id>:<period>": a scope's rows of one period, one key.
    mall_period: Mapped[str] = mapped_column(Text)
    pin_period: Mapped[str] = mapped_column(Text)
    mall_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    pin_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    uploaded_at: Mapped[datetime] = mapped_column(Timestamp)
    processing_status: Mapped[str] = mapped_column(Text)
    has_proxy: Mapped[bool] = mapped_column(Boolean)
    text: Mapped[str] = mapped_column(Text)
    # The video's tags, lowered: kept by triggers on video_tags and tags.
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")


class VideoSearchPeriod(Base):
    """Every period a ``video_search`` row was ever written in: the periods a search
    visits, newest first (an empty one costs one index probe)."""

    __tablename__ = "video_search_periods"

    period: Mapped[int] = mapped_column(Integer, primary_key=True)


class VideoTag(Base):
    """One tag on one video, and who put it there (the caller's ``sub``)."""

    __tablename__ = "video_tags"

    video_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True
    )
    tagged_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    tagged_by: Mapped[str | None] = mapped_column(Text)
    # The video's, copied so a list by tags reads its page and total here (migration
    # 0019): filled on tagging, kept by a trigger on videos.
    mall_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    pin_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    uploaded_at: Mapped[datetime] = mapped_column(Timestamp)
    trashed: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        Index("ix_video_tags_tag_id_video_id", "tag_id", "video_id"),
        *(
            Index(
                f"ix_video_tags_{name}_tag_recent",
                "tag_id",
                text("uploaded_at DESC"),
                text("video_id DESC"),
                postgresql_include=["mall_id", "pin_id"],
                postgresql_where=text(where),
            )
            for name, where in (("live", "NOT trashed"), ("trashed", "trashed"))
        ),
    )


class Share(Base):
    """A share link (migration 0014): the hash of its token, never the token; the
    Argon2id hash of its password, never the password."""

    __tablename__ = "shares"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary)
    password_hash: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    revoked_by: Mapped[str | None] = mapped_column(Text)
    max_views: Mapped[int | None] = mapped_column(Integer)
    views: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_viewed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    label: Mapped[str | None] = mapped_column(Text)
    targets: Mapped[list[str]] = mapped_column(ARRAY(Text))
    # The malls and pins of the videos shared, when shared: who may see the share.
    mall_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
    pin_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
    video_count: Mapped[int] = mapped_column(Integer)
    # Wrong passwords within the window that began at attempts_since.
    failed_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    attempts_since: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (
        CheckConstraint("octet_length(token_hash) = 32", name="token_hash"),
        CheckConstraint("max_views BETWEEN 1 AND 1000000", name="max_views"),
        CheckConstraint("views >= 0", name="views"),
        CheckConstraint(
            "cardinality(targets) BETWEEN 1 AND 3 "
            "AND targets <@ ARRAY['proxy', 'original', 'thumbnail']::text[]",
            name="targets",
        ),
        CheckConstraint("expires_at > created_at", name="expires_at"),
        CheckConstraint("char_length(label) <= 200", name="label"),
        Index("uq_shares_token_hash", "token_hash", unique=True),
        Index("ix_shares_recent", text("created_at DESC"), text("id DESC")),
    )


class ShareVideo(Base):
    __tablename__ = "share_videos"

    share_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("shares.id", ondelete="CASCADE"), primary_key=True
    )
    video_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # The order the videos were given in: the order a resolve lists them.
    position: Mapped[int] = mapped_column(Integer)


EXPORT_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "expired")


class Export(Base):
    """A ZIP export (migration 0017): its videos, its lease, its upload, its progress."""

    __tablename__ = "exports"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    created_by: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    name: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    include_thumbnails: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    video_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
    # The malls and pins of its videos when asked for: who may see the export.
    mall_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
    pin_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
    bytes_estimated: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(Text, server_default=text("'queued'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    run_token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    object_key: Mapped[str | None] = mapped_column(Text)
    upload_id: Mapped[str | None] = mapped_column(Text)
    done: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    bytes_written: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'expired')",
            name="status",
        ),
        CheckConstraint("target IN ('proxy', 'original')", name="target"),
        CheckConstraint("char_length(name) BETWEEN 1 AND 200", name="name"),
        CheckConstraint("cardinality(video_ids) BETWEEN 1 AND 100000", name="videos"),
        CheckConstraint("status <> 'running' OR run_token IS NOT NULL", name="running"),
        Index("ix_exports_running", "heartbeat_at", postgresql_where=text("status = 'running'")),
        Index("ix_exports_expiring", "expires_at", postgresql_where=text("status = 'completed'")),
        Index("ix_exports_uploads", "upload_id", postgresql_where=text("upload_id IS NOT NULL")),
    )


class ReprocessRequest(Base):
    """A video ``videos.reprocess`` set back to pending, by request (migration 0018):
    ``sent_at`` once the pipeline's message is out."""

    __tablename__ = "reprocess_requests"

    request_id: Mapped[str] = mapped_column(Text, primary_key=True)
    video_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    targets: Mapped[list[str]] = mapped_column(ARRAY(Text))
    requested_by: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (Index("ix_reprocess_requests_video_id", "video_id"),)


class EventOutbox(Base):
    """Events written in the transaction of their change (migration 0012), relayed at
    least once to the stream and the exchange by ``worker.adapters.relay``; the relay
    reads unsent rows by id and prunes sent ones after EVENTS_KEEP_SENT_SECONDS."""

    __tablename__ = "event_outbox"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, server_default=text("gen_random_uuid()"))
    type: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    data: Mapped[dict] = mapped_column(JSONB)
    # Where it went: a bit per sink (stream, exchange), so a retry sends only what is owed.
    relayed: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    retry_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("event_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
        Index(
            "event_outbox_held",
            "subject",
            postgresql_where=text("sent_at IS NULL AND retry_at IS NOT NULL"),
        ),
        Index("event_outbox_sent", "sent_at", postgresql_where=text("sent_at IS NOT NULL")),
        {
            "comment": "Events written in the transaction of their change, relayed at least "
            "once to the stream videos:events (and the exchange videos.events on RabbitMQ) "
            "in id order per subject (migration 0012)."
        },
    )


class VideoDailyAnalytics(Base):
    """A video's figures of one UTC day (migration 0021). Its mall and pin are copied,
    with no foreign key to ``videos``: a deleted video's history still counts."""

    __tablename__ = "video_daily_analytics"

    video_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    mall_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    pin_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    stream_urls: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    thumbnail_urls: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    share_views: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    bytes_served: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))

    __table_args__ = (
        Index("ix_video_daily_analytics_mall_id_day", "mall_id", "day"),
        Index("ix_video_daily_analytics_pin_id_day", "pin_id", "day"),
    )


class VideoSpanAnalytics(Base):
    """A video's stream URLs and bytes over an aligned span of ``2**level`` days (2 to
    256) that has ended, under the mall and pin of the daily rows it sums (migration
    0024): a range's top videos sum a few spans per video, not a row per day.
    ``pin_id`` is the nil UUID for a video with no pin."""

    __tablename__ = "video_span_analytics"

    mall_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    span: Mapped[Range[date]] = mapped_column(DATERANGE)
    video_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    pin_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    stream_urls: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    bytes_served: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))

    __table_args__ = (
        PrimaryKeyConstraint(
            "mall_id",
            "span",
            "video_id",
            "pin_id",
            postgresql_include=["stream_urls", "bytes_served"],
        ),
        Index("ix_video_span_analytics_pin_id_span", "pin_id", "span"),
    )


class AnalyticsSpanProgress(Base):
    """The day every span ending on or before it has been summed (one row)."""

    __tablename__ = "analytics_span_progress"

    one: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=text("true"))
    through: Mapped[date] = mapped_column(Date)

    __table_args__ = (CheckConstraint("one", name="one"),)


class AnalyticsFlush(Base):
    """A Redis flush id folded into ``video_daily_analytics``, in the fold's transaction."""

    __tablename__ = "analytics_flushes"

    flush_id: Mapped[str] = mapped_column(Text, primary_key=True)
    at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class AccessLogObject(Base):
    """An S3 access log object read, by key and ETag, in the transaction of its bytes."""

    __tablename__ = "access_log_objects"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    etag: Mapped[str] = mapped_column(Text, primary_key=True)
    lines: Mapped[int] = mapped_column(BigInteger)
    bytes_counted: Mapped[int] = mapped_column(BigInteger)
    garbage_lines: Mapped[int] = mapped_column(BigInteger)
    ingested_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class MallDailyAnalytics(Base):
    """A mall's figures of one UTC day, added in the fold of the per-video rows
    (migration 0022): a mall's series is a row a day."""

    __tablename__ = "mall_daily_analytics"

    mall_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    stream_urls: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    thumbnail_urls: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    share_views: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    bytes_served: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class PinDailyAnalytics(Base):
    """A pin's figures of one UTC day, with its mall (migration 0022)."""

    __tablename__ = "pin_daily_analytics"

    pin_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    mall_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    stream_urls: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    thumbnail_urls: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    share_views: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    bytes_served: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
