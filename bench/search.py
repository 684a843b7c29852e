"""Search bench: ``videos.list(q=...)`` at 1M rows (10M with ``--videos``): page 1 and
its capped total per search shape, a get while searches load the server, cursor pages.

What it measures: ``handlers.list_videos(ListVideos(q=..., ...))`` on a unit of work:
page 1 of 20 and its total, counted exactly up to ``SEARCH_TOTAL_CAP`` (10,000) and
"at least" past it, wall time per call from Python. The data set is
``bench.dataset``'s (``--videos``, default 1,000,000), loaded with 1% of the videos in
the trash (``--trashed``). Its ``original_filename`` follows each mall's recorder,
exports, phones and body cameras, and ~10% of videos carry ``operator_notes``: see
``bench/dataset.py``; 13% carry tags (``reviewed`` 10%, ``incident`` 2%, ``evidence``
1%, ``escalated`` 0.3%, drawn per video from a hash). ``q`` is served by
``video_search`` (migration 0025): the searched text and tags of each video beside what a
list filters by, through one GIN index ``(period, mall_period, pin_period, text, tags)``,
read a 30-day period at a time newest first, or in one scan when a sample of the text
expects few matches (``worker/adapters/postgres/rooms/search_plan.py``).

The searches, each with the case it stands for:

* ``no match``: a word no video has;
* ``selective``: an hour as the recorders write it (``20250818_14``, 90 days before
  the newest upload): a few dozen videos;
* ``medium``: ``shoplifting``, in file names and notes: ~1%;
* ``notes only``: ``insurance``, which only notes contain: ~0.6%;
* ``broad``: ``entrance``, a camera name: ~6%, past the cap;
* ``3 characters``: ``IMG``, the shortest q allowed (phone clips, ~3%);
* ``medium + mall``, ``broad + mall``: in the busiest mall (a ``mall_id`` filter);
* ``operator, 2 malls``: ``shoplifting`` by an operator of the two busiest malls;
* ``tenant, 1 pin``: ``entrance`` by a tenant of the busiest pin;
* ``medium, trash``: ``shoplifting`` with ``trashed=true``;
* ``status + dates``: ``entrance``, completed, uploaded in the last 30 days;
* ``no proxy``: ``shoplifting`` with ``has_proxy=false``;
* ``medium + tag``: ``shoplifting`` on videos tagged ``reviewed`` (10% of each mall's);
* ``broad + 2 tags``: ``entrance`` on videos tagged ``reviewed`` and ``incident`` (2%);
* ``old, past the cap``: a month two years before the newest upload as the recorders
  write it (``202412``): more matches than the cap, none of them recent.

Baseline, measured in the same run: the same page with the same other filters and no
``q``, interleaved with each search in blocks of ``BLOCK`` calls, so load from other
jobs on the machine hits both alike. Each figure comes from ``--samples`` calls after 3
warm-up calls, on one pooled connection, in a transaction rolled back after each call
(as the unit of work does).

How to read the first table (milliseconds):

* ``rows``: the videos the search matches, counted by the bench with ``position()``
  on ``lower()`` (not ``ILIKE``, so the repository's escaping of ``%``/``_`` is checked
  too); ``total``: what ``list`` said (``10,000+`` when ``total_relation`` is
  ``gte``), ``=`` when it is ``rows`` exactly;
* ``p50``/``p95``: page and total together; ``statements``: p50 of each statement;
* ``base p50``/``base p95``: the baseline; ``p95 / base``: ours over the baseline's;
* ``v1.1 p95``: how v1.1 answered the same search (``--before``): its one statement,
  page 1 and the exact total of every match (a window count), as the bench's own SQL on
  the same data, timed right after ours. Since migration 0025 dropped the trigram
  indexes of ``videos`` it reads every row: off by default;
* ``plan``: how the page's and the count's rows are found (from ``EXPLAIN``);
* ``ok``: ``yes`` when p95 <= 50 ms and the total is right.

Then three more tables:

* **A get while searches run.** ``videos.get`` idle, then while ``--callers`` processes
  (default 4) loop the most expensive allowed search (``broad``, page 1 and its capped
  total, each statement under the search budget): in this process (the callers straight
  to PostgreSQL), and end to end (``--worker``): the gets and the callers' searches sent
  to one worker, then to a requests worker with ``SEARCH_QUEUE`` set and a search worker
  of one process. Target: p99 under load <= 3x the idle p99.
* **Cursor pages.** ``videos.list(cursor=...)`` (20 items, no filter) at depth
  1,000,000 (or the last page when the table holds fewer), and at the last page of the
  busiest mall, against ``videos.get`` interleaved in the same blocks: in this process,
  then end to end (``--worker``, on by default), sent by a plain Celery caller to a
  worker started as production starts it (prefork, 2 children) on this data, with an
  embedded Redis as broker and backend; the cursors are the worker's own
  ``next_cursor``. Target: p95 <= 2x a get's, end to end.

``--chart [DIR]`` draws p95 per search shape, v1.1's statement and ours, as
``search.png`` in ``DIR`` (default ``bench/charts/``; ``bench/charts.py``, matplotlib);
at 10,000,000 videos ``search-10m.png``, ours beside the figures searches had on the
trigram indexes of ``videos`` (``BEFORE_10M``, the run of 2026-12-05 23:12 UTC).

Default: an embedded PostgreSQL (``durable=False``) under ``.videoworker/bench-search``,
removed afterwards unless ``--keep`` (a later ``--keep`` run reuses the data when
``--videos``/``--seed``/``--trashed`` and the schema match). ``--database-url`` uses
another server instead: the database ``vw_bench_search`` is created there, and dropped
afterwards unless ``--keep``.

``--repository module:Class`` measures another implementation of ``list`` (a change to
try before making it), built on the unit of work's connection, on the same data.

Run: ``python -m bench.search [--videos 1000000] [--samples 30] [--only NAME]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.charts import CHARTS
from bench.common import Catalogue, head_revision, plan_nodes, time_lists
from bench.dataset import BENCH_HOME, DEFAULT_SEED, DEFAULT_VIDEOS, Server, conninfo, load
from bench.harness import Table, bench, interleaved, log, parser, short
from handlers.access import UNRESTRICTED, Scope
from handlers.errors import StatementTimeout
from schemas.requests import ListVideos

DATABASE = "vw_bench_search"
META_TABLE = "bench_search_dataset"
HOME = BENCH_HOME.parent / "bench-search"
PAGE_SIZE = 20
WARMUP = 3
BLOCK = 5
TARGET_MS = 50.0
CAP = 10_000
DEPTH = 1_000_000
DEFAULT_TRASHED = 0.01
EXPLAIN_CASE = "medium"


@dataclass(frozen=True)
class Case:
    name: str
    q: str | None
    filters: dict[str, Any] = field(default_factory=dict)
    scope: Any = UNRESTRICTED
    label: str = ""
    # One of the shapes the target names (issue 23: no match, selective, medium, broad,
    # notes only, 3 characters, one mall, an operator, a tenant, the trash, status and
    # dates, tags); the others are measured beside them.
    named: bool = True

    def query(self) -> ListVideos:
        return ListVideos(q=self.q, **self.filters, page=1, page_size=PAGE_SIZE)

    @property
    def described(self) -> str:
        parts = [] if self.q is None else [json.dumps(self.q)]
        return " + ".join([*parts, self.label] if self.label else parts) or "-"


# --------------------------------------------------------------------------- the data


def _loaded(url: str) -> tuple[Any, ...] | None:
    try:
        with psycopg.connect(conninfo(url)) as conn:
            return conn.execute(
                sql.SQL("SELECT videos, seed, trashed, revision FROM {}").format(
                    sql.Identifier(META_TABLE)
                )
            ).fetchone()
    except psycopg.Error:
        return None


def prepare(server: Server, args: argparse.Namespace) -> str:
    """The database filled (or, with ``--keep``, found filled); a line saying which."""
    url = server.url(DATABASE)
    wanted = (args.videos, args.seed, args.trashed, head_revision())
    if args.keep and server.exists(DATABASE) and _loaded(url) == wanted:
        return f"reusing the loaded {args.videos:,} videos (--keep)"
    from worker.adapters.postgres.migrate import upgrade

    server.drop(DATABASE)
    server.create(DATABASE)
    with contextlib.redirect_stdout(sys.stderr):
        upgrade(url)
    log(f"loading {args.videos:,} videos with COPY")
    report = load(url, args.videos, seed=args.seed, trashed=args.trashed)
    with psycopg.connect(conninfo(url)) as conn:
        table = sql.Identifier(META_TABLE)
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (videos int, seed bigint, trashed float8, revision text)"
            ).format(table)
        )
        conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(table), wanted)
    return report.describe()


def make_cases(catalogue: Catalogue) -> list[Case]:
    """The searches, with the malls, the pin and the hour picked from the data."""
    with catalogue.engine.connect() as conn:
        malls = [
            row[0]
            for row in conn.exec_driver_sql(
                "SELECT mall_id FROM videos GROUP BY 1 ORDER BY count(*) DESC LIMIT 2"
            )
        ]
        pin = conn.exec_driver_sql(
            "SELECT pin_id FROM videos GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).scalar_one()
        newest = conn.exec_driver_sql("SELECT max(uploaded_at) FROM videos").scalar_one()
    hour = f"{newest - timedelta(days=90):%Y%m%d}_14"
    mall = {"mall_id": malls[0]}
    month = {
        "processing_status": "completed",
        "uploaded_after": (newest - timedelta(days=30)).isoformat(),
    }
    return [
        Case("no match", "zzqx"),
        Case("selective", hour),
        Case("medium", "shoplifting"),
        Case("notes only", "insurance"),
        Case("broad", "entrance"),
        Case("3 characters", "IMG"),
        Case("medium + mall", "shoplifting", mall, label="busiest mall"),
        Case("broad + mall", "entrance", mall, label="busiest mall", named=False),
        Case("operator, 2 malls", "shoplifting", scope=Scope.operator(malls), label="operator"),
        Case("tenant, 1 pin", "entrance", scope=Scope.tenant([pin]), label="tenant"),
        Case("medium, trash", "shoplifting", {"trashed": True}, label="trashed=true"),
        Case("status + dates", "entrance", month, label="completed, last 30 days"),
        Case("no proxy", "shoplifting", {"has_proxy": False}, label="has_proxy=false", named=False),
        Case("medium + tag", "shoplifting", {"tags": ["reviewed"]}, label="tag reviewed"),
        Case(
            "broad + 2 tags",
            "entrance",
            {"tags": ["reviewed", "incident"]},
            label="tags reviewed, incident",
            named=False,
        ),  # fmt: skip
        # Past the cap and all of it two years back: the newest first page is walked to.
        Case("old, past the cap", f"{newest - timedelta(days=730):%Y%m}", named=False),
    ]


def baseline_of(case: Case) -> Case:
    return Case(f"{case.name}: no q", None, case.filters, case.scope)


def v1_1_statement(case: Case) -> tuple[str, dict[str, Any]]:
    """How v1.1 answered the same search, as the bench's own SQL: page 1 and the exact
    total of every match in one statement (a window count over all of them), newest
    first, then the page's rows joined. It runs on today's indexes."""
    where = ["v.trashed_at IS NOT NULL" if case.filters.get("trashed") else "v.trashed_at IS NULL"]
    values: dict[str, Any] = {}
    scope = case.scope
    if scope.role != "admin":
        column = "mall_id" if scope.role == "operator" else "pin_id"
        ids = sorted(scope.malls if scope.role == "operator" else scope.pins)
        where.append(f"v.{column} = ANY(%(scope)s)" if len(ids) > 1 else f"v.{column} = %(scope)s")
        values["scope"] = ids if len(ids) > 1 else ids[0]
    for name in ("mall_id", "pin_id", "processing_status"):
        if case.filters.get(name) is not None:
            where.append(f"v.{name} = %({name})s")
            values[name] = case.filters[name]
    if case.filters.get("has_proxy") is not None:
        where.append(f"v.proxy_path IS {'NOT ' if case.filters['has_proxy'] else ''}NULL")
    if case.filters.get("uploaded_after") is not None:
        where.append("v.uploaded_at >= %(after)s")
        values["after"] = case.filters["uploaded_after"]
    escaped = (case.q or "").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    values["q"] = f"%{escaped}%"
    where.append("(v.original_filename ILIKE %(q)s OR v.operator_notes ILIKE %(q)s)")
    statement = (
        "SELECT w.*, p.name, page.page_total FROM ("  # noqa: S608 - the bench's own text
        " SELECT v.id, v.uploaded_at, count(*) OVER () AS page_total FROM videos v"
        f" WHERE {' AND '.join(where)} ORDER BY v.uploaded_at DESC, v.id DESC LIMIT 20"
        ") page JOIN videos w ON w.id = page.id LEFT JOIN camera_pins p ON p.id = w.pin_id"
        " ORDER BY page.uploaded_at DESC, page.id DESC"
    )
    return statement, values


# --------------------------------------------------------------------------- explain


def scans(plan: dict[str, Any]) -> str:
    """How a plan reads ``videos``: its scans, and the indexes its bitmaps come from."""
    found: list[str] = []
    for node in plan_nodes(plan["Plan"]):
        kind, index = node["Node Type"], node.get("Index Name")
        if kind == "Bitmap Index Scan":
            found.append(f"bitmap {index}")
        elif node.get("Relation Name") == "videos":
            found.append(f"{kind} {index}" if index else kind)
    return ", ".join(dict.fromkeys(found))


# --------------------------------------------------------------------------- main


def v1_1(catalogue: Catalogue, case: Case, args: argparse.Namespace) -> Any:
    """v1.1's statement for the same search, timed right after ours (same pool)."""
    statement, values = v1_1_statement(case)

    def call() -> None:
        with catalogue.engine.connect() as conn:
            conn.exec_driver_sql(statement, values).all()

    return interleaved({"v1.1": call}, args.samples, block=BLOCK, warmup=WARMUP)["v1.1"].summary()


