"""Request/reply bench: contract tasks through the real broker, worker and result backend.

What it measures: an outside caller (plain Celery, JSON, nothing of this project
imported) sends ``videos.sign_url`` and ``videos.get`` to a real worker process
(``celery -A worker worker --loglevel INFO -Q videos,videos.maintenance``, prefork,
2 children: the production command on this 2-core machine) and waits for the
envelope with ``AsyncResult.get``. The embedded stack (PostgreSQL, Redis, moto S3)
is started for the run and loaded with ``--videos`` rows by ``bench.dataset``; calls
rotate over 500 completed videos.

Two floors are measured in the same run, interleaved with the calls above in blocks
of 100 so that load from other jobs on the machine hits all of them alike:

* ``redis echo``: LPUSH a request, an echo process BRPOPs it and LPUSHes a reply that
  the caller BRPOPs (redis-py on both sides): the cost of the two hops alone.
* ``celery no-op``: ``bench.noop`` (``bench/noop_app.py``) on a second worker started
  with exactly the same settings, command line and signal handlers; it returns the
  smallest envelope. The difference between it and ``sign_url`` is what our task
  body (validation, Postgres, signing, the response model) costs.

How to read the tables:

* latency (1 caller, ``--calls`` per kind): p50/p95/p99 in milliseconds, the ratio of
  each p50 to the no-op's, and the CPU time per call of the answering process tree
  (echo process, or worker main process + pool children) and of the caller. On a
  shared 2-core machine wall time is mostly waiting for a core; CPU time is what the
  code costs. Targets: sign_url and get p50 <= no-op p50 + 0.3 ms; ``videos.list``
  (page 1 of 20 with its exact total, nine filter combinations rotated) p50 <= 2x
  ``videos.get``'s.
* throughput (closed loop, ``--seconds`` per round, 1 and 4 caller processes, kinds
  rotated each round, median of ``--rounds``): requests per second and the ratio to
  the no-op's at the same number of callers. Target: sign_url and get >= 0.9x no-op.
  The callers share the 2 cores with the worker, so 4 callers measure the machine too.
* task body in process (no broker, no pool): what a pool child spends on one
  ``sign_url``/``get`` message (validation, handler, envelope), the handler alone on
  the read path, the same handler in a transaction (as reads ran before), the no-op
  task called the same way, and the presigner alone. Target: handler CPU <= 300 us.
  ``--profile FILE`` writes a pyinstrument profile of the sign_url task call.

``--tune`` adds the investigation of what bounds the no-op floor. Each setting in
``VARIANTS`` is measured as an A/B pair: a baseline no-op worker (production
settings) and a variant no-op worker run at the same time on their own queues, and
every measurement alternates between them (blocks of 50 calls; throughput and drain
rounds A, B, A, B). Only the B/A ratios are meant to be read: sequential runs on
this machine drift by 2-3x within minutes, pairs do not (the ``A/A`` row shows the
method's own noise). ``drain`` is worker-side capacity without the caller's round
trip: ``--drain`` messages sent back to back by a broker-only caller, timed until
the queue and kombu's unacked set are empty. The caller-side variant (polling the
result key instead of waiting on pub/sub) pairs two callers on one worker. Last,
``videos.sign_url`` is paired on two real workers: production settings against
``RECOMMENDED`` (``--recommended`` to try others).

Run: ``python -m bench.roundtrip [--calls 2000] [--seconds 4] [--tune]``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.charts import CHARTS
from bench.common import (
    OWN_QUEUE,
    SpawnPool,
    Stack,
    WorkerProcess,
    WorkerSpec,
    outside_app,
    pick_videos,
    stopping,
)
from bench.harness import (
    US,
    Method,
    Samples,
    Table,
    bench,
    interleaved,
    log,
    parser,
    ratio,
    summary,
    tree_cpu,
    verdict,
)

ECHO_REQUESTS = "bench:echo:requests"
NOOP_QUEUE = "bench.noop"
ECHO = "redis echo"
KINDS = {  # label: (task name, queue)
    ECHO: (ECHO, ""),
    "celery no-op": ("bench.noop", NOOP_QUEUE),
    "videos.sign_url": ("videos.sign_url", "videos"),
    "videos.get": ("videos.get", "videos"),
    "videos.list": ("videos.list", "videos"),
}
# Targets, each against the no-op (or the get) measured in the same run.
OVER_NOOP_MS = 0.3
THROUGHPUT_OF_NOOP = 0.9
LIST_OVER_GET = 2.0
HANDLER_CPU_US = 300.0
BLOCK = 100
PAIR_BLOCK = 50
WARMUP = 50

STOCK_CONSUMER = "celery.worker.consumer:Consumer"
# Celery's "Received task" and "Task ... succeeded" lines: two log records per task.
TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")
# One change at a time against the production settings, on the no-op worker:
# (label, WorkerSpec changes, conf overrides).
VARIANTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("A/A: production vs itself (noise)", {}, {}),
    ("--loglevel WARNING (no INFO lines at all)", {"loglevel": "WARNING"}, {}),
    ("Celery per-task INFO lines off (2 loggers)", {"quiet_loggers": TASK_LOGGERS}, {}),
    ("worker_prefetch_multiplier=1", {}, {"worker_prefetch_multiplier": 1}),
    ("worker_prefetch_multiplier=16", {}, {"worker_prefetch_multiplier": 16}),
    ("worker_disable_rate_limits=True", {}, {"worker_disable_rate_limits": True}),
    (
        "--without-gossip --without-mingle --without-heartbeat",
        {"extra": ("--without-gossip", "--without-mingle", "--without-heartbeat")},
        {},
    ),
    ("--pool threads -c 4", {"pool": "threads", "concurrency": 4}, {}),
    ("--pool solo", {"pool": "solo", "concurrency": 1}, {}),
    ("--pool prefork -c 4", {"concurrency": 4}, {}),
    ("stock Consumer (no GuardedConsumer)", {}, {"worker_consumer": STOCK_CONSUMER}),
    ("task_acks_late=False", {}, {"task_acks_late": False}),
    (
        "broker ack_emulation=False",
        {},
        {"broker_transport_options": {"visibility_timeout": 3600, "ack_emulation": False}},
    ),
    ("task_ignore_result=True (drain only)", {}, {"task_ignore_result": True}),
]  # fmt: skip
# What the lead is advised to apply; paired against production on the real worker.
RECOMMENDED: dict[str, Any] = {
    "spec": {"quiet_loggers": TASK_LOGGERS},
    "conf": {},
}


# --- callers (also run in spawned processes: module-level functions only) ---------------


@dataclass(frozen=True)
class CallerConfig:
    broker_url: str
    backend_url: str
    video_ids: tuple[str, ...]
    getter: str = "pubsub"  # or "poll": GET the result key every 0.5 ms
    # videos.list kwargs (JSON), rotated: page 1 of 20 with its exact total.
    list_filters: tuple[str, ...] = ("{}",)


class Caller:
    """One process's connections: a plain-Celery app and a redis-py client."""

    def __init__(self, config: CallerConfig) -> None:
        import os

        import redis

        self.config = config
        self.app = outside_app(config.broker_url, config.backend_url)
        self.redis = redis.Redis.from_url(config.broker_url)
        self.reply_key = f"bench:echo:reply:{os.getpid()}"
        self.ids = itertools.cycle(config.video_ids)
        self.filters = itertools.cycle([json.loads(f) for f in config.list_filters])

    def kwargs(self, name: str) -> dict[str, Any]:
        if name == "videos.sign_url":
            return {"video_id": next(self.ids), "target": "proxy"}
        if name == "videos.get":
            return {"video_id": next(self.ids)}
        if name == "videos.list":
            return next(self.filters)
        return {}

    def call(self, name: str, queue: str, kwargs: dict[str, Any] | None = None) -> Any:
        """One request and its answer (the envelope); ``kwargs``: the kind's own
        rotation when not given."""
        if name == ECHO:
            self.redis.lpush(ECHO_REQUESTS, self.reply_key)
            if self.redis.brpop(self.reply_key, timeout=10) is None:
                raise RuntimeError("echo server did not answer")
            return None
        sent = self.kwargs(name) if kwargs is None else kwargs
        result = self.app.send_task(name, kwargs=sent, queue=queue)
        envelope = self._poll(result) if self.config.getter == "poll" else result.get(timeout=15)
        if not (isinstance(envelope, dict) and envelope.get("ok")):
            raise RuntimeError(f"{name}({sent}) answered {envelope!r}")
        return envelope

    def _poll(self, result: Any) -> Any:
        from celery import states

        backend = self.app.backend
        backend.result_consumer.cancel_for(result.id)  # no pub/sub: read the key only
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            meta = backend.get_task_meta(result.id, cache=False)
            if meta["status"] in states.READY_STATES:
                return meta["result"]
            time.sleep(0.0005)
        raise TimeoutError(result.id)

    def timed(self, name: str, queue: str, kwargs: dict[str, Any] | None = None) -> float:
        started = time.perf_counter()
        self.call(name, queue, kwargs)
        return time.perf_counter() - started

    def stop(self) -> None:
        gc.collect()  # pending AsyncResults unsubscribe while Redis is still up
        self.app.close()
        self.redis.close()


