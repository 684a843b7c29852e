"""Trash, bulk delete, search, gallery URLs, per-pin statistics and storage quotas, as
another service drives them: plain Celery messages by task name to the session's worker,
answers read from the result backend, events from the ``videos.events`` channel."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, text

from schemas.contract import QUEUE_OF
from tests.integration.test_lifecycle import EventCollector, remaining_ids, scalar
from tests.support import run_cli
from worker.adapters.postgres.tables import MallRetention

# JPEG start and end markers around a payload: a gallery must get back the very bytes stored.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)) + b"\xff\xd9"


def send(caller, task: str, **kwargs):
    return caller.send_task(task, kwargs=kwargs, queue=QUEUE_OF[task])


def call(caller, task: str, **kwargs) -> dict:
    return send(caller, task, **kwargs).get(timeout=30)


def data(caller, task: str, **kwargs) -> dict:
    envelope = call(caller, task, **kwargs)
    assert envelope["ok"] is True, envelope
    return envelope["data"]


def ids(rows) -> list[str]:
    return [str(row["id"]) for row in rows]


def listed(caller, **kwargs) -> list[str]:
    return [v["id"] for v in data(caller, "videos.list", page_size=100, **kwargs)["videos"]]


def audit(engine) -> list[tuple[str, str, str]]:
    """(video_id, reason, outcome) of every audit row."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT video_id, reason, outcome FROM deletion_audit ORDER BY id")
        )
        return [(str(r.video_id), r.reason, r.outcome) for r in rows]


def parse(instant: str) -> datetime:
    return datetime.fromisoformat(instant.replace("Z", "+00:00"))


@pytest.fixture
def shop(catalog):
    mall = catalog.mall("Mall A")
    return mall, catalog.pin(mall, "Entrance A")


def test_a_trashed_video_is_hidden_kept_whole_listed_in_the_trash_and_restored(
    caller, catalog, shop
):
    mall, pin = shop
    now = datetime.now(UTC)
    kept = catalog.video(mall, pin, uploaded_at=now - timedelta(minutes=1))
    trashed = catalog.video(mall, pin, uploaded_at=now - timedelta(minutes=2))
    video_id = str(trashed["id"])

    moved = data(caller, "videos.delete", video_id=video_id, trash=True)

    assert {k: v for k, v in moved.items() if k != "purge_after"} == {
        "video_id": video_id,
        "deleted": True,
        "files_deleted": [],
        "files_pending": [],
        "message": "Video moved to trash.",
    }
    not_found = {"code": "not_found", "detail": f"Video {video_id} not found"}
    assert call(caller, "videos.get", video_id=video_id)["error"] == not_found
    assert call(caller, "videos.sign_url", video_id=video_id)["error"] == not_found
    assert listed(caller, mall_id=str(mall)) == ids([kept])
    trash = data(caller, "videos.list", mall_id=str(mall), trashed=True)["videos"]
    assert [item["id"] for item in trash] == [video_id]
    trashed_at = parse(trash[0]["trashed_at"])
    assert parse(trash[0]["purge_after"]) == trashed_at + timedelta(days=30)
    assert parse(moved["purge_after"]) == parse(trash[0]["purge_after"])
    stats = data(caller, "videos.stats", mall_id=str(mall))
    assert stats["total_videos"] == 1
    assert stats["trash"] == {
        "total_videos": 1,
        "total_storage_bytes": trashed["file_size_bytes"] + trashed["proxy_size_bytes"],
    }
    assert all(catalog.object_exists(key) for key in catalog.keys(trashed))

    restored = data(caller, "videos.restore", video_id=video_id)

    assert restored == {"video_id": video_id, "restored": True}
    back = data(caller, "videos.get", video_id=video_id)
    assert (back["id"], back["original_path"]) == (video_id, trashed["original_path"])
    assert sorted(listed(caller, mall_id=str(mall))) == sorted(ids([kept, trashed]))
    assert listed(caller, trashed=True) == []
    again = call(caller, "videos.restore", video_id=video_id)
    assert (again["status"], again["error"]) == (
        404,
        {"code": "not_found", "detail": f"Video {video_id} not in trash"},
    )


