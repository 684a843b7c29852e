"""The task table is the one declaration of every task: each contract task has exactly
one row, and everything the worker and its callers need is derived from the rows."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from pydantic import BaseModel

import celeryconfig
from handlers.access import may_run
from schemas import contract
from schemas.contract import ROLES, TASK_OF, TASKS, TaskSpec
from tasks.entrypoints import ENTRY_POINTS, register, resolve
from worker.ops.schema_export import render_all
from worker.runtime.app import app
from worker.runtime.consumer import ALLOWED_TASKS
from worker.runtime.tasking import ContractTask, MaintenanceTask

ROOT = Path(__file__).resolve().parents[2]
# The tasks contracts v1, v1.1 and v1.2 name, with their queues, as written there.
CONTRACT = {
    "videos.list": "videos",
    "videos.get": "videos",
    "videos.sign_url": "videos",
    "videos.sign_urls": "videos",
    "videos.stats": "videos",
    "videos.delete": "videos.maintenance",
    "videos.restore": "videos.maintenance",
    "videos.bulk_delete": "videos.maintenance",
    "videos.refresh_stats": "videos.maintenance",
    "videos.retention_sweep": "videos.maintenance",
    "videos.purge_storage": "videos.maintenance",
    # v1.2: tags and share links.
    "videos.tag": "videos",
    "videos.tags": "videos",
    "videos.share": "videos",
    "videos.share_resolve": "videos",
    "videos.share_revoke": "videos",
    "videos.shares": "videos",
    # v1.2: export as ZIP.
    "videos.export": "videos.export",
    "videos.export_status": "videos",
    "videos.export_cancel": "videos",
    # v1.2: re-processing.
    "videos.reprocess": "videos.maintenance",
    # v1.2: analytics.
    "videos.analytics": "videos",
    "videos.ingest_access_logs": "videos.maintenance",
}


def test_every_contract_task_has_exactly_one_row_on_its_queue():
    names = [spec.name for spec in TASKS]
    assert len(names) == len(set(names)), "a task is declared twice"
    assert set(contract.TASK_NAMES) == set(CONTRACT)
    for name, queue in CONTRACT.items():
        assert TASK_OF[name].queue == queue, name
        assert not TASK_OF[name].internal, name


@pytest.mark.parametrize("spec", TASKS, ids=lambda spec: spec.name)
def test_a_row_is_whole(spec: TaskSpec):
    assert issubclass(spec.request, BaseModel) and issubclass(spec.answer, BaseModel)
    # Unknown kwargs are refused by the request model itself (the edge validates).
    assert spec.request.model_config.get("extra") == "forbid"
    handler = resolve(spec.handler)
    assert list(inspect.signature(handler).parameters) == ["cmd", "deps"]
    assert spec.roles and spec.roles <= set(ROLES)
    soft, hard = spec.limits
    assert 0 < soft < hard
    assert spec.rerun.strip(), "every task is acknowledged late: say why a rerun is safe"
    # A statement past its budget is cancelled by the server well before the soft limit
    # would interrupt the driver mid-statement.
    assert 0 < spec.statement_budget_ms <= soft * 1000 // 2


@pytest.mark.parametrize("spec", TASKS, ids=lambda spec: spec.name)
def test_celery_registers_each_row_as_declared(spec: TaskSpec):
    task = app.tasks[spec.name]
    assert task is ENTRY_POINTS[spec.name]._get_current_object()
    assert (task.soft_time_limit, task.time_limit) == spec.limits
    patient = spec.queue != contract.REQUESTS_QUEUE
    assert isinstance(task, MaintenanceTask) is patient
    assert isinstance(task, ContractTask)
    assert celeryconfig.task_routes[spec.name] == {"queue": spec.queue}
    assert spec.name in ALLOWED_TASKS
    for role in ROLES:
        assert may_run(role, spec.name) is (role in spec.roles)


def test_nothing_else_is_registered_or_allowed():
    ours = {name for name in app.tasks if not name.startswith("celery.")}
    assert ours == set(TASK_OF)
    assert ALLOWED_TASKS == set(TASK_OF)
    assert {queue.name for queue in celeryconfig.task_queues} == {s.queue for s in TASKS}


def test_redis_keeps_a_message_longer_than_any_task_may_run():
    timeout = celeryconfig.broker_transport_options.get("visibility_timeout")
    if timeout is None:
        pytest.skip("the broker of this run is RabbitMQ, which has no visibility timeout")
    # Tasks acknowledged when they start (an export's run) hold no message meanwhile.
    assert timeout > max(spec.hard_limit for spec in TASKS if spec.acks_late)


def test_the_published_schemas_are_the_rows_and_unchanged():
    rendered = render_all()
    for spec in TASKS:
        present = f"{spec.name}.request.json" in rendered
        assert present is not spec.internal, spec.name
    on_disk = {p.name: p.read_text() for p in (ROOT / "docs" / "schemas").glob("*.json")}
    assert rendered == on_disk


def test_a_row_whose_handler_does_not_resolve_fails_at_registration():
    ghost = TaskSpec(
        "videos.ghost",
        contract.GetVideo,
        contract.VideoDetailResponse,
        "handlers.catalog.no_such_handler",
        contract.REQUESTS_QUEUE,
        contract.EVERY_ROLE,
        contract.REQUEST_LIMITS,
        "it only reads",
    )
    with pytest.raises(LookupError, match="no such handler"):
        register(ghost)
    outside = TaskSpec(**{**_fields(ghost), "handler": "worker.bootstrap.build_deps"})
    with pytest.raises(LookupError, match="handlers package"):
        register(outside)
    assert "videos.ghost" not in app.tasks


def _fields(spec: TaskSpec) -> dict:
    return {name: getattr(spec, name) for name in TaskSpec.__dataclass_fields__}
