"""Analytics bench: the read, the access log parser, and what counting costs a signing.

* ``videos.analytics`` for one mall over 90 days: ``video_daily_analytics`` filled with
  ``--active`` videos of the mall with figures every day (of ``--videos`` in all, the
  rest in other malls), then the handler timed through the real room (p95, target
  <= 50 ms);
* the access log parser (``handlers.analytics.served_bytes``) over ``--log-mb`` of
  synthetic S3 server access log lines, in memory (MB/s, target >= 50); the S3 read and
  the owner look-ups (one query per 1,000 distinct keys) come on top;
* ``videos.sign_url``'s handler in process, counting as a worker process counts (in
  memory, written by a thread every 0.2 s) and not counting, interleaved: what counting
  adds to the handler alone. The target (sign_url p50 within 3% with analytics on,
  through broker and worker) is ``python -m bench roundtrip --analytics``.

Needs PostgreSQL and Redis (``DATABASE_URL``, ``REDIS_URL`` and S3 settings as the worker
reads them; S3 is never called: presigning is local). It writes its own rows into the
database it is given: use a scratch one.
Run: ``python -m bench analytics [--videos 1000000] [--active 10000] [--log-mb 100]``.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bench.dataset import migration_sql
from bench.harness import MS, US, Table, bench, interleaved, log, parser

DAYS = 90
TABLES = (
    "video_daily_analytics",
    "mall_daily_analytics",
    "pin_daily_analytics",
    "video_span_analytics",
)


def _fill(engine, mall: uuid.UUID, videos: int, active: int, today) -> None:  # noqa: ANN001
    from sqlalchemy import text

    first = today - timedelta(days=DAYS - 1)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)}"))
        # The mall's active videos, every day of the range.
        conn.execute(
            text(
                """
                INSERT INTO video_daily_analytics
                    (video_id, mall_id, pin_id, day, stream_urls, thumbnail_urls,
                     share_views, bytes_served)
                SELECT md5(:mall || v)::uuid, CAST(:mall AS uuid),
                       md5(:mall || (v % 40))::uuid, d::date,
                       1 + (v * 7 + d_i) % 13, (v + d_i) % 5, (v + d_i) % 2,
                       ((v * 31 + d_i) % 1000) * 100000
                FROM generate_series(1, :active) v,
                     generate_series(CAST(:first AS date), CAST(:last AS date),
                                     interval '1 day') WITH ORDINALITY AS g(d, d_i)
                """
            ),
            {"mall": str(mall), "active": active, "first": first, "last": today},
        )
        # The rest of the videos, in 100 other malls, one day each somewhere in the range.
        conn.execute(
            text(
                """
                INSERT INTO video_daily_analytics (video_id, mall_id, pin_id, day, stream_urls)
                SELECT md5('other' || v)::uuid, md5('mall' || (v % 100))::uuid,
                       md5('pin' || (v % 4000))::uuid, CAST(:first AS date) + (v % :days)::int, 1
                FROM generate_series(1, :others) v
                """
            ),
            {"first": first, "days": DAYS, "others": max(0, videos - active)},
        )
        # The rollups and spans the fold keeps beside them, as migrations fill them:
        # every span that ended by today.
        conn.execute(text("UPDATE analytics_span_progress SET through = :t"), {"t": today})
        for statement in [
            *migration_sql("0022_analytics_rollups.py", "FILL_BY_MALL", "FILL_BY_PIN"),
            *migration_sql("0024_analytics_spans.py", "FILL"),
        ]:
            conn.execute(text(statement))
    # As autovacuum leaves them: the visibility map set, so that the covering indexes
    # are read alone.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in TABLES:
            conn.execute(text(f"VACUUM ANALYZE {table}"))


def _md5_uuid(text: str) -> uuid.UUID:
    # The ids the fill gives: md5(text)::uuid.
    return uuid.UUID(hashlib.md5(text.encode()).hexdigest())  # noqa: S324 - an id, not a secret


def _videos(engine, mall: uuid.UUID, count: int, path: str) -> list[uuid.UUID]:  # noqa: ANN001
    """``count`` videos of ``mall`` under a pin of their own, the ``i``-th one's files at
    ``path`` (``{kind}``: original or proxy; ``#``: ``i``, from 0); their ids."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO malls (id, name) VALUES (:m, 'bench') ON CONFLICT DO NOTHING"),
            {"m": mall},
        )
        pin = uuid.uuid4()
        conn.execute(
            text("INSERT INTO camera_pins (id, mall_id, name) VALUES (:p, :m, :n)"),
            {"p": pin, "m": mall, "n": str(pin)},
        )
        original, proxy = (path.format(kind=kind) for kind in ("original", "proxy"))
        rows = conn.execute(
            text(
                "INSERT INTO videos (id, mall_id, pin_id, original_filename, original_path, "
                "file_size_bytes, proxy_path, processing_status) "
                "SELECT gen_random_uuid(), :m, :p, 'a.mp4', replace(:original, '#', i::text), "
                "1, replace(:proxy, '#', i::text), 'completed' "
                "FROM generate_series(0, :n - 1) i RETURNING id"
            ),
            {"m": mall, "p": pin, "n": count, "original": original, "proxy": proxy},
        )
        return [row.id for row in rows]


