"""The trigger-kept figures (migrations 0008 to 0010) stay exact under other services' writes.

Four writers, each on its own connection, insert, update (status, proxy, pin, trash,
upload time, size, duration, notes) and delete rows at once, in transactions of one to
three statements, some rolled back; they share malls, pins, days and months, so their
figures meet on the same keys, each writer on rows of its own. Afterwards the figures
equal a fresh aggregate of ``videos`` to the byte, and every list total the contract
allows without ``q`` equals ``count(*)``, before and after the writers' slots are folded
together.
"""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text

from handlers.access import Scope
from schemas import ListVideos
from worker.adapters.postgres import figures
from worker.adapters.postgres.rooms.catalogue import PostgresCatalogue
from worker.adapters.postgres.rooms.figures import PostgresFigures
from worker.adapters.postgres.rooms.query import list_filters

WRITERS = 4
ROUNDS = 40
NOW = datetime.now(UTC).replace(microsecond=0)
STATUSES = ("pending", "processing", "completed", "failed")

# Every figure against a fresh aggregate of the rows: what `videoworker figures check`
# runs. It sums the triggers' own video_figure (migration 0010), so what this compares
# is the triggers' bookkeeping; the rule's values are checked by hand in
# test_video_figure.py.
EXACT = {
    "video_counts_daily": 0,
    "video_counts_monthly": 0,
    "video_counts_mall_daily": 0,
    "video_counts_mall_monthly": 0,
}


def _uploaded(rng: random.Random) -> datetime:
    """Over three months, with midnights and month starts, where a range is cut."""
    instant = NOW - timedelta(seconds=rng.randrange(0, 95 * 86400))
    if rng.random() < 0.15:
        instant = instant.replace(hour=0, minute=0, second=0)
    if rng.random() < 0.05:
        instant = instant.replace(day=1, hour=0, minute=0, second=0)
    return instant


def _duration(rng: random.Random) -> float | None:
    return rng.choice([None, float("nan"), float("inf"), round(rng.uniform(1, 3600), 3)])


