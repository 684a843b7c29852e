"""S3 for exports: objects read as streams, ZIPs written as multipart uploads.

boto3 retries each call (three attempts, standard mode); on top of that a part is
tried again a bounded number of times with a growing pause, and a GET stream that
breaks is taken up where it broke with a ranged GET, so an S3 outage of some seconds
costs a pause, not the export. Nothing here holds more than one read chunk or the one
part it was given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from handlers.errors import StorageUnavailable
from handlers.ports import MultipartUpload, UploadedPart
from worker.adapters.s3.store import _client, _describe, _error_code
from worker.settings import Settings

log = logging.getLogger("videoworker.storage")

READ_CHUNK = 1024 * 1024
# Tries of one part, or of one stretch of a GET, on top of boto3's own three attempts;
# the pauses between them add up to some 15 s (an S3 restart, a network blip).
ATTEMPTS = 5
FIRST_PAUSE_SECONDS = 1.0
_GONE = frozenset({"NoSuchUpload", "NoSuchKey", "404"})
COMPLETE_TIMEOUT_SECONDS = 900.0
CHECKSUM = "CRC32"


def _pause(attempt: int) -> None:
    time.sleep(FIRST_PAUSE_SECONDS * 2 ** (attempt - 1))


def _status(exc: ClientError) -> int:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0


class S3ArchiveStore:
    def __init__(self, settings: Settings, attempts: int = ATTEMPTS) -> None:
        self.bucket = settings.s3_bucket
        self.client = _client(settings, settings.s3_endpoint_url)
        # S3 may take minutes to answer a CompleteMultipartUpload of a large object (it
        # keeps the connection alive meanwhile); a client that gave up after the usual
        # read timeout would send it again while the first is still assembling.
        self.completer = _client(
            settings.model_copy(update={"s3_read_timeout_seconds": COMPLETE_TIMEOUT_SECONDS}),
            settings.s3_endpoint_url,
        )
        self.attempts = attempts

    def head(self, key: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise StorageUnavailable(f"S3 refused a look-up: {_describe(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 unreachable: {_describe(exc)}") from exc
        return int(head["ContentLength"])

    def read(self, key: str, size: int) -> Iterator[bytes]:
        """``size`` bytes of the object, a chunk at a time; a broken stream is asked again
        from the first byte not yet given, ``attempts`` times at most in a row."""
        given = 0
        failures = 0
        while given < size:
            try:
                ranged = {"Range": f"bytes={given}-"} if given else {}
                body = self.client.get_object(Bucket=self.bucket, Key=key, **ranged)["Body"]
                try:
                    for chunk in body.iter_chunks(READ_CHUNK):
                        if given + len(chunk) > size:
                            raise StorageUnavailable(f"An object grew while it was read ({key})")
                        given += len(chunk)
                        failures = 0
                        yield chunk
                finally:
                    body.close()
                if given < size:
                    raise StorageUnavailable(f"An object shrank while it was read ({key})")
            except (BotoCoreError, ClientError) as exc:
                if isinstance(exc, ClientError) and _status(exc) in (403, 404, 416):
                    raise StorageUnavailable(f"S3 refused a read: {_describe(exc)}") from exc
                failures += 1
                if failures >= self.attempts:
                    raise StorageUnavailable(f"S3 unreachable: {_describe(exc)}") from exc
                log.warning(
                    "export.read_retry", extra={"attempt": failures, "error": _describe(exc)}
                )
                _pause(failures)

    def start_upload(self, key: str, content_type: str) -> str:
        # A CRC32 per part, as boto3's own managed uploads ask: S3 checks each part as it
        # arrives and keeps a checksum of the whole (the parts' CRC32s are computed by
        # botocore anyway). Without one S3 servers compute a full-object CRC64 as they
        # assemble the parts, which moto, for one, does over a copy of the whole object.
        response = self._call(
            "create_multipart_upload",
            Bucket=self.bucket,
            Key=key,
            ContentType=content_type,
            ChecksumAlgorithm=CHECKSUM,
        )
        return response["UploadId"]

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        response = self._call(
            "upload_part",
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm=CHECKSUM,
        )
        return UploadedPart(response["ETag"], response.get("ChecksumCRC32"))

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> None:
        listed = []
        for number, part in enumerate(parts, 1):
            entry = {"ETag": part.etag, "PartNumber": number}
            if part.crc32 is not None:
                entry["ChecksumCRC32"] = part.crc32
            listed.append(entry)
        self._call(
            "complete_multipart_upload",
            client=self.completer,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": listed},
        )

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self._call("abort_multipart_upload", Bucket=self.bucket, Key=key, UploadId=upload_id)
        except StorageUnavailable as exc:
            if isinstance(exc.__cause__, ClientError) and _error_code(exc.__cause__) in _GONE:
                return
            raise

    def uploads(self, prefix: str) -> Iterator[MultipartUpload]:
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    yield MultipartUpload(upload["Key"], upload["UploadId"], upload["Initiated"])
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"S3 unreachable: {_describe(exc)}") from exc

    def delete(self, key: str) -> None:
        self._call("delete_object", Bucket=self.bucket, Key=key)

    def _call(self, operation: str, client: object = None, **params: object) -> dict:
        """One S3 call, tried again (after boto3's own attempts) a bounded number of
        times while S3 cannot be reached or answers 5xx; any other refusal at once."""
        for attempt in range(1, self.attempts + 1):
            try:
                return getattr(client or self.client, operation)(**params)
            except (BotoCoreError, ClientError) as exc:
                transient = (
                    not isinstance(exc, ClientError) or _status(exc) >= 500 or (_status(exc) == 429)
                )
                if not transient or attempt == self.attempts:
                    raise StorageUnavailable(f"S3 {operation} failed: {_describe(exc)}") from exc
                log.warning(
                    "export.s3_retry",
                    extra={"operation": operation, "attempt": attempt, "error": _describe(exc)},
                )
                _pause(attempt)
        raise AssertionError("unreachable")
