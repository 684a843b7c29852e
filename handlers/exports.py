"""Export as ZIP: many videos in one archive, streamed from S3 into S3.

Long because an export is one job with three entry points (the request, the run and the
sweep) around one lease; they are read together to see that every way out of a run
completes or aborts its multipart upload.

``videos.export`` judges the request (scope, target, limits) and answers at once; the
ZIP is written by ``videos.export_run``, a task of its own on the export queue, whose
message is acknowledged when it starts: what brings a lost run back is the export's
row. A run holds the export by a token and a heartbeat, beaten after every part (the
moment it also learns of a cancellation); ``videos.export_sweep``, from beat, takes up
a running export whose heartbeat went stale (a new run, a new upload, the old one
aborted) at most ``export_max_attempts`` times, then fails it with a sentence, and sends
again the run of an export still queued after ``EXPORT_REQUEUE_MINUTES``. Whatever
ends a run (done, cancelled, failed, taken over), its multipart upload is completed or
aborted; the sweep also aborts any upload under ``exports/`` that no running export
holds, and deletes each ZIP ``EXPORT_TTL_HOURS`` after it completed.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from handlers.access import UNRESTRICTED
from handlers.archive import (
    READ_AHEAD_CHUNKS,
    Entry,
    PartWriter,
    ReadAhead,
    build_zip,
    part_size_for,
    plan_entries,
    present,
    safe_component,
)
from handlers.deps import Deps
from handlers.errors import InvalidRequest, NotFound, StorageUnavailable, VideoError
from handlers.ports import ArchiveStore, NewExport, StoredExport
from schemas.contract import MANAGERS
from schemas.events import ExportCompletedData, ExportFailedData, ExportProgressData
from schemas.requests import (
    CancelExport,
    ExportStatus,
    ExportVideos,
    ListVideos,
    RunExport,
    SweepExports,
)
from schemas.responses import (
    ExportQueued,
    ExportRunResult,
    ExportState,
    ExportSweepResult,
    VideoDetailResponse,
)

RUN_TASK = "videos.export_run"
PREFIX = "exports/"
ZIP_TYPE = "application/zip"
# Pages of this many ids when a selection is made by filters (the list's largest page).
SELECT_PAGE = 100
# Objects looked up at once before the ZIP is planned.
HEAD_THREADS = 8
STALE_BATCH = 100
EXPIRE_BATCH = 500
CANCELLED = "Export cancelled."


class OriginalsForbidden(VideoError):
    code = "forbidden"


class _Stop(Exception):
    """The run must stop: its export was cancelled, or another run holds it now."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def _not_found(export_id: UUID) -> NotFound:
    return NotFound(f"Export {export_id} not found")


def _refuse(detail: str, loc: str) -> InvalidRequest:
    return InvalidRequest(detail, [{"loc": [loc], "msg": detail}])


def _stored_bytes(video: VideoDetailResponse, target: str) -> int:
    if target == "original":
        return video.file_size_bytes or 0
    return (video.proxy_size_bytes or 0) if video.proxy_path else 0


def _select(cmd: ExportVideos, deps: Deps) -> list[VideoDetailResponse]:
    """The videos the caller sees (not in the trash), in the order given, or newest
    first by filter; more than the limit is refused before anything else is read."""
    limit = deps.policy.export_max_videos
    too_many = (
        "An export takes at most {limit} videos (EXPORT_MAX_VIDEOS); this selection has "
        "{count}: narrow it, or export it in parts"
    )
    with deps.reads() as uow:
        if cmd.video_ids is not None:
            if len(cmd.video_ids) > limit:
                raise _refuse(too_many.format(limit=limit, count=len(cmd.video_ids)), "video_ids")
            found = uow.catalogue.get_many(deps.scope, cmd.video_ids)
            missing = [video_id for video_id in cmd.video_ids if video_id not in found]
            if missing:
                if len(missing) == 1:
                    raise NotFound.video(missing[0])
                raise NotFound(f"Videos {', '.join(str(i) for i in missing)} not found")
            return [found[video_id] for video_id in cmd.video_ids]
        assert cmd.filters is not None
        filters = cmd.filters.model_dump(exclude_none=True)
        ids: list[UUID] = []
        page = 1
        while True:
            query = ListVideos.model_validate({**filters, "page": page, "page_size": SELECT_PAGE})
            items, total = uow.catalogue.list(deps.scope, query)
            if total > limit:
                raise _refuse(too_many.format(limit=limit, count=total), "filters")
            ids.extend(item.id for item in items)
            if len(items) < SELECT_PAGE or len(ids) >= total:
                break
            page += 1
        if not ids:
            raise NotFound("No video matches these filters")
        found = uow.catalogue.get_many(deps.scope, ids)
        return [found[video_id] for video_id in ids if video_id in found]