class Writer(threading.Thread):
    """Another service writing ``videos``: its own rows, the shared malls and pins."""

    def __init__(self, engine, pins: list[tuple[uuid.UUID, uuid.UUID]], seed: int) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.pins = pins
        self.rng = random.Random(seed)
        self.own: list[uuid.UUID] = []
        self.error: BaseException | None = None
        self.statements = 0

    def run(self) -> None:
        try:
            with self.engine.connect() as conn:
                for _ in range(ROUNDS):
                    self._transaction(conn)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def _transaction(self, conn) -> None:
        added: list[uuid.UUID] = []
        removed: set[uuid.UUID] = set()
        with conn.begin() as tx:
            for _ in range(self.rng.randint(1, 3)):
                self._statement(conn, added, removed)
                self.statements += 1
            if self.rng.random() < 0.15:
                tx.rollback()
                return
        self.own = [v for v in self.own if v not in removed] + added

    def _some(self, removed: set[uuid.UUID]) -> list[uuid.UUID]:
        alive = [v for v in self.own if v not in removed]
        return self.rng.sample(alive, min(len(alive), self.rng.randint(1, 12)))

    def _statement(self, conn, added: list[uuid.UUID], removed: set[uuid.UUID]) -> None:
        rng = self.rng
        kind = rng.choice(
            [
                "insert",
                "insert",
                "status",
                "proxy",
                "pin",
                "trash",
                "upload",
                "size",
                "notes",
                "delete",
            ]
        )
        if kind == "insert" or not self.own:
            rows = []
            for _ in range(rng.randint(1, 25)):
                mall_id, pin_id = rng.choice(self.pins)
                with_proxy = rng.random() < 0.5
                video_id = uuid.uuid4()
                rows.append(
                    {
                        "id": video_id,
                        "mall_id": mall_id,
                        "pin_id": pin_id,
                        "path": f"videos/{mall_id}/original/{video_id}.mp4",
                        "size": rng.randrange(1, 5 * 10**9),
                        "proxy": f"videos/{mall_id}/proxy/{video_id}.mp4" if with_proxy else None,
                        "proxy_size": rng.randrange(1, 10**8) if with_proxy else None,
                        "duration": _duration(rng),
                        "status": rng.choice(STATUSES),
                        "uploaded_at": _uploaded(rng),
                        "trashed_at": NOW if rng.random() < 0.2 else None,
                    }
                )
                added.append(video_id)
            conn.execute(
                text(
                    "INSERT INTO videos (id, mall_id, pin_id, original_filename, original_path,"
                    " file_size_bytes, proxy_path, proxy_size_bytes, duration_seconds,"
                    " processing_status, uploaded_at, trashed_at)"
                    " VALUES (:id, :mall_id, :pin_id, 'clip.mp4', :path, :size, :proxy,"
                    " :proxy_size, :duration, :status, :uploaded_at, :trashed_at)"
                ),
                rows,
            )
            return
        ids = self._some(removed)
        if kind == "delete":
            conn.execute(text("DELETE FROM videos WHERE id = ANY(:ids)"), {"ids": ids})
            removed.update(ids)
            return
        mall_id, pin_id = rng.choice(self.pins)
        assignments = {
            "status": ("processing_status = :value", rng.choice(STATUSES)),
            "proxy": (
                "proxy_path = CASE WHEN :value THEN 'videos/p.mp4' END,"
                " proxy_size_bytes = CASE WHEN :value THEN 1000 END",
                rng.random() < 0.5,
            ),
            "pin": ("mall_id = :mall, pin_id = :pin", None),
            "trash": (
                "trashed_at = CASE WHEN trashed_at IS NULL THEN now() END",
                None,
            ),
            "upload": ("uploaded_at = :value", _uploaded(rng)),
            "size": (
                "file_size_bytes = :value, duration_seconds = :duration",
                rng.randrange(1, 10**9),
            ),
            "notes": ("operator_notes = :value", f"reviewed {rng.random()}"),
        }
        assignment, value = assignments[kind]
        conn.execute(
            text(f"UPDATE videos SET {assignment} WHERE id = ANY(:ids)"),  # noqa: S608
            {
                "ids": ids,
                "value": value,
                "mall": mall_id,
                "pin": pin_id,
                "duration": _duration(rng),
            },
        )


class Folder(threading.Thread):
    """The stats refresh folding the writers' slots together while they write."""

    def __init__(self, engine, writers: list[Writer]) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.writers = writers
        self.folded = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while any(w.is_alive() for w in self.writers):
                with self.engine.begin() as conn:
                    self.folded += PostgresFigures(conn).fold_figures()
        except BaseException as exc:
            self.error = exc


def _ranges() -> list[tuple[datetime | None, datetime | None]]:
    midnight = NOW.replace(hour=0, minute=0, second=0)
    return [
        (None, None),
        (NOW - timedelta(days=70, hours=3, minutes=17), NOW - timedelta(days=4, hours=2)),
        (midnight - timedelta(days=61), midnight - timedelta(days=3)),
        (NOW - timedelta(days=20, hours=5), None),
        (None, NOW - timedelta(days=33, minutes=41)),
        (NOW - timedelta(days=9, hours=6), NOW - timedelta(days=8, hours=20)),
    ]


def test_four_concurrent_writers_leave_the_figures_exact_and_every_total_equal_to_count(
    engine, catalog
):
    malls = [catalog.mall(f"Mall {m}") for m in range(2)]
    pins = [(mall, catalog.pin(mall, f"Pin {p}")) for mall in malls for p in range(3)]
    writers = [Writer(engine, pins, seed) for seed in range(WRITERS)]
    folder = Folder(engine, writers)

    for writer in writers:
        writer.start()
    folder.start()
    for writer in writers:
        writer.join(timeout=300)
    folder.join(timeout=60)

    assert [w.error for w in writers] == [None] * WRITERS
    assert folder.error is None
    assert folder.folded > 0, "no fold ran beside the writers"
    assert sum(w.statements for w in writers) >= WRITERS * ROUNDS
    _assert_exact(engine, malls, pins)
    with engine.begin() as conn:
        PostgresFigures(conn).fold_figures()
    with engine.connect() as conn:
        assert (
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM video_counts_daily WHERE slot <> 0)"
                    " + (SELECT count(*) FROM video_counts_mall_monthly WHERE slot <> 0)"
                )
            ).scalar_one()
            == 0
        )
    _assert_exact(engine, malls, pins)


