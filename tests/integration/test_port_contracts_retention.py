"""Port contracts of Retention settings: each mall's period and quota, its storage, legal holds.

As every ``test_port_contracts*.py``: each test takes ``world`` and runs on the in-memory
fake (``[fake]``) and on the real adapter (``[real]``), so the handlers' unit tests,
which trust the fakes, test what PostgreSQL does.
"""

from __future__ import annotations

import uuid

import pytest

from tests.contracts.world import World, world_of
from tests.unit.fakes import T0


@pytest.fixture(params=["fake", "real"])
def world(request: pytest.FixtureRequest) -> World:
    return world_of(request)


# Periods


def test_mall_retention_days_lists_every_mall_or_one_with_none_where_it_has_no_period(world):
    own_period = world.mall(retention_days=7)
    default_period = world.mall()
    without_videos = world.mall(retention_days=400)
    world.video(own_period)
    world.video(default_period)

    every = world.read(lambda uow: uow.retention.mall_retention_days(None))
    assert sorted(every) == sorted([(own_period, 7), (default_period, None), (without_videos, 400)])
    assert world.read(lambda uow: uow.retention.mall_retention_days(default_period)) == [
        (default_period, None)
    ]
    assert world.read(lambda uow: uow.retention.mall_retention_days(without_videos)) == [
        (without_videos, 400)
    ]
    assert world.read(lambda uow: uow.retention.mall_retention_days(uuid.uuid4())) == []


def test_set_and_clear_mall_retention_say_whether_there_was_a_mall_or_a_period(world):
    mall = world.mall()

    assert world.write(lambda uow: uow.retention.set_mall_retention(mall, 30)) is True
    assert world.write(lambda uow: uow.retention.set_mall_retention(mall, 40)) is True
    assert world.read(lambda uow: uow.retention.mall_retention_days(mall)) == [(mall, 40)]
    assert world.write(lambda uow: uow.retention.set_mall_retention(uuid.uuid4(), 30)) is False
    assert world.write(lambda uow: uow.retention.clear_mall_retention(mall)) is True
    assert world.write(lambda uow: uow.retention.clear_mall_retention(mall)) is False
    assert world.read(lambda uow: uow.retention.mall_retention_days(mall)) == [(mall, None)]


def test_set_mall_retention_changes_only_what_is_given_and_clear_removes_both(world):
    mall = world.mall()

    def set_retention(**given):
        return world.write(lambda uow: uow.retention.set_mall_retention(mall, **given))

    def retention():
        return world.read(
            lambda uow: (uow.retention.mall_retention_days(mall), uow.retention.mall_quotas(mall))
        )

    assert set_retention(max_storage_bytes=5_000) is True
    assert retention() == ([(mall, None)], [(mall, 5_000)])
    assert set_retention(days=30) is True
    assert retention() == ([(mall, 30)], [(mall, 5_000)])
    assert set_retention(max_storage_bytes=8_000) is True
    assert retention() == ([(mall, 30)], [(mall, 8_000)])
    assert world.write(lambda uow: uow.retention.set_mall_retention(uuid.uuid4(), None, 1)) is False
    assert world.write(lambda uow: uow.retention.clear_mall_retention(mall)) is True
    assert retention() == ([(mall, None)], [])
    assert world.write(lambda uow: uow.retention.clear_mall_retention(mall)) is False
    with pytest.raises(ValueError):  # noqa: PT011 - the refusal is the point, not its text
        set_retention()
    assert retention() == ([(mall, None)], [])


# Quotas


def test_mall_quotas_list_only_malls_with_a_quota(world):
    days_only = world.mall(retention_days=30)
    quota_only = world.mall(max_storage_bytes=5_000)
    both = world.mall(retention_days=7, max_storage_bytes=9_000)
    world.mall()

    assert world.read(lambda uow: uow.retention.mall_quotas(None)) == sorted(
        [(quota_only, 5_000), (both, 9_000)]
    )
    assert world.read(lambda uow: uow.retention.mall_quotas(both)) == [(both, 9_000)]
    assert world.read(lambda uow: uow.retention.mall_quotas(days_only)) == []
    assert world.read(lambda uow: uow.retention.mall_retention_days(quota_only)) == [
        (quota_only, None)
    ]


def test_mall_storage_counts_originals_and_proxies_of_every_video_in_the_trash_too(world):
    mall, other = world.mall(), world.mall()
    world.video(mall, file_size_bytes=1_000, proxy_size_bytes=100)
    world.video(mall, proxy=False, file_size_bytes=2_000)
    world.video(mall, file_size_bytes=3_000, proxy_size_bytes=300, trashed_at=T0)
    world.video(mall, file_size_bytes=4_000, legal_hold=True)
    world.video(other, file_size_bytes=99_000)

    assert world.read(lambda uow: uow.retention.mall_storage(mall)) == 10_500
    assert world.read(lambda uow: uow.retention.mall_storage(world.mall())) == 0
