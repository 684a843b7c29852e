"""``videoworker demo``: a small, believable world to try the worker on.

Two malls, five camera pins and a few hundred videos across every processing status,
uploaded over the last three months, written where the platform's other services
write them (the ``malls``, ``camera_pins``, ``videos`` and ``processing_jobs``
tables), with real objects in the bucket: every original and proxy is a valid H.264
MP4 and every thumbnail a JPEG (``worker/dev/assets``), so a signed URL plays in a
browser and a delete visibly removes files.

Every id comes from one fixed UUID namespace, so the world is the same on every
machine (the README's ids are the ones a newcomer gets) and a second run refreshes it
in place. What is the demo's: the two malls and every video in them. Anything else in
``malls`` or ``videos`` is someone's data, and the demo refuses to mix into it unless
told ``--force`` (it then adds its world beside that data and never touches it).
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from worker.adapters.postgres.tables import CameraPin, Mall, ProcessingJob, Video
from worker.settings import Settings

NAMESPACE = uuid.UUID("5d1c0de0-7a1e-4d3e-9a6b-64656d6f0001")
DEFAULT_VIDEOS = 300
SPREAD_DAYS = 89.5  # "three months", and still inside the default RETENTION_DAYS (90)
UPLOAD_THREADS = 8
# Serialises two demo runs against one database (pg_advisory_xact_lock's key).
LOCK_KEY = 0x64656D6F
MALLS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Demo · Riverside Mall", ("Entrance A", "Food court", "Car park level 2")),
    ("Demo · Harbour Point", ("North atrium", "Cinema foyer")),
)
# pending and processing are the pipeline's recent backlog; the rest spread over months.
STATUS_WEIGHTS = {"completed": 72, "failed": 8, "processing": 10, "pending": 10}
RECENT_HOURS = {"pending": 36.0, "processing": 6.0}
FAILURES = (
    "ffprobe: moov atom not found (upload truncated)",
    "transcode: exceeded the 600 s time limit",
    "decoder: unsupported pixel format yuv444p10le",
)
NOTES = (
    "Customer complaint about a fall near the escalator, 14:05–14:10; kept for the insurer.",
    "Camera was knocked out of alignment; ignore the left third of the frame.",
    "Lost-child search: footage reviewed with security, nothing further.",
    "Incident #1042: on legal hold until the police case closes.",
)


def asset(name: str) -> bytes:
    return (resources.files("worker.dev") / "assets" / name).read_bytes()


def mall_id(index: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"mall:{index}")


def pin_id(mall_index: int, index: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"pin:{mall_index}:{index}")


def video_id(index: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"video:{index}")


DEMO_MALL_IDS = tuple(mall_id(i) for i in range(len(MALLS)))


@dataclass
class DemoWorld:
    malls: list[dict[str, Any]]
    pins: list[dict[str, Any]]
    videos: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    objects: dict[str, str] = field(default_factory=dict)  # key -> asset name

    def by_status(self) -> Counter[str]:
        return Counter(row["processing_status"] for row in self.videos)


def _slug(name: str) -> str:
    return "-".join(name.lower().split())


def build_world(now: datetime, videos: int = DEFAULT_VIDEOS) -> DemoWorld:
    """The demo's rows and objects; the same ids and figures for the same ``videos``."""
    mp4 = asset("demo.mp4")
    checksum = hashlib.sha256(mp4).hexdigest()
    malls = [{"id": mall_id(i), "name": name} for i, (name, _) in enumerate(MALLS)]
    pins = [
        {"id": pin_id(m, p), "mall_id": mall_id(m), "name": pin_name}
        for m, (_, pin_names) in enumerate(MALLS)
        for p, pin_name in enumerate(pin_names)
    ]
    names = {pin["id"]: pin["name"] for pin in pins}
    statuses = list(STATUS_WEIGHTS)
    world = DemoWorld(malls=malls, pins=pins, videos=[], jobs=[])
    for n in range(videos):
        rng = random.Random(f"demo:{n}")
        # The first four cover every status, whatever the count asked for.
        status = (
            ("pending", "processing", "completed", "failed")[n]
            if n < 4
            else rng.choices(statuses, weights=list(STATUS_WEIGHTS.values()))[0]
        )
        pin = rng.choice(pins)
        hours = RECENT_HOURS.get(status, SPREAD_DAYS * 24)
        uploaded = now - timedelta(seconds=rng.uniform(60, hours * 3600))
        recorded = uploaded - timedelta(minutes=rng.uniform(5, 180))
        vid, mall = video_id(n), pin["mall_id"]
        original = f"videos/{mall}/original/{vid}.mp4"
        row: dict[str, Any] = {
            "id": vid,
            "mall_id": mall,
            "pin_id": pin["id"],
            "original_filename": f"{_slug(names[pin['id']])}_{recorded:%Y-%m-%d_%H-%M}.mp4",
            "original_path": original,
            "file_size_bytes": len(mp4),
            "checksum_sha256": checksum,
            "proxy_path": None,
            "proxy_size_bytes": None,
            "thumbnail_path": None,
            "width": None,
            "height": None,
            "fps": None,
            "duration_seconds": None,
            "codec": None,
            "processing_status": status,
            "processing_job_id": None,
            "processing_error": None,
            "processing_started_at": None,
            "processing_completed_at": None,
            "uploaded_at": uploaded,
            "recorded_at": recorded,
            "operator_notes": None,
            "legal_hold": False,
        }
        world.objects[original] = "demo.mp4"
        if status != "pending":
            # The pipeline probed the upload: what the demo MP4 really is.
            row.update(width=128, height=72, fps=10.0, duration_seconds=2.0, codec="h264")
            started = uploaded + timedelta(seconds=rng.uniform(5, 60))
            job = uuid.uuid5(NAMESPACE, f"job:{n}")
            row.update(processing_job_id=job, processing_started_at=started)
            job_status = {"processing": "running"}.get(status, status)
            world.jobs.append({"id": job, "video_id": vid, "status": job_status})
            if status in ("completed", "failed"):
                row["processing_completed_at"] = started + timedelta(seconds=rng.uniform(20, 300))
        if status == "completed":
            proxy = f"videos/{mall}/proxy/{vid}.mp4"
            thumbnail = f"thumbnails/{mall}/{vid}.jpg"
            row.update(proxy_path=proxy, proxy_size_bytes=len(mp4), thumbnail_path=thumbnail)
            world.objects[proxy] = "demo.mp4"
            world.objects[thumbnail] = "demo.jpg"
        if status == "failed":
            row["processing_error"] = rng.choice(FAILURES)
        if n % 37 == 5:
            note = NOTES[(n // 37) % len(NOTES)]
            row["operator_notes"] = note
            row["legal_hold"] = note.startswith("Incident")
        world.videos.append(row)
    return world


class DemoRefused(Exception):
    """The database holds data that is not the demo's; the message says what to do."""


def foreign_rows(engine: Engine) -> tuple[int, int]:
    """(malls, videos) that no demo run wrote."""
    demo = list(DEMO_MALL_IDS)
    with engine.connect() as conn:
        malls = conn.scalar(select(func.count()).select_from(Mall).where(Mall.id.not_in(demo)))
        videos = conn.scalar(
            select(func.count()).select_from(Video).where(Video.mall_id.not_in(demo))
        )
    return int(malls or 0), int(videos or 0)


def write_rows(engine: Engine, world: DemoWorld) -> list[str]:
    """Replace the demo's rows with ``world``'s in one transaction; the keys it dropped."""
    demo = list(DEMO_MALL_IDS)
    new_ids = {row["id"] for row in world.videos}
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        dropped: list[str] = []
        for row in conn.execute(
            select(Video.id, Video.original_path, Video.proxy_path, Video.thumbnail_path).where(
                Video.mall_id.in_(demo)
            )
        ):
            if row.id not in new_ids:
                dropped += [k for k in (row.original_path, row.proxy_path, row.thumbnail_path) if k]
        conn.execute(delete(Video).where(Video.mall_id.in_(demo)))  # jobs follow by cascade
        for table, rows in ((Mall, world.malls), (CameraPin, world.pins)):
            statement = pg_insert(table).values(rows)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[table.id],
                    set_={
                        column: statement.excluded[column] for column in rows[0] if column != "id"
                    },
                )
            )
        world_pins = [pin["id"] for pin in world.pins]
        conn.execute(
            delete(CameraPin).where(CameraPin.mall_id.in_(demo), CameraPin.id.not_in(world_pins))
        )
        for chunk in _chunks(world.videos, 500):
            conn.execute(insert(Video), chunk)
        for chunk in _chunks(world.jobs, 500):
            conn.execute(insert(ProcessingJob), chunk)
    return dropped


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


