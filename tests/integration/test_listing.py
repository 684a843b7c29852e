"""videos.list against Postgres: filters alone and combined, order, paging, pin names."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import handlers
from schemas import ListVideos

NOON = datetime(2025, 10, 31, 12, 0, tzinfo=UTC)
STATUSES = ("pending", "processing", "completed", "failed")


@dataclass
class Dataset:
    malls: list[uuid.UUID]
    pins: list[uuid.UUID]  # two per mall: pins[0..1] in malls[0], pins[2..3] in malls[1]
    rows: list[dict[str, Any]]

    def expected(self, query: ListVideos) -> list[uuid.UUID]:
        """The ids the contract says a query returns, newest first then id descending."""

        def keep(row: dict[str, Any]) -> bool:
            return all(
                (
                    query.mall_id is None or row["mall_id"] == query.mall_id,
                    query.pin_id is None or row["pin_id"] == query.pin_id,
                    query.processing_status is None
                    or row["processing_status"] == query.processing_status,
                    query.has_proxy is None or (row["proxy_path"] is not None) == query.has_proxy,
                    query.uploaded_after is None or row["uploaded_at"] >= query.uploaded_after,
                    query.uploaded_before is None or row["uploaded_at"] < query.uploaded_before,
                )
            )

        kept = sorted(
            (r for r in self.rows if keep(r)),
            key=lambda r: (r["uploaded_at"], r["id"]),
            reverse=True,
        )
        return [r["id"] for r in kept]


@pytest.fixture
def dataset(catalog) -> Dataset:
    """32 videos over 2 malls x 2 pins, every status, with and without proxy, 8 days."""
    malls = [catalog.mall("North"), catalog.mall("South")]
    pins = [
        catalog.pin(mall, f"{name} {n}")
        for mall, name in zip(malls, "NS", strict=True)
        for n in (1, 2)
    ]
    rows = []
    for i in range(32):
        pin_index = i % 4
        rows.append(
            catalog.video(
                malls[pin_index // 2],
                pins[pin_index],
                upload_objects=False,
                proxy=i % 3 != 0,
                processing_status=STATUSES[(i + i // 4) % 4],
                uploaded_at=NOON - timedelta(days=i // 4, hours=i % 4),
            )
        )
    return Dataset(malls=malls, pins=pins, rows=rows)


QUERIES = {
    "no filter": lambda d: {},
    "mall": lambda d: {"mall_id": str(d.malls[1])},
    "pin": lambda d: {"pin_id": str(d.pins[2])},
    "status": lambda d: {"processing_status": "completed"},
    "pending status": lambda d: {"processing_status": "pending"},
    "has proxy": lambda d: {"has_proxy": True},
    "has no proxy": lambda d: {"has_proxy": False},
    "after": lambda d: {"uploaded_after": NOON - timedelta(days=3)},
    "before": lambda d: {"uploaded_before": NOON - timedelta(days=5)},
    "date range": lambda d: {
        "uploaded_after": NOON - timedelta(days=6),
        "uploaded_before": NOON - timedelta(days=2),
    },
    "mall and status": lambda d: {"mall_id": str(d.malls[0]), "processing_status": "pending"},
    "mall and no proxy": lambda d: {"mall_id": str(d.malls[0]), "has_proxy": False},
    "pin and status": lambda d: {"pin_id": str(d.pins[1]), "processing_status": "completed"},
    "pin of another mall": lambda d: {"mall_id": str(d.malls[0]), "pin_id": str(d.pins[3])},
    "every filter": lambda d: {
        "mall_id": str(d.malls[1]),
        "pin_id": str(d.pins[3]),
        "processing_status": "failed",
        "has_proxy": True,
        "uploaded_after": NOON - timedelta(days=7),
        "uploaded_before": NOON,
    },
}


@pytest.mark.parametrize("name", QUERIES)
def test_each_filter_alone_and_combined_returns_exactly_the_matching_videos(deps, dataset, name):
    query = ListVideos(**QUERIES[name](dataset), page_size=100)

    result = handlers.list_videos(query, deps)

    expected = dataset.expected(query)
    assert [v.id for v in result.videos] == expected
    assert result.total == len(expected)


def test_the_dataset_exercises_every_filter(dataset):
    """Guards the table above: each filter must actually narrow the result."""
    everything = len(dataset.expected(ListVideos()))
    for name, build in QUERIES.items():
        matched = len(dataset.expected(ListVideos(**build(dataset))))
        if name == "no filter":
            assert matched == everything == 32
        elif name == "pin of another mall":
            assert matched == 0
        else:
            assert 0 < matched < everything, name


def test_date_range_is_half_open(deps, catalog):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    after, before = NOON - timedelta(hours=2), NOON

    def at(moment: datetime) -> uuid.UUID:
        return catalog.video(mall, pin, upload_objects=False, uploaded_at=moment)["id"]

    exactly_after = at(after)
    inside = at(after + timedelta(hours=1))
    at(before)
    at(after - timedelta(microseconds=1))
    last_inside = at(before - timedelta(microseconds=1))

    result = handlers.list_videos(
        ListVideos(uploaded_after=after.isoformat(), uploaded_before=before.isoformat()), deps
    )

    assert [v.id for v in result.videos] == [last_inside, inside, exactly_after]


def test_datetimes_in_other_offsets_mean_the_same_instant(deps, catalog):
    mall = catalog.mall()
    row = catalog.video(mall, catalog.pin(mall), upload_objects=False, uploaded_at=NOON)

    result = handlers.list_videos(
        ListVideos(
            uploaded_after="2025-10-31T14:00:00+02:00", uploaded_before="2025-10-31T08:00:01-04:00"
        ),
        deps,
    )

    assert [v.id for v in result.videos] == [row["id"]]


def test_equal_upload_times_are_ordered_by_id_descending_and_pages_neither_overlap_nor_skip(
    deps, catalog
):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    newest = catalog.video(mall, pin, upload_objects=False, uploaded_at=NOON + timedelta(hours=1))
    tied = [
        catalog.video(mall, pin, upload_objects=False, uploaded_at=NOON)["id"] for _ in range(23)
    ]
    oldest = catalog.video(mall, pin, upload_objects=False, uploaded_at=NOON - timedelta(hours=1))

    pages = [handlers.list_videos(ListVideos(page=p, page_size=7), deps) for p in (1, 2, 3, 4)]
    seen = [v.id for page in pages for v in page.videos]

    assert seen == [newest["id"], *sorted(tied, reverse=True), oldest["id"]]
    assert len(set(seen)) == 25
    # Asking again gives the same pages: the order does not depend on the plan.
    again = handlers.list_videos(ListVideos(page=2, page_size=7), deps)
    assert [v.id for v in again.videos] == [v.id for v in pages[1].videos]


def test_a_page_past_the_end_is_empty_and_carries_the_true_total(deps, catalog):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    for _ in range(5):
        catalog.video(mall, pin, upload_objects=False)

    result = handlers.list_videos(ListVideos(page=4, page_size=2), deps)

    assert (result.videos, result.total, result.page, result.total_pages) == ([], 5, 4, 3)


def test_an_empty_catalogue_has_zero_pages(deps, catalog):
    result = handlers.list_videos(ListVideos(), deps)

    assert (result.videos, result.total, result.total_pages) == ([], 0, 0)


def test_list_items_carry_pin_names_flags_and_utc_times_from_two_queries(deps, catalog):
    mall = catalog.mall()
    pins = {catalog.pin(mall, f"Camera {n}"): f"Camera {n}" for n in range(6)}
    for minutes, pin in enumerate(pins):
        catalog.video(
            mall,
            pin,
            upload_objects=False,
            proxy=minutes % 2 == 0,
            thumbnail=minutes % 3 == 0,
            uploaded_at=NOON - timedelta(minutes=minutes),
        )
    # What the read path sends: the statements production runs.
    path = deps.reads().read_path
    statements: list[str] = []

    def record(sql, parameters):
        statements.append(sql)

    path.tracers.append(record)
    try:
        result = handlers.list_videos(ListVideos(), deps)
    finally:
        path.tracers.remove(record)

    assert [v.pin_name for v in result.videos] == list(pins.values())
    assert [v.has_proxy for v in result.videos] == [m % 2 == 0 for m in range(6)]
    assert [v.has_thumbnail for v in result.videos] == [m % 3 == 0 for m in range(6)]
    assert result.model_dump(mode="json")["videos"][0]["uploaded_at"] == "2025-10-31T12:00:00Z"
    # The count and one page joined with camera_pins: no query per item for its pin name.
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2
    assert "camera_pins" in selects[1]


def _tag_every(deps, dataset: Dataset) -> dict[str, set[uuid.UUID]]:
    """'Even' on every other video, 'third' on every third: both on every sixth."""
    from handlers.tagging import tag_videos
    from schemas.requests import TagVideos

    named = {
        "even": {r["id"] for i, r in enumerate(dataset.rows) if i % 2 == 0},
        "third": {r["id"] for i, r in enumerate(dataset.rows) if i % 3 == 0},
    }
    for name, ids in named.items():
        tag_videos(TagVideos(video_ids=sorted(ids), add=[name]), deps)
    return named


@pytest.mark.parametrize("name", QUERIES)
@pytest.mark.parametrize("names", [["even"], ["EVEN", "third"]])
def test_tags_with_each_filter_return_exactly_the_videos_carrying_them(deps, dataset, name, names):
    """A list by tags is read from video_tags' copies of the video's columns (and the
    video itself for status and proxy): the same videos, order and total as the rest."""
    named = _tag_every(deps, dataset)
    query = ListVideos(**QUERIES[name](dataset), tags=names, page_size=100)

    result = handlers.list_videos(query, deps)

    wanted = set.intersection(*(named[n.lower()] for n in names))
    expected = [i for i in dataset.expected(query) if i in wanted]
    assert [v.id for v in result.videos] == expected
    assert result.total == len(expected)
    paged = handlers.list_videos(query.model_copy(update={"page": 2, "page_size": 2}), deps)
    assert ([v.id for v in paged.videos], paged.total) == (expected[2:4], len(expected))


def test_the_copies_a_list_by_tags_reads_follow_the_video(deps, dataset, engine):
    """Trash and restore through the worker, and an UPDATE of the upload instant (or of
    the mall and pin) by another service, reach the video's pairs by the trigger."""
    from sqlalchemy import text

    from handlers.deletion import delete_video
    from handlers.trash import restore_video
    from schemas.requests import DeleteVideo, RestoreVideo

    _tag_every(deps, dataset)
    by_even = ListVideos(tags=["even"], page_size=100)
    oldest = handlers.list_videos(by_even, deps).videos[-1].id

    def copies() -> set[tuple[Any, ...]]:
        with engine.connect() as conn:
            return set(
                conn.execute(
                    text(
                        "SELECT vt.video_id, vt.mall_id = v.mall_id, vt.pin_id = v.pin_id,"
                        " vt.uploaded_at = v.uploaded_at,"
                        " vt.trashed = (v.trashed_at IS NOT NULL)"
                        " FROM video_tags vt JOIN videos v ON v.id = vt.video_id"
                        " WHERE vt.video_id = :id"
                    ),
                    {"id": oldest},
                ).all()
            )

    delete_video(DeleteVideo(video_id=oldest, trash=True), deps)
    assert copies() == {(oldest, True, True, True, True)}
    assert oldest not in [v.id for v in handlers.list_videos(by_even, deps).videos]
    trashed = handlers.list_videos(by_even.model_copy(update={"trashed": True}), deps)
    assert [v.id for v in trashed.videos] == [oldest] and trashed.total == 1

    restore_video(RestoreVideo(video_id=oldest), deps)
    assert copies() == {(oldest, True, True, True, True)}
    assert handlers.list_videos(by_even, deps).videos[-1].id == oldest

    # Another service moves it to the other pin of its mall and dates it now.
    row = next(r for r in dataset.rows if r["id"] == oldest)
    sibling = dataset.pins[dataset.pins.index(row["pin_id"]) ^ 1]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE videos SET uploaded_at = now(), pin_id = :pin WHERE id = :id"),
            {"id": oldest, "pin": sibling},
        )
    assert copies() == {(oldest, True, True, True, True)}
    assert handlers.list_videos(by_even, deps).videos[0].id == oldest
    in_sibling = handlers.list_videos(by_even.model_copy(update={"pin_id": sibling}), deps)
    assert in_sibling.videos[0].id == oldest


