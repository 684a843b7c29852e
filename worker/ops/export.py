"""``videoworker export``: one ``videos.export`` message, and with ``--wait`` its progress.

The export id goes to stdout as soon as the export is queued, so a script that does not
wait still holds the one handle it needs. ``--wait`` polls ``videos.export_status``
(the worker keeps the progress in the export's row, so nothing here depends on events)
and ends with the ZIP's URL on stdout, or the export's own sentence on stderr. The
progress is a bar on stderr at a terminal, and a plain line per change when stderr is a
pipe or a log, never a bar redrawn into a file. Ctrl-C stops the waiting, not the
export: it runs on in the worker, and the line printed says how to cancel it.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from schemas.responses import ExportState

COMMAND = "videoworker export"
EXIT_FAILED = 1
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as ``videoworker``'s own main answers it


def request_of(args: argparse.Namespace) -> dict[str, Any]:
    """The kwargs of ``videos.export``: the videos named, or the filters given."""
    options: dict[str, Any] = {
        "target": args.target,
        "include_thumbnails": args.thumbnails,
        "name": args.name,
    }
    if args.videos:
        options["video_ids"] = [str(video_id) for video_id in dict.fromkeys(args.videos)]
        return options
    filters = {
        "mall_id": args.mall and str(args.mall),
        "pin_id": args.pin and str(args.pin),
        "processing_status": args.status,
        "tags": args.tag or None,
    }
    options["filters"] = {key: value for key, value in filters.items() if value is not None}
    return options


def selection_error(args: argparse.Namespace) -> str | None:
    """Why the arguments select nothing an export can take, before anything is sent."""
    filtered = any((args.mall, args.pin, args.status, args.tag))
    if args.videos and filtered:
        return "give video ids or filters (--mall, --pin, --status, --tag), not both"
    if not args.videos and not filtered:
        return "name what to export: video ids, or at least one of --mall, --pin, --status, --tag"
    return None


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover - the loop always returns


class Display:
    """The export's progress: a bar at a terminal, else one plain line per change.

    ``done`` counts what the ZIP holds so far (each video, each thumbnail, the
    manifest), so the bar's total is that count, not the number of videos.
    """

    def __init__(
        self,
        export_id: str,
        videos: int,
        thumbnails: bool,
        stream: IO[str] | None = None,
        force_terminal: bool | None = None,
    ) -> None:
        self.export_id = export_id
        self.videos = videos
        self.total = videos * (2 if thumbnails else 1) + 1
        self.stream = stream or sys.stderr
        console = Console(file=self.stream, force_terminal=force_terminal)
        self.progress = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[written]}"),
                TimeElapsedColumn(),
                console=console,
            )
            if console.is_terminal
            else None
        )
        self.task: Any = None
        self.last: tuple[str, int, int] | None = None

    def __enter__(self) -> Display:
        if self.progress is not None:
            self.progress.start()
            self.task = self.progress.add_task(
                f"export ({self.videos} videos)", total=self.total, written=_size(0)
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def show(self, state: ExportState) -> None:
        seen = (state.status, state.done, state.bytes_written)
        if seen == self.last:
            return
        self.last = seen
        done = self.total if state.status == "completed" else min(state.done, self.total)
        if self.progress is not None:
            self.progress.update(
                self.task,
                completed=done,
                written=f"{_size(state.bytes_written)} written",
                description=f"export {state.status} ({self.videos} videos)",
            )
            return
        print(
            f"export {self.export_id}: {state.status}, {done}/{self.total} files, "
            f"{_size(state.bytes_written)} written",
            file=self.stream,
            flush=True,
        )


def _cancel_hint(export_id: str) -> str:
    return f"videoworker call videos.export_cancel export_id={export_id}"


def run(
    args: argparse.Namespace,
    client: Any,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    force_terminal: bool | None = None,
) -> int:
    """Queue the export and, with ``--wait``, follow it to its end."""
    from celery.exceptions import TimeoutError as NoAnswer

    from worker.client import VideoWorkerError

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        queued = client.export(**request_of(args))
    except VideoWorkerError as exc:
        print(f"{COMMAND}: {exc.detail or exc}", file=err)
        return EXIT_FAILED
    except NoAnswer:
        print(
            f"{COMMAND}: no answer in time; is a worker running? "
            "(`videoworker health --worker` checks)",
            file=err,
        )
        return EXIT_TIMEOUT
    export_id = str(queued.export_id)
    print(export_id, file=out, flush=True)
    if not args.wait:
        return 0
    try:
        with Display(
            export_id, queued.videos, args.thumbnails, err, force_terminal=force_terminal
        ) as display:
            state = client.wait_for_export(
                export_id, poll_seconds=args.poll, timeout=args.timeout, progress=display.show
            )
    except KeyboardInterrupt:
        print(
            f"{COMMAND}: stopped waiting; export {export_id} keeps running in the worker "
            f"(to cancel it: {_cancel_hint(export_id)})",
            file=err,
        )
        return EXIT_INTERRUPTED
    except TimeoutError:
        print(
            f"{COMMAND}: export {export_id} not done within {args.timeout:g}s; it keeps "
            f"running (`videoworker call videos.export_status export_id={export_id}`)",
            file=err,
        )
        return EXIT_TIMEOUT
    except VideoWorkerError as exc:
        print(f"{COMMAND}: {exc.detail or exc}", file=err)
        return EXIT_FAILED
    if state.status == "completed" and state.url:
        print(state.url, file=out)
        return 0
    sentence = state.error or f"the export ended {state.status}, with no ZIP to fetch"
    print(f"{COMMAND}: {sentence}", file=err)
    return EXIT_FAILED


def command(args: argparse.Namespace) -> int:
    """``videoworker export --mall … [--wait]``."""
    from worker.client import VideoClient
    from worker.settings import get_settings

    problem = selection_error(args)
    if problem is not None:
        print(f"{COMMAND}: {problem}", file=sys.stderr)
        return 2
    settings = get_settings()
    token = args.token or os.environ.get("VIDEOWORKER_TOKEN") or None
    client = VideoClient(settings.celery_broker_url, settings.result_backend_url, token=token)
    try:
        return run(args, client)
    finally:
        client.close()


def build_parser_for_tests() -> argparse.ArgumentParser:
    """The command's own arguments, parsed alone."""
    parser = argparse.ArgumentParser(prog="videoworker")
    sub = parser.add_subparsers()
    add_parser(sub)
    return sub.choices["export"]


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("export", help="one ZIP of many videos, by id or filter")
    parser.add_argument("videos", nargs="*", type=uuid.UUID, metavar="VIDEO", help="video ids")
    parser.add_argument("--mall", type=uuid.UUID, help="videos of this mall")
    parser.add_argument("--pin", type=uuid.UUID, help="videos of this camera pin")
    parser.add_argument("--status", choices=("pending", "processing", "completed", "failed"))
    parser.add_argument("--tag", action="append", default=[], help="carrying this tag (repeatable)")
    parser.add_argument(
        "--target", choices=("proxy", "original"), default="proxy", help="which file of each"
    )
    parser.add_argument("--thumbnails", action="store_true", help="each thumbnail too")
    parser.add_argument("--name", help="the ZIP's file name, without .zip")
    parser.add_argument(
        "--wait", action="store_true", help="follow it to the end; print the ZIP's URL"
    )
    parser.add_argument(
        "--poll", type=float, default=2.0, help="seconds between status checks (--wait)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="stop waiting after this many seconds"
    )
    parser.add_argument(
        "--token", help="JWT sent as auth (AUTH_MODE=jwt); default $VIDEOWORKER_TOKEN"
    )
    parser.set_defaults(func=command)
