"""``videoworker bulk-delete``: one ``videos.bulk_delete`` message, its progress drawn.

The command sends the task to a running worker, like any other caller, and follows the
``bulk_delete.progress`` events of that run on ``videos.events`` to move a progress bar
(on stderr, at a terminal only). A run that reaches its time budget answers with the id
of its continuation: the command follows each continuation in turn until the last, and
prints the summed counts as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import redis

from schemas.events import EVENTS_CHANNEL
from worker.adapters.redis import make_redis
from worker.ops.progress import RunsBar

POLL_SECONDS = 0.2
TASK = "videos.bulk_delete"


AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def instant(text: str) -> str:
    """An ISO 8601 instant with its offset, or an age (``90d``, ``12h``) before now."""
    if text[-1:] in AGE_UNITS and text[:-1].replace(".", "", 1).isdigit():
        age = timedelta(seconds=float(text[:-1]) * AGE_UNITS[text[-1]])
        return (datetime.now(UTC) - age).isoformat()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: an ISO 8601 time with an offset (2025-10-01T00:00:00Z) or an age (90d)"
        ) from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset: add Z or +hh:mm")
    return parsed.isoformat()


def request_of(args: argparse.Namespace) -> dict[str, Any]:
    """The task's kwargs from the command line: ids, or the filters given."""
    options: dict[str, Any] = {
        "trash": args.trash,
        "delete_files": not args.keep_files,
        "dry_run": args.dry_run,
        "batch_size": args.batch_size,
    }
    if args.id:
        options["video_ids"] = [str(video_id) for video_id in args.id]
        return options
    filters = {
        "mall_id": args.mall and str(args.mall),
        "pin_id": args.pin and str(args.pin),
        "processing_status": args.status,
        "uploaded_before": args.before,
        "uploaded_after": args.after,
        "q": args.q,
    }
    options["filters"] = {key: value for key, value in filters.items() if value is not None}
    return options


@dataclass
class Totals:
    """The first run's selection, and what every run (continuations included) did."""

    matched: int | None = None
    not_found: list[str] = field(default_factory=list)
    deleted: int = 0
    files_deleted: int = 0
    files_pending: int = 0
    dry_run: bool = False
    runs: int = 0

    def add(self, data: dict[str, Any]) -> None:
        if self.matched is None:
            self.matched = data["matched"]
            self.not_found = list(data["not_found"])
            self.dry_run = data["dry_run"]
        self.deleted += data["deleted"]
        self.files_deleted += data["files_deleted"]
        self.files_pending += data["files_pending"]
        self.runs += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "matched": self.matched or 0,
            "deleted": self.deleted,
            "not_found": self.not_found,
            "files_deleted": self.files_deleted,
            "files_pending": self.files_pending,
            "dry_run": self.dry_run,
            "runs": self.runs,
        }


class Bar(RunsBar):
    """The bar of ``videoworker bulk-delete``: deleting, run after run."""

    def __init__(self, stream: IO[str] | None = None, force_terminal: bool | None = None):
        super().__init__("deleting", stream, force_terminal)


def subscribe(redis_url: str) -> Any:
    """A subscription to ``videos.events``, confirmed before the task is sent, so that
    the first batch's event cannot be missed."""
    pubsub = make_redis(redis_url).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(EVENTS_CHANNEL)
    pubsub.get_message(timeout=1.0)
    return pubsub


def follow(
    client: Any,
    pubsub: Any,
    kwargs: dict[str, Any],
    *,
    timeout: float | None,
    bar: Bar,
    on_run: Callable[[str], None] | None = None,
) -> tuple[Totals, dict[str, Any] | None]:
    """Send the task and follow it and its continuations; (totals, failed envelope)."""
    totals = Totals()
    deadline = None if timeout is None else time.monotonic() + timeout
    result = client.send(TASK, **kwargs)
    try:
        while True:
            if on_run is not None:
                on_run(result.id)
            envelope = _await(result, pubsub, bar, totals, deadline)
            result.forget()
            if not (isinstance(envelope, dict) and envelope.get("ok")):
                return totals, envelope
            data = envelope["data"]
            totals.add(data)
            bar.before = totals.deleted
            bar.show(totals.matched, 0)
            if not data["continued"]:
                return totals, None
            result = client.app.AsyncResult(data["continuation_id"])
    finally:
        pubsub.close()


def _await(result: Any, pubsub: Any, bar: Bar, totals: Totals, deadline: float | None) -> Any:
    while not result.ready():
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError
        try:
            message = pubsub.get_message(timeout=POLL_SECONDS)
        except redis.TimeoutError:
            continue
        if message is None or message.get("type") != "message":
            continue
        try:
            event = json.loads(message["data"])
        except (TypeError, ValueError):
            continue
        if (
            isinstance(event, dict)
            and event.get("event") == "bulk_delete.progress"
            and event.get("task_id") == result.id
        ):
            bar.show(totals.matched or event.get("matched"), int(event.get("deleted", 0)))
    return result.get(timeout=1.0, propagate=True)


def command(args: argparse.Namespace) -> int:
    """``videoworker bulk-delete --mall … --before … [--dry-run] [--trash]``."""
    import os

    from worker.client import VideoClient
    from worker.settings import get_settings

    if not args.id and not any((args.mall, args.pin, args.status, args.before, args.after, args.q)):
        print(
            "videoworker bulk-delete: name what to delete: --id, or at least one of --mall, "
            "--pin, --status, --before, --after, --q",
            file=sys.stderr,
        )
        return 2
    settings = get_settings()
    token = args.token or os.environ.get("VIDEOWORKER_TOKEN") or None
    client = VideoClient(settings.celery_broker_url, settings.result_backend_url, token=token)
    try:
        with Bar() as bar:
            totals, failure = follow(
                client,
                subscribe(settings.redis_cache_url),
                request_of(args),
                timeout=args.timeout,
                bar=bar,
            )
    except TimeoutError:
        print(
            f"videoworker bulk-delete: no answer within {args.timeout:g}s; is a worker "
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


def build_parser_for_tests() -> argparse.ArgumentParser:
    """The command's own arguments, parsed alone."""
    parser = argparse.ArgumentParser(prog="videoworker")
    sub = parser.add_subparsers()
    add_parser(sub)
    return sub.choices["bulk-delete"]


def add_parser(sub: Any) -> None:
    import uuid

    bulk = sub.add_parser(
        "bulk-delete", help="delete (or trash) many videos by filter or id, with progress"
    )
    bulk.add_argument("--mall", type=uuid.UUID, help="videos of this mall")
    bulk.add_argument("--pin", type=uuid.UUID, help="videos of this camera pin")
    bulk.add_argument("--status", choices=("pending", "processing", "completed", "failed"))
    bulk.add_argument("--before", type=instant, help="uploaded before (ISO time or age: 90d)")
    bulk.add_argument("--after", type=instant, help="uploaded at or after (ISO time or age)")
    bulk.add_argument("--q", help="file name or notes containing this text")
    bulk.add_argument(
        "--id", type=uuid.UUID, action="append", default=[], help="a video id (repeatable)"
    )
    bulk.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    bulk.add_argument("--trash", action="store_true", help="move to the trash instead")
    bulk.add_argument("--keep-files", action="store_true", help="delete rows, keep objects")
    bulk.add_argument("--batch-size", type=int, default=500, help="videos per batch (1-1000)")
    bulk.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    bulk.add_argument(
        "--token", help="JWT sent as auth (AUTH_MODE=jwt); default $VIDEOWORKER_TOKEN"
    )
    bulk.set_defaults(func=command)
