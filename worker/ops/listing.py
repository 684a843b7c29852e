"""``videoworker call videos.list --all``: every video of a listing, one JSON line each.

Pages are followed by cursor (``VideoClient.pages``), so a listing of millions streams
at the cost of its first page per page, and nothing is held but the page at hand: an
export of a catalogue into another tool is ``videoworker call videos.list mall_id=...
--all > videos.jsonl`` (the filters before ``--all``, or ``--all`` before the task:
argparse takes the ``key=value`` list in one run). An error answer stops it with the
envelope on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import IO, Any

from worker.ops.arguments import call_value
from worker.settings import get_settings

TASK = "videos.list"


def add_all_option(call: argparse.ArgumentParser) -> None:
    """``--all`` on ``videoworker call``: given, ``videos.list`` is streamed whole."""
    call.add_argument(
        "--all",
        action="store_true",
        help="videos.list only: every page by cursor, one video per line (JSON)",
    )
    single: Callable[[argparse.Namespace], int] = call.get_default("func")

    def dispatch(args: argparse.Namespace) -> int:
        return stream(args) if args.all else single(args)

    call.set_defaults(func=dispatch)


def stream(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    from celery.exceptions import TimeoutError as CeleryTimeout

    from worker.client import VideoClient, VideoWorkerError

    out = out or sys.stdout
    if args.task != TASK:
        print(f"videoworker call: --all lists {TASK} only, not {args.task}", file=sys.stderr)
        return 2
    filters: dict[str, Any] = {}
    for pair in args.kwargs:
        key, sep, value = pair.partition("=")
        if not sep or not key or key in ("page", "cursor"):
            print(
                f"videoworker call --all: expected a filter key=value, got {pair!r}",
                file=sys.stderr,
            )
            return 2
        filters[key] = call_value(value)
    settings = get_settings()
    token = args.token or os.environ.get("VIDEOWORKER_TOKEN") or None
    client = VideoClient(settings.celery_broker_url, settings.result_backend_url, token=token)
    try:
        for page in client.pages(timeout=args.timeout, **filters):
            for video in page.videos:
                out.write(video.model_dump_json() + "\n")
            out.flush()
    except VideoWorkerError as exc:
        envelope = {
            "ok": False,
            "status": exc.status,
            "error": {"code": exc.code, "detail": exc.detail},
        }
        if exc.fields:
            envelope["error"]["fields"] = exc.fields
        print(json.dumps(envelope), file=sys.stderr)
        return 1
    except CeleryTimeout:
        print(
            f"videoworker call: no answer within {args.timeout:g}s; is a worker running?",
            file=sys.stderr,
        )
        return 3
    finally:
        client.close()
    return 0
