"""Configuration, read once from the environment (names as in the message contract).

Every field maps to one upper-case environment variable. What the environment leaves
unset comes from the embedded stack's ``stack.env`` (written by ``videoworker run``
under the stack's home), then from defaults. The home is found the same way from any
folder (``stack_home``), so a command run elsewhere still talks to its checkout's stack
rather than to whatever else listens on the default ports.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from handlers.policy import DEFAULT_POLICY

DEFAULT_DB_POOL_SIZE = 5


def connections_per_process(pool: str, concurrency: int) -> int:
    """The pool size a worker process needs, from ``--pool`` and ``--concurrency``.

    A prefork child (or solo) runs one task at a time: one connection held for reads and
    one checked out for a write, so 1 (the overflow gives the second). Under threads,
    each of ``concurrency`` threads may hold one for its unit of work at once: as many,
    so none waits for another's to come back. Sized from the pool, a node of ``-c C``
    opens at most ``2·C`` connections plus the relay's, whatever the pool type; the
    old fixed 5 per process made a prefork node of 8 children hold up to 80.
    """
    if pool == "threads":
        return max(1, concurrency)
    return 1


class ConfigError(RuntimeError):
    """Raised instead of pydantic's ValidationError so the message names the variable."""


PositiveInt = Annotated[int, Field(ge=1)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="ignore",
        frozen=True,
        # The stack's file is found at load time (load_settings), never at import.
        env_file=None,
        env_file_encoding="utf-8",
    )

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/videoworker"
    celery_broker_url: str = "redis://127.0.0.1:6379/0"
    # Empty means "same Redis as the broker": one URL is enough for small deployments.
    celery_result_backend: str = ""
    redis_url: str = ""

    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    s3_bucket: str = "videos"
    aws_access_key_id: str = "videoworker"
    aws_secret_access_key: SecretStr = SecretStr("videoworker-secret")
    aws_region: str = "us-east-1"

    retention_days: PositiveInt = DEFAULT_POLICY.retention_days
    # A trashed video is deleted for good by the first sweep this many days after.
    trash_days: int = Field(default=DEFAULT_POLICY.trash_days, ge=1, le=36500)
    # How long deletion_audit keeps a row (the daily sweep prunes older ones).
    audit_retention_days: int = Field(default=DEFAULT_POLICY.audit_retention_days, ge=1, le=36500)

    # Connections each process keeps open (as many again may open under load). Unset,
    # a worker derives it from its execution pool (``connections_per_process``); other
    # processes (the CLI, beat, a script) keep DEFAULT_DB_POOL_SIZE.
    db_pool_size: PositiveInt | None = None
    db_statement_timeout_ms: PositiveInt = 30_000
    # What DATABASE_URL reaches: the server, or a transaction pooler (PgBouncer in
    # transaction mode), through which nothing may live in a session: prepared
    # statements off, budgets per transaction, the relay on EVENTS_RELAY_DATABASE_URL.
    db_pooler: Literal["none", "transaction"] = "none"
    s3_connect_timeout_seconds: float = Field(default=3.0, gt=0)
    s3_read_timeout_seconds: float = Field(default=30.0, gt=0)
    # Keys whose inline deletion failed wait this long before purge retries them, so the
    # retry does not race the request that queued them.
    purge_grace_seconds: int = Field(default=DEFAULT_POLICY.purge_grace_seconds, ge=0)
    stats_cache_ttl_seconds: PositiveInt = 3600
    stats_debounce_seconds: float = Field(default=DEFAULT_POLICY.stats_debounce_seconds, ge=0)
    sweep_time_budget_seconds: float = Field(default=DEFAULT_POLICY.sweep_time_budget_seconds, gt=0)
    bulk_delete_time_budget_seconds: float = Field(
        default=DEFAULT_POLICY.bulk_delete_time_budget_seconds, gt=0
    )
    # Redis redelivers an unacknowledged message after this long; unset, the longest
    # task's hard time limit plus a margin. Fault tests shorten it to recover quickly.
    broker_visibility_timeout_seconds: PositiveInt | None = None
    # A message whose worker was lost more than this many times is set aside.
    broker_delivery_limit: PositiveInt = 3
    # Beat schedule.
    retention_sweep_hour_utc: int = Field(default=3, ge=0, le=23)
    purge_interval_seconds: float = Field(default=300.0, gt=0)
    stats_refresh_interval_seconds: float = Field(default=900.0, gt=0)
    # Optional message signing (Celery's ``auth`` serializer): paths to this worker's
    # private key and certificate, and a glob of the certificates it trusts.
    security_key: str | None = None
    security_key_password: SecretStr | None = None
    security_certificate: str | None = None
    security_cert_store: str | None = None
    log_level: str = "INFO"
    # Unset: text when stderr is a terminal, JSON lines otherwise (logs.resolve_format).
    log_format: Literal["json", "text"] | None = None
    # Celery's "Task … succeeded in …" line for every message, at INFO. Off by default: at
    # hundreds of messages a second it is most of the log and a tenth of the worker's CPU.
    log_task_lines: bool = False
    # The largest message the worker reads: the raw broker item, and its body once
    # decompressed (a small zlib body can inflate a thousandfold).
    message_max_bytes: PositiveInt = 4 * 1024 * 1024
    # Access scope (worker.runtime.auth): off trusts every caller, as in v1; jwt verifies the
    # ``auth`` token of every task against the public key or the HS256 secret.
    auth_mode: Literal["off", "jwt"] = "off"
    auth_jwt_public_key: str | None = None
    auth_jwt_secret: SecretStr | None = None
    # Comma-separated; empty means every algorithm the configured keys verify.
    auth_jwt_algorithms: str = ""
    auth_jwt_audience: str = "videoworker"
    auth_jwt_issuer: str | None = None
    # The token beat's scheduled tasks present when no AUTH_JWT_SECRET can mint one.
    auth_service_token: SecretStr | None = None
    # videos.list(q=...): matches counted exactly up to this many, then "gte"; and the
    # time each of a search's statements may take before it is cancelled (timeout).
    search_total_cap: PositiveInt = DEFAULT_POLICY.search_total_cap
    search_timeout_ms: PositiveInt = DEFAULT_POLICY.search_timeout_ms
    # Set (to "videos.search"): a videos.list with q that arrives on another queue is
    # handed over to this one (Task.replace, same task id), so that workers of its own
    # (-Q videos.search) run searches and gets never wait behind them. Unset: searches
    # run where they arrive.
    search_queue: Literal["videos.search"] | None = None
    # The HMAC key list cursors are signed with, the same on every worker; unset, one is
    # derived from AWS_SECRET_ACCESS_KEY (worker.bootstrap.cursor_key).
    cursor_secret: SecretStr | None = None
    # Share links (videos.share): the longest expiry a caller may choose, the life of
    # each URL a resolve mints, and the wrong passwords a link takes per 15 minutes.
    share_max_minutes: int = Field(default=DEFAULT_POLICY.share_max_minutes, ge=5, le=525_600)
    share_url_minutes: int = Field(default=DEFAULT_POLICY.share_url_minutes, ge=1, le=1440)
    share_max_attempts: int = Field(default=DEFAULT_POLICY.share_max_attempts, ge=1, le=1000)
    # videos.reprocess sends this task to this queue, on CELERY_BROKER_URL, per video.
    reprocess_task: str = Field(default=DEFAULT_POLICY.reprocess_task, min_length=1)
    reprocess_queue: str = Field(default=DEFAULT_POLICY.reprocess_queue, min_length=1)
    # Exports (videos.export): limits per export, checked before any work, and how long
    # a completed ZIP is kept.
    export_max_videos: int = Field(default=DEFAULT_POLICY.export_max_videos, ge=1, le=100_000)
    export_max_bytes: PositiveInt = DEFAULT_POLICY.export_max_bytes
    export_ttl_hours: int = Field(default=DEFAULT_POLICY.export_ttl_hours, ge=1, le=8760)
    # A running export whose heartbeat is older than this is taken up again by the sweep.
    export_lease_seconds: int = Field(default=DEFAULT_POLICY.export_lease_seconds, ge=10)
    # A queued export not started after this many minutes has its run sent again.
    export_requeue_minutes: int = Field(
        default=DEFAULT_POLICY.export_requeue_minutes, ge=1, le=1440
    )
    # Parts of an export uploading at once (each one part of memory: 8 MiB and up).
    export_parts_in_flight: int = Field(default=DEFAULT_POLICY.export_parts_in_flight, ge=1, le=8)
    # How often beat runs videos.export_sweep.
    export_sweep_interval_seconds: PositiveInt = 30
    # Analytics: signed URLs counted in Redis (off: not counted at all), folded into
    # PostgreSQL by beat this often; bytes served read from the S3 server access logs
    # under this bucket and prefix every 5 minutes (no bucket: not read).
    analytics_enabled: bool = True
    analytics_flush_seconds: float = Field(default=60.0, gt=0)
    access_log_bucket: str = ""
    access_log_prefix: str = ""
    # Events (worker.adapters.relay): the stream videos:events keeps this many hours.
    events_retention_hours: PositiveInt = 168
    # The relay's own PostgreSQL URL; empty: DATABASE_URL. Its session advisory lock and
    # LISTEN need a direct server connection: behind a transaction pooler (PgBouncer in
    # transaction mode) give it the server's own address here.
    events_relay_database_url: str = ""
    # Off: this worker never relays (another worker does; one relays at a time anyway).
    events_relay: bool = True
    events_relay_batch: int = Field(default=500, ge=1, le=10_000)
    # How long the relay waits for a NOTIFY before it looks anyway.
    events_poll_seconds: float = Field(default=1.0, gt=0)
    # An event larger than this is refused by the relay: kept, retried, logged.
    events_max_bytes: PositiveInt = 1024 * 1024
    # Relayed rows stay in the outbox this long, then are pruned.
    events_keep_sent_seconds: PositiveInt = 3600

    @model_validator(mode="after")
    def _auth_has_a_key(self) -> Settings:
        # At start-up, not at the first task: a worker that could verify nothing must not
        # run. The keys themselves are checked by worker.runtime.tokens.auth_config.
        if self.auth_mode == "jwt" and not (self.auth_jwt_public_key or self.auth_jwt_secret):
            raise ValueError(
                "AUTH_MODE=jwt needs AUTH_JWT_PUBLIC_KEY (PEM: RS256, ES256, EdDSA) "
                "or AUTH_JWT_SECRET (HS256)"
            )
        return self

    @model_validator(mode="after")
    def _pooler_leaves_a_direct_url(self) -> Settings:
        # The relay's session advisory lock through a transaction pooler would stay on a
        # server connection other clients then use: two relays could lead at once.
        pooled = self.db_pooler == "transaction"
        if pooled and self.events_relay and not self.events_relay_database_url:
            raise ValueError(
                "DB_POOLER=transaction needs EVENTS_RELAY_DATABASE_URL: the server's own "
                "address, for the relay's session lock and LISTEN (or EVENTS_RELAY=false)"
            )
        return self

    @field_validator("search_queue", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # SEARCH_QUEUE= (as a compose file or an .env leaves it) means searches stay put.
        return None if value == "" else value

    @field_validator("events_relay_database_url")
    @classmethod
    def _relay_postgres_only(cls, value: str) -> str:
        return cls._postgres_only(value) if value else value

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgresql+psycopg://")):
            raise ValueError("must be a postgresql+psycopg:// URL")
        if value.startswith("postgresql://"):
            # psycopg 3 is the only driver installed; make the plain scheme mean it.
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("celery_broker_url")
    @classmethod
    def _guarded_broker(cls, value: str) -> str:
        if value.partition("://")[0] not in GUARDED_TRANSPORTS:
            raise ValueError(
                "must be a redis://, rediss://, amqp://, amqps:// or pyamqp:// URL (the "
                "brokers whose transports the worker guards against hostile messages)"
            )
        return value

    @field_validator("celery_result_backend", "redis_url")
    @classmethod
    def _redis_urls(cls, value: str) -> str:
        if value and not value.startswith(
            ("redis://", "rediss://", "unix://", "amqp://", "amqps://", "pyamqp://")
        ):
            raise ValueError("must be a redis://, rediss://, unix://, amqp:// or amqps:// URL")
        return value

    @field_validator("s3_endpoint_url", "s3_public_endpoint_url")
    @classmethod
    def _http_urls(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @property
    def signing(self) -> bool:
        return bool(self.security_key and self.security_certificate and self.security_cert_store)

    @property
    def pool_size(self) -> int:
        """``DB_POOL_SIZE``, or the default of a process that is not a worker."""
        return self.db_pool_size or DEFAULT_DB_POOL_SIZE

    def for_worker(self, pool: str, concurrency: int) -> Settings:
        """These settings for one process of a worker: ``DB_POOL_SIZE`` as given, else
        derived from the worker's pool and concurrency."""
        if self.db_pool_size is not None:
            return self
        return self.model_copy(update={"db_pool_size": connections_per_process(pool, concurrency)})

    @property
    def relay_database_url(self) -> str:
        return self.events_relay_database_url or self.database_url

    @property
    def direct_database_url(self) -> str:
        """Where session state may live (a migration's advisory lock, its CREATE INDEX
        CONCURRENTLY): the server itself, past any transaction pooler."""
        return self.events_relay_database_url or self.database_url

    @property
    def result_backend_url(self) -> str:
        return self.celery_result_backend or self.redis_cache_url

    @property
    def redis_cache_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        if self.celery_broker_url.startswith(("redis://", "rediss://", "unix://")):
            return self.celery_broker_url
        return "redis://127.0.0.1:6379/0"


# The broker transport of each URL scheme the worker accepts: kombu's own, each guarded
# against messages that are not what they claim (worker.runtime.transport and
# worker.runtime.amqp_transport). A scheme not here would get stock kombu, unguarded,
# so the settings refuse it. TLS stays as the scheme says: rediss:// keeps its ssl_*
# parameters, amqps:// its TLS socket and port 5671.
GUARDED_TRANSPORTS = {
    "redis": "worker.runtime.transport:Transport",
    "rediss": "worker.runtime.transport:Transport",
    "amqp": "worker.runtime.amqp_transport:Transport",
    "pyamqp": "worker.runtime.amqp_transport:Transport",
    "amqps": "worker.runtime.amqp_transport:SSLTransport",
}


def broker_transport(broker_url: str) -> str:
    """The guarded transport for this broker URL (validated by ``Settings``)."""
    return GUARDED_TRANSPORTS[broker_url.partition("://")[0]]


STACK_ENV_NAME = "stack.env"
# The variables naming a service: a command that needs one refuses to guess it.
SERVICE_VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "REDIS_URL",
    "S3_ENDPOINT_URL",
)


def checkout_root() -> Path | None:
    """The source checkout this package runs from (an editable install or the tree
    itself), or None when it was installed as a wheel."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def stack_home(environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """Where ``videoworker run`` keeps the embedded stack: ``$VIDEOWORKER_HOME``, else
    the checkout's ``.videoworker/`` (the same from any folder), else ``./.videoworker``
    for an installed wheel."""
    environ = os.environ if environ is None else environ
    if explicit := environ.get("VIDEOWORKER_HOME"):
        return Path(explicit)
    root = checkout_root()
    return root / ".videoworker" if root is not None else Path(".videoworker")


def stack_env_file() -> Path:
    return stack_home() / STACK_ENV_NAME


def read_stack_env(path: Path | None = None) -> dict[str, str]:
    """What the embedded stack's file says, names upper-cased; empty when there is none."""
    path = stack_env_file() if path is None else path
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[key.strip().upper()] = value.strip()
    return values


def setting_source(
    name: str, environ: os._Environ[str] | dict[str, str] | None = None
) -> str | None:
    """Where the variable ``name`` is given: ``environment``, the stack file's path, or
    None (the default applies)."""
    environ = os.environ if environ is None else environ
    if name in environ or name.lower() in environ:
        return "environment"
    if name in read_stack_env():
        return str(stack_env_file())
    return None


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into one line per bad variable."""
    try:
        return Settings(_env_file=stack_env_file(), **overrides)  # type: ignore[arg-type, call-arg]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "_".join(str(part) for part in err["loc"]).upper() or "configuration"
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("Invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
