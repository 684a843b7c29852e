"""``videoworker analytics``: one ``videos.analytics`` message, printed as a table of the
daily series with a bar per day, then the top videos and the totals.

The bars are plain text (``#``), scaled to the busiest day of the column charted, so
the output reads the same in a terminal, a pipe or a ticket. ``--json`` prints the
answer's data as it came.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

TASK = "videos.analytics"
BAR_WIDTH = 40


def request_of(args: argparse.Namespace, today: date | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"top": args.top}
    for name, value in (("mall_id", args.mall), ("pin_id", args.pin), ("video_id", args.video)):
        if value is not None:
            kwargs[name] = str(value)
    to_day = args.to or today or datetime.now(UTC).date()
    from_day = args.since or to_day - timedelta(days=args.days - 1)
    kwargs["from_day"], kwargs["to_day"] = from_day.isoformat(), to_day.isoformat()
    return kwargs


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def bar(value: int, peak: int, width: int = BAR_WIDTH) -> str:
    if peak <= 0 or value <= 0:
        return ""
    return "#" * max(1, round(value * width / peak))


def render(data: dict[str, Any], chart: str = "stream_urls") -> str:
    """The daily table with a bar of ``chart`` per day, the top videos and the totals."""
    days = data["days"]
    peak = max((d[chart] for d in days), default=0)
    lines = [f"{'day':<10}  {'streams':>8}  {'thumbs':>7}  {'views':>6}  {'served':>9}  {chart}"]
    for d in days:
        lines.append(
            f"{d['day']:<10}  {d['stream_urls']:>8}  {d['thumbnail_urls']:>7}  "
            f"{d['share_views']:>6}  {size(d['bytes_served']):>9}  {bar(d[chart], peak)}"
        )
    t = data["totals"]
    lines.append(
        f"{'total':<10}  {t['stream_urls']:>8}  {t['thumbnail_urls']:>7}  "
        f"{t['share_views']:>6}  {size(t['bytes_served']):>9}"
    )
    if data["top_videos"]:
        lines += ["", f"{'video':<36}  {'streams':>8}  {'served':>9}  file"]
        for v in data["top_videos"]:
            name = v["original_filename"] if v["original_filename"] is not None else "(deleted)"
            lines.append(
                f"{v['video_id']:<36}  {v['stream_urls']:>8}  {size(v['bytes_served']):>9}  {name}"
            )
    return "\n".join(lines)


def command(args: argparse.Namespace) -> int:
    """``videoworker analytics --mall … --days 30``."""
    from celery.exceptions import TimeoutError as NoAnswer

    from worker.client import VideoClient
    from worker.settings import get_settings

    settings = get_settings()
    token = args.token or os.environ.get("VIDEOWORKER_TOKEN") or None
    client = VideoClient(settings.celery_broker_url, settings.result_backend_url, token=token)
    try:
        result = client.send(TASK, **request_of(args))
        try:
            envelope = result.get(timeout=args.timeout)
        except NoAnswer:
            print(
                f"videoworker analytics: no answer within {args.timeout:g}s; is a worker "
                "running? (`videoworker health --worker` checks)",
                file=sys.stderr,
            )
            return 3
    finally:
        client.close()
    if not envelope.get("ok"):
        print(json.dumps(envelope, indent=2))
        return 1
    if args.json:
        print(json.dumps(envelope["data"], indent=2))
    else:
        print(render(envelope["data"], args.chart))
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "analytics", help="signed URLs, share views and bytes served per day, with a chart"
    )
    parser.add_argument("--mall", type=uuid.UUID, help="this mall's videos")
    parser.add_argument("--pin", type=uuid.UUID, help="this camera pin's videos")
    parser.add_argument("--video", type=uuid.UUID, help="one video")
    parser.add_argument("--days", type=int, default=30, help="days up to --to (default 30)")
    parser.add_argument("--from", dest="since", type=date.fromisoformat, help="first day")
    parser.add_argument("--to", type=date.fromisoformat, help="last day (default today, UTC)")
    parser.add_argument("--top", type=int, default=10, help="top videos listed (0-100)")
    parser.add_argument(
        "--chart",
        choices=("stream_urls", "thumbnail_urls", "share_views", "bytes_served"),
        default="stream_urls",
        help="the column drawn as bars",
    )
    parser.add_argument("--json", action="store_true", help="the answer's data as JSON")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait")
    parser.add_argument(
        "--token", help="JWT sent as auth (AUTH_MODE=jwt); default $VIDEOWORKER_TOKEN"
    )
    parser.set_defaults(func=command)
