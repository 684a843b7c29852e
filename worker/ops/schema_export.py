"""JSON Schemas of every task's kwargs and result, the envelope and the events.

Generated from ``schemas/`` so that callers in any language validate against the
same definitions the worker enforces; ``videoworker schemas --check`` keeps the
checked-in copies in ``docs/schemas/`` honest.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

import schemas as s
from schemas import contract
from schemas.events import EVENT_DATA, CloudEvent

# The callers' tasks of the task table; the worker's internal ones publish no schema.
TASKS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    spec.name: (spec.request, spec.answer) for spec in contract.TASKS if not spec.internal
}
OTHERS: dict[str, type[BaseModel]] = {
    "envelope": s.Envelope,
    "event.video.deleted": s.VideoDeleted,
    "event.stats.refreshed": s.StatsRefreshed,
    "event.bulk_delete.progress": s.BulkDeleteProgress,
    # The stream's and the exchange's events: the CloudEvent envelope, and each type's data.
    "cloudevent": CloudEvent,
    **{f"cloudevent.{name}.data": model for name, model in EVENT_DATA.items()},
}


def _dump(model: type[BaseModel], mode: str, title: str) -> str:
    schema = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **schema}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def render_all() -> dict[str, str]:
    files: dict[str, str] = {}
    for task, (request, response) in TASKS.items():
        files[f"{task}.request.json"] = _dump(request, "validation", f"{task} kwargs")
        files[f"{task}.response.json"] = _dump(response, "serialization", f"{task} data")
    for name, model in OTHERS.items():
        files[f"{name}.json"] = _dump(model, "serialization", name)
    return files


def check(out: Path) -> list[str]:
    """The files under ``out`` that differ from what the models render, or are missing,
    or render from nothing any more; empty when the published schemas are current."""
    rendered = render_all()
    stale = [
        name
        for name, text in rendered.items()
        if not (out / name).exists() or (out / name).read_text() != text
    ]
    return stale + sorted(p.name for p in out.glob("*.json") if p.name not in rendered)


def write(out: Path) -> int:
    """Render every schema into ``out``, dropping files no model renders any more."""
    rendered = render_all()
    out.mkdir(parents=True, exist_ok=True)
    for stale_file in out.glob("*.json"):
        if stale_file.name not in rendered:
            stale_file.unlink()
    for name, text in rendered.items():
        (out / name).write_text(text)
    return len(rendered)
