"""Export as ZIP, on fakes: the request's judgement, the pipe, the lease and the sweep."""

from __future__ import annotations

import csv
import io
import time
import uuid
import zipfile
from dataclasses import replace
from datetime import timedelta

import pytest

from handlers import exports
from handlers.access import Scope
from handlers.archive import MAX_PARTS, MIB, Names, ReadAhead, part_size_for, safe_component
from handlers.errors import InvalidRequest, NotFound
from schemas.requests import CancelExport, ExportStatus, ExportVideos, RunExport, SweepExports
from tests.unit.fakes import T0, Fakes, make_video

SIZE = 3 * MIB


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


def stock(fakes: Fakes, count: int = 3, size: int = SIZE, **overrides):
    """Videos whose proxies and thumbnails are in the archive's bucket."""
    videos = []
    mall_id = overrides.pop("mall_id", None) or uuid.uuid4()
    filename = overrides.pop("original_filename", "cam_{n}.mov")
    for n in range(count):
        video = make_video(
            mall_id=mall_id,
            original_filename=filename.format(n=n) if "{n}" in filename else filename,
            proxy_size_bytes=size,
            uploaded_at=T0 - timedelta(hours=n + 1),
            **overrides,
        )
        fakes.uow.videos.add(video)
        fakes.archive.put(video.proxy_path, bytes([n % 251]) * size)
        fakes.archive.put(video.original_path, b"o" * 1000)
        fakes.archive.put(video.thumbnail_path, b"\xff\xd8jpeg")
        videos.append(video)
    return videos


def export(fakes: Fakes, **kwargs):
    return exports.export_videos(ExportVideos(**kwargs), fakes.deps)


def run(fakes: Fakes, export_id):
    return exports.run_export(RunExport(export_id=export_id), fakes.deps)


def the_zip(fakes: Fakes, export_id) -> zipfile.ZipFile:
    key = next(k for k in fakes.archive.objects if k.startswith(f"exports/{export_id}/"))
    return zipfile.ZipFile(io.BytesIO(fakes.archive.objects[key]))


def manifest_rows(archive: zipfile.ZipFile) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))


def test_an_export_is_answered_queued_at_once_and_its_run_is_queued(fakes):
    videos = stock(fakes)

    queued = export(fakes, video_ids=[str(v.id) for v in videos])

    assert (queued.status, queued.videos, queued.bytes_estimated) == ("queued", 3, 3 * SIZE)
    assert fakes.enqueue.calls == [("videos.export_run", {"export_id": str(queued.export_id)}, 0)]
    assert fakes.archive.reads == [] and fakes.archive.uploads_in_progress == {}


def test_the_run_writes_a_zip_of_every_video_and_a_manifest(fakes):
    videos = stock(fakes)
    queued = export(fakes, video_ids=[str(v.id) for v in videos], include_thumbnails=True)

    result = run(fakes, queued.export_id)

    archive = the_zip(fakes, queued.export_id)
    assert archive.testzip() is None
    names = archive.namelist()
    assert names[-1] == "manifest.csv"
    first = videos[0]
    stamp = (T0 - timedelta(hours=1)).strftime("%Y-%m-%dT%H-%M-%SZ")
    assert f"Entrance A/{stamp}_cam_0.mp4" in names
    assert f"Entrance A/{stamp}_cam_0.jpg" in names
    assert archive.read(f"Entrance A/{stamp}_cam_0.mp4") == bytes([0]) * SIZE
    assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())
    rows = manifest_rows(archive)
    assert [r["video_id"] for r in rows][:2] == [str(first.id), str(first.id)]
    assert {r["status"] for r in rows} == {"ok"}
    assert result.status == "completed"
    state = exports.export_status(ExportStatus(export_id=queued.export_id), fakes.deps)
    assert state.status == "completed" and state.done == 7 and state.url is not None
    assert state.bytes_written == len(
        fakes.archive.objects[state.url.split("bucket/")[1].split("?")[0]]
    )
    assert fakes.archive.uploads_in_progress == {}
    types = [e.type for e in fakes.uow.events.entries]
    assert types[-1] == "export.completed" and "export.failed" not in types


def test_the_zip_is_uploaded_in_parts_of_at_least_five_mib(fakes):
    videos = stock(fakes, count=4)
    queued = export(fakes, video_ids=[str(v.id) for v in videos])
    parts: list[int] = []
    fakes.archive.on_part = parts.append

    run(fakes, queued.export_id)

    assert parts == [1, 2] and the_zip(fakes, queued.export_id).testzip() is None


def test_a_missing_object_is_listed_in_the_manifest_not_fatal(fakes):
    videos = stock(fakes)
    del fakes.archive.objects[videos[1].proxy_path]
    queued = export(fakes, video_ids=[str(v.id) for v in videos])

    assert run(fakes, queued.export_id).status == "completed"

    rows = manifest_rows(the_zip(fakes, queued.export_id))
    assert [r["status"] for r in rows] == ["ok", "missing", "ok"]
    assert len(the_zip(fakes, queued.export_id).namelist()) == 3