CONTENT_TYPES = {"demo.mp4": "video/mp4", "demo.jpg": "image/jpeg"}


def upload_objects(
    client: Any,
    bucket: str,
    objects: dict[str, str],
    advance: Callable[[int], None],
) -> int:
    """Put every object the bucket lacks (or holds at another size); returns how many."""
    bodies = {name: asset(name) for name in set(objects.values())}
    present: dict[str, int] = {}
    # One listing per folder the demo writes to, not a HEAD per object.
    for prefix in sorted({key.rsplit("/", 1)[0] + "/" for key in objects}):
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            present.update((item["Key"], item["Size"]) for item in page.get("Contents", []))
    wanted = [k for k, name in objects.items() if present.get(k) != len(bodies[name])]
    advance(len(objects) - len(wanted))

    def put(key: str) -> None:
        name = objects[key]
        client.put_object(
            Bucket=bucket, Key=key, Body=bodies[name], ContentType=CONTENT_TYPES[name]
        )
        advance(1)

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        for _ in pool.map(put, wanted):
            pass
    return len(wanted)


@dataclass
class DemoReport:
    world: DemoWorld
    uploaded: int
    removed: int
    foreign_malls: int
    foreign_videos: int

    def sample(self) -> dict[str, Any]:
        """The newest completed video of the first mall: the one the quick start uses."""
        videos = self.world.videos
        completed = [v for v in videos if v["processing_status"] == "completed"] or videos
        first = [v for v in completed if v["mall_id"] == DEMO_MALL_IDS[0]] or completed
        return max(first, key=lambda v: v["uploaded_at"])


