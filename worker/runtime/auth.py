"""Access scope at the task edge: ``auth`` popped, verified, checked against the role table.

``authorize`` is the one place a task's caller is judged (``ContractTask.respond`` calls
it before validating anything else), and what it returns, a ``Scope``, is all the
handlers ever see of the caller. The token itself stays here: it is popped from the
kwargs before they are validated, never logged, and kept in memory only while its task
runs, so that the follow-up tasks that task queues (a sweep's continuation, a stats
flush) carry the same authority. Tasks nobody sends by hand (beat's schedule) get the
worker's own service token.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from datetime import timedelta
from typing import Any

from handlers.access import NOBODY, UNRESTRICTED, Scope, may_run
from schemas.contract import PUBLIC_TASKS, TASK_OF
from worker import logs
from worker.runtime.tokens import TokenVerifier, Unauthorized, auth_config, mint_token
from worker.settings import ConfigError, get_settings

log = logging.getLogger("videoworker.auth")

AUTH_KWARG = "auth"
# The tasks beat sends, and the flush deletes queue: the only ones given the service token.
SCHEDULED_TASKS = frozenset(
    {
        "videos.retention_sweep",
        "videos.purge_storage",
        "videos.refresh_stats",
        "videos.flush_stale_stats",
        "videos.export_sweep",
        "videos.flush_analytics",
        "videos.ingest_access_logs",
    }
)
SERVICE_SUBJECT = "videoworker"
SERVICE_TOKEN_TTL = timedelta(hours=1)

_caller_token: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "caller_token", default=None
)
_lock = threading.Lock()
_verifier: TokenVerifier | None = None


class Forbidden(Exception):
    """The envelope's ``forbidden``: a valid token whose role may not run the task."""

    code = "forbidden"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def verifier() -> TokenVerifier:
    """This process's verifier, built once from the settings (after any fork)."""
    global _verifier
    if _verifier is None:
        with _lock:
            if _verifier is None:
                _verifier = TokenVerifier(auth_config(get_settings()))
    return _verifier


def check_configuration() -> None:
    """At start-up: a jwt worker that could not work stops here, with a sentence naming
    the variable, instead of answering every task ``internal`` or, worse, starting and
    letting beat's schedule be refused every time (no sweep, purge or refresh, ever).

    Its keys must verify something, and the token it gives its own scheduled tasks
    must pass its own verification as an admin's.
    """
    if get_settings().auth_mode != "jwt":
        return
    own = verifier()
    token = service_token()
    if token is None:
        raise ConfigError(
            "Invalid configuration: AUTH_MODE=jwt: beat's schedule needs the worker's own "
            "token: set AUTH_JWT_SECRET (HS256) or AUTH_SERVICE_TOKEN (an admin token)"
        )
    source = "AUTH_SERVICE_TOKEN" if _minting_secret() is None else "AUTH_JWT_SECRET"
    try:
        scope = own.verify(token)
    except Unauthorized as exc:
        raise ConfigError(
            f"Invalid configuration: {source}: the worker's own token is refused by its "
            f"own verification ({exc.detail}), so beat's schedule could never run"
        ) from None
    if not scope.sees_everything:
        raise ConfigError(
            f"Invalid configuration: {source}: the worker's own token must be an admin's "
            f"(it is a {scope.role}'s), or beat's schedule is forbidden"
        )


def reset() -> None:
    """Forget the verifier (settings changed, in tests)."""
    global _verifier
    with _lock:
        _verifier = None


def authorize(task: str, kwargs: dict[str, Any]) -> Scope:
    """The caller's scope for this task, taking ``auth`` out of ``kwargs``.

    ``AUTH_MODE=off``: everything, and ``auth`` is ignored. ``jwt``: the token's scope,
    or ``Unauthorized`` (no valid token) or ``Forbidden`` (a role the table refuses).
    A public task (``TaskSpec.public``: its kwargs carry their own credential) is asked
    for no token; any it is given is dropped unread, and its scope sees nothing.
    """
    token = kwargs.pop(AUTH_KWARG, None)
    _caller_token.set(None)
    if get_settings().auth_mode == "off":
        return UNRESTRICTED
    if task in PUBLIC_TASKS:
        return NOBODY
    try:
        scope = verifier().verify(token)
    except Unauthorized as exc:
        log.warning("auth.unauthorized", extra={"task": task, "reason": exc.detail})
        raise
    context = logs.task_context.get()
    logs.task_context.set({**(context or {}), "sub": scope.subject or ""})
    if not may_run(scope.role, task):
        log.warning("auth.forbidden", extra={"task": task, "role": scope.role})
        raise Forbidden(f"Role {scope.role} may not run {task}")
    _caller_token.set(token)
    return scope


def log_secrets() -> list[str]:
    """The configured auth secrets, for the log redactor to blank wherever they appear."""
    settings = get_settings()
    return [
        secret.get_secret_value()
        for secret in (settings.auth_jwt_secret, settings.auth_service_token)
        if secret
    ]


def forget_caller() -> None:
    """After a task: its token is held no longer than the task runs."""
    _caller_token.set(None)


def _minting_secret() -> str | None:
    """AUTH_JWT_SECRET, when the worker's own verification accepts what it signs: with
    AUTH_JWT_ALGORITHMS narrowed to public-key algorithms, a leftover secret must not
    mint HS256 tokens that every scheduled task would have refused."""
    secret = get_settings().auth_jwt_secret
    if secret and "HS256" in verifier().config.algorithms:
        return secret.get_secret_value()
    return None


def service_token() -> str | None:
    """The worker's own admin token: minted from AUTH_JWT_SECRET (when HS256 is
    accepted), else AUTH_SERVICE_TOKEN."""
    settings = get_settings()
    secret = _minting_secret()
    if secret:
        return mint_token(
            secret,
            role="admin",
            subject=SERVICE_SUBJECT,
            ttl=SERVICE_TOKEN_TTL,
            audience=settings.auth_jwt_audience,
            issuer=settings.auth_jwt_issuer,
        )
    if settings.auth_service_token:
        return settings.auth_service_token.get_secret_value()
    return None


def attach_credentials(body: Any = None, headers: Any = None, **_: Any) -> None:
    """``before_task_publish``: a message this process sends without ``auth`` carries
    the token of the task that sends it, or, for beat's schedule, the service token."""
    if get_settings().auth_mode != "jwt":
        return
    if not (isinstance(body, tuple | list) and len(body) == 3 and isinstance(body[1], dict)):
        return
    kwargs = body[1]
    if AUTH_KWARG in kwargs:
        return
    task = headers.get("task") if isinstance(headers, dict) else None
    if task not in TASK_OF:
        # Another service's task (the processing pipeline's): the caller's token is not
        # for it to see.
        return
    token = _caller_token.get()
    if token is None and task in SCHEDULED_TASKS:
        token = service_token()
        if token is None:
            log.error("auth.no_service_token", extra={"task": task})
    if token is not None:
        kwargs[AUTH_KWARG] = token
