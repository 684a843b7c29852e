"""S3 adapter over boto3.

Two clients, built once per process: one for API calls against ``S3_ENDPOINT_URL``,
and one used only for presigning against ``S3_PUBLIC_ENDPOINT_URL`` (the address
callers' browsers reach), so URLs never point at an internal host name. Presigning
is local SigV4 computation: it makes no network call.

Presigning is on the hot path of ``videos.sign_url``; boto3's
``generate_presigned_url`` re-resolves the endpoint ruleset and re-serialises the
request on every call (~180-280 us). ``FastPresigner`` keeps botocore's own SigV4
query signer and does only the per-key work (see its docstring).
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ParamValidationError,
    ValidationError,
)

from handlers.errors import StorageUnavailable
from handlers.ports import DeleteReport
from worker.adapters.s3.presigner import FastPresigner
from worker.settings import Settings

log = logging.getLogger("videoworker.storage")

DELETE_BATCH = 1000  # the DeleteObjects maximum
# XML 1.0's Char production less #xD: botocore writes a carriage return raw into the
# DeleteObjects body and XML parsers turn it into a line feed (XML 1.0 section 2.11), so
# such a key would reach S3 as another key. Surrogates fall outside the ranges too.
_NOT_XML_CHAR = re.compile("[^\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Whole-call 400s about the connection, the credentials or the bucket, not about the
# keys: a smaller request would be refused the same way.
_NOT_ABOUT_THE_KEYS = frozenset(
    {
        "RequestTimeout",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "InvalidBucketName",
    }
)


def _client(settings: Settings, endpoint_url: str | None):
    config = Config(
        signature_version="s3v4",
        region_name=settings.aws_region,
        # MinIO and other self-hosted endpoints want path-style; AWS works either way.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        connect_timeout=settings.s3_connect_timeout_seconds,
        read_timeout=settings.s3_read_timeout_seconds,
        # Three attempts in all (botocore's max_attempts would add three retries to the first).
        retries={"total_max_attempts": 3, "mode": "standard"},
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


def _error_code(exc: Exception) -> str:
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""


def _fits_xml_body(key: str) -> bool:
    return _NOT_XML_CHAR.search(key) is None


def _is_utf8(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Blame(enum.Enum):
    REQUEST = "request"  # this request, as built, was refused
    KEYS = "keys"  # refused for these keys or this bucket, whatever their number
    STORE = "store"  # S3 could not be reached or is shedding load


def _blame(exc: BotoCoreError | ClientError) -> _Blame:
    """What a failed delete call says: whether to split it, or to stop calling S3.

    REQUEST (a 400 such as MalformedXML, InvalidArgument, InvalidRequest, or botocore
    refusing to build the request): something this request carries is at fault, so its
    halves may pass, and halving isolates the keys at fault in a few calls.
    STORE (no connection, a timeout, a 5xx, throttling): every further call would fail
    the same way, and splitting would multiply requests against a store that is down or
    asking for fewer, so the keys wait for purge and its backoff.
    KEYS (anything else: 403, NoSuchBucket, ...): a smaller request fares no better, but
    a call with other keys may.
    """
    if isinstance(exc, ValidationError | ParamValidationError):
        return _Blame.REQUEST
    if not isinstance(exc, ClientError):
        return _Blame.STORE
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    code = _error_code(exc)
    if status == 429 or status >= 500 or code == "SlowDown":
        return _Blame.STORE
    if status == 400 and code not in _NOT_ABOUT_THE_KEYS:
        return _Blame.REQUEST
    return _Blame.KEYS


@dataclass(slots=True)
class _DeleteRun:
    """One ``delete_many`` call's outcome so far."""

    deleted: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    # Set once S3 proves unreachable: the keys not tried yet fail with it, untried.
    store_down: str | None = None