def test_the_sweep_empties_only_the_expired_trash_and_a_purged_video_cannot_be_restored(
    caller, catalog, engine, shop
):
    mall, pin = shop
    expired, recent = catalog.video(mall, pin), catalog.video(mall, pin)
    for row in (expired, recent):
        data(caller, "videos.delete", video_id=str(row["id"]), trash=True)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE videos SET trashed_at = now() - interval '31 days' WHERE id = :id"),
            {"id": expired["id"]},
        )

    dry = data(caller, "videos.retention_sweep", dry_run=True)
    assert (dry["matched_from_trash"], dry["deleted_from_trash"], dry["dry_run"]) == (1, 0, True)
    assert (
        dry["matched_from_trash_bytes"]
        == expired["file_size_bytes"] + (expired["proxy_size_bytes"])
    )

    swept = data(caller, "videos.retention_sweep")

    assert (swept["deleted"], swept["deleted_from_trash"], swept["deleted_for_quota"]) == (0, 1, 0)
    assert (swept["files_deleted"], swept["files_pending"]) == (3, 0)
    assert not any(catalog.object_exists(key) for key in catalog.keys(expired))
    assert all(catalog.object_exists(key) for key in catalog.keys(recent))
    assert audit(engine) == [(str(expired["id"]), "trash", "files_deleted")]
    assert listed(caller, trashed=True) == ids([recent])
    refused = call(caller, "videos.restore", video_id=str(expired["id"]))
    assert refused["error"] == {
        "code": "not_found",
        "detail": f"Video {expired['id']} not in trash",
    }


def test_bulk_delete_by_filters_dry_runs_then_deletes_in_batches_announcing_each(
    caller, catalog, engine, redis_client, shop
):
    mall, pin = shop
    other = catalog.mall("Mall B")
    now = datetime.now(UTC)
    old = [
        catalog.video(mall, pin, uploaded_at=now - timedelta(days=10, hours=i)) for i in range(5)
    ]
    young = [catalog.video(mall, pin, uploaded_at=now - timedelta(hours=i)) for i in range(2)]
    elsewhere = catalog.video(other, catalog.pin(other), uploaded_at=now - timedelta(days=10))
    filters = {"mall_id": str(mall), "uploaded_before": (now - timedelta(days=1)).isoformat()}

    dry = data(caller, "videos.bulk_delete", filters=filters, dry_run=True, batch_size=2)

    assert (dry["matched"], dry["deleted"], dry["dry_run"]) == (5, 0, True)
    assert len(remaining_ids(engine)) == 8 and audit(engine) == []

    collector = EventCollector(redis_client)
    try:
        sent = send(caller, "videos.bulk_delete", filters=filters, batch_size=2)
        result = sent.get(timeout=30)
        progress = [
            e for e in collector.wait_for("bulk_delete.progress", 3) if e["task_id"] == sent.id
        ]
    finally:
        collector.close()

    assert result["ok"] is True, result
    assert result["data"] == {
        "matched": 5,
        "deleted": 5,
        "not_found": [],
        "files_deleted": 15,
        "files_pending": 0,
        "dry_run": False,
        "continued": False,
        "continuation_id": None,
    }
    assert [(e["matched"], e["deleted"]) for e in progress] == [(5, 2), (5, 4), (5, 5)]
    assert remaining_ids(engine) == {row["id"] for row in (*young, elsewhere)}
    assert sorted(audit(engine)) == sorted((i, "bulk", "files_deleted") for i in ids(old))
    assert not any(catalog.object_exists(key) for row in old for key in catalog.keys(row))
    assert all(catalog.object_exists(key) for key in catalog.keys(elsewhere))


