"""``videoworker health`` against the real services: every check answers, and the
stores the worker writes are reported with their sizes."""

from __future__ import annotations

from worker.ops.health import run_checks
from worker.ops.stores import TABLES


def test_health_reports_each_service_and_the_size_of_every_store(settings, catalog, deps):
    mall = catalog.mall()
    catalog.video(mall, catalog.pin(mall))

    results = run_checks(settings)

    for name in ("broker", "result_backend", "cache", "postgres", "s3", "stores"):
        assert results[name]["ok"] is True, results[name]
    stores = results["stores"]
    reported = set(stores["postgres"]["tables"])
    assert reported <= set(TABLES)
    assert {"videos", "storage_deletions", "deletion_audit", "event_outbox"} <= reported
    assert all(t["bytes"] > 0 for t in stores["postgres"]["tables"].values())
    assert isinstance(stores["postgres"]["deletions_queued"], int)
    redis_figures = stores["redis"]
    assert redis_figures["cache_keys"] >= 0 and redis_figures["cache_used_memory_bytes"] > 0
    assert set(redis_figures["cache_keys_by_kind"]) == {
        "videoworker:stats",
        "videoworker:stats-dirty",
        "videoworker:started",
        "videoworker:redeliveries",
        "videoworker:redbeat",
    }
    assert isinstance(redis_figures["results"], int)


def test_a_store_that_cannot_be_read_fails_health(settings):
    broken = settings.model_copy(
        update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/x"}
    )

    results = run_checks(broken)

    assert results["stores"]["ok"] is False and "error" in results["stores"]
    assert results["postgres"]["ok"] is False
