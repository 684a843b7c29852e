"""The scale topology without containers: three RabbitMQ nodes in one cluster, PgBouncer
in transaction mode, worker nodes and beats, each a process group of this machine.

The same shape as ``docker-compose --profile scale``, for the fault tests, the benches
and a look by hand (``python -m worker.dev.cluster``). Everything here is started from
Debian's packages (``rabbitmq-server``, ``pgbouncer``), on ports and node names of its
own, in a temporary directory: a RabbitMQ node already on the machine (5672,
``rabbit@localhost``) and its data are never touched. Nodes of one machine share the
Erlang cookie of the ``rabbitmq`` user's home, so they run as that user with that home;
PgBouncer refuses to run as root, so it runs as ``postgres`` (or ``nobody``). Each
server is started in a session of its own and stopped by its process group, so a
killed node takes its ``beam.smp`` children and a stop leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
RABBITMQ_USER = "rabbitmq"
RABBITMQ_HOME = Path("/var/lib/rabbitmq")  # where the machine's Erlang cookie lives
NODE_NAMES = ("rabbit-a", "rabbit-b", "rabbit-c")
FIRST_AMQP_PORT = 5681
FIRST_DIST_PORT = 25681


def _free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _wait_port(port: int, timeout: float, what: str, process: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _free(port):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening")
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s")


def _stop_group(process: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    """End a process group this module started: politely, then for good."""
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


def _owned_by(path: Path, user: str) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in (root, *(os.path.join(root, d) for d in dirs)):
            os.chown(name, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


# --- RabbitMQ -----------------------------------------------------------------------------


@dataclass
class RabbitNode:
    """One node: its own name, AMQP and distribution ports, data and log directories."""

    name: str
    port: int
    dist_port: int
    home: Path
    peers: tuple[str, ...]
    process: subprocess.Popen[bytes] | None = None

    @property
    def nodename(self) -> str:
        return f"{self.name}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin",
            "HOME": str(RABBITMQ_HOME),
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.home / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.home / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.home / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.home / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.home / "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def prepare(self) -> None:
        (self.home / "mnesia").mkdir(parents=True, exist_ok=True)
        (self.home / "log").mkdir(parents=True, exist_ok=True)
        discovery = "".join(
            f"cluster_formation.classic_config.nodes.{i} = {peer}\n"
            for i, peer in enumerate(self.peers, 1)
        )
        (self.home / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "cluster_formation.peer_discovery_backend = classic_config\n"
            f"{discovery}"
            # The queue's figures (list_queues) within a second, not five.
            "collect_statistics_interval = 1000\n"
            "log.file.level = warning\n"
            "log.console = false\n"
        )
        # Management and every other plugin off: a node here is a broker, nothing else.
        (self.home / "enabled_plugins").write_text("[].\n")
        (self.home / "rabbitmq-env.conf").write_text("")
        _owned_by(self.home, RABBITMQ_USER)

    def start(self) -> RabbitNode:
        if not _free(self.port) or not _free(self.dist_port):
            raise RuntimeError(f"{self.nodename}: port {self.port} or {self.dist_port} is taken")
        log = (self.home / "console.log").open("ab")
        self.process = subprocess.Popen(
            [str(RABBITMQ_BIN / "rabbitmq-server")],
            env=self._env(),
            cwd=RABBITMQ_HOME,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=RABBITMQ_USER if os.geteuid() == 0 else None,
        )
        return self

    def ctl(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        done = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.nodename, *args],
            env=self._env(),
            cwd=RABBITMQ_HOME,
            capture_output=True,
            text=True,
            timeout=timeout,
            user=RABBITMQ_USER if os.geteuid() == 0 else None,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl -n {self.nodename} {' '.join(args)}: {done.stderr.strip()[-500:]}"
            )
        return done.stdout

    def await_startup(self, timeout: float = 120) -> None:
        _wait_port(self.port, timeout, self.nodename, self.process)
        self.ctl("await_startup", "--timeout", str(int(timeout)), timeout=timeout + 10)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the node's whole process group: a machine lost, not a shutdown."""
        _stop_group(self.process, signal.SIGKILL)

    def stop(self) -> None:
        if self.alive:
            with contextlib.suppress(Exception):
                self.ctl("stop", timeout=30, check=False)
        _stop_group(self.process)


