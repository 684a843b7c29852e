"""videoworker: the recorded-video worker's command line.

Parsing and dispatch only: each command lives in a module of worker/ops, and every
failure, Ctrl-C and closed pipe ends here as one line and an exit code.

Long because it is the whole command line in one place: every command's arguments and
help text, read top to bottom the way ``videoworker --help`` lists them. Nothing here
does a command's work.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers.policy import DEFAULT_POLICY
from worker.ops import listing
from worker.ops.arguments import (
    RETENTION_DAYS_MAX,
    IntermixedParser,
    byte_size,
    call_value,
    demo_videos,
    duration,
    human_size,
    retention_days,
)
from worker.settings import ConfigError, get_settings, stack_home

if TYPE_CHECKING:
    from handlers.deps import Deps

DESCRIPTION = (
    "Run the recorded-video worker, call its tasks, and look after its data. "
    "Commands find the stack `make run` started from any folder "
    "(`videoworker config` shows which settings they use)."
)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C stopped
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader left (`| head`), nothing went wrong


class Wiring:
    """The handlers' dependencies for one invocation: built on first use, then reused
    by every command path; follow-up tasks go to the broker."""

    def __init__(self) -> None:
        self._deps: Deps | None = None

    def __call__(self) -> Deps:
        if self._deps is None:
            from worker.bootstrap import build_deps
            from worker.runtime.app import celery_enqueue

            self._deps = build_deps(get_settings(), enqueue=celery_enqueue)
        return self._deps


def _migrate(_: argparse.Namespace) -> int:
    from worker.adapters.postgres.migrate import upgrade

    upgrade(get_settings().direct_database_url)
    print("videoworker: database schema is at the latest revision")
    return 0


def _call(args: argparse.Namespace) -> int:
    from celery.exceptions import TimeoutError as CeleryTimeout

    from worker.client import VideoClient

    kwargs: dict[str, Any] = {}
    for pair in args.kwargs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            print(f"videoworker call: expected key=value, got {pair!r}", file=sys.stderr)
            return 2
        kwargs[key] = call_value(value)
    settings = get_settings()
    token = args.token or os.environ.get("VIDEOWORKER_TOKEN") or None
    client = VideoClient(settings.celery_broker_url, settings.result_backend_url, token=token)
    try:
        result = client.send(args.task, **kwargs)
        envelope = result.get(timeout=args.timeout)
        result.forget()
    except CeleryTimeout:
        result.forget()  # unsubscribe now, while Redis is there, not at interpreter exit
        print(
            f"videoworker call: no answer within {args.timeout:g}s; is a worker running? "
            "(`make run` in another terminal; `videoworker health --worker` checks)",
            file=sys.stderr,
        )
        return 3
    finally:
        client.close()
    print(json.dumps(envelope, indent=2, sort_keys=False))
    return 0 if isinstance(envelope, dict) and envelope.get("ok") else 1


def _known_task(args: argparse.Namespace) -> None:
    """A mistyped task name, caught before anything is sent (no worker would run it)."""
    import difflib

    from schemas.contract import TASK_NAMES

    if args.task not in TASK_NAMES:
        close = difflib.get_close_matches(args.task, TASK_NAMES, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise Refused(f"no task {args.task!r}; {hint}(`videoworker call --help` lists them)")


def _token(args: argparse.Namespace) -> int:
    """Mint a development token from AUTH_JWT_SECRET, printed alone for ``$(…)``."""
    from worker.runtime.tokens import mint_token

    settings = get_settings()
    if settings.auth_jwt_secret is None:
        print("videoworker token: AUTH_JWT_SECRET is not set", file=sys.stderr)
        return 2
    if args.role == "operator" and not args.mall:
        print("videoworker token: an operator needs --mall (one or more)", file=sys.stderr)
        return 2
    if args.role == "tenant" and not args.pin:
        print("videoworker token: a tenant needs --pin (one or more)", file=sys.stderr)
        return 2
    print(
        mint_token(
            settings.auth_jwt_secret.get_secret_value(),
            role=args.role,
            subject=args.sub,
            ttl=args.ttl,
            malls=args.mall,
            pins=args.pin,
            audience=settings.auth_jwt_audience,
            issuer=settings.auth_jwt_issuer,
        )
    )
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from worker.ops.schema_export import check, write

    out = Path(args.out)
    if args.check:
        stale = check(out)
        if stale:
            print(
                "videoworker schemas: out of date: "
                + ", ".join(stale)
                + " (run `videoworker schemas`)",
                file=sys.stderr,
            )
            return 1
        print(f"videoworker schemas: {len(list(out.glob('*.json')))} files current")
        return 0
    print(f"videoworker schemas: wrote {write(out)} files to {out}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from worker.ops.supervisor import run

    return run(args, stack_home())


def _handled(deps: Wiring, handler, command_type, **fields):  # noqa: ANN001, ANN202 - dispatch
    """Validate as a task would, run the handler, and turn its errors into one line."""
    from pydantic import ValidationError

    from handlers.errors import VideoError

    try:
        return handler(command_type.model_validate(fields), deps())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise CommandFailed(problems) from None
    except VideoError as exc:
        raise CommandFailed(exc.detail) from None


class CommandFailed(Exception):
    """A command the handlers refused; printed as one line, exit code 1."""


class Refused(Exception):
    """A command line that cannot be right; printed as one line, exit code 2 (usage)."""


def _reconcile(args: argparse.Namespace) -> int:
    from handlers.reconcile import ReconcileStorage, reconcile_storage
    from worker.ops.progress import counting_store

    with counting_store(args.deps()) as deps:
        report = reconcile_storage(
            ReconcileStorage(
                prefix=args.prefix, min_age=args.min_age, max_share=args.max_share, fix=args.fix
            ),
            deps,
        )
    print(f"objects in bucket:        {report.objects}")
    print(f"referenced by a row:      {report.referenced}")
    print(f"orphans (older than min): {report.orphans}")
    print(f"orphans too young:        {report.orphans_too_young}")
    print(f"orphans already queued:   {report.orphans_queued_already}")
    print(f"rows' objects missing:    {report.missing}")
    for key in report.orphan_sample:
        print(f"  orphan  {key}")
    for key in report.missing_sample:
        print(f"  missing {key}")
    if report.refused:
        print(f"videoworker reconcile: refused: {report.refused}", file=sys.stderr)
        return 1
    if args.fix:
        print(f"queued {report.fixed} orphans; removed {report.removed} now")
    return 0


def _retention(args: argparse.Namespace) -> int:
    from handlers.retention import clear_retention, list_retention, set_retention
    from schemas.requests import ClearRetention, SetRetention

    if args.action == "set":
        days = args.days_flag if args.days_flag is not None else args.days
        if days is None and args.max_storage is None:
            raise CommandFailed("give DAYS (or --days), --max-storage, or both")
        _handled(
            args.deps,
            set_retention,
            SetRetention,
            mall_id=str(args.mall_id),
            days=days,
            max_storage_bytes=args.max_storage,
        )
        if days is not None:
            print(f"mall {args.mall_id}: videos kept {days} days")
        if args.max_storage is not None:
            print(f"mall {args.mall_id}: storage kept at or under {human_size(args.max_storage)}")
        return 0
    if args.action == "unset":
        periods = _handled(args.deps, clear_retention, ClearRetention, mall_id=str(args.mall_id))
        print(f"mall {args.mall_id}: back to RETENTION_DAYS ({periods.default_days}), no quota")
        return 0
    periods = list_retention(args.deps())
    print(f"default (RETENTION_DAYS): {periods.default_days} days")
    for mall_id in sorted({*periods.malls, *periods.quotas}):
        parts = []
        if mall_id in periods.malls:
            parts.append(f"{periods.malls[mall_id]} days")
        if mall_id in periods.quotas:
            parts.append(f"max storage {human_size(periods.quotas[mall_id])}")
        print(f"{mall_id}: {', '.join(parts)}")
    return 0


def _hold(args: argparse.Namespace) -> int:
    from handlers.retention import set_legal_hold
    from schemas.requests import SetLegalHold

    _handled(
        args.deps, set_legal_hold, SetLegalHold, video_id=str(args.video_id), held=not args.release
    )
    print(f"video {args.video_id}: legal hold {'released' if args.release else 'set'}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    import handlers
    from schemas import PurgeStorage

    result = _handled(
        args.deps, handlers.purge_storage, PurgeStorage, limit=args.limit, due_only=not args.now
    )
    print(json.dumps(result.model_dump(mode="json"), indent=2))
    return 0


def _figures(args: argparse.Namespace) -> int:
    """The trigger-kept figures against the rows (see worker/adapters/postgres/figures.py)."""
    from worker.ops import figures

    if args.action == "rebuild":
        print(json.dumps({"rebuilt": figures.rebuild(get_settings())}, indent=2))
        return 0
    differing = figures.differing(get_settings())
    consistent = not any(differing.values())
    print(json.dumps({"consistent": consistent, "differing": differing}, indent=2))
    return 0 if consistent else 1


def _health(args: argparse.Namespace) -> int:
    from worker.ops.health import run_checks

    results = run_checks(get_settings(), worker=args.worker)
    # Indented for a person at a terminal; one line for a probe or a script.
    print(json.dumps(results, indent=2 if sys.stdout.isatty() else None))
    return 0 if all(check["ok"] for check in results.values()) else 1


def _dead_letters(args: argparse.Namespace) -> int:
    from worker.runtime.dead_letters import DeadLetters

    settings = get_settings()
    letters = DeadLetters(settings.celery_broker_url)
    if args.action == "list":
        print(json.dumps([letter.as_json() for letter in letters.list()], indent=2))
        return 0
    if args.action == "requeue":
        letter = letters.requeue(
            args.task_id, token=args.token or os.environ.get("VIDEOWORKER_TOKEN")
        )
    else:
        letter = letters.drop(args.task_id)
    if letter is None:
        print(f"videoworker dead-letters: no dead letter {args.task_id}", file=sys.stderr)
        return 1
    if args.action == "requeue":
        from worker.runtime.redeliveries import Redeliveries

        # A requeued message starts its count of lost workers again from zero.
        Redeliveries.at(settings.redis_cache_url).forget(letter.id, letter.retries)
        print(f"requeued {letter.task} {letter.id} on {letter.queue}")
    else:
        print(f"dropped {letter.id}")
    return 0


def _config(args: argparse.Namespace) -> int:
    from worker.ops.config import command

    return command(args)


def _demo(args: argparse.Namespace) -> int:
    from worker.ops.demo import command

    return command(args)


def _events(args: argparse.Namespace) -> int:
    from worker.ops.events import command

    return command(args)


def _task_table() -> str:
    """The tasks ``call`` can send, from the task table: who may call each, where it goes."""
    from schemas.contract import TASKS

    lines = ["tasks (kwargs: docs/calling.md and docs/schemas/):"]
    for spec in TASKS:
        if not spec.internal:
            roles = ", ".join(sorted(spec.roles))
            lines.append(f"  {spec.name:<24} queue {spec.queue}; roles {roles}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = IntermixedParser(
        prog="videoworker",
        description=DESCRIPTION,
        formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=24),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    run = sub.add_parser("run", help="start worker and beat (embedded services if none set)")
    run.add_argument("--concurrency", type=int, default=0, help="worker processes (default: cores)")
    run.add_argument("--no-beat", action="store_true", help="do not start celery beat")
    run.add_argument("--loglevel", default="INFO")
    run.add_argument(
        "--flower",
        action="store_true",
        help="also start Flower on 127.0.0.1:5555 (production extra)",
    )
    run.set_defaults(func=_run)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=_migrate)

    call = sub.add_parser(
        "call",
        help="call a task and print its envelope as JSON",
        description="Send one task to the running worker and print its answer (the envelope).",
        epilog=_task_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    call.add_argument("task", help="a task name (listed below), e.g. videos.get")
    call.add_argument(
        "kwargs",
        nargs="*",
        help="key=value, before or after the options (values parsed as JSON when they are)",
    )
    call.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds to wait for the answer (default 30)",
    )
    call.add_argument(
        "--token", help="JWT sent as auth (AUTH_MODE=jwt); default $VIDEOWORKER_TOKEN"
    )
    call.set_defaults(func=_call, before_preflight=_known_task)
    listing.add_all_option(call)

    reconcile = sub.add_parser(
        "reconcile", help="compare bucket and database: orphan and missing objects"
    )
    reconcile.add_argument("--fix", action="store_true", help="delete old orphans")
    reconcile.add_argument(
        "--min-age",
        type=duration,
        default=None,
        help=f"ignore younger orphans (default {DEFAULT_POLICY.reconcile_min_age_seconds:g}s)",
    )
    reconcile.add_argument(
        "--max-share",
        type=float,
        default=None,
        help=f"refuse --fix above this share of the bucket (default "
        f"{DEFAULT_POLICY.reconcile_max_share:g})",
    )
    reconcile.add_argument("--prefix", default="", help="only keys under this prefix")
    reconcile.set_defaults(func=_reconcile)

    retention = sub.add_parser("retention", help="per-mall retention days and storage quota")
    retention_sub = retention.add_subparsers(dest="action", required=True)
    set_days = retention_sub.add_parser(
        "set",
        help="keep a mall's videos DAYS days and/or its storage under a quota",
        description="Keep a mall's videos DAYS days, its storage under --max-storage, or both. "
        "DAYS may be given as the second argument or as --days: the two are the same.",
    )
    set_days.add_argument("mall_id", type=uuid.UUID, metavar="MALL_ID", help="the mall's id")
    days_help = f"days a video is kept, 1 to {RETENTION_DAYS_MAX} (overrides RETENTION_DAYS)"
    set_days.add_argument("days", type=retention_days, nargs="?", metavar="DAYS", help=days_help)
    set_days.add_argument(
        "--days",
        dest="days_flag",
        type=retention_days,
        metavar="DAYS",
        help="the same as DAYS, as an option",
    )
    set_days.add_argument(
        "--max-storage",
        type=byte_size,
        metavar="SIZE",
        help="originals + proxies kept at most (500G, 2T: powers of 1024); oldest go first",
    )
    unset_days = retention_sub.add_parser("unset", help="back to RETENTION_DAYS, no quota")
    unset_days.add_argument("mall_id", type=uuid.UUID)
    retention_sub.add_parser("list", help="show the overrides")
    retention.set_defaults(func=_retention)

    from worker.ops.bulk import add_parser as add_bulk_delete

    add_bulk_delete(sub)

    from worker.ops.reprocess import add_parser as add_reprocess

    add_reprocess(sub)

    from worker.ops.export import add_parser as add_export

    add_export(sub)

    from worker.ops.analytics import add_parser as add_analytics

    add_analytics(sub)

    from worker.ops.sharing import add_parsers as add_tags_and_shares

    add_tags_and_shares(sub)

    purge = sub.add_parser("purge", help="remove queued object deletions that are due")
    purge.add_argument(
        "--now", action="store_true", help="every queued key at once, whatever its backoff"
    )
    purge.add_argument("--limit", type=int, default=100_000, help="at most this many keys")
    purge.set_defaults(func=_purge)

    hold = sub.add_parser("hold", help="put a video on legal hold (sweeps skip it)")
    hold.add_argument("video_id", type=uuid.UUID)
    hold.add_argument("--release", action="store_true", help="release the hold")
    hold.set_defaults(func=_hold)

    figures_parser = sub.add_parser(
        "figures", help="check the kept list totals and statistics against the rows, or rebuild"
    )
    figures_parser.add_argument(
        "action",
        choices=("check", "rebuild"),
        help="check: exit 1 when any figure differs; rebuild: recompute them (writers wait)",
    )
    figures_parser.set_defaults(func=_figures)

    health = sub.add_parser("health", help="check broker, backend, cache, Postgres and S3")
    health.add_argument("--worker", action="store_true", help="also ping this host's worker")
    health.set_defaults(func=_health)

    dead = sub.add_parser("dead-letters", help="messages set aside after repeated worker loss")
    dead_sub = dead.add_subparsers(dest="action", required=True)
    dead_sub.add_parser("list", help="print them as JSON")
    for action in ("requeue", "drop"):
        chosen = dead_sub.add_parser(action, help=f"{action} one, by task id")
        chosen.add_argument("task_id")
    dead_sub.choices["requeue"].add_argument(
        "--token",
        help="JWT to send with it (AUTH_MODE=jwt: tokens are not kept); default $VIDEOWORKER_TOKEN",
    )
    dead.set_defaults(func=_dead_letters)

    token = sub.add_parser("token", help="mint a development JWT from AUTH_JWT_SECRET")
    token.add_argument("--role", required=True, choices=("admin", "operator", "tenant"))
    token.add_argument("--sub", required=True, help="who the token names (the audit's actor)")
    token.add_argument("--mall", type=uuid.UUID, action="append", default=[], help="operator")
    token.add_argument("--pin", type=uuid.UUID, action="append", default=[], help="tenant")
    token.add_argument("--ttl", type=duration, default="1h", help="lifetime (default 1h)")
    token.set_defaults(func=_token)

    demo = sub.add_parser("demo", help="load a demo world: malls, pins, videos and real files")
    demo.add_argument("--videos", type=demo_videos, default=300, metavar="N", help="4 to 100000")
    demo.add_argument("--force", action="store_true", help="add it beside other data")
    demo.set_defaults(func=_demo)

    events = sub.add_parser("events", help="print videos.events as they come (Ctrl-C stops)")
    events.add_argument("--count", type=int, default=None, help="stop after N events")
    events.add_argument(
        "--follow",
        action="store_true",
        help="read the stream videos:events (CloudEvents, kept for days) instead of the channel",
    )
    events.add_argument(
        "--from", dest="start", default="$", help="with --follow: a stream id, 0 for all kept"
    )
    events.add_argument(
        "--group", default=None, help="with --follow: read as this consumer group, acknowledging"
    )
    events.add_argument(
        "--type",
        dest="types",
        action="append",
        default=[],
        help="with --follow: only these types (video.*); repeatable",
    )
    events.set_defaults(func=_events)

    config = sub.add_parser(
        "config", help="show the settings commands use and where each comes from (no secrets)"
    )
    config.add_argument("--services", action="store_true", help="only the services' URLs")
    config.set_defaults(func=_config)

    schemas = sub.add_parser("schemas", help="write JSON Schemas of every message")
    schemas.add_argument("--out", default="docs/schemas")
    schemas.add_argument("--check", action="store_true", help="fail if the files are stale")
    schemas.set_defaults(func=_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every way a command can end, as an exit code and at most one line on stderr."""
    command = "videoworker"
    try:
        args = build_parser().parse_args(argv)
        command = f"videoworker {args.command}"
        code = _dispatch(args)
        sys.stdout.flush()  # a reader gone (`| head`) is found here, not at exit
        return code
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_BROKEN_PIPE


