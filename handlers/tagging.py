"""Tags: adding and removing them on videos, and the tags of what a caller sees.

A tag is a row of its own, never a name packed with others into one string: a video's
tags are found by an index, a name may hold a comma, and the list filter asks for
each tag by name. Names arrive normalised by the request model (``tag_name``); the
database compares them case-insensitively and keeps each tag's first spelling.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from operator import attrgetter
from uuid import UUID

from handlers.deps import Deps
from schemas.events import VideoTaggedData
from schemas.requests import ListTags, TagVideos
from schemas.responses import TagList, TagResult


def tag_videos(cmd: TagVideos, deps: Deps) -> TagResult:
    """Add and remove names on the videos the caller sees; a video it does not see (or
    one in the trash) is listed in ``not_found`` and left alone, as if it did not exist.

    One transaction: the pairs, each mall's new tags and the ``video.tagged`` events of
    the videos that changed commit together, or not at all.
    """
    with deps.uow() as uow:
        changes = uow.tags.tag(
            deps.scope, cmd.video_ids, cmd.add, cmd.remove, deps.clock(), deps.scope.subject
        )
        added: dict[UUID, list[str]] = defaultdict(list)
        removed: dict[UUID, list[str]] = defaultdict(list)
        for video_id, name in changes.added:
            added[video_id].append(name)
        for video_id, name in changes.removed:
            removed[video_id].append(name)
        changed = sorted(set(added) | set(removed), key=attrgetter("int"))
        uow.events.add(
            [
                VideoTaggedData(
                    video_id=video_id,
                    mall_id=changes.found[video_id][0],
                    pin_id=changes.found[video_id][1],
                    added=sorted(added[video_id], key=str.lower),
                    removed=sorted(removed[video_id], key=str.lower),
                    tagged_by=deps.scope.subject,
                )
                for video_id in changed
            ]
        )
        uow.commit()
    not_found = [
        video_id for video_id in dict.fromkeys(cmd.video_ids) if video_id not in changes.found
    ]
    deps.log.info(
        "videos.tagged",
        extra={
            "videos": len(changes.found),
            "added": len(changes.added),
            "removed": len(changes.removed),
        },
    )
    return TagResult(
        videos=len(changes.found),
        added=len(changes.added),
        removed=len(changes.removed),
        not_found=not_found,
    )


def list_tags(cmd: ListTags, deps: Deps) -> TagList:
    """The tags of the videos the caller sees (not in the trash), most used first. A
    tag that only videos out of the caller's sight carry is not shown: its name is
    not the caller's to know."""
    prefix = None if cmd.prefix is None else unicodedata.normalize("NFKC", cmd.prefix)
    with deps.reads() as uow:
        counts = uow.tags.counts(deps.scope, cmd.mall_id, prefix, cmd.limit)
    return TagList(tags=counts)
