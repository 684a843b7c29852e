"""Reconciliation of the bucket against the database (``videoworker reconcile``).

S3 lists keys in ascending UTF-8 byte order, and PostgreSQL can stream the keys rows
reference in the same order (``COLLATE "C"``), so the two lists are merged like a
sort-merge join: one pass over each, memory bounded by a page, whatever the size of
the bucket. Out of the merge come *orphans* (objects no row references) and *missing*
objects (keys rows reference that the bucket does not have).

Orphans younger than ``min_age`` are left alone: an upload writes its object before
its row. ``--fix`` queues old orphans in ``storage_deletions`` (reason ``reconcile``)
and removes them through the same path as every other delete, and refuses when they
would be more than ``max_share`` of the bucket: a wrong bucket name or an empty
database must not become a mass deletion.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, literal_column, select, union_all

from handlers.ports import QueuedKey
from worker.db import PostgresDeletionQueue, deletions, videos

MAX_LISTED = 50  # how many keys of each kind a report shows; counts are always complete


@dataclass
class ReconcileReport:
    objects: int = 0
    referenced: int = 0
    orphans: int = 0
    orphans_too_young: int = 0
    orphans_queued_already: int = 0
    missing: int = 0
    orphan_sample: list[str] = field(default_factory=list)
    missing_sample: list[str] = field(default_factory=list)
    fixed: int = 0
    refused: str | None = None


def _bucket_keys(client: Any, bucket: str, prefix: str) -> Iterator[tuple[str, datetime]]:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": 1000}
    ):
        for item in page.get("Contents", []):
            yield item["Key"], item["LastModified"]


def _referenced_keys(engine: Engine, prefix: str) -> Iterator[str]:
    parts = [
        select(column.label("k")).where(
            column.is_not(None), column.startswith(prefix, autoescape=True)
        )
        for column in (videos.c.original_path, videos.c.proxy_path, videos.c.thumbnail_path)
    ]
    keys = union_all(*parts).subquery()
    # Byte order, as S3 lists keys; the collation must be in the select list for DISTINCT.
    stmt = select(keys.c.k.collate("C").label("k")).distinct().order_by(literal_column("k"))
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=2000).execute(stmt)
        for (key,) in result:
            yield key


def _byte_order(key: str) -> bytes:
    return key.encode("utf-8")


def reconcile(
    engine: Engine,
    client: Any,
    bucket: str,
    *,
    prefix: str = "",
    min_age: timedelta = timedelta(hours=24),
    fix: bool = False,
    max_share: float = 0.1,
    now: datetime | None = None,
) -> ReconcileReport:
    report = ReconcileReport()
    cutoff = (now or datetime.now(UTC)) - min_age
    objects = _bucket_keys(client, bucket, prefix)
    referenced = _referenced_keys(engine, prefix)
    # Old orphans are spooled to disk so that --fix can act after the share is known.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        obj = next(objects, None)
        ref = next(referenced, None)
        while obj is not None or ref is not None:
            if ref is None or (obj is not None and _byte_order(obj[0]) < _byte_order(ref)):
                key, modified = obj  # type: ignore[misc]
                report.objects += 1
                if modified > cutoff:
                    report.orphans_too_young += 1
                else:
                    report.orphans += 1
                    spool.write(key + "\n")
                obj = next(objects, None)
            elif obj is None or _byte_order(ref) < _byte_order(obj[0]):
                report.missing += 1
                if len(report.missing_sample) < MAX_LISTED:
                    report.missing_sample.append(ref)
                ref = next(referenced, None)
            else:
                report.objects += 1
                report.referenced += 1
                obj = next(objects, None)
                ref = next(referenced, None)

        spool.seek(0)
        # Orphans already queued for deletion are set apart first, so that the share
        # the --fix guard judges is what --fix would really add.
        with tempfile.TemporaryFile("w+", encoding="utf-8") as unqueued:
            for key in _unqueued(engine, (line.rstrip("\n") for line in spool), report):
                unqueued.write(key + "\n")
            unqueued.seek(0)
            orphans = (line.rstrip("\n") for line in unqueued)
            _act(engine, orphans, report, fix=fix, max_share=max_share)
    return report


def _act(
    engine: Engine, orphans: Iterator[str], report: ReconcileReport, *, fix: bool, max_share: float
) -> None:
    """Sample the orphans for the report and, with ``fix``, queue them if the guard allows."""

    def sampled() -> Iterator[str]:
        for key in orphans:
            if len(report.orphan_sample) < MAX_LISTED:
                report.orphan_sample.append(key)
            yield key

    share = report.orphans / report.objects if report.objects else 0.0
    if fix and share > max_share:
        report.refused = (
            f"--fix would remove {report.orphans} of {report.objects} objects "
            f"({share:.1%}), more than the {max_share:.0%} allowed; check the "
            "bucket and database, or raise --max-share"
        )
    if fix and report.refused is None:
        report.fixed = _queue_orphans(engine, sampled())
    else:
        for _ in sampled():
            pass


def _unqueued(engine: Engine, keys: Iterator[str], report: ReconcileReport) -> Iterator[str]:
    """Drop orphans already waiting in the deletion queue; they are on their way out."""
    batch: list[str] = []

    def flush() -> Iterator[str]:
        with engine.connect() as conn:
            queued = set(
                conn.execute(
                    select(deletions.c.object_key).where(deletions.c.object_key.in_(batch))
                ).scalars()
            )
        report.orphans_queued_already += len(queued)
        report.orphans -= len(queued)
        yield from (key for key in batch if key not in queued)

    for key in keys:
        batch.append(key)
        if len(batch) == 1000:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


def _queue_orphans(engine: Engine, keys: Iterator[str]) -> int:
    """Queue orphans for deletion, due at once; purge removes them with its usual checks."""
    total = 0
    batch: list[str] = []

    def flush() -> int:
        with engine.begin() as conn:
            PostgresDeletionQueue(conn).enqueue(
                [
                    QueuedKey(object_key=k, video_id=None, mall_id=None, reason="reconcile")
                    for k in batch
                ],
                not_before=datetime.now(UTC),
            )
        return len(batch)

    for key in keys:
        batch.append(key)
        if len(batch) == 1000:
            total += flush()
            batch = []
    if batch:
        total += flush()
    return total
