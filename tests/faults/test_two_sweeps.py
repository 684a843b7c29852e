"""Two retention sweeps at once, as two beats (or a beat killed between its send and the
save of the entry's last run) would send them: every expired video deleted once, its
objects removed once, audited once; the two answers add up to the expired videos.

A scheduled task must be safe to run twice in a period (docs/scale.md): each batch of a
sweep claims its rows with ``FOR UPDATE SKIP LOCKED``, so two sweeps side by side take
different rows, and neither waits for the other.
"""

from __future__ import annotations

from datetime import timedelta

from tests.faults.conftest import MAINTENANCE_QUEUE

EXPIRED, FRESH, BATCH = 120, 10, 5


def test_two_retention_sweeps_at_once_delete_each_expired_video_once(
    faults, workers, caller, mall_and_pin
):
    mall, pin = mall_and_pin
    catalog = faults.catalog()
    expired = faults.insert_videos(mall, pin, EXPIRED, age=timedelta(days=120))
    fresh = faults.insert_videos(mall, pin, FRESH, age=timedelta(days=1))
    # Two pool processes: the two sweeps run side by side.
    workers.start()
    kwargs = {"older_than_days": 90, "batch_size": BATCH}
    sweeps = [
        caller.send_task("videos.retention_sweep", kwargs=kwargs, queue=MAINTENANCE_QUEUE)
        for _ in range(2)
    ]
    answers = [sweep.get(timeout=120) for sweep in sweeps]

    assert all(answer["ok"] for answer in answers), answers
    assert sum(answer["data"]["deleted"] for answer in answers) == EXPIRED
    assert faults.video_ids() == {row["id"] for row in fresh}
    audited = faults.audited()
    assert set(audited) == {row["id"] for row in expired}
    assert set(audited.values()) == {1}
    assert not any(catalog.object_exists(row["original_path"]) for row in expired), (
        "an expired video's object outlived both sweeps"
    )
    faults.assert_storage_consistent()
