"""What a command needs, checked before it starts: one line saying what to do, not a traceback.

A newcomer meets three things first: a service URL that points at nothing (a
``DATABASE_URL`` left over from another project, a stopped ``make run``), a second
``make run`` beside the first, and a port some other program holds. Each is found here
with a TCP connect or a file lock, before any driver retries for half a minute, and
is answered with the one thing to do about it.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from worker.settings import (
    SERVICE_VARIABLES,
    Settings,
    get_settings,
    read_stack_env,
    stack_env_file,
)

CONNECT_TIMEOUT_SECONDS = 2.0
REDIS_VARS = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_URL")
DEFAULT_PORTS = {
    "postgresql": 5432,
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
    "pyamqp": 5672,
    "amqps": 5671,
    "http": 80,
    "https": 443,
}
# What each command reaches; commands not listed (health, schemas) need nothing first.
NEEDS: dict[str, tuple[str, ...]] = {
    "call": ("broker", "backend"),
    "bulk-delete": ("broker", "backend", "cache"),
    "demo": ("postgres", "s3", "cache"),
    "events": ("cache",),
    "migrate": ("postgres",),
    "reconcile": ("postgres", "s3"),
    "purge": ("postgres", "s3"),
    "retention": ("postgres",),
    "hold": ("postgres",),
    "dead-letters": ("broker", "cache"),
    "figures": ("postgres",),
}
# Commands that report on the services themselves: they need them named, not answering.
NAMED_ONLY: dict[str, tuple[str, ...]] = {
    "health": ("broker", "backend", "cache", "postgres", "s3"),
}
# Kept open for the life of a ``videoworker run``: the lock is the file's, not a pid's.
_held: list[IO[str]] = []


class Unready(Exception):
    """Something a command needs is not there; the message says what to do, in one line."""


class NoStack(Unready):
    """Nothing names a service the command needs: rather than guess a default that may be
    someone else's server, say how to get one (exit 1)."""


def unnamed(settings: Settings, kinds: Iterable[str], environ: Mapping[str, str]) -> list[str]:
    """The variables to set for the kinds nothing names. S3 left unset beside other
    services given is AWS itself, a deployment's choice; with nothing given at all, it
    is a stack that was never started."""
    stack_env = stack_env_values()
    given = {name for name in SERVICE_VARIABLES if name in environ or name in stack_env}
    redis_broker = "CELERY_BROKER_URL" in given and settings.celery_broker_url.startswith(
        ("redis", "unix")
    )
    redis_named = "REDIS_URL" in given or redis_broker
    redis_variable = "REDIS_URL" if "CELERY_BROKER_URL" in given else "CELERY_BROKER_URL"
    named = {
        "postgres": ("DATABASE_URL" in given, "DATABASE_URL"),
        "broker": ("CELERY_BROKER_URL" in given, "CELERY_BROKER_URL"),
        "cache": (redis_named, redis_variable),
        "backend": (redis_named or "CELERY_RESULT_BACKEND" in given, redis_variable),
        "s3": (bool(given), "S3_ENDPOINT_URL"),
    }
    missing = {named[kind][1] for kind in kinds if not named[kind][0]}
    return [name for name in SERVICE_VARIABLES if name in missing]


def require_named(
    settings: Settings, kinds: Iterable[str], environ: Mapping[str, str] | None = None
) -> None:
    environ = os.environ if environ is None else environ
    missing = unnamed(settings, kinds, environ)
    if missing:
        raise NoStack(
            f"no stack found (no {stack_env_file()}): start one with `make run`, "
            f"or set {', '.join(missing)}"
        )


@dataclass
class Endpoint:
    label: str
    address: str  # host:port, or a socket path
    host: str | None
    port: int | None
    path: str | None = None
    variables: list[str] = field(default_factory=list)


def stack_env_values() -> dict[str, str]:
    """What the embedded stack's file (read by Settings) currently says."""
    return read_stack_env()


def _endpoint(label: str, url: str, variable: str) -> Endpoint | None:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "unix":
        return Endpoint(label, parts.path, None, None, path=parts.path, variables=[variable])
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None  # not a port at all: the driver's own message is clearer
    host = parts.hostname or "localhost"
    if port is None:
        return None
    shown = f"[{host}]" if ":" in host else host
    return Endpoint(label, f"{shown}:{port}", host, port, variables=[variable])


def _broker_label(url: str) -> str:
    return "RabbitMQ" if url.startswith(("amqp", "pyamqp")) else "Redis"


def _cache_variable(settings: Settings) -> str:
    """The variable the cache Redis's URL comes from (the broker's when it is a Redis)."""
    if not settings.redis_url and settings.celery_broker_url.startswith(("redis", "unix")):
        return "CELERY_BROKER_URL"
    return "REDIS_URL"


def endpoints(settings: Settings, kinds: Iterable[str]) -> list[Endpoint]:
    """The distinct addresses behind these kinds, each with every variable naming it."""
    found: dict[str, Endpoint] = {}
    for kind in kinds:
        if kind == "postgres":
            candidate = _endpoint("PostgreSQL", settings.database_url, "DATABASE_URL")
        elif kind == "broker":
            url = settings.celery_broker_url
            candidate = _endpoint(_broker_label(url), url, "CELERY_BROKER_URL")
        elif kind == "cache":
            candidate = _endpoint("Redis", settings.redis_cache_url, _cache_variable(settings))
        elif kind == "backend":
            variable = (
                "CELERY_RESULT_BACKEND"
                if settings.celery_result_backend
                else _cache_variable(settings)
            )
            candidate = _endpoint("Redis", settings.result_backend_url, variable)
        elif kind == "s3":
            if not settings.s3_endpoint_url:
                continue  # AWS itself: not a newcomer's local service
            candidate = _endpoint("S3", settings.s3_endpoint_url, "S3_ENDPOINT_URL")
        else:
            raise ValueError(f"unknown service kind {kind!r}")
        if candidate is None:
            continue
        known = found.setdefault(candidate.address, candidate)
        if known is not candidate:
            known.variables += [v for v in candidate.variables if v not in known.variables]
    return list(found.values())


