"""Reconciliation of the bucket against the database (``videoworker reconcile``).

S3 lists keys in ascending UTF-8 byte order, and the references room streams the keys rows
reference in the same order, so the two lists are merged like a sort-merge join: one
pass over each, memory bounded by a page whatever the size of the bucket. Out of the
merge come *orphans* (objects no row references) and *missing* objects (keys rows
reference that the bucket does not have).

The guards are policy, decided here: orphans younger than ``min_age`` are left alone
(an upload writes its object before its row), and ``fix`` refuses when the orphans it
would queue are more than ``max_share`` of the bucket (a wrong bucket name or an empty
database must not become a mass deletion). Fixed orphans are queued and removed by the
one removal engine, with its checks under each key's lock.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice

from handlers.deletion import remove_queued
from handlers.deps import Deps
from handlers.ports import QueuedKey

MAX_LISTED = 50  # how many keys of each kind a report shows; counts are always complete
BATCH = 1000


@dataclass(frozen=True, slots=True)
class ReconcileStorage:
    prefix: str = ""
    # None: the policy's defaults.
    min_age: timedelta | None = None
    max_share: float | None = None
    fix: bool = False


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
    removed: int = 0
    refused: str | None = None


def _byte_order(key: str) -> bytes:
    return key.encode("utf-8")


def reconcile_storage(cmd: ReconcileStorage, deps: Deps) -> ReconcileReport:
    min_age = cmd.min_age
    if min_age is None:
        min_age = timedelta(seconds=deps.policy.reconcile_min_age_seconds)
    max_share = deps.policy.reconcile_max_share if cmd.max_share is None else cmd.max_share
    report = ReconcileReport()
    cutoff = deps.clock() - min_age
    # Old orphans are spooled to disk so that the share can be judged before any is queued.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        with deps.uow() as uow:
            objects = deps.store.list_objects(cmd.prefix)
            referenced = uow.references.referenced_keys_in_order(cmd.prefix)
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
        # Orphans already queued for deletion are on their way out: set apart first, so
        # that the share the guard judges is what fixing would really add.
        with tempfile.TemporaryFile("w+", encoding="utf-8") as unqueued:
            for key in _unqueued(deps, _lines(spool), report):
                unqueued.write(key + "\n")
            unqueued.seek(0)
            _act(deps, cmd, _lines(unqueued), report, max_share)
    deps.log.info(
        "storage.reconciled",
        extra={
            "objects": report.objects,
            "orphans": report.orphans,
            "missing": report.missing,
            "fixed": report.fixed,
            "refused": report.refused is not None,
        },
    )
    return report


def _lines(spool) -> Iterator[str]:  # noqa: ANN001 - a text file
    return (line.rstrip("\n") for line in spool)


def _batches(keys: Iterable[str]) -> Iterator[list[str]]:
    iterator = iter(keys)
    while batch := list(islice(iterator, BATCH)):
        yield batch


def _unqueued(deps: Deps, keys: Iterator[str], report: ReconcileReport) -> Iterator[str]:
    for batch in _batches(keys):
        with deps.uow() as uow:
            queued = uow.deletions.queued_among(batch)
        report.orphans_queued_already += len(queued)
        report.orphans -= len(queued)
        yield from (key for key in batch if key not in queued)


def _act(
    deps: Deps,
    cmd: ReconcileStorage,
    orphans: Iterator[str],
    report: ReconcileReport,
    max_share: float,
) -> None:
    """Sample the orphans for the report and, when fixing, queue and remove them."""

    def sampled() -> Iterator[str]:
        for key in orphans:
            if len(report.orphan_sample) < MAX_LISTED:
                report.orphan_sample.append(key)
            yield key

    share = report.orphans / report.objects if report.objects else 0.0
    if cmd.fix and share > max_share:
        report.refused = (
            f"--fix would remove {report.orphans} of {report.objects} objects "
            f"({share:.1%}), more than the {max_share:.0%} allowed; check the "
            "bucket and database, or raise --max-share"
        )
    if not cmd.fix or report.refused is not None:
        for _ in sampled():
            pass
        return
    for batch in _batches(sampled()):
        with deps.uow() as uow:
            ids = uow.deletions.enqueue(
                [
                    QueuedKey(object_key=k, video_id=None, mall_id=None, reason="reconcile")
                    for k in batch
                ],
                not_before=deps.clock(),
            )
            uow.commit()
        report.fixed += len(batch)
        report.removed += len(remove_queued(deps, ids).deleted)
