"""Rows that share an object key, deleted at the same moment by different processes.

Each pair of videos shares its thumbnail (as a pipeline that reuses a poster frame
would). Both rows of a pair are deleted at once, by the two pool processes of a real
worker: with the reference check inside each deleting transaction, each could see
the other row still there and neither would queue the key, leaving an object no row
and no queue entry points at. The removal engine decides at removal time, under the
key's lock, so the last remover of a key always sees no row left.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import insert

from worker.adapters.postgres.tables import Video

# Run once, in `make test`, whatever the broker:
# the race is between two removers in PostgreSQL and S3.
pytestmark = pytest.mark.broker_independent


PAIRS = 100
RUNS = 3


def insert_pairs(faults, mall: uuid.UUID, pin: uuid.UUID, pairs: int, *, age: timedelta):
    """``pairs`` videos with all three objects, each with a partner row on its thumbnail."""
    firsts = faults.insert_videos(mall, pin, pairs, age=age)
    partners = []
    for index, first in enumerate(firsts):
        video_id = uuid.uuid4()
        partners.append(
            {
                "id": video_id,
                "mall_id": mall,
                "pin_id": pin,
                "original_filename": f"partner_{index:04d}.mp4",
                "original_path": f"videos/{mall}/original/{video_id}.mp4",
                "file_size_bytes": 1_000_000,
                "thumbnail_path": first["thumbnail_path"],
                "processing_status": "pending",
                # Right next to its partner in a sweep's oldest-first order.
                "uploaded_at": first["uploaded_at"] - timedelta(microseconds=1),
            }
        )
    with faults.engine.begin() as conn:
        conn.execute(insert(Video.__table__), partners)
    for partner in partners:
        faults.s3.put_object(Bucket=faults.bucket, Key=partner["original_path"], Body=b"\x00")
    return list(zip(firsts, partners, strict=True))


def orphans(faults) -> set[str]:
    """Objects that no row references and no queued deletion will ever remove."""
    return faults.bucket_keys() - faults.row_keys() - set(faults.queued_keys())


@pytest.mark.parametrize("run", range(RUNS))
def test_concurrent_deletes_of_rows_sharing_a_key_leave_no_orphan(
    run, faults, module_worker, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    pairs = insert_pairs(faults, mall, pin, PAIRS, age=timedelta(days=1))

    results = []
    for first, partner in pairs:
        # Back to back, so the two pool processes take the two rows of a pair together.
        for row in (first, partner):
            results.append(
                caller.send_task(
                    "videos.delete",
                    kwargs={"video_id": str(row["id"])},
                    queue="videos.maintenance",
                )
            )
    answers = [result.get(timeout=120) for result in results]

    assert all(answer["ok"] for answer in answers), [a for a in answers if not a["ok"]][:3]
    assert faults.video_ids() == set()
    assert orphans(faults) == set(), f"run {run}: {len(orphans(faults))} orphans"
    faults.assert_storage_consistent()
    # Whatever is still queued goes with the next purge; then nothing is left at all.
    faults.assert_purged_clean(caller)
    assert faults.bucket_keys() == set()


@pytest.mark.parametrize("run", range(RUNS))
def test_two_sweeps_at_once_over_rows_sharing_keys_leave_no_orphan(
    run, faults, module_worker, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    insert_pairs(faults, mall, pin, 30, age=timedelta(days=200))

    sweeps = [
        caller.send_task(
            "videos.retention_sweep",
            kwargs={"older_than_days": 90, "batch_size": 1},
            queue="videos.maintenance",
        )
        for _ in range(2)
    ]
    answers = [sweep.get(timeout=180) for sweep in sweeps]

    assert all(answer["ok"] for answer in answers), answers
    assert sum(answer["data"]["deleted"] for answer in answers) == 60
    assert faults.video_ids() == set()
    assert orphans(faults) == set(), f"run {run}: {len(orphans(faults))} orphans"
    assert max(faults.audited().values()) == 1
    faults.assert_purged_clean(caller)
    assert faults.bucket_keys() == set()
