"""Lifecycle on Postgres, Redis and S3: holds and per-mall days from the CLI, dry runs,
debounced stats, events after commit, stuck purges and audit outcomes of sweeps."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

import handlers
from handlers.stats import FLUSH_TASK
from schemas import (
    EVENTS_CHANNEL,
    DeleteVideo,
    FlushStaleStats,
    GetStats,
    PurgeStorage,
    RefreshStats,
    SweepRetention,
)
from tests.support import poll, run_cli
from worker.adapters.redis import (
    DIRTY_KEY,
    FLUSH_MARKER_KEY,
    RedisPublisher,
    RedisStatsCache,
    make_redis,
)
from worker.dev.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
VIDEO_DELETED_FIELDS = {"event", "video_id", "mall_id", "files_deleted", "files_pending", "at"}
STATS_REFRESHED_FIELDS = {"event", "mall_id", "at"}


# --- helpers shared with tests/e2e/test_lifecycle.py -------------------------------------


def insert_videos(
    engine, mall_id: uuid.UUID, pin_id: uuid.UUID, count: int, days_old: float
) -> list[dict]:
    """``count`` videos in one INSERT … SELECT: original, proxy and thumbnail keys each,
    statuses cycling through the four, ``uploaded_at`` from ``days_old`` days back, a
    second apart. Returns ids and keys; no objects are written."""
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                """
                INSERT INTO videos (id, mall_id, pin_id, original_filename, original_path,
                    file_size_bytes, proxy_path, proxy_size_bytes, thumbnail_path,
                    duration_seconds, processing_status, uploaded_at)
                SELECT s.id, CAST(:mall AS uuid), CAST(:pin AS uuid), 'clip_' || s.g || '.mp4',
                    'videos/' || :mall || '/original/' || s.id || '.mp4', 1000 + s.g,
                    'videos/' || :mall || '/proxy/' || s.id || '.mp4', 100 + s.g,
                    'thumbnails/' || :mall || '/' || s.id || '.jpg', 1.5,
                    (ARRAY['pending', 'processing', 'completed', 'failed'])[1 + s.g % 4],
                    now() - make_interval(secs => :days * 86400 + s.g)
                FROM (SELECT g, gen_random_uuid() AS id FROM generate_series(0, :count - 1) AS g)
                    AS s
                RETURNING id, mall_id, original_path, proxy_path, thumbnail_path
                """
            ),
            {"mall": str(mall_id), "pin": str(pin_id), "count": count, "days": days_old},
        )
        return [dict(row._mapping) for row in rows]


def object_keys(rows: list[dict]) -> list[str]:
    return [row[k] for row in rows for k in ("original_path", "proxy_path", "thumbnail_path")]


def sql_stats(engine, mall_id: uuid.UUID | None = None) -> dict:
    """What ``videos.stats`` must say, straight from SQL."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*) AS total_videos,"
                " count(*) FILTER (WHERE processing_status = 'pending') AS pending,"
                " count(*) FILTER (WHERE processing_status = 'processing') AS processing,"
                " count(*) FILTER (WHERE processing_status = 'completed') AS completed,"
                " count(*) FILTER (WHERE processing_status = 'failed') AS failed,"
                " coalesce(sum(file_size_bytes), 0) + coalesce(sum(proxy_size_bytes), 0)"
                " AS total_storage_bytes,"
                " coalesce(sum(duration_seconds), 0) AS total_duration_seconds"
                " FROM videos"
                " WHERE CAST(:mall_id AS uuid) IS NULL OR mall_id = CAST(:mall_id AS uuid)"
            ),
            {"mall_id": mall_id},
        ).one()
    return {
        "total_videos": row.total_videos,
        "by_status": {s: getattr(row, s) for s in ("pending", "processing", "completed", "failed")},
        "total_storage_bytes": int(row.total_storage_bytes),
        "total_duration_seconds": float(row.total_duration_seconds),
    }


def stats_figures(stats: dict) -> dict:
    """The figures of a stats answer (a dict from JSON), without ``mall_id``/``refreshed_at``."""
    return {
        key: stats[key]
        for key in ("total_videos", "by_status", "total_storage_bytes", "total_duration_seconds")
    }


