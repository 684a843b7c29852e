"""Events: what the outbox triggers cost a writer, the relay's throughput, and how long
a committed change takes to reach the stream.

Three tables, on a database of its own (embedded PostgreSQL and Redis unless
``--database-url`` / ``--redis-url`` name servers):

- the writer's statements (insert and status update, 1 row and 1,000) with no
  trigger, with the figure triggers only (migrations 0008-0010), and with the figure and
  event triggers (0012, statement-level with transition tables); and, for comparison,
  with row-level event triggers doing the same (``FOR EACH ROW ... WHEN``), installed
  by this bench inside the rolled-back transaction of each sample;
- the relay draining a backlog of ``--backlog`` events to the stream: events a second;
- commit to stream: a writer commits one status change at a time while the relay runs,
  and a reader blocked on XREAD stamps each arrival.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench.dataset import Server
from bench.harness import Method, Table, bench, interleaved, log, parser, summary

DATABASE = "videoworker_bench_events"
LATENCY_TARGET_MS = 250.0
THROUGHPUT_TARGET = 5_000.0
FIGURE_TRIGGERS = ("videos_count_inserted", "videos_count_updated", "videos_count_deleted")
EVENT_TRIGGERS = ("videos_events_inserted", "videos_events_updated")
BLOCK = 5

# The same events written row by row, for the comparison only: never installed by a
# migration.
ROW_LEVEL = """
CREATE FUNCTION bench_events_row_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_outbox (type, subject, data)
    VALUES ('video.status_changed', NEW.id::text, jsonb_build_object(
        'video_id', NEW.id, 'mall_id', NEW.mall_id, 'pin_id', NEW.pin_id,
        'processing_status', jsonb_build_object('from', OLD.processing_status,
                                                'to', NEW.processing_status),
        'has_proxy', jsonb_build_object('from', OLD.proxy_path IS NOT NULL,
                                        'to', NEW.proxy_path IS NOT NULL),
        'has_thumbnail', jsonb_build_object('from', OLD.thumbnail_path IS NOT NULL,
                                            'to', NEW.thumbnail_path IS NOT NULL)));
    PERFORM pg_notify('videoworker_events', '');
    RETURN NULL;
