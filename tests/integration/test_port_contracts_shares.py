"""Port contracts of Shares: create, look-up by token hash, attempts, views, revoke, page.

As every ``test_port_contracts*.py``: each test takes ``world`` and runs on the in-memory
fake (``[fake]``) and on the real adapter (``[real]``). The race for a link's last view
runs on PostgreSQL only, with threads (``test_two_opens_racing_for_the_last_view``).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import timedelta

import pytest

from handlers.access import UNRESTRICTED, Scope
from handlers.ports import NewShare
from tests.contracts.world import World, world_of
from tests.unit.fakes import T0

WINDOW = timedelta(minutes=15)


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    return world_of(request)


def make_share(world: World, videos, **overrides) -> NewShare:
    fields = {
        "id": uuid.uuid4(),
        "token_hash": hashlib.sha256(uuid.uuid4().bytes).digest(),
        "password_hash": None,
        "created_by": "alice",
        "created_at": T0,
        "expires_at": T0 + timedelta(days=7),
        "max_views": None,
        "label": "for the insurer",
        "targets": ["proxy", "thumbnail"],
        "video_ids": [v.id for v in videos],
        "mall_ids": sorted({v.mall_id for v in videos}),
        "pin_ids": sorted({v.pin_id for v in videos}),
    }
    fields.update(overrides)
    share = NewShare(**fields)
    world.write(lambda uow: uow.shares.create(share))
    return share


def test_a_share_is_found_by_its_token_hash_only(world):
    mall = world.mall()
    share = make_share(world, [world.video(mall)])

    found = world.read(lambda uow: uow.shares.by_token_hash(share.token_hash))
    unknown = world.read(lambda uow: uow.shares.by_token_hash(b"\0" * 32))

    assert (found.id, found.token_hash, found.expires_at) == (
        share.id,
        share.token_hash,
        share.expires_at,
    )
    assert (found.views, found.max_views, found.label, found.targets) == (
        0,
        None,
        "for the insurer",
        ["proxy", "thumbnail"],
    )
    assert unknown is None


def test_views_are_counted_until_max_views_then_refused(world):
    share = make_share(world, [world.video(world.mall())], max_views=2)

    first = world.write(lambda uow: uow.shares.count_view(share.id, T0))
    second = world.write(lambda uow: uow.shares.count_view(share.id, T0))
    third = world.write(lambda uow: uow.shares.count_view(share.id, T0))

    assert (first.views, second.views, third) == (1, 2, None)


def test_an_expired_or_revoked_share_counts_no_view(world):
    mall = world.mall()
    expired = make_share(world, [world.video(mall)], expires_at=T0 + timedelta(minutes=5))
    revoked = make_share(world, [world.video(mall)])
    world.write(lambda uow: uow.shares.revoke(UNRESTRICTED, revoked.id, T0, "bob"))

    late = T0 + timedelta(minutes=5)
    assert world.write(lambda uow: uow.shares.count_view(expired.id, late)) is None
    assert world.write(lambda uow: uow.shares.count_view(revoked.id, T0)) is None
    in_time = world.write(lambda uow: uow.shares.count_view(expired.id, late - timedelta(1e-3)))
    assert in_time is not None and in_time.views == 1


def test_attempts_count_within_a_window_and_start_again_after_it(world):
    share = make_share(world, [world.video(world.mall())])

    def attempt(at):
        return world.write(lambda uow: uow.shares.note_attempt(share.id, at, WINDOW))

    counts = [attempt(T0 + timedelta(minutes=i)) for i in range(3)]
    world.write(lambda uow: uow.shares.forgive_attempt(share.id))
    fourth = world.write(lambda uow: uow.shares.note_attempt(share.id, T0, WINDOW))
    after_window = world.write(lambda uow: uow.shares.note_attempt(share.id, T0 + WINDOW, WINDOW))

    assert counts == [1, 2, 3]
    assert fourth == 3
    assert after_window == 1


def test_a_shares_videos_come_in_the_order_shared_without_deleted_or_trashed_ones(world):
    mall = world.mall()
    videos = [world.video(mall, original_filename=f"v{i}.mp4") for i in range(4)]
    share = make_share(world, [videos[2], videos[0], videos[3], videos[1]])
    world.write(lambda uow: uow.removal.trash(UNRESTRICTED, videos[3].id, T0, None))
    world.write(lambda uow: uow.removal.delete(UNRESTRICTED, videos[1].id))

    shared = world.write(lambda uow: uow.shares.count_view(share.id, T0)).videos

    assert [v.id for v in shared] == [videos[2].id, videos[0].id]
    first = shared[0]
    assert (first.original_filename, first.duration_seconds, first.uploaded_at) == (
        "v2.mp4",
        videos[2].duration_seconds,
        videos[2].uploaded_at,
    )
    assert first.files == {
        "original": videos[2].original_path,
        "proxy": videos[2].proxy_path,
        "thumbnail": videos[2].thumbnail_path,
    }


def test_a_scope_sees_and_revokes_a_share_all_of_whose_videos_it_sees(world):
    mall_a, mall_b = world.mall(), world.mall()
    pin_a1, pin_a2 = world.pin(mall_a, "A1"), world.pin(mall_a, "A2")
    a1, a2, b = world.video(mall_a, pin_a1), world.video(mall_a, pin_a2), world.video(mall_b)
    of_a = make_share(world, [a1, a2])
    of_both = make_share(world, [a1, b], created_at=T0 + timedelta(seconds=1))
    of_a1 = make_share(world, [a1], created_at=T0 + timedelta(seconds=2))

    def seen(scope):
        shares, total = world.read(lambda uow: uow.shares.page(scope, None, False, T0, 1, 20))
        return [s.share_id for s in shares], total

    assert seen(UNRESTRICTED) == ([of_a1.id, of_both.id, of_a.id], 3)
    assert seen(Scope.operator([mall_a])) == ([of_a1.id, of_a.id], 2)
    assert seen(Scope.tenant([pin_a1])) == ([of_a1.id], 1)
    assert (
        world.write(lambda uow: uow.shares.revoke(Scope.operator([mall_a]), of_both.id, T0, "x"))
        is None
    )
    assert world.write(
        lambda uow: uow.shares.revoke(Scope.operator([mall_a]), of_a.id, T0, "op")
    ) == (of_a.id, True)
    assert world.write(lambda uow: uow.shares.revoke(UNRESTRICTED, of_a.id, T0, "root")) == (
        of_a.id,
        False,
    )


def test_a_page_leaves_out_what_no_longer_opens_unless_asked_and_filters_by_video(world):
    mall = world.mall()
    one, two = world.video(mall), world.video(mall)
    live = make_share(world, [one, two], password_hash="$argon2id$fake", max_views=5)
    used_up = make_share(world, [one], max_views=1, created_at=T0 + timedelta(seconds=1))
    world.write(lambda uow: uow.shares.count_view(used_up.id, T0))
    expired = make_share(
        world, [two], created_at=T0 - timedelta(days=9), expires_at=T0 - timedelta(days=2)
    )

    def page(video_id=None, include_expired=False, page=1, size=20):
        shares, total = world.read(
            lambda uow: uow.shares.page(UNRESTRICTED, video_id, include_expired, T0, page, size)
        )
        return [s.share_id for s in shares], total

    assert page() == ([live.id], 1)
    assert page(include_expired=True) == ([used_up.id, live.id, expired.id], 3)
    assert page(video_id=two.id, include_expired=True) == ([live.id, expired.id], 2)
    assert page(include_expired=True, page=2, size=2) == ([expired.id], 3)
    summary = world.read(lambda uow: uow.shares.page(UNRESTRICTED, None, False, T0, 1, 20))[0][0]
    assert summary.model_dump() == {
        "share_id": live.id,
        "label": "for the insurer",
        "created_by": "alice",
        "created_at": T0,
        "expires_at": T0 + timedelta(days=7),
        "revoked_at": None,
        "targets": ["proxy", "thumbnail"],
        "video_count": 2,
        "views": 0,
        "max_views": 5,
        "last_viewed_at": None,
        "has_password": True,
    }


@pytest.mark.parametrize("world", ["real"], indirect=True)
def test_two_opens_racing_for_the_last_view_give_exactly_one(world):
    """Threads on PostgreSQL: every open that saw the share as still opening tries its
    conditional UPDATE at once; the row's lock lets exactly one through."""
    for _ in range(5):
        share = make_share(world, [world.video(world.mall())], max_views=1)
        assert sum(view is not None for view in race(world, share, 4)) == 1