def export_videos(cmd: ExportVideos, deps: Deps) -> ExportQueued:
    """Judge the export and queue its run; nothing is read from S3 yet."""
    scope = deps.scope
    if cmd.target == "original" and scope.role not in MANAGERS:
        raise OriginalsForbidden("Only admin and operator may export originals")
    videos = _select(cmd, deps)
    estimated = sum(_stored_bytes(video, cmd.target) for video in videos)
    if estimated > deps.policy.export_max_bytes:
        cap = deps.policy.export_max_bytes
        raise _refuse(
            f"An export holds at most {cap / 1024**3:g} GiB (EXPORT_MAX_BYTES); these "
            f"{len(videos)} videos hold {estimated / 1024**3:.1f} GiB: narrow the selection, "
            "or export proxies",
            "video_ids" if cmd.video_ids is not None else "filters",
        )
    now = deps.clock()
    export_id = uuid.uuid4()
    name = safe_component(cmd.name or f"videos-{now:%Y-%m-%d}", f"export-{export_id}")
    with deps.uow() as uow:
        uow.exports.create(
            NewExport(
                id=export_id,
                created_by=scope.subject,
                created_at=now,
                name=name,
                target=cmd.target,
                include_thumbnails=cmd.include_thumbnails,
                video_ids=[video.id for video in videos],
                mall_ids=sorted({video.mall_id for video in videos}),
                pin_ids=sorted({video.pin_id for video in videos if video.pin_id is not None}),
                bytes_estimated=estimated,
            )
        )
        uow.commit()
    deps.enqueue(RUN_TASK, {"export_id": str(export_id)}, 0)
    deps.log.info(
        "export.queued",
        extra={"export_id": str(export_id), "videos": len(videos), "bytes": estimated},
    )
    return ExportQueued(
        export_id=export_id, status="queued", videos=len(videos), bytes_estimated=estimated
    )


def _state(export: StoredExport, url: str | None = None, expires_at: datetime | None = None):
    return ExportState(
        export_id=export.id,
        status=export.status,  # type: ignore[arg-type]
        videos=export.videos,
        done=export.done,
        bytes_written=export.bytes_written,
        url=url,
        expires_at=expires_at,
        error=export.error,
    )


def export_status(cmd: ExportStatus, deps: Deps) -> ExportState:
    """Where the export is; once completed, a presigned URL of its ZIP that never
    outlives the ZIP itself."""
    with deps.reads() as uow:
        export = uow.exports.get(deps.scope, cmd.export_id)
    if export is None:
        raise _not_found(cmd.export_id)
    if export.status != "completed" or export.object_key is None:
        return _state(export)
    signed_at = deps.clock().replace(microsecond=0)
    expires_at = signed_at + timedelta(minutes=cmd.expires_minutes)
    if export.expires_at is not None and export.expires_at < expires_at:
        expires_at = export.expires_at
    expires_in = int((expires_at - signed_at).total_seconds())
    if expires_in < 1:
        return _state(export)
    url = deps.store.presign_get(export.object_key, expires_in, signed_at)
    return _state(export, url, expires_at)


def cancel_export(cmd: CancelExport, deps: Deps) -> ExportState:
    """A queued export never starts; a running one stops within one part and aborts its
    upload. One whose worker is gone has its upload aborted here."""
    now = deps.clock()
    with deps.uow() as uow:
        cancelled = uow.exports.cancel(deps.scope, cmd.export_id, now, CANCELLED)
        if cancelled is None:
            raise _not_found(cmd.export_id)
        export, changed = cancelled
        if changed:
            uow.events.add([ExportFailedData(export_id=export.id, error=CANCELLED, cancelled=True)])
        uow.commit()
    stale_before = now - timedelta(seconds=deps.policy.export_lease_seconds)
    if (
        export.status == "cancelled"
        and export.upload_id is not None
        and export.object_key is not None
        and (export.heartbeat_at is None or export.heartbeat_at < stale_before)
    ):
        _abort(deps, export.id, export.object_key, export.upload_id)
    deps.log.info("export.cancel", extra={"export_id": str(cmd.export_id), "status": export.status})
    return _state(export)


