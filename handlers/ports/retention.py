"""Each mall's retention settings: its period, its quota, legal holds."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID


class RetentionSettings(Protocol):
    """What the sweeps keep videos by: each mall's period and quota, and legal holds."""

    def mall_retention_days(self, mall_id: UUID | None) -> list[tuple[UUID, int | None]]:
        """Every mall (or just this one) with its own retention days, None if it has none."""
        ...

    def mall_quotas(self, mall_id: UUID | None) -> list[tuple[UUID, int]]:
        """Every mall with a storage quota (or just this one), with its quota in bytes."""
        ...

    def mall_storage(self, mall_id: UUID) -> int:
        """Originals plus proxies of all the mall's videos, in the trash too."""
        ...

    def set_mall_retention(
        self, mall_id: UUID, days: int | None = None, max_storage_bytes: int | None = None
    ) -> bool:
        """Give the mall its own period and/or quota (what is None stays as it was);
        False if there is no such mall."""
        ...

    def clear_mall_retention(self, mall_id: UUID) -> bool:
        """Back to the default period; False if the mall had none of its own."""
        ...

    def set_legal_hold(self, video_id: UUID, held: bool) -> bool:
        """Hold or release a video; False if there is no such video."""
        ...
