"""``videoworker``: run the worker, migrate, call a task, export JSON Schemas."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from handlers.policy import DEFAULT_POLICY
from worker.settings import ConfigError, get_settings

EMBEDDED_HOME = Path(os.environ.get("VIDEOWORKER_HOME", ".videoworker"))
REDIS_VARS = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_URL")


def _migrate(_: argparse.Namespace) -> int:
    from worker.adapters.postgres.migrate import upgrade

    upgrade(get_settings().database_url)
    print("videoworker: database schema is at the latest revision")
    return 0


def _parse_value(raw: str) -> Any:
    """``page=2`` is a number and ``has_proxy=true`` a bool; anything not JSON is a string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _call(args: argparse.Namespace) -> int:
    from celery.exceptions import TimeoutError as CeleryTimeout

    from worker.client import VideoClient

    kwargs: dict[str, Any] = {}
    for pair in args.kwargs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            print(f"videoworker call: expected key=value, got {pair!r}", file=sys.stderr)
            return 2
        kwargs[key] = _parse_value(value)
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
    from worker.ops.schema_export import render_all

    out = Path(args.out)
    rendered = render_all()
    if args.check:
        stale = [
            name
            for name, text in rendered.items()
            if not (out / name).exists() or (out / name).read_text() != text
        ]
        extra = sorted(p.name for p in out.glob("*.json") if p.name not in rendered)
        if stale or extra:
            print(
                "videoworker schemas: out of date: "
                + ", ".join(stale + extra)
                + " (run `videoworker schemas`)",
                file=sys.stderr,
            )
            return 1
        print(f"videoworker schemas: {len(rendered)} files current")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for stale_file in out.glob("*.json"):
        if stale_file.name not in rendered:
            stale_file.unlink()
    for name, text in rendered.items():
        (out / name).write_text(text)
    print(f"videoworker schemas: wrote {len(rendered)} files to {out}")
    return 0


def _run(args: argparse.Namespace) -> int:
    """Start what is missing of the stack, migrate, then supervise worker and beat."""
    from worker.dev.embedded import EmbeddedStack

    stack = EmbeddedStack.plan(
        EMBEDDED_HOME,
        postgres="DATABASE_URL" not in os.environ,
        redis=not any(name in os.environ for name in REDIS_VARS),
        s3="S3_ENDPOINT_URL" not in os.environ,
        bucket=os.environ.get("S3_BUCKET", "videos"),
    )
    embedded = [name for name in ("postgres", "redis", "s3") if getattr(stack, name)]
    env_file = EMBEDDED_HOME / "stack.env"
    if embedded:
        print(f"videoworker: starting embedded {', '.join(embedded)} under {EMBEDDED_HOME}/")
        from worker.ops.preflight import moved_ports

        for line in moved_ports(stack):
            print(line)
        os.environ.update(stack.start())
        stack.write_env_file(env_file)
    get_settings.cache_clear()
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        from worker.adapters.postgres.migrate import upgrade

        upgrade(get_settings().database_url)
        celery = [sys.executable, "-m", "celery", "-A", "worker"]
        worker_cmd = [
            *celery,
            "worker",
            "--loglevel",
            args.loglevel,
            "-Q",
            "videos,videos.maintenance",
        ]
        if args.concurrency:
            worker_cmd += ["--concurrency", str(args.concurrency)]
        children.append(subprocess.Popen(worker_cmd, start_new_session=True))
        if not args.no_beat:
            beat_cmd = [*celery, "beat", "--loglevel", args.loglevel]
            children.append(subprocess.Popen(beat_cmd, start_new_session=True))
        if args.flower:
            from worker.ops import flower

            flower_cmd, flower_port = flower.command(celery, args.loglevel)
            children.append(subprocess.Popen(flower_cmd, start_new_session=True))
            print(f"videoworker: Flower at {flower.url(flower_port)}", flush=True)
        settings = get_settings()
        print(
            "videoworker: ready (worker"
            + ("" if args.no_beat else " and beat")
            + f"); broker {_redact(settings.celery_broker_url)}"
            + (f"; embedded services listed in {env_file}" if embedded else "")
            + "; Ctrl-C stops everything",
            flush=True,
        )
        while not stopping:
            if any(child.poll() is not None for child in children):
                print("videoworker: a child process exited; stopping", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)  # warm shutdown: running tasks finish
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if embedded:
            stack.stop()
            env_file.unlink(missing_ok=True)
        print("videoworker: stopped", flush=True)