def test_a_video_moved_to_another_mall_leaves_the_old_malls_tags(deps, dataset, engine):
    """A tag is its mall's: once another service moves a video, no list by the old
    mall's tag shows it, to the old mall's operator or to anyone else."""
    from dataclasses import replace

    from sqlalchemy import text

    from handlers.access import Scope

    _tag_every(deps, dataset)
    by_even = ListVideos(tags=["even"], page_size=100)
    moved = handlers.list_videos(by_even, deps).videos[0]
    before = handlers.list_videos(by_even, deps).total
    # Two pins a mall, in the malls' order.
    elsewhere = next(m for m in dataset.malls if m != moved.mall_id)
    pin = dataset.pins[2 * dataset.malls.index(elsewhere)]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE videos SET mall_id = :mall, pin_id = :pin WHERE id = :id"),
            {"id": moved.id, "mall": elsewhere, "pin": pin},
        )
        left = conn.execute(
            text("SELECT count(*) FROM video_tags WHERE video_id = :id"), {"id": moved.id}
        ).scalar_one()

    everyone = handlers.list_videos(by_even, deps)
    operator = replace(deps, scope=Scope(role="operator", malls=frozenset({moved.mall_id})))
    assert left == 0
    assert moved.id not in [v.id for v in everyone.videos] and everyone.total == before - 1
    assert moved.id not in [v.id for v in handlers.list_videos(by_even, operator).videos]