def scalar(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def row_exists(engine, video_id) -> bool:
    return bool(scalar(engine, "SELECT count(*) FROM videos WHERE id = :id", id=video_id))


class EventCollector:
    """Every message on ``videos.events`` from construction on, read by a thread.

    ``on_event`` runs in that thread as each event arrives (before the next is read).
    """

    def __init__(self, client, on_event: Callable[[dict], None] | None = None) -> None:
        self.pubsub = client.pubsub()
        self.pubsub.subscribe(EVENTS_CHANNEL)
        poll(
            lambda: (
                (m := self.pubsub.get_message(timeout=0.1)) is not None and m["type"] == "subscribe"
            ),
            timeout=5,
            message="the subscribe confirmation",
        )
        self.events: list[dict] = []
        self.on_event = on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "message":
                event = json.loads(message["data"])
                if self.on_event is not None:
                    self.on_event(event)
                self.events.append(event)

    def of(self, kind: str) -> list[dict]:
        return [e for e in list(self.events) if e["event"] == kind]

    def wait_for(self, kind: str, count: int, timeout: float = 10.0) -> list[dict]:
        poll(lambda: len(self.of(kind)) >= count, timeout=timeout, message=f"{count} {kind} events")
        return self.of(kind)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.pubsub.close()


@pytest.fixture
def events(redis_client):
    collector = EventCollector(redis_client)
    yield collector
    collector.close()


def days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def remaining_ids(engine) -> set:
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT id FROM videos")).scalars())


def audit_rows(engine) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT video_id, reason, outcome, object_keys FROM deletion_audit")
        )
        return {row.video_id: (row.reason, row.outcome, list(row.object_keys)) for row in rows}


# --- legal hold and per-mall retention, managed from the command line ---------------------


def test_a_held_video_survives_sweeps_until_the_cli_releases_it(deps, catalog, engine, services):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    held = catalog.video(mall, pin, uploaded_at=days_ago(400))
    other = catalog.video(mall, pin, uploaded_at=days_ago(400), upload_objects=False)

    hold = run_cli("hold", str(held["id"]), env=services)
    first = handlers.sweep_retention(SweepRetention(), deps)
    second = handlers.sweep_retention(SweepRetention(older_than_days=1), deps)

    assert hold.returncode == 0, hold.stderr
    assert f"video {held['id']}: legal hold set" in hold.stdout
    assert (first.matched, first.deleted) == (1, 1)
    assert (second.matched, second.deleted) == (0, 0)
    assert remaining_ids(engine) == {held["id"]}
    assert all(catalog.object_exists(key) for key in catalog.keys(held))
    assert held["id"] not in audit_rows(engine) and other["id"] in audit_rows(engine)

    release = run_cli("hold", str(held["id"]), "--release", env=services)
    after = handlers.sweep_retention(SweepRetention(), deps)

    assert release.returncode == 0, release.stderr
    assert f"video {held['id']}: legal hold released" in release.stdout
    assert (after.matched, after.deleted, after.files_deleted) == (1, 1, 3)
    assert remaining_ids(engine) == set()
    assert not any(catalog.object_exists(key) for key in catalog.keys(held))
    assert audit_rows(engine)[held["id"]] == ("retention", "files_deleted", catalog.keys(held))


def test_hold_of_an_unknown_video_exits_1(services, engine, clean):
    missing = uuid.uuid4()

    result = run_cli("hold", str(missing), env=services)

    assert result.returncode == 1
    assert f"Video {missing} not found" in result.stderr


def test_per_mall_days_from_the_cli_the_request_overrides_them_and_unset_restores_the_default(
    deps, catalog, engine, services
):
    short, default = catalog.mall("Short"), catalog.mall("Default")
    short_pin, default_pin = catalog.pin(short), catalog.pin(default)

    def video(mall, pin, days):
        return catalog.video(mall, pin, upload_objects=False, uploaded_at=days_ago(days))["id"]

    short_20, short_12, short_5 = (video(short, short_pin, d) for d in (20, 12, 5))
    default_20, default_100 = (video(default, default_pin, d) for d in (20, 100))

    set_days = run_cli("retention", "set", str(short), "10", env=services)
    listed = run_cli("retention", "list", env=services)
    assert set_days.returncode == 0, set_days.stderr
    assert f"mall {short}: videos kept 10 days" in set_days.stdout
    assert listed.stdout.splitlines() == ["default (RETENTION_DAYS): 90 days", f"{short}: 10 days"]

    # Each mall by its own days: Short's 20- and 12-day-old videos go, Default keeps 90 days.
    by_mall = handlers.sweep_retention(SweepRetention(), deps)
    assert (by_mall.matched, by_mall.deleted) == (3, 3)
    assert remaining_ids(engine) == {short_5, default_20}

    # The request's days win over both the mall's (shorter) and the default (longer).
    short_8 = video(short, short_pin, 8)
    overridden = handlers.sweep_retention(SweepRetention(older_than_days=15), deps)
    assert (overridden.matched, overridden.deleted) == (1, 1)
    assert remaining_ids(engine) == {short_5, short_8}

    unset = run_cli("retention", "unset", str(short), env=services)
    short_60 = video(short, short_pin, 60)
    by_default = handlers.sweep_retention(SweepRetention(), deps)

    assert unset.returncode == 0, unset.stderr
    assert f"mall {short}: back to RETENTION_DAYS (90)" in unset.stdout
    assert scalar(engine, "SELECT count(*) FROM mall_retention") == 0
    assert (by_default.matched, by_default.deleted) == (0, 0)
    assert remaining_ids(engine) == {short_5, short_8, short_60}
    assert {reason for reason, _, _ in audit_rows(engine).values()} == {"retention"}
    assert set(audit_rows(engine)) == {short_20, short_12, default_100, default_20}