def _duration(text: str):
    """``24h``, ``90m``, ``7d``, ``3600s`` or plain seconds."""
    from datetime import timedelta

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1:] in units:
            return timedelta(seconds=float(text[:-1]) * units[text[-1]])
        return timedelta(seconds=float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 24h, 90m, 7d)") from None


def _deps():
    """The handlers' dependencies for a one-off command; follow-up tasks go to the broker."""
    from worker.bootstrap import build_deps
    from worker.runtime.app import celery_enqueue

    return build_deps(get_settings(), enqueue=celery_enqueue)


def _handled(handler, command_type, **fields):  # noqa: ANN001, ANN202 - thin dispatch
    """Validate as a task would, run the handler, and turn its errors into one line."""
    from pydantic import ValidationError

    from handlers.errors import VideoError

    try:
        return handler(command_type.model_validate(fields), _deps())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise CommandFailed(problems) from None
    except VideoError as exc:
        raise CommandFailed(exc.detail) from None


class CommandFailed(Exception):
    """A command the handlers refused; printed as one line, exit code 1."""


def _reconcile(args: argparse.Namespace) -> int:
    from handlers.reconcile import ReconcileStorage, reconcile_storage
    from worker.ops.progress import counting_store

    with counting_store(_deps()) as deps:
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


SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def byte_size(text: str) -> int:
    """``500G``, ``1.5T``, ``750M`` (powers of 1024) or a plain byte count."""
    raw = text.strip().upper().removesuffix("IB").removesuffix("B") if text else ""
    unit = raw[-1:] if raw[-1:] in SIZE_UNITS else ""
    number = raw[: -len(unit)] if unit else raw
    try:
        value = float(number) * SIZE_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 500G, 750M, 2T)") from None
    if not 1 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r}: a size from 1 byte to 8 EiB")
    return int(value)