_callers: dict[CallerConfig, Caller] = {}


def closed_loop(job: tuple[CallerConfig, str, str, float, float]) -> list[float]:
    """One caller process: call back to back from ``start_at`` for ``seconds``."""
    config, name, queue, start_at, seconds = job
    caller = _callers.get(config) or _callers.setdefault(config, Caller(config))
    for _ in range(5):
        caller.call(name, queue)  # warm this process's connections
    time.sleep(max(0.0, start_at - time.time()))
    end = time.perf_counter() + seconds
    latencies = []
    while time.perf_counter() < end:
        latencies.append(caller.timed(name, queue))
    return latencies


def throughput(
    pool: Any, config: CallerConfig, name: str, queue: str, callers: int, seconds: float
) -> tuple[float, list[float]]:
    start_at = time.time() + 0.3
    results = pool.map(closed_loop, [(config, name, queue, start_at, seconds)] * callers, 1)
    latencies = [x for part in results for x in part]
    return len(latencies) / seconds, latencies


def echo_server(url: str) -> None:
    """The Redis floor's other side: BRPOP a reply key, LPUSH to it, until STOP."""
    import redis

    client = redis.Redis.from_url(url)
    while True:
        item = client.brpop(ECHO_REQUESTS, timeout=1)
        if item is None:
            continue
        if item[1] == b"STOP":
            return
        client.lpush(item[1], b"1")


