"""Requests a caller waits on (queue ``videos``), and the caller-driven delete."""

import handlers
from schemas import (
    BulkDelete,
    DeleteVideo,
    GetStats,
    GetVideo,
    ListVideos,
    RestoreVideo,
    SignUrl,
    SignUrls,
)
from worker.runtime.app import app
from worker.runtime.limits import limits
from worker.runtime.tasking import ContractTask, MaintenanceTask


@app.task(name="videos.list", base=ContractTask, bind=True, **limits("videos.list"))
def list_videos(self, *args, **kwargs):
    return self.respond(ListVideos, handlers.list_videos, args, kwargs)


@app.task(name="videos.get", base=ContractTask, bind=True, **limits("videos.get"))
def get_video(self, *args, **kwargs):
    return self.respond(GetVideo, handlers.get_video, args, kwargs)


@app.task(name="videos.sign_url", base=ContractTask, bind=True, **limits("videos.sign_url"))
def sign_url(self, *args, **kwargs):
    return self.respond(SignUrl, handlers.sign_url, args, kwargs)


@app.task(name="videos.sign_urls", base=ContractTask, bind=True, **limits("videos.sign_urls"))
def sign_urls(self, *args, **kwargs):
    return self.respond(SignUrls, handlers.sign_urls, args, kwargs)


@app.task(name="videos.stats", base=ContractTask, bind=True, **limits("videos.stats"))
def stats(self, *args, **kwargs):
    return self.respond(GetStats, handlers.get_stats, args, kwargs)


# Safe to run twice: a redelivered delete of a row already gone answers not_found and
# its keys are already queued for purge.
@app.task(name="videos.delete", base=MaintenanceTask, bind=True, **limits("videos.delete"))
def delete_video(self, *args, **kwargs):
    return self.respond(DeleteVideo, handlers.delete_video, args, kwargs)


# Safe to run twice: restoring a video already restored answers not_found.
@app.task(name="videos.restore", base=MaintenanceTask, bind=True, **limits("videos.restore"))
def restore_video(self, *args, **kwargs):
    return self.respond(RestoreVideo, handlers.restore_video, args, kwargs)


# Safe to run twice: what a first run deleted no longer matches.
@app.task(
    name="videos.bulk_delete", base=MaintenanceTask, bind=True, **limits("videos.bulk_delete")
)
def bulk_delete(self, *args, **kwargs):
    return self.respond(BulkDelete, handlers.bulk_delete, args, kwargs)