def test_a_bulk_delete_racing_a_sweep_over_the_same_videos_deletes_each_exactly_once(
    caller, catalog, engine, shop
):
    mall, pin = shop
    now = datetime.now(UTC)
    doomed = [
        catalog.video(mall, pin, uploaded_at=now - timedelta(days=200, minutes=i))
        for i in range(30)
    ]

    bulk = send(caller, "videos.bulk_delete", filters={"mall_id": str(mall)}, batch_size=3)
    sweep = send(
        caller, "videos.retention_sweep", mall_id=str(mall), older_than_days=30, batch_size=3
    )
    answers = bulk.get(timeout=60), sweep.get(timeout=60)

    assert [a["ok"] for a in answers] == [True, True], answers
    bulk_data, sweep_data = (a["data"] for a in answers)
    assert bulk_data["deleted"] + sweep_data["deleted"] == 30
    assert bulk_data["files_deleted"] + sweep_data["files_deleted"] == 90
    rows = audit(engine)
    assert sorted(video_id for video_id, _, _ in rows) == sorted(ids(doomed))
    assert {(reason, outcome) for _, reason, outcome in rows} <= {
        ("bulk", "files_deleted"),
        ("retention", "files_deleted"),
    }
    assert remaining_ids(engine) == set()
    assert scalar(engine, "SELECT count(*) FROM storage_deletions") == 0
    assert not any(catalog.object_exists(key) for row in doomed for key in catalog.keys(row))


def test_bulk_delete_by_ids_reports_the_unknown_and_an_empty_selection_is_refused(
    caller, catalog, engine, shop
):
    mall, pin = shop
    first, second, bystander = (catalog.video(mall, pin) for _ in range(3))
    unknown = [str(uuid.uuid4()), str(uuid.uuid4())]

    neither = "Give exactly one of video_ids or filters"
    refusals = [
        ({"filters": {}}, "filters must name at least one filter"),
        ({}, neither),
        # Both at once is as ambiguous as neither.
        ({"filters": {"mall_id": str(mall)}, "video_ids": unknown}, neither),
    ]
    for selection, reason in refusals:
        refused = call(caller, "videos.bulk_delete", **selection)
        assert refused == {
            "ok": False,
            "status": 400,
            "error": {
                "code": "invalid_request",
                "detail": reason,
                "fields": [{"loc": [], "msg": reason}],
            },
        }, selection
    assert len(remaining_ids(engine)) == 3
    by_ids = [str(first["id"]), unknown[0], str(second["id"]), unknown[1]]

    result = data(caller, "videos.bulk_delete", video_ids=by_ids)

    assert (result["matched"], result["deleted"], result["files_deleted"]) == (2, 2, 6)
    assert result["not_found"] == unknown
    assert remaining_ids(engine) == {bystander["id"]}
    assert sorted(audit(engine)) == sorted(
        (i, "bulk", "files_deleted") for i in ids([first, second])
    )


def test_search_matches_names_and_notes_case_insensitively_and_wildcards_literally(
    caller, catalog, shop
):
    mall, pin = shop
    names = {
        "entrance": ("Entrance_Morning.MP4", None),
        "notes": ("lobby.mp4", "Suspicious PACKAGE near door"),
        "percent": ("100%_sure.mp4", None),
        "lookalike": ("100xxsure.mp4", "fully 100 sure"),
        "backslash": ("abc\\b.mp4", None),
    }
    rows = {
        label: catalog.video(mall, pin, original_filename=name, operator_notes=notes)
        for label, (name, notes) in names.items()
    }

    def found(q: str) -> set[str]:
        hits = set(listed(caller, q=q))
        return {label for label, row in rows.items() if str(row["id"]) in hits}

    # Contract v1.2: each q holds a run of 3 letters or digits; %, _ and \ stay literal.
    assert found("package") == {"notes"}
    assert found("entrance_m") == {"entrance"}
    assert found("100%") == {"percent"}
    assert found("100%_") == {"percent"}
    assert found("100%%") == set()
    assert found("100__sure") == set()
    assert found("abc\\") == {"backslash"}
    too_long = call(caller, "videos.list", q="x" * 201)
    assert too_long["error"]["code"] == "invalid_request"
    assert [f["loc"] for f in too_long["error"]["fields"]] == [["q"]]


@pytest.mark.parametrize("q", ["%", "_", "%%", "P2", "a_b", "12 34"])
def test_a_q_without_three_letters_or_digits_in_a_row_is_refused(caller, q):
    """The one change contract v1.2 makes to a v1.1 answer: such a q was a scan of
    every row."""
    answer = call(caller, "videos.list", q=q)

    assert (answer["ok"], answer["status"], answer["error"]["code"]) == (
        False,
        400,
        "invalid_request",
    )
    assert answer["error"]["fields"] == [
        {"loc": ["q"], "msg": "needs at least 3 letters or digits in a row"}
    ]