class EchoServer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.process: Any = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> EchoServer:
        self.process = multiprocessing.get_context("spawn").Process(
            target=echo_server, args=(self.url,), daemon=True
        )
        self.process.start()
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        import redis

        redis.Redis.from_url(self.url).lpush(ECHO_REQUESTS, b"STOP")
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.process = None


def drain_rate(broker_url: str, queue: str, name: str, kwargs: dict, messages: int) -> float:
    """Messages per second the worker gets through, sent back to back by one caller.

    The caller has no result backend to wait on, so it neither subscribes nor waits;
    the worker still stores every result (unless the variant says otherwise).
    """
    import redis

    app = outside_app(broker_url, None)
    # Skip the per-task SUBSCRIBE (the environment names a backend, and plain Celery
    # prefers it over any URL or setting given to the app).
    app.backend.on_task_call = lambda *args, **kw: None
    client = redis.Redis.from_url(broker_url)
    try:
        started = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for _ in range(messages):
                app.send_task(name, kwargs=kwargs, queue=queue, producer=producer)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            # kombu's Redis transport keeps delivered, unacknowledged messages in
            # "unacked"; with acks_late a message leaves it when its task is done.
            with client.pipeline(transaction=False) as pipe:
                pipe.llen(queue)
                pipe.hlen("unacked")
                queued, unacked = pipe.execute()
            if queued == 0 and unacked == 0:
                return messages / (time.perf_counter() - started)
            time.sleep(0.005)
        raise TimeoutError("queue did not drain")
    finally:
        app.close()
        client.close()


def ms(seconds: float) -> float:
    return seconds * 1000


@dataclass(frozen=True)
class Landmarks:
    """Where the lists look in the loaded catalog: the busiest mall and pin, the two
    busiest malls, and date ranges whose bounds are not midnights."""

    mall: str
    pin: str
    malls: list[str]
    # ~180 days, and ~30 days, ending some weeks before the newest upload.
    dates: dict[str, str]
    month: dict[str, str]


def landmarks(database_url: str) -> Landmarks:
    import psycopg

    from bench.dataset import conninfo

    with psycopg.connect(conninfo(database_url)) as conn:
        mall, pin = conn.execute(
            "SELECT mall_id, pin_id FROM videos GROUP BY mall_id, pin_id"
            " ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        malls = [
            str(row[0])
            for row in conn.execute(
                "SELECT mall_id FROM videos GROUP BY mall_id ORDER BY count(*) DESC LIMIT 2"
            )
        ]
        newest = conn.execute("SELECT max(uploaded_at) FROM videos").fetchone()[0]

    def span(start: timedelta, end: timedelta) -> dict[str, str]:
        return {
            "uploaded_after": (newest - start).isoformat(),
            "uploaded_before": (newest - end).isoformat(),
        }

    return Landmarks(
        str(mall),
        str(pin),
        malls,
        dates=span(timedelta(days=200, hours=5), timedelta(days=20, hours=7)),
        month=span(timedelta(days=45, hours=3), timedelta(days=15, hours=9)),
    )


def list_filters(database_url: str) -> tuple[str, ...]:
    """videos.list kwargs a caller rotates over: each filter the contract allows without
    a token (the scope is the access tests'), alone and combined, on the busiest mall
    and pin, and a date range whose bounds are not midnights."""
    at = landmarks(database_url)
    combos: list[dict[str, Any]] = [
        {},
        {"processing_status": "completed"},
        {"has_proxy": True},
        {"mall_id": at.mall},
        {"pin_id": at.pin},
        {"mall_id": at.mall, "processing_status": "completed", "has_proxy": True},
        at.dates,
        {"mall_id": at.mall, **at.dates},
        {"trashed": True},
    ]
    return tuple(json.dumps(c) for c in combos)


JWT_SECRET = "bench-secret-for-hs256-of-32-bytes!!"
COMBINATION_CALLS = 100
COMBINATION_BLOCK = 20


