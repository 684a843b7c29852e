"""``videoworker reprocess``: one ``videos.reprocess`` message, its progress drawn.

The command first asks for a dry run (a count: the bar's total), then sends the run and
follows it by the ``video.reprocess_requested`` events its batches write to the stream
``videos:events`` (each carries the run's task id), and each continuation in turn; it
prints the summed counts as JSON on stdout. The bar is drawn on stderr, at a terminal
only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import IO, Any

import redis

from schemas.events import EVENTS_STREAM, STREAM_EVENT_FIELD
from worker.adapters.redis import make_redis
from worker.ops.bulk import instant
from worker.ops.progress import RunsBar

TASK = "videos.reprocess"
BLOCK_MS = 200
EVENT_TYPE = "video.reprocess_requested"


def request_of(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"dry_run": args.dry_run}
    if args.target:
        options["targets"] = list(dict.fromkeys(args.target))
    if args.id:
        options["video_ids"] = [str(video_id) for video_id in args.id]
        return options
    filters = {
        "mall_id": args.mall and str(args.mall),
        "pin_id": args.pin and str(args.pin),
        "processing_status": args.status,
        "uploaded_before": args.before,
        "uploaded_after": args.after,
        "tags": args.tag or None,
    }
    options["filters"] = {key: value for key, value in filters.items() if value is not None}
    return options


@dataclass
class Totals:
    matched: int | None = None
    requested: int = 0
    skipped_processing: int = 0
    dry_run: bool = False
    runs: int = 0

    def add(self, data: dict[str, Any]) -> None:
        if self.matched is None:
            self.matched = data["matched"]
            self.dry_run = data["dry_run"]
        self.requested += data["requested"]
        self.skipped_processing += data["skipped_processing"]
        self.runs += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "matched": self.matched or 0,
            "requested": self.requested,
            "skipped_processing": self.skipped_processing,
            "dry_run": self.dry_run,
            "runs": self.runs,
        }


class Bar(RunsBar):
    """The bar of ``videoworker reprocess``: re-processing, run after run."""

    def __init__(self, stream: IO[str] | None = None, force_terminal: bool | None = None):
        super().__init__("re-processing", stream, force_terminal)


class Events:
    """The stream from its end: each ``video.reprocess_requested`` of the runs followed."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.last = "$"
        # Ask once now, so "$" is pinned before the task is sent.
        last = client.xrevrange(EVENTS_STREAM, count=1)
        if last:
            self.last = last[0][0]
        self.seen: set[str] = set()

    def count(self, runs: set[str]) -> int:
        """How many distinct videos the runs have set back so far (read what has come)."""
        try:
            answer = self.client.xread({EVENTS_STREAM: self.last}, count=1000, block=BLOCK_MS)
        except redis.RedisError:
            time.sleep(BLOCK_MS / 1000)
            return len(self.seen)
        for _, entries in answer or ():
            for entry_id, fields in entries:
                self.last = entry_id
                raw = fields.get(STREAM_EVENT_FIELD) or fields.get(STREAM_EVENT_FIELD.encode())
                try:
                    event = json.loads(raw)
                except (TypeError, ValueError):
                    continue
                data = event.get("data") or {}
                if event.get("type") == EVENT_TYPE and data.get("request_id") in runs:
                    self.seen.add(str(data.get("video_id")))
        return len(self.seen)


def follow(
    client: Any, events: Events | None, kwargs: dict[str, Any], timeout: float | None, bar: Bar
) -> tuple[Totals, dict[str, Any] | None]:
    totals = Totals()
    deadline = None if timeout is None else time.monotonic() + timeout
    total = None
    if not kwargs.get("dry_run") and events is not None:
        counted = _wait(
            client.send(TASK, **{**kwargs, "dry_run": True}), None, set(), bar, None, deadline
        )
        if isinstance(counted, dict) and counted.get("ok"):
            total = counted["data"]["requested"]
    result = client.send(TASK, **kwargs)
    runs: set[str] = set()
    while True:
        runs.add(result.id)
        envelope = _wait(result, events, runs, bar, total, deadline)
        result.forget()
        if not (isinstance(envelope, dict) and envelope.get("ok")):
            return totals, envelope
        data = envelope["data"]
        totals.add(data)
        bar.show(total, totals.requested)
        if not data.get("continued"):
            return totals, None
        result = client.app.AsyncResult(data["continuation_id"])


def _wait(
    result: Any,
    events: Events | None,
    runs: set[str],
    bar: Bar,
    total: int | None,
    deadline: float | None,
) -> Any:
    while not result.ready():
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError
        if events is None:
            time.sleep(BLOCK_MS / 1000)
        else:
            bar.show(total, events.count(runs))
    return result.get(timeout=1.0, propagate=True)


def command(args: argparse.Namespace) -> int:
    """``videoworker reprocess --mall … --status failed [--dry-run]``."""
    from worker.client import VideoClient
    from worker.settings import get_settings

    if not args.id and not any(
        (args.mall, args.pin, args.status, args.before, args.after, args.tag)
    ):
        print(
            "videoworker reprocess: name what to re-process: --id, or at least one of --mall, "
            "--pin, --status, --before, --after, --tag",
            file=sys.stderr,
        )
        return 2
    settings = get_settings()
    token = args.token or os.environ.get("VIDEOWORKER_TOKEN") or None
    client = VideoClient(settings.celery_broker_url, settings.result_backend_url, token=token)
    try:
        with Bar() as bar:
            events = Events(make_redis(settings.redis_cache_url)) if bar.progress else None
            totals, failure = follow(client, events, request_of(args), args.timeout, bar)
    except TimeoutError:
        print(
            f"videoworker reprocess: no answer within {args.timeout:g}s; is a worker "
            "running? (`videoworker health --worker` checks)",
            file=sys.stderr,
        )
        return 3
    finally:
        client.close()
    if failure is not None:
        print(json.dumps(failure, indent=2))
        return 1
    print(json.dumps(totals.as_json(), indent=2))
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "reprocess", help="hand videos back to the processing pipeline, by filter or id"
    )
    parser.add_argument("--mall", type=uuid.UUID, help="videos of this mall")
    parser.add_argument("--pin", type=uuid.UUID, help="videos of this camera pin")
    parser.add_argument("--status", choices=("pending", "processing", "completed", "failed"))
    parser.add_argument("--before", type=instant, help="uploaded before (ISO time or age: 90d)")
    parser.add_argument("--after", type=instant, help="uploaded at or after (ISO time or age)")
    parser.add_argument("--tag", action="append", default=[], help="carrying this tag (repeatable)")
    parser.add_argument(
        "--id", type=uuid.UUID, action="append", default=[], help="a video id (repeatable)"
    )
    parser.add_argument(
        "--target",
        action="append",
        choices=("proxy", "thumbnail"),
        default=[],
        help="what to remake (repeatable; default both)",
    )
    parser.add_argument("--dry-run", action="store_true", help="count, change nothing")
    parser.add_argument(
        "--timeout", type=float, default=None, help="give up after this many seconds"
    )
    parser.add_argument(
        "--token", help="JWT sent as auth (AUTH_MODE=jwt); default $VIDEOWORKER_TOKEN"
    )
    parser.set_defaults(func=command)