@dataclass
class RabbitCluster:
    """Three nodes joined in one cluster: quorum queues get a replica on each.

    Without ``home``, the nodes' files go in a directory of their own under the system's
    temporary directory, removed at ``stop``: the ``rabbitmq`` user must reach them,
    and a pytest ``tmp_path`` is private to root (and reset to 0700 by a run beside)."""

    home: Path | None = None
    names: Sequence[str] = NODE_NAMES
    first_port: int = FIRST_AMQP_PORT
    first_dist_port: int = FIRST_DIST_PORT
    nodes: list[RabbitNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._own_home = self.home is None
        if self.home is None:
            self.home = Path(tempfile.mkdtemp(prefix="videoworker-rabbitmq-"))
            os.chmod(self.home, 0o755)
        peers = tuple(f"{name}@localhost" for name in self.names)
        self.nodes = [
            RabbitNode(name, self.first_port + i, self.first_dist_port + i, self.home / name, peers)
            for i, name in enumerate(self.names)
        ]

    @property
    def url(self) -> str:
        """kombu's failover list: a client whose node is lost goes on to the next."""
        return ";".join(node.url for node in self.nodes)

    def node(self, nodename: str) -> RabbitNode:
        return next(node for node in self.nodes if nodename in (node.nodename, node.name))

    def start(self) -> RabbitCluster:
        for node in self.nodes:
            node.prepare()
        # The first node forms the cluster; the others find it by classic_config, and
        # join by hand if they came up alone (a race classic discovery can lose).
        first, *rest = self.nodes
        first.start().await_startup()
        for node in rest:
            node.start()
        for node in rest:
            node.await_startup()
            if first.nodename not in self.running_nodes(node):
                node.ctl("stop_app")
                node.ctl("reset")
                node.ctl("join_cluster", first.nodename)
                node.ctl("start_app")
        running = self.running_nodes(first)
        missing = [n.nodename for n in self.nodes if n.nodename not in running]
        if missing:
            raise RuntimeError(f"nodes not in the cluster: {missing}")
        return self

    def running_nodes(self, node: RabbitNode) -> list[str]:
        import json

        status = json.loads(node.ctl("cluster_status", "--formatter", "json"))
        return list(status.get("running_nodes", []))

    def any_alive(self) -> RabbitNode:
        return next(node for node in self.nodes if node.alive)

    def queue_leader(self, queue: str, vhost: str = "/") -> str:
        """The node leading a quorum queue now (``rabbitmqctl list_queues leader``)."""
        out = self.any_alive().ctl(
            "list_queues", "-p", vhost, "name", "leader", "--no-table-headers", "--quiet"
        )
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return parts[1]
        raise LookupError(f"queue {queue} not found")

    def queue_members(self, queue: str, vhost: str = "/") -> list[str]:
        out = self.any_alive().ctl(
            "list_queues", "-p", vhost, "name", "members", "--no-table-headers", "--quiet"
        )
        for line in out.splitlines():
            name, _, rest = line.partition("\t")
            if name.strip() == queue:
                return [m.strip(" []\"'") for m in rest.split(",") if m.strip(" []\"'")]
        raise LookupError(f"queue {queue} not found")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        if self._own_home and self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)


# --- PgBouncer ----------------------------------------------------------------------------


