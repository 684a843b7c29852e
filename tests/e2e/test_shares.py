"""Share links as another service drives them (contract v1.2, "Share links"): plain Celery
messages by task name to the session's worker, on whichever broker
the session runs; answers from the result backend, events from the outbox."""

from __future__ import annotations

import hashlib
import threading
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import text

from tests.e2e.messages import call, data, outbox, parse
from worker.client import VideoClient

SHARE_NOT_FOUND = {"code": "not_found", "detail": "Share not found"}
PASSWORD = "tr0ub4dor & 3 more words"


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - our own S3
        return answer.read()


def test_a_share_resolves_to_short_urls_of_its_targets_and_counts_views(caller, shop, engine):
    _, _, videos = shop
    ids = [str(v["id"]) for v in videos[:2]]

    created = data(
        caller,
        "videos.share",
        video_ids=ids,
        expires_in_minutes=125,
        targets=["thumbnail"],
        label="for the insurer",
    )
    resolved = data(caller, "videos.share_resolve", token=created["token"])

    made = parse(created["expires_at"])
    assert abs(made - (datetime.now(UTC) + timedelta(minutes=125))) < timedelta(seconds=20)
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT expires_at, created_at, token_hash FROM shares WHERE id = :i"),
            {"i": created["share_id"]},
        ).one()
    # The chosen expiry, to the microsecond: stored, answered, and never "never".
    assert stored.expires_at == made and made - stored.created_at == timedelta(minutes=125)
    assert bytes(stored.token_hash) == hashlib.sha256(created["token"].encode()).digest()
    assert (created["targets"], created["video_count"]) == (["thumbnail"], 2)
    assert resolved["label"] == "for the insurer"
    assert [v["id"] for v in resolved["videos"]] == ids
    assert set(resolved["videos"][0]) == {
        "id",
        "original_filename",
        "duration_seconds",
        "uploaded_at",
        "recorded_at",
        "urls",
    }
    url = resolved["videos"][0]["urls"]["thumbnail"]
    assert list(resolved["videos"][0]["urls"]) == ["thumbnail"]
    assert "X-Amz-Expires=900" in url
    assert fetch(url)
    assert parse(resolved["urls_expire_at"]) <= datetime.now(UTC) + timedelta(minutes=15)
    listed = data(caller, "videos.shares")["shares"]
    assert listed[0]["views"] == 1 and listed[0]["has_password"] is False
    # This test's share only: the outbox keeps earlier tests' events until pruned.
    ours = created["share_id"]
    assert [e["subject"] for e in outbox(engine, "share.created") if e["subject"] == ours] == [ours]
    viewed = [e for e in outbox(engine, "share.viewed") if e["subject"] == ours]
    assert [e["views"] for e in viewed] == [1]


def test_a_video_trashed_since_is_left_out(caller, shop):
    _, _, videos = shop
    created = data(caller, "videos.share", video_ids=[str(v["id"]) for v in videos[:2]])
    data(caller, "videos.delete", video_id=str(videos[0]["id"]), trash=True)

    resolved = data(caller, "videos.share_resolve", token=created["token"])

    assert [v["id"] for v in resolved["videos"]] == [str(videos[1]["id"])]


def test_unknown_malformed_revoked_and_used_up_are_one_answer(caller, shop, engine):
    _, _, videos = shop
    one = [str(videos[0]["id"])]
    revoked = data(caller, "videos.share", video_ids=one)
    used_up = data(caller, "videos.share", video_ids=one, max_views=1)
    assert data(caller, "videos.share_revoke", share_id=revoked["share_id"]) == {
        "share_id": revoked["share_id"],
        "revoked": True,
    }
    data(caller, "videos.share_resolve", token=used_up["token"])

    for token in (
        revoked["token"],
        used_up["token"],
        "vws_" + "Q" * 43,
        "vws_short",
        "x" * 5000,
        revoked["token"][:-1],
    ):
        envelope = call(caller, "videos.share_resolve", token=token)
        assert (envelope["status"], envelope["error"]) == (404, SHARE_NOT_FOUND), token
    with engine.connect() as conn:
        revoked_row = conn.execute(
            text("SELECT revoked_at IS NOT NULL, revoked_by, views FROM shares WHERE id = :i"),
            {"i": revoked["share_id"]},
        ).one()
    assert tuple(revoked_row) == (True, None, 0)
    ours = {revoked["share_id"], used_up["share_id"]}
    assert [e["subject"] for e in outbox(engine, "share.revoked") if e["subject"] in ours] == [
        revoked["share_id"]
    ]


def test_racing_resolves_for_the_last_view_give_exactly_one_success(caller, shop):
    created = data(caller, "videos.share", video_ids=[str(shop[2][0]["id"])], max_views=1)
    results = [
        caller.send_task("videos.share_resolve", kwargs={"token": created["token"]}, queue="videos")
        for _ in range(6)
    ]

    answers = [result.get(timeout=30) for result in results]

    assert sorted(a["status"] for a in answers) == [200] + [404] * 5


def test_a_password_is_asked_for_then_too_many_attempts_even_with_the_right_one(caller, shop):
    created = data(caller, "videos.share", video_ids=[str(shop[2][0]["id"])], password=PASSWORD)

    missing = call(caller, "videos.share_resolve", token=created["token"])
    wrong = [
        call(caller, "videos.share_resolve", token=created["token"], password="guess number x")
        for _ in range(4)
    ]
    refused = call(caller, "videos.share_resolve", token=created["token"], password=PASSWORD)

    forbidden = {"code": "forbidden", "detail": "Wrong password"}
    assert (missing["status"], missing["error"]) == (403, forbidden)
    assert all((w["status"], w["error"]) == (403, forbidden) for w in wrong)
    assert refused["status"] == 429 and refused["error"]["code"] == "too_many_attempts"


