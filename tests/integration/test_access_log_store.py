"""The S3 access log store against the HTTP S3 server: objects listed under the prefix,
and each read as its lines, cut the same wherever the stream's chunks end."""

from __future__ import annotations

import random
import uuid

from worker.adapters.s3.access_logs import S3AccessLogStore


def test_lines_are_the_objects_lines_wherever_its_chunks_end(settings, s3, bucket):
    rng = random.Random(5)
    # About 2.5 MiB: lines of every length cross the 1 MiB chunks' ends, CRLF ends too,
    # and the last line has no end.
    lines = [b"x" * rng.randint(0, 3000) + rng.choice([b"\n", b"\r\n"]) for _ in range(1700)]
    body = b"".join(lines) + b"the last line"
    prefix = f"logs-{uuid.uuid4()}/"
    s3.put_object(Bucket=bucket, Key=f"{prefix}a", Body=body)
    s3.put_object(Bucket=bucket, Key=f"{prefix}b", Body=b"")
    store = S3AccessLogStore(settings, bucket, prefix)

    listed = {o.key: o.size for o in store.objects()}
    got = list(store.lines(f"{prefix}a"))

    assert listed == {f"{prefix}a": len(body), f"{prefix}b": 0}
    assert got == body.splitlines(keepends=True)
    assert list(store.lines(f"{prefix}b")) == []