def _abort(deps: Deps, export_id: UUID, key: str, upload_id: str) -> bool:
    archive = _archive(deps)
    try:
        archive.abort_upload(key, upload_id)
    except StorageUnavailable as exc:
        # Still recorded: the sweep tries again.
        deps.log.warning(
            "export.abort_failed", extra={"export_id": str(export_id), "error": exc.detail}
        )
        return False
    with deps.uow() as uow:
        uow.exports.forget_upload(export_id, upload_id)
        uow.commit()
    return True


def _archive(deps: Deps) -> ArchiveStore:
    if deps.archive is None:
        raise RuntimeError("exports need an archive store (worker.bootstrap wires one)")
    return deps.archive


@dataclass
class _Run:
    """One run's progress, as its heartbeat reports it."""

    export: StoredExport
    token: UUID
    done: int = 0
    bytes_written: int = 0
    last_event: float = 0.0


def run_export(cmd: RunExport, deps: Deps) -> ExportRunResult:
    """Claim the export and write its ZIP, or leave it to the run that holds it."""
    now = deps.clock()
    stale_before = now - timedelta(seconds=deps.policy.export_lease_seconds)
    token = uuid.uuid4()
    with deps.uow() as uow:
        export = uow.exports.claim(cmd.export_id, token, now, stale_before)
        uow.commit()
    if export is None:
        with deps.reads() as uow:
            current = uow.exports.get(UNRESTRICTED, cmd.export_id)
        if current is None:
            raise _not_found(cmd.export_id)
        deps.log.info(
            "export.run.skipped", extra={"export_id": str(current.id), "status": current.status}
        )
        return _run_result(current)
    if export.upload_id is not None and export.object_key is not None:
        # Left by a run that was lost: this run starts again from the first byte.
        _abort(deps, export.id, export.object_key, export.upload_id)
    run = _Run(export, token)
    deps.log.info(
        "export.run.started", extra={"export_id": str(export.id), "attempt": export.attempts}
    )
    status, error = _write(deps, run)
    deps.log.info(
        "export.run.ended",
        extra={"export_id": str(export.id), "status": status, "bytes": run.bytes_written},
    )
    return ExportRunResult(
        export_id=export.id, status=status, done=run.done, bytes_written=run.bytes_written
    )


def _run_result(export: StoredExport) -> ExportRunResult:
    return ExportRunResult(
        export_id=export.id,
        status=export.status,  # type: ignore[arg-type]
        done=export.done,
        bytes_written=export.bytes_written,
    )


def _looked_up(archive: ArchiveStore, entries: list[Entry]) -> list[Entry]:
    """Each entry with its object's size, or none when the object is not there."""

    def head(entry: Entry) -> Entry:
        size = archive.head(entry.key) if entry.key else None
        return Entry(entry.video, entry.kind, entry.key, entry.name, size)

    with ThreadPoolExecutor(max_workers=HEAD_THREADS, thread_name_prefix="export-head") as pool:
        return list(pool.map(head, entries))


def _sentence(exc: BaseException) -> str:
    if isinstance(exc, StorageUnavailable):
        return f"S3 failed while the ZIP was written ({exc.detail}); nothing was kept: export again"
    if isinstance(exc, RuntimeError) and "size" in str(exc):
        return "A video's file changed while the ZIP was written; nothing was kept: export again"
    if type(exc).__name__ == "SoftTimeLimitExceeded":
        return "The export took longer than its time limit; nothing was kept: export fewer videos"
    return f"The export failed ({type(exc).__name__}); nothing was kept: export again"