def _assert_exact(engine, malls, pins) -> None:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM videos")).scalar_one()
        assert rows > 300, "the writers left too little to compare"
        assert figures.differences(conn) == EXACT

        repository = PostgresCatalogue(conn)
        scopes = [
            Scope.admin(),
            Scope.operator([malls[0]]),
            Scope.tenant([pins[0][1], pins[4][1]]),
        ]
        compared = 0
        for scope, trashed, mall, pin, status, proxy, (after, before) in itertools.product(
            scopes,
            (False, True),
            (None, malls[1]),
            (None, pins[0][1]),
            (None, *STATUSES),
            (None, True, False),
            _ranges(),
        ):
            query = ListVideos(
                mall_id=None if mall is None else str(mall),
                pin_id=None if pin is None else str(pin),
                processing_status=status,
                has_proxy=proxy,
                uploaded_after=None if after is None else after.isoformat(),
                uploaded_before=None if before is None else before.isoformat(),
                trashed=trashed,
                page_size=1,
            )
            counted = conn.execute(
                select(func.count()).where(
                    *list_filters(scope, query, trashed=trashed).conditions()
                )
            ).scalar_one()
            assert repository._total(scope, query) == counted, (scope, query)
            compared += counted > 0
        assert compared > 500, "too few combinations with videos in them"


def test_truncate_empties_the_figures(engine, catalog):
    mall = catalog.mall()
    catalog.video(mall, catalog.pin(mall), upload_objects=False)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT sum(videos) FROM video_counts_monthly")).scalar() == 1
        conn.execute(text("TRUNCATE videos CASCADE"))
        for table in EXACT:
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0  # noqa: S608


def test_an_update_that_moves_no_figure_writes_no_figure_row(engine, catalog):
    mall = catalog.mall()
    video = catalog.video(mall, catalog.pin(mall), upload_objects=False)
    with engine.begin() as conn:
        before = conn.execute(text("SELECT count(*) FROM video_counts_daily")).scalar_one()
        conn.execute(
            text("UPDATE videos SET operator_notes = 'seen', legal_hold = true WHERE id = :id"),
            {"id": video["id"]},
        )
        after = conn.execute(text("SELECT count(*) FROM video_counts_daily")).scalar_one()
    assert before == after == 1


def test_figures_check_finds_writes_that_bypassed_the_triggers_and_rebuild_mends_them(
    engine, catalog, services
):
    """A write with the triggers off (here ``session_replication_role = replica``, as a
    logical replication apply or a restore with --disable-triggers runs) is not in the
    figures: ``videoworker figures check`` says so and exits 1, ``rebuild`` recomputes
    them, and the list total is right again."""
    import json

    from tests.support import run_cli

    mall = catalog.mall()
    pin = catalog.pin(mall)
    catalog.video(mall, pin, upload_objects=False)
    assert json.loads(run_cli("figures", "check", env=services, check=0).stdout)["consistent"]

    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            text(
                "INSERT INTO videos (id, mall_id, pin_id, original_filename, original_path,"
                " file_size_bytes) VALUES (gen_random_uuid(), :mall, :pin, 'restored.mp4',"
                " 'videos/restored.mp4', 10)"
            ),
            {"mall": mall, "pin": pin},
        )
    with engine.connect() as conn:
        repository = PostgresCatalogue(conn)
        assert repository._total(Scope.admin(), ListVideos()) == 1  # the figures missed it

    checked = json.loads(run_cli("figures", "check", env=services, check=1).stdout)
    assert checked["consistent"] is False
    assert checked["differing"]["video_counts_monthly"] > 0

    rebuilt = json.loads(run_cli("figures", "rebuild", env=services, check=0).stdout)
    assert rebuilt["rebuilt"]["video_counts_monthly"] >= 1
    assert json.loads(run_cli("figures", "check", env=services, check=0).stdout)["consistent"]
    with engine.connect() as conn:
        assert PostgresCatalogue(conn)._total(Scope.admin(), ListVideos()) == 2


