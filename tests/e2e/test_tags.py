"""Tags as another service drives them (contract v1.2, "Tags"): plain Celery
messages by task name to the session's worker, on whichever broker
the session runs; answers from the result backend, events from the outbox."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from tests.e2e.messages import call, data, outbox

SHARE_NOT_FOUND = {"code": "not_found", "detail": "Share not found"}
PASSWORD = "tr0ub4dor & 3 more words"


# Tags


def test_tagging_is_idempotent_and_lists_gets_and_filters_by_tag(caller, shop, engine):
    mall, _, videos = shop
    ids = [str(v["id"]) for v in videos]
    ghost = str(uuid.uuid4())

    first = data(caller, "videos.tag", video_ids=[*ids[:3], ghost], add=["Loading Dock", "night"])
    again = data(caller, "videos.tag", video_ids=ids[:3], add=["loading dock"])
    removed = data(caller, "videos.tag", video_ids=ids[:1], remove=["NIGHT"])

    assert first == {"videos": 3, "added": 6, "removed": 0, "not_found": [ghost]}
    assert again == {"videos": 3, "added": 0, "removed": 0, "not_found": []}
    assert removed == {"videos": 1, "added": 0, "removed": 1, "not_found": []}
    page = data(caller, "videos.list", tags=["LOADING DOCK", "Night"])
    assert [v["id"] for v in page["videos"]] == ids[1:3] and page["total"] == 2
    assert page["videos"][0]["tags"] == ["Loading Dock", "night"]
    assert data(caller, "videos.get", video_id=ids[0])["tags"] == ["Loading Dock"]
    assert data(caller, "videos.get", video_id=ids[3])["tags"] == []
    tags = data(caller, "videos.tags", mall_id=str(mall))["tags"]
    assert tags == [
        {"name": "Loading Dock", "mall_id": str(mall), "videos": 3},
        {"name": "night", "mall_id": str(mall), "videos": 2},
    ]
    assert data(caller, "videos.tags", prefix="ni")["tags"][0]["name"] == "night"
    # This test's videos only: the outbox keeps earlier tests' events until pruned.
    tagged = [e for e in outbox(engine, "video.tagged") if e["subject"] in ids]
    assert len(tagged) == 4 and tagged[-1]["removed"] == ["night"]


def test_a_bad_name_is_invalid_request_naming_it_and_nothing_is_written(caller, shop, engine):
    _, _, videos = shop
    envelope = call(
        caller, "videos.tag", video_ids=[str(videos[0]["id"])], add=["fine", "bad\u202ename"]
    )

    assert envelope["status"] == 400 and envelope["error"]["code"] == "invalid_request"
    assert "'bad\\u202ename'" in envelope["error"]["detail"]
    assert envelope["error"]["fields"][0]["loc"] == ["add", 1]
    for kwargs in (
        {"video_ids": [str(videos[0]["id"])]},
        {"video_ids": [], "add": ["x"]},
        {"video_ids": [str(videos[0]["id"])], "add": [f"t{i}" for i in range(21)]},
        {"video_ids": [str(videos[0]["id"])], "add": ["x" * 65]},
    ):
        assert call(caller, "videos.tag", **kwargs)["error"]["code"] == "invalid_request"
    assert call(caller, "videos.list", tags=[])["error"]["code"] == "invalid_request"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM video_tags")).scalar_one() == 0


def test_bulk_delete_filters_take_tags(caller, shop):
    _, _, videos = shop
    data(caller, "videos.tag", video_ids=[str(videos[1]["id"])], add=["evidence"])

    result = data(
        caller, "videos.bulk_delete", filters={"tags": ["Evidence"]}, trash=True, dry_run=True
    )

    assert (result["matched"], result["deleted"]) == (1, 0)
