"""S3 adapter over boto3.

Two clients, built once per process: one for API calls against ``S3_ENDPOINT_URL``,
and one used only for presigning against ``S3_PUBLIC_ENDPOINT_URL`` (the address
callers' browsers reach), so URLs never point at an internal host name. Presigning
is local SigV4 computation: it makes no network call.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from handlers.errors import StorageUnavailable
from handlers.ports import DeleteReport
from worker.settings import Settings

DELETE_BATCH = 1000  # the DeleteObjects maximum


def _client(settings: Settings, endpoint_url: str | None):
    config = Config(
        signature_version="s3v4",
        region_name=settings.aws_region,
        # MinIO and other self-hosted endpoints want path-style; AWS works either way.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        connect_timeout=settings.s3_connect_timeout_seconds,
        read_timeout=settings.s3_read_timeout_seconds,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=20,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=settings.aws_secret_access_key.get_secret_value(),
        region_name=settings.aws_region,
        config=config,
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    return type(exc).__name__


class S3ObjectStore:
    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.client = _client(settings, settings.s3_endpoint_url)
        public = settings.s3_public_endpoint_url
        self.signer = (
            self.client if public in (None, settings.s3_endpoint_url) else _client(settings, public)
        )

    def presign_get(self, key: str, expires_in: int) -> str:
        return self.signer.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )

    def delete_many(self, keys: Sequence[str]) -> DeleteReport:
        """Delete in chunks of 1000, reporting each key that could not be removed.

        Never raises for S3 trouble: the keys are already queued durably, so a chunk that
        cannot be sent (refused, 5xx, throttled, access denied) is reported as failed and
        left for purge. Deleting a key that is already gone succeeds in S3, which makes
        every retry harmless.
        """
        deleted: list[str] = []
        failed: dict[str, str] = {}
        iterator = iter(dict.fromkeys(keys))
        while chunk := list(islice(iterator, DELETE_BATCH)):
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
                )
            except (BotoCoreError, ClientError) as exc:
                failed.update(dict.fromkeys(chunk, _describe(exc)))
                continue
            errors = {
                e["Key"]: f"{e.get('Code', 'Error')}: {e.get('Message', '')}"
                for e in response.get("Errors", [])
            }
            failed.update(errors)
            deleted.extend(key for key in chunk if key not in errors)
        return DeleteReport(deleted=deleted, failed=failed)

    def size(self, key: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise self._unavailable(exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable(exc) from exc
        return int(head["ContentLength"])

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (embedded stack and tests only)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    @staticmethod
    def _unavailable(exc: Exception) -> StorageUnavailable:
        return StorageUnavailable(f"S3 unreachable: {_describe(exc)}")
