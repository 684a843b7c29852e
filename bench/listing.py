"""Listing bench: ``videos.list`` at scale, with our indexes and without them.

What it measures: the repository's real code path,
``PostgresVideoRepository(conn).list(ListVideos(...))`` (the total's
``count(*)`` plus the page query, as the handler runs them), wall time per call from
Python, for every single filter and the common combinations. Each query is timed on
page 1 and on a deep page: page 2,000 when the filter matches at least 40,000 rows
(page_size 20), else its last page. Every figure comes from ``--samples`` calls after
3 warm-up calls, on one connection, in a read-only transaction rolled back after
each call (as the unit of work does).

Two databases on the same server hold the same rows (the second is a file copy of
the first): ``ours`` is migrated to head, with the indexes the migrations create;
``baseline`` keeps only the primary keys, i.e. the seed's OFFSET + COUNT(*) listing
over unindexed filters. Filters use the busiest mall and its busiest pin (the worst
case for counting), ``completed`` for status unless named, and a 30-day window that
ends 90 days before the newest upload.

How to read the table (all times in milliseconds):

* ``rows``: how many rows the filter matches (an exact ``count(*)`` made by the bench).
* ``total``: what the repository's ``total`` said on page 1; ``=`` when exact.
* ``p1 p50/p95``: page 1 with its total. Target: p95 <= 20 ms.
* ``page``: the deep page measured; ``deep p50/p95``: its time. Target: p95 <= 50 ms.
* ``baseline``: the same for the primary-key-only database.
* ``x p1``/``x deep``: baseline p95 / ours p95 (how many times faster we are).
* ``ok``: ``yes`` when ours meets both targets, else which one it misses.

The second table splits ours into its statements (p50 of each: ``count`` then
``page``), which shows whether the total or the page is the slow part.
``--explain`` adds, for ours, an ``EXPLAIN (ANALYZE, BUFFERS)`` of every statement
of page 1 and of the deep page, summarised as the scan of ``videos`` it uses and
flags for what should not be there: a Seq Scan or Bitmap Heap Scan on ``videos``, a
Sort of more than 1,000 rows (or on disk), or heap fetches by an index-only scan.
``--plans FILE`` writes the full text plans.

To try a change before making it: ``--ours-sql FILE`` runs a SQL file on ``ours``
first (e.g. an index change; write it idempotently, ``--keep`` re-runs it), and
``--repository module:Class`` measures another implementation of ``list``. A
database kept by ``--keep`` is reloaded when the migrations' head or the SQL differs.

Default: an embedded PostgreSQL (``durable=False``) under ``.videoworker/bench``,
removed afterwards unless ``--keep``; with ``--keep`` a later run reuses the loaded
databases when ``--videos``/``--seed`` match. ``--database-url`` uses another server
instead (any database on it: ``vw_bench`` and ``vw_bench_baseline`` are created
there, and dropped afterwards unless ``--keep``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.pool import NullPool

from bench.common import run_label
from bench.dataset import (
    BENCH_HOME,
    DEFAULT_SEED,
    DEFAULT_VIDEOS,
    Server,
    conninfo,
    load,
)
from handlers.access import UNRESTRICTED
from schemas.requests import ListVideos
from worker.adapters.postgres.tables import Video

OURS = "vw_bench"
BASELINE = "vw_bench_baseline"
PAGE_SIZE = 20
DEEP_PAGE = 2000
WARMUP = 3
TARGET_FIRST_MS = 20.0
TARGET_DEEP_MS = 50.0
META_TABLE = "bench_dataset"
SORT_FLAG_ROWS = 1000  # a sort of more rows than this is flagged


@dataclass(frozen=True)
class Case:
    name: str
    filters: dict[str, Any]


@dataclass
class Timing:
    page: int
    total: int
    calls: list[float] = field(default_factory=list)
    statements: list[list[float]] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.calls, 50)

    @property
    def p95(self) -> float:
        return percentile(self.calls, 95)

    def statement_p50(self) -> list[float]:
        return [percentile(list(s), 50) for s in zip(*self.statements, strict=False)]


@dataclass
class Row:
    case: Case
    matched: int
    ours_first: Timing
    ours_deep: Timing
    base_first: Timing | None = None
    base_deep: Timing | None = None


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile, in the unit of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


# --------------------------------------------------------------------------- setup


@dataclass(frozen=True)
class Dataset:
    """What a bench database holds: the rows, the schema revision, any SQL run on it."""

    videos: int
    seed: int
    revision: str
    extra_sql: str = ""  # sha256 of the --ours-sql file applied, "" for none


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    from worker.adapters.postgres.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head()


def _read_dataset(url: str) -> Dataset | None:
    try:
        with psycopg.connect(conninfo(url)) as conn:
            row = conn.execute(
                sql.SQL("SELECT videos, seed, revision, extra_sql FROM {}").format(
                    sql.Identifier(META_TABLE)
                )
            ).fetchone()
    except psycopg.Error:
        return None
    return None if row is None else Dataset(*row)


def _write_dataset(url: str, dataset: Dataset) -> None:
    with psycopg.connect(conninfo(url)) as conn:
        table = sql.Identifier(META_TABLE)
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (videos int, seed bigint, revision text,"
                " extra_sql text)"
            ).format(table)
        )
        conn.execute(sql.SQL("DELETE FROM {}").format(table))
        conn.execute(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(table),
            (dataset.videos, dataset.seed, dataset.revision, dataset.extra_sql),
        )


def _strip_to_primary_keys(url: str) -> list[str]:
    """Drop every index that is not a primary key; the dropped names."""
    with psycopg.connect(conninfo(url)) as conn:
        names = [
            name
            for (name,) in conn.execute(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND NOT i.indisprimary ORDER BY 1"
            )
        ]
        for name in names:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        conn.commit()
        conn.execute("ANALYZE")
    return names


def prepare(server: Server, videos: int, seed: int, reuse: bool, extra: Path | None) -> str:
    """Both databases filled with the same rows; lines saying what was done.

    With ``reuse`` (``--keep``) the databases of an earlier run are used as they are when
    they hold the same rows at the same schema revision, and ``ours`` has had no SQL
    run on it other than ``extra``; anything else is reloaded.
    """
    ours, baseline = server.url(OURS), server.url(BASELINE)
    wanted = Dataset(videos, seed, _head_revision())
    digest = hashlib.sha256(extra.read_bytes()).hexdigest() if extra else ""
    found = _read_dataset(ours)
    lines = []
    if (
        reuse
        and found is not None
        and replace(found, extra_sql="") == wanted
        and found.extra_sql in ("", digest)
        and _read_dataset(baseline) == wanted
    ):
        lines.append(f"reusing the loaded {videos:,} videos (--keep)")
    else:
        from worker.adapters.postgres.migrate import upgrade

        server.drop(BASELINE)
        server.drop(OURS)
        server.create(OURS)
        with contextlib.redirect_stdout(sys.stderr):
            upgrade(ours)
        report = load(ours, videos, seed=seed)
        _write_dataset(ours, wanted)
        started = time.perf_counter()
        server.create(BASELINE, template=OURS)
        dropped = _strip_to_primary_keys(baseline)
        lines.append(report.describe())
        lines.append(
            f"baseline: file copy + dropping {len(dropped)} secondary indexes in "
            f"{time.perf_counter() - started:.1f}s"
        )
        found = wanted
    if extra is not None and found.extra_sql != digest:
        lines.append(apply_sql(ours, extra))
        _write_dataset(ours, replace(wanted, extra_sql=digest))
    return "\n".join(lines)


def apply_sql(url: str, path: Path) -> str:
    """Run a trusted SQL file (the bench operator's own) on a database, then VACUUM ANALYZE."""
    started = time.perf_counter()
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(sql.SQL(path.read_text()))  # type: ignore[arg-type]
        conn.execute("VACUUM ANALYZE videos")
    return f"applied {path} to {OURS} in {time.perf_counter() - started:.1f}s"


def make_cases(engine: Engine) -> list[Case]:
    """The filters, with values picked from the data: the worst case for each."""
    with engine.connect() as conn:
        mall = conn.exec_driver_sql(
            "SELECT mall_id FROM videos GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).scalar_one()
        pin = conn.exec_driver_sql(
            "SELECT pin_id FROM videos WHERE mall_id = %(mall)s"
            " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
            {"mall": mall},
        ).scalar_one()
        newest = conn.exec_driver_sql("SELECT max(uploaded_at) FROM videos").scalar_one()
    before = newest - timedelta(days=90)
    window = {"uploaded_after": before - timedelta(days=30), "uploaded_before": before}
    m, p, done = {"mall_id": mall}, {"pin_id": pin}, {"processing_status": "completed"}
    return [
        Case("no filter", {}),
        Case("mall", m),
        Case("pin", p),
        Case("status=completed", done),
        Case("status=pending", {"processing_status": "pending"}),
        Case("status=failed", {"processing_status": "failed"}),
        Case("has_proxy=true", {"has_proxy": True}),
        Case("has_proxy=false", {"has_proxy": False}),
        Case("date range (30 d)", window),
        Case("mall+status", {**m, **done}),
        Case("mall+has_proxy=true", {**m, "has_proxy": True}),
        Case("mall+has_proxy=false", {**m, "has_proxy": False}),
        Case("mall+date range", {**m, **window}),
        Case("pin+status", {**p, **done}),
        Case("pin+date range", {**p, **window}),
        Case("pin+has_proxy=true", {**p, "has_proxy": True}),
        Case("pin+has_proxy=false", {**p, "has_proxy": False}),
        Case("completed+has_proxy=false", {**done, "has_proxy": False}),
        Case("status+date range", {**done, **window}),
        Case("mall+status+date range", {**m, **done, **window}),
    ]


# --------------------------------------------------------------------------- timing


def make_engine(url: str) -> Engine:
    engine = create_engine(url, poolclass=NullPool, connect_args={"options": "-c timezone=UTC"})

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn: Connection, *_: Any) -> None:
        conn.info["started"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn: Connection, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        conn.info.setdefault("log", []).append(
            (statement, parameters, (time.perf_counter() - conn.info["started"]) * 1000)
        )

    return engine


def load_repository(spec: str) -> Callable[[Connection], Any]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _call(conn: Connection, repo: Any, query: ListVideos) -> tuple[float, int, list[Any]]:
    conn.info["log"] = []
    started = time.perf_counter()
    total = repo.list(UNRESTRICTED, query)[1]  # (items, total, ...)
    elapsed = (time.perf_counter() - started) * 1000
    conn.rollback()
    return elapsed, total, list(conn.info["log"])


def measure(conn: Connection, repo: Any, case: Case, page: int, samples: int) -> Timing:
    """Time ``samples`` calls of ``list`` for one page of one case."""
    query = ListVideos(**case.filters, page=page, page_size=PAGE_SIZE)
    timing = Timing(page=page, total=-1)
    for n in range(WARMUP + samples):
        elapsed, total, log = _call(conn, repo, query)
        if n >= WARMUP:
            timing.total = total
            timing.calls.append(elapsed)
            timing.statements.append([ms for _, _, ms in log])
    return timing


def matched(conn: Connection, case: Case) -> int:
    """The exact number of rows the case matches, counted independently of the repository."""
    table = Video.__table__
    f = case.filters
    conditions = [
        table.c[name] == f[name]
        for name in ("mall_id", "pin_id", "processing_status")
        if f.get(name) is not None
    ]
    if f.get("has_proxy") is not None:
        proxy = table.c.proxy_path
        conditions.append(proxy.is_not(None) if f["has_proxy"] else proxy.is_(None))
    if f.get("uploaded_after") is not None:
        conditions.append(table.c.uploaded_at >= f["uploaded_after"])
    if f.get("uploaded_before") is not None:
        conditions.append(table.c.uploaded_at < f["uploaded_before"])
    with conn.begin():
        statement = select(func.count()).select_from(table).where(*conditions)
        return conn.execute(statement).scalar_one()


def deep_page(total: int) -> int:
    last = max(1, math.ceil(total / PAGE_SIZE))
    return DEEP_PAGE if last >= DEEP_PAGE else last


# --------------------------------------------------------------------------- explain


@dataclass
class PlanSummary:
    label: str
    ms: float
    scans: list[str]
    flags: list[str]
    text: str


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def analyzed(conn: Connection, statement: str, parameters: Any) -> tuple[dict[str, Any], str]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of one statement as run: its JSON plan and its
    text plan (the statement runs twice, rolled back after)."""
    raw = conn.exec_driver_sql(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters
    ).scalar_one()
    text = "\n".join(
        line
        for (line,) in conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters
        )
    )
    conn.rollback()
    return (json.loads(raw) if isinstance(raw, str) else raw)[0], text


def explain(conn: Connection, repo: Any, case: Case, page: int) -> list[PlanSummary]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement ``list`` runs for this page."""
    _, _, log = _call(conn, repo, ListVideos(**case.filters, page=page, page_size=PAGE_SIZE))
    summaries = []
    for n, (statement, parameters, _) in enumerate(log):
        label = ("count" if "count(" in statement.lower() else "page") + f" p{page}"
        if n and label.startswith("count"):
            label += f" #{n + 1}"
        plan, text = analyzed(conn, statement, parameters)
        scans, flags = [], []
        for node in plan_nodes(plan["Plan"]):
            kind = node["Node Type"]
            if kind == "Bitmap Index Scan":
                scans.append(f"bitmap of {node.get('Index Name')}")
            if node.get("Relation Name") == "videos":
                index = node.get("Index Name")
                scans.append(f"{kind} {index}" if index else kind)
                if kind in ("Seq Scan", "Bitmap Heap Scan"):
                    flags.append(kind)
                if kind == "Index Only Scan" and node.get("Heap Fetches", 0) > 1000:
                    flags.append(f"heap fetches {node['Heap Fetches']}")
            if kind == "Sort":
                sorted_rows = sum(
                    child.get("Actual Rows", 0) * child.get("Actual Loops", 1)
                    for child in node.get("Plans", [])
                )
                if sorted_rows > SORT_FLAG_ROWS:
                    flags.append(f"Sort of {int(sorted_rows):,} rows")
                if node.get("Sort Space Type") == "Disk":
                    flags.append("Sort on disk")
        summaries.append(
            PlanSummary(label, plan["Execution Time"], scans, sorted(set(flags)), text)
        )
    return summaries


# --------------------------------------------------------------------------- report


def _fmt(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def verdict(row: Row) -> str:
    misses = []
    if row.ours_first.p95 > TARGET_FIRST_MS:
        misses.append("p1")
    if row.ours_deep.p95 > TARGET_DEEP_MS:
        misses.append("deep")
    return "yes" if not misses else "MISS " + "+".join(misses)


def render(rows: Sequence[Row]) -> str:
    header = [
        "query", "rows", "total", "p1 p50", "p1 p95", "page", "deep p50", "deep p95",
        "base p1 p50", "base p1 p95", "base deep p50", "base deep p95", "x p1", "x deep", "ok",
    ]  # fmt: skip
    table = [header]
    for row in rows:
        cells = [
            row.case.name,
            f"{row.matched:,}",
            "=" if row.ours_first.total == row.matched else f"{row.ours_first.total:,}",
            _fmt(row.ours_first.p50),
            _fmt(row.ours_first.p95),
            f"{row.ours_deep.page:,}",
            _fmt(row.ours_deep.p50),
            _fmt(row.ours_deep.p95),
        ]
        if row.base_first and row.base_deep:
            cells += [
                _fmt(row.base_first.p50),
                _fmt(row.base_first.p95),
                _fmt(row.base_deep.p50),
                _fmt(row.base_deep.p95),
                f"{row.base_first.p95 / row.ours_first.p95:.0f}x",
                f"{row.base_deep.p95 / row.ours_deep.p95:.0f}x",
            ]
        else:
            cells += ["-"] * 6
        table.append([*cells, verdict(row)])
    return _grid(table)


def render_split(rows: Sequence[Row]) -> str:
    table = [["query (ours)", "p1: count + page", "deep: count + page"]]
    for row in rows:
        table.append(
            [
                row.case.name,
                " + ".join(_fmt(ms) for ms in row.ours_first.statement_p50()),
                " + ".join(_fmt(ms) for ms in row.ours_deep.statement_p50()),
            ]
        )
    return _grid(table)


def _grid(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for n, r in enumerate(table):
        pairs = enumerate(zip(r, widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.listing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--videos", type=int, default=DEFAULT_VIDEOS)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the data")
    parser.add_argument("--database-url", help="use this server instead of an embedded one")
    parser.add_argument("--home", type=Path, default=BENCH_HOME, help="embedded server home")
    parser.add_argument("--only", action="append", help="run cases whose name contains this")
    parser.add_argument("--no-baseline", action="store_true", help="measure ours only")
    parser.add_argument("--explain", action="store_true", help="summarise the plans (ours)")
    parser.add_argument("--plans", type=Path, help="write the full text plans to this file")
    parser.add_argument(
        "--ours-sql",
        type=Path,
        help="SQL run on ours before measuring, e.g. an index change to try (make it idempotent)",
    )
    parser.add_argument(
        "--repository",
        default="worker.adapters.postgres.repositories:PostgresVideoRepository",
        help="module:Class of the repository to measure (an alternative to compare)",
    )
    args = parser.parse_args(argv)
    repository = load_repository(args.repository)

    with Server(args.database_url, args.home, args.keep) as server:
        try:
            print(prepare(server, args.videos, args.seed, args.keep, args.ours_sql), flush=True)
            return run(server, repository, args)
        finally:
            if args.database_url and not args.keep:
                server.drop(BASELINE)
                server.drop(OURS)


def run(server: Server, repository: Callable[[Connection], Any], args: Any) -> int:
    ours_engine = make_engine(server.url(OURS))
    base_engine = None if args.no_baseline else make_engine(server.url(BASELINE))
    cases = make_cases(ours_engine)
    if args.only:
        cases = [c for c in cases if any(o in c.name for o in args.only)]
    print(
        f"{args.videos:,} videos, page_size {PAGE_SIZE}, {args.samples} samples after "
        f"{WARMUP} warm-up calls; repository {args.repository} ({run_label()})",
        flush=True,
    )
    rows: list[Row] = []
    summaries: list[tuple[Case, list[PlanSummary]]] = []
    with contextlib.ExitStack() as stack:
        ours = stack.enter_context(ours_engine.connect())
        base = stack.enter_context(base_engine.connect()) if base_engine else None
        for case in cases:
            repo = repository(ours)
            rows_matched = matched(ours, case)
            deep = deep_page(rows_matched)
            row = Row(
                case,
                rows_matched,
                measure(ours, repo, case, 1, args.samples),
                measure(ours, repo, case, deep, args.samples),
            )
            if base is not None:
                base_repo = repository(base)
                row.base_first = measure(base, base_repo, case, 1, args.samples)
                row.base_deep = measure(base, base_repo, case, deep, args.samples)
            rows.append(row)
            print(f"  {case.name}: {verdict(row)}", file=sys.stderr, flush=True)
            if args.explain or args.plans:
                plans = explain(ours, repo, case, 1)
                plans += [p for p in explain(ours, repo, case, row.ours_deep.page)]
                summaries.append((case, plans))
    print()
    print(render(rows))
    print()
    print(render_split(rows))
    if args.explain:
        print()
        print(render_plans(summaries))
    if args.plans:
        args.plans.write_text(
            "\n\n".join(
                f"### {case.name}: {p.label} ({p.ms:.1f} ms)\n{p.text}"
                for case, plans in summaries
                for p in plans
            )
            + "\n"
        )
        print(f"\nfull plans written to {args.plans}")
    return 0


def render_plans(summaries: Sequence[tuple[Case, list[PlanSummary]]]) -> str:
    table = [["query (ours)", "statement", "ms", "scan of videos", "flags"]]
    for case, plans in summaries:
        for n, p in enumerate(plans):
            table.append(
                [
                    case.name if n == 0 else "",
                    p.label,
                    _fmt(p.ms),
                    ", ".join(dict.fromkeys(p.scans)),
                    ", ".join(p.flags) or "-",
                ]
            )
    return _grid(table)


if __name__ == "__main__":
    sys.exit(main())
