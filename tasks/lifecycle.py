"""Lifecycle work (queue ``videos.maintenance``): stats refresh, retention, purge."""

import handlers
from schemas import FlushStaleStats, PurgeStorage, RefreshStats, SweepRetention
from worker.runtime.app import app
from worker.runtime.limits import limits
from worker.runtime.tasking import MaintenanceTask


@app.task(
    name="videos.refresh_stats", base=MaintenanceTask, bind=True, **limits("videos.refresh_stats")
)
def refresh_stats(self, *args, **kwargs):
    return self.respond(RefreshStats, handlers.refresh_stats, args, kwargs)


@app.task(
    name="videos.retention_sweep",
    base=MaintenanceTask,
    bind=True,
    **limits("videos.retention_sweep"),
)
def retention_sweep(self, *args, **kwargs):
    return self.respond(SweepRetention, handlers.sweep_retention, args, kwargs)


@app.task(
    name="videos.purge_storage", base=MaintenanceTask, bind=True, **limits("videos.purge_storage")
)
def purge_storage(self, *args, **kwargs):
    return self.respond(PurgeStorage, handlers.purge_storage, args, kwargs)


# Internal: queued (debounced) by deletes and sweeps; refreshes only the stale scopes.
@app.task(
    name="videos.flush_stale_stats",
    base=MaintenanceTask,
    bind=True,
    **limits("videos.flush_stale_stats"),
)
def flush_stale_stats(self, *args, **kwargs):
    return self.respond(FlushStaleStats, handlers.flush_stale_stats, args, kwargs)