def race(world: World, share: NewShare, openers: int) -> list[object]:
    start = threading.Barrier(openers)
    results: list[object] = []

    def open_it() -> None:
        with world.uow() as uow:
            assert uow.shares.by_token_hash(share.token_hash) is not None
            start.wait()
            results.append(uow.shares.count_view(share.id, T0))
            uow.commit()

    threads = [threading.Thread(target=open_it) for _ in range(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == openers
    return results


def test_shares_that_ended_before_the_cutoff_are_pruned_with_their_videos_and_no_others(world):
    mall = world.mall()
    video = world.video(mall)
    expired = make_share(world, [video], expires_at=T0 + timedelta(days=1))
    revoked = make_share(world, [video], expires_at=T0 + timedelta(days=30))
    world.write(lambda uow: uow.shares.revoke(UNRESTRICTED, revoked.id, T0, "bob"))
    running = make_share(world, [video], expires_at=T0 + timedelta(days=30))
    cutoff = T0 + timedelta(days=2)

    first = world.write(lambda uow: uow.shares.prune(cutoff, 1))
    rest = world.write(lambda uow: uow.shares.prune(cutoff, 10))

    assert (first, rest) == (1, 1)
    assert world.read(lambda uow: uow.shares.by_token_hash(expired.token_hash)) is None
    assert world.read(lambda uow: uow.shares.by_token_hash(revoked.token_hash)) is None
    kept = world.read(lambda uow: uow.shares.by_token_hash(running.token_hash))
    assert kept is not None
    shown = world.write(lambda uow: uow.shares.count_view(running.id, T0)).videos
    assert [v.id for v in shown] == [video.id]
    assert world.write(lambda uow: uow.shares.prune(cutoff, 10)) == 0
