"""The object keys rows still name: what the removal engine must keep."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol


class References(Protocol):
    """Which object keys rows still name: no file a row needs is removed."""

    def referenced_keys(self, keys: Sequence[str]) -> set[str]:
        """The keys among these that a live row references (read now, not at claim)."""
        ...

    def referenced_keys_in_order(self, prefix: str = "") -> Iterator[str]:
        """Every key a row references under ``prefix``, once, in UTF-8 byte order,
        streamed while the unit of work is open."""
        ...
