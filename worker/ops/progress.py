"""Progress of long command-line work (``demo``, ``reconcile``, ``bulk-delete``, ``reprocess``).

Drawn with ``rich`` on stderr, and only when stderr is a terminal: stdout keeps the
command's result, and a script or a CI log gets no bar redrawn a hundred times.
``tracker`` counts steps of known or unknown number; ``counting_store`` wraps an
object store so that a handler which lists the bucket (reconcile) reports each object
it scans without the handler knowing anything about terminals.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import IO, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from handlers.deps import Deps
from handlers.ports import ObjectStore

T = TypeVar("T")
Advance = Callable[[int], None]


def _console(stream: IO[str] | None, force_terminal: bool | None) -> Console:
    return Console(file=stream or sys.stderr, force_terminal=force_terminal)


def _columns(known_total: bool) -> list:
    if known_total:
        return [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
        ]
    # No total (a bucket's size is not known before listing it): a running count.
    return [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,.0f}"),
        TextColumn("{task.fields[unit]}"),
        TimeElapsedColumn(),
    ]


@contextmanager
def tracker(
    description: str,
    total: int | None = None,
    *,
    unit: str = "",
    stream: IO[str] | None = None,
    force_terminal: bool | None = None,
) -> Iterator[Advance]:
    """``advance(n)`` moves the bar on by ``n``; nothing is drawn off a terminal."""
    console = _console(stream, force_terminal)
    if not console.is_terminal:
        yield lambda _n=1: None
        return
    # A running count is cleared when done (the command prints its own totals); a bar
    # with a total stays, as the record of what was done.
    transient = total is None
    with Progress(*_columns(total is not None), console=console, transient=transient) as progress:
        task = progress.add_task(description, total=total, unit=unit)
        yield lambda n=1: progress.advance(task, n)


class RunsBar:
    """A bar for work done in runs that hand over to continuations (bulk-delete,
    reprocess): its total is the first run's ``matched``, each run's progress moves it,
    and ``before`` holds what runs already finished have done. Off a terminal, nothing."""

    def __init__(
        self,
        description: str,
        stream: IO[str] | None = None,
        force_terminal: bool | None = None,
    ) -> None:
        console = _console(stream, force_terminal)
        self.description = description
        self.progress = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            )
            if console.is_terminal
            else None
        )
        self.task: object = None
        self.before = 0

    def __enter__(self) -> RunsBar:
        if self.progress is not None:
            self.progress.start()
            self.task = self.progress.add_task(self.description, total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def show(self, total: int | None, done: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, total=total, completed=self.before + done)  # type: ignore[arg-type]


def track(
    items: Iterable[T],
    description: str,
    total: int | None = None,
    **options: object,
) -> Iterator[T]:
    """Each of ``items``, counted as it is taken."""
    with tracker(description, total, **options) as advance:  # type: ignore[arg-type]
        for item in items:
            yield item
            advance(1)


@dataclass(frozen=True)
class CountingStore:
    """An object store whose listing reports every object it yields."""

    store: ObjectStore
    advance: Advance

    def list_objects(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        for item in self.store.list_objects(prefix):
            self.advance(1)
            yield item

    def __getattr__(self, name: str):  # noqa: ANN204 - everything else as the store has it
        return getattr(self.store, name)


@contextmanager
def counting_store(deps: Deps, description: str = "objects scanned") -> Iterator[Deps]:
    """``deps`` whose store counts listed objects on a progress line while in use."""
    with tracker(description, unit="objects") as advance:
        yield replace(deps, store=CountingStore(deps.store, advance))


__all__ = ["Advance", "CountingStore", "counting_store", "track", "tracker"]