def searches(catalogue: Catalogue, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """The first table: page 1 and its capped total per shape; p95 by case name."""
    other = f", {args.repository}" if args.repository else ""
    cases = make_cases(catalogue)
    if args.only:
        cases = [c for c in cases if any(o in c.name for o in args.only)]
    table = Table(
        f"videos.list(q=...) page 1 of {PAGE_SIZE} + total capped at {CAP:,}, "
        f"{args.videos:,} videos ({args.trashed:.0%} in the trash), {args.samples} samples, "
        f"ms{other}",
        ["case", "q + filters", "rows", "total", "p50", "p95", "statements",
         "base p50", "base p95", "p95 / base", "v1.1 p95", "plan", "ok"],
        conditions=("embedded PostgreSQL" if not args.database_url else "given server",),
        number=short,
    )  # fmt: skip
    misses, named_misses, p95s = 0, 0, {}
    shown: tuple[Case, list[tuple[str, dict[str, Any], str]]] | None = None
    for case in cases:
        log(f"{case.name}: q={case.q!r}")
        rows = catalogue.count(case.scope, case.filters, case.q)
        lists = {
            "ours": (case.scope, case.query()),
            "base": (case.scope, baseline_of(case).query()),
        }
        try:
            timed = time_lists(catalogue, lists, args.samples, block=BLOCK, warmup=WARMUP)
        except StatementTimeout as exc:
            # The search's own budget cancelled it: what a caller is answered, as a row.
            before = v1_1(catalogue, case, args) if args.before else None
            misses += 1
            named_misses += case.named
            # Drawn at the budget: what the caller waited before the timeout answer.
            budget_ms = float(catalogue.deps.policy.search_timeout_ms)
            p95s[case.name] = (before.p95 if before else float("nan"), budget_ms)
            v1_1_p95 = before.p95 if before else float("nan")
            table.add(case.name, case.described, rows, "-", "timeout", "timeout", "-", "-",
                      "-", "-", v1_1_p95, exc.detail, "NO")  # fmt: skip
            continue
        ours, base = timed["ours"], timed["base"]
        before = v1_1(catalogue, case, args) if args.before else None
        plans = catalogue.plans(case.scope, case.query())
        if case.name == args.explain_case:
            shown = (case, plans)
        right = ours.total == rows if rows <= CAP else ours.total == CAP
        ok = ours.p95 <= TARGET_MS and right
        misses += not ok
        named_misses += case.named and not ok
        p95s[case.name] = (before.p95 if before else float("nan"), ours.p95)
        if rows > CAP:
            total = f"{ours.total:,}+" if right else f"{ours.total:,}?"
        else:
            total = "=" if right else f"{ours.total:,}"
        table.add(
            case.name,
            case.described,
            rows,
            total,
            ours.p50,
            ours.p95,
            " + ".join(short(x) for x in ours.statement_p50()),
            base.p50,
            base.p95,
            f"{ours.p95 / base.p95:.2f}x",
            before.p95 if before else float("nan"),
            " | ".join(scans(plan) for _, plan, _ in plans),
            "yes" if ok else "NO",
        )
    table.notes.append(
        "base: the same page without q (same other filters), interleaved in blocks of "
        f"{BLOCK}; statements: p50 of each (a budget change, the page, the capped count); "
        "v1.1 p95: v1.1's one statement (page + exact window count of every match), timed "
        "right after (--before); "
        f"plan: page | count; ok: p95 (page + total) <= {TARGET_MS:.0f} ms and the total right"
    )
    named = sum(case.named for case in cases)
    table.verdict(
        f"each named search's p95 (page + capped total) <= {TARGET_MS:.0f} ms",
        not named_misses,
        f"{named - named_misses} of {named}; every search: {len(cases) - misses} of {len(cases)}",
    )
    table.print()
    if shown is not None:
        case, plans = shown
        print(f"EXPLAIN (ANALYZE, BUFFERS) of {case.name} ({case.described}):")
        for label, plan, text in plans:
            print(f"\n-- {label} ({plan['Execution Time']:.1f} ms): {scans(plan)}")
            print(text)
        print(flush=True)
    return p95s


def _loop_search(url: str, stop: Any, done: Any) -> None:
    """A caller looping the most expensive allowed search until told to stop."""
    catalogue = Catalogue(url)
    query = ListVideos(q="entrance", page_size=PAGE_SIZE)
    calls = 0
    while not stop.is_set():
        catalogue.list(UNRESTRICTED, query)
        calls += 1
    done.put(calls)
    catalogue.dispose()


def get_under_load(
    catalogue: Catalogue, url: str, marks: Landmarks, args: argparse.Namespace
) -> None:
    ids = marks.ids
    turn = iter(range(10**9))

    def get() -> None:
        catalogue.get(UNRESTRICTED, ids[next(turn) % len(ids)])

    idle = interleaved({"get": get}, args.get_samples, block=100, warmup=50)["get"].summary()
    loaded, searched, seconds = _while_callers(
        _loop_search, (url,), get, args.get_samples, block=100, args=args
    )
    load_table(
        f'videos.get while {args.callers} callers loop the broad search ("entrance", page 1 '
        f"+ capped total), {args.videos:,} videos, ms",
        ("embedded PostgreSQL" if not args.database_url else "given server",),
        (idle, loaded, searched, seconds),
        f"get p99 while {args.callers} callers search <= 3x idle",
        args,
    )


def _while_callers(
    loop: Any, loop_args: tuple[Any, ...], get: Any, samples: int, *, block: int, args: Any
) -> tuple[Any, int, float]:
    """Gets timed while ``--callers`` processes run ``loop(*loop_args, stop, done)``: the
    gets' figures, how many searches the callers ran, and for how long."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    stop, done = context.Event(), context.Queue()
    callers = [
        context.Process(target=loop, args=(*loop_args, stop, done), daemon=True)
        for _ in range(args.callers)
    ]
    for caller in callers:
        caller.start()
    time.sleep(5)  # every caller connected and searching
    started = time.perf_counter()
    loaded = interleaved({"get": get}, samples, block=block, warmup=0)["get"].summary()
    seconds = time.perf_counter() - started
    stop.set()
    searched = sum(done.get(timeout=120) for _ in callers)
    for caller in callers:
        caller.join(30)
    return loaded, searched, seconds


def load_table(
    title: str,
    conditions: tuple[str, ...],
    figures: tuple[Any, Any, int, float],
    target: str,
    args: argparse.Namespace,
) -> None:
    """A get's latency idle and while callers loop a search, p99 against p99."""
    idle, loaded, searched, seconds = figures
    table = Table(title, ["phase", "calls", "p50", "p95", "p99", "max", "p99 / idle"], conditions)
    table.add("idle", idle.n, idle.p50, idle.p95, idle.p99, idle.max, "1.00x")
    table.add(
        f"{args.callers} searching", loaded.n, loaded.p50, loaded.p95, loaded.p99, loaded.max,
        f"{loaded.p99 / idle.p99:.2f}x",
    )  # fmt: skip
    table.notes.append(
        f"the callers ran {searched:,} searches in all (about {searched / max(seconds, 1e-9):.0f}"
        " a second while the gets were timed)"
    )
    table.verdict(
        target,
        loaded.p99 <= 3 * idle.p99,
        f"{loaded.p99:.2f} ms vs {idle.p99:.2f} ms idle, {loaded.p99 / idle.p99:.2f}x",
    )
    table.print()


def _loop_search_through(broker_url: str, backend_url: str, stop: Any, done: Any) -> None:
    """A caller looping the broad search through the broker until told to stop."""
    from bench.common import outside_app

    app = outside_app(broker_url, backend_url)
    kwargs = {"q": "entrance", "page_size": PAGE_SIZE}
    calls = 0
    while not stop.is_set():
        app.send_task("videos.list", kwargs=kwargs, queue="videos").get(timeout=60)
        calls += 1
    done.put(calls)
    app.close()


def get_under_load_through_worker(
    get: Any, broker_url: str, backend_url: str, args: argparse.Namespace, how: str
) -> None:
    """``get_under_load`` end to end: the gets and the callers' searches all sent to the
    worker (``get`` sends one get and waits for it)."""

    samples = max(args.get_samples // 4, 100)
    idle = interleaved({"get": get}, samples, block=50, warmup=20)["get"].summary()
    loaded, searched, seconds = _while_callers(
        _loop_search_through, (broker_url, backend_url), get, samples, block=50, args=args
    )
    load_table(
        f'videos.get while {args.callers} callers loop the broad search ("entrance", page 1 '
        f"+ capped total), end to end through a worker{how}, {args.videos:,} videos, ms",
        ("embedded Redis broker and backend", "prefork, 2 children"),
        (idle, loaded, searched, seconds),
        f"get p99 while {args.callers} callers search <= 3x idle, end to end{how}",
        args,
    )


def _rows(catalogue: Catalogue, statement: str, values: Any = None) -> list[Any]:
    with catalogue.engine.connect() as conn:
        return list(conn.exec_driver_sql(statement, values or {}))


@dataclass
class Landmarks:
    """What the reads after the searches are timed at, read once: live videos to get,
    and the two depths cursor pages are read at (deep in the table, the busiest mall's
    last page)."""

    ids: list[Any]
    live: int
    mall: Any
    in_mall: int

    @classmethod
    def of(cls, catalogue: Catalogue) -> Landmarks:
        live = _rows(catalogue, "SELECT count(*) FROM videos WHERE trashed_at IS NULL")[0][0]
        mall, in_mall = _rows(
            catalogue,
            "SELECT mall_id, count(*) FROM videos WHERE trashed_at IS NULL GROUP BY 1 "
            "ORDER BY 2 DESC LIMIT 1",
        )[0]
        ids = _rows(catalogue, "SELECT id FROM videos WHERE trashed_at IS NULL LIMIT 500")
        return cls([row[0] for row in ids], live, mall, in_mall)

    def deep(self) -> list[tuple[str, Any, int]]:
        """(name, mall filter or None, depth) of each cursor page."""
        depth = min(DEPTH, self.live - PAGE_SIZE)
        last = self.in_mall - PAGE_SIZE
        return [
            (f"no filter, depth {depth:,}", None, depth),
            (f"busiest mall, last page (depth {last:,})", self.mall, last),
        ]


def cursor_pages(catalogue: Catalogue, marks: Landmarks, args: argparse.Namespace) -> None:
    """Cursor pages deep in the table and at the end of the busiest mall, against a get."""
    from handlers.cursors import Position, seal

    mall = marks.mall
    deep: dict[str, tuple[ListVideos, int]] = {
        name: (ListVideos(page_size=PAGE_SIZE, mall_id=in_mall), at)
        for name, in_mall, at in marks.deep()
    }
    key = catalogue.deps.cursor_key
    variants: dict[str, Any] = {}
    for name, (query, at) in deep.items():
        where = "trashed_at IS NULL" + (" AND mall_id = %(mall)s" if query.mall_id else "")
        uploaded, video_id = _rows(
            catalogue,
            f"SELECT uploaded_at, id FROM videos WHERE {where} "  # noqa: S608 - the bench's own text
            "ORDER BY uploaded_at DESC, id DESC OFFSET %(at)s LIMIT 1",
            {"mall": mall, "at": at - 1},
        )[0]
        cursor = seal(key, UNRESTRICTED, query, Position(uploaded, video_id, at))
        paged = query.model_copy(update={"cursor": cursor})
        variants[name] = lambda q=paged: catalogue.list(UNRESTRICTED, q)
    ids = marks.ids
    turn = iter(range(10**9))
    variants["videos.get"] = lambda: catalogue.get(UNRESTRICTED, ids[next(turn) % len(ids)])
    for name, call in variants.items():
        assert call() is not None, name
    timed = interleaved(variants, args.samples * 3, block=BLOCK * 2, warmup=WARMUP)
    against_get(
        timed,
        f"cursor pages of {PAGE_SIZE} (page + exact total) against a get, {args.videos:,} "
        f"videos, {args.samples * 3} samples each, ms",
        ("embedded PostgreSQL" if not args.database_url else "given server",),
        "both through their handlers in this process, interleaved in blocks",
        "cursor pages p95 <= 2x a get's",
    )


def against_get(
    timed: dict[str, Any], title: str, conditions: tuple[str, ...], note: str, target: str
) -> None:
    """The cursor pages' table: each read's p95 against the get's, 2x at most."""
    get = timed["videos.get"].summary()
    table = Table(title, ["read", "p50", "p95", "p99", "p95 / get p95", "ok"], conditions)
    met = True
    for name, samples in timed.items():
        figures = samples.summary()
        ok = name == "videos.get" or figures.p95 <= 2 * get.p95
        met &= ok
        table.add(name, figures.p50, figures.p95, figures.p99, f"{figures.p95 / get.p95:.2f}x",
                  "yes" if ok else "NO")  # fmt: skip
    table.notes.append(note)
    table.verdict(target, met, f"get p95 {get.p95:.2f} ms")
    table.print()


def cursor_pages_through_worker(url: str, marks: Landmarks, args: argparse.Namespace) -> None:
    """The same cursor pages and gets, end to end: sent by a plain Celery caller to a
    worker started as production starts it (prefork, 2 children), on this data, with
    Redis and S3 of an embedded stack. The cursors are the worker's own: taken from
    ``next_cursor`` of the offset page just before each depth."""
    from bench.common import OWN_QUEUE, Stack, WorkerProcess, WorkerSpec, outside_app

    ids = [str(video_id) for video_id in marks.ids]
    deep = {
        name: ({"mall_id": str(in_mall)} if in_mall else {}, at)
        for name, in_mall, at in marks.deep()
    }
    with Stack(postgres=False) as stack:
        env = {**stack.env, "DATABASE_URL": url}
        spec = WorkerSpec(conf=OWN_QUEUE, quiet_loggers=("celery.app.trace",))
        app = outside_app(stack.broker_url, stack.backend_url)
        worker = WorkerProcess(spec, env, stack.log_path("search-worker"))
        with worker:

            def call(name: str, kwargs: dict[str, Any], timeout: float = 15) -> Any:
                envelope = app.send_task(name, kwargs=kwargs, queue="videos").get(timeout=timeout)
                if not envelope.get("ok"):
                    raise RuntimeError(f"{name}({kwargs}) answered {envelope!r}")
                return envelope["data"]

            worker.wait_ready(lambda: call("videos.get", {"video_id": ids[0]}, timeout=3))
            variants: dict[str, Any] = {}
            for name, (filters, at) in deep.items():
                # The offset page ending just before ``at``: its next_cursor starts there.
                page = call(
                    "videos.list",
                    {**filters, "page_size": at, "page": 1} if at <= 100 else {
                        **filters, "page_size": 100, "page": at // 100,
                    },
                    timeout=120,
                )  # fmt: skip
                cursor = page["next_cursor"]
                kwargs = {**filters, "page_size": PAGE_SIZE, "cursor": cursor}
                variants[name] = lambda k=kwargs: call("videos.list", k)
            turn = iter(range(10**9))
            variants["videos.get"] = lambda: call("videos.get", {"video_id": ids[next(turn) % 500]})
            timed = interleaved(variants, args.samples * 10, block=BLOCK * 4, warmup=WARMUP * 5)
            cursor_table(timed, args)
            get_under_load_through_worker(
                variants["videos.get"], stack.broker_url, stack.backend_url, args, ""
            )
        # Searches on workers of their own (SEARCH_QUEUE): the requests worker hands each
        # over, one search worker process runs them.
        own = {"SEARCH_QUEUE": "videos.search"}
        requests = WorkerProcess(
            WorkerSpec(conf=OWN_QUEUE, quiet_loggers=("celery.app.trace",), env=own),
            env,
            stack.log_path("requests-worker"),
        )
        searching = WorkerProcess(
            WorkerSpec(queues="videos.search", concurrency=1, env=own),
            env,
            stack.log_path("searches-worker"),
        )
        with requests, searching:
            requests.wait_ready(lambda: call("videos.get", {"video_id": ids[0]}, timeout=3))
            get_under_load_through_worker(
                lambda: call("videos.get", {"video_id": ids[next(turn) % 500]}),
                stack.broker_url,
                stack.backend_url,
                args,
                ", searches on a worker of their own (SEARCH_QUEUE, 1 process)",
            )
        app.close()


def cursor_table(timed: dict[str, Any], args: argparse.Namespace) -> None:
    against_get(
        timed,
        f"cursor pages of {PAGE_SIZE} (page + exact total) against a get, end to end through "
        f"a worker, {args.videos:,} videos, {args.samples * 10} samples each, ms",
        ("embedded Redis broker and backend", "prefork, 2 children"),
        "a plain Celery caller (JSON) sends each and waits for its envelope; the cursors are "
        "the worker's next_cursor; interleaved in blocks",
        "cursor pages p95 <= 2x a get's, end to end",
    )


# p95 (ms) of each search at 10,000,000 videos before migration 0025, when searches read
# the trigram indexes of ``videos``: the run of 2026-12-05 23:12 UTC (embedded
# PostgreSQL, shared_buffers=6GB, work_mem=64MB, 5 samples; bench/README.md). Drawn
# beside a 10M run's own figures, which cannot time that layout any more.
BEFORE_10M = {
    "no match": 1.5,
    "selective": 82.9,
    "medium": 68.5,
    "notes only": 45.2,
    "broad": 109,
    "3 characters": 40.1,
    "medium + mall": 68.8,
    "broad + mall": 119,
    "operator, 2 malls": 89.8,
    "tenant, 1 pin": 83.9,
    "medium, trash": 37.5,
    "status + dates": 195,
    "no proxy": 116,
    "old, past the cap": 320,
}


def chart(p95s: dict[str, tuple[float, float]], folder: Path, videos: int) -> None:
    from bench.charts import bars

    names = list(p95s)
    series = {
        "v1.1: exact total (one window count)": [p95s[name][0] for name in names],
        "v1.2: total capped at 10,000": [p95s[name][1] for name in names],
    }
    if videos == 10_000_000:
        series = {
            "before: trigram indexes of videos (2026-12-05)": [
                BEFORE_10M.get(name, float("nan")) for name in names
            ],
            "now: video_search, by period or one scan": series["v1.2: total capped at 10,000"],
        }
    # Without --before there is no v1.1 bar to draw (and an axis of NaNs is refused).
    series = {k: v for k, v in series.items() if any(x == x for x in v)}
    drawn = bars(
        folder / ("search-10m.png" if videos == 10_000_000 else "search.png"),
        f"videos.list(q=...) page 1 + total, p95, {videos:,} videos",
        names,
        series,
        unit="ms",
        target=TARGET_MS,
        log_scale=True,
    )
    print(f"chart written to {drawn}\n", flush=True)


def run(url: str, args: argparse.Namespace) -> int:
    catalogue = Catalogue(url, args.repository)
    p95s = searches(catalogue, args)
    if args.chart:
        chart(p95s, args.chart, args.videos)
    if not args.only:
        marks = Landmarks.of(catalogue)
        cursor_pages(catalogue, marks, args)
        if args.worker:
            cursor_pages_through_worker(url, marks, args)
        get_under_load(catalogue, url, marks, args)
    catalogue.dispose()
    return 0


def dataset_arguments(options: argparse.ArgumentParser) -> None:
    """The options of this bench's data set, which ``bench.totals`` shares (and reuses)."""
    options.add_argument("--videos", type=int, default=DEFAULT_VIDEOS)
    options.add_argument("--samples", type=int, default=30)
    options.add_argument("--seed", type=int, default=DEFAULT_SEED)
    options.add_argument("--trashed", type=float, default=DEFAULT_TRASHED)
    options.add_argument("--keep", action="store_true", help="keep (and reuse) the data")
    options.add_argument("--database-url", help="use this server instead of an embedded one")
    options.add_argument("--home", type=Path, default=HOME, help="embedded server home")
    options.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the embedded server (e.g. shared_buffers=6GB), as production sets it",
    )


def pg_settings(args: argparse.Namespace) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in args.pg_setting]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit("--pg-setting takes NAME=VALUE")
    return dict(pairs)


