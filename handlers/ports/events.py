"""The outbox: events written in the transaction of their change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from schemas.events import EventData


class Outbox(Protocol):
    """Events written in the unit of work's transaction: relayed (at least once, in
    commit order per subject) once it commits, never if it rolls back."""

    def add(self, events: Sequence[EventData]) -> None:
        """Write these events, in this order. A video's event is written after its row
        was changed (so locked) in this transaction: that is what orders one video's
        events by commit across transactions."""
        ...
