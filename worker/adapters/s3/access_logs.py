"""S3 server access logs, as ``videos.ingest_access_logs`` reads them: each object
listed under the prefix, and read as a stream of lines (never whole: a busy bucket's
log objects are large)."""

from __future__ import annotations

from collections.abc import Iterator

from handlers.ports import LogObject
from worker.adapters.s3.store import _client
from worker.settings import Settings


class S3AccessLogStore:
    def __init__(self, settings: Settings, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.client = _client(settings, settings.s3_endpoint_url)

    def objects(self) -> Iterator[LogObject]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            for item in page.get("Contents", ()):
                yield LogObject(item["Key"], item["ETag"].strip('"'), item["Size"])

    def lines(self, key: str) -> Iterator[bytes]:
        # botocore's ``iter_lines`` splits each line a second time to drop or keep its
        # end; lines are cut here once per chunk, ends kept.
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            pending = b""
            for chunk in body.iter_chunks(1 << 20):
                lines = (pending + chunk).splitlines(keepends=True)
                pending = lines.pop() if lines else b""
                if pending.endswith(b"\n"):
                    lines.append(pending)
                    pending = b""
                yield from lines
            if pending:
                yield pending
        finally:
            body.close()
