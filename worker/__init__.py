"""videoworker: the Celery worker that manages recorded camera video.

``celery -A worker worker`` finds the application as ``worker.app``; it is created
on first access so that importing ``worker.settings`` or the CLI stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    app: Celery


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from worker.runtime.app import app

        return app
    raise AttributeError(name)