def test_a_storage_quota_set_from_the_cli_makes_the_sweep_delete_the_oldest_unheld_videos(
    services, catalog, engine, deps
):
    mall, other = catalog.mall("Quota"), catalog.mall("Other")
    pin, other_pin = catalog.pin(mall), catalog.pin(other)

    def video(mall_id, pin_id, days, **columns):
        return catalog.video(
            mall_id,
            pin_id,
            file_size_bytes=1_000,
            proxy_size_bytes=100,
            uploaded_at=days_ago(days),
            **columns,
        )["id"]

    held_4 = video(mall, pin, 4, legal_hold=True)
    day_3, day_2, day_1 = (video(mall, pin, d) for d in (3, 2, 1))
    untouched = video(other, other_pin, 5)

    # 4,400 bytes against 2,560: the held video stays, so days 3 and 2 must go (2,200).
    quota = run_cli("retention", "set", str(mall), "--max-storage", "2.5K", env=services)
    listed = run_cli("retention", "list", env=services)
    assert quota.returncode == 0, quota.stderr
    assert f"mall {mall}: storage kept at or under 2560 bytes" in quota.stdout
    assert f"{mall}: max storage 2560 bytes" in listed.stdout

    dry = handlers.sweep_retention(SweepRetention(dry_run=True), deps)
    swept = handlers.sweep_retention(SweepRetention(batch_size=1), deps)

    assert (dry.deleted_for_quota, dry.deleted) == (0, 0)
    assert (swept.deleted, swept.deleted_for_quota) == (0, 2)
    assert remaining_ids(engine) == {held_4, day_1, untouched}
    assert {audit_rows(engine)[vid][0] for vid in (day_3, day_2)} == {"quota"}
    for key in (f"videos/{mall}/original/{day_3}.mp4", f"thumbnails/{mall}/{day_2}.jpg"):
        assert not catalog.object_exists(key)

    days = run_cli("retention", "set", str(mall), "--days", "30", env=services)
    assert days.returncode == 0, days.stderr
    assert (
        f"{mall}: 30 days, max storage 2560 bytes"
        in run_cli("retention", "list", env=services).stdout
    )


def test_a_quota_on_a_mall_whose_only_videos_are_held_deletes_nothing(
    services, catalog, engine, deps
):
    mall = catalog.mall("Held")
    pin = catalog.pin(mall)
    held = {catalog.video(mall, pin, upload_objects=False, legal_hold=True)["id"] for _ in range(3)}
    run_cli("retention", "set", str(mall), "--max-storage", "1", env=services, check=0)

    swept = handlers.sweep_retention(SweepRetention(), deps)

    assert swept.deleted_for_quota == 0
    assert remaining_ids(engine) == held


def test_retention_set_without_days_or_quota_exits_1(services, catalog):
    mall = catalog.mall()

    result = run_cli("retention", "set", str(mall), env=services)

    assert result.returncode == 1
    assert "give DAYS (or --days), --max-storage, or both" in result.stderr


def test_retention_set_on_an_unknown_mall_exits_1_and_changes_nothing(services, engine, clean):
    missing = uuid.uuid4()

    result = run_cli("retention", "set", str(missing), "10", env=services)

    assert result.returncode == 1
    assert f"videoworker retention: Mall {missing} not found" in result.stderr
    assert scalar(engine, "SELECT count(*) FROM mall_retention") == 0