def test_names_are_safe_and_unique():
    assert safe_component("../../etc", "x") == "_.._etc"
    assert safe_component("a\\b/c\x00d\u202ee", "x") == "a_b_c_d_e"
    assert safe_component("..", "fallback") == "fallback"
    assert safe_component("/leading", "x") == "_leading"
    names = Names()
    assert names.claim("Pin", "a.mp4") == "Pin/a.mp4"
    assert names.claim("Pin", "A.mp4") == "Pin/A (2).mp4"
    assert names.claim("Pin", "a.mp4") == "Pin/a (3).mp4"


def test_hostile_pin_and_file_names_never_leave_the_archive(fakes):
    videos = stock(fakes, count=2, pin_name="../..", original_filename="/etc/\x1bpasswd")
    queued = export(fakes, video_ids=[str(v.id) for v in videos])
    run(fakes, queued.export_id)

    for name in the_zip(fakes, queued.export_id).namelist():
        parts = name.split("/")
        assert not name.startswith("/") and ".." not in parts and "\\" not in name
        assert all(ch.isprintable() for ch in name)
    assert len(set(the_zip(fakes, queued.export_id).namelist())) == 3


def test_part_size_keeps_any_export_within_ten_thousand_parts():
    assert part_size_for(10 * MIB) == 8 * MIB
    for total in (4 * 1024**3, 100 * 1024**3, 100 * 1024**3 + 12345):
        assert -(-total // part_size_for(total)) <= MAX_PARTS


def test_a_tenant_may_not_export_originals(fakes):
    videos = stock(fakes)
    deps = replace(fakes.deps, scope=Scope.tenant([videos[0].pin_id]))
    with pytest.raises(exports.OriginalsForbidden):
        exports.export_videos(ExportVideos(video_ids=[str(videos[0].id)], target="original"), deps)


def test_limits_are_refused_with_a_sentence_before_any_work(fakes):
    videos = stock(fakes)
    fakes.policy = replace(fakes.policy, export_max_videos=2)
    with pytest.raises(InvalidRequest, match="at most 2 videos"):
        export(fakes, video_ids=[str(v.id) for v in videos])
    with pytest.raises(InvalidRequest, match="at most 2 videos"):
        export(fakes, filters={"mall_id": str(videos[0].mall_id)})
    fakes.policy = replace(fakes.policy, export_max_videos=10, export_max_bytes=SIZE)
    with pytest.raises(InvalidRequest, match="EXPORT_MAX_BYTES"):
        export(fakes, video_ids=[str(v.id) for v in videos])
    assert fakes.enqueue.calls == [] and fakes.uow.exports.rows == {}


def test_an_export_by_filters_takes_what_the_caller_sees(fakes):
    videos = stock(fakes)
    stock(fakes, count=2)  # another mall
    queued = export(fakes, filters={"mall_id": str(videos[0].mall_id)})
    assert queued.videos == 3


def test_a_video_out_of_scope_is_not_found_and_so_is_its_export(fakes):
    videos = stock(fakes)
    other = stock(fakes, count=1)
    operator = replace(fakes.deps, scope=Scope.operator([videos[0].mall_id]))
    with pytest.raises(NotFound):
        exports.export_videos(ExportVideos(video_ids=[str(other[0].id)]), operator)
    both = export(fakes, video_ids=[str(videos[0].id), str(other[0].id)])
    with pytest.raises(NotFound, match="Export"):
        exports.export_status(ExportStatus(export_id=both.export_id), operator)
    with pytest.raises(NotFound, match="Export"):
        exports.cancel_export(CancelExport(export_id=both.export_id), operator)


def test_cancel_stops_the_run_within_one_part_and_aborts_its_upload(fakes):
    # 48 MiB: six parts of 8 MiB, more than the first and those in flight behind it.
    videos = stock(fakes, count=16)
    queued = export(fakes, video_ids=[str(v.id) for v in videos])
    parts: list[int] = []

    def cancel_after_first(number: int) -> None:
        parts.append(number)
        if number == 1:
            with fakes.uow() as uow:
                uow.exports.cancel(Scope.admin(), queued.export_id, T0, "Export cancelled.")
                uow.commit()

    fakes.archive.on_part = cancel_after_first
    result = run(fakes, queued.export_id)

    assert result.status == "cancelled"
    # At most the parts already uploading when the cancel was seen (they finish, in the
    # time of one part); never one sent after it.
    in_flight = fakes.deps.policy.export_parts_in_flight
    assert 1 + in_flight < 6
    assert parts == list(range(1, len(parts) + 1)) and len(parts) <= 1 + in_flight
    assert fakes.archive.uploads_in_progress == {}
    assert not any(k.startswith("exports/") for k in fakes.archive.objects)


def test_a_part_that_keeps_failing_fails_the_export_with_a_sentence(fakes):
    videos = stock(fakes, count=4)
    queued = export(fakes, video_ids=[str(v.id) for v in videos])
    fakes.archive.part_failures = [2]

    result = run(fakes, queued.export_id)

    assert result.status == "failed"
    state = exports.export_status(ExportStatus(export_id=queued.export_id), fakes.deps)
    assert state.status == "failed" and state.error.startswith("S3 failed while the ZIP")
    assert fakes.archive.uploads_in_progress == {}
    assert fakes.uow.events.of_type("export.failed")


def test_a_second_run_leaves_an_export_held_by_a_live_run(fakes):
    videos = stock(fakes)
    queued = export(fakes, video_ids=[str(v.id) for v in videos])
    with fakes.uow() as uow:
        uow.exports.claim(queued.export_id, uuid.uuid4(), T0, T0 - timedelta(seconds=90))
        uow.commit()

    assert run(fakes, queued.export_id).status == "running"
    assert fakes.archive.reads == []


def test_a_run_taken_up_after_its_worker_was_lost_starts_again_and_aborts_the_old_upload(fakes):
    videos = stock(fakes)
    queued = export(fakes, video_ids=[str(v.id) for v in videos])
    lost = fakes.archive.start_upload(f"exports/{queued.export_id}/x.zip", "application/zip")
    with fakes.uow() as uow:
        token = uuid.uuid4()
        uow.exports.claim(queued.export_id, token, T0, T0)
        uow.exports.set_upload(queued.export_id, token, f"exports/{queued.export_id}/x.zip", lost)
        uow.commit()
    fakes.clock.advance(timedelta(minutes=5))

    swept = exports.sweep_exports(SweepExports(), fakes.deps)
    assert swept.restarted == 1 and fakes.enqueue.calls[-1][0] == "videos.export_run"
    assert run(fakes, queued.export_id).status == "completed"

    assert lost in fakes.archive.aborted and fakes.archive.uploads_in_progress == {}
    assert fakes.uow.exports.rows[queued.export_id].export.attempts == 2


def test_an_export_lost_too_often_fails_and_its_upload_is_aborted(fakes):
    videos = stock(fakes)
    queued = export(fakes, video_ids=[str(v.id) for v in videos])
    key = f"exports/{queued.export_id}/x.zip"
    upload = fakes.archive.start_upload(key, "application/zip")
    for _ in range(fakes.policy.export_max_attempts):
        with fakes.uow() as uow:
            token = uuid.uuid4()
            uow.exports.claim(queued.export_id, token, fakes.clock(), fakes.clock())
            uow.exports.set_upload(queued.export_id, token, key, upload)
            uow.commit()
        fakes.clock.advance(timedelta(minutes=5))

    swept = exports.sweep_exports(SweepExports(), fakes.deps)

    assert (swept.restarted, swept.failed) == (0, 1)
    state = exports.export_status(ExportStatus(export_id=queued.export_id), fakes.deps)
    assert state.status == "failed" and "lost 3 times" in state.error
    assert fakes.archive.uploads_in_progress == {}


def test_the_sweep_aborts_old_uploads_nobody_holds_and_expires_old_zips(fakes):
    videos = stock(fakes)
    queued = export(fakes, video_ids=[str(v.id) for v in videos])
    run(fakes, queued.export_id)
    fakes.archive.start_upload("exports/orphan/a.zip", "application/zip")
    fakes.clock.advance(timedelta(hours=fakes.policy.export_ttl_hours, seconds=1))

    swept = exports.sweep_exports(SweepExports(), fakes.deps)

    assert (swept.uploads_aborted, swept.expired) == (1, 1)
    assert not any(k.startswith("exports/") for k in fakes.archive.objects)
    state = exports.export_status(ExportStatus(export_id=queued.export_id), fakes.deps)
    assert state.status == "expired" and state.url is None


def test_the_url_never_outlives_the_zip(fakes):
    videos = stock(fakes, count=1)
    queued = export(fakes, video_ids=[str(videos[0].id)])
    run(fakes, queued.export_id)
    fakes.clock.advance(timedelta(hours=fakes.policy.export_ttl_hours, minutes=-10))

    state = exports.export_status(
        ExportStatus(export_id=queued.export_id, expires_minutes=60), fakes.deps
    )

    assert state.expires_at == T0 + timedelta(hours=fakes.policy.export_ttl_hours)
    assert fakes.store.presigned[-1][1] == 600


def test_a_queued_export_whose_run_was_lost_is_sent_again_once_per_period(fakes):
    videos = stock(fakes)
    queued = export(fakes, video_ids=[str(v.id) for v in videos])
    fakes.enqueue.calls.clear()  # the run message that never reaches a worker
    minutes = fakes.policy.export_requeue_minutes

    fakes.clock.advance(timedelta(minutes=minutes) - timedelta(seconds=1))
    early = exports.sweep_exports(SweepExports(), fakes.deps)
    fakes.clock.advance(timedelta(seconds=2))
    due = exports.sweep_exports(SweepExports(), fakes.deps)
    again = exports.sweep_exports(SweepExports(), fakes.deps)

    assert (early.requeued, due.requeued, again.requeued) == (0, 1, 0)
    assert fakes.enqueue.calls == [("videos.export_run", {"export_id": str(queued.export_id)}, 0)]
    fakes.clock.advance(timedelta(minutes=minutes, seconds=1))
    assert exports.sweep_exports(SweepExports(), fakes.deps).requeued == 1


def test_a_run_sent_again_runs_the_export_once_and_the_duplicate_exits(fakes):
    videos = stock(fakes)
    queued = export(fakes, video_ids=[str(v.id) for v in videos])
    fakes.clock.advance(timedelta(minutes=fakes.policy.export_requeue_minutes, seconds=1))
    assert exports.sweep_exports(SweepExports(), fakes.deps).requeued == 1

    first = run(fakes, queued.export_id)
    reads = len(fakes.archive.reads)
    duplicate = run(fakes, queued.export_id)

    assert (first.status, duplicate.status) == ("completed", "completed")
    assert len(fakes.archive.reads) == reads
    assert fakes.uow.exports.rows[queued.export_id].export.attempts == 1
    assert exports.sweep_exports(SweepExports(), fakes.deps).requeued == 0


def test_a_cancelled_or_running_export_is_never_sent_again_as_queued(fakes):
    videos = stock(fakes)
    cancelled = export(fakes, video_ids=[str(videos[0].id)])
    running = export(fakes, video_ids=[str(videos[1].id)])
    exports.cancel_export(CancelExport(export_id=cancelled.export_id), fakes.deps)
    with fakes.uow() as uow:
        uow.exports.claim(running.export_id, uuid.uuid4(), fakes.clock(), fakes.clock())
        uow.commit()
    fakes.enqueue.calls.clear()
    fakes.clock.advance(timedelta(minutes=fakes.policy.export_requeue_minutes, seconds=1))

    with fakes.uow() as uow:
        token = uuid.uuid4()
        uow.exports.claim(running.export_id, token, fakes.clock(), fakes.clock())
        uow.commit()
    swept = exports.sweep_exports(SweepExports(), fakes.deps)

    assert swept.requeued == 0 and fakes.enqueue.calls == []


def _objects(sizes: dict[str, int], opened: list[str], closed: list[str]):
    def read(key: str, size: int):
        opened.append(key)
        try:
            for n in range(0, size, 3):
                yield f"{key}:{n};".encode()
        finally:
            closed.append(key)

    return read


def test_read_ahead_hands_out_each_objects_bytes_in_order_and_reads_ahead():
    sizes = {"a": 9, "b": 6, "c": 3}
    opened, closed = [], []
    read = _objects(sizes, opened, closed)
    ahead = ReadAhead(read, list(sizes.items()), chunks=2)

    first = list(ahead.read("a", 9))
    for _ in range(100):  # the thread is past "a" and waiting on a full queue in "b"
        if "b" in opened:
            break
        time.sleep(0.01)

    assert first == [b"a:0;", b"a:3;", b"a:6;"]
    assert "b" in opened
    assert list(ahead.read("b", 6)) == [b"b:0;", b"b:3;"]
    assert list(ahead.read("c", 3)) == [b"c:0;"]
    ahead.close()
    assert closed == ["a", "b", "c"]


def test_read_ahead_raises_the_readers_error_in_the_writer_and_refuses_another_order():
    def failing(key: str, size: int):
        yield b"x"
        raise OSError("S3 went away")

    ahead = ReadAhead(failing, [("a", 2)], chunks=4)
    got = ahead.read("a", 2)
    assert next(got) == b"x"
    with pytest.raises(OSError, match="S3 went away"):
        next(got)
    ahead.close()

    ahead = ReadAhead(_objects({}, [], []), [("a", 3), ("b", 3)], chunks=4)
    with pytest.raises(RuntimeError, match="out of order"):
        list(ahead.read("b", 3))
    ahead.close()


def test_closing_read_ahead_stops_a_reader_blocked_on_a_full_queue_and_closes_its_stream():
    opened, closed = [], []
    ahead = ReadAhead(_objects({}, opened, closed), [("big", 3000)], chunks=1)
    stream = ahead.read("big", 3000)
    next(stream)

    ahead.close()

    assert closed == ["big"]
    assert opened == ["big"]