def _ingest_end_to_end(settings, engine, mall: uuid.UUID, body: bytes) -> tuple[int, float, float]:  # noqa: ANN001
    """``videos.ingest_access_logs``'s handler over one log object of ``body`` in an S3
    server of its own (moto, in this process: it shares the GIL with the ingest, so the
    rate is a floor), with a video for each of the log's 1,000 keys: the GET stream, the
    parse, the owners' look-ups and the fold. (lines, seconds, MB/s)."""
    import boto3
    from moto.server import ThreadedMotoServer
    from pydantic import SecretStr

    from handlers.analytics import ingest_access_logs
    from schemas.requests import IngestAccessLogs
    from worker.bootstrap import build_deps
    from worker.dev.embedded import free_port

    _videos(engine, mall, 1000, "videos/m/{kind}/#.mp4")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        s3 = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1",
            aws_access_key_id="bench", aws_secret_access_key="bench",
        )  # fmt: skip
        s3.create_bucket(Bucket="bench-logs")
        s3.put_object(Bucket="bench-logs", Key="logs/2026-02-06-00-00-00-BENCH", Body=body)
        logged = settings.model_copy(
            update={
                "s3_endpoint_url": url,
                "aws_access_key_id": "bench",
                "aws_secret_access_key": SecretStr("bench"),
                "access_log_bucket": "bench-logs",
                "access_log_prefix": "logs/",
            }
        )
        deps = build_deps(logged, enqueue=lambda *a, **k: None)
        started = time.perf_counter()
        result = ingest_access_logs(IngestAccessLogs(), deps)
        seconds = time.perf_counter() - started
    finally:
        server.stop()
    return result.lines, seconds, len(body) / 1e6 / seconds


