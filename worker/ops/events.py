"""``videoworker events``: the ``videos.events`` channel, one line per event, as it comes.

At a terminal each event is a short coloured line (time, name, the fields a person
looks for); piped, it is the JSON exactly as published, one object a line, for
``jq`` or a test. Pub/sub keeps nothing: only events published while this runs show.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import IO

import redis
from rich.console import Console
from rich.markup import escape

from schemas.events import EVENTS_CHANNEL, EVENTS_STREAM
from worker.adapters.redis import make_redis

POLL_SECONDS = 1.0  # how often a quiet wait looks up, so Ctrl-C is prompt
STYLE = {"video.deleted": "bold red", "stats.refreshed": "cyan", "bulk_delete.progress": "yellow"}


def pretty(raw: str) -> str:
    """One event as rich markup: ``12:04:05  video.deleted  video=… files 3 deleted``."""
    try:
        event = json.loads(raw)
    except json.JSONDecodeError:
        return escape(raw)
    if not isinstance(event, dict):
        return escape(raw)
    name = str(event.get("event", "?"))
    at = str(event.get("at", ""))
    clock = at[11:19] if len(at) >= 19 else at
    parts = [f"[dim]{escape(clock)}[/dim]", f"[{STYLE.get(name, 'bold')}]{escape(name)}[/]"]
    if name == "video.deleted":
        parts.append(f"video={escape(str(event.get('video_id')))}")
        parts.append(f"mall={escape(str(event.get('mall_id')))}")
        deleted = len(event.get("files_deleted") or [])
        pending = len(event.get("files_pending") or [])
        parts.append(f"files: {deleted} deleted, {pending} pending")
    elif name == "stats.refreshed":
        mall = event.get("mall_id")
        parts.append(f"mall={escape(str(mall))}" if mall else "global")
    elif name == "bulk_delete.progress":
        parts.append(f"run={escape(str(event.get('task_id')))}")
        parts.append(f"{event.get('deleted', 0):,} of {event.get('matched', 0):,} deleted")
    else:
        rest = {k: v for k, v in event.items() if k not in ("event", "at")}
        parts.append(escape(json.dumps(rest, sort_keys=True)))
    return "  ".join(parts)


def follow(
    redis_url: str,
    *,
    count: int | None = None,
    out: IO[str] | None = None,
    pretty_output: bool | None = None,
    on_subscribed: Callable[[], None] | None = None,
) -> int:
    """Print events until ``count`` have come (None: until interrupted); returns how many."""
    out = out or sys.stdout
    console = Console(file=out, highlight=False, soft_wrap=True)
    use_pretty = console.is_terminal if pretty_output is None else pretty_output
    client = make_redis(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    seen = 0
    try:
        pubsub.subscribe(EVENTS_CHANNEL)
        if on_subscribed is not None:
            on_subscribed()
        while count is None or seen < count:
            try:
                message = pubsub.get_message(timeout=POLL_SECONDS)
            except redis.TimeoutError:
                continue  # a quiet channel: the socket timeout is not an error
            if message is None or message.get("type") != "message":
                continue
            data = message["data"]
            raw = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
            if use_pretty:
                console.print(pretty(raw))
            else:
                out.write(raw + "\n")
                out.flush()
            seen += 1
    finally:
        pubsub.close()
        client.close()
    return seen


def follow_stream(
    redis_url: str,
    *,
    start: str = "$",
    group: str | None = None,
    consumer: str = "videoworker-cli",
    types: list[str] | None = None,
    count: int | None = None,
    out: IO[str] | None = None,
) -> int:
    """``--follow``: the stream ``videos:events`` (CloudEvents, kept for
    EVENTS_RETENTION_HOURS), from ``start`` or through the consumer group ``group``
    (acknowledging what it printed); one JSON object a line. Returns how many."""
    from worker.client import read_stream

    out = out or sys.stdout
    seen = 0
    if count == 0:
        return 0
    for event in read_stream(
        redis_url, group=group, consumer=consumer, types=types, start=start, block_ms=1000
    ):
        out.write(event.model_dump_json() + "\n")
        out.flush()
        seen += 1
        if count is not None and seen >= count:
            break
    return seen


__all__ = ["command", "follow", "follow_stream", "pretty"]


def command(args) -> int:  # noqa: ANN001 - the parsed arguments
    """``videoworker events [--count N]``: the v1 channel as it comes; ``--follow
    [--from ID] [--group G] [--type video.*]``: the stream, with what was missed."""
    from worker.ops.preflight import endpoints
    from worker.settings import get_settings

    settings = get_settings()
    where = ", ".join(e.address for e in endpoints(settings, ["cache"])) or "Redis"

    def subscribed() -> None:
        print(
            f"videoworker events: listening on {EVENTS_CHANNEL} at {where}; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )

    try:
        if getattr(args, "follow", False):
            print(
                f"videoworker events: reading {EVENTS_STREAM} at {where}; Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
            follow_stream(
                settings.redis_cache_url,
                start=args.start,
                group=args.group,
                types=args.types or None,
                count=args.count,
            )
        else:
            follow(settings.redis_cache_url, count=args.count, on_subscribed=subscribed)
    except KeyboardInterrupt:
        return 0
    except redis.ConnectionError as exc:
        print(f"videoworker events: Redis at {where} went away ({exc})", file=sys.stderr)
        return 2
    return 0
