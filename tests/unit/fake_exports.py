"""In-memory fakes of the export room (``Exports``) and of the archive store, kept honest
by ``tests/integration/test_port_contracts_exports.py``."""

from __future__ import annotations

import base64
import copy
import hashlib
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from uuid import UUID

from handlers.access import Scope
from handlers.errors import StorageUnavailable
from handlers.ports import MultipartUpload, NewExport, StoredExport, UploadedPart

MIN_PART = 5 * 1024 * 1024


@dataclass
class ExportRow:
    export: StoredExport
    mall_ids: list[UUID]
    pin_ids: list[UUID]


def _seen(scope: Scope, row: ExportRow) -> bool:
    if scope.role == "admin":
        return True
    if scope.role == "operator":
        return set(row.mall_ids) <= scope.malls
    return set(row.pin_ids) <= scope.pins


class FakeExports:
    def __init__(self) -> None:
        self.rows: dict[UUID, ExportRow] = {}

    def snapshot(self) -> dict[UUID, ExportRow]:
        return copy.deepcopy(self.rows)

    def restore(self, saved: dict[UUID, ExportRow]) -> None:
        self.rows = saved

    def _set(self, export_id: UUID, **changes: object) -> StoredExport:
        row = self.rows[export_id]
        row.export = replace(row.export, **changes)  # type: ignore[arg-type]
        return row.export

    def create(self, export: NewExport) -> None:
        self.rows[export.id] = ExportRow(
            StoredExport(
                id=export.id,
                status="queued",
                name=export.name,
                target=export.target,
                include_thumbnails=export.include_thumbnails,
                video_ids=list(export.video_ids),
                bytes_estimated=export.bytes_estimated,
                attempts=0,
                done=0,
                bytes_written=0,
                object_key=None,
                upload_id=None,
                run_token=None,
                heartbeat_at=None,
                created_at=export.created_at,
                finished_at=None,
                expires_at=None,
                size_bytes=None,
                error=None,
            ),
            list(export.mall_ids),
            list(export.pin_ids),
        )

    def get(self, scope: Scope, export_id: UUID) -> StoredExport | None:
        row = self.rows.get(export_id)
        return row.export if row is not None and _seen(scope, row) else None

    def cancel(
        self, scope: Scope, export_id: UUID, at: datetime, error: str
    ) -> tuple[StoredExport, bool] | None:
        current = self.get(scope, export_id)
        if current is None:
            return None
        if current.status not in ("queued", "running"):
            return current, False
        return self._set(export_id, status="cancelled", finished_at=at, error=error), True

    def claim(
        self, export_id: UUID, run_token: UUID, now: datetime, stale_before: datetime
    ) -> StoredExport | None:
        row = self.rows.get(export_id)
        if row is None:
            return None
        export = row.export
        stale = export.status == "running" and export.heartbeat_at < stale_before  # type: ignore[operator]
        if export.status != "queued" and not stale:
            return None
        return self._set(
            export_id,
            status="running",
            run_token=run_token,
            attempts=export.attempts + 1,
            heartbeat_at=now,
            done=0,
            bytes_written=0,
        )

    def set_upload(
        self, export_id: UUID, run_token: UUID, object_key: str, upload_id: str | None
    ) -> bool:
        row = self.rows.get(export_id)
        if row is None or row.export.run_token != run_token:
            return False
        self._set(export_id, object_key=object_key, upload_id=upload_id)
        return True

    def _holds(self, export_id: UUID, run_token: UUID) -> bool:
        row = self.rows.get(export_id)
        return (
            row is not None and row.export.run_token == run_token and row.export.status == "running"
        )

    def beat(
        self, export_id: UUID, run_token: UUID, now: datetime, done: int, bytes_written: int
    ) -> str:
        if self._holds(export_id, run_token):
            self._set(export_id, heartbeat_at=now, done=done, bytes_written=bytes_written)
            return "running"
        row = self.rows.get(export_id)
        if row is None or row.export.run_token != run_token:
            return "lost"
        return row.export.status

    def finish(
        self,
        export_id: UUID,
        run_token: UUID,
        status: str,
        now: datetime,
        *,
        error: str | None = None,
        size_bytes: int | None = None,
        expires_at: datetime | None = None,
        done: int | None = None,
    ) -> bool:
        if not self._holds(export_id, run_token):
            return False
        changes: dict[str, object] = dict(
            status=status, finished_at=now, heartbeat_at=now, error=error, upload_id=None
        )
        if size_bytes is not None:
            changes.update(size_bytes=size_bytes, bytes_written=size_bytes, expires_at=expires_at)
        if done is not None:
            changes["done"] = done
        self._set(export_id, **changes)
        return True

    def stale(self, stale_before: datetime, limit: int) -> list[StoredExport]:
        found = [
            row.export
            for row in self.rows.values()
            if row.export.status == "running" and row.export.heartbeat_at < stale_before  # type: ignore[operator]
        ]
        return sorted(found, key=lambda e: e.heartbeat_at)[:limit]  # type: ignore[arg-type, return-value]

    def fail_stale(
        self, export_id: UUID, stale_before: datetime, now: datetime, error: str
    ) -> StoredExport | None:
        row = self.rows.get(export_id)
        if row is None or row.export.status != "running":
            return None
        if not row.export.heartbeat_at < stale_before:  # type: ignore[operator]
            return None
        return self._set(export_id, status="failed", finished_at=now, error=error)

    def requeue_queued(self, sent_before: datetime, now: datetime, limit: int) -> list[UUID]:
        due = sorted(
            (
                row.export
                for row in self.rows.values()
                if row.export.status == "queued"
                and (row.export.heartbeat_at or row.export.created_at) < sent_before
            ),
            key=lambda export: export.created_at,
        )[:limit]
        return [self._set(export.id, heartbeat_at=now).id for export in due]

    def live_uploads(self) -> set[str]:
        return {
            row.export.upload_id
            for row in self.rows.values()
            if row.export.upload_id is not None and row.export.status == "running"
        }

    def forget_upload(self, export_id: UUID, upload_id: str) -> None:
        row = self.rows.get(export_id)
        if row is not None and row.export.upload_id == upload_id:
            self._set(export_id, upload_id=None)

    def due_to_expire(self, now: datetime, limit: int) -> list[StoredExport]:
        due = [
            row.export
            for row in self.rows.values()
            if row.export.status == "completed" and row.export.expires_at <= now  # type: ignore[operator]
        ]
        return sorted(due, key=lambda e: e.expires_at)[:limit]  # type: ignore[arg-type, return-value]

    def prune(self, before: datetime, limit: int) -> int:
        def ended(export: StoredExport) -> datetime | None:
            return export.expires_at or export.finished_at

        old = [
            export_id
            for export_id, row in self.rows.items()
            if row.export.status in ("failed", "cancelled", "expired")
            and (ended(row.export) or before) < before
        ][:limit]
        for export_id in old:
            del self.rows[export_id]
        return len(old)

    def mark_expired(self, export_ids: Sequence[UUID]) -> None:
        for export_id in export_ids:
            if export_id in self.rows and self.rows[export_id].export.status == "completed":
                self._set(export_id, status="expired")