def _log_body(megabytes: int) -> bytes:
    from handlers.analytics import LogParser  # noqa: F401 - the format it reads

    lines = []
    for i in range(2000):
        status = ("200", "206", "304", "403")[i % 4]
        lines.append(
            f"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be videos "
            f"[06/Feb/2026:00:{i % 60:02d}:38 +0000] 192.0.2.3 "
            f"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be "
            f"3E57427F3EXAMPLE REST.GET.OBJECT videos/m/proxy/{i % 1000}.mp4 "
            f'"GET /videos/videos/m/proxy/{i % 1000}.mp4?X-Amz-Signature=abc HTTP/1.1" '
            f'{status} - {i * 1000} 9000000 70 10 "-" "Mozilla/5.0 (X11; Linux x86_64)" - '
            "s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= "
            "SigV4 ECDHE-RSA-AES128-GCM-SHA256 QueryString videos.s3.us-west-1.amazonaws.com "
            "TLSv1.2 - -\n".encode()
        )
    block = b"".join(lines)
    return block * max(1, megabytes * 1_000_000 // len(block))


@bench("analytics")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("analytics", __doc__)
    options.add_argument("--videos", type=int, default=1_000_000, help="rows of other malls")
    options.add_argument("--active", type=int, default=10_000, help="the mall's videos per day")
    options.add_argument("--calls", type=int, default=200, help="analytics calls timed")
    options.add_argument("--log-mb", type=int, default=100, help="access log size")
    options.add_argument("--signs", type=int, default=3000, help="sign_url calls per side")
    args = options.parse_args(argv)

    from handlers.analytics import analytics, served_bytes
    from handlers.ports import Tally
    from handlers.urls import sign_url
    from schemas.requests import GetAnalytics, SignUrl
    from worker.adapters.analytics_buffer import Batched
    from worker.adapters.postgres.uow import make_engine
    from worker.bootstrap import build_deps
    from worker.settings import get_settings

    settings = get_settings()
    deps = build_deps(settings, enqueue=lambda *a, **k: None)
    engine = make_engine(settings)
    today = datetime.now(UTC).date()
    mall = uuid.uuid4()
    ok = True

    log(f"filling video_daily_analytics: {args.active:,} active videos x {DAYS} days ...")
    started = time.perf_counter()
    _fill(engine, mall, args.videos, args.active, today)
    log(f"filled in {time.perf_counter() - started:.1f} s")
    rows = args.active * DAYS
    table = Table(
        "videos.analytics, one mall, 90 days",
        ("case", "p50 ms", "p95 ms", "p99 ms"),
        (f"{rows:,} rows of the mall", f"{args.videos:,} videos in all"),
    )
    days = {"from_day": (today - timedelta(days=DAYS - 1)).isoformat(), "to_day": today.isoformat()}
    pin = str(_md5_uuid(f"{mall}1"))
    cases = (
        ("mall, series + totals (top=0)", {"mall_id": str(mall), "top": 0}),
        ("mall, top 10 too", {"mall_id": str(mall), "top": 10}),
        (f"pin ({args.active // 40:,} videos), top 10", {"pin_id": pin, "top": 10}),
    )
    for label, selection in cases:
        cmd = GetAnalytics(**selection, **days)
        times = interleaved(
            {label: lambda cmd=cmd: analytics(cmd, deps)}, args.calls, block=20, warmup=3, unit=MS
        )[label].summary()
        table.add(label, times.p50, times.p95, times.p99)
        ok &= table.verdict(f"{label}: p95 <= 50 ms", times.p95 <= 50, f"{times.p95:.1f} ms")

    # A flush of a count for each of the mall's active videos, today, as beat folds it,
    # then the top again, before any vacuum: today's figures are read from the rows the
    # folds just changed.
    tallies = [
        Tally(
            today,
            _md5_uuid(f"{mall}{v}"),
            mall,
            _md5_uuid(f"{mall}{v % 40}"),
            "proxy",
            1 + v % 3,
        )
        for v in range(1, args.active + 1)
    ]
    folds = []
    for _ in range(3):
        started = time.perf_counter()
        with deps.uow() as uow:
            uow.analytics.fold(f"bench-{uuid.uuid4()}", datetime.now(UTC), tallies)
            uow.commit()
        folds.append((time.perf_counter() - started) * 1000)
    log(f"fold of {len(tallies):,} videos' counts: " + ", ".join(f"{ms:.0f} ms" for ms in folds))
    cmd = GetAnalytics(mall_id=str(mall), top=10, **days)
    label = "mall, top 10, after 3 folds"
    times = interleaved(
        {label: lambda: analytics(cmd, deps)}, args.calls, block=20, warmup=3, unit=MS
    )[label].summary()
    table.add(label, times.p50, times.p95, times.p99)
    ok &= table.verdict(f"{label}: p95 <= 50 ms", times.p95 <= 50, f"{times.p95:.1f} ms")
    table.print()
    # What the first flush of a day adds: the spans that ended at midnight, summed; then
    # a flush after 256 days without one: every span those days ended, in one go.
    for ahead in (1, 256):
        started = time.perf_counter()
        with deps.uow() as uow:
            written = uow.analytics.close_spans(today + timedelta(days=ahead))
            uow.commit()
        log(
            f"spans summed through {ahead} day(s) ahead: {written:,} rows in "
            f"{time.perf_counter() - started:.2f} s"
        )

    body = _log_body(args.log_mb)
    started = time.perf_counter()
    parsed, sent = served_bytes(iter(body.splitlines(keepends=True)))
    seconds = time.perf_counter() - started
    rate = len(body) / 1e6 / seconds
    table = Table("access log ingest", ("case", "MB", "lines", "s", "MB/s"))
    table.add(
        "parse (served_bytes, in memory)", len(body) // 1_000_000, parsed.lines, seconds, rate
    )
    whole = _ingest_end_to_end(settings, engine, mall, body)
    table.add("videos.ingest_access_logs, S3 to PostgreSQL", len(body) // 1_000_000, *whole)
    ok &= table.verdict("parse >= 50 MB/s", rate >= 50, f"{rate:.0f} MB/s")
    ok &= table.verdict(
        "ingest of one log object, S3 to PostgreSQL, >= 50 MB/s",
        whole[2] >= 50,
        f"{whole[2]:.0f} MB/s",
    )
    table.print()

    (video,) = _videos(engine, mall, 1, "videos/sign-{kind}-#.mp4")
    sign = SignUrl(video_id=str(video))
    off = replace(deps, analytics_buffer=None)
    # As a worker process counts: added up in memory, written by a thread every 0.2 s.
    counting = Batched(deps.analytics_buffer)
    on = replace(deps, analytics_buffer=counting)
    got = interleaved(
        {"buffer on": lambda: sign_url(sign, on), "buffer off": lambda: sign_url(sign, off)},
        args.signs,
        block=100,
        warmup=50,
        unit=US,
    )
    on_s, off_s = got["buffer on"].summary(), got["buffer off"].summary()
    table = Table("videos.sign_url handler, in process", ("case", "p50 us", "p95 us", "cpu us"))
    table.add("buffer on", on_s.p50, on_s.p95, got["buffer on"].cpu_us())
    table.add("buffer off", off_s.p50, off_s.p95, got["buffer off"].cpu_us())
    # The handler alone: what counting adds to a signing's CPU. The target
    # (p50 within 3% through broker and worker) is ``python -m bench roundtrip --analytics``.
    table.print()
    added = on_s.p50 - off_s.p50
    log(f"counting adds {added:.1f} us to the handler's p50 ({added / off_s.p50:+.1%})")
    counting.send()
    deps.analytics_buffer.client.delete("videoworker:analytics:buffer")
    return 0 if ok else 1