def _write(deps: Deps, run: _Run) -> tuple[str, str | None]:
    """The pipe: plan, look up, stream, upload; then the row and its event, in one
    transaction. Every way out completes or aborts the upload."""
    archive = _archive(deps)
    export = run.export
    key = f"{PREFIX}{export.id}/{export.name}.zip"
    upload_id: str | None = None
    writer: PartWriter | None = None
    ahead: ReadAhead | None = None
    try:
        with deps.reads() as uow:
            found = uow.catalogue.get_many(UNRESTRICTED, export.video_ids)
        # Videos deleted or trashed since the export was asked for are left out.
        videos = [found[video_id] for video_id in export.video_ids if video_id in found]
        entries = _looked_up(
            archive, plan_entries(videos, export.target, export.include_thumbnails)
        )

        def read(object_key: str, size: int):  # noqa: ANN202
            yield from ahead.read(object_key, size)
            run.done += 1

        zipped = build_zip(entries, read)
        total = len(zipped)
        upload_id = archive.start_upload(key, ZIP_TYPE)
        with deps.uow() as uow:
            held = uow.exports.set_upload(export.id, run.token, key, upload_id)
            uow.commit()
        if not held:
            raise _Stop("lost")
        writer = PartWriter(
            archive,
            key,
            upload_id,
            part_size_for(total),
            lambda _, sent: _beat(deps, run, sent),
            in_flight=deps.policy.export_parts_in_flight,
        )
        ahead = ReadAhead(
            archive.read,
            [(entry.key, entry.size) for entry in present(entries)],
            READ_AHEAD_CHUNKS,
        )
        for chunk in zipped:
            writer.write(chunk)
        parts = writer.close()
        writer = None
        run.done += 1  # the manifest
        archive.complete_upload(key, upload_id, parts)
        completed_upload, upload_id = upload_id, None
        run.bytes_written = total
        return _complete(deps, run, key, total, completed_upload, entries)
    except _Stop as stop:
        if writer is not None:
            writer.discard()
        if upload_id is not None:
            _abort(deps, export.id, key, upload_id)
        return stop.status, None
    except Exception as exc:
        if writer is not None:
            writer.discard()
        error = _sentence(exc)
        deps.log.warning(
            "export.run.failed",
            extra={"export_id": str(export.id), "error": error, "exception": repr(exc)[:300]},
        )
        if upload_id is not None:
            _abort(deps, export.id, key, upload_id)
        _fail(deps, run, error)
        return "failed", error
    finally:
        if ahead is not None:
            ahead.close()


def _beat(deps: Deps, run: _Run, uploaded: int) -> None:
    """After each part: the heartbeat, the progress, and the moment to stop."""
    run.bytes_written = uploaded
    now = deps.clock()
    moment = time.monotonic()
    with deps.uow() as uow:
        status = uow.exports.beat(run.export.id, run.token, now, run.done, uploaded)
        if status == "running" and moment - run.last_event >= deps.policy.export_progress_seconds:
            run.last_event = moment
            uow.events.add(
                [
                    ExportProgressData(
                        export_id=run.export.id,
                        videos=run.export.videos,
                        done=run.done,
                        bytes_written=uploaded,
                        bytes_estimated=run.export.bytes_estimated,
                    )
                ]
            )
        uow.commit()
    if status != "running":
        raise _Stop(status)


def _complete(
    deps: Deps, run: _Run, key: str, total: int, upload_id: str, entries: list[Entry]
) -> tuple[str, str | None]:
    now = deps.clock()
    expires_at = now + timedelta(hours=deps.policy.export_ttl_hours)
    missing = sum(1 for entry in entries if entry.size is None)
    with deps.uow() as uow:
        ended = uow.exports.finish(
            run.export.id,
            run.token,
            "completed",
            now,
            size_bytes=total,
            expires_at=expires_at,
            done=run.done,
        )
        if ended:
            uow.events.add(
                [
                    ExportCompletedData(
                        export_id=run.export.id,
                        object_key=key,
                        size_bytes=total,
                        missing=missing,
                        expires_at=expires_at,
                    )
                ]
            )
        uow.commit()
    if not ended:
        # Cancelled (or taken over) after the last part: the ZIP nobody holds goes.
        _archive(deps).delete(key)
        return "cancelled", None
    return "completed", None