def test_upserts_and_merge_by_other_services_keep_the_figures_exact(engine, catalog):
    """Statements that insert, update and delete at once fire each action's trigger
    with its own transition table: INSERT ... ON CONFLICT DO UPDATE, and MERGE."""
    mall = catalog.mall()
    pins = [catalog.pin(mall, f"Pin {n}") for n in range(2)]
    kept = [
        catalog.video(mall, pins[n % 2], upload_objects=False, processing_status="pending")["id"]
        for n in range(4)
    ]
    with engine.begin() as conn:
        # One new row, one existing row moved to another pin, status and proxy.
        conn.execute(
            text(
                "INSERT INTO videos (id, mall_id, pin_id, original_filename, original_path,"
                " file_size_bytes, processing_status)"
                " VALUES (gen_random_uuid(), :mall, :pin, 'new.mp4', 'videos/new.mp4', 7,"
                " 'processing'), (:existing, :mall, :pin, 'x.mp4', 'videos/x.mp4', 9, 'failed')"
                " ON CONFLICT (id) DO UPDATE SET pin_id = excluded.pin_id,"
                " processing_status = excluded.processing_status,"
                " file_size_bytes = excluded.file_size_bytes, proxy_path = 'videos/p.mp4'"
            ),
            {"mall": mall, "pin": pins[1], "existing": kept[0]},
        )
        # MERGE: update one, delete one, insert one.
        conn.execute(
            text(
                "MERGE INTO videos AS v USING (VALUES (CAST(:a AS uuid), 'update'),"
                " (CAST(:b AS uuid), 'delete'), (gen_random_uuid(), 'insert')) AS s(id, act)"
                " ON v.id = s.id"
                " WHEN MATCHED AND s.act = 'update' THEN UPDATE SET"
                " processing_status = 'completed', trashed_at = now()"
                " WHEN MATCHED AND s.act = 'delete' THEN DELETE"
                " WHEN NOT MATCHED THEN INSERT (id, mall_id, pin_id, original_filename,"
                " original_path, file_size_bytes, uploaded_at)"
                " VALUES (s.id, :mall, :pin, 'merged.mp4', 'videos/merged.mp4', 3,"
                " now() - interval '40 days')"
            ),
            {"a": kept[1], "b": kept[2], "mall": mall, "pin": pins[0]},
        )
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM videos")).scalar_one() == 5
        assert figures.differences(conn) == EXACT


def test_migration_0009_fills_the_mall_figures_from_the_pin_figures(
    engine, services, catalog, deps
):
    """Rows written while the database was at 0008 (per-pin figures only) are in the
    per-mall figures 0009 fills, to the byte; writes after it reach all four tables."""
    from worker.adapters.postgres.migrate import downgrade, upgrade

    url = services["DATABASE_URL"]
    malls = [catalog.mall(f"Mall {n}") for n in range(2)]
    pins = [catalog.pin(mall) for mall in malls for _ in range(2)]
    downgrade(url, "0008")
    try:
        for n in range(12):
            pin = pins[n % 4]
            catalog.video(
                malls[n % 4 // 2],
                pin,
                upload_objects=False,
                proxy=n % 3 != 0,
                processing_status=STATUSES[n % 4],
                uploaded_at=NOW - timedelta(days=17 * n, hours=n),
                duration_seconds=[12.5, None, float("inf")][n % 3],
                trashed_at=NOW if n % 5 == 0 else None,
            )
        with engine.connect() as conn:
            missing = conn.execute(
                text("SELECT to_regclass('video_counts_mall_monthly') IS NULL")
            ).scalar_one()
            assert missing
    finally:
        upgrade(url, "head")
    catalog.video(malls[1], pins[3], upload_objects=False)
    with engine.connect() as conn:
        assert figures.differences(conn) == EXACT
        mall_videos = conn.execute(
            text("SELECT sum(videos) FROM video_counts_mall_monthly")
        ).scalar_one()
    assert mall_videos == 13