END $$;
CREATE FUNCTION bench_events_row_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_outbox (type, subject, data)
    VALUES ('video.created', NEW.id::text, jsonb_build_object(
        'video_id', NEW.id, 'mall_id', NEW.mall_id, 'pin_id', NEW.pin_id,
        'processing_status', NEW.processing_status,
        'has_proxy', NEW.proxy_path IS NOT NULL,
        'has_thumbnail', NEW.thumbnail_path IS NOT NULL));
    PERFORM pg_notify('videoworker_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER bench_row_updated AFTER UPDATE ON videos FOR EACH ROW
    WHEN (OLD.processing_status IS DISTINCT FROM NEW.processing_status
          OR (OLD.proxy_path IS NULL) <> (NEW.proxy_path IS NULL)
          OR (OLD.thumbnail_path IS NULL) <> (NEW.thumbnail_path IS NULL))
    EXECUTE FUNCTION bench_events_row_updated();
CREATE TRIGGER bench_row_inserted AFTER INSERT ON videos FOR EACH ROW
    EXECUTE FUNCTION bench_events_row_inserted();
CREATE TRIGGER bench_invalidate AFTER DELETE ON videos FOR EACH ROW
    EXECUTE FUNCTION bench_events_row_inserted();
ALTER TABLE videos DISABLE TRIGGER bench_row_updated;
ALTER TABLE videos DISABLE TRIGGER bench_row_inserted;
ALTER TABLE videos DISABLE TRIGGER bench_invalidate;
"""
ROW_TRIGGERS = ("bench_row_updated", "bench_row_inserted")


def _only(*enabled: str) -> str:
    """Every variant runs the same ALTERs before its statement, enabling its own
    triggers and disabling the others, and one that always changes the catalogue (a
    DELETE trigger the statements never fire): each variant's statement then starts from
    the same invalidated plans, whichever triggers it changed."""
    every = (*FIGURE_TRIGGERS, *EVENT_TRIGGERS, *ROW_TRIGGERS)
    return "; ".join(
        [
            "ALTER TABLE videos ENABLE TRIGGER bench_invalidate",
            *(
                f"ALTER TABLE videos {'ENABLE' if t in enabled else 'DISABLE'} TRIGGER {t}"
                for t in every
            ),
        ]
    )


def prepare(url: str, videos: int) -> tuple[str, str]:
    from worker.adapters.postgres.migrate import upgrade

    with contextlib.redirect_stdout(sys.stderr):
        upgrade(url)
    mall, pin = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("INSERT INTO malls (id, name) VALUES (%s, 'Bench')", (mall,))
        conn.execute(
            "INSERT INTO camera_pins (id, mall_id, name) VALUES (%s, %s, 'P')", (pin, mall)
        )
        conn.execute(
            "INSERT INTO videos (id, mall_id, pin_id, original_filename, original_path,"
            " file_size_bytes, duration_seconds, processing_status, uploaded_at)"
            " SELECT gen_random_uuid(), %s, %s, 'clip.mp4', 'videos/x', 1000, 60, 'pending',"
            " now() - n * interval '1 minute' FROM generate_series(1, %s) n",
            (mall, pin, videos),
        )
        conn.execute(ROW_LEVEL)
        conn.execute("TRUNCATE event_outbox")
        conn.execute("VACUUM ANALYZE")
    return str(mall), str(pin)


def writers_table(url: str, mall: str, pin: str, samples: int) -> Table:
    conn = psycopg.connect(url.replace("+psycopg", ""))
    some = [str(v) for (v,) in conn.execute("SELECT id FROM videos LIMIT 1000")]
    conn.rollback()
    flip = (
        "processing_status = CASE processing_status"
        " WHEN 'pending' THEN 'processing' ELSE 'pending' END"
    )

    def insert(rows: int) -> Callable[[], Any]:
        return lambda: conn.execute(
            "INSERT INTO videos (id, mall_id, pin_id, original_filename, original_path,"
            " file_size_bytes, duration_seconds, uploaded_at)"
            " SELECT gen_random_uuid(), %s, %s, 'clip.mp4', 'videos/x', 1000, 60,"
            " now() - n * interval '1 minute' FROM generate_series(1, %s) n",
            (mall, pin, rows),
        )

    def update(assignment: str, rows: int) -> Callable[[], Any]:
        return (
            lambda: conn.execute(
                f"UPDATE videos SET {assignment} WHERE id = ANY(%s::uuid[])",  # noqa: S608
                (some[:rows],),
            )
        )

    statements = [
        ("insert 1 row", insert(1)),
        ("insert 1,000 rows", insert(1000)),
        ("update status, 1 row", update(flip, 1)),
        ("update status, 1,000 rows", update(flip, 1000)),
        ("update notes (no event), 1 row", update("operator_notes = 'seen'", 1)),
    ]
    variants = {
        "none": _only(),
        "figures": _only(*FIGURE_TRIGGERS),
        "figures+events": _only(*FIGURE_TRIGGERS, *EVENT_TRIGGERS),
        "figures+events by row": _only(*FIGURE_TRIGGERS, *ROW_TRIGGERS),
    }
    table = Table(
        f"writer's statement, p50 ms ({samples} samples; each rolled back)",
        ["statement", *variants, "events cost (stmt)", "events cost (row)"],
        number=lambda v: f"{v:.2f}",
    )
    for name, statement in statements:
        log(f"writers: {name}")
        methods = {
            variant: Method(
                statement,
                before=lambda setup=setup: conn.execute(setup),
                after=conn.rollback,
            )
            for variant, setup in variants.items()
        }
        timed = interleaved(methods, samples, block=BLOCK, warmup=2)
        p50 = {variant: timed[variant].summary().p50 for variant in variants}
        table.add(
            name,
            *p50.values(),
            f"+{p50['figures+events'] - p50['figures']:.2f}",
            f"+{p50['figures+events by row'] - p50['figures']:.2f}",
        )
    conn.close()
    table.notes.append(
        "events cost: figures+events less figures (the figure triggers' own cost is"
        " figures less none)"
    )
    return table


def make_relay(url: str, client: redis.Redis, stream: str, batch: int = 500):  # noqa: ANN201
    from worker.adapters.redis import RedisStreamSink
    from worker.adapters.relay import Relay

    return Relay(url, [RedisStreamSink(client, 168, stream=stream)], batch=batch, poll_seconds=1.0)


def throughput_table(url: str, client: redis.Redis, backlog: int) -> Table:
    table = Table(
        f"relay draining {backlog:,} events to the stream",
        ["batch", "events", "seconds", "events/s"],
    )
    best = 0.0
    for batch in (500, 2000):
        stream = f"bench:events:{uuid.uuid4().hex[:6]}"
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("TRUNCATE event_outbox")
            conn.execute(
                "INSERT INTO event_outbox (type, subject, data)"
                " SELECT 'video.status_changed', mod(n, 5000)::text,"
                " jsonb_build_object('video_id', gen_random_uuid(), 'n', n,"
                " 'processing_status', jsonb_build_object('from', 'pending', 'to', 'processing'))"
                " FROM generate_series(1, %s) n",
                (backlog,),
            )
            conn.execute("VACUUM ANALYZE event_outbox")
        relay = make_relay(url, client, stream, batch)
        log(f"throughput: batch {batch}")
        with psycopg.connect(relay.conninfo, autocommit=True, options="-c timezone=UTC") as conn:
            started = time.perf_counter()
            while relay.pass_once(conn):
                pass
            seconds = time.perf_counter() - started
        assert client.xlen(stream) == backlog, (client.xlen(stream), backlog)
        client.delete(stream)
        rate = backlog / seconds
        best = max(best, rate)
        table.add(str(batch), backlog, f"{seconds:.2f}", f"{rate:,.0f}")
    table.verdict(
        f"relay throughput >= {THROUGHPUT_TARGET:,.0f} events/s",
        best >= THROUGHPUT_TARGET,
        f"{best:,.0f} events/s",
    )
    return table


def latency_table(
    url: str, client: redis.Redis, redis_url: str, samples: int, rate: float
) -> Table:
    stream = f"bench:events:{uuid.uuid4().hex[:6]}"
    relay = make_relay(url, client, stream)
    thread = relay.start()
    arrivals: dict[str, float] = {}
    done = threading.Event()

    def read() -> None:
        reader = redis.Redis.from_url(redis_url)
        last = "$"
        while not done.is_set():
            reply = reader.xread({stream: last}, block=200, count=100)
            now = time.perf_counter()
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id
                    arrivals.setdefault(fields[b"subject"].decode(), now)

    reader_thread = threading.Thread(target=read, daemon=True)
    reader_thread.start()
    time.sleep(0.5)
    committed: dict[str, float] = {}
    log(f"latency: {samples} commits at {rate:g}/s")
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        ids = [str(v) for (v,) in conn.execute("SELECT id FROM videos LIMIT %s", (samples,))]
        conn.rollback()
        for video_id in ids:
            conn.execute(
                "UPDATE videos SET processing_status = CASE processing_status WHEN 'pending'"
                " THEN 'processing' ELSE 'pending' END WHERE id = %s",
                (video_id,),
            )
            conn.commit()
            committed[video_id] = time.perf_counter()
            time.sleep(1 / rate)
    deadline = time.monotonic() + 10
    while len(arrivals) < len(committed) and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    relay.stop.set()
    thread.join(5)
    reader_thread.join(2)
    client.delete(stream)
    lags = [(arrivals[k] - t) * 1000 for k, t in committed.items() if k in arrivals]
    figures = summary(lags)
    table = Table(
        f"commit to stream, {len(committed)} commits at {rate:g}/s, ms",
        ["", "p50", "p95", "p99", "max", "arrived"],
    )
    table.add(
        "relay (NOTIFY, 1 s poll)", figures.p50, figures.p95, figures.p99, figures.max, len(lags)
    )
    table.verdict(
        f"commit to stream p95 <= {LATENCY_TARGET_MS:.0f} ms, every event",
        figures.p95 <= LATENCY_TARGET_MS and len(lags) == len(committed),
        f"{figures.p95:.1f} ms, {len(lags)} of {len(committed)}",
    )
    return table


@bench("events")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("events", __doc__)
    options.add_argument("--database-url", default=None, help="a server to bench on (its DB)")
    options.add_argument("--redis-url", default=None, help="a Redis to bench on")
    options.add_argument("--samples", type=int, default=40)
    options.add_argument("--backlog", type=int, default=20_000)
    options.add_argument("--commits", type=int, default=300)
    options.add_argument("--rate", type=float, default=50.0, help="commits a second")
    args = options.parse_args(argv)

    embedded_redis = None
    with Server(args.database_url, None, False) as server:
        try:
            redis_url = args.redis_url
            if redis_url is None:
                from worker.dev.embedded import EmbeddedRedis, free_port

                embedded_redis = EmbeddedRedis(Path(tempfile.mkdtemp()), free_port(), durable=False)
                embedded_redis.start()
                redis_url = embedded_redis.url
            server.drop(DATABASE)
            server.create(DATABASE)
            url = server.url(DATABASE)
            mall, pin = prepare(url, max(1000, args.commits))
            client = redis.Redis.from_url(redis_url)
            writers_table(url, mall, pin, args.samples).print()
            throughput_table(url, client, args.backlog).print()
            latency_table(url, client, redis_url, args.commits, args.rate).print()
        finally:
            server.drop(DATABASE)
            if embedded_redis is not None:
                embedded_redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