class S3ObjectStore:
    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.client = _client(settings, settings.s3_endpoint_url)
        public = settings.s3_public_endpoint_url
        self.signer = (
            self.client if public in (None, settings.s3_endpoint_url) else _client(settings, public)
        )
        self.fast_presigner = FastPresigner.build(self.signer, self.bucket)

    def presign_get(self, key: str, expires_in: int, signed_at: datetime | None = None) -> str:
        """A SigV4 presigned GET; ``signed_at`` (whole seconds) is the time signed into it.

        The handler passes the time it reports as the start of ``expires_at``, so the URL
        expires exactly then. The boto3 fallback cannot take a time and signs "now".
        """
        if self.fast_presigner is not None:
            return self.fast_presigner.sign(key, expires_in, signed_at or datetime.now(UTC))
        return self.signer.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )

    def delete_many(self, keys: Sequence[str]) -> DeleteReport:
        """Delete every key, reporting each one that could not be removed.

        Keys go in DeleteObjects calls of up to 1000, except keys whose characters the
        XML body cannot carry: those go one by one in DeleteObject, where the key travels
        percent-encoded in the URL. A call refused as a whole for what it carries is
        halved until the keys at fault are alone (see ``_blame``), so one bad key fails
        only itself. Never raises for S3 trouble: the keys are already queued durably
        and purge retries the failed ones. Deleting a key that is already gone succeeds
        in S3, which makes every retry harmless.
        """
        unique = list(dict.fromkeys(keys))
        run = _DeleteRun()
        in_body = [key for key in unique if _fits_xml_body(key)]
        for start in range(0, len(in_body), DELETE_BATCH):
            self._delete_batch(in_body[start : start + DELETE_BATCH], run)
        for key in unique:
            if not _fits_xml_body(key):
                self._delete_one(key, run)
        return DeleteReport(deleted=[k for k in unique if k in run.deleted], failed=run.failed)

    def _delete_batch(self, batch: list[str], run: _DeleteRun) -> None:
        if run.store_down is not None:
            run.failed.update(dict.fromkeys(batch, run.store_down))
            return
        try:
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
        except (BotoCoreError, ClientError) as exc:
            blame = _blame(exc)
            if blame is _Blame.REQUEST:
                # Counts only: object keys are not written to logs.
                log.info(
                    "storage.delete.split", extra={"keys": len(batch), "error": _describe(exc)}
                )
                middle = len(batch) // 2
                for half in (batch[:middle], batch[middle:]):
                    if len(half) == 1:
                        self._delete_one(half[0], run)
                    else:
                        self._delete_batch(half, run)
                return
            if blame is _Blame.STORE:
                self._stop_calling(run, exc)
            run.failed.update(dict.fromkeys(batch, _describe(exc)))
            return
        errors = {
            e["Key"]: f"{e.get('Code', 'Error')}: {e.get('Message', '')}"
            for e in response.get("Errors", [])
        }
        run.failed.update(errors)
        run.deleted.update(key for key in batch if key not in errors)

    def _delete_one(self, key: str, run: _DeleteRun) -> None:
        if run.store_down is not None:
            run.failed[key] = run.store_down
            return
        if not _is_utf8(key):
            # S3 keys are UTF-8: no object, and no request, can be named by this one.
            run.failed[key] = "InvalidKey: not encodable as UTF-8"
            return
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            if _error_code(exc) == "NoSuchKey":
                # Some S3-compatible stores answer so for a key that is already gone.
                run.deleted.add(key)
            else:
                if _blame(exc) is _Blame.STORE:
                    self._stop_calling(run, exc)
                run.failed[key] = _describe(exc)
            return
        run.deleted.add(key)

    @staticmethod
    def _stop_calling(run: _DeleteRun, exc: Exception) -> None:
        run.store_down = _describe(exc)
        log.warning("storage.delete.unreachable", extra={"error": run.store_down})

    def list_objects(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        """Every object under ``prefix`` with its LastModified, in S3's UTF-8 byte order."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": 1000}
        ):
            for item in page.get("Contents", []):
                yield item["Key"], item["LastModified"]

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