def test_the_right_password_opens_and_the_listing_says_it_has_one(caller, shop):
    created = data(caller, "videos.share", video_ids=[str(shop[2][0]["id"])], password=PASSWORD)

    opened = data(caller, "videos.share_resolve", token=created["token"], password=PASSWORD)

    assert opened["share_id"] == created["share_id"]
    (listed,) = data(caller, "videos.shares", video_id=str(shop[2][0]["id"]))["shares"]
    assert listed["has_password"] is True and "token" not in listed


@pytest.mark.parametrize(
    ("kwargs", "loc"),
    [
        ({"expires_in_minutes": 4}, "expires_in_minutes"),
        ({"expires_in_minutes": 43201}, "expires_in_minutes"),
        ({"password": "short"}, "password"),
        ({"password": "p" * 129}, "password"),
        ({"max_views": 0}, "max_views"),
        ({"max_views": 1_000_001}, "max_views"),
        ({"label": "l" * 201}, "label"),
        ({"targets": ["poster"]}, "targets"),
        ({"video_ids": [str(uuid.uuid4()) for _ in range(101)]}, "video_ids"),
    ],
)
def test_bad_input_is_a_clear_answer_and_nothing_is_written(caller, shop, engine, kwargs, loc):
    request = {"video_ids": [str(shop[2][0]["id"])], **kwargs}

    envelope = call(caller, "videos.share", **request)

    assert envelope["status"] == 400, envelope
    assert envelope["error"]["fields"][0]["loc"][0] == loc
    assert "p" * 20 not in str(envelope)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM shares")).scalar_one() == 0


def test_a_video_not_there_is_not_found_by_name(caller, shop):
    ghost = str(uuid.uuid4())

    envelope = call(caller, "videos.share", video_ids=[str(shop[2][0]["id"]), ghost])

    assert envelope["error"] == {"code": "not_found", "detail": f"Video {ghost} not found"}


def _read(store: redis.Redis, key: bytes) -> object:
    readers = {
        "string": lambda: store.get(key),
        "list": lambda: store.lrange(key, 0, -1),
        "hash": lambda: store.hgetall(key),
        "set": lambda: store.smembers(key),
        "zset": lambda: store.zrange(key, 0, -1),
        "stream": lambda: store.xrange(key),
    }
    return readers.get(store.type(key).decode(), lambda: b"")()


def test_no_table_redis_key_or_log_line_holds_a_token_or_a_password(
    services, worker_process, worker_log, shop, engine, redis_client
):
    """The create answer is the only place the token appears: read once by the typed
    client, which forgets the result at once. Everything else is searched for both."""
    client = VideoClient(services["CELERY_BROKER_URL"], services["CELERY_RESULT_BACKEND"])
    try:
        created = client.call(
            "videos.share", video_ids=[str(shop[2][0]["id"])], password=PASSWORD, timeout=30
        )["data"]
        token = created["token"]
        answers = []
        for password in ("not the password", PASSWORD, None):
            kwargs = (
                {"token": token} if password is None else {"token": token, "password": password}
            )
            answers.append(client.call("videos.share_resolve", timeout=30, **kwargs))
        client.call("videos.shares", timeout=30)
        client.call("videos.share_revoke", share_id=created["share_id"], timeout=30)
        answers.append(
            client.call("videos.share_resolve", token=token, password=PASSWORD, timeout=30)
        )
    finally:
        client.close()
    # Each resolve ran with the share's token (the client's own ``token`` is not taken
    # for it): a wrong password, the right one, none, and after the revoke.
    assert [a["ok"] for a in answers] == [False, True, False, False], answers
    assert answers[1]["data"]["videos"] and answers[3]["error"]["code"] == "not_found"
    secrets_ = (token, token[4:], PASSWORD)

    with engine.connect() as conn:
        tables = (
            conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            .scalars()
            .all()
        )
        for table in tables:
            dump = conn.execute(text(f'SELECT CAST(t AS text) FROM "{table}" AS t')).scalars().all()  # noqa: S608
            for secret in secrets_:
                assert not any(secret in row for row in dump), table
    seen = 0
    for url in {services["REDIS_URL"], services["CELERY_RESULT_BACKEND"]}:
        store = redis.Redis.from_url(url)
        for key in store.scan_iter(count=1000):
            seen += 1
            value = _read(store, key)
            for secret in secrets_:
                assert secret.encode() not in key + repr(value).encode(), key
    assert seen
    log = worker_log.read_text()
    assert "share.resolved" in log or "share" in log
    for secret in secrets_:
        assert secret not in log


def test_share_resolve_is_quick_enough_to_race_with_threads(caller, shop):
    """Several threads of one caller, each its own message: every answer is whole."""
    created = data(caller, "videos.share", video_ids=[str(v["id"]) for v in shop[2]])
    answers: list[dict] = []

    def resolve() -> None:
        answers.append(call(caller, "videos.share_resolve", token=created["token"]))

    threads = [threading.Thread(target=resolve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert [len(a["data"]["videos"]) for a in answers] == [4, 4, 4, 4]
