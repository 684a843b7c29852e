"""Totals bench: exact list totals and statistics from the trigger-kept figures
(migrations 0008 and 0009), against counting the rows, and what the triggers cost
writers.

Three tables, on ``bench.dataset``'s catalog (``--videos``, default 1,000,000, 1% in
the trash; the same database as ``bench.search``, reused with ``--keep``):

1. **Totals.** For each filter combination the contract allows without ``q`` (scope,
   trash, mall, pin, status, has_proxy, date ranges whose bounds are not midnights),
   the total as ``videos.list`` takes it (``kept``: figures summed, partial edge days
   counted from the list indexes; the handler asked for a page past the end, which
   runs nothing but the total) against ``count(*)`` of the same conditions, written by
   the bench, through the same indexes (``count``: how every total was taken before),
   interleaved in blocks of ``BLOCK``. ``=`` when both gave the same number. Then a
   whole page 1 (``list``: total and page) against a ``get`` of one video, through the
   handlers on a unit of work (the end-to-end ratio, through the broker, is
   ``bench.roundtrip``'s). Target: DB p95 of
   the page with its total <= 20 ms (at 10M rows: ``--videos 10000000``).
2. **Statistics.** ``handlers.refresh_stats`` (the fold, then the global figure and
   every mall from the figures), against the same aggregate over ``videos``.
   Target: <= 1 s.
3. **Writers.** What another service's statements cost with the triggers and without
   them (the same statement in a transaction that is rolled back; the triggers are
   disabled inside it for the baseline), interleaved.

Each figure: ``--samples`` calls after 3 warm-up calls, milliseconds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, text

from bench.common import Catalogue
from bench.dataset import Server
from bench.harness import Method, Table, bench, interleaved, log, parser
from bench.search import DATABASE, dataset_arguments, pg_settings, prepare
from handlers.access import UNRESTRICTED, Scope
from schemas.requests import ListVideos

WARMUP = 3
BLOCK = 5
TOTAL_TARGET_MS = 20.0
REFRESH_TARGET_MS = 1000.0
TRIGGERS = ("videos_count_inserted", "videos_count_updated", "videos_count_deleted")
# The refresh as it was: the same figures aggregated over ``videos`` (stored bytes are
# originals plus proxies).
RAW_FIGURES = (
    "count(*) FILTER (WHERE trashed_at IS NULL),"
    " coalesce(sum(file_size_bytes + coalesce(proxy_size_bytes, 0))"
    " FILTER (WHERE trashed_at IS NULL), 0),"
    " coalesce(sum(duration_seconds) FILTER (WHERE trashed_at IS NULL), 0),"
    " count(*) FILTER (WHERE trashed_at IS NOT NULL)"
)


@dataclass(frozen=True)
class Case:
    name: str
    scope: Scope
    filters: dict[str, Any]

    def query(self, page_size: int = 20) -> ListVideos:
        return ListVideos(page_size=page_size, **self.filters)


def make_cases(conn: Connection) -> list[Case]:
    busiest_mall, busiest_pin = conn.exec_driver_sql(
        "SELECT mall_id, pin_id FROM videos GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1"
    ).one()
    other_mall = conn.exec_driver_sql(
        "SELECT mall_id FROM videos WHERE mall_id <> %(mall)s LIMIT 1", {"mall": busiest_mall}
    ).scalar_one()
    newest = conn.exec_driver_sql("SELECT max(uploaded_at) FROM videos").scalar_one()
    conn.rollback()
    # Bounds that are not midnights: the edges' partial days are counted from the index.
    month = {
        "uploaded_after": (newest - timedelta(days=120, hours=7, minutes=13)).isoformat(),
        "uploaded_before": (newest - timedelta(days=90, hours=3)).isoformat(),
    }
    year = {
        "uploaded_after": (newest - timedelta(days=400, hours=5)).isoformat(),
        "uploaded_before": (newest - timedelta(days=20, hours=11)).isoformat(),
    }
    mall, pin = str(busiest_mall), str(busiest_pin)
    operator = Scope.operator([busiest_mall, other_mall])
    tenant = Scope.tenant([busiest_pin])
    admin = UNRESTRICTED
    return [
        Case("no filter", admin, {}),
        Case("status", admin, {"processing_status": "completed"}),
        Case("has_proxy", admin, {"has_proxy": True}),
        Case("no proxy", admin, {"has_proxy": False}),
        Case("mall", admin, {"mall_id": mall}),
        Case("pin", admin, {"pin_id": pin}),
        Case("mall + status", admin, {"mall_id": mall, "processing_status": "completed"}),
        Case("pin + status + proxy", admin, {"pin_id": pin, "processing_status": "completed",
                                             "has_proxy": True}),
        Case("month range", admin, month),
        Case("year range", admin, year),
        Case("mall + year range", admin, {"mall_id": mall, **year}),
        Case("every filter", admin, {"mall_id": mall, "pin_id": pin, "has_proxy": True,
                                     "processing_status": "completed", **year}),
        Case("trash", admin, {"trashed": True}),
        Case("trash + mall + month", admin, {"trashed": True, "mall_id": mall, **month}),
        Case("operator (2 malls)", operator, {}),
        Case("operator + status + year", operator, {"processing_status": "failed", **year}),
        Case("tenant (1 pin)", tenant, {}),
        Case("tenant + no proxy + month", tenant, {"has_proxy": False, **month}),
    ]  # fmt: skip


def totals_table(catalogue: Catalogue, some_id: Any, args: argparse.Namespace) -> Table:
    table = Table(
        f"list totals, {args.videos:,} videos, {args.samples} samples, ms",
        ["case", "videos", "same", "kept p50", "kept p95", "count p50", "count p95",
         "count / kept", "list p50", "list p95", "get p50", "list / get", "ok"],
    )  # fmt: skip
    ok_count = 0
    cases = make_cases_of(catalogue)
    for case in cases:
        log(f"totals: {case.name}")
        query = case.query()
        k = catalogue.total(case.scope, query)
        c = catalogue.count(case.scope, case.filters)
        timed = interleaved(
            {
                "kept": lambda: catalogue.total(case.scope, query),  # noqa: B023 - run at once
                "count": lambda: catalogue.count(case.scope, case.filters),  # noqa: B023
                "list": lambda: catalogue.list(case.scope, query),  # noqa: B023
                "get": lambda: catalogue.get(UNRESTRICTED, some_id),
            },
            args.samples,
            block=BLOCK,
            warmup=WARMUP,
        )
        kept, counted, listed, got = (timed[n].summary() for n in ("kept", "count", "list", "get"))
        list_over_get = listed.p50 / got.p50
        ok = listed.p95 <= TOTAL_TARGET_MS and k == c
        ok_count += ok
        table.add(
            case.name, c, "=" if k == c else f"{k:,}", kept.p50, kept.p95, counted.p50,
            counted.p95, f"{counted.p50 / kept.p50:.1f}x", listed.p50, listed.p95, got.p50,
            f"{list_over_get:.2f}x", "yes" if ok else "NO",
        )  # fmt: skip
    table.notes.append(
        f"kept: the total from the trigger-kept figures; count: count(*) of the same "
        f"conditions; list / get: page 1 with its total over a get, through the handlers "
        f"(end to end, through the broker: python -m bench.roundtrip); ok: list (page 1 "
        f"and its total) p95 <= {TOTAL_TARGET_MS:.0f} ms and the same total"
    )
    table.verdict(
        f"every list's DB time p95 <= {TOTAL_TARGET_MS:.0f} ms, total exact, {args.videos:,} rows",
        ok_count == len(cases),
        f"{ok_count} of {len(cases)}",
    )
    return table


def make_cases_of(catalogue: Catalogue) -> list[Case]:
    with catalogue.engine.connect() as conn:
        return make_cases(conn)


def stats_table(catalogue: Catalogue, conn: Connection, args: argparse.Namespace) -> Table:
    import handlers
    from schemas import RefreshStats

    samples = max(5, args.samples // 3)

    def refresh() -> Any:
        handlers.refresh_stats(RefreshStats(), catalogue.deps)
        return catalogue.cache.last  # the global figure, then every mall's

    def raw() -> Any:
        conn.exec_driver_sql(f"SELECT {RAW_FIGURES} FROM videos").one()  # noqa: S608
        rows = conn.exec_driver_sql(f"SELECT mall_id, {RAW_FIGURES} FROM videos GROUP BY 1")  # noqa: S608
        return rows.all()

    figures, rows = refresh(), raw()
    conn.rollback()
    same = sorted((s.mall_id, s.total_videos) for s in figures[1:]) == sorted(
        (r[0], r[1]) for r in rows
    )
    timed = interleaved(
        {"ours": refresh, "raw": Method(raw, after=conn.rollback)},
        samples,
        block=BLOCK,
        warmup=WARMUP,
    )
    ours, counted = timed["ours"].summary(), timed["raw"].summary()
    table = Table(
        f"statistics refresh (global + every mall), {args.videos:,} videos, {samples} samples, ms",
        ["refresh", "p50", "p95", "raw p50", "raw p95", "raw / kept", "same", "ok"],
    )
    ok = ours.p95 <= REFRESH_TARGET_MS and same
    table.add(
        "from the figures", ours.p50, ours.p95, counted.p50, counted.p95,
        f"{counted.p50 / ours.p50:.0f}x", "yes" if same else "NO", "yes" if ok else "NO",
    )  # fmt: skip
    table.verdict(
        f"refresh p95 <= {REFRESH_TARGET_MS:.0f} ms and the same counts per mall",
        ok,
        f"{ours.p95:.1f} ms, counts {'the same' if same else 'DIFFERENT'}",
    )
    return table


def writers_table(conn: Connection, args: argparse.Namespace) -> Table:
    """Each statement with and without the triggers, in a rolled-back transaction."""
    mall_id, pin_id = conn.exec_driver_sql("SELECT mall_id, pin_id FROM videos LIMIT 1").one()
    some = [str(v) for (v,) in conn.exec_driver_sql("SELECT id FROM videos LIMIT 1000")]
    conn.rollback()

    def insert(rows: int) -> Callable[[], Any]:
        def run() -> Any:
            conn.execute(
                text(
                    "INSERT INTO videos (id, mall_id, pin_id, original_filename,"
                    " original_path, file_size_bytes, duration_seconds, uploaded_at)"
                    " SELECT gen_random_uuid(), :mall, :pin, 'clip.mp4', 'videos/x', 1000,"
                    " 60, now() - n * interval '1 minute' FROM generate_series(1, :rows) n"
                ),
                {"mall": mall_id, "pin": pin_id, "rows": rows},
            )

        return run

    def update(assignment: str, rows: int) -> Callable[[], Any]:
        return (
            lambda: conn.execute(
                text(f"UPDATE videos SET {assignment} WHERE id = ANY(CAST(:ids AS uuid[]))"),  # noqa: S608
                {"ids": some[:rows]},
            )
        )

    statements = [
        ("insert 1 row", insert(1)),
        ("insert 1,000 rows", insert(1000)),
        ("update status, 1 row", update("processing_status = 'failed'", 1)),
        ("update status, 1,000 rows", update("processing_status = 'failed'", 1000)),
        ("update notes (no figure moves), 1 row", update("operator_notes = 'seen'", 1)),
        ("trash 1 row", update("trashed_at = now()", 1)),
        (
            "delete 1 row",
            lambda: conn.execute(text("DELETE FROM videos WHERE id = :id"), {"id": some[0]}),
        ),
    ]
    table = Table(
        f"writers' statements with the triggers and without, {args.samples} samples, ms",
        ["statement", "with p50", "with p95", "without p50", "without p95", "with / without"],
    )
    disable = "; ".join(f"ALTER TABLE videos DISABLE TRIGGER {t}" for t in TRIGGERS)
    for name, statement in statements:
        log(f"writers: {name}")
        timed = interleaved(
            {
                "with": Method(statement, after=conn.rollback),
                "without": Method(
                    statement, before=lambda: conn.execute(text(disable)), after=conn.rollback
                ),
            },
            args.samples,
            block=BLOCK,
            warmup=WARMUP,
        )
        w, wo = timed["with"].summary(), timed["without"].summary()
        table.add(name, w.p50, w.p95, wo.p50, wo.p95, f"{w.p50 / wo.p50:.2f}x")
    table.notes.append("the statement's own time; the transaction is rolled back after each")
    return table


@bench("totals")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("totals", __doc__)
    dataset_arguments(options)
    args = options.parse_args(argv)
    import handlers
    from schemas import RefreshStats

    with Server(args.database_url, args.home, args.keep, pg_settings(args)) as server:
        try:
            print(prepare(server, args), flush=True)
            catalogue = Catalogue(server.url(DATABASE))
            # The writers' rows the load left are folded first, as the refresh does.
            handlers.refresh_stats(RefreshStats(), catalogue.deps)
            with catalogue.engine.connect() as conn:
                some_id = conn.exec_driver_sql("SELECT id FROM videos LIMIT 1").scalar_one()
                conn.rollback()
                totals_table(catalogue, some_id, args).print()
                stats_table(catalogue, conn, args).print()
                writers_table(conn, args).print()
            catalogue.dispose()
            return 0
        finally:
            if args.database_url and not args.keep:
                server.drop(DATABASE)


if __name__ == "__main__":
    sys.exit(main())