@bench("search")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("search", __doc__)
    dataset_arguments(options)
    options.add_argument("--only", action="append", help="run cases whose name contains this")
    options.add_argument("--explain-case", default=EXPLAIN_CASE, help="case whose plans to print")
    options.add_argument(
        "--chart",
        type=Path,
        nargs="?",
        const=CHARTS,
        help=f"draw p95 per search (v1.1 and now) as search.png in this folder (default {CHARTS})",
    )
    options.add_argument(
        "--before",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also time v1.1's statement for each search (a scan of every row since "
        "migration 0025)",
    )
    options.add_argument("--callers", type=int, default=4, help="searching callers under load")
    options.add_argument(
        "--worker",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the cursor pages end to end through a worker (default on)",
    )
    options.add_argument("--get-samples", type=int, default=2000, help="gets timed per phase")
    options.add_argument(
        "--repository",
        help="module:Class of another implementation of list to measure, built on the unit "
        "of work's connection (default: the handler's own)",
    )
    args = options.parse_args(argv)
    with Server(args.database_url, args.home, args.keep, pg_settings(args)) as server:
        try:
            started = time.perf_counter()
            print(prepare(server, args), flush=True)
            log(f"ready in {time.perf_counter() - started:.0f}s")
            return run(server.url(DATABASE), args)
        finally:
            if args.database_url and not args.keep:
                server.drop(DATABASE)


if __name__ == "__main__":
    sys.exit(main())
