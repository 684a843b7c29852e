"""``video_search`` follows ``videos`` through every write another service or the worker
makes (migration 0025's triggers and foreign key), and its periods list is complete."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

# Rows of either table that differ from what ``videos`` says the copy holds.
DIFFERENCES = """
SELECT coalesce(v.id, s.video_id) AS video_id
FROM videos AS v
FULL JOIN video_search AS s ON s.video_id = v.id
WHERE v.id IS NULL OR s.video_id IS NULL
   OR s.period <> videoworker_search_period(v.uploaded_at, v.trashed_at IS NOT NULL)
   OR s.mall_id <> v.mall_id OR s.pin_id <> v.pin_id OR s.uploaded_at <> v.uploaded_at
   OR s.mall_period <> v.mall_id || ':' || s.period OR s.pin_period <> v.pin_id || ':' || s.period
   OR s.processing_status <> v.processing_status
   OR s.has_proxy <> (v.proxy_path IS NOT NULL)
   OR s.text <> lower(v.original_filename) || coalesce(chr(1) || lower(v.operator_notes), '')
   OR s.tags <> ARRAY(
       SELECT lower(t.name) FROM video_tags AS vt JOIN tags AS t ON t.id = vt.tag_id
       WHERE vt.video_id = v.id ORDER BY 1
   )
"""

MISSING_PERIODS = """
SELECT DISTINCT s.period FROM video_search AS s
WHERE NOT EXISTS (SELECT 1 FROM video_search_periods AS p WHERE p.period = s.period)
"""


def differences(engine) -> list[uuid.UUID]:
    with engine.connect() as conn:
        assert conn.execute(text(MISSING_PERIODS)).all() == []
        return [row.video_id for row in conn.execute(text(DIFFERENCES))]


def versions(engine) -> list[str]:
    """The transaction that last wrote each copy: unchanged when no copy was written."""
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT xmin::text FROM video_search ORDER BY 1")).scalars())


def execute(engine, statement: str, **values) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), values)


@pytest.fixture
def filled(catalog, engine):
    mall = catalog.mall()
    pin = catalog.pin(mall)
    rows = [
        catalog.video(mall, pin, upload_objects=False, original_filename=f"CAM0{n}_Entrance.mp4")
        for n in range(4)
    ]
    return mall, pin, [row["id"] for row in rows]


def test_an_insert_copies_each_row_and_its_period(filled, engine):
    assert differences(engine) == []
    with engine.connect() as conn:
        copied = conn.execute(text("SELECT count(*) FROM video_search")).scalar_one()
    assert copied == 4


@pytest.mark.parametrize(
    "change",
    [
        "original_filename = 'Loading DOCK ' || id",
        "operator_notes = 'Shoplifting at Zara'",
        "trashed_at = now(), trashed_by = 'ops'",
        "processing_status = 'failed'",
        "proxy_path = NULL",
        "uploaded_at = uploaded_at - interval '400 days'",
        "uploaded_at = 'infinity'",
        "uploaded_at = '0044-03-15 00:00:00+00'",
    ],
)
def test_an_update_of_a_copied_column_rewrites_the_copy(change, filled, engine):
    execute(engine, f"UPDATE videos SET {change}")  # noqa: S608 - the test's own text
    assert differences(engine) == []


def test_notes_cleared_and_a_video_moved_and_restored_follow(filled, engine):
    mall, pin, ids = filled
    execute(engine, "UPDATE videos SET operator_notes = 'x' WHERE id = :id", id=ids[0])
    execute(engine, "UPDATE videos SET operator_notes = NULL WHERE id = :id", id=ids[0])
    other_mall, other_pin = uuid.uuid4(), uuid.uuid4()
    execute(engine, "INSERT INTO malls (id, name) VALUES (:id, 'Other')", id=other_mall)
    execute(
        engine,
        "INSERT INTO camera_pins (id, mall_id, name) VALUES (:id, :mall, 'Dock')",
        id=other_pin,
        mall=other_mall,
    )
    execute(
        engine,
        "UPDATE videos SET mall_id = :mall, pin_id = :pin WHERE id = :id",
        mall=other_mall,
        pin=other_pin,
        id=ids[1],
    )
    execute(engine, "UPDATE videos SET trashed_at = now() WHERE id = :id", id=ids[2])
    execute(engine, "UPDATE videos SET trashed_at = NULL WHERE id = :id", id=ids[2])
    assert differences(engine) == []


def test_a_change_to_another_column_leaves_the_copy_alone(filled, engine):
    """The row trigger's WHEN skips it: no write to ``video_search`` at all."""
    before = versions(engine)
    execute(engine, "UPDATE videos SET codec = 'hevc', legal_hold = true")
    assert versions(engine) == before


