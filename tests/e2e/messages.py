"""What the e2e tests say to the worker, as another service says it: a task by name on
its queue, the envelope back; and what the outbox holds for a kind of event."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text

from schemas.contract import QUEUE_OF


def call(caller, task: str, **kwargs) -> dict:
    """The envelope ``task`` answers, whatever it says."""
    return caller.send_task(task, kwargs=kwargs, queue=QUEUE_OF[task]).get(timeout=30)


def data(caller, task: str, **kwargs) -> dict:
    """The data of an envelope that must say ``ok``."""
    envelope = call(caller, task, **kwargs)
    assert envelope["ok"] is True, envelope
    return envelope["data"]


def parse(instant: str) -> datetime:
    return datetime.fromisoformat(instant.replace("Z", "+00:00"))


def outbox(engine, kind: str) -> list[dict]:
    """The events of one type written so far, oldest first: subject and data."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT subject, data FROM event_outbox WHERE type = :t ORDER BY id"), {"t": kind}
        )
        return [{"subject": r.subject, **r.data} for r in rows]
