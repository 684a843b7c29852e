"""A realistic catalog, bulk-loaded with ``COPY``: the data set every bench runs on.

What it builds (deterministic for a given ``--seed``):

* 20 malls and 400 camera pins (20 per mall). Traffic is skewed the way real sites
  are: the busiest mall holds ~18% of all videos, the quietest ~2%; within a mall the
  entrances and car parks record more than the loading dock.
* N videos (``--videos``, default 1,000,000) uploaded over the last 3 years, growing
  over time (the last month has ~3x the uploads of the first) and mostly in mall
  hours. Rows are written in upload order, as an append-mostly table would be.
* All four statuses, by age: recent uploads are largely ``pending``/``processing``;
  older ones are ~97% ``completed`` with a small tail of stuck ``pending``/
  ``processing`` and ~2.5% ``failed``. Only completed videos have a proxy, and 3% of
  those have none (transcode skipped); 5% of completed videos have no thumbnail.
  Paths follow the worker's key layout, sizes follow duration x bitrate of the
  resolution/codec, durations mix short event clips and fixed 5-60 min segments.
* Searchable text as operators meet it. ``original_filename`` follows the recorder
  of the mall (five layouts: ``CAM07_20251012_143000``, Hikvision ``ch07_...``/
  ``192.168.3.107_01_..._MOTION``, Dahua ``NVR_ch7_main_<start>_<end>``, Axis
  ``ACCC8E..._<date>_<time>``, Milestone ``Entrance North (CAM07) 2025-10-12 14.30.00``),
  with operator exports named by hand (~5%: ``incident_48213_food_court_a``,
  ``Shoplifting - Zara - 12.10.2025``), phone clips (~3%: ``IMG_4821``, ``PXL_...``) and
  body cameras (~1%). ~10% of videos carry ``operator_notes`` (incident and case
  numbers, store and camera names, who reviewed what). The text comes from its own
  generator, so every other column is the same row for row as without it.
* ``trashed`` (a fraction, default 0): that share of the videos is in the trash,
  trashed in the last 30 days by one of a few operators.

How it loads: one transaction truncates the catalog tables (by CASCADE, also any table
referencing them), drops the secondary indexes and foreign keys of ``videos`` (their
definitions are read back from the catalog, so whatever the migrations created is
restored exactly), streams the rows with ``COPY ... (FREEZE)`` while they are
generated, re-creates the indexes and foreign keys, commits, then ``ANALYZE``. FREEZE
also marks the pages all-visible, so index-only scans see the table the way a
vacuumed production table is seen.
``--strategy direct`` copies into the fully indexed table instead: measured slower
(1M rows on the 2-core dev box: 44 s direct vs 31 s rebuild with the 0001 schema).

Run on its own: ``python -m bench.dataset --database-url URL [--videos N]`` migrates
the database at URL to head and replaces its catalog (every row of those tables is
deleted), printing the time of each step.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

MALLS = 20
PINS_PER_MALL = 20
DAYS = 3 * 365
DEFAULT_VIDEOS = 1_000_000
DEFAULT_SEED = 20261124
CHUNK_ROWS = 20_000
BENCH_HOME = Path(__file__).resolve().parent.parent / ".videoworker" / "bench"

MALL_NAMES = (
    "Riverside Galleria", "Northgate Plaza", "Harbour Point", "Westfield Crossing",
    "Lakeside Commons", "Summit Square", "Oakridge Centre", "Bayview Mall",
    "Central Arcade", "Pinecrest Market", "Meadowbrook Shops", "Eastwood Court",
    "Silver Creek Mall", "Kingsway Exchange", "Maple Grove Centre", "Seaport Walk",
    "Highland Fair", "Granite Park", "Sunset Promenade", "Victoria Quarter",
)  # fmt: skip
PIN_NAMES = (
    "Entrance North", "Entrance South", "Parking P1", "Parking P2", "Food Court A",
    "Entrance East", "Entrance West", "Atrium", "Food Court B", "Parking P3",
    "Escalator L1", "Escalator L2", "Cinema Lobby", "Kids Zone", "Restrooms L1",
    "Restrooms L2", "Service Corridor", "Emergency Exit East", "Emergency Exit West",
    "Loading Dock",
)  # fmt: skip
RESOLUTIONS = ((1920, 1080, 4.0e6), (1280, 720, 2.0e6), (2560, 1440, 6.0e6), (3840, 2160, 12e6))
RESOLUTION_WEIGHTS = (70, 15, 10, 5)
SEGMENTS = (300, 600, 900, 1800, 3600)
ERRORS = (
    "ffmpeg exited with status 1: moov atom not found",
    "ffprobe: Invalid data found when processing input",
    "transcode timed out after 3600s",
    "S3 upload of proxy failed: SlowDown",
    "unsupported codec: mjpeg",
)
VENDORS = ("generic", "hikvision", "dahua", "axis", "milestone")  # mall i records with i % 5
STORES = (
    "Zara", "H&M", "Apple Store", "Boots", "Starbucks", "Foot Locker", "Sephora", "Primark",
    "Lego Store", "Costa Coffee", "Pandora", "JD Sports", "Five Guys", "Waterstones",
)  # fmt: skip
EVENTS = (
    "shoplifting", "slip and fall", "lost child", "vandalism", "fight", "suspicious package",
    "customer complaint", "parking dispute", "fire alarm test",
)  # fmt: skip
OPERATORS = ("J. Okafor", "M. Lindqvist", "A. Haddad", "S. Moreau", "K. Tanaka", "R. Patel")
TRASHERS = ("ops-okafor", "ops-lindqvist", "ops-haddad", "ops-moreau")
# Operator notes: {inc} incident, {case} police case, {claim} insurance claim, {store},
# {pin}, {who} reviewer, {date} a day, {plate} a number plate.
NOTES = (
    "Requested by mall security: incident report {inc}",
    "Keep: insurance claim {claim} pending",
    "Camera lens obstructed for part of the recording",
    "Police request {case}, do not delete before case closes",
    "Customer complaint at {store}, reviewed by {who}",
    "Slip and fall near {pin}; first aid given",
    "Reviewed by {who} on {date}: nothing relevant",
    "Shoplifting suspect leaving {store}, see also {pin}",
    "Lost child reunited with parents at {pin}",
    "Footage exported for {store} management",
    "Night cleaning crew visible, clock off by one hour",
    "Low light, faces not identifiable",
    "Duplicate upload, keep the proxy only",
    "Vehicle {plate} involved in parking dispute",
    "Water leak reported near {pin}, facilities informed",
    "Fire alarm test, no incident",
)
VIDEO_COLUMNS = (
    "id", "mall_id", "pin_id", "original_filename", "original_path", "file_size_bytes",
    "checksum_sha256", "proxy_path", "proxy_size_bytes", "thumbnail_path", "width", "height",
    "fps", "duration_seconds", "codec", "processing_status", "processing_job_id",
    "processing_error", "processing_started_at", "processing_completed_at", "uploaded_at",
    "recorded_at", "created_at", "updated_at", "operator_notes", "trashed_at", "trashed_by",
)  # fmt: skip
TABLES = ("malls", "camera_pins", "videos", "processing_jobs", "storage_deletions")
NULL = "\\N"


def conninfo(url: str) -> str:
    """A libpq connection string from a SQLAlchemy URL (``postgresql+psycopg://...``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@dataclass
class LoadReport:
    videos: int
    strategy: str
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(self.steps.values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {secs:.1f}s" for name, secs in self.steps.items())
        return f"loaded {self.videos:,} videos in {self.seconds:.1f}s ({self.strategy}: {parts})"


class _Ids:
    """UUIDv4-shaped strings from the seeded generator (uuid4() would not be repeatable)."""

    def __init__(self, rng: random.Random) -> None:
        self.bits = rng.getrandbits

    def __call__(self) -> str:
        h = f"{self.bits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


@dataclass
class _Clock:
    """Epoch seconds to timestamptz text, from per-day and per-second string tables."""

    first_day: int
    last_day: int
    days: list[str] = field(init=False)
    compact_days: list[str] = field(init=False)
    times: list[str] = field(init=False)
    compact_times: list[str] = field(init=False)

    def __post_init__(self) -> None:
        span = range(self.first_day - 2, self.last_day + 2)
        dates = [datetime.fromtimestamp(day * 86400, UTC) for day in span]
        self.days = [d.strftime("%Y-%m-%d") for d in dates]
        self.compact_days = [d.strftime("%Y%m%d") for d in dates]
        self.times = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)]
        self.compact_times = [t.replace(":", "") for t in self.times]

    def text(self, epoch: int) -> str:
        day, second = divmod(epoch, 86400)
        return f"{self.days[day - self.first_day + 2]} {self.times[second]}+00"