def test_pages_carry_their_total_relation_and_the_cursor_of_the_next(caller, catalog, shop):
    mall, pin = shop
    made = [
        catalog.video(
            mall,
            pin,
            upload_objects=False,
            original_filename=f"lobby_{i}.mp4",
            uploaded_at=datetime(2026, 1, 1, tzinfo=UTC) - timedelta(minutes=i % 3),
        )
        for i in range(7)
    ]
    newest_first = [
        str(v["id"]) for v in sorted(made, key=lambda v: (v["uploaded_at"], v["id"]), reverse=True)
    ]

    walked, cursor, answers = [], None, []
    while True:
        kwargs = {"q": "lobby", "page_size": 3} | ({"cursor": cursor} if cursor else {})
        page = data(caller, "videos.list", **kwargs)
        answers.append(page)
        walked += [v["id"] for v in page["videos"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == newest_first
    assert [a["page"] for a in answers] == [1, 2, 3]
    assert all((a["total"], a["total_relation"]) == (7, "eq") for a in answers)
    refused = call(caller, "videos.list", q="lobby", page=2, cursor=answers[0]["next_cursor"])
    assert refused["error"]["code"] == "invalid_request"
    assert [f["loc"] for f in refused["error"]["fields"]] == [["cursor"]]
    other = call(caller, "videos.list", q="lobby_1", cursor=answers[0]["next_cursor"])
    assert [f["loc"] for f in other["error"]["fields"]] == [["cursor"]]
    too_deep = call(caller, "videos.list", q="lobby", page=101, page_size=100)
    assert too_deep["error"]["code"] == "invalid_request"
    assert "use cursor" in too_deep["error"]["detail"]


def test_a_gallery_page_carries_working_thumbnail_urls_and_nulls_where_there_is_none(
    caller, catalog, s3, bucket, shop
):
    mall, pin = shop
    now = datetime.now(UTC)
    pictured = [catalog.video(mall, pin, uploaded_at=now - timedelta(minutes=i)) for i in range(3)]
    for row in pictured:
        s3.put_object(Bucket=bucket, Key=row["thumbnail_path"], Body=JPEG)
    bare = [
        catalog.video(mall, pin, thumbnail=False, uploaded_at=now - timedelta(minutes=10 + i))
        for i in range(2)
    ]

    page = data(caller, "videos.list", mall_id=str(mall), sign=["thumbnail"], page_size=20)

    assert [v["id"] for v in page["videos"]] == ids(pictured + bare)
    expires_at = parse(page["urls_expire_at"])
    assert timedelta(minutes=59) < expires_at - datetime.now(UTC) <= timedelta(minutes=60)
    urls = [item["urls"] for item in page["videos"]]
    assert [set(u) for u in urls] == [{"thumbnail"}] * 5
    assert [u["thumbnail"] for u in urls[3:]] == [None, None]
    for item in urls[:3]:
        with urllib.request.urlopen(item["thumbnail"], timeout=10) as response:  # noqa: S310 - the test's S3
            assert (response.status, response.read()) == (200, JPEG)
    plain = data(caller, "videos.list", mall_id=str(mall))
    assert "urls_expire_at" not in plain
    assert all("urls" not in item for item in plain["videos"])


def test_sign_urls_answers_in_the_order_asked_and_names_the_unknown_and_the_unavailable(
    caller, catalog, shop
):
    mall, pin = shop
    first, second = catalog.video(mall, pin), catalog.video(mall, pin)
    pending = catalog.video(mall, pin, proxy=False, thumbnail=False)
    unknown = str(uuid.uuid4())
    asked = [str(second["id"]), unknown, str(pending["id"]), str(first["id"])]

    signed = data(caller, "videos.sign_urls", video_ids=asked, expires_minutes=10)

    assert [u["video_id"] for u in signed["urls"]] == ids([second, first])
    paths = [urllib.parse.urlparse(u["url"]).path for u in signed["urls"]]
    assert paths[0].endswith(second["proxy_path"]) and paths[1].endswith(first["proxy_path"])
    assert {u["content_type"] for u in signed["urls"]} == {"video/mp4"}
    assert (signed["not_found"], signed["not_available"]) == ([unknown], [str(pending["id"])])


def test_stats_of_one_pin_and_per_pin_largest_first_leave_the_trash_out(caller, catalog, shop):
    mall, gate = shop
    food = catalog.pin(mall, "Food court")
    other = catalog.mall("Mall B")
    roof = catalog.pin(other, "Roof")
    gate_rows = [
        catalog.video(mall, gate, file_size_bytes=1000, proxy_size_bytes=100) for _ in range(2)
    ]
    food_row = catalog.video(mall, food, file_size_bytes=5000, proxy_size_bytes=500)
    catalog.video(other, roof, file_size_bytes=10, proxy_size_bytes=1)
    binned = catalog.video(mall, gate, file_size_bytes=99_000, proxy_size_bytes=900)
    data(caller, "videos.delete", video_id=str(binned["id"]), trash=True)

    one_pin = data(caller, "videos.stats", pin_id=str(gate))
    per_pin = data(caller, "videos.stats", mall_id=str(mall), by_pin=True)
    everywhere = data(caller, "videos.stats", by_pin=True)
    crossed = data(caller, "videos.stats", mall_id=str(other), pin_id=str(gate))

    assert (one_pin["pin_id"], one_pin["total_videos"], one_pin["total_storage_bytes"]) == (
        str(gate),
        2,
        2200,
    )
    assert [
        (p["pin_id"], p["pin_name"], p["total_videos"], p["total_storage_bytes"])
        for p in per_pin["pins"]
    ] == [
        (str(food), "Food court", 1, 5500),
        (str(gate), "Entrance A", 2, 2200),
    ]
    assert per_pin["pins"][0]["total_duration_seconds"] == food_row["duration_seconds"]
    assert per_pin["total_videos"] == 3
    assert [p["pin_id"] for p in everywhere["pins"]] == [str(food), str(gate), str(roof)]
    assert one_pin["total_duration_seconds"] == 2 * gate_rows[0]["duration_seconds"]
    assert crossed["total_videos"] == 0


def test_a_quota_sweep_deletes_the_oldest_unheld_videos_until_the_mall_fits(
    caller, catalog, engine, shop
):
    mall, pin = shop
    held_mall = catalog.mall("Held")
    held_pin = catalog.pin(held_mall)
    now = datetime.now(UTC)
    # 1100 bytes each (original + proxy), oldest first; the oldest is on legal hold.
    rows = [
        catalog.video(
            mall,
            pin,
            uploaded_at=now - timedelta(hours=4 - i),
            file_size_bytes=1000,
            proxy_size_bytes=100,
            legal_hold=i == 0,
        )
        for i in range(4)
    ]
    held = [
        catalog.video(held_mall, held_pin, file_size_bytes=1000, legal_hold=True) for _ in range(2)
    ]
    run_cli("retention", "set", str(mall), "--max-storage", "2500", check=0)
    # The CLI takes one mall a run (seconds each): the second quota is written as it writes it.
    with engine.begin() as conn:
        conn.execute(
            insert(MallRetention.__table__).values(mall_id=held_mall, max_storage_bytes=1024)
        )

    swept = data(caller, "videos.retention_sweep")

    assert (swept["deleted"], swept["deleted_from_trash"], swept["deleted_for_quota"]) == (0, 0, 2)
    assert remaining_ids(engine) == {row["id"] for row in (rows[0], rows[3], *held)}
    assert sorted(audit(engine)) == sorted((i, "quota", "files_deleted") for i in ids(rows[1:3]))
    assert not any(catalog.object_exists(key) for row in rows[1:3] for key in catalog.keys(row))
    assert data(caller, "videos.stats", mall_id=str(mall))["total_storage_bytes"] == 2200
    assert data(caller, "videos.retention_sweep", mall_id=str(held_mall))["deleted_for_quota"] == 0


def test_call_all_streams_every_video_of_a_listing_one_json_line_each(caller, catalog, shop):
    mall, pin = shop
    made = {
        str(catalog.video(mall, pin, upload_objects=False, original_filename=f"dock_{i}.mp4")["id"])
        for i in range(5)
    }

    done = run_cli("call", "videos.list", f"mall_id={mall}", "page_size=2", "--all", check=0)

    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {line["id"] for line in lines} == made and len(lines) == 5
    refused = run_cli("call", "--all", "videos.list", "q=P2", check=1)
    assert "needs at least 3 letters or digits in a row" in refused.stderr
