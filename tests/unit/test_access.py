"""Access scope through the real task entry points, on fakes: the role table, a video of
another mall is ``not_found`` to every task, statistics cover what the caller sees, and
the audit records who deleted."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from handlers import get_stats
from handlers.access import UNRESTRICTED, Scope, may_run
from schemas import BulkDeleteProgress, GetStats
from schemas.contract import PUBLIC_TASKS, ROLES_OF_TASK, TASK_NAMES
from tasks.entrypoints import ENTRY_POINTS
from tests.unit.fakes import T0, Fakes, make_video
from worker import logs
from worker.runtime import auth as edge
from worker.runtime.tokens import mint_token
from worker.settings import load_settings

SECRET = "unit-test-secret-of-at-least-32-bytes"
MALL_A, MALL_B = uuid.uuid4(), uuid.uuid4()
PIN_A1, PIN_A2, PIN_B1 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
TASKS = {name: ENTRY_POINTS[name] for name in TASK_NAMES}


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    """A worker with AUTH_MODE=jwt whose tasks run eagerly on fakes."""
    fakes = Fakes()
    fakes.add_videos(
        make_video(mall_id=MALL_A, pin_id=PIN_A1, file_size_bytes=1_000, proxy_size_bytes=10),
        make_video(mall_id=MALL_A, pin_id=PIN_A2, file_size_bytes=2_000, proxy_size_bytes=20),
        make_video(mall_id=MALL_B, pin_id=PIN_B1, file_size_bytes=4_000, proxy_size_bytes=40),
    )
    settings = load_settings(auth_mode="jwt", auth_jwt_secret=SECRET)
    monkeypatch.setattr(edge, "get_settings", lambda: settings)
    monkeypatch.setattr("worker.runtime.tasking.get_deps", lambda: fakes.deps)
    edge.reset()
    yield fakes
    edge.reset()


def token(role: str, sub: str = "alice", ttl: float = 600, **scope) -> str:
    return mint_token(SECRET, role=role, subject=sub, ttl=timedelta(seconds=ttl), **scope)


def run(task: str, **kwargs) -> dict:
    return TASKS[task].apply(kwargs=kwargs).get()


def video_of(fakes: Fakes, mall_id: uuid.UUID):
    return next(v for v in fakes.uow.videos.rows.values() if v.mall_id == mall_id)


def test_the_role_table_is_the_contracts():
    every, managers = {"admin", "operator", "tenant"}, {"admin", "operator"}
    expected = {
        "videos.list": every,
        "videos.get": every,
        "videos.sign_url": every,
        "videos.sign_urls": every,
        "videos.stats": every,
        "videos.delete": managers,
        "videos.bulk_delete": managers,
        "videos.restore": managers,
        "videos.retention_sweep": {"admin"},
        "videos.purge_storage": {"admin"},
        "videos.refresh_stats": {"admin"},
    }
    for task, roles in expected.items():
        assert {r for r in every if may_run(r, task)} == roles, task
    # Every task of the contract has a row; a task without one is closed to everybody.
    assert set(TASK_NAMES) <= set(ROLES_OF_TASK)
    assert not any(may_run(role, "videos.not_yet_written") for role in every)


@pytest.mark.parametrize(
    ("task", "kwargs"),
    [
        ("videos.get", {}),
        ("videos.sign_url", {"target": "proxy"}),
        ("videos.sign_url", {"target": "original"}),
        ("videos.delete", {}),
    ],
)
def test_an_operator_of_mall_a_gets_not_found_for_a_video_of_mall_b(fakes, task, kwargs):
    theirs = video_of(fakes, MALL_B)
    operator_a = token("operator", malls=[MALL_A])

    envelope = run(task, video_id=str(theirs.id), auth=operator_a, **kwargs)

    assert envelope == {
        "ok": False,
        "status": 404,
        "error": {"code": "not_found", "detail": f"Video {theirs.id} not found"},
    }
    assert theirs.id in fakes.uow.videos.rows  # not deleted, not signed
    assert fakes.store.presigned == [] and fakes.uow.audit.entries == []
    # The same call on the operator's own video is answered.
    ours = video_of(fakes, MALL_A)
    assert run(task, video_id=str(ours.id), auth=operator_a, **kwargs)["ok"] is True


def test_an_operator_lists_only_its_malls_and_a_mall_filter_outside_them_is_an_empty_page(fakes):
    operator_a = token("operator", malls=[MALL_A])

    mine = run("videos.list", auth=operator_a)["data"]
    theirs = run("videos.list", auth=operator_a, mall_id=str(MALL_B))["data"]

    assert {v["mall_id"] for v in mine["videos"]} == {str(MALL_A)} and mine["total"] == 2
    assert (theirs["videos"], theirs["total"], theirs["total_pages"]) == ([], 0, 0)


def test_a_tenant_sees_only_its_pins_and_may_not_delete(fakes):
    tenant = token("tenant", sub="tom", pins=[PIN_A1])
    own = next(v for v in fakes.uow.videos.rows.values() if v.pin_id == PIN_A1)
    neighbour = next(v for v in fakes.uow.videos.rows.values() if v.pin_id == PIN_A2)

    listed = run("videos.list", auth=tenant)["data"]
    assert [v["id"] for v in listed["videos"]] == [str(own.id)]
    assert run("videos.get", auth=tenant, video_id=str(neighbour.id))["error"]["code"] == (
        "not_found"
    )
    assert run("videos.sign_url", auth=tenant, video_id=str(own.id))["ok"] is True
    refused = run("videos.delete", auth=tenant, video_id=str(own.id))
    assert refused == {
        "ok": False,
        "status": 403,
        "error": {"code": "forbidden", "detail": "Role tenant may not run videos.delete"},
    }
    assert own.id in fakes.uow.videos.rows


@pytest.mark.parametrize(
    "task", ["videos.refresh_stats", "videos.retention_sweep", "videos.purge_storage"]
)
@pytest.mark.parametrize("role", ["operator", "tenant"])
def test_maintenance_is_for_admins_only(fakes, task, role):
    envelope = run(task, auth=token(role, malls=[MALL_A], pins=[PIN_A1]))

    assert (envelope["status"], envelope["error"]["code"]) == (403, "forbidden")
    assert run(task, auth=token("admin"))["ok"] is True


def test_every_task_without_a_valid_token_is_unauthorized_and_reveals_nothing(fakes):
    theirs = video_of(fakes, MALL_B)
    expired = token("admin", ttl=-120)
    for task in sorted(set(TASKS) - PUBLIC_TASKS):
        for bad, detail in (
            (None, "auth: a token is required (AUTH_MODE=jwt)"),
            (expired, "auth: token expired"),
            ("not-a-jwt", "auth: not a well-formed JWT"),
        ):
            kwargs = {"video_id": str(theirs.id), "nonsense": 1}
            if bad is not None:
                kwargs["auth"] = bad
            envelope = run(task, **kwargs)
            assert envelope == {
                "ok": False,
                "status": 401,
                "error": {"code": "unauthorized", "detail": detail},
            }, task
    assert len(fakes.uow.videos.rows) == 3


def test_a_public_task_asks_for_no_token_and_reads_none_it_is_given(fakes):
    """A share's token is its caller's credential: a resolve needs no ``auth``, and one
    sent along (expired, malformed, or an admin's) changes nothing."""
    assert PUBLIC_TASKS == {"videos.share_resolve"}
    unknown = {
        "ok": False,
        "status": 404,
        "error": {"code": "not_found", "detail": "Share not found"},
    }
    for auth in (None, token("admin", ttl=-120), "not-a-jwt", token("admin")):
        kwargs = {"token": "vws_" + "A" * 43}
        if auth is not None:
            kwargs["auth"] = auth
        assert run("videos.share_resolve", **kwargs) == unknown


def test_with_auth_off_the_auth_kwarg_is_accepted_and_ignored(fakes, monkeypatch):
    monkeypatch.setattr(edge, "get_settings", lambda: load_settings(auth_mode="off"))
    theirs = video_of(fakes, MALL_B)

    assert run("videos.get", video_id=str(theirs.id), auth="anything")["ok"] is True
    assert run("videos.list")["data"]["total"] == 3
    deleted = run("videos.delete", video_id=str(theirs.id), auth=token("tenant", pins=[]))
    assert deleted["ok"] is True
    assert [e.actor for e in fakes.uow.audit.entries] == [None]


def test_a_delete_records_the_callers_sub_as_actor_and_the_sub_joins_the_log_context(fakes):
    ours = video_of(fakes, MALL_A)
    seen_context = {}
    original = fakes.uow.audit.record

    def record(*args, **kwargs):
        seen_context.update(logs.task_context.get() or {})
        return original(*args, **kwargs)

    fakes.uow.audit.record = record  # type: ignore[method-assign]

    envelope = run(
        "videos.delete", video_id=str(ours.id), auth=token("operator", "olga", malls=[MALL_A])
    )

    assert envelope["ok"] is True
    assert [(e.video_id, e.actor) for e in fakes.uow.audit.entries] == [(ours.id, "olga")]
    assert seen_context.get("sub") == "olga"


def test_an_admins_sweep_records_the_admins_sub(fakes):
    old = make_video(mall_id=MALL_A, uploaded_at=T0 - timedelta(days=400))
    fakes.add_videos(old)

    envelope = run("videos.retention_sweep", auth=token("admin", "root"))

    assert envelope["data"]["deleted"] == 1
    assert [(e.video_id, e.reason, e.actor) for e in fakes.uow.audit.entries] == [
        (old.id, "retention", "root")
    ]


def test_an_operators_statistics_are_the_sum_of_its_malls_cached_figures(fakes):
    both = replace(fakes.deps, scope=Scope.operator([MALL_A, MALL_B]))
    only_a = replace(fakes.deps, scope=Scope.operator([MALL_A]))

    total = get_stats(GetStats(), both)
    assert (total.mall_id, total.total_videos, total.total_storage_bytes) == (None, 3, 7_070)
    # Each mall's whole figure is now cached, as an admin would have it.
    assert set(fakes.cache.entries) == {MALL_A, MALL_B}
    transactions = fakes.uow.transactions
    assert get_stats(GetStats(), only_a).total_storage_bytes == 3_030
    assert get_stats(GetStats(mall_id=MALL_A), both).total_videos == 2
    assert fakes.uow.transactions == transactions  # all from the cache
    outside = get_stats(GetStats(mall_id=MALL_B), only_a)
    assert (outside.mall_id, outside.total_videos, outside.total_storage_bytes) == (MALL_B, 0, 0)


def test_a_tenants_statistics_come_from_per_pin_figures_cached_per_pin(fakes):
    tenant = replace(fakes.deps, scope=Scope.tenant([PIN_A1, PIN_B1]))

    first = get_stats(GetStats(), tenant)
    assert (first.total_videos, first.total_storage_bytes) == (2, 5_050)
    assert set(fakes.cache.pins) == {PIN_A1, PIN_B1}
    transactions = fakes.uow.transactions
    assert get_stats(GetStats(), tenant) == first
    assert fakes.uow.transactions == transactions
    in_mall_b = get_stats(GetStats(mall_id=MALL_B), tenant)
    assert (in_mall_b.mall_id, in_mall_b.total_videos) == (MALL_B, 1)


def test_a_delete_drops_the_per_pin_figure_it_made_stale(fakes):
    tenant = replace(fakes.deps, scope=Scope.tenant([PIN_A1]))
    assert get_stats(GetStats(), tenant).total_videos == 1
    ours = next(v for v in fakes.uow.videos.rows.values() if v.pin_id == PIN_A1)

    assert run("videos.delete", video_id=str(ours.id), auth=token("admin"))["ok"] is True

    assert PIN_A1 not in fakes.cache.pins
    assert get_stats(GetStats(), tenant).total_videos == 0


def test_the_unrestricted_scope_sees_every_video_and_names_nobody():
    assert UNRESTRICTED.sees(MALL_A, PIN_A1) and UNRESTRICTED.subject is None
    assert not Scope.operator([MALL_A]).sees(MALL_B, PIN_A1)
    assert not Scope.tenant([PIN_A1]).sees(MALL_A, PIN_A2)


def test_messages_this_process_sends_carry_the_callers_token_or_beats_service_token(fakes):
    def published(task: str) -> dict:
        body = ((), {}, {})
        edge.attach_credentials(body=body, headers={"task": task})
        return body[1]

    # Beat's schedule: an admin token minted from the secret, naming the worker.
    scheduled = published("videos.retention_sweep")["auth"]
    assert edge.verifier().verify(scheduled) == Scope.admin("videoworker")
    # A caller's task is never given authority it was not sent with.
    assert published("videos.get") == {}
    # Inside a task, what it queues (a flush, a continuation) carries the caller's token.
    caller = token("operator", "olga", malls=[MALL_A])
    edge.authorize("videos.delete", {"auth": caller})
    assert published("videos.flush_stale_stats") == {"auth": caller}
    # A token already there is left alone.
    body = ((), {"auth": "given"}, {})
    edge.attach_credentials(body=body, headers={"task": "videos.purge_storage"})
    assert body[1] == {"auth": "given"}


def test_with_auth_off_nothing_is_attached(fakes, monkeypatch):
    monkeypatch.setattr(edge, "get_settings", lambda: load_settings(auth_mode="off"))
    body = ((), {}, {})
    edge.attach_credentials(body=body, headers={"task": "videos.retention_sweep"})
    assert body[1] == {}


def ids_of(fakes: Fakes, **where) -> list[str]:
    """The fakes' videos (in the order they were added) whose fields equal ``where``."""
    return [
        str(v.id)
        for v in fakes.uow.videos.rows.values()
        if all(getattr(v, name) == value for name, value in where.items())
    ]


@pytest.mark.parametrize(
    ("role", "scope", "signed"),
    [
        ("admin", {}, {}),
        ("operator", {"malls": [MALL_A]}, {"mall_id": MALL_A}),
        ("tenant", {"pins": [PIN_A1]}, {"pin_id": PIN_A1}),
    ],
)
def test_sign_urls_signs_what_the_role_sees_and_answers_the_rest_not_found(
    fakes, role, scope, signed
):
    every = ids_of(fakes)
    seen = ids_of(fakes, **signed)

    envelope = run("videos.sign_urls", video_ids=every, auth=token(role, **scope))

    data = envelope["data"]
    assert [u["video_id"] for u in data["urls"]] == seen
    assert data["not_found"] == [i for i in every if i not in seen]
    assert len(fakes.store.presigned) == len(seen)


@pytest.mark.parametrize(("role", "scope"), [("admin", {}), ("operator", {"malls": [MALL_A]})])
def test_managers_restore_trashed_videos_they_see(fakes, role, scope):
    for video_id in fakes.uow.videos.rows:
        fakes.uow.videos.trashed[video_id] = (T0, None)
    ours = video_of(fakes, MALL_A)
    theirs = video_of(fakes, MALL_B)
    auth = token(role, **scope)

    restored = run("videos.restore", video_id=str(ours.id), auth=auth)
    other = run("videos.restore", video_id=str(theirs.id), auth=auth)

    assert restored == {
        "ok": True,
        "status": 200,
        "data": {"video_id": str(ours.id), "restored": True},
    }
    assert ours.id not in fakes.uow.videos.trashed
    if role == "admin":
        assert other["ok"] is True
    else:
        assert other == {
            "ok": False,
            "status": 404,
            "error": {"code": "not_found", "detail": f"Video {theirs.id} not in trash"},
        }
        assert theirs.id in fakes.uow.videos.trashed


@pytest.mark.parametrize("task", ["videos.restore", "videos.bulk_delete"])
def test_a_tenant_may_neither_restore_nor_bulk_delete(fakes, task):
    own = video_of(fakes, MALL_A)
    fakes.uow.videos.trashed[own.id] = (T0, None)
    kwargs = {"video_id": str(own.id)} if task == "videos.restore" else {"video_ids": [str(own.id)]}

    refused = run(task, auth=token("tenant", pins=[own.pin_id]), **kwargs)

    assert refused == {
        "ok": False,
        "status": 403,
        "error": {"code": "forbidden", "detail": f"Role tenant may not run {task}"},
    }
    assert own.id in fakes.uow.videos.trashed and len(fakes.uow.videos.rows) == 3


def test_an_operators_bulk_delete_takes_only_its_malls_and_names_the_rest_not_found(fakes):
    ours = ids_of(fakes, mall_id=MALL_A)
    [theirs] = ids_of(fakes, mall_id=MALL_B)

    applied = TASKS["videos.bulk_delete"].apply(
        kwargs={
            "video_ids": [theirs, *ours],
            "batch_size": 1,
            "auth": token("operator", "olga", malls=[MALL_A]),
        }
    )

    data = applied.get()["data"]
    assert (data["matched"], data["deleted"], data["not_found"]) == (2, 2, [theirs])
    assert [str(v) for v in fakes.uow.videos.rows] == [theirs]
    assert {(e.reason, e.actor) for e in fakes.uow.audit.entries} == {("bulk", "olga")}
    # Progress is published under the task id the caller awaits.
    progress = [e for e in fakes.publisher.events if isinstance(e, BulkDeleteProgress)]
    assert [(e.task_id, e.deleted) for e in progress] == [(applied.id, 1), (applied.id, 2)]


def test_an_admins_bulk_delete_by_filter_reaches_every_mall(fakes):
    envelope = run(
        "videos.bulk_delete",
        filters={"processing_status": "completed"},
        auth=token("admin", "root"),
    )

    assert (envelope["data"]["matched"], envelope["data"]["deleted"]) == (3, 3)
    assert fakes.uow.videos.rows == {}
