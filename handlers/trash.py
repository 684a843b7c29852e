"""Restoring a video from the trash (moving one in is ``videos.delete(trash=true)``)."""

from __future__ import annotations

from handlers import events
from handlers.deletion import trash_changed
from handlers.deps import Deps
from handlers.errors import NotFound
from schemas.requests import RestoreVideo
from schemas.responses import RestoreResult


def restore_video(cmd: RestoreVideo, deps: Deps) -> RestoreResult:
    """Put a trashed video back. One not in the trash (never there, restored already,
    emptied by the sweep, outside the caller's scope) is answered alike: not found."""
    with deps.uow() as uow:
        restored = uow.removal.restore(deps.scope, cmd.video_id)
        if restored is None:
            raise NotFound(f"Video {cmd.video_id} not in trash")
        events.restored(uow, [restored])
        uow.commit()
    deps.log.info("video.restored", extra={"video_id": str(restored.id)})
    trash_changed(deps, [restored])
    return RestoreResult(video_id=restored.id, restored=True)