# --- dry run ------------------------------------------------------------------------------


def test_dry_run_counts_matches_and_their_original_plus_proxy_bytes_and_changes_nothing(
    deps, catalog, engine, events
):
    north, south = catalog.mall("North"), catalog.mall("South")
    north_pin, south_pin = catalog.pin(north), catalog.pin(south)
    with_proxy = catalog.video(
        north, north_pin, uploaded_at=days_ago(120), file_size_bytes=1_000, proxy_size_bytes=300
    )
    without_proxy = catalog.video(
        north, north_pin, uploaded_at=days_ago(95), proxy=False, file_size_bytes=700
    )
    elsewhere = catalog.video(
        south, south_pin, uploaded_at=days_ago(300), file_size_bytes=50, proxy_size_bytes=5
    )
    held = catalog.video(
        north, north_pin, uploaded_at=days_ago(300), file_size_bytes=10**9, proxy_size_bytes=10**8
    )
    young = catalog.video(north, north_pin, uploaded_at=days_ago(80), file_size_bytes=10**9)
    with engine.begin() as conn:
        conn.execute(text("UPDATE videos SET legal_hold = true WHERE id = :id"), {"id": held["id"]})
    rows = (with_proxy, without_proxy, elsewhere, held, young)

    result = handlers.sweep_retention(SweepRetention(dry_run=True), deps)
    one_mall = handlers.sweep_retention(SweepRetention(dry_run=True, mall_id=str(south)), deps)

    assert (result.matched, result.matched_bytes) == (3, 1_000 + 300 + 700 + 50 + 5)
    assert (result.deleted, result.files_deleted, result.files_pending) == (0, 0, 0)
    assert result.dry_run is True
    assert (one_mall.matched, one_mall.matched_bytes) == (1, 55)
    assert remaining_ids(engine) == {row["id"] for row in rows}
    assert all(catalog.object_exists(key) for row in rows for key in catalog.keys(row))
    assert scalar(engine, "SELECT count(*) FROM storage_deletions") == 0
    assert scalar(engine, "SELECT count(*) FROM deletion_audit") == 0
    assert deps.enqueue.calls == []
    handlers.refresh_stats(RefreshStats(mall_id=str(south)), deps)  # a marker event
    events.wait_for("stats.refreshed", 1)
    assert events.of("video.deleted") == []


# --- debounced statistics -----------------------------------------------------------------


def test_a_burst_of_a_thousand_deletes_queues_a_handful_of_flushes_for_exactly_the_touched_malls(
    deps, catalog, engine, redis_client, events
):
    malls = [catalog.mall(f"Mall {i}") for i in range(5)]
    pins = [catalog.pin(mall) for mall in malls]
    touched, untouched = malls[:3], malls[3:]
    doomed = [
        row["id"]
        for mall, pin, count in zip(touched, pins[:3], (400, 350, 250), strict=True)
        for row in insert_videos(engine, mall, pin, count, days_old=1)
    ]
    for mall, pin in zip(untouched, pins[3:], strict=True):
        insert_videos(engine, mall, pin, 10, days_old=1)
    primed = handlers.refresh_stats(RefreshStats(), deps)
    assert primed.scopes_refreshed == 6
    cached_before = {m: redis_client.get(f"videoworker:stats:{m}") for m in untouched}

    def delete(video_id) -> None:
        handlers.delete_video(DeleteVideo(video_id=str(video_id), delete_files=False), deps)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(delete, doomed))

    flushes = [call for call in deps.enqueue.calls if call[0] == FLUSH_TASK]
    assert 1 <= len(flushes) <= 3, deps.enqueue.calls[:10]
    assert len(deps.enqueue.calls) == len(flushes)
    assert all(
        kwargs == {} and countdown == deps.policy.stats_debounce_seconds
        for _, kwargs, countdown in flushes
    )
    stale = {m.decode() for m in redis_client.smembers(DIRTY_KEY)}
    assert stale == {"global"} | {str(m) for m in touched}

    events.events.clear()
    result = handlers.flush_stale_stats(FlushStaleStats(), deps)

    assert result.scopes_refreshed == 4
    refreshed = events.wait_for("stats.refreshed", 4)
    assert sorted(str(e["mall_id"]) for e in refreshed) == sorted(
        ["None", *(str(m) for m in touched)]
    )
    for scope in (None, *touched):
        cached = json.loads(redis_client.get(f"videoworker:stats:{scope or 'global'}"))
        assert stats_figures(cached) == sql_stats(engine, scope), scope
    assert sql_stats(engine)["total_videos"] == 20
    assert {m: redis_client.get(f"videoworker:stats:{m}") for m in untouched} == cached_before
    assert redis_client.exists(DIRTY_KEY, FLUSH_MARKER_KEY) == 0


