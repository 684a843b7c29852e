"""``videoworker bulk-delete``'s parts that need no worker: arguments, following runs."""

from __future__ import annotations

import argparse
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from worker.ops.bulk import Bar, build_parser_for_tests, follow, instant, request_of
from worker.ops.cli import byte_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("500G", 500 * 1024**3),
        ("1.5T", int(1.5 * 1024**4)),
        ("750M", 750 * 1024**2),
        ("2KiB", 2048),
        ("4096", 4096),
        ("1", 1),
    ],
)
def test_sizes_are_bytes_or_powers_of_1024(text, size):
    assert byte_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "x", "0", "-5G", "10E"])
def test_a_size_that_is_not_one_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        byte_size(text)


def test_before_takes_an_age_or_an_instant_with_an_offset():
    ago = datetime.fromisoformat(instant("2d"))

    assert abs(ago - (datetime.now(UTC) - timedelta(days=2))) < timedelta(minutes=1)
    assert instant("2025-10-01T00:00:00Z") == "2025-10-01T00:00:00+00:00"
    with pytest.raises(argparse.ArgumentTypeError, match="no offset"):
        instant("2025-10-01T00:00:00")
    with pytest.raises(argparse.ArgumentTypeError):
        instant("last tuesday")


def test_the_request_carries_filters_given_or_the_ids():
    mall = uuid.uuid4()
    parser = build_parser_for_tests()

    by_filter = request_of(parser.parse_args(["--mall", str(mall), "--before", "1d", "--trash"]))
    by_id = request_of(parser.parse_args(["--id", str(mall), "--keep-files", "--dry-run"]))

    assert set(by_filter["filters"]) == {"mall_id", "uploaded_before"}
    assert by_filter["filters"]["mall_id"] == str(mall)
    assert (by_filter["trash"], by_filter["delete_files"], by_filter["dry_run"]) == (
        True,
        True,
        False,
    )
    assert by_id["video_ids"] == [str(mall)] and "filters" not in by_id
    assert (by_id["delete_files"], by_id["dry_run"]) == (False, True)


class FakeResult:
    def __init__(self, task_id: str, envelope: dict) -> None:
        self.id = task_id
        self.envelope = envelope
        self.polls = 0
        self.forgotten = False

    def ready(self) -> bool:
        self.polls += 1
        return self.polls > 2

    def get(self, timeout: float, propagate: bool) -> dict:
        return self.envelope

    def forget(self) -> None:
        self.forgotten = True


class FakePubSub:
    """Publishes a progress event of each run, and one of a stranger's bulk delete."""

    def __init__(self, events: list[dict]) -> None:
        self.events = [{"type": "message", "data": json.dumps(e)} for e in events]
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def get_message(self, timeout: float):
        return self.events.pop(0) if self.events else None


def _data(deleted: int, continuation: str | None) -> dict:
    return {
        "ok": True,
        "status": 200,
        "data": {
            "matched": 7,
            "deleted": deleted,
            "not_found": [],
            "files_deleted": deleted * 3,
            "files_pending": 0,
            "dry_run": False,
            "continued": continuation is not None,
            "continuation_id": continuation,
        },
    }


def test_follow_sums_a_run_and_its_continuation_and_moves_the_bar_by_their_events():
    first = FakeResult("run-1", _data(4, "run-2"))
    second = FakeResult("run-2", _data(3, None))
    client = SimpleNamespace(
        send=lambda task, **kwargs: first,
        app=SimpleNamespace(AsyncResult=lambda task_id: {"run-2": second}[task_id]),
    )
    events = [
        {"event": "bulk_delete.progress", "task_id": "someone-else", "matched": 99, "deleted": 50},
        {"event": "bulk_delete.progress", "task_id": "run-1", "matched": 7, "deleted": 4},
    ]
    stream = io.StringIO()
    runs: list[str] = []

    pubsub = FakePubSub(events)

    with Bar(stream=stream, force_terminal=True) as bar:
        totals, failure = follow(
            client, pubsub, {"video_ids": []}, timeout=5, bar=bar, on_run=runs.append
        )

    assert failure is None
    assert runs == ["run-1", "run-2"]
    assert totals.as_json() == {
        "matched": 7,
        "deleted": 7,
        "not_found": [],
        "files_deleted": 21,
        "files_pending": 0,
        "dry_run": False,
        "runs": 2,
    }
    assert first.forgotten and second.forgotten and pubsub.closed
    assert "7/7" in stream.getvalue()
    assert "50" not in stream.getvalue().replace("7/7", "")


def test_follow_stops_at_a_failed_envelope_and_returns_it():
    refused = {"ok": False, "status": 403, "error": {"code": "forbidden", "detail": "no"}}
    client = SimpleNamespace(send=lambda task, **kwargs: FakeResult("run-1", refused))

    with Bar(stream=io.StringIO(), force_terminal=False) as bar:
        totals, failure = follow(client, FakePubSub([]), {}, timeout=5, bar=bar)

    assert failure == refused
    assert totals.runs == 0
