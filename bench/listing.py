"""Listing bench: ``videos.list`` at scale, with our indexes and without them.

What it measures: ``handlers.list_videos(ListVideos(...))`` on a unit of work (the
total's statement plus the page query), wall time per call from Python, for every
single filter and the common combinations. Each query is timed on
page 1 and on a deep page: page 2,000 when the filter matches at least 40,000 rows
(page_size 20), else its last page. Every figure comes from ``--samples`` calls after
3 warm-up calls, on one pooled connection, in a transaction rolled back after each
call (as the unit of work does).

Two databases on the same server hold the same rows (the second is a file copy of
the first): ``ours`` is migrated to head, with the indexes the migrations create;
``baseline`` keeps only the primary keys, i.e. the seed's OFFSET + COUNT(*) listing
over unindexed filters. Filters use the busiest mall and its busiest pin (the worst
case for counting), ``completed`` for status unless named, and a 30-day window that
ends 90 days before the newest upload.

How to read the table (all times in milliseconds):

* ``rows``: how many live videos the filter matches (an exact ``count(*)`` written by
  the bench).
* ``total``: what the repository's ``total`` said on page 1; ``=`` when exact.
* ``p1 p50/p95``: page 1 with its total. Target: p95 <= 20 ms.
* ``page``: the deep page measured; ``deep p50/p95``: its time. Target: p95 <= 50 ms.
* ``cursor p50/p95``: the same deep page reached by cursor (``videos.list(cursor=...)``
  with the previous page's ``next_cursor``): the keyset starts at the row, no offset.
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
``--repository module:Class`` measures another implementation of ``list``, built on
the unit of work's connection. A
database kept by ``--keep`` is reloaded when the migrations' head or the SQL differs.

Default: an embedded PostgreSQL (``durable=False``) under ``.videoworker/bench``,
removed afterwards unless ``--keep``; with ``--keep`` a later run reuses the loaded
databases when ``--videos``/``--seed`` match. ``--database-url`` uses another server
instead (any database on it: ``vw_bench`` and ``vw_bench_baseline`` are created
there, and dropped afterwards unless ``--keep``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.common import Catalogue, ListTiming, head_revision, plan_nodes, time_lists
from bench.dataset import BENCH_HOME, DEFAULT_SEED, DEFAULT_VIDEOS, Server, conninfo, load
from bench.harness import Table, bench, log, parser, short
from handlers.access import UNRESTRICTED
from schemas.requests import ListVideos

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
class Row:
    case: Case
    matched: int
    ours_first: ListTiming
    ours_deep: ListTiming
    base_first: ListTiming | None = None
    base_deep: ListTiming | None = None
    # The same deep page by cursor (the previous page's next_cursor), ours only.
    cursor_deep: ListTiming | None = None


# --------------------------------------------------------------------------- setup


@dataclass(frozen=True)
class Dataset:
    """What a bench database holds: the rows, the schema revision, any SQL run on it."""

    videos: int
    seed: int
    revision: str
    extra_sql: str = ""  # sha256 of the --ours-sql file applied, "" for none


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
    wanted = Dataset(videos, seed, head_revision())
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


def make_cases(catalogue: Catalogue) -> list[Case]:
    """The filters, with values picked from the data: the worst case for each."""
    with catalogue.engine.connect() as conn:
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


def measure(catalogue: Catalogue, case: Case, page: int, samples: int) -> ListTiming:
    """``samples`` calls of ``list`` for one page of one case, after the warm-up."""
    query = ListVideos(**case.filters, page=page, page_size=PAGE_SIZE)
    lists = {case.name: (UNRESTRICTED, query)}
    return time_lists(catalogue, lists, samples, block=samples, warmup=WARMUP)[case.name]


def measure_cursor(catalogue: Catalogue, case: Case, page: int, samples: int) -> ListTiming:
    """The deep page reached by cursor: the ``next_cursor`` of the page before it, sent
    back with the same filters (the keyset starts after that page's last row)."""
    import handlers

    before = ListVideos(**case.filters, page=max(1, page - 1), page_size=PAGE_SIZE)
    cursor = handlers.list_videos(before, catalogue.scoped(UNRESTRICTED)).next_cursor
    if cursor is None or page == 1:
        return measure(catalogue, case, 1, samples)
    query = ListVideos(**case.filters, page_size=PAGE_SIZE, cursor=cursor)
    lists = {case.name: (UNRESTRICTED, query)}
    return time_lists(catalogue, lists, samples, block=samples, warmup=WARMUP)[case.name]


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


def explain(catalogue: Catalogue, case: Case, page: int) -> list[PlanSummary]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement ``list`` runs for this page."""
    query = ListVideos(**case.filters, page=page, page_size=PAGE_SIZE)
    summaries = []
    for n, (kind, plan, text) in enumerate(catalogue.plans(UNRESTRICTED, query)):
        label = f"{kind} p{page}" + (f" #{n + 1}" if n and kind == "count" else "")
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


def verdict(row: Row) -> str:
    misses = []
    if row.ours_first.p95 > TARGET_FIRST_MS:
        misses.append("p1")
    if row.ours_deep.p95 > TARGET_DEEP_MS:
        misses.append("deep")
    return "yes" if not misses else "MISS " + "+".join(misses)


def render(rows: Sequence[Row], args: Any) -> Table:
    table = Table(
        f"videos.list, {args.videos:,} videos, page_size {PAGE_SIZE}, {args.samples} samples "
        f"after {WARMUP} warm-up calls, ms; {args.repository or 'handlers.list_videos'}",
        ["query", "rows", "total", "p1 p50", "p1 p95", "page", "deep p50", "deep p95",
         "cursor p50", "cursor p95", "base p1 p50", "base p1 p95", "base deep p50",
         "base deep p95", "x p1", "x deep", "ok"],
        number=short,
    )  # fmt: skip
    for row in rows:
        ours, deep = row.ours_first, row.ours_deep
        cells: list[Any] = [
            row.case.name,
            row.matched,
            "=" if ours.total == row.matched else f"{ours.total:,}",
            ours.p50,
            ours.p95,
            deep.page,
            deep.p50,
            deep.p95,
            row.cursor_deep.p50 if row.cursor_deep else float("nan"),
            row.cursor_deep.p95 if row.cursor_deep else float("nan"),
        ]
        if row.base_first and row.base_deep:
            cells += [
                row.base_first.p50,
                row.base_first.p95,
                row.base_deep.p50,
                row.base_deep.p95,
                f"{row.base_first.p95 / ours.p95:.0f}x",
                f"{row.base_deep.p95 / deep.p95:.0f}x",
            ]
        else:
            cells += ["-"] * 6
        table.add(*cells, verdict(row))
    first = sum(row.ours_first.p95 <= TARGET_FIRST_MS for row in rows)
    deep_met = sum(row.ours_deep.p95 <= TARGET_DEEP_MS for row in rows)
    table.verdict(
        f"every query's page 1 p95 <= {TARGET_FIRST_MS:.0f} ms",
        first == len(rows),
        f"{first} of {len(rows)}",
    )
    table.verdict(
        f"every query's deep page p95 <= {TARGET_DEEP_MS:.0f} ms",
        deep_met == len(rows),
        f"{deep_met} of {len(rows)}",
    )
    return table


def render_split(rows: Sequence[Row]) -> Table:
    table = Table(
        "ours, statement by statement (p50 of each, ms)",
        ["query (ours)", "p1: count + page", "deep: count + page"],
    )
    for row in rows:
        table.add(
            row.case.name,
            " + ".join(short(ms) for ms in row.ours_first.statement_p50()),
            " + ".join(short(ms) for ms in row.ours_deep.statement_p50()),
        )
    return table


def render_plans(summaries: Sequence[tuple[Case, list[PlanSummary]]]) -> Table:
    table = Table(
        "EXPLAIN (ANALYZE, BUFFERS) of ours, summarised",
        ["query (ours)", "statement", "ms", "scan of videos", "flags"],
        number=short,
    )
    for case, plans in summaries:
        for n, p in enumerate(plans):
            table.add(
                case.name if n == 0 else "",
                p.label,
                p.ms,
                ", ".join(dict.fromkeys(p.scans)),
                ", ".join(p.flags) or "-",
            )
    return table


# --------------------------------------------------------------------------- main


@bench("listing")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("listing", __doc__)
    options.add_argument("--videos", type=int, default=DEFAULT_VIDEOS)
    options.add_argument("--samples", type=int, default=30)
    options.add_argument("--seed", type=int, default=DEFAULT_SEED)
    options.add_argument("--keep", action="store_true", help="keep (and reuse) the data")
    options.add_argument("--database-url", help="use this server instead of an embedded one")
    options.add_argument("--home", type=Path, default=BENCH_HOME, help="embedded server home")
    options.add_argument("--only", action="append", help="run cases whose name contains this")
    options.add_argument("--no-baseline", action="store_true", help="measure ours only")
    options.add_argument("--explain", action="store_true", help="summarise the plans (ours)")
    options.add_argument("--plans", type=Path, help="write the full text plans to this file")
    options.add_argument(
        "--ours-sql",
        type=Path,
        help="SQL run on ours before measuring, e.g. an index change to try (make it idempotent)",
    )
    options.add_argument(
        "--repository",
        help="module:Class of another implementation of list to measure, built on the unit "
        "of work's connection (default: the handler's own)",
    )
    args = options.parse_args(argv)

    with Server(args.database_url, args.home, args.keep) as server:
        try:
            print(prepare(server, args.videos, args.seed, args.keep, args.ours_sql), flush=True)
            return run(server, args)
        finally:
            if args.database_url and not args.keep:
                server.drop(BASELINE)
                server.drop(OURS)


def run(server: Server, args: Any) -> int:
    ours = Catalogue(server.url(OURS), args.repository)
    base = None if args.no_baseline else Catalogue(server.url(BASELINE), args.repository)
    cases = make_cases(ours)
    if args.only:
        cases = [c for c in cases if any(o in c.name for o in args.only)]
    rows: list[Row] = []
    summaries: list[tuple[Case, list[PlanSummary]]] = []
    for case in cases:
        rows_matched = ours.count(UNRESTRICTED, case.filters)
        deep = deep_page(rows_matched)
        row = Row(
            case,
            rows_matched,
            measure(ours, case, 1, args.samples),
            measure(ours, case, deep, args.samples),
            cursor_deep=measure_cursor(ours, case, deep, args.samples),
        )
        if base is not None:
            row.base_first = measure(base, case, 1, args.samples)
            row.base_deep = measure(base, case, deep, args.samples)
        rows.append(row)
        log(f"{case.name}: {verdict(row)}")
        if args.explain or args.plans:
            summaries.append((case, explain(ours, case, 1) + explain(ours, case, deep)))
    for catalogue in (ours, base):
        if catalogue is not None:
            catalogue.dispose()
    render(rows, args).print()
    render_split(rows).print()
    if args.explain:
        render_plans(summaries).print()
    if args.plans:
        args.plans.write_text(
            "\n\n".join(
                f"### {case.name}: {p.label} ({p.ms:.1f} ms)\n{p.text}"
                for case, plans in summaries
                for p in plans
            )
            + "\n"
        )
        print(f"full plans written to {args.plans}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