class _Text:
    """``original_filename`` and ``operator_notes`` of one video, from their own generator."""

    def __init__(self, rng: random.Random, catalog: Catalog, clock: _Clock) -> None:
        self.rng, self.clock = rng, clock
        pins = range(len(catalog.pins))
        self.vendor = [VENDORS[(i // PINS_PER_MALL) % len(VENDORS)] for i in pins]
        self.mall_no = [i // PINS_PER_MALL + 1 for i in pins]
        self.cam = [i % PINS_PER_MALL + 1 for i in pins]
        self.name = [name for _, _, name in catalog.pins]
        self.slug = [name.lower().replace(" ", "_") for name in self.name]
        self.mac = [f"ACCC8E{rng.getrandbits(24):06X}" for _ in pins]

    def _when(self, epoch: int) -> tuple[str, str]:
        day, second = divmod(epoch, 86400)
        i = day - self.clock.first_day + 2
        return self.clock.compact_days[i], self.clock.compact_times[second]

    def filename(self, pin: int, recorded: int, duration: float) -> str:
        """A stem as the recorder, an operator's export, a phone or a body camera names it."""
        rng, cam = self.rng, self.cam[pin]
        ymd, hms = self._when(recorded)
        iso = f"{ymd[:4]}-{ymd[4:6]}-{ymd[6:]}"
        r = rng.random()
        if r < 0.05:  # exported and named by an operator
            kind = rng.randrange(4)
            if kind == 0:
                return f"incident_{rng.randrange(10000, 100000)}_{self.slug[pin]}"
            if kind == 1:
                return f"{self.slug[pin]}_{iso}_export"
            event = EVENTS[rng.randrange(len(EVENTS))]
            if kind == 2:
                dotted = f"{ymd[6:]}.{ymd[4:6]}.{ymd[:4]}"
                return f"{event.capitalize()} - {self.name[pin]} - {dotted}"
            return f"{STORES[rng.randrange(len(STORES))]} {event} {iso}"
        if r < 0.08:  # a phone
            kind = rng.randrange(3)
            if kind == 0:
                return f"IMG_{rng.randrange(10000):04d}"
            return f"VID_{ymd}_{hms}" if kind == 1 else f"PXL_{ymd}_{hms}{rng.randrange(1000):03d}"
        if r < 0.09:  # a body camera
            if rng.random() < 0.5:
                return f"GX01{rng.randrange(10000):04d}"
            return f"BWC{rng.randrange(1, 40):04d}_{ymd}{hms}"
        vendor = self.vendor[pin]
        if vendor == "hikvision":
            if rng.random() < 0.7:
                return f"ch{cam:02d}_{ymd}{hms}"
            kind = ("MOTION", "TIMING", "ALARM")[rng.randrange(3)]
            ip = f"192.168.{self.mall_no[pin]}.{100 + cam}"
            return f"{ip}_01_{ymd}{hms}{rng.randrange(1000):03d}_{kind}"
        if vendor == "dahua":
            end_ymd, end_hms = self._when(recorded + int(duration))
            return f"NVR_ch{cam}_main_{ymd}{hms}_{end_ymd}{end_hms}"
        if vendor == "axis":
            return f"{self.mac[pin]}_{ymd}_{hms}"
        if vendor == "milestone":
            return f"{self.name[pin]} (CAM{cam:02d}) {iso} {hms[:2]}.{hms[2:4]}.{hms[4:]}"
        return f"CAM{cam:02d}_{ymd}_{hms}"

    def notes(self, pin: int, recorded: int) -> str:
        rng = self.rng
        if rng.random() >= 0.10:
            return NULL
        reviewed = recorded + int(rng.uniform(0, 30 * 86400))  # within a month
        ymd, _ = self._when(min(reviewed, (self.clock.last_day + 1) * 86400))
        letters = "ABCDEFGHJKLMNPRSTVWXYZ"
        plate = "".join(letters[rng.randrange(22)] for _ in range(2)) + f"{rng.randrange(10, 75)} "
        plate += "".join(letters[rng.randrange(22)] for _ in range(3))
        return NOTES[rng.randrange(len(NOTES))].format(
            inc=rng.randrange(10000, 100000),
            case=f"CR-{ymd[2:4]}-{rng.randrange(100000):05d}",
            claim=f"CLM{rng.randrange(1000000):06d}",
            store=STORES[rng.randrange(len(STORES))],
            pin=self.name[pin],
            who=OPERATORS[rng.randrange(len(OPERATORS))],
            date=f"{ymd[:4]}-{ymd[4:6]}-{ymd[6:]}",
            plate=plate,
        )


@dataclass
class Catalog:
    malls: list[tuple[str, str]]  # (id, name)
    pins: list[tuple[str, str, str]]  # (id, mall_id, name)
    pin_weights: list[float]


def make_catalog(rng: random.Random) -> Catalog:
    new_id = _Ids(rng)
    malls = [(new_id(), name) for name in MALL_NAMES[:MALLS]]
    mall_weights = [1 / (i + 1) ** 0.7 for i in range(MALLS)]
    pin_share = [1 / (j + 1) ** 0.5 for j in range(PINS_PER_MALL)]
    share_total = sum(pin_share)
    pins, weights = [], []
    for (mall_id, _), mall_weight in zip(malls, mall_weights, strict=True):
        for j in range(PINS_PER_MALL):
            pins.append((new_id(), mall_id, PIN_NAMES[j]))
            weights.append(mall_weight * pin_share[j] / share_total)
    return Catalog(malls=malls, pins=pins, pin_weights=weights)


def video_rows(
    rng: random.Random,
    catalog: Catalog,
    count: int,
    end: int,
    *,
    seed: int = DEFAULT_SEED,
    trashed: float = 0.0,
) -> Iterator[str]:
    """COPY text chunks of ``count`` video rows, in upload order, the newest at ``end``.

    ``rng`` draws every column but the text and the trash, which have generators of
    their own (from ``seed``): neither changes what the others hold.
    """
    last_day = end // 86400
    first_day = last_day - DAYS + 1
    clock = _Clock(first_day, last_day)
    text = _Text(random.Random(f"{seed}/text"), catalog, clock)
    trash_rng = random.Random(f"{seed}/trash")
    new_id = _Ids(rng)
    bits, uniform, random_, choices = rng.getrandbits, rng.uniform, rng.random, rng.choices

    # Upload days: half uniform, half with density growing linearly (sqrt of uniform).
    fractions = (random_() for _ in range(count))
    days = sorted(int(DAYS * (u if random_() < 0.5 else math.sqrt(u))) for u in fractions)
    pin_index = choices(range(len(catalog.pins)), weights=catalog.pin_weights, k=count)
    resolution = choices(RESOLUTIONS, weights=RESOLUTION_WEIGHTS, k=count)

    lines: list[str] = []
    for n in range(count):
        # 85% of uploads in mall hours (08:00-23:00), the rest at any time of day.
        second = int(uniform(28800, 82800)) if random_() < 0.85 else int(uniform(0, 86400))
        uploaded = (first_day + days[n]) * 86400 + second
        if uploaded > end:
            uploaded -= 86400
        age = end - uploaded
        r = random_()
        if age < 6 * 3600:
            status = (
                "pending" if r < 0.45 else "processing" if r < 0.60 else "failed"
                if r < 0.62 else "completed"
            )  # fmt: skip
        elif age < 3 * 86400:
            status = (
                "pending" if r < 0.03 else "processing" if r < 0.04 else "failed"
                if r < 0.07 else "completed"
            )  # fmt: skip
        else:
            status = (
                "pending" if r < 0.004 else "processing" if r < 0.006 else "failed"
                if r < 0.031 else "completed"
            )  # fmt: skip

        if random_() < 0.55:  # event clip, median 90 s
            duration = min(max(rng.lognormvariate(4.5, 0.8), 5.0), 1800.0)
        else:  # fixed-length segment
            duration = SEGMENTS[bits(16) % 5] + uniform(-2.0, 2.0)
        width, height, bitrate = resolution[n]
        hevc = random_() < 0.2
        size = int(duration * bitrate * (0.6 if hevc else 1.0) * uniform(0.7, 1.3) / 8)
        recorded = uploaded - int(duration) - int(uniform(30, 1800))

        video_id = new_id()
        pin_id, mall_id, _ = catalog.pins[pin_index[n]]
        ext = ".mov" if bits(4) == 0 else ".mp4"
        filename = text.filename(pin_index[n], recorded, duration) + ext
        original = f"videos/{mall_id}/original/{video_id}{ext}"
        checksum = f"{bits(256):064x}" if random_() < 0.98 else NULL
        uploaded_text = f"{clock.text(uploaded)[:-3]}.{bits(20) % 1_000_000:06d}+00"

        proxy = proxy_size = thumb = job = error = started = completed = NULL
        probed = status != "pending"
        if status == "completed":
            if random_() < 0.97:
                proxy = f"videos/{mall_id}/proxy/{video_id}.mp4"
                proxy_size = str(int(duration * 1.5e6 * uniform(0.8, 1.2) / 8))
            if random_() < 0.95:
                thumb = f"thumbnails/{mall_id}/{video_id}.jpg"
        elif status == "failed":
            error = ERRORS[bits(8) % len(ERRORS)]
            if random_() < 0.2:
                thumb = f"thumbnails/{mall_id}/{video_id}.jpg"
        updated = uploaded_text
        if probed:
            job = new_id()
            start = uploaded + int(uniform(2, 600))
            finish = start + 5 + int(duration * uniform(0.1, 0.4))
            if status != "processing" and finish > end:  # not done yet: still processing
                status, proxy, proxy_size, thumb, error = "processing", NULL, NULL, NULL, NULL
            if start > end:  # not even started
                status, probed, job = "pending", False, NULL
            else:
                started = updated = clock.text(start)
                if status != "processing":
                    completed = updated = clock.text(finish)
        if random_() < 0.003:  # the draws of the notes this data set once had, kept so
            bits(8)  # that every other column is still the same row for row
        notes = text.notes(pin_index[n], recorded)
        trashed_at = trashed_by = NULL
        if trashed and trash_rng.random() < trashed:
            since = max(uploaded, end - 30 * 86400)
            trashed_at = clock.text(int(trash_rng.uniform(since, end)))
            trashed_by = TRASHERS[trash_rng.randrange(len(TRASHERS))]
        lines.append(
            f"{video_id}\t{mall_id}\t{pin_id}\t{filename}\t{original}\t{size}\t{checksum}\t"
            f"{proxy}\t{proxy_size}\t{thumb}\t"
            + (
                f"{width}\t{height}\t{25.0 if bits(1) else 30.0}\t{duration:.3f}\t"
                f"{'hevc' if hevc else 'h264'}\t"
                if probed
                else f"{NULL}\t{NULL}\t{NULL}\t{NULL}\t{NULL}\t"
            )
            + f"{status}\t{job}\t{error}\t{started}\t{completed}\t{uploaded_text}\t"
            f"{clock.text(recorded)}\t{uploaded_text}\t{updated}\t{notes}\t"
            f"{trashed_at}\t{trashed_by}"
        )
        if len(lines) == CHUNK_ROWS:
            yield "\n".join(lines) + "\n"
            lines.clear()
    if lines:
        yield "\n".join(lines) + "\n"


def _secondary(
    conn: psycopg.Connection, table: str = "videos"
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Definitions of the non-primary indexes and the foreign keys of ``table``."""
    indexes = conn.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = %(table)s::regclass AND NOT i.indisprimary ORDER BY c.relname",
        {"table": table},
    ).fetchall()
    foreign_keys = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %(table)s::regclass AND contype = 'f' ORDER BY conname",
        {"table": table},
    ).fetchall()
    return indexes, foreign_keys


def _drop(conn: psycopg.Connection, table: str, indexes: list, foreign_keys: list) -> None:
    for name, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    for name, _ in foreign_keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )


def _restore_indexes(conn: psycopg.Connection, indexes: list) -> None:
    for _, definition in indexes:
        conn.execute(sql.SQL(definition))  # type: ignore[arg-type]


def _restore_foreign_keys(conn: psycopg.Connection, table: str, foreign_keys: list) -> None:
    for name, definition in foreign_keys:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(table),
                sql.Identifier(name),
                sql.SQL(definition),  # type: ignore[arg-type]
            )
        )


def migration_sql(filename: str, *names: str) -> list[str]:
    """Statements of a migration, as it runs them: what a migration fills from the rows
    already there, the loader and the benches fill the same way."""
    path = Path(__file__).resolve().parent.parent / "migrations" / "versions" / filename
    spec = importlib.util.spec_from_file_location(f"bench_migration_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return [statement for name in names for statement in _statements(getattr(module, name))]


def _statements(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else value


# Triggers the loader turns off while it copies, on again before it commits. Migration
# 0015's takes the removal engine's advisory lock for every key a statement registers:
# a million-row COPY would hold three million locks in one transaction (PostgreSQL's
# lock table refuses, "out of shared memory"), to guard a freshly emptied catalogue
# that no deletion engine is working on.
# Migration 0025's copies every new row into ``video_search`` with its GIN index in place:
# the loader fills that table after the copy instead, as the migration does, then builds
# its index once.
LOAD_SKIPPED_TRIGGERS = ("videos_keys_inserted", "videos_search_inserted")


# Tags each mall uses, and the share of its videos that carry each: drawn per video and
# tag from a hash of both, so the rest of the data set does not change with them.
TAGS = (("reviewed", 0.10), ("incident", 0.02), ("evidence", 0.01), ("escalated", 0.003))

TAG_MALLS = """
INSERT INTO tags (id, mall_id, name, created_at)
SELECT md5(m.id::text || '/' || tag.name)::uuid, m.id, tag.name, m.created_at
FROM malls AS m, unnest(%(names)s::text[]) AS tag(name)
"""

TAG_VIDEOS = """
INSERT INTO video_tags (video_id, tag_id, tagged_at, tagged_by, mall_id, pin_id,
                        uploaded_at, trashed)
SELECT v.id, t.id, v.uploaded_at + interval '1 hour', 'bench', v.mall_id, v.pin_id,
       v.uploaded_at, v.trashed_at IS NOT NULL
FROM videos AS v
JOIN tags AS t ON t.mall_id = v.mall_id
JOIN unnest(%(names)s::text[], %(shares)s::float8[]) AS tag(name, share) ON tag.name = t.name
WHERE (hashtextextended(v.id::text || '/' || tag.name, 0) & 1048575) < tag.share * 1048576
"""


def _tag(conn: psycopg.Connection) -> None:
    """Every mall's ``TAGS``, on their share of its videos; ``video_tags``'s indexes,
    keys and the search index's triggers off while it fills (the search table is
    filled after, with its tags)."""
    indexes, foreign_keys = _secondary(conn, "video_tags")
    _drop(conn, "video_tags", indexes, foreign_keys)
    conn.execute("ALTER TABLE video_tags DISABLE TRIGGER video_tags_search_added")
    values = {"names": [name for name, _ in TAGS], "shares": [share for _, share in TAGS]}
    conn.execute(TAG_MALLS, values)
    conn.execute(TAG_VIDEOS, values)
    conn.execute("ALTER TABLE video_tags ENABLE TRIGGER video_tags_search_added")
    _restore_indexes(conn, indexes)
    _restore_foreign_keys(conn, "video_tags", foreign_keys)


def _load_skipped_triggers(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'videos'::regclass"
        " AND tgname = ANY(%(names)s)",
        {"names": list(LOAD_SKIPPED_TRIGGERS)},
    ).fetchall()
    return [name for (name,) in rows]


def load(
    url: str,
    videos: int = DEFAULT_VIDEOS,
    *,
    seed: int = DEFAULT_SEED,
    strategy: str = "rebuild",
    end: datetime | None = None,
    log: bool = True,
    trashed: float = 0.0,
) -> LoadReport:
    """Replace the catalog in the (migrated) database at ``url`` with a generated one."""
    if strategy not in ("rebuild", "direct"):
        raise ValueError(f"unknown strategy {strategy!r}")
    rng = random.Random(seed)
    catalog = make_catalog(rng)
    end_epoch = int((end or datetime.now(UTC)).timestamp())
    report = LoadReport(videos=videos, strategy=strategy)

    def step(name: str, started: float) -> float:
        now = time.perf_counter()
        report.steps[name] = now - started
        if log:
            print(f"  {name}: {now - started:.1f}s", file=sys.stderr, flush=True)
        return now

    with psycopg.connect(conninfo(url)) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET synchronous_commit = off")
        t = time.perf_counter()
        # CASCADE: also empties any later table that references these (mall_retention, ...).
        tables = sql.SQL(", ").join(map(sql.Identifier, TABLES))
        conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(tables))
        conn.execute("TRUNCATE video_search_periods")
        indexes, foreign_keys = _secondary(conn)
        if strategy == "rebuild":
            _drop(conn, "videos", indexes, foreign_keys)
        search_indexes, search_keys = _secondary(conn, "video_search")
        _drop(conn, "video_search", search_indexes, search_keys)
        skipped = _load_skipped_triggers(conn)
        for name in skipped:
            conn.execute(
                sql.SQL("ALTER TABLE videos DISABLE TRIGGER {}").format(sql.Identifier(name))
            )
        created = datetime.fromtimestamp(end_epoch - (DAYS + 30) * 86400, UTC)
        with conn.cursor() as cur:
            with cur.copy("COPY malls (id, name, created_at) FROM STDIN (FREEZE)") as copy:
                for mall_id, name in catalog.malls:
                    copy.write_row((mall_id, name, created))
            with cur.copy(
                "COPY camera_pins (id, mall_id, name, created_at) FROM STDIN (FREEZE)"
            ) as copy:
                for pin_id, mall_id, name in catalog.pins:
                    copy.write_row((pin_id, mall_id, name, created))
            columns = sql.SQL(", ").join(map(sql.Identifier, VIDEO_COLUMNS))
            statement = sql.SQL("COPY videos ({}) FROM STDIN (FREEZE)").format(columns)
            with cur.copy(statement) as copy:
                for chunk in video_rows(
                    rng, catalog, videos, end_epoch, seed=seed, trashed=trashed
                ):
                    copy.write(chunk)
        t = step("copy", t)
        if strategy == "rebuild":
            _restore_indexes(conn, indexes)
            t = step("indexes", t)
            _restore_foreign_keys(conn, "videos", foreign_keys)
            t = step("foreign keys", t)
        _tag(conn)
        t = step("tags", t)
        for statement in migration_sql("0025_search_table.py", "BACKFILL"):
            conn.execute(sql.SQL(statement))  # type: ignore[arg-type]
        _restore_indexes(conn, search_indexes)
        _restore_foreign_keys(conn, "video_search", search_keys)
        t = step("search table", t)
        for name in skipped:
            conn.execute(
                sql.SQL("ALTER TABLE videos ENABLE TRIGGER {}").format(sql.Identifier(name))
            )
        conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
        step("analyze", t)
    return report


def _running_postgres(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) postgres process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z" and b"postgres" in command


class Server:
    """A PostgreSQL server to create bench databases on: ours (embedded) or the given one."""

    def __init__(
        self,
        database_url: str | None,
        home: Path | None,
        keep: bool,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.given = database_url
        self.settings = settings or {}
        self.keep = keep
        self.home = home
        self.embedded = None
        self.temporary = False
        self.postmaster: int | None = None

    def _stop_postmaster(self) -> None:
        """If pg_ctl could not stop our server (its data dir removed under it), signal it."""
        if self.postmaster is None or not _running_postgres(self.postmaster):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.postmaster, signal.SIGINT)  # fast shutdown of that one server
        for _ in range(100):
            if not _running_postgres(self.postmaster):
                return
            time.sleep(0.1)

    def __enter__(self) -> Server:
        if self.given is None:
            from worker.dev.embedded import EmbeddedPostgres, free_port

            if self.home is None:
                self.home = Path(tempfile.mkdtemp(prefix="videoworker-bench-"))
                self.temporary = True
            self.embedded = EmbeddedPostgres(
                self.home / "postgres", free_port(), durable=False, settings=self.settings
            )
            self.embedded.start()
            pid_file = self.embedded.data_dir / "postmaster.pid"
            self.postmaster = int(pid_file.read_text().split()[0])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.embedded is not None:
            self.embedded.stop()
            self._stop_postmaster()
            if self.home is not None and (self.temporary or not self.keep):
                shutil.rmtree(self.home, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        if self.embedded is not None:
            return with_database(self.embedded.url, "postgres")
        assert self.given is not None
        return with_database(self.given, "postgres")

    def url(self, database: str) -> str:
        return with_database(self.admin_url, database)

    def exists(self, database: str) -> bool:
        with psycopg.connect(conninfo(self.admin_url), autocommit=True) as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            return row.fetchone() is not None

    def create(self, database: str, template: str | None = None) -> None:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database))
        if template is not None:
            # FILE_COPY clones the files: seconds for a ~1 GB database, same physical layout.
            statement += sql.SQL(" TEMPLATE {} STRATEGY FILE_COPY").format(sql.Identifier(template))
        with psycopg.connect(conninfo(self.admin_url), autocommit=True) as conn:
            conn.execute(statement)

    def drop(self, database: str) -> None:
        with psycopg.connect(conninfo(self.admin_url), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dataset", description=__doc__)
    parser.add_argument("--database-url", required=True, help="the database to (re)fill")
    parser.add_argument("--videos", type=int, default=DEFAULT_VIDEOS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--strategy", choices=("rebuild", "direct"), default="rebuild")
    parser.add_argument("--trashed", type=float, default=0.0, help="share of videos in the trash")
    args = parser.parse_args(argv)
    from worker.adapters.postgres.migrate import upgrade

    with contextlib.redirect_stdout(sys.stderr):
        upgrade(args.database_url)
    report = load(
        args.database_url, args.videos, seed=args.seed, strategy=args.strategy, trashed=args.trashed
    )
    print(report.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
