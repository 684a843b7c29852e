"""Reconciliation of the bucket with the database: ``handlers.reconcile`` and ``videoworker
reconcile`` on a bucket holding every case at once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

import handlers
from handlers.reconcile import ReconcileReport, ReconcileStorage, reconcile_storage
from schemas import PurgeStorage
from tests.support import poll, run_cli

# Rows reference these and the bucket holds them. Upper case sorts before lower case,
# a space before "/", and non-ASCII after all of ASCII in S3's (UTF-8 byte) order, where
# a locale collation would interleave them differently.
REFERENCED = (
    "Zebra/Upper Case.mp4",
    "apple/b.mp4",
    "videos/caf\u00e9 cr\u00e8me.mp4",
    "videos/cafe.mp4",
    "videos/\u65e5\u672c.mp4",
    "videos/\U0001f3a5 clip.mp4",
)
# In the bucket, no row: each sorts right next to a referenced key.
OLD_ORPHANS = ("Zebra/Orphan.mp4", "apple/a orphan.mp4", "videos/caf\u00e9.mp4")
YOUNG_ORPHAN = "videos/young.mp4"
QUEUED_ORPHAN = "videos/queued.mp4"
MISSING = "videos/missing \u00e9.mp4"  # a row's key with no object


def reconcile(deps, *, now: datetime | None = None, **options) -> ReconcileReport:
    clocked = dataclasses.replace(deps, clock=lambda: now) if now else deps
    return reconcile_storage(ReconcileStorage(**options), clocked)


def byte_order(keys) -> list[str]:
    return sorted(keys, key=lambda key: key.encode("utf-8"))


def listed(s3, bucket: str) -> list[tuple[str, datetime]]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [(o["Key"], o["LastModified"]) for page in pages for o in page.get("Contents", [])]


def queued(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT object_key, reason FROM storage_deletions ORDER BY object_key")
        )
        return [(key, reason) for key, reason in rows]


@dataclass
class MixedBucket:
    mall: object
    pin: object
    # A ``now`` for reconcile: with min_age=1h, every object but YOUNG_ORPHAN is old.
    now: datetime
    min_age: timedelta = timedelta(hours=1)


@pytest.fixture
def mixed(catalog, engine, s3, bucket) -> MixedBucket:
    mall = catalog.mall()
    pin = catalog.pin(mall)
    for key in (*REFERENCED, MISSING):
        catalog.video(
            mall, pin, upload_objects=False, proxy=False, thumbnail=False, original_path=key
        )
    for key in (*REFERENCED, *OLD_ORPHANS, QUEUED_ORPHAN):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO storage_deletions (object_key, reason, next_attempt_at)"
                " VALUES (:key, 'request', now() + interval '1 hour')"
            ),
            {"key": QUEUED_ORPHAN},
        )
    oldest_young = max(modified for _, modified in listed(s3, bucket))

    # Written until the server stamps it later than every other object (ms or s precision).
    def written_later() -> datetime | None:
        s3.put_object(Bucket=bucket, Key=YOUNG_ORPHAN, Body=b"x")
        stamped = dict(listed(s3, bucket))[YOUNG_ORPHAN]
        return stamped if stamped > oldest_young else None

    young = poll(written_later, timeout=5, message="the server's clock to move")
    min_age = timedelta(hours=1)
    return MixedBucket(mall, pin, now=oldest_young + min_age + (young - oldest_young) / 2)


def test_the_bucket_lists_in_utf8_byte_order(mixed, s3, bucket):
    keys = [key for key, _ in listed(s3, bucket)]

    assert keys == byte_order(keys)
    assert keys.index("Zebra/Upper Case.mp4") < keys.index("apple/b.mp4")


def test_reconcile_finds_orphans_and_missing_objects_in_one_merge(deps, mixed, engine, s3, bucket):
    report = reconcile(deps, min_age=mixed.min_age, now=mixed.now)

    assert report.objects == len(REFERENCED) + len(OLD_ORPHANS) + 2
    assert report.referenced == len(REFERENCED)
    assert report.orphans == len(OLD_ORPHANS)
    assert report.orphans_too_young == 1
    assert report.orphans_queued_already == 1
    assert report.missing == 1
    assert report.orphan_sample == byte_order(OLD_ORPHANS)
    assert report.missing_sample == [MISSING]
    assert (report.fixed, report.refused) == (0, None)
    assert queued(engine) == [(QUEUED_ORPHAN, "request")]


def test_reconcile_with_a_longer_min_age_leaves_every_orphan_alone(deps, mixed, engine, s3, bucket):
    report = reconcile(deps, min_age=timedelta(days=1), now=mixed.now, fix=True)

    assert (report.orphans, report.orphans_too_young, report.fixed) == (0, 5, 0)
    assert queued(engine) == [(QUEUED_ORPHAN, "request")]


def test_fix_queues_old_orphans_and_removes_them_but_never_a_key_registered_meanwhile(
    mixed, deps, catalog, engine, s3, bucket
):
    revived = OLD_ORPHANS[1]

    class UploadDuringTheScan:
        """The bucket as listed; once the listing is read, an upload registers an orphan."""

        def __init__(self, store) -> None:
            self.store = store

        def list_objects(self, prefix: str = ""):
            yield from self.store.list_objects(prefix)
            catalog.video(
                mixed.mall, mixed.pin, upload_objects=False, proxy=False, thumbnail=False,
                original_path=revived,
            )  # fmt: skip

        def __getattr__(self, name: str):
            return getattr(self.store, name)

    report = reconcile(
        dataclasses.replace(deps, store=UploadDuringTheScan(deps.store)),
        min_age=mixed.min_age,
        now=mixed.now,
        fix=True,
        max_share=0.5,
    )

    assert (report.fixed, report.removed, report.refused) == (len(OLD_ORPHANS), 2, None)
    remaining = {key for key, _ in listed(s3, bucket)}
    assert remaining == {*REFERENCED, revived, YOUNG_ORPHAN, QUEUED_ORPHAN}
    # The revived key left the queue with its object kept; the purge has nothing to do.
    assert queued(engine) == [(QUEUED_ORPHAN, "request")]
    result = handlers.purge_storage(PurgeStorage(), deps)
    assert (result.attempted, result.remaining) == (0, 1)


def test_fix_refuses_when_orphans_exceed_the_share_and_deletes_nothing(
    deps, mixed, engine, s3, bucket
):
    before = {key for key, _ in listed(s3, bucket)}

    report = reconcile(deps, min_age=mixed.min_age, now=mixed.now, fix=True, max_share=0.2)

    assert report.fixed == 0
    assert report.refused is not None and "more than the 20% allowed" in report.refused
    assert queued(engine) == [(QUEUED_ORPHAN, "request")]
    assert {key for key, _ in listed(s3, bucket)} == before


def test_fix_judges_the_share_by_the_orphans_it_would_queue(deps, mixed, engine, s3, bucket):
    # 3 orphans to queue of 11 objects is 27 %; the one already queued is not ours to count.
    report = reconcile(deps, min_age=mixed.min_age, now=mixed.now, fix=True, max_share=0.3)

    assert report.refused is None
    assert (report.orphans, report.orphans_queued_already) == (3, 1)
    assert report.fixed == 3


def test_a_prefix_with_an_underscore_matches_only_itself(deps, catalog, engine, s3, bucket):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    for key in ("cam_1/a.mp4", "camX1/b.mp4"):
        catalog.video(
            mall, pin, upload_objects=False, proxy=False, thumbnail=False, original_path=key
        )
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")

    report = reconcile(deps, prefix="cam_1/", min_age=timedelta(0))

    assert (report.objects, report.referenced, report.orphans) == (1, 1, 0)
    assert (report.missing, report.missing_sample) == (0, [])


# --- videoworker reconcile ----------------------------------------------------------------


def counts(stdout: str) -> dict[str, int]:
    """The six count lines the CLI prints first."""
    lines = stdout.splitlines()[:6]
    return {label.strip(): int(value) for label, value in (ln.rsplit(":", 1) for ln in lines)}


def test_cli_spares_fresh_orphans_reports_refuses_then_fixes(mixed, services, engine, s3, bucket):
    before = {key for key, _ in listed(s3, bucket)}

    # The default --min-age (24h) protects every orphan here, whatever the share.
    fresh = run_cli("reconcile", "--fix", "--max-share", "1", env=services)
    report = run_cli("reconcile", "--min-age", "0s", env=services)
    refused = run_cli("reconcile", "--fix", "--min-age", "0s", env=services)
    after_refusal = {key for key, _ in listed(s3, bucket)}
    queue_after_refusal = queued(engine)
    fixed = run_cli("reconcile", "--fix", "--min-age", "0s", "--max-share", "0.5", env=services)

    assert fresh.returncode == 0, fresh.stderr
    assert counts(fresh.stdout)["orphans too young"] == 5
    assert "queued 0 orphans; removed 0 now" in fresh.stdout

    assert report.returncode == 0, report.stderr
    assert counts(report.stdout) == {
        "objects in bucket": 11,
        "referenced by a row": 6,
        "orphans (older than min)": 4,
        "orphans too young": 0,
        "orphans already queued": 1,
        "rows' objects missing": 1,
    }
    orphans = byte_order([*OLD_ORPHANS, YOUNG_ORPHAN])
    assert report.stdout.splitlines()[6:] == [
        *(f"  orphan  {key}" for key in orphans),
        f"  missing {MISSING}",
    ]

    assert refused.returncode == 1
    assert "videoworker reconcile: refused: --fix would remove" in refused.stderr
    assert "more than the 10% allowed" in refused.stderr
    assert after_refusal == before
    assert queue_after_refusal == [(QUEUED_ORPHAN, "request")]

    assert fixed.returncode == 0, fixed.stderr
    assert "queued 4 orphans; removed 4 now" in fixed.stdout
    assert {key for key, _ in listed(s3, bucket)} == {*REFERENCED, QUEUED_ORPHAN}
    assert queued(engine) == [(QUEUED_ORPHAN, "request")]
