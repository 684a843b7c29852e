"""Totals bench: exact list totals and statistics from the trigger-kept figures
(migrations 0008 and 0009), against counting the rows, and what the triggers cost
writers.

Three tables, on ``bench.dataset``'s catalog (``--videos``, default 1,000,000, 1% in
the trash; the same database as ``bench.search``, reused with ``--keep``):

1. **Totals.** For each filter combination the contract allows without ``q`` (scope,
   trash, mall, pin, status, has_proxy, date ranges whose bounds are not midnights),
   the repository's total as ``list`` takes it (``kept``: figures summed, partial edge
   days counted from the list indexes) against ``count(*)`` of the same conditions
   through the same indexes (``count``: how every total was taken before), interleaved
   in blocks of ``BLOCK``. ``=`` when both gave the same number. Then a whole page 1
   (``list``: total and page) against a ``get`` of one video, in the repository (the
   end-to-end ratio, through the broker, is ``bench.roundtrip``'s). Target: DB p95 of
   the page with its total <= 20 ms (at 10M rows: ``--videos 10000000``).
2. **Statistics.** The full refresh's two queries (the global figure and every mall)
   from the figures, against the same aggregate over ``videos``. Target: <= 1 s.
3. **Writers.** What another service's statements cost with the triggers and without
   them (the same statement in a transaction that is rolled back; the triggers are
   disabled inside it for the baseline), interleaved.

Each figure: ``--samples`` calls after 3 warm-up calls, one connection, milliseconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection, func, select, text

from bench.common import Table, log, run_label, summary
from bench.dataset import Server
from bench.listing import make_engine
from bench.search import DATABASE, dataset_arguments, prepare
from handlers.access import UNRESTRICTED, Scope
from schemas.requests import ListVideos
from worker.adapters.postgres.rooms.catalogue import PostgresCatalogue
from worker.adapters.postgres.rooms.figures import PostgresFigures
from worker.adapters.postgres.rooms.query import STORED_BYTES, videos

WARMUP = 3
BLOCK = 5
TOTAL_TARGET_MS = 20.0
REFRESH_TARGET_MS = 1000.0
TRIGGERS = ("videos_count_inserted", "videos_count_updated", "videos_count_deleted")


@dataclass(frozen=True)
class Case:
    name: str
    scope: Scope
    filters: dict[str, Any]

    def query(self, page_size: int = 20) -> ListVideos:
        return ListVideos(page_size=page_size, **self.filters)


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return (time.perf_counter() - started) * 1000, result


def _interleaved(conn: Connection, actions: Sequence[Callable[[], Any]], samples: int):
    """Times of each action, run in turn in blocks; each call in a rolled-back transaction."""
    times: list[list[float]] = [[] for _ in actions]
    results: list[Any] = [None] * len(actions)
    for i, action in enumerate(actions):
        for _ in range(WARMUP):
            action()
            conn.rollback()
        results[i] = action()
        conn.rollback()
    while len(times[0]) < samples:
        for i, action in enumerate(actions):
            for _ in range(BLOCK):
                elapsed, _ = _timed(action)
                conn.rollback()
                times[i].append(elapsed)
    return [summary(t) for t in times], results


def make_cases(conn: Connection) -> list[Case]:
    busiest_mall, busiest_pin = conn.execute(
        select(videos.c.mall_id, videos.c.pin_id)
        .group_by(videos.c.mall_id, videos.c.pin_id)
        .order_by(func.count().desc())
        .limit(1)
    ).one()
    other_mall = conn.execute(
        select(videos.c.mall_id).where(videos.c.mall_id != busiest_mall).limit(1)
    ).scalar_one()
    newest = conn.execute(select(func.max(videos.c.uploaded_at))).scalar_one()
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


def totals_table(conn: Connection, args: argparse.Namespace) -> Table:
    repo = PostgresCatalogue(conn)
    table = Table(
        f"list totals, {args.videos:,} videos, {args.samples} samples, ms ({run_label()})",
        ["case", "videos", "same", "kept p50", "kept p95", "count p50", "count p95",
         "count / kept", "list p50", "list p95", "get p50", "list / get", "ok"],
    )  # fmt: skip
    some_id = conn.execute(select(videos.c.id).limit(1)).scalar_one()
    ok_count = 0
    cases = make_cases(conn)
    for case in cases:
        log(f"totals: {case.name}")
        query = case.query()
        (kept, counted, listed, got), (k, c, _, _) = _interleaved(
            conn,
            [
                partial(repo._total, case.scope, query),
                partial(repo._count, case.scope, query),
                partial(repo.list, case.scope, query),
                partial(repo.get, UNRESTRICTED, some_id),
            ],
            args.samples,
        )
        list_over_get = listed.p50 / got.p50
        ok = listed.p95 <= TOTAL_TARGET_MS and k == c
        ok_count += ok
        table.add(
            case.name, f"{c:,}", "=" if k == c else f"{k:,}", kept.p50, kept.p95, counted.p50,
            counted.p95, f"{counted.p50 / kept.p50:.1f}x", listed.p50, listed.p95, got.p50,
            f"{list_over_get:.2f}x", "yes" if ok else "NO",
        )  # fmt: skip
    table.notes.append(
        f"kept: the total from the trigger-kept figures; count: count(*) of the same "
        f"conditions; list / get: page 1 with its total over a get, in the repository "
        f"(end to end, through the broker: python -m bench.roundtrip); ok: list (page 1 "
        f"and its total) p95 <= {TOTAL_TARGET_MS:.0f} ms and the same total"
    )
    table.notes.append(
        f"every list's DB time p95 <= {TOTAL_TARGET_MS:.0f} ms, total exact, {args.videos:,} "
        f"rows: {'yes' if ok_count == len(cases) else 'NO'} ({ok_count} of {len(cases)})"
    )
    return table


def _raw_refresh(conn: Connection) -> Any:
    """The refresh as it was: the same figures aggregated over ``videos``."""
    live = videos.c.trashed_at.is_(None)
    columns = (
        func.count().filter(live),
        func.coalesce(func.sum(STORED_BYTES).filter(live), 0),
        func.coalesce(func.sum(videos.c.duration_seconds).filter(live), 0),
        func.count().filter(~live),
    )
    conn.execute(select(*columns)).one()
    return conn.execute(select(videos.c.mall_id, *columns).group_by(videos.c.mall_id)).all()


def stats_table(conn: Connection, args: argparse.Namespace) -> Table:
    repo = PostgresFigures(conn)
    at = datetime.now(UTC)
    samples = max(5, args.samples // 3)

    def kept() -> Any:
        return [repo.stats(UNRESTRICTED, None, at), *repo.stats_per_mall(at)]

    (ours, raw), (figures, rows) = _interleaved(conn, [kept, lambda: _raw_refresh(conn)], samples)
    same = sorted((s.mall_id, s.total_videos) for s in figures[1:]) == sorted(
        (r[0], r[1]) for r in rows
    )
    table = Table(
        f"statistics refresh (global + every mall), {args.videos:,} videos, {samples} "
        f"samples, ms ({run_label()})",
        ["refresh", "p50", "p95", "raw p50", "raw p95", "raw / kept", "same", "ok"],
    )
    ok = ours.p95 <= REFRESH_TARGET_MS and same
    table.add(
        "from the figures", ours.p50, ours.p95, raw.p50, raw.p95,
        f"{raw.p50 / ours.p50:.0f}x", "yes" if same else "NO", "yes" if ok else "NO",
    )  # fmt: skip
    table.notes.append(f"ok: p95 <= {REFRESH_TARGET_MS:.0f} ms and the same counts per mall")
    return table


def writers_table(conn: Connection, args: argparse.Namespace) -> Table:
    """Each statement with and without the triggers, in a rolled-back transaction."""
    mall_id, pin_id = conn.execute(select(videos.c.mall_id, videos.c.pin_id).limit(1)).one()
    some = [str(v) for v in conn.execute(select(videos.c.id).limit(1000)).scalars()]

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
        f"writers' statements with the triggers and without, {args.samples} samples, ms "
        f"({run_label()})",
        ["statement", "with p50", "with p95", "without p50", "without p95", "with / without"],
    )
    disable = "; ".join(f"ALTER TABLE videos DISABLE TRIGGER {t}" for t in TRIGGERS)
    for name, statement in statements:
        log(f"writers: {name}")

        def without(statement: Callable[[], Any] = statement) -> Any:
            conn.execute(text(disable))
            started = time.perf_counter()
            statement()
            return (time.perf_counter() - started) * 1000

        def with_triggers(statement: Callable[[], Any] = statement) -> Any:
            started = time.perf_counter()
            statement()
            return (time.perf_counter() - started) * 1000

        times: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(WARMUP):
            for action in (with_triggers, without):
                action()
                conn.rollback()
        while len(times["with"]) < args.samples:
            for key, action in (("with", with_triggers), ("without", without)):
                for _ in range(BLOCK):
                    times[key].append(action())
                    conn.rollback()
        w, wo = summary(times["with"]), summary(times["without"])
        table.add(name, w.p50, w.p95, wo.p50, wo.p95, f"{w.p50 / wo.p50:.2f}x")
    table.notes.append("the statement's own time; the transaction is rolled back after each")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.totals",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dataset_arguments(parser)
    args = parser.parse_args(argv)
    with Server(args.database_url, args.home, args.keep) as server:
        try:
            print(prepare(server, args), flush=True)
            engine = make_engine(server.url(DATABASE))
            with engine.connect() as conn:
                # The writers' rows the load left are folded first, as the refresh does.
                PostgresFigures(conn).fold_figures()
                conn.commit()
                for build in (totals_table, stats_table, writers_table):
                    build(conn, args).print()
            engine.dispose()
            return 0
        finally:
            if args.database_url and not args.keep:
                server.drop(DATABASE)


if __name__ == "__main__":
    sys.exit(main())