# --- events -------------------------------------------------------------------------------


def test_video_deleted_carries_exactly_the_contract_fields_and_is_published_after_commit(
    deps, catalog, engine, events, deny_deletes_under
):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    requested = catalog.video(mall, pin)
    swept = catalog.video(mall, pin, uploaded_at=days_ago(200))
    deny_deletes_under("thumbnails/")
    row_present_at_publish: dict[str, bool] = {}

    def spying_publish(event) -> None:
        if event.event == "video.deleted":
            # Another connection's view at the moment of publishing: committed or not.
            row_present_at_publish[str(event.video_id)] = row_exists(engine, event.video_id)
        deps.publish(event)

    spied = dataclasses.replace(deps, publish=spying_publish)
    handlers.delete_video(DeleteVideo(video_id=str(requested["id"])), spied)
    handlers.sweep_retention(SweepRetention(), spied)
    handlers.flush_stale_stats(FlushStaleStats(), spied)

    deleted = events.wait_for("video.deleted", 2)
    refreshed = events.wait_for("stats.refreshed", 2)
    assert row_present_at_publish == {str(requested["id"]): False, str(swept["id"]): False}
    for event, row in zip(deleted, (requested, swept), strict=True):
        assert set(event) == VIDEO_DELETED_FIELDS
        assert event["event"] == "video.deleted"
        assert (event["video_id"], event["mall_id"]) == (str(row["id"]), str(mall))
        assert event["files_deleted"] == [row["original_path"], row["proxy_path"]]
        assert event["files_pending"] == [row["thumbnail_path"]]
        at = datetime.fromisoformat(event["at"])
        assert at.utcoffset() == timedelta(0)
        assert abs(at - datetime.now(UTC)) < timedelta(minutes=1)
    assert [set(event) for event in refreshed] == [STATS_REFRESHED_FIELDS] * 2
    assert sorted(str(event["mall_id"]) for event in refreshed) == sorted(["None", str(mall)])
    assert all(datetime.fromisoformat(e["at"]).utcoffset() == timedelta(0) for e in refreshed)


# --- Redis (cache and events) down --------------------------------------------------------


def test_deletes_sweeps_and_stats_carry_on_when_the_cache_redis_is_unreachable(
    deps, catalog, engine
):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    requested = catalog.video(mall, pin)
    swept = catalog.video(mall, pin, uploaded_at=days_ago(200))
    kept = catalog.video(mall, pin, upload_objects=False)
    closed = make_redis(f"redis://127.0.0.1:{free_port()}/0")
    without_redis = dataclasses.replace(
        deps, cache=RedisStatsCache(closed, 60), publish=RedisPublisher(closed)
    )

    deleted = handlers.delete_video(DeleteVideo(video_id=str(requested["id"])), without_redis)
    sweep = handlers.sweep_retention(SweepRetention(), without_redis)
    stats = handlers.get_stats(GetStats(mall_id=str(mall)), without_redis)

    assert deleted.files_deleted == catalog.keys(requested)
    assert (sweep.deleted, sweep.files_deleted) == (1, 3)
    assert remaining_ids(engine) == {kept["id"]}
    assert not any(
        catalog.object_exists(k) for row in (requested, swept) for k in catalog.keys(row)
    )
    assert stats_figures(stats.model_dump(mode="json")) == sql_stats(engine, mall)


# --- purge: stuck keys --------------------------------------------------------------------