def _dispatch(args: argparse.Namespace) -> int:
    from worker.dev.embedded import EmbeddedError
    from worker.ops import failures
    from worker.ops.config import announce
    from worker.ops.preflight import (
        NAMED_ONLY,
        NEEDS,
        NoStack,
        Unready,
        describe_embedded_failure,
        preflight,
    )

    home = stack_home()
    args.deps = Wiring()
    try:
        if vet := getattr(args, "before_preflight", None):
            vet(args)
        preflight(args, home)
        if args.command in NEEDS or args.command in NAMED_ONLY:
            announce()
        return args.func(args)
    except NoStack as exc:
        print(f"videoworker: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, Unready) as exc:
        print(f"videoworker: {exc}", file=sys.stderr)
        return 2
    except EmbeddedError as exc:
        print(f"videoworker: {describe_embedded_failure(str(exc), home)}", file=sys.stderr)
        return 2
    except CommandFailed as exc:
        print(f"videoworker {args.command}: {exc}", file=sys.stderr)
        return 1
    except Refused as exc:
        print(f"videoworker {args.command}: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, BrokenPipeError, SystemExit):
        raise
    except Exception as exc:
        if failures.debugging():
            raise
        line = failures.describe(exc)
        print(
            f"videoworker {args.command}: {line or failures.unexpected(exc)}",
            file=sys.stderr,
        )
        return 2 if line else 1


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush finds no pipe to break."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    raise SystemExit(main())