def _fail(deps: Deps, run: _Run, error: str) -> None:
    try:
        with deps.uow() as uow:
            if uow.exports.finish(run.export.id, run.token, "failed", deps.clock(), error=error):
                uow.events.add([ExportFailedData(export_id=run.export.id, error=error)])
            uow.commit()
    except VideoError as exc:
        # The row stays running; its heartbeat goes stale and the sweep settles it.
        deps.log.warning(
            "export.fail_unrecorded", extra={"export_id": str(run.export.id), "error": exc.detail}
        )


def sweep_exports(cmd: SweepExports, deps: Deps) -> ExportSweepResult:
    """Take up exports whose worker was lost, send again the run of exports left queued,
    abort uploads nobody will complete, and delete ZIPs past their time."""
    now = deps.clock()
    policy = deps.policy
    stale_before = now - timedelta(seconds=policy.export_lease_seconds)
    restarted = failed = 0
    with deps.reads() as uow:
        stale = uow.exports.stale(stale_before, STALE_BATCH)
    for export in stale:
        if export.attempts < policy.export_max_attempts:
            deps.enqueue(RUN_TASK, {"export_id": str(export.id)}, 0)
            restarted += 1
            deps.log.warning(
                "export.taken_up", extra={"export_id": str(export.id), "attempts": export.attempts}
            )
            continue
        error = (
            f"The worker writing this export was lost {export.attempts} times; "
            "nothing was kept: export again"
        )
        with deps.uow() as uow:
            ended = uow.exports.fail_stale(export.id, stale_before, now, error)
            if ended is not None:
                uow.events.add([ExportFailedData(export_id=export.id, error=error)])
            uow.commit()
        if ended is not None:
            failed += 1
            if ended.upload_id is not None and ended.object_key is not None:
                _abort(deps, ended.id, ended.object_key, ended.upload_id)
    requeued = _requeue(deps, now)
    aborted = _abort_orphans(deps, now)
    expired = _expire(deps, now)
    return ExportSweepResult(
        restarted=restarted,
        failed=failed,
        uploads_aborted=aborted,
        expired=expired,
        requeued=requeued,
    )


def _requeue(deps: Deps, now: datetime) -> int:
    """A run message acknowledged by nobody's run (lost in a broker failover, purged)
    leaves its export queued for ever: send the run again. A duplicate is harmless,
    since the run claims the export by a conditional UPDATE from queued and one finding
    it claimed exits; so the messages go out before the re-send is recorded, and a
    failure in between costs a duplicate, never a lost run."""
    sent_before = now - timedelta(minutes=deps.policy.export_requeue_minutes)
    with deps.uow() as uow:
        due = uow.exports.requeue_queued(sent_before, now, STALE_BATCH)
        for export_id in due:
            deps.enqueue(RUN_TASK, {"export_id": str(export_id)}, 0)
        uow.commit()
    if due:
        deps.log.warning(
            "export.requeued", extra={"exports": len(due), "export_ids": [str(i) for i in due]}
        )
    return len(due)


def _abort_orphans(deps: Deps, now: datetime) -> int:
    """Uploads under ``exports/`` older than the grace that no running export holds:
    left by a failure that could not abort them (S3 down, a run killed and never
    taken up)."""
    archive = _archive(deps)
    grace = timedelta(seconds=deps.policy.export_upload_grace_seconds)
    with deps.reads() as uow:
        live = uow.exports.live_uploads()
    aborted = 0
    for upload in archive.uploads(PREFIX):
        if upload.upload_id in live or upload.initiated > now - grace:
            continue
        try:
            archive.abort_upload(upload.key, upload.upload_id)
        except StorageUnavailable:
            continue
        aborted += 1
    if aborted:
        deps.log.info("export.uploads_aborted", extra={"uploads": aborted})
    return aborted


def _expire(deps: Deps, now: datetime) -> int:
    archive = _archive(deps)
    with deps.reads() as uow:
        due = uow.exports.due_to_expire(now, EXPIRE_BATCH)
    gone: list[UUID] = []
    for export in due:
        try:
            if export.object_key is not None:
                archive.delete(export.object_key)
        except StorageUnavailable:
            continue
        gone.append(export.id)
    if gone:
        with deps.uow() as uow:
            uow.exports.mark_expired(gone)
            uow.commit()
    return len(gone)
