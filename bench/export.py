"""Export as ZIP: a 2 GiB export of 200 videos and one past 4 GiB (ZIP64), each checked
with zipfile's testzip and ``unzip -t``, the worker's RSS during the large one, and the
throughput against a plain boto3 copy of the same bytes through the same S3.

On the embedded stack, whose S3 is moto: moto keeps what it is given (in spooled
temporary files), so the source objects are shared between videos (``--distinct`` of
them per run, each referenced by many videos, as the issue allows) and only the ZIP
itself is large. The worker is a real one (``celery worker -Q videos.export``, solo
pool: the export runs in the process whose RSS is sampled); the baseline copy runs in a
process of its own, like the worker, so neither shares a GIL with moto.

Checked (``python -m bench export``):
- both ZIPs pass ``ZipFile.testzip()`` and ``unzip -t``; their entries and manifest are
  the videos asked for (read back streaming to a temporary file: the check may use disk,
  the worker may not);
- the worker's RSS grows by at most 64 MiB during the large export (peak sampled every
  0.1 s over its RSS before it);
- the export's throughput is at least 0.8x the copy's. Two copies are timed: each
  object to an object of its own, and all of them into one object, as the export
  writes; the second is the like-for-like one (moto concatenates a multipart upload's
  parts when it completes, a cost 200 small objects do not pay) and is the one judged.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import boto3
import psutil

from bench.common import ROOT, Stack, WorkerProcess, WorkerSpec, outside_app
from bench.harness import Table, bench, log, parser
from schemas.contract import ROUTES

MIB = 1024 * 1024
GIB = 1024 * MIB
RSS_BUDGET = 64 * MIB
THROUGHPUT_TARGET = 0.8


def _client(env: dict[str, str]):  # noqa: ANN202 - boto3
    return boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_REGION", "us-east-1"),
    )


def _sources(s3, bucket: str, label: str, distinct: int, size: int) -> list[str]:  # noqa: ANN001
    """``distinct`` objects of ``size`` bytes, each of its own bytes (so an entry read
    from the wrong object fails the CRC check)."""
    keys = []
    block = os.urandom(MIB)
    for n in range(distinct):
        key = f"bench-export/{label}/source-{n}.mp4"
        body = (bytes([n % 256]) * 64 + block * (size // MIB + 1))[:size]
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        keys.append(key)
    return keys


def _videos(database_url: str, keys: list[str], count: int, size: int) -> list[dict]:
    """``count`` videos in one mall, over three pins, each naming one of ``keys``."""
    import psycopg

    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    mall = uuid.uuid4()
    pins = [(uuid.uuid4(), f"Entrance {chr(65 + n)}") for n in range(3)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for n in range(count):
        pin_id, pin_name = pins[n % 3]
        rows.append(
            {
                "id": uuid.uuid4(),
                "pin_id": pin_id,
                "pin_name": pin_name,
                "key": keys[n % len(keys)],
                # Some names repeat: the archive makes them unique.
                "filename": f"camera_{n % 150:03d}.mov",
                "uploaded_at": start + timedelta(minutes=n),
            }
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO malls (id, name) VALUES (%s, 'Bench mall')", (mall,))
        for pin_id, pin_name in pins:
            conn.execute(
                "INSERT INTO camera_pins (id, mall_id, name) VALUES (%s, %s, %s)",
                (pin_id, mall, pin_name),
            )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO videos (id, mall_id, pin_id, original_filename, original_path, "
                "file_size_bytes, proxy_path, proxy_size_bytes, processing_status, uploaded_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'completed', %s)",
                [
                    (
                        r["id"],
                        mall,
                        r["pin_id"],
                        r["filename"],
                        r["key"],
                        size,
                        r["key"],
                        size,
                        r["uploaded_at"],
                    )
                    for r in rows
                ],
            )
    return rows


def copy_baseline(env: dict[str, str], bucket: str, keys: list[str], prefix: str) -> float:
    """A plain boto3 copy through the client: each object's GET stream handed to
    ``upload_fileobj`` (boto3's managed multipart upload). Seconds it took."""
    s3 = _client(env)
    started = time.perf_counter()
    for n, key in enumerate(keys):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        s3.upload_fileobj(body, bucket, f"{prefix}/{n}.mp4")
    return time.perf_counter() - started


class Chained(io.RawIOBase):
    """The GET streams of ``keys`` one after another, as one file to read: what
    ``upload_fileobj`` needs to copy them into one object."""

    def __init__(self, s3, bucket: str, keys: list[str]) -> None:  # noqa: ANN001
        self.s3, self.bucket, self.keys = s3, bucket, list(keys)
        self.body = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001
        while True:
            if self.body is None:
                if not self.keys:
                    return 0
                self.body = self.s3.get_object(Bucket=self.bucket, Key=self.keys.pop(0))["Body"]
            chunk = self.body.read(len(buffer))
            if chunk:
                buffer[: len(chunk)] = chunk
                return len(chunk)
            self.body = None


def copy_into_one(env: dict[str, str], bucket: str, keys: list[str], prefix: str) -> float:
    """The same bytes, copied by plain boto3 into one object (the export's shape: one
    multipart upload that S3 assembles at the end). Seconds it took."""
    s3 = _client(env)
    started = time.perf_counter()
    s3.upload_fileobj(
        io.BufferedReader(Chained(s3, bucket, keys), 1 << 20), bucket, f"{prefix}/all"
    )
    return time.perf_counter() - started


# The baselines, each run in a process of its own by its flag.
COPIES = {"--copy-baseline": copy_baseline, "--copy-into-one": copy_into_one}


def _baseline_in_a_process(
    env: dict[str, str], bucket: str, keys: list[str], prefix: str, how: str = "--copy-baseline"
) -> float:
    payload = json.dumps({"env": env, "bucket": bucket, "keys": keys, "prefix": prefix})
    done = subprocess.run(
        [sys.executable, "-m", "bench.export", how, payload],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


class RssSampler:
    """The peak RSS of a process, sampled every 0.1 s on a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def rss(self) -> int:
        return self.process.memory_info().rss

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.1)

    def __enter__(self) -> RssSampler:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _call(app, task: str, **kwargs) -> dict:  # noqa: ANN001
    envelope = app.send_task(task, kwargs=kwargs).get(timeout=120)
    if not envelope.get("ok"):
        raise RuntimeError(f"{task}: {envelope}")
    return envelope["data"]


def _run_export(app, video_ids: list[str], name: str) -> tuple[dict, dict]:  # noqa: ANN001
    queued = _call(app, "videos.export", video_ids=video_ids, name=name)
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        state = _call(app, "videos.export_status", export_id=queued["export_id"])
        if state["status"] not in ("queued", "running"):
            return queued, state
        time.sleep(0.5)
    raise RuntimeError("the export did not end within an hour")


def _run_seconds(database_url: str, export_id: str) -> float:
    import psycopg

    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        started, finished = conn.execute(
            "SELECT started_at, finished_at FROM exports WHERE id = %s", (export_id,)
        ).fetchone()
    return (finished - started).total_seconds()


def _check_zip(s3, bucket: str, key: str, rows: list[dict], size: int) -> tuple[bool, str]:  # noqa: ANN001
    """Read the ZIP back streaming to a temporary file; testzip, unzip -t, and its
    entries and manifest against the videos."""
    with tempfile.NamedTemporaryFile(suffix=".zip", dir=tempfile.gettempdir()) as local:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(8 * MIB):
            local.write(chunk)
        local.flush()
        with zipfile.ZipFile(local.name) as archive:
            bad = archive.testzip()
            infos = archive.infolist()
            listed = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
        unzip = subprocess.run(["unzip", "-tqq", local.name], capture_output=True, text=True)
    entries = [i for i in infos if i.filename != "manifest.csv"]
    problems = []
    if bad is not None:
        problems.append(f"testzip: {bad}")
    if unzip.returncode != 0:
        problems.append(
            f"unzip -t exit {unzip.returncode}: {unzip.stdout[-300:]}{unzip.stderr[-300:]}"
        )
    if len(entries) != len(rows) or any(i.file_size != size for i in entries):
        problems.append(f"{len(entries)} entries of the wrong size")
    if [r["video_id"] for r in listed] != [str(r["id"]) for r in rows]:
        problems.append("manifest does not list the videos in order")
    if {r["name"] for r in listed} != {i.filename for i in entries}:
        problems.append("manifest names differ from the entries")
    if any(r["status"] != "ok" for r in listed):
        problems.append("a video is listed missing")
    pins = {r["pin_name"] for r in rows}
    if any(i.filename.split("/")[0] not in pins for i in entries):
        problems.append("an entry is outside its pin's folder")
    return not problems, "; ".join(problems) or f"{len(entries)} entries + manifest"


def _drop(s3, bucket: str, prefix: str) -> None:  # noqa: ANN001
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})


@bench("export")
def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    copy = COPIES.get(args_list[0]) if args_list else None
    if copy is not None:
        spec = json.loads(args_list[1])
        print(copy(spec["env"], spec["bucket"], spec["keys"], spec["prefix"]))
        return 0
    p = parser("export", __doc__)
    p.add_argument("--videos", type=int, default=200, help="videos per export (200)")
    p.add_argument("--small-mib", type=float, default=10.24, help="MiB per video (2 GiB in all)")
    p.add_argument("--big-mib", type=float, default=24, help="MiB per video, large export")
    p.add_argument("--distinct", type=int, default=8, help="source objects per export")
    p.add_argument("--skip-big", action="store_true", help="only the 2 GiB export")
    args = p.parse_args(args_list)

    cases = [("2 GiB", args.small_mib)]
    if not args.skip_big:
        cases.append(("> 4 GiB (ZIP64)", args.big_mib))
    table = Table(
        "Export as ZIP through moto S3: export run vs a plain boto3 copy of the same bytes",
        [
            "export",
            "videos",
            "ZIP bytes",
            "export s",
            "MiB/s",
            "copy s",
            "copy MiB/s",
            "ratio",
            "one-object copy s",
            "ratio to it",
            "RSS growth MiB",
            "check",
        ],
        conditions=("embedded stack, moto S3", f"{args.distinct} shared source objects"),
    )
    all_ok = True
    with Stack() as stack:
        env = dict(stack.env)
        bucket = env.get("S3_BUCKET", "videos")
        s3 = _client(env)
        # Exports on a worker of their own (solo: the run is in the process sampled);
        # the status calls on another, as a deployment with -Q videos.export would have.
        worker = WorkerProcess(
            WorkerSpec(queues="videos.export", pool="solo", concurrency=1),
            {},
            stack.log_path("export-worker"),
        ).start()
        requests = WorkerProcess(
            WorkerSpec(queues="videos", pool="solo", concurrency=1),
            {},
            stack.log_path("request-worker"),
        ).start()
        app = outside_app(stack.broker_url, stack.backend_url, task_routes=ROUTES)
        try:
            requests.wait_ready(lambda: app.send_task("videos.stats", kwargs={}).get(timeout=5))
            for label, mib in cases:
                size = int(mib * MIB)
                log(f"{label}: {args.videos} videos of {mib} MiB")
                keys = _sources(s3, bucket, f"{mib}", args.distinct, size)
                rows = _videos(stack.database_url, keys, args.videos, size)
                sources = [r["key"] for r in rows]
                log("baseline: plain boto3 copy")
                copy_s = _baseline_in_a_process(env, bucket, sources, f"bench-copy/{mib}")
                _drop(s3, bucket, f"bench-copy/{mib}")
                log("baseline: plain boto3 copy into one object")
                one_s = _baseline_in_a_process(
                    env, bucket, sources, f"bench-copy/{mib}", "--copy-into-one"
                )
                _drop(s3, bucket, f"bench-copy/{mib}")
                log("export")
                with RssSampler(worker.pid) as rss:
                    before = rss.rss()
                    queued, state = _run_export(app, [str(r["id"]) for r in rows], f"bench-{mib}")
                growth = rss.peak - before
                if state["status"] != "completed":
                    raise RuntimeError(f"export ended {state}")
                export_s = _run_seconds(stack.database_url, queued["export_id"])
                total = state["bytes_written"]
                key = f"exports/{queued['export_id']}/bench-{mib}.zip"
                log("checking the ZIP (streamed to a temporary file)")
                ok, detail = _check_zip(s3, bucket, key, rows, size)
                leftovers = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
                _drop(s3, bucket, "exports/")
                moved = args.videos * size / MIB
                ratio = copy_s / export_s
                like = one_s / export_s
                table.add(
                    label,
                    args.videos,
                    total,
                    export_s,
                    moved / export_s,
                    copy_s,
                    moved / copy_s,
                    ratio,
                    one_s,
                    like,
                    growth / MIB,
                    "ok" if ok else "FAILED",
                )
                all_ok &= table.verdict(
                    f"{label}: testzip and unzip -t pass, entries and manifest match",
                    ok and total > (4 * GIB if "ZIP64" in label else 0),
                    f"{total:,} bytes; {detail}",
                )
                # Judged against the copy of the same shape: one object that S3 (here
                # moto, which concatenates the parts) assembles when the upload completes.
                all_ok &= table.verdict(
                    f"{label}: throughput >= {THROUGHPUT_TARGET}x a boto3 copy into one object",
                    like >= THROUGHPUT_TARGET,
                    f"{like:.2f}x: {moved / export_s:.0f} vs {moved / one_s:.0f} MiB/s "
                    f"(per-object copy: {ratio:.2f}x, {moved / copy_s:.0f} MiB/s)",
                )
                all_ok &= table.verdict(
                    f"{label}: no multipart upload left", not leftovers, f"{len(leftovers)} left"
                )
                if "ZIP64" in label:
                    all_ok &= table.verdict(
                        "worker RSS grows <= 64 MiB during the > 4 GiB export",
                        growth <= RSS_BUDGET,
                        f"{growth / MIB:.1f} MiB over {before / MIB:.0f} MiB",
                    )
                _drop(s3, bucket, f"bench-export/{mib}/")
        finally:
            worker.stop()
            requests.stop()
    table.print()
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