def test_a_delete_removes_the_copy_and_a_many_row_insert_copies_all(filled, engine):
    mall, pin, ids = filled
    execute(engine, "DELETE FROM videos WHERE id = :id", id=ids[0])
    now = datetime.now(UTC)
    execute(
        engine,
        """
        INSERT INTO videos (id, mall_id, pin_id, original_filename, original_path,
                            file_size_bytes, processing_status, uploaded_at)
        SELECT gen_random_uuid(), :mall, :pin, 'bulk_' || n, 'k/' || n, 1, 'pending',
               :now - n * interval '11 days'
        FROM generate_series(1, 200) AS n
        """,
        mall=mall,
        pin=pin,
        now=now,
    )
    assert differences(engine) == []
    with engine.connect() as conn:
        periods = conn.execute(
            text("SELECT count(DISTINCT period) FROM video_search WHERE text LIKE 'bulk%'")
        ).scalar_one()
    # 200 uploads 11 days apart span 2,189 days: about 73 periods of 30 days.
    assert periods == pytest.approx(2189 / 30, abs=2)


def tag(engine, mall, name: str, *videos: uuid.UUID) -> uuid.UUID:
    """A tag of the mall, on each of ``videos`` (one statement, as the worker tags)."""
    tag_id = uuid.uuid4()
    execute(engine, "INSERT INTO tags (id, mall_id, name) VALUES (:id, :mall, :name)",
            id=tag_id, mall=mall, name=name)  # fmt: skip
    execute(
        engine,
        """
        INSERT INTO video_tags (video_id, tag_id, mall_id, pin_id, uploaded_at, trashed)
        SELECT id, :tag, mall_id, pin_id, uploaded_at, trashed_at IS NOT NULL
        FROM videos WHERE id = ANY(:videos)
        """,
        tag=tag_id,
        videos=list(videos),
    )
    return tag_id


def tags_of(engine, video: uuid.UUID) -> list[str]:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT tags FROM video_search WHERE video_id = :id"), {"id": video}
        ).scalar_one()


def test_tags_follow_tagging_untagging_renaming_and_moving(filled, engine):
    mall, pin, ids = filled
    incident = tag(engine, mall, "Incident", *ids[:3])
    reviewed = tag(engine, mall, "reviewed", ids[0])
    assert tags_of(engine, ids[0]) == ["incident", "reviewed"]
    assert tags_of(engine, ids[3]) == []
    assert differences(engine) == []

    execute(engine, "DELETE FROM video_tags WHERE tag_id = :tag AND video_id = ANY(:ids)",
            tag=incident, ids=ids[1:3])  # fmt: skip
    execute(engine, "UPDATE tags SET name = 'Escalated' WHERE id = :tag", tag=incident)
    assert tags_of(engine, ids[0]) == ["escalated", "reviewed"]
    assert tags_of(engine, ids[1]) == []

    execute(engine, "UPDATE video_tags SET video_id = :to WHERE tag_id = :tag",
            to=ids[3], tag=reviewed)  # fmt: skip
    assert tags_of(engine, ids[0]) == ["escalated"]
    assert tags_of(engine, ids[3]) == ["reviewed"]
    # Migration 0019's copies change no key: the copy is not rewritten.
    before = versions(engine)
    execute(engine, "UPDATE video_tags SET trashed = NOT trashed")
    assert versions(engine) == before

    execute(engine, "DELETE FROM tags WHERE id = :tag", tag=incident)
    execute(engine, "UPDATE videos SET trashed_at = now(), trashed_by = 'ops' WHERE id = :id",
            id=ids[3])  # fmt: skip
    assert tags_of(engine, ids[0]) == []
    assert differences(engine) == []
    execute(engine, "DELETE FROM videos WHERE id = :id", id=ids[3])
    assert differences(engine) == []


def test_the_periods_of_the_trash_are_negative_and_apart_from_the_rest(filled, engine):
    mall, pin, ids = filled
    execute(engine, "UPDATE videos SET trashed_at = now() WHERE id = :id", id=ids[0])
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT video_id, period FROM video_search")).all())
        expected = int(datetime.now(UTC).timestamp() // 2_592_000)
    assert rows[ids[0]] < 0
    assert rows[ids[0]] == -1 - rows[ids[1]]
    assert rows[ids[1]] in (expected, expected - 1)
