"""An export through its faults: its worker killed halfway, S3 cut for 10 s mid-part.

Either way the export ends ``completed`` (taken up again: a new upload, the old one
aborted) or ``failed`` with a sentence, and no multipart upload is left behind. The
sweep beat would send (``videos.export_sweep``) is sent by the test, after a lease
shortened to a few seconds. Some 64 MiB of videos, each request slowed by the proxy so
that the export is still running when the fault comes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.support import poll

VIDEOS = 8
SIZE = 8 * 1024 * 1024
LEASE_SECONDS = 10


@pytest.fixture
def export_env(faults) -> Iterator[None]:
    faults.env["EXPORT_LEASE_SECONDS"] = str(LEASE_SECONDS)
    try:
        yield
    finally:
        faults.env.pop("EXPORT_LEASE_SECONDS", None)
        with faults.engine.begin() as conn:
            conn.execute(text("DELETE FROM exports"))


def arrange(faults, mall_and_pin) -> list[str]:
    mall, pin = mall_and_pin
    rows = faults.insert_videos(mall, pin, VIDEOS, age=timedelta(days=1))
    body = bytes(range(256)) * (SIZE // 256)
    for row in rows:
        faults.s3.put_object(Bucket=faults.bucket, Key=row["proxy_path"], Body=body)
    with faults.engine.begin() as conn:
        conn.execute(text("UPDATE videos SET proxy_size_bytes = :s"), {"s": SIZE})
    return [str(row["id"]) for row in rows]


def data(caller, task: str, queue: str, **kwargs) -> dict:
    envelope = caller.send_task(task, kwargs=kwargs, queue=queue).get(timeout=60)
    assert envelope["ok"] is True, envelope
    return envelope["data"]


def progress(faults, export_id: str) -> tuple[str, int, int]:
    with faults.engine.connect() as conn:
        row = conn.execute(
            text("SELECT status, bytes_written, bytes_estimated FROM exports WHERE id = :i"),
            {"i": uuid.UUID(export_id)},
        ).one()
    return row.status, row.bytes_written, row.bytes_estimated


def ends_cleanly(faults, caller, export_id: str) -> dict:
    state: dict = {}

    def ended() -> bool:
        # What beat would do every 30 s: take up a run whose heartbeat went stale.
        data(caller, "videos.export_sweep", "videos.maintenance")
        state.update(data(caller, "videos.export_status", "videos", export_id=export_id))
        return state["status"] in ("completed", "failed")

    poll(ended, timeout=180, interval=1.0, message="the export to end")
    if state["status"] == "failed":
        assert state["error"] and state["error"].endswith(("again", "videos")), state
    poll(
        lambda: not faults.s3.list_multipart_uploads(Bucket=faults.bucket).get("Uploads"),
        timeout=30,
        message="no multipart upload left",
    )
    return state


def test_a_worker_killed_halfway_is_taken_up_and_leaves_no_upload(
    faults, workers, caller, mall_and_pin, export_env
):
    ids = arrange(faults, mall_and_pin)
    first = workers.start()
    faults.proxy.delay(0.3)
    queued = data(caller, "videos.export", "videos.export", video_ids=ids)

    def halfway() -> bool:
        _, written, estimated = progress(faults, queued["export_id"])
        return written >= estimated // 2

    poll(halfway, timeout=120, interval=0.1, message="the export halfway")
    first.kill()
    faults.proxy.heal()
    workers.start()

    state = ends_cleanly(faults, caller, queued["export_id"])

    assert state["status"] == "completed", state
    assert state["bytes_written"] > VIDEOS * SIZE


def test_s3_cut_for_ten_seconds_mid_part_costs_a_pause_not_the_export(
    faults, workers, caller, mall_and_pin, export_env
):
    ids = arrange(faults, mall_and_pin)
    workers.start()
    faults.proxy.delay(0.2)
    queued = data(caller, "videos.export", "videos.export", video_ids=ids)
    poll(
        lambda: progress(faults, queued["export_id"])[1] > 0,
        timeout=120,
        interval=0.1,
        message="a first part written",
    )
    faults.proxy.stop()
    time.sleep(10)  # the outage itself, not a wait for something to happen
    faults.proxy.start()
    faults.proxy.heal()

    state = ends_cleanly(faults, caller, queued["export_id"])

    assert state["status"] in ("completed", "failed"), state
