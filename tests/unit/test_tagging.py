"""Tags on fakes: names as the request model takes them, videos.tag, videos.tags, and
the list filter and names of videos.list and videos.get."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from pydantic import ValidationError

from handlers.access import Scope
from handlers.catalog import get_video, list_videos
from handlers.tagging import list_tags, tag_videos
from schemas.requests import GetVideo, ListTags, ListVideos, TagVideos, VideoFilters, tag_name
from tests.unit.fakes import Fakes, make_video

MALL = uuid.uuid4()


def tagging(**kwargs) -> TagVideos:
    return TagVideos(**kwargs)


def rejected(**kwargs) -> list[dict]:
    with pytest.raises(ValidationError) as caught:
        TagVideos(**kwargs)
    return caught.value.errors(include_url=False, include_input=False, include_context=False)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Dock", "Dock"),
        ("  loading   dock\t", "loading dock"),
        ("ＤＯＣＫ", "DOCK"),  # full-width letters: NFKC
        ("ﬁsh", "fish"),  # a ligature: NFKC
        ("a,b", "a,b"),  # a comma is part of one name, never a separator
        ("👨\u200d👩\u200d👧", "👨\u200d👩\u200d👧"),  # the zero-width joiner of emoji
        ("x" * 64, "x" * 64),
    ],
)
def test_a_name_is_normalised_before_it_is_stored(given, stored):
    assert tag_name(given) == stored


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "empty once whitespace is trimmed"),
        (" \t ", "empty once whitespace is trimmed"),
        ("x" * 65, "longer than 64 characters"),
        ("bell\x07", "holds the control character U+0007"),
        ("nul\x00", "holds the control character U+0000"),
        ("evil\u202egnp.exe", "holds the control character U+202E"),
        ("zero\u200bwidth", "holds the control character U+200B"),
    ],
)
def test_a_bad_name_is_invalid_request_naming_it(given, reason):
    (error,) = rejected(video_ids=[str(uuid.uuid4())], add=["fine", given])

    assert error["loc"] == ("add", 1)
    assert error["msg"] == f"Invalid tag name {given!r}: {reason}"


def test_sizes_and_selection_are_bounded():
    one = [str(uuid.uuid4())]
    assert rejected(video_ids=[], add=["a"])[0]["loc"] == ("video_ids",)
    assert rejected(video_ids=[str(uuid.uuid4()) for _ in range(1001)], add=["a"])[0]["loc"] == (
        "video_ids",
    )
    assert rejected(video_ids=one, add=[f"t{i}" for i in range(21)])[0]["loc"] == ("add",)
    assert rejected(video_ids=one, remove=[f"t{i}" for i in range(21)])[0]["loc"] == ("remove",)
    assert rejected(video_ids=one)[0]["msg"] == "Give add, remove or both"
    assert rejected(video_ids=one, add=["Dock"], remove=["dock"])[0]["msg"] == (
        "A tag cannot be both added and removed: dock"
    )
    assert tagging(video_ids=one, add=["a", "A", "b"]).add == ["a", "b"]
    with pytest.raises(ValidationError):
        ListVideos(tags=[])
    with pytest.raises(ValidationError):
        ListVideos(tags=[f"t{i}" for i in range(11)])
    with pytest.raises(ValidationError):
        ListTags(limit=201)
    assert ListTags().limit == 100
    assert not VideoFilters(tags=["x"]).is_empty()


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


def test_tagging_counts_videos_pairs_and_not_found_and_writes_events_of_changes(fakes):
    pin = uuid.uuid4()
    a, b = make_video(mall_id=MALL, pin_id=pin), make_video(mall_id=MALL, pin_id=pin)
    fakes.add_videos(a, b)
    ghost = uuid.uuid4()
    deps = fakes.deps

    first = tag_videos(tagging(video_ids=[a.id, b.id, ghost], add=["Dock", "night"]), deps)
    again = tag_videos(tagging(video_ids=[a.id, b.id], add=["dock"]), deps)
    removed = tag_videos(tagging(video_ids=[a.id], remove=["NIGHT", "never"]), deps)

    assert first.model_dump() == {"videos": 2, "added": 4, "removed": 0, "not_found": [ghost]}
    assert again.model_dump() == {"videos": 2, "added": 0, "removed": 0, "not_found": []}
    assert removed.model_dump() == {"videos": 1, "added": 0, "removed": 1, "not_found": []}
    events = fakes.uow.events.of_type("video.tagged")
    # One per video changed; nothing for the run that changed nothing.
    assert [(e.subject, e.data["added"], e.data["removed"]) for e in events] == sorted(
        [
            (str(a.id), ["Dock", "night"], []),
            (str(b.id), ["Dock", "night"], []),
        ]
    ) + [(str(a.id), [], ["night"])]
    assert events[0].data["mall_id"] == str(MALL) and events[0].data["pin_id"] == str(pin)


def test_a_caller_tags_only_what_it_sees_and_never_the_trash(fakes):
    mine, theirs = make_video(mall_id=MALL), make_video()
    binned = make_video(mall_id=MALL)
    fakes.add_videos(mine, theirs, binned)
    fakes.uow.videos.trashed[binned.id] = (mine.uploaded_at, None)
    deps = fakes.deps
    operator = Scope.operator([MALL], subject="op-1")

    result = tag_videos(
        tagging(video_ids=[mine.id, theirs.id, binned.id], add=["x"]),
        replace(deps, scope=operator),
    )

    assert result.not_found == [theirs.id, binned.id]
    assert fakes.uow.videos.tags_of(mine.id) == ["x"]
    assert fakes.uow.videos.tags_of(theirs.id) == []
    assert fakes.uow.events.of_type("video.tagged")[0].data["tagged_by"] == "op-1"


def test_list_and_get_carry_tags_and_filter_by_all_of_them(fakes):
    a, b = make_video(mall_id=MALL), make_video(mall_id=MALL)
    fakes.add_videos(a, b)
    deps = fakes.deps
    tag_videos(tagging(video_ids=[a.id, b.id], add=["zeta", "Alpha"]), deps)
    tag_videos(tagging(video_ids=[a.id], add=["beta"]), deps)

    both = list_videos(ListVideos(tags=["ALPHA", "Beta"]), deps)

    assert [v.id for v in both.videos] == [a.id] and both.total == 1
    assert both.videos[0].tags == ["Alpha", "beta", "zeta"]
    assert get_video(GetVideo(video_id=b.id), deps).tags == ["Alpha", "zeta"]


def test_videos_tags_lists_most_used_first_of_what_the_caller_sees(fakes):
    pin_a, pin_b = uuid.uuid4(), uuid.uuid4()
    a = [make_video(mall_id=MALL, pin_id=pin_a) for _ in range(2)]
    b = make_video(mall_id=MALL, pin_id=pin_b)
    fakes.add_videos(*a, b)
    deps = fakes.deps
    tag_videos(tagging(video_ids=[v.id for v in a], add=["common"]), deps)
    tag_videos(tagging(video_ids=[b.id], add=["secret of b", "common"]), deps)

    everything = list_tags(ListTags(mall_id=MALL), deps)
    tenant = list_tags(ListTags(), replace(deps, scope=Scope.tenant([pin_a])))
    prefixed = list_tags(ListTags(prefix="ＳＥＣ"), deps)  # NFKC, as names are

    assert [(t.name, t.videos) for t in everything.tags] == [("common", 3), ("secret of b", 1)]
    assert [(t.name, t.videos) for t in tenant.tags] == [("common", 2)]
    assert [t.name for t in prefixed.tags] == ["secret of b"]
