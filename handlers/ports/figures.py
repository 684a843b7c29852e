"""Statistics, from the figures the triggers keep."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from handlers.access import Scope
from schemas.responses import (
    PinFigures,
    VideoStats,
)


class Figures(Protocol):
    """The statistics of what a scope sees, from the figures kept beside the rows."""

    def stats(
        self, scope: Scope, mall_id: UUID | None, at: datetime, pin_id: UUID | None = None
    ) -> VideoStats:
        """The figures of what the scope sees, within ``mall_id`` and ``pin_id`` when
        given: of what is not in the trash, and ``trash`` of what is."""
        ...

    def pin_figures(
        self, scope: Scope, mall_id: UUID | None, pin_id: UUID | None, limit: int
    ) -> list[PinFigures]:
        """Per-pin figures of what the scope sees (not the trash), largest storage first."""
        ...

    def stats_per_mall(self, at: datetime) -> list[VideoStats]:
        """Every mall's whole figure, for the shared cache (an admin's refresh)."""
        ...

    def stats_per_pin(
        self, scope: Scope, pin_ids: Sequence[UUID], at: datetime
    ) -> dict[UUID, VideoStats]:
        """Each of these pins' figures over what the scope sees (zeros for a pin with
        none), from the pin index: never a scan of every video."""
        ...

    def fold_figures(self) -> int:
        """Fold the figures kept per writer into one row per key and period, dropping
        those that came to nothing; answers how many rows were folded. What any total or
        statistic reads is unchanged: this only keeps those reads short."""
        ...