def _human_size(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size >= SIZE_UNITS[unit] and size % SIZE_UNITS[unit] == 0:
            return f"{size // SIZE_UNITS[unit]}{unit}"
    return f"{size} bytes"


def _retention(args: argparse.Namespace) -> int:
    from handlers.retention import clear_retention, list_retention, set_retention
    from schemas.requests import ClearRetention, SetRetention

    if args.action == "set":
        days = args.days_flag if args.days_flag is not None else args.days
        if days is None and args.max_storage is None:
            raise CommandFailed("give DAYS (or --days), --max-storage, or both")
        _handled(
            set_retention,
            SetRetention,
            mall_id=str(args.mall_id),
            days=days,
            max_storage_bytes=args.max_storage,
        )
        if days is not None:
            print(f"mall {args.mall_id}: videos kept {days} days")
        if args.max_storage is not None:
            print(f"mall {args.mall_id}: storage kept at or under {_human_size(args.max_storage)}")
        return 0
    if args.action == "unset":
        periods = _handled(clear_retention, ClearRetention, mall_id=str(args.mall_id))
        print(f"mall {args.mall_id}: back to RETENTION_DAYS ({periods.default_days}), no quota")
        return 0
    periods = list_retention(_deps())
    print(f"default (RETENTION_DAYS): {periods.default_days} days")
    for mall_id in sorted({*periods.malls, *periods.quotas}):
        parts = []
        if mall_id in periods.malls:
            parts.append(f"{periods.malls[mall_id]} days")
        if mall_id in periods.quotas:
            parts.append(f"max storage {_human_size(periods.quotas[mall_id])}")
        print(f"{mall_id}: {', '.join(parts)}")
    return 0


def _hold(args: argparse.Namespace) -> int:
    from handlers.retention import set_legal_hold
    from schemas.requests import SetLegalHold

    _handled(set_legal_hold, SetLegalHold, video_id=str(args.video_id), held=not args.release)
    print(f"video {args.video_id}: legal hold {'released' if args.release else 'set'}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    import handlers
    from schemas import PurgeStorage

    result = _handled(handlers.purge_storage, PurgeStorage, limit=args.limit, due_only=not args.now)
    print(json.dumps(result.model_dump(mode="json"), indent=2))
    return 0


def _figures(args: argparse.Namespace) -> int:
    """The trigger-kept figures against the rows (see worker/adapters/postgres/figures.py)."""
    from worker.adapters.postgres import figures
    from worker.adapters.postgres.uow import make_engine

    engine = make_engine(get_settings())
    try:
        if args.action == "rebuild":
            with engine.begin() as conn:
                rows = figures.rebuild(conn)
            print(json.dumps({"rebuilt": rows}, indent=2))
            return 0
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                differing = figures.differences(conn)
    finally:
        engine.dispose()
    consistent = not any(differing.values())
    print(json.dumps({"consistent": consistent, "differing": differing}, indent=2))
    return 0 if consistent else 1


def _health(args: argparse.Namespace) -> int:
    from worker.ops.health import run_checks

    results = run_checks(get_settings(), worker=args.worker)
    print(json.dumps(results, indent=2))
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
        _forget_redeliveries(settings, letter.id, letter.retries)
        print(f"requeued {letter.task} {letter.id} on {letter.queue}")
    else:
        print(f"dropped {letter.id}")
    return 0


def _forget_redeliveries(settings, task_id: str, retries: int) -> None:  # noqa: ANN001
    """A requeued message starts its count of lost workers again from zero."""
    from worker.adapters.redis import make_redis
    from worker.runtime.consumer import REDELIVERIES_PREFIX, STARTED_PREFIX

    client = make_redis(settings.redis_cache_url)
    client.delete(
        f"{REDELIVERIES_PREFIX}{task_id}:{retries}", f"{STARTED_PREFIX}{task_id}:{retries}"
    )


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy can parse; show the scheme only
        return url.split("://", 1)[0] + "://…"


def _demo_videos(text: str) -> int:
    if not text.isdigit() or not 4 <= int(text) <= 100_000:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number from 4 to 100000")
    return int(text)


def _demo(args: argparse.Namespace) -> int:
    from worker.ops.demo import command

    return command(args)


def _events(args: argparse.Namespace) -> int:
    from worker.ops.events import command

    return command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videoworker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

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

    call = sub.add_parser("call", help="call a task and print its envelope as JSON")
    call.add_argument("task", help="e.g. videos.get")
    call.add_argument("kwargs", nargs="*", help="key=value (values parsed as JSON when they are)")
    call.add_argument("--timeout", type=float, default=30.0)
    call.add_argument(
        "--token", help="JWT sent as auth (AUTH_MODE=jwt); default $VIDEOWORKER_TOKEN"
    )
    call.set_defaults(func=_call)

    reconcile = sub.add_parser(
        "reconcile", help="compare bucket and database: orphan and missing objects"
    )
    reconcile.add_argument("--fix", action="store_true", help="delete old orphans")
    reconcile.add_argument(
        "--min-age",
        type=_duration,
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
        "set", help="keep a mall's videos DAYS days and/or its storage under a quota"
    )
    set_days.add_argument("mall_id", type=uuid.UUID)
    days_range = range(1, 36501)
    set_days.add_argument("days", type=int, nargs="?", choices=days_range, metavar="DAYS")
    set_days.add_argument("--days", dest="days_flag", type=int, choices=days_range, metavar="DAYS")
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
    token.add_argument("--ttl", type=_duration, default="1h", help="lifetime (default 1h)")
    token.set_defaults(func=_token)

    demo = sub.add_parser("demo", help="load a demo world: malls, pins, videos and real files")
    demo.add_argument("--videos", type=_demo_videos, default=300, metavar="N", help="4 to 100000")
    demo.add_argument("--force", action="store_true", help="add it beside other data")
    demo.set_defaults(func=_demo)

    events = sub.add_parser("events", help="print videos.events as they come (Ctrl-C stops)")
    events.add_argument("--count", type=int, default=None, help="stop after N events")
    events.set_defaults(func=_events)

    schemas = sub.add_parser("schemas", help="write JSON Schemas of every message")
    schemas.add_argument("--out", default="docs/schemas")
    schemas.add_argument("--check", action="store_true", help="fail if the files are stale")
    schemas.set_defaults(func=_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    from worker.dev.embedded import EmbeddedError
    from worker.ops.preflight import Unready, describe_embedded_failure, preflight

    args = build_parser().parse_args(argv)
    try:
        preflight(args, EMBEDDED_HOME)
        return args.func(args)
    except (ConfigError, Unready) as exc:
        print(f"videoworker: {exc}", file=sys.stderr)
        return 2
    except EmbeddedError as exc:
        print(f"videoworker: {describe_embedded_failure(str(exc), EMBEDDED_HOME)}", file=sys.stderr)
        return 2
    except CommandFailed as exc:
        print(f"videoworker {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