def load(
    settings: Settings,
    *,
    videos: int = DEFAULT_VIDEOS,
    force: bool = False,
    progress: Callable[[str, int], Any] | None = None,
    now: datetime | None = None,
) -> DemoReport:
    """Migrate, check, write the rows, upload the objects, refresh the statistics.

    ``progress(description, total)`` returns a context manager yielding ``advance(n)``.
    """
    from contextlib import nullcontext

    import handlers
    from schemas.requests import RefreshStats
    from worker.adapters.postgres.migrate import upgrade
    from worker.adapters.postgres.uow import make_engine
    from worker.adapters.s3.store import S3ObjectStore
    from worker.bootstrap import build_deps

    def step(description: str, total: int):  # noqa: ANN202 - a context manager
        if progress is None:
            return nullcontext(lambda _n=1: None)
        return progress(description, total)

    upgrade(settings.database_url)
    engine = make_engine(settings)
    try:
        foreign_malls, foreign_videos = foreign_rows(engine)
        if (foreign_malls or foreign_videos) and not force:
            raise DemoRefused(
                f"the database holds data that is not the demo's ({foreign_videos} videos, "
                f"{foreign_malls} malls); refusing to mix the demo into it: use an empty "
                "database, or pass --force to add the demo world beside that data"
            )
        world = build_world(now or datetime.now(UTC), videos)
        dropped = write_rows(engine, world)
    finally:
        engine.dispose()
    store = S3ObjectStore(settings)
    store.ensure_bucket()
    with step("uploading demo objects", len(world.objects)) as advance:
        uploaded = upload_objects(store.client, store.bucket, world.objects, advance)
    stale = [key for key in dropped if key not in world.objects]
    removed = len(store.delete_many(stale).deleted) if stale else 0
    deps = build_deps(settings, enqueue=_no_follow_ups)
    deps.cache.forget_pins(pin["id"] for pin in world.pins)
    handlers.refresh_stats(RefreshStats(), deps)
    return DemoReport(world, uploaded, removed, foreign_malls, foreign_videos)


def _no_follow_ups(task: str, kwargs: dict, countdown: float, task_id: str | None = None) -> None:
    """A statistics refresh asks for no further task; anything else would be a surprise."""
    raise RuntimeError(f"the demo does not send tasks (asked for {task})")


def summary(report: DemoReport, bucket: str) -> list[str]:
    world = report.world
    counts = world.by_status()
    kinds = Counter(
        "proxies"
        if "/proxy/" in k
        else "thumbnails"
        if k.startswith("thumbnails/")
        else "originals"
        for k in world.objects
    )
    sample = report.sample()
    first_mall = world.malls[0]
    lines = [
        f"demo world ready: {len(world.malls)} malls, {len(world.pins)} camera pins, "
        f"{len(world.videos)} videos uploaded over the last 90 days",
        "  by status: "
        + ", ".join(f"{counts[s]} {s}" for s in ("completed", "processing", "pending", "failed")),
        f"  bucket {bucket}: {kinds['originals']} originals, {kinds['proxies']} proxies, "
        f"{kinds['thumbnails']} thumbnails (real MP4 and JPEG; {report.uploaded} uploaded now)",
    ]
    for mall in world.malls:
        pins = sum(1 for pin in world.pins if pin["mall_id"] == mall["id"])
        lines.append(f"  mall {mall['id']}  {mall['name']} ({pins} pins)")
    if report.foreign_videos or report.foreign_malls:
        lines.append(
            f"  (--force: beside {report.foreign_videos} videos and {report.foreign_malls} "
            "malls of other data, left as they were)"
        )
    lines += [
        "try:",
        f"  videoworker call videos.list mall_id={first_mall['id']} page_size=3",
        f"  videoworker call videos.sign_url video_id={sample['id']} target=proxy",
        f"  videoworker call videos.delete video_id={sample['id']}",
    ]
    return lines


def _where(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


def command(args) -> int:  # noqa: ANN001 - the parsed arguments
    """``videoworker demo [--videos N] [--force]``."""
    import sys

    from worker.ops.progress import tracker
    from worker.settings import get_settings

    settings = get_settings()
    print(
        f"videoworker demo: PostgreSQL {_where(settings)}, bucket {settings.s3_bucket}",
        flush=True,
    )
    try:
        report = load(
            settings,
            videos=args.videos,
            force=args.force,
            progress=lambda description, total: tracker(description, total),
        )
    except DemoRefused as exc:
        print(f"videoworker demo: {exc}", file=sys.stderr)
        return 1
    for line in summary(report, settings.s3_bucket):
        print(line)
    return 0


__all__ = [
    "DEMO_MALL_IDS",
    "DemoRefused",
    "DemoReport",
    "DemoWorld",
    "build_world",
    "command",
    "load",
    "summary",
]