@dataclass
class Upload:
    key: str
    initiated: datetime
    parts: dict[int, bytes] = field(default_factory=dict)


class FakeArchive:
    """A bucket of bytes with multipart uploads as S3 keeps them (parts by number, at
    least 5 MiB but the last). Faults: ``down`` (every call fails), ``fail_part`` (that
    part number fails once per listed time), and ``on_part`` (a hook after each part)."""

    def __init__(self, now: datetime) -> None:
        self.objects: dict[str, bytes] = {}
        self.uploads_in_progress: dict[str, Upload] = {}
        self.down = False
        self.now = now
        self.part_failures: list[int] = []
        self.on_part = None
        self.aborted: list[str] = []
        self.reads: list[str] = []
        self._next = 0

    def put(self, key: str, body: bytes) -> None:
        self.objects[key] = body

    def _check(self) -> None:
        if self.down:
            raise StorageUnavailable("S3 unreachable: EndpointConnectionError")

    def head(self, key: str) -> int | None:
        self._check()
        body = self.objects.get(key)
        return None if body is None else len(body)

    def read(self, key: str, size: int) -> Iterator[bytes]:
        self._check()
        self.reads.append(key)
        body = self.objects[key]
        for start in range(0, len(body), 64 * 1024):
            self._check()
            yield body[start : start + 64 * 1024]

    def start_upload(self, key: str, content_type: str) -> str:
        self._check()
        self._next += 1
        upload_id = f"upload-{self._next}"
        self.uploads_in_progress[upload_id] = Upload(key, self.now)
        return upload_id

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        self._check()
        if number in self.part_failures:
            self.part_failures.remove(number)
            raise StorageUnavailable("S3 upload_part failed: InternalError")
        upload = self.uploads_in_progress[upload_id]
        upload.parts[number] = bytes(data)
        if self.on_part is not None:
            self.on_part(number)
        etag = hashlib.md5(data).hexdigest()  # noqa: S324 - an ETag, as S3 computes it
        return UploadedPart(etag, base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode())

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> None:
        self._check()
        upload = self.uploads_in_progress.pop(upload_id)
        numbers = sorted(upload.parts)
        assert numbers == list(range(1, len(parts) + 1)), numbers
        for number, part in zip(numbers, parts, strict=True):
            body = upload.parts[number]
            assert part.etag == hashlib.md5(body).hexdigest(), "InvalidPart"  # noqa: S324
        for number in numbers[:-1]:
            assert len(upload.parts[number]) >= MIN_PART, "EntityTooSmall"
        self.objects[key] = b"".join(upload.parts[n] for n in numbers)

    def abort_upload(self, key: str, upload_id: str) -> None:
        self._check()
        if self.uploads_in_progress.pop(upload_id, None) is not None:
            self.aborted.append(upload_id)

    def uploads(self, prefix: str) -> Iterator[MultipartUpload]:
        self._check()
        for upload_id, upload in list(self.uploads_in_progress.items()):
            if upload.key.startswith(prefix):
                yield MultipartUpload(upload.key, upload_id, upload.initiated)

    def delete(self, key: str) -> None:
        self._check()
        self.objects.pop(key, None)
