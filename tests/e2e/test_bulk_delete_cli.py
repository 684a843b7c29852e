"""``videoworker bulk-delete`` against the real worker: a dry run, then the deletion."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tests.support import run_cli


def _ids(engine) -> set:
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT id FROM videos")).scalars())


def test_bulk_delete_counts_on_a_dry_run_then_deletes_in_batches(
    services, catalog, engine, worker_process
):
    mall, other = catalog.mall("Old footage"), catalog.mall("Kept")
    pin, other_pin = catalog.pin(mall), catalog.pin(other)
    old = datetime.now(UTC) - timedelta(days=10)
    doomed = [catalog.video(mall, pin, uploaded_at=old) for _ in range(5)]
    recent = catalog.video(mall, pin)
    elsewhere = catalog.video(other, other_pin, uploaded_at=old)
    selection = ("bulk-delete", "--mall", str(mall), "--before", "1d", "--timeout", "60")

    dry = run_cli(*selection, "--dry-run", env=services, check=0)
    done = run_cli(*selection, "--batch-size", "2", env=services, check=0)

    assert json.loads(dry.stdout) == {
        "matched": 5,
        "deleted": 0,
        "not_found": [],
        "files_deleted": 0,
        "files_pending": 0,
        "dry_run": True,
        "runs": 1,
    }
    assert json.loads(done.stdout) == {
        "matched": 5,
        "deleted": 5,
        "not_found": [],
        "files_deleted": 15,
        "files_pending": 0,
        "dry_run": False,
        "runs": 1,
    }
    assert _ids(engine) == {recent["id"], elsewhere["id"]}
    assert not any(catalog.object_exists(key) for row in doomed for key in catalog.keys(row))


def test_bulk_delete_without_a_selection_is_refused_before_anything_is_sent(services):
    result = run_cli("bulk-delete", "--dry-run", env=services)

    assert result.returncode == 2
    assert "name what to delete" in result.stderr
