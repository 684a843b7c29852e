"""videos.retention_sweep against Postgres and the S3 server."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

import handlers
from schemas import SweepRetention
from worker.adapters.s3.store import S3ObjectStore
from worker.dev.embedded import free_port
from worker.settings import load_settings


def remaining_ids(engine) -> set:
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT id FROM videos")).scalars())


def scalar(engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def test_sweep_deletes_only_videos_older_than_the_cutoff_with_their_jobs_and_objects(
    deps, catalog, engine
):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    old = [catalog.video(mall, pin, jobs=1, uploaded_at=days_ago(d)) for d in (31, 45, 400)]
    young = [catalog.video(mall, pin, jobs=1, uploaded_at=days_ago(d)) for d in (29.9, 1)]

    result = handlers.sweep_retention(SweepRetention(older_than_days=30), deps)

    assert (result.matched, result.deleted, result.files_deleted, result.files_pending) == (
        3,
        3,
        9,
        0,
    )
    assert result.dry_run is False
    assert abs(result.cutoff - days_ago(30)) < timedelta(seconds=30)
    assert remaining_ids(engine) == {row["id"] for row in young}
    assert scalar(engine, "SELECT count(*) FROM processing_jobs") == 2
    assert not any(catalog.object_exists(key) for row in old for key in catalog.keys(row))
    assert all(catalog.object_exists(key) for row in young for key in catalog.keys(row))
    assert scalar(engine, "SELECT count(*) FROM storage_deletions") == 0


def test_sweep_defaults_to_retention_days(deps, catalog, engine):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    catalog.video(
        mall, pin, upload_objects=False, uploaded_at=days_ago(deps.policy.retention_days + 1)
    )
    kept = catalog.video(
        mall, pin, upload_objects=False, uploaded_at=days_ago(deps.policy.retention_days - 1)
    )

    result = handlers.sweep_retention(SweepRetention(), deps)

    assert deps.policy.retention_days == 90
    assert (result.matched, result.deleted) == (1, 1)
    assert remaining_ids(engine) == {kept["id"]}


def test_sweep_respects_mall_id(deps, catalog, engine):
    north, south = catalog.mall("North"), catalog.mall("South")
    swept = catalog.video(north, catalog.pin(north), uploaded_at=days_ago(100))
    elsewhere = catalog.video(south, catalog.pin(south), uploaded_at=days_ago(100))

    result = handlers.sweep_retention(SweepRetention(mall_id=str(north)), deps)

    assert (result.matched, result.deleted) == (1, 1)
    assert remaining_ids(engine) == {elsewhere["id"]}
    assert not any(catalog.object_exists(key) for key in catalog.keys(swept))
    assert all(catalog.object_exists(key) for key in catalog.keys(elsewhere))


def test_batch_size_smaller_than_the_match_count_still_deletes_every_match(deps, catalog, engine):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    for day in range(7):
        catalog.video(mall, pin, uploaded_at=days_ago(100 + day))
    kept = catalog.video(mall, pin, uploaded_at=days_ago(2))

    result = handlers.sweep_retention(SweepRetention(batch_size=3), deps)

    assert (result.matched, result.deleted, result.files_deleted) == (7, 7, 21)
    assert remaining_ids(engine) == {kept["id"]}


def test_dry_run_reports_the_matches_and_deletes_nothing(deps, catalog, engine):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    rows = [catalog.video(mall, pin, uploaded_at=days_ago(d)) for d in (100, 200, 3)]

    result = handlers.sweep_retention(SweepRetention(dry_run=True), deps)

    assert (result.matched, result.deleted, result.files_deleted, result.dry_run) == (
        2,
        0,
        0,
        True,
    )
    assert remaining_ids(engine) == {row["id"] for row in rows}
    assert all(catalog.object_exists(key) for row in rows for key in catalog.keys(row))
    assert scalar(engine, "SELECT count(*) FROM storage_deletions") == 0


def test_sweep_while_s3_is_down_deletes_rows_and_queues_their_keys(deps, catalog, engine):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall), uploaded_at=days_ago(100))
    store = S3ObjectStore(load_settings(s3_endpoint_url=f"http://127.0.0.1:{free_port()}"))

    result = handlers.sweep_retention(SweepRetention(), dataclasses.replace(deps, store=store))

    assert (result.deleted, result.files_deleted, result.files_pending) == (1, 0, 3)
    assert remaining_ids(engine) == set()
    with engine.connect() as conn:
        backlog = conn.execute(
            text("SELECT object_key, reason, attempts FROM storage_deletions ORDER BY id")
        ).all()
    assert [tuple(entry) for entry in backlog] == [
        (key, "retention", 1) for key in catalog.keys(row)
    ]
    assert all(catalog.object_exists(key) for key in catalog.keys(row))


def test_two_concurrent_sweeps_delete_each_video_exactly_once(deps, catalog, engine):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    for minute in range(60):
        catalog.video(
            mall, pin, upload_objects=False, uploaded_at=days_ago(100) - timedelta(minutes=minute)
        )
    start = threading.Barrier(2)
    results = []
    errors = []

    def sweep() -> None:
        try:
            start.wait(timeout=10)
            results.append(handlers.sweep_retention(SweepRetention(batch_size=5), deps))
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=sweep) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert errors == []
    assert sum(result.deleted for result in results) == 60
    assert sum(result.files_deleted for result in results) == 180
    assert remaining_ids(engine) == set()
    assert scalar(engine, "SELECT count(*) FROM storage_deletions") == 0


def test_sweep_skips_videos_under_legal_hold(deps, catalog, engine):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    held = catalog.video(mall, pin, uploaded_at=days_ago(400))
    catalog.video(mall, pin, uploaded_at=days_ago(400))
    with engine.begin() as conn:
        conn.execute(text("UPDATE videos SET legal_hold = true WHERE id = :id"), {"id": held["id"]})

    result = handlers.sweep_retention(SweepRetention(), deps)

    assert (result.matched, result.deleted) == (1, 1)
    assert remaining_ids(engine) == {held["id"]}
    assert all(catalog.object_exists(key) for key in catalog.keys(held))


def test_a_malls_own_retention_period_overrides_retention_days(deps, catalog, engine):
    short_lived, default_mall = catalog.mall("Short"), catalog.mall("Default")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO mall_retention (mall_id, retention_days) VALUES (:mall_id, 7)"),
            {"mall_id": short_lived},
        )
    expired_early = catalog.video(
        short_lived, catalog.pin(short_lived), upload_objects=False, uploaded_at=days_ago(8)
    )
    within_default = catalog.video(
        default_mall, catalog.pin(default_mall), upload_objects=False, uploaded_at=days_ago(8)
    )

    only_short = handlers.sweep_retention(
        SweepRetention(mall_id=str(short_lived), dry_run=True), deps
    )
    result = handlers.sweep_retention(SweepRetention(), deps)

    assert abs(only_short.cutoff - days_ago(7)) < timedelta(seconds=30)
    assert (result.matched, result.deleted) == (1, 1)
    assert remaining_ids(engine) == {within_default["id"]}
    assert expired_early["id"] not in remaining_ids(engine)
