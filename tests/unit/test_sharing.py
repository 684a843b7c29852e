"""Share links on fakes: creating, resolving, attempts, revoking, listing, bad input."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from pydantic import ValidationError

from handlers.access import Scope
from handlers.errors import InvalidRequest, NotFound, TooManyAttempts, WrongPassword
from handlers.sharing import (
    TOKEN_SHAPE,
    create_share,
    list_shares,
    resolve_share,
    revoke_share,
)
from schemas.requests import CreateShare, ListShares, ResolveShare, RevokeShare
from tests.unit.fakes import T0, Fakes, make_video
from worker.logs import SHARE_TOKEN

MALL = uuid.uuid4()
PASSWORD = "correct horse battery"


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


def shared(fakes: Fakes, count: int = 2, **kwargs):
    videos = [make_video(mall_id=MALL) for _ in range(count)]
    fakes.add_videos(*videos)
    created = create_share(CreateShare(video_ids=[v.id for v in videos], **kwargs), fakes.deps)
    return created, videos


def resolve(fakes: Fakes, token: str, password: str | None = None):
    return resolve_share(ResolveShare(token=token, password=password), fakes.deps)


def test_a_token_is_256_random_bits_url_safe_with_a_findable_head(fakes):
    created, _ = shared(fakes)
    other, _ = shared(fakes)

    assert TOKEN_SHAPE.fullmatch(created.token) and SHARE_TOKEN.fullmatch(created.token)
    assert created.token != other.token
    stored = fakes.uow.shares.rows[created.share_id].share
    assert stored.token_hash == hashlib.sha256(created.token.encode()).digest()
    assert created.token not in repr(stored)


def test_the_default_expiry_is_a_week_and_a_chosen_one_is_kept_exactly(fakes):
    default, _ = shared(fakes)
    chosen, _ = shared(fakes, expires_in_minutes=90)

    assert default.expires_at == T0 + timedelta(days=7)
    assert chosen.expires_at == T0 + timedelta(minutes=90)
    assert fakes.uow.shares.rows[chosen.share_id].share.expires_at == T0 + timedelta(minutes=90)


def test_expiry_bounds_follow_share_max_minutes(fakes):
    with pytest.raises(ValidationError):
        CreateShare(video_ids=[str(uuid.uuid4())], expires_in_minutes=4)
    fakes.policy = replace(fakes.policy, share_max_minutes=60)
    with pytest.raises(InvalidRequest) as caught:
        shared(fakes, expires_in_minutes=61)
    assert caught.value.fields == [
        {
            "loc": ["expires_in_minutes"],
            "msg": "Input should be less than or equal to 60 (SHARE_MAX_MINUTES)",
        }
    ]
    assert fakes.uow.shares.rows == {}
    assert shared(fakes, expires_in_minutes=60)[0].expires_at == T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"password": "short"},
        {"password": "x" * 129},
        {"max_views": 0},
        {"max_views": 1_000_001},
        {"label": "x" * 201},
        {"targets": []},
        {"targets": ["proxy", "proxy"]},
        {"targets": ["poster"]},
        {"video_ids": []},
        {"video_ids": [str(uuid.uuid4()) for _ in range(101)]},
    ],
)
def test_bad_input_is_refused_before_anything_is_written(kwargs):
    with pytest.raises(ValidationError):
        CreateShare(**{"video_ids": [str(uuid.uuid4())], **kwargs})


def test_a_video_unseen_or_in_the_trash_is_not_found_by_name_and_nothing_is_written(fakes):
    mine, theirs, binned = make_video(mall_id=MALL), make_video(), make_video(mall_id=MALL)
    fakes.add_videos(mine, theirs, binned)
    fakes.uow.videos.trashed[binned.id] = (T0, None)
    deps = replace(fakes.deps, scope=Scope.operator([MALL]))

    with pytest.raises(NotFound) as one:
        create_share(CreateShare(video_ids=[mine.id, theirs.id]), deps)
    with pytest.raises(NotFound) as two:
        create_share(CreateShare(video_ids=[theirs.id, mine.id, binned.id]), deps)

    assert one.value.detail == f"Video {theirs.id} not found"
    assert two.value.detail == f"Videos {theirs.id}, {binned.id} not found"
    assert fakes.uow.shares.rows == {} and fakes.uow.events.of_type("share.created") == []


def test_a_resolve_mints_short_urls_for_the_targets_only_and_counts_a_view(fakes):
    created, videos = shared(fakes, targets=["thumbnail"], label="for the insurer")

    answer = resolve(fakes, created.token)

    assert answer.label == "for the insurer" and answer.expires_at == created.expires_at
    assert answer.urls_expire_at == T0 + timedelta(minutes=15)
    assert [v.id for v in answer.videos] == [v.id for v in videos]
    assert answer.videos[0].urls == {
        "thumbnail": f"http://s3.fake/bucket/{videos[0].thumbnail_path}?X-Amz-Expires=900"
    }
    assert fakes.uow.shares.rows[created.share_id].views == 1
    (viewed,) = fakes.uow.events.of_type("share.viewed")
    assert viewed.subject == str(created.share_id) and viewed.data["views"] == 1


def test_urls_never_outlive_the_share(fakes):
    created, _ = shared(fakes, expires_in_minutes=5)
    fakes.clock.advance(timedelta(minutes=4))

    answer = resolve(fakes, created.token)

    assert answer.urls_expire_at == created.expires_at
    assert {expires for _, expires in fakes.store.presigned} == {60}


def test_videos_trashed_or_deleted_since_are_left_out(fakes):
    created, videos = shared(fakes, count=3)
    fakes.uow.videos.trashed[videos[0].id] = (T0, None)
    fakes.uow.videos.drop(videos[1])

    assert [v.id for v in resolve(fakes, created.token).videos] == [videos[2].id]


@pytest.mark.parametrize(
    "token",
    ["", "vws_", "vws_" + "A" * 42, "vws_" + "A" * 44, "xyz_" + "A" * 43, "A" * 47, "é" * 47],
)
def test_a_token_of_the_wrong_shape_is_share_not_found(fakes, token):
    shared(fakes)

    with pytest.raises(NotFound) as caught:
        resolve(fakes, token)

    assert caught.value.detail == "Share not found"


def test_unknown_expired_revoked_and_used_up_are_one_answer(fakes):
    expired, _ = shared(fakes, expires_in_minutes=5)
    revoked, _ = shared(fakes)
    used_up, _ = shared(fakes, max_views=1)
    revoke_share(RevokeShare(share_id=revoked.share_id), fakes.deps)
    resolve(fakes, used_up.token)
    fakes.clock.advance(timedelta(minutes=5))
    unknown = "vws_" + "B" * 43

    details = []
    for token in (unknown, expired.token, revoked.token, used_up.token):
        with pytest.raises(NotFound) as caught:
            resolve(fakes, token)
        details.append((caught.value.code, caught.value.detail))

    assert details == [("not_found", "Share not found")] * 4


def test_a_password_is_stored_as_argon2id_and_checked(fakes):
    created, _ = shared(fakes, password=PASSWORD)
    stored = fakes.uow.shares.rows[created.share_id].share.password_hash

    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    for wrong in (None, "wrong password"):
        with pytest.raises(WrongPassword) as caught:
            resolve(fakes, created.token, wrong)
        assert (caught.value.code, caught.value.detail) == ("forbidden", "Wrong password")
    assert resolve(fakes, created.token, PASSWORD).share_id == created.share_id
    # The right password's attempt is not held against the share.
    assert fakes.uow.shares.rows[created.share_id].failed_attempts == 2


def test_too_many_wrong_passwords_refuse_even_the_right_one_until_the_window_passes(fakes):
    created, _ = shared(fakes, password=PASSWORD)
    for _ in range(5):
        with pytest.raises(WrongPassword):
            resolve(fakes, created.token, "guess guess")

    with pytest.raises(TooManyAttempts) as caught:
        resolve(fakes, created.token, PASSWORD)
    assert caught.value.code == "too_many_attempts"
    fakes.clock.advance(timedelta(minutes=14))
    with pytest.raises(TooManyAttempts):
        resolve(fakes, created.token, PASSWORD)
    fakes.clock.advance(timedelta(minutes=1))
    assert resolve(fakes, created.token, PASSWORD).share_id == created.share_id
    assert fakes.uow.shares.rows[created.share_id].views == 1


def test_revoke_is_for_callers_who_see_every_video_and_records_who(fakes):
    created, videos = shared(fakes)
    other_mall = Scope.operator([uuid.uuid4()], subject="stranger")
    owner = Scope.operator([MALL], subject="op-1")

    with pytest.raises(NotFound) as caught:
        revoke_share(RevokeShare(share_id=created.share_id), replace(fakes.deps, scope=other_mall))
    first = revoke_share(RevokeShare(share_id=created.share_id), replace(fakes.deps, scope=owner))
    again = revoke_share(RevokeShare(share_id=created.share_id), fakes.deps)

    assert caught.value.detail == f"Share {created.share_id} not found"
    assert first.revoked and again.revoked
    assert fakes.uow.shares.rows[created.share_id].revoked_by == "op-1"
    assert [e.data["revoked_by"] for e in fakes.uow.events.of_type("share.revoked")] == ["op-1"]


def test_shares_lists_never_a_token_or_a_password(fakes):
    created, videos = shared(fakes, password=PASSWORD, max_views=3, label="L")

    listed = list_shares(ListShares(), fakes.deps)
    of_video = list_shares(ListShares(video_id=videos[1].id), fakes.deps)

    dumped = listed.model_dump_json()
    assert created.token not in dumped and PASSWORD not in dumped and "argon2" not in dumped
    assert listed.total == 1 and of_video.total == 1
    (summary,) = listed.shares
    assert (summary.has_password, summary.max_views, summary.video_count) == (True, 3, 2)
    events = fakes.uow.events.entries
    assert created.token not in repr(events) and PASSWORD not in repr(events)