def caller_token(role: str, **scope: list[str]) -> str:
    """A token as another service mints one (PyJWT, HS256): nothing of ours imported."""
    import jwt

    claims = {"sub": f"bench-{role}", "role": role, "aud": "videoworker", **scope}
    claims["exp"] = int(time.time()) + 3600
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def combinations(database_url: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, token, videos.list kwargs) for each kind of filter the contract allows,
    scope, trash and ``q`` included: page 1 of 20 with its exact total."""
    at = landmarks(database_url)
    mall, pin, month = at.mall, at.pin, at.month
    admin = caller_token("admin")
    operator = caller_token("operator", malls=at.malls)
    tenant = caller_token("tenant", pins=[pin])
    return [
        ("admin, no filter", admin, {}),
        ("admin, status", admin, {"processing_status": "completed"}),
        ("admin, has_proxy", admin, {"has_proxy": True}),
        ("admin, no proxy", admin, {"has_proxy": False}),
        ("admin, mall", admin, {"mall_id": mall}),
        ("admin, pin", admin, {"pin_id": pin}),
        (
            "admin, mall + status + proxy",
            admin,
            {"mall_id": mall, "processing_status": "completed", "has_proxy": True},
        ),
        ("admin, date range", admin, at.dates),
        ("admin, mall + month", admin, {"mall_id": mall, **month}),
        ("admin, trash", admin, {"trashed": True}),
        ("operator (2 malls)", operator, {}),
        ("operator + status + range", operator, {"processing_status": "failed", **month}),
        ("operator, trash", operator, {"trashed": True}),
        ("tenant (1 pin)", tenant, {}),
        ("tenant + no proxy + month", tenant, {"has_proxy": False, **month}),
        ("admin, q medium", admin, {"q": "shoplifting"}),
        ("admin, q notes", admin, {"q": "insurance"}),
        ("admin, q broad", admin, {"q": "entrance"}),
        ("admin, q + mall", admin, {"q": "shoplifting", "mall_id": mall}),
        ("admin, q + trash", admin, {"q": "shoplifting", "trashed": True}),
        ("operator, q", operator, {"q": "shoplifting"}),
        ("tenant, q", tenant, {"q": "entrance"}),
    ]


def combination_table(stack: Stack, config: CallerConfig, args: argparse.Namespace) -> None:
    """Each combination's ``videos.list`` against ``videos.get``, end to end, on a worker
    with AUTH_MODE=jwt (a scope needs a token), interleaved in blocks of 20 calls."""
    caller = Caller(config)
    env = {**stack.env, "AUTH_MODE": "jwt", "AUTH_JWT_SECRET": JWT_SECRET}
    worker = WorkerProcess(WorkerSpec(), env, stack.log_path("worker-jwt"))
    cases = combinations(stack.database_url)
    admin = cases[0][1]
    ids = itertools.cycle(config.video_ids)

    def get() -> object:
        return caller.call("videos.get", "videos", {"video_id": next(ids), "auth": admin})

    calls = min(args.calls, COMBINATION_CALLS)
    with stopping(caller, worker):
        log(f"videos.list per combination: {len(cases)} x {calls} calls, against videos.get")
        worker.start()
        worker.wait_ready(ping(caller.app, "videos.stats", {"auth": admin}, "videos"))
        table = Table(
            f"videos.list per filter combination, page 1 of 20 + exact total, vs videos.get,"
            f" end to end, {calls} calls each, AUTH_MODE=jwt (ms)",
            ["combination", "total", "list p50", "list p95", "get p50", "list / get", "ok"],
        )
        met = 0
        for label, token, kwargs in cases:
            sent = {**kwargs, "auth": token}
            total = caller.call("videos.list", "videos", sent)["data"]["total"]
            timed = interleaved(
                {
                    "list": lambda sent=sent: caller.call("videos.list", "videos", sent),
                    "get": get,
                },
                calls,
                block=COMBINATION_BLOCK,
                warmup=3,
            )
            ours, base = timed["list"].summary(), timed["get"].summary()
            within = ours.p50 <= LIST_OVER_GET * base.p50
            met += within
            table.add(
                label,
                f"{total:,}",
                ours.p50,
                ours.p95,
                base.p50,
                ratio(ours.p50, base.p50),
                "yes" if within else "NO",
            )
        table.verdict(
            f"every combination's videos.list p50 <= {LIST_OVER_GET:.0f}x videos.get p50",
            met == len(cases),
            f"{met} of {len(cases)}",
        )
        table.print()


def ping(app: Any, name: str, kwargs: dict[str, Any], queue: str) -> Callable[[], None]:
    def call() -> None:
        app.send_task(name, kwargs=kwargs, queue=queue).get(timeout=3)

    return call


# --- the main tables -------------------------------------------------------------------------


def latency_samples(caller: Caller, calls: int, servers: dict[str, int]) -> dict[str, Samples]:
    """Latency samples per kind (ms), in rotating blocks of ``BLOCK`` calls, each block
    charging the caller's CPU and the answering process tree's to its kind."""
    methods = {
        kind: Method(lambda n=name, q=queue: caller.call(n, q), server=servers[kind])
        for kind, (name, queue) in KINDS.items()
    }
    return interleaved(methods, calls, block=BLOCK, warmup=WARMUP)


def print_latency(samples: dict[str, Samples], args: argparse.Namespace) -> None:
    stats = {kind: entry.summary() for kind, entry in samples.items()}
    noop = stats["celery no-op"]
    table = Table(
        f"request/reply latency, 1 caller, {args.calls} calls each (ms)",
        ["call", "p50", "p95", "p99", "max", "p50 vs no-op", "p50 - no-op",
         "server CPU us/call", "caller CPU us/call"],
        conditions=("loopback",),
    )  # fmt: skip
    for kind in KINDS:
        s = stats[kind]
        table.add(
            kind,
            s.p50,
            s.p95,
            s.p99,
            s.max,
            ratio(s.p50, noop.p50),
            s.p50 - noop.p50,
            round(samples[kind].cpu_us(server=True)),
            round(samples[kind].cpu_us()),
        )
    table.notes.append(
        "server CPU: the answering process tree (echo process; worker main + pool children)"
    )
    for kind in ("videos.sign_url", "videos.get"):
        s = stats[kind]
        table.verdict(
            f"{kind} p50 <= no-op p50 + {OVER_NOOP_MS} ms",
            s.p50 <= noop.p50 + OVER_NOOP_MS,
            f"{s.p50 - noop.p50:+.2f} ms",
        )
    listed, got = stats["videos.list"], stats["videos.get"]
    table.verdict(
        f"videos.list (page 1 + exact total, filters rotated) p50 <= {LIST_OVER_GET:g}x "
        "videos.get p50",
        listed.p50 <= LIST_OVER_GET * got.p50,
        f"{listed.p50 / got.p50:.2f}x",
    )
    table.print()
    if args.chart is not None:
        from bench.charts import bars

        kinds = list(KINDS)
        drawn = bars(
            args.chart / "roundtrip.png",
            f"request/reply latency through broker and worker, 1 caller, {args.calls} calls",
            kinds,
            {
                "p50": [stats[kind].p50 for kind in kinds],
                "p95": [stats[kind].p95 for kind in kinds],
            },
            unit="ms",
            target=noop.p50 + OVER_NOOP_MS,
            target_label=f"target for get and sign_url p50: no-op + {OVER_NOOP_MS} ms",
        )
        print(f"chart written to {drawn}\n", flush=True)


@dataclass
class Rates:
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")


def print_throughput(
    rates: dict[tuple[str, int], Rates], caller_counts: list[int], args: argparse.Namespace
) -> None:
    table = Table(
        f"throughput, closed loop, median of {args.rounds} x {args.seconds:g} s "
        "(requests/s; latency under load in ms)",
        ["call", "callers", "req/s", "vs no-op", "p50", "p99"],
        conditions=("loopback",),
    )
    for callers in caller_counts:
        noop = rates[("celery no-op", callers)].rate
        for kind in KINDS:
            entry = rates[(kind, callers)]
            s = summary([ms(x) for x in entry.latencies])
            table.add(kind, str(callers), entry.rate, ratio(entry.rate, noop), s.p50, s.p99)
    for callers in caller_counts:
        noop = rates[("celery no-op", callers)].rate
        for kind in ("videos.sign_url", "videos.get"):
            rate = rates[(kind, callers)].rate
            table.verdict(
                f"{callers} caller(s): {kind} >= {THROUGHPUT_OF_NOOP}x no-op throughput",
                rate >= THROUGHPUT_OF_NOOP * noop,
                f"{rate / noop:.2f}x",
            )
    table.print()


# --- A/B pairs (--tune) ------------------------------------------------------------------------


@dataclass
class Side:
    """One half of a pair: a worker (or a caller) and what it is measured on."""

    spec: WorkerSpec
    queue: str
    caller: Caller
    replies: bool = True
    worker: WorkerProcess | None = None
    samples: Samples = field(default_factory=Samples)
    rates: list[float] = field(default_factory=list)
    drains: list[float] = field(default_factory=list)
    drain_cpu: float = 0.0

    def result(self, drained: int) -> dict[str, float]:
        s = self.samples.summary()
        nan = float("nan")
        return {
            "p50": s.p50 if self.replies else nan,
            "p99": s.p99 if self.replies else nan,
            "cpu": self.samples.cpu_us(server=True) if self.replies else nan,
            "rate": statistics.median(self.rates) if self.rates else nan,
            "drain": statistics.median(self.drains),
            "drain_cpu": self.drain_cpu / drained * 1e6,
        }


def run_pair(
    stack: Stack, pool: SpawnPool, a: Side, b: Side, name: str, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float]]:
    """Measure two sides at the same time, alternating every measurement."""
    shared = a.spec is b.spec and a.queue == b.queue  # caller-side pair: one worker
    a.worker = WorkerProcess(a.spec, stack.env, stack.log_path("pair-a"))
    b.worker = a.worker if shared else WorkerProcess(b.spec, stack.env, stack.log_path("pair-b"))
    sides = (a, b)
    with stopping(a.worker, b.worker):
        a.worker.start()
        if not shared:
            b.worker.start()
        for side in sides:
            if side.replies:
                side.worker.wait_ready(ping(side.caller.app, name, {}, side.queue))
            else:
                drain_rate(stack.broker_url, side.queue, name, {}, 20)  # worker up, warm
        replying = {
            str(i): Method(lambda s=side: s.caller.call(name, s.queue), server=side.worker.pid)
            for i, side in enumerate(sides)
            if side.replies
        }
        timed = interleaved(replying, args.tune_calls, block=PAIR_BLOCK, warmup=WARMUP)
        for key, samples in timed.items():
            sides[int(key)].samples = samples
        for _ in range(args.tune_rounds):
            for side in sides:
                if side.replies:
                    rate, _ = throughput(
                        pool.pool, side.caller.config, name, side.queue, 4, args.seconds
                    )
                    side.rates.append(rate)
            for side in sides:
                before = tree_cpu(side.worker.pid)
                kwargs = side.caller.kwargs(name)
                side.drains.append(
                    drain_rate(stack.broker_url, side.queue, name, kwargs, args.drain)
                )
                side.drain_cpu += tree_cpu(side.worker.pid) - before
    drained = args.drain * args.tune_rounds
    return a.result(drained), b.result(drained)


def pair_table(title: str, rows: list[tuple[str, dict, dict]], args: argparse.Namespace) -> None:
    table = Table(
        title,
        ["variant (B) vs production (A)", "A p50", "B p50", "B/A p50", "A CPU us", "B CPU us",
         "B/A CPU", "A req/s", "B req/s", "B/A req/s", "A drain/s", "B drain/s", "B/A drain",
         "B/A CPU/msg"],
        conditions=("loopback",),
    )  # fmt: skip
    for label, a, b in rows:
        table.add(
            label,
            a["p50"],
            b["p50"],
            ratio(b["p50"], a["p50"]),
            round(a["cpu"]) if a["cpu"] == a["cpu"] else "-",
            round(b["cpu"]) if b["cpu"] == b["cpu"] else "-",
            ratio(b["cpu"], a["cpu"]),
            a["rate"],
            b["rate"],
            ratio(b["rate"], a["rate"]),
            a["drain"],
            b["drain"],
            ratio(b["drain"], a["drain"]),
            ratio(b["drain_cpu"], a["drain_cpu"]),
        )
    table.notes += [
        f"p50 in ms over {args.tune_calls} calls, 1 caller; CPU: worker main + children per "
        f"call; req/s: 4 callers x {args.seconds:g} s; drain: {args.drain} queued messages; "
        f"median of {args.tune_rounds} alternating rounds",
        "B/A < 1.00x is better for p50 and CPU, > 1.00x is better for req/s and drain",
    ]
    table.print()


def tune(stack: Stack, pool: SpawnPool, config: CallerConfig, args: argparse.Namespace) -> None:
    rows: list[tuple[str, dict, dict]] = []
    callers: list[Caller] = []

    def caller(getter: str = "pubsub") -> Caller:
        made = Caller(CallerConfig(config.broker_url, config.backend_url, config.video_ids, getter))
        callers.append(made)
        return made

    wanted = [w.strip() for w in args.only.split(",")] if args.only else None
    variants = [v for v in VARIANTS if wanted is None or any(w in v[0] for w in wanted)]
    try:
        for label, spec_changes, conf in variants:
            log(f"pair: {label}")
            a = Side(WorkerSpec(app="bench.noop_app:app", queues="bench.a"), "bench.a", caller())
            spec = WorkerSpec(app="bench.noop_app:app", queues="bench.b", conf=conf, **spec_changes)
            b = Side(spec, "bench.b", caller(), replies=not conf.get("task_ignore_result"))
            rows.append((label, *run_pair(stack, pool, a, b, "bench.noop", args)))
        poll_label = "caller: poll result key / 0.5 ms"
        if wanted is None or any(w in poll_label for w in wanted):
            log("pair: caller polls the result key vs pub/sub")
            spec = WorkerSpec(app="bench.noop_app:app", queues="bench.a")
            a, b = Side(spec, "bench.a", caller()), Side(spec, "bench.a", caller("poll"))
            rows.append((poll_label, *run_pair(stack, pool, a, b, "bench.noop", args)))
        if rows:
            pair_table(
                "what bounds the no-op floor: A/B pairs, one setting changed in B",
                rows,
                args,
            )

        recommended = json.loads(args.recommended) if args.recommended else RECOMMENDED
        log(f"pair: videos.sign_url, production vs {recommended}")
        a = Side(WorkerSpec(queues="videos.a", conf=OWN_QUEUE), "videos.a", caller())
        spec_b = WorkerSpec(
            queues="videos.b",
            conf={**OWN_QUEUE, **recommended.get("conf", {})},
            **{
                k: tuple(v) if k in ("extra", "quiet_loggers") else v
                for k, v in recommended.get("spec", {}).items()
            },
        )
        b = Side(spec_b, "videos.b", caller())
        result = run_pair(stack, pool, a, b, "videos.sign_url", args)
        pair_table(
            "videos.sign_url on two real workers: production (A) vs recommended (B): "
            f"{json.dumps(recommended)}",
            [("recommended", *result)],
            args,
        )
    finally:
        for made in callers:
            made.stop()


ANALYTICS_TARGET = 1.03


def analytics_pair(
    stack: Stack, pool: SpawnPool, config: CallerConfig, args: argparse.Namespace
) -> int:
    """``videos.sign_url`` on two real workers side by side, alternating every block:
    analytics off (A) and on (B, as deployed). Target: B's p50 within 3% of A's."""
    callers = [Caller(config), Caller(config)]
    try:
        a = Side(
            WorkerSpec(queues="videos.a", conf=OWN_QUEUE, env={"ANALYTICS_ENABLED": "false"}),
            "videos.a",
            callers[0],
        )
        b = Side(WorkerSpec(queues="videos.b", conf=OWN_QUEUE), "videos.b", callers[1])
        log("pair: videos.sign_url, analytics off (A) vs on (B)")
        off, on = run_pair(stack, pool, a, b, "videos.sign_url", args)
    finally:
        for made in callers:
            made.stop()
    pair_table(
        "videos.sign_url on two real workers: analytics off (A) vs on (B)",
        [("ANALYTICS_ENABLED (B)", off, on)],
        args,
    )
    ratio_p50 = on["p50"] / off["p50"]
    print(
        verdict(
            "sign_url p50 with analytics on within 3% of off",
            ratio_p50 <= ANALYTICS_TARGET,
            f"{on['p50']:.2f} vs {off['p50']:.2f} ms, {ratio_p50:.3f}x",
        )
    )
    return 0


# --- the bench ---------------------------------------------------------------------------------


@bench("roundtrip")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("roundtrip", __doc__)
    options.add_argument("--calls", type=int, default=2000, help="latency samples per kind")
    options.add_argument("--seconds", type=float, default=4.0, help="per throughput round")
    options.add_argument("--rounds", type=int, default=3, help="throughput rounds (median)")
    options.add_argument("--callers", default="1,4", help="caller processes for throughput")
    options.add_argument("--videos", type=int, default=10_000, help="catalog rows to load")
    options.add_argument("--tune", action="store_true", help="also run the A/B settings pairs")
    options.add_argument("--tune-only", action="store_true", help="only the A/B pairs")
    options.add_argument("--tune-calls", type=int, default=400, help="latency samples per side")
    options.add_argument("--tune-rounds", type=int, default=2, help="throughput/drain rounds")
    options.add_argument("--drain", type=int, default=400, help="messages per drain round")
    options.add_argument("--recommended", help="JSON {spec: {...}, conf: {...}} to pair")
    options.add_argument(
        "--only", help="comma-separated substrings: run only the variants whose label has one"
    )
    options.add_argument(
        "--analytics",
        action="store_true",
        help="only the pair: videos.sign_url with analytics off (A) and on (B)",
    )
    options.add_argument("--profile", type=Path, help="write a profile of the task body here")
    options.add_argument(
        "--chart",
        type=Path,
        nargs="?",
        const=CHARTS,
        help=f"draw the latency table as roundtrip.png in this folder (default {CHARTS})",
    )
    options.add_argument(
        "--no-combinations",
        action="store_true",
        help="skip videos.list per filter combination (scope, trash and q) against get",
    )
    args = options.parse_args(argv)
    if args.tune_only:
        args.tune = True
        args.seconds = min(args.seconds, 3.0)
    caller_counts = [int(c) for c in args.callers.split(",")]

    from bench.dataset import load

    with Stack() as stack:
        load(stack.database_url, args.videos, log=False, trashed=0.01)
        config = CallerConfig(
            stack.broker_url,
            stack.backend_url,
            tuple(pick_videos(stack.database_url)),
            list_filters=list_filters(stack.database_url),
        )
        pool = SpawnPool(max(caller_counts + [4]))
        with stopping(pool):
            if args.analytics:
                return analytics_pair(stack, pool, config, args)
            if not args.tune_only:
                main_tables(stack, pool, config, caller_counts, args)
                if not args.no_combinations:
                    combination_table(stack, config, args)
            if args.tune:
                tune(stack, pool, config, args)
    return 0


def task_body(config: CallerConfig, calls: int, profile: Path | None = None) -> None:
    """What the task body costs in process, without broker or pool (third table).

    ``task call`` runs the Celery task object locally (``ContractTask.respond``:
    kwargs validation, handler, envelope); ``handler`` calls the handler alone, on the
    read path (a read-only unit of work: autocommit, no pre-ping, the statement on the
    process's held connection). ``pooled (SQLAlchemy)`` runs it through SQLAlchemy on a
    pooled autocommit connection, as the read path did before. ``in a transaction``
    runs the same handler on the write path's unit of work (BEGIN ... ROLLBACK around
    the SELECT), which is how every read ran before. ``bench.noop`` is the no-op task
    called the same way: the floor of a task call in process. ``profile``: a
    pyinstrument profile of ``calls`` sign_url task calls, written there as text.
    """
    import dataclasses

    import handlers
    from bench.noop_app import noop
    from schemas import GetVideo, SignUrl
    from tasks.entrypoints import ENTRY_POINTS
    from worker.adapters.postgres.uow import PostgresUnitOfWork, reading
    from worker.runtime.app import get_deps

    sign_url, get_video = ENTRY_POINTS["videos.sign_url"], ENTRY_POINTS["videos.get"]
    deps = get_deps()
    transactional = dataclasses.replace(deps, read=None)
    # The read path before the held connection: autocommit, through SQLAlchemy's pool.
    reader = reading(deps.uow().engine)
    pooled = dataclasses.replace(deps, read=lambda: PostgresUnitOfWork(reader))
    ids = itertools.cycle(config.video_ids)
    variants: dict[str, Callable[[], object]] = {
        "bench.noop task call": lambda: noop(),
        "videos.sign_url task call": lambda: sign_url(video_id=next(ids)),
        "sign_url handler": lambda: handlers.sign_url(SignUrl(video_id=next(ids)), deps),
        "sign_url handler, pooled (SQLAlchemy)": lambda: handlers.sign_url(
            SignUrl(video_id=next(ids)), pooled
        ),
        "sign_url handler, in a transaction": lambda: handlers.sign_url(
            SignUrl(video_id=next(ids)), transactional
        ),
        "videos.get task call": lambda: get_video(video_id=next(ids)),
        "get handler": lambda: handlers.get_video(GetVideo(video_id=next(ids)), deps),
        "get handler, pooled (SQLAlchemy)": lambda: handlers.get_video(
            GetVideo(video_id=next(ids)), pooled
        ),
        "get handler, in a transaction": lambda: handlers.get_video(
            GetVideo(video_id=next(ids)), transactional
        ),
        "presign_get alone": lambda: deps.store.presign_get("videos/m/proxy/v.mp4", 3600),
    }
    timed = interleaved(variants, calls, block=BLOCK, warmup=WARMUP, unit=US)
    table = Table(
        f"task body in process, no broker ({calls} calls each, interleaved; microseconds)",
        ["call", "p50", "p95", "p99", "CPU/call"],
    )
    per_call = {name: samples.cpu_us() for name, samples in timed.items()}
    for name, samples in timed.items():
        s = samples.summary()
        table.add(name, s.p50, s.p95, s.p99, per_call[name])
    table.notes.append(
        "task call = what a pool child runs for the message: validation, handler, envelope"
    )
    for handler in ("sign_url handler", "get handler"):
        table.verdict(
            f"{handler} CPU <= {HANDLER_CPU_US:.0f} us",
            per_call[handler] <= HANDLER_CPU_US,
            f"{per_call[handler]:.0f} us",
        )
    table.print()
    if profile is not None:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0001)
        profiler.start()
        for _ in range(calls):
            sign_url(video_id=next(ids))
        profiler.stop()
        profile.write_text(profiler.output_text(unicode=False, color=False))
        print(f"profile of {calls} videos.sign_url task calls written to {profile}\n")


def main_tables(
    stack: Stack,
    pool: SpawnPool,
    config: CallerConfig,
    caller_counts: list[int],
    args: argparse.Namespace,
) -> None:
    caller = Caller(config)
    real = WorkerProcess(WorkerSpec(), stack.env, stack.log_path("worker"))
    noop = WorkerProcess(
        WorkerSpec(app="bench.noop_app:app", queues=NOOP_QUEUE), stack.env, stack.log_path("noop")
    )
    echo = EchoServer(stack.broker_url)
    with stopping(caller, echo, real, noop):
        log("starting the worker, the no-op worker and the echo server")
        echo.start()
        real.start()
        noop.start()
        real.wait_ready(ping(caller.app, "videos.stats", {}, "videos"))
        noop.wait_ready(ping(caller.app, "bench.noop", {}, NOOP_QUEUE))

        log(f"latency: {args.calls} calls per kind, interleaved")
        servers = {
            ECHO: echo.pid,
            "celery no-op": noop.pid,
            "videos.sign_url": real.pid,
            "videos.get": real.pid,
            "videos.list": real.pid,
        }
        print_latency(latency_samples(caller, args.calls, servers), args)

        log("throughput")
        rates: dict[tuple[str, int], Rates] = {}
        for _ in range(args.rounds):
            for callers in caller_counts:
                for kind, (name, queue) in KINDS.items():
                    rate, latencies = throughput(
                        pool.pool, config, name, queue, callers, args.seconds
                    )
                    entry = rates.setdefault((kind, callers), Rates())
                    entry.rates.append(rate)
                    entry.latencies.extend(latencies)
        print_throughput(rates, caller_counts, args)

    log("task body in process")
    task_body(config, min(args.calls, 2000), args.profile)


if __name__ == "__main__":
    sys.exit(main())