def answers(endpoint: Endpoint, timeout: float = CONNECT_TIMEOUT_SECONDS) -> bool:
    try:
        if endpoint.path is not None:
            with socket.socket(socket.AF_UNIX) as unix:
                unix.settimeout(timeout)
                unix.connect(endpoint.path)
        else:
            with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
                pass
    except OSError:
        return False
    return True


def _advice(
    endpoint: Endpoint, environ: Mapping[str, str], stack_env: Mapping[str, str], in_run: bool
) -> str:
    names = " and ".join(endpoint.variables)
    head = f"{endpoint.label} at {endpoint.address} does not answer"
    if any(name in environ for name in endpoint.variables):
        set_here = " and ".join(v for v in endpoint.variables if v in environ)
        return f"{head}; start it or unset {set_here} to use the embedded stack"
    if any(name in stack_env for name in endpoint.variables):
        return (
            f"{head}: the embedded stack is not running; start `make run` in another "
            "terminal and try again"
        )
    if in_run:
        return f"{head} ({names} not set: the default); start it or set {names}"
    return (
        f"{head} ({names} not set: the default); start `make run` in another terminal "
        f"for the embedded stack, or set {names}"
    )


def require(
    settings: Settings,
    kinds: Iterable[str],
    *,
    environ: Mapping[str, str] | None = None,
    in_run: bool = False,
) -> None:
    environ = os.environ if environ is None else environ
    kinds = list(kinds)
    if not in_run:
        require_named(settings, kinds, environ)
    stack_env = stack_env_values()
    for endpoint in endpoints(settings, kinds):
        if not answers(endpoint):
            raise Unready(_advice(endpoint, environ, stack_env, in_run))


def hold_stack_lock(home: Path) -> None:
    """One ``videoworker run`` per embedded home: a second would stop the first's servers."""
    home.mkdir(parents=True, exist_ok=True)
    lock = (home / "run.lock").open("a+", encoding="utf-8")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise Unready(
            f"the embedded stack under {home}/ is already running (pid {holder}, "
            "`make run` in another terminal); use it from here, or stop it with Ctrl-C "
            "there first"
        ) from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    _held.append(lock)


def check_run(args, home: Path) -> None:  # noqa: ANN001 - the parsed arguments
    """``videoworker run``: Flower installed if asked for, the stack free, given URLs live."""
    from worker.ops import flower

    if getattr(args, "flower", False) and not flower.installed():
        raise Unready(
            "--flower needs Flower, which is not installed; pip install -e '.[production]'"
        )
    embeds_something = (
        "DATABASE_URL" not in os.environ
        or not any(name in os.environ for name in REDIS_VARS)
        or "S3_ENDPOINT_URL" not in os.environ
    )
    kinds = []
    if "DATABASE_URL" in os.environ:
        kinds.append("postgres")
    if any(name in os.environ for name in REDIS_VARS):
        kinds += ["broker", "backend", "cache"]
    if "S3_ENDPOINT_URL" in os.environ:
        kinds.append("s3")
    if kinds:
        require(get_settings(), kinds, in_run=True)
    if embeds_something:
        hold_stack_lock(home)


def preflight(args, home: Path) -> None:  # noqa: ANN001 - the parsed arguments
    """Raise ``Unready`` when what ``args.command`` needs is not there."""
    if args.command == "run":
        check_run(args, home)
        return
    if args.command in NAMED_ONLY:
        require_named(get_settings(), NAMED_ONLY[args.command])
    kinds = NEEDS.get(args.command)
    if kinds:
        require(get_settings(), kinds)


SERVICE_LOGS = {"PostgreSQL": "postgres/server.log", "Redis": "redis/redis.log"}


def describe_embedded_failure(message: str, home: Path) -> str:
    """An embedded server's failure (its log tail included) as one line with what to do."""
    service = next((name for name in ("PostgreSQL", "Redis") if name in message), None)
    if "Address already in use" in message or "could not bind" in message:
        port = re.search(r"port (\d+)", message)
        where = f" port {port.group(1)}" if port else " its port"
        return (
            f"another program took{where} while the embedded {service or 'service'} started; "
            "run `make run` again (it picks a free port)"
        )
    first = message.strip().splitlines()[0] if message.strip() else "an embedded server failed"
    log = SERVICE_LOGS.get(service or "")
    return first + (f"; see {home}/{log}" if log else "")


def moved_ports(stack) -> list[str]:  # noqa: ANN001 - an EmbeddedStack
    """One line per embedded server that could not have its usual port."""
    from worker.dev.embedded import PREFERRED_PORTS

    lines = []
    for name, label in (("postgres", "PostgreSQL"), ("redis", "Redis"), ("s3", "S3")):
        server = getattr(stack, name)
        preferred = PREFERRED_PORTS[name]
        if server is not None and server.port != preferred:
            lines.append(
                f"videoworker: port {preferred} is taken by another program; embedded "
                f"{label} listens on 127.0.0.1:{server.port} instead (written to stack.env)"
            )
    return lines


__all__ = [
    "NoStack",
    "Unready",
    "describe_embedded_failure",
    "endpoints",
    "hold_stack_lock",
    "moved_ports",
    "preflight",
    "require",
]
