"""The Celery application (``celery -A worker worker``)."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from worker.bootstrap import reset_deps

app = Celery("videoworker")
app.config_from_object("celeryconfig")
app.conf.include = ["tasks.videos", "tasks.lifecycle"]


@worker_process_init.connect
def _fresh_connections_per_child(**_: object) -> None:
    # A forked pool child must not reuse the parent's sockets (engine pool, Redis, S3).
    reset_deps()