@dataclass
class PgBouncer:
    """PgBouncer in transaction mode before a PostgreSQL server, trust auth on loopback.

    Its files go in a directory of its own under the system's temporary directory (the
    user it runs as must reach them: a pytest ``tmp_path`` is private to root)."""

    server_host: str = "127.0.0.1"
    server_port: int = 5432
    # 0: a free port, chosen at start.
    port: int = 0
    pool_size: int = 8
    max_client_conn: int = 400
    users: Sequence[str] = ("postgres",)
    process: subprocess.Popen[bytes] | None = None
    home: Path | None = None

    @staticmethod
    def installed() -> bool:
        return bool(shutil.which("pgbouncer")) or Path("/usr/sbin/pgbouncer").exists()

    @property
    def run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        for user in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(user)
                return user
        raise RuntimeError("PgBouncer refuses root, and neither postgres nor nobody exists")

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PgBouncer:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise RuntimeError("pgbouncer is not installed (apt-get install -y pgbouncer)")
        if self.port == 0:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        if not _free(self.port):
            raise RuntimeError(f"port {self.port} is taken")
        self.home = Path(tempfile.mkdtemp(prefix="videoworker-pgbouncer-"))
        os.chmod(self.home, 0o755)
        (self.home / "users.txt").write_text("".join(f'"{u}" ""\n' for u in self.users))
        (self.home / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self.server_host} port={self.server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.home / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            f"max_client_conn = {self.max_client_conn}\n"
            # psycopg sends none of the others; 'options' stays refused on purpose.
            "ignore_startup_parameters = extra_float_digits\n"
            "server_reset_query =\n"
            f"logfile = {self.home / 'pgbouncer.log'}\n"
        )
        user = self.run_as
        if user is not None:
            _owned_by(self.home, user)
        self.process = subprocess.Popen(
            [binary, str(self.home / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=(self.home / "stderr.log").open("ab"),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=user,
        )
        try:
            _wait_port(self.port, 20, "pgbouncer", self.process)
        except RuntimeError as exc:
            said = (self.home / "stderr.log").read_text(errors="replace")[-500:]
            self.stop()
            raise RuntimeError(f"{exc}: {said}") from None
        return self

    def stop(self) -> None:
        _stop_group(self.process)
        self.process = None
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None


# --- worker nodes and beats ------------------------------------------------------------------


@dataclass
class Node:
    """A ``celery worker`` (or ``celery beat``) of its own name, in its own session."""

    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def worker(
        cls,
        name: str,
        queues: str,
        env: dict[str, str],
        log_path: Path,
        concurrency: int = 2,
        pool: str = "prefork",
    ) -> Node:
        argv = [
            sys.executable, "-m", "celery", "-A", "worker", "worker",
            "-n", f"{name}@%h", "-Q", queues, "-c", str(concurrency), "-P", pool,
            "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        return cls(argv, env, log_path)

    @classmethod
    def beat(cls, env: dict[str, str], log_path: Path) -> Node:
        return cls([sys.executable, "-m", "celery", "-A", "worker", "beat", "--loglevel", "INFO"],
                   env, log_path)  # fmt: skip

    def start(self) -> Node:
        root = Path(__file__).resolve().parent.parent.parent
        self.process = subprocess.Popen(
            self.argv,
            cwd=root,
            env={**os.environ, **self.env},
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the node and its pool: the machine it ran on is gone."""
        _stop_group(self.process, signal.SIGKILL)

    def stop(self) -> None:
        _stop_group(self.process)


@contextlib.contextmanager
def scale_topology(
    *, rabbitmq: bool = True, pgbouncer: bool = True
) -> Iterator[tuple[RabbitCluster | None, PgBouncer | None]]:
    """Three RabbitMQ nodes and PgBouncer, stopped on the way out whatever happens."""
    cluster = RabbitCluster() if rabbitmq else None
    bouncer = PgBouncer() if pgbouncer else None
    try:
        if bouncer is not None:
            bouncer.start()
        if cluster is not None:
            cluster.start()
        yield cluster, bouncer
    finally:
        if cluster is not None:
            cluster.stop()
        if bouncer is not None:
            bouncer.stop()


def through_pgbouncer(direct_url: str, command: Sequence[str]) -> int:
    """Run ``command`` with the tests' database behind PgBouncer in transaction mode:
    ``TEST_DATABASE_URL`` through it, ``DB_POOLER=transaction``, the relay direct."""
    from sqlalchemy.engine import make_url

    server = make_url(direct_url)
    database, user = server.database or "videoworker", server.username or "postgres"
    import psycopg

    admin = f"postgresql://{user}@{server.host}:{server.port or 5432}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            conn.execute(f'CREATE DATABASE "{database}"')
    bouncer = PgBouncer(
        server_host=server.host or "127.0.0.1", server_port=server.port or 5432, users=(user,)
    ).start()
    try:
        env = {
            **os.environ,
            "TEST_DATABASE_URL": bouncer.url(database, user),
            "DB_POOLER": "transaction",
            "EVENTS_RELAY_DATABASE_URL": direct_url,
        }
        print(f"-- through PgBouncer 127.0.0.1:{bouncer.port} to {server.host}:{server.port}/"
              f"{database} (transaction mode; the relay direct)", flush=True)  # fmt: skip
        return subprocess.run(list(command), env=env, check=False).returncode
    finally:
        bouncer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``up``: start the topology, print its URLs, stop it on Ctrl-C. ``through-pgbouncer
    URL -- COMMAND``: run a command (the e2e suite) with its database behind PgBouncer."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m worker.dev.cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="three RabbitMQ nodes and PgBouncer until Ctrl-C")
    up.add_argument("--database", default="videoworker", help="database behind PgBouncer")
    run = sub.add_parser("through-pgbouncer", help="run a command through PgBouncer")
    run.add_argument("direct_url", help="the PostgreSQL database PgBouncer fronts")
    run.add_argument("run", nargs=argparse.REMAINDER, help="-- the command")
    args = parser.parse_args(argv)
    if args.command == "through-pgbouncer":
        return through_pgbouncer(args.direct_url, [a for a in args.run if a != "--"])
    with scale_topology() as (cluster, bouncer):
        assert cluster is not None and bouncer is not None
        direct = f"postgresql+psycopg://postgres@127.0.0.1:5432/{args.database}"
        print(f"CELERY_BROKER_URL='{cluster.url}'")
        print(f"DATABASE_URL={bouncer.url(args.database)}")
        print("DB_POOLER=transaction")
        print(f"EVENTS_RELAY_DATABASE_URL={direct}")
        print("(Ctrl-C stops everything)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
