"""``videoworker tag``, ``tags``, ``share`` and ``shares``: one message each, sent to a
running worker like any other caller's (so the caller's ``sub`` is recorded as who
tagged or shared, in jwt mode), the answer printed.

``share`` prints the token once, on stdout alone, and nothing else there: the worker
keeps only its hash, so this is the one chance to copy it. A password is read with
``getpass`` (never a command-line argument, which ``ps`` and shell history show).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import uuid
from typing import Any

DURATION = re.compile(r"(\d+)([mhd]?)")
MINUTES_PER = {"": 1, "m": 1, "h": 60, "d": 1440}


def minutes(text: str) -> int:
    """``7d``, ``12h``, ``90m`` or plain minutes."""
    found = DURATION.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r}: minutes, or a duration such as 90m, 12h, 7d")
    return int(found.group(1)) * MINUTES_PER[found.group(2)]


def _send(args: argparse.Namespace, task: str, **kwargs: Any) -> dict[str, Any] | None:
    from celery.exceptions import TimeoutError as CeleryTimeout

    from worker.client import VideoClient
    from worker.settings import get_settings

    settings = get_settings()
    token = args.token or os.environ.get("VIDEOWORKER_TOKEN") or None
    client = VideoClient(settings.celery_broker_url, settings.result_backend_url, token=token)
    try:
        # ``call`` forgets the result once read: a share's token does not stay in Redis.
        return client.call(task, timeout=args.timeout, **kwargs)
    except CeleryTimeout:
        print(
            f"videoworker: no answer within {args.timeout:g}s; is a worker running? "
            "(`videoworker health --worker` checks)",
            file=sys.stderr,
        )
        return None
    finally:
        client.close()


def _answered(name: str, envelope: dict[str, Any] | None) -> dict[str, Any] | None:
    if envelope is None:
        return None
    if not envelope.get("ok"):
        error = envelope.get("error") or {}
        print(f"videoworker {name}: {error.get('detail', envelope)}", file=sys.stderr)
        return None
    return envelope["data"]


def tag(args: argparse.Namespace) -> int:
    if not args.add and not args.remove:
        print("videoworker tag: give --add NAME, --remove NAME or both", file=sys.stderr)
        return 2
    data = _answered(
        "tag",
        _send(
            args,
            "videos.tag",
            video_ids=[str(v) for v in args.video_ids],
            add=args.add,
            remove=args.remove,
        ),
    )
    if data is None:
        return 1
    print(json.dumps(data, indent=2))
    return 0 if not data["not_found"] else 1


def tags(args: argparse.Namespace) -> int:
    kwargs: dict[str, Any] = {"limit": args.limit}
    if args.mall:
        kwargs["mall_id"] = str(args.mall)
    if args.prefix:
        kwargs["prefix"] = args.prefix
    data = _answered("tags", _send(args, "videos.tags", **kwargs))
    if data is None:
        return 1
    for found in data["tags"]:
        print(f"{found['videos']:>8}  {found['name']}  ({found['mall_id']})")
    return 0


def share(args: argparse.Namespace) -> int:
    kwargs: dict[str, Any] = {
        "video_ids": [str(v) for v in args.video_ids],
        "expires_in_minutes": args.expires,
    }
    if args.target:
        kwargs["targets"] = args.target
    if args.max_views is not None:
        kwargs["max_views"] = args.max_views
    if args.label:
        kwargs["label"] = args.label
    if args.password:
        first = getpass.getpass("Password for the link: ")
        if getpass.getpass("Again: ") != first:
            print("videoworker share: the two passwords differ", file=sys.stderr)
            return 2
        kwargs["password"] = first
    data = _answered("share", _send(args, "videos.share", **kwargs))
    if data is None:
        return 1
    print(
        f"share {data['share_id']}: {data['video_count']} video(s), "
        f"{', '.join(data['targets'])}, until {data['expires_at']}. "
        "The token below is shown this once; the worker keeps only its hash.",
        file=sys.stderr,
    )
    print(data["token"])
    return 0


def shares(args: argparse.Namespace) -> int:
    kwargs: dict[str, Any] = {
        "include_expired": args.all,
        "page": args.page,
        "page_size": args.page_size,
    }
    if args.video:
        kwargs["video_id"] = str(args.video)
    data = _answered("shares", _send(args, "videos.shares", **kwargs))
    if data is None:
        return 1
    print(json.dumps(data, indent=2))
    return 0


def add_parsers(sub: Any) -> None:
    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait")
        parser.add_argument(
            "--token", help="JWT sent as auth (AUTH_MODE=jwt); default $VIDEOWORKER_TOKEN"
        )

    tagging = sub.add_parser("tag", help="add or remove tags on videos")
    tagging.add_argument("video_ids", nargs="+", type=uuid.UUID, metavar="VIDEO")
    tagging.add_argument("--add", action="append", default=[], metavar="NAME")
    tagging.add_argument("--remove", action="append", default=[], metavar="NAME")
    common(tagging)
    tagging.set_defaults(func=tag)

    listing = sub.add_parser("tags", help="the tags in use, most used first")
    listing.add_argument("--mall", type=uuid.UUID)
    listing.add_argument("--prefix")
    listing.add_argument("--limit", type=int, default=100)
    common(listing)
    listing.set_defaults(func=tags)

    sharing = sub.add_parser("share", help="make a share link (prints its token once)")
    sharing.add_argument("video_ids", nargs="+", type=uuid.UUID, metavar="VIDEO")
    sharing.add_argument("--expires", type=minutes, default=10080, help="7d, 12h, 90m (default 7d)")
    sharing.add_argument("--password", action="store_true", help="ask for a password")
    sharing.add_argument("--max-views", type=int)
    sharing.add_argument("--label")
    sharing.add_argument(
        "--target",
        action="append",
        choices=("proxy", "original", "thumbnail"),
        help="repeatable (default proxy and thumbnail)",
    )
    common(sharing)
    sharing.set_defaults(func=share)

    listed = sub.add_parser("shares", help="list share links (never their tokens)")
    listed.add_argument("--video", type=uuid.UUID)
    listed.add_argument("--all", action="store_true", help="expired, revoked, used up too")
    listed.add_argument("--page", type=int, default=1)
    listed.add_argument("--page-size", type=int, default=20)
    common(listed)
    listed.set_defaults(func=shares)
