"""Progress lines at a terminal only, counting what long commands do; event lines."""

from __future__ import annotations

import io
import json
import re
from contextlib import contextmanager

from rich.console import Console

import worker.ops.progress as progress
from handlers.reconcile import ReconcileStorage, reconcile_storage
from tests.unit.fakes import Fakes
from worker.ops.events import pretty
from worker.ops.progress import CountingStore, counting_store, track, tracker

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def screen(stream: io.StringIO) -> str:
    return ANSI.sub("", stream.getvalue()).replace("\r", "\n")


def test_a_bar_at_a_terminal_ends_at_its_total():
    out = io.StringIO()

    with tracker("uploading demo objects", 12, stream=out, force_terminal=True) as advance:
        for _ in range(12):
            advance(1)

    last = [line for line in screen(out).splitlines() if line.strip()][-1]
    assert "uploading demo objects" in last
    assert "12/12" in last and "100%" in last


def test_an_unknown_total_is_a_running_count():
    out = io.StringIO()

    items = list(
        track(range(2500), "objects scanned", unit="objects", stream=out, force_terminal=True)
    )

    assert items == list(range(2500))
    last = [line for line in screen(out).splitlines() if line.strip()][-1]
    assert "objects scanned 2,500 objects" in last


def test_nothing_is_drawn_off_a_terminal():
    out = io.StringIO()

    with tracker("uploading", 3, stream=out, force_terminal=False) as advance:
        advance(3)

    assert out.getvalue() == ""


def test_the_counting_store_counts_each_listed_object_and_passes_the_rest_through():
    fakes = Fakes()
    for key in ("a", "b", "c"):
        fakes.store.put(key)
    counted: list[int] = []
    store = CountingStore(fakes.store, counted.append)

    listed = [key for key, _ in store.list_objects("")]

    assert listed == ["a", "b", "c"]
    assert counted == [1, 1, 1]
    assert store.size("a") == 16


def test_reconcile_reports_every_object_it_scans(monkeypatch):
    fakes = Fakes()
    for key in ("x/1", "x/2", "y/1"):
        fakes.store.put(key)
    seen: list[int] = []

    @contextmanager
    def recording(description, total=None, **_options):  # noqa: ANN001, ANN202
        yield seen.append

    monkeypatch.setattr(progress, "tracker", recording)
    with counting_store(fakes.deps) as counted:
        report = reconcile_storage(ReconcileStorage(), counted)

    assert report.objects == 3
    assert seen == [1, 1, 1]


def test_an_event_reads_as_one_short_line():
    deleted = json.dumps(
        {
            "event": "video.deleted",
            "video_id": "7a0c0000-0000-0000-0000-000000000001",
            "mall_id": "22ba0000-0000-0000-0000-000000000002",
            "files_deleted": ["a", "b", "c"],
            "files_pending": [],
            "at": "2025-11-30T12:04:05.123456Z",
        }
    )
    refreshed = json.dumps(
        {"event": "stats.refreshed", "mall_id": None, "at": "2025-11-30T12:04:06Z"}
    )
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    console.print(pretty(deleted))
    console.print(pretty(refreshed))
    console.print(pretty("not json [red]"))

    lines = ANSI.sub("", out.getvalue()).splitlines()
    assert lines == [
        "12:04:05  video.deleted  video=7a0c0000-0000-0000-0000-000000000001  "
        "mall=22ba0000-0000-0000-0000-000000000002  files: 3 deleted, 0 pending",
        "12:04:06  stats.refreshed  global",
        "not json [red]",
    ]