def test_purge_counts_a_key_that_has_failed_eight_times_as_stuck_and_logs_it(
    deps, catalog, engine, deny_deletes_under, s3, bucket, caplog
):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    eighth, seventh = catalog.video(mall, pin), catalog.video(mall, pin)
    deny_deletes_under("thumbnails/")
    for row in (eighth, seventh):
        handlers.delete_video(DeleteVideo(video_id=str(row["id"])), deps)
    # Failed 7 and 6 times so far; this purge fails them once more.
    with engine.begin() as conn:
        for row, attempts in ((eighth, 7), (seventh, 6)):
            conn.execute(
                text(
                    "UPDATE storage_deletions SET attempts = :attempts,"
                    " next_attempt_at = now() - interval '1 minute' WHERE object_key = :key"
                ),
                {"attempts": attempts, "key": row["thumbnail_path"]},
            )

    with caplog.at_level(logging.INFO, logger="videoworker"):
        result = handlers.purge_storage(PurgeStorage(), deps)

    assert (result.attempted, result.deleted, result.failed) == (2, 0, 2)
    assert (result.remaining, result.stuck) == (2, 1)
    stuck_logs = [r for r in caplog.records if r.getMessage() == "storage.purge.stuck"]
    assert [(r.levelno, r.stuck) for r in stuck_logs] == [(logging.ERROR, 1)]
    assert all(catalog.object_exists(row["thumbnail_path"]) for row in (eighth, seventh))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT object_key, attempts FROM storage_deletions"))
        attempts = {key: count for key, count in rows}
    assert attempts == {eighth["thumbnail_path"]: 8, seventh["thumbnail_path"]: 7}

    s3.delete_bucket_policy(Bucket=bucket)
    later = dataclasses.replace(deps, clock=lambda: datetime.now(UTC) + timedelta(hours=7))
    recovered = handlers.purge_storage(PurgeStorage(), later)

    assert (recovered.deleted, recovered.remaining, recovered.stuck) == (2, 0, 0)
    assert not any(catalog.object_exists(row["thumbnail_path"]) for row in (eighth, seventh))


# --- audit rows of sweeps -----------------------------------------------------------------


def test_sweep_audit_rows_say_deleted_pending_or_kept_per_video(
    deps, catalog, engine, deny_deletes_under
):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    clean_row = catalog.video(mall, pin, uploaded_at=days_ago(300))
    refused = catalog.video(
        mall, pin, uploaded_at=days_ago(200), thumbnail_path=f"refused/{uuid.uuid4()}.jpg"
    )
    deny_deletes_under("refused/")

    swept = handlers.sweep_retention(SweepRetention(), deps)
    kept_files = catalog.video(mall, pin, uploaded_at=days_ago(100))
    without_files = handlers.sweep_retention(SweepRetention(delete_files=False), deps)

    assert (swept.deleted, swept.files_deleted, swept.files_pending) == (2, 5, 1)
    assert (without_files.deleted, without_files.files_deleted) == (1, 0)
    assert audit_rows(engine) == {
        clean_row["id"]: ("retention", "files_deleted", catalog.keys(clean_row)),
        refused["id"]: ("retention", "files_pending", catalog.keys(refused)),
        kept_files["id"]: ("retention", "files_kept", catalog.keys(kept_files)),
    }
    assert catalog.object_exists(refused["thumbnail_path"])
    assert all(catalog.object_exists(key) for key in catalog.keys(kept_files))
    with engine.connect() as conn:
        queued = list(conn.execute(text("SELECT object_key, reason FROM storage_deletions")))
    assert [tuple(row) for row in queued] == [(refused["thumbnail_path"], "retention")]


# --- the time budget ------------------------------------------------------------------------


def test_every_run_of_a_sweep_makes_progress_however_many_malls_it_summarises(deps, engine, clean):
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO malls (id, name) SELECT gen_random_uuid(), 'Mall ' || g"
                " FROM generate_series(1, 100) AS g"
            )
        )
        conn.execute(
            text("INSERT INTO camera_pins (id, mall_id, name) SELECT id, id, 'Pin' FROM malls")
        )
        conn.execute(
            text(
                "INSERT INTO videos (id, mall_id, pin_id, original_filename, original_path,"
                " file_size_bytes, uploaded_at) SELECT gen_random_uuid(), id, id, 'a.mp4',"
                " 'videos/' || id || '.mp4', 1, now() - interval '200 days' FROM malls"
            )
        )
    # 100 malls take well over 5 ms to summarise on any machine.
    tight = dataclasses.replace(
        deps, policy=dataclasses.replace(deps.policy, sweep_time_budget_seconds=0.005)
    )

    runs = []
    kwargs: dict = {"delete_files": False}
    for _ in range(5):
        runs.append(handlers.sweep_retention(SweepRetention(**kwargs), tight))
        continuations = [c for c in tight.enqueue.calls if c[0] == "videos.retention_sweep"]
        if len(continuations) < len(runs):
            break
        kwargs = continuations[-1][1]

    assert all(run.deleted > 0 for run in runs), [run.deleted for run in runs]
