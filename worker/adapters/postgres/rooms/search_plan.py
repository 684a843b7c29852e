"""How a search reads ``video_search``, chosen from a sample of the searched text.

pg_trgm's index answers ``text LIKE '%q%'`` with the rows holding every trigram of
``q``, and its scan decodes the posting list of each of them. A trigram that most rows
hold (``202`` of a date, ``ing``) costs a search most of its time and rules out almost
nothing: at 10,000,000 videos, ``20260907_14`` read 7,751 index pages for its nine
trigrams, 280 for its three rarest. So the index is asked for the rarest piece of ``q``
(``WINDOW`` characters, three trigrams), and ``q`` itself is tested on each candidate
(``strpos``), which a trigram index rechecks anyway.

The rarity comes from a sample of the table's text (``SAMPLE_ROWS`` rows, read with
``TABLESAMPLE SYSTEM``, kept ``SAMPLE_SECONDS`` per process and database), and so does
how many videos hold ``q`` and the tags asked for (the keys of the index): fewer than
the search's cap, and one index scan of the whole table finds them all more cheaply than
a scan per period, each of which decodes the period's own long list again (a scope and
the other filters are then tested on each). More, and the periods are read newest first
until the cap is reached, each by the scope's own key. The sample only chooses how to
read: every choice finds the same rows.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

SAMPLE_ROWS = 5_000
SAMPLE_SECONDS = 300.0
# Pages read per row kept: rows of one page are alike (written together), so a sample
# of few rows from many pages estimates a q clustered in time (a month) far better.
SAMPLE_SPREAD = 4
# Letters or digits of q the index is asked for (three trigrams): the rarest such piece,
# so the candidates are about as few as with all of q, at a fraction of the lists decoded.
WINDOW = 5
_RUNS = re.compile(r"[A-Za-z0-9]{3,}")
# Matches expected, in caps, up to which a search reads the whole table in one scan.
FEW = 2
# Counts of needles a sample keeps (a search's q and its trigrams), then starts again.
COUNTS_KEPT = 10_000


@dataclass(frozen=True)
class SearchPlan:
    """``parts``: pieces of ``q`` the index is asked for (as written: the database
    lowers them, as it lowers the text), none when ``q`` has no run of three letters or
    digits (then the whole pattern is); ``few``: fewer matches expected than the cap,
    so the table is read in one scan."""

    parts: tuple[str, ...]
    few: bool


@dataclass
class TextSample:
    """Some rows' ``video_search.text`` (and their ``tags``, lowered, where known) and
    how many rows the table holds."""

    texts: tuple[str, ...]
    rows: float
    tags: tuple[frozenset[str], ...] = ()
    taken_at: float = field(default_factory=lambda: time.monotonic())
    _counts: dict[str, int] = field(default_factory=dict)

    def holding(self, needle: str) -> int:
        """How many sampled texts contain ``needle`` (lower case)."""
        count = self._counts.get(needle)
        if count is None:
            if len(self._counts) >= COUNTS_KEPT:
                self._counts.clear()
            count = self._counts[needle] = sum(needle in text for text in self.texts)
        return count

    def expected(self, q: str, tags: Sequence[str] = ()) -> float:
        """How many rows of the table are expected to contain ``q`` and carry every
        one of ``tags``: what the index finds, the candidates of a scan of the table
        (the other filters are tested on each)."""
        if not self.texts:
            return 0.0
        if not tags or len(self.tags) != len(self.texts):
            return self.holding(q.lower()) * self.rows / len(self.texts)
        needle, wanted = q.lower(), {tag.lower() for tag in tags}
        hits = sum(
            needle in text and wanted <= carried
            for text, carried in zip(self.texts, self.tags, strict=True)
        )
        return hits * self.rows / len(self.texts)

    def plan(self, q: str, cap: int, tags: Sequence[str] = ()) -> SearchPlan:
        """Below the cap, one scan of the table tests each candidate once where the
        periods would each be read (and each decode its long lists) to find them all;
        up to twice the cap, the periods would still read most of the table. A scan
        that finds more than the cap leaves the page to the periods (``catalogue``):
        an estimate from 5,000 rows is rough near the bound (a few rows' difference)."""
        return SearchPlan(parts=self.rarest(q), few=self.expected(q, tags) <= FEW * cap)

    def rarest(self, q: str) -> tuple[str, ...]:
        """The piece of ``q`` the index is asked for: ``WINDOW`` letters or digits
        (ASCII: pg_trgm indexes each such run whatever the locale), as written, whose
        trigrams are together the rarest in the sample (the fewest list entries to
        decode); ties keep ``q``'s order. One piece, not trigrams apart: the planner
        estimates one pattern as it estimates ``q``'s, and keeps the period's key in the
        index scan. None when ``q`` has no run of three."""
        best: tuple[int, str] | None = None
        for run in _RUNS.findall(q):
            for start in range(max(1, len(run) - WINDOW + 1)):
                piece = run[start : start + WINDOW]
                lowered = piece.lower()
                cost = sum(self.holding(lowered[i : i + 3]) for i in range(len(piece) - 2))
                if best is None or cost < best[0]:
                    best = (cost, piece)
        return () if best is None else (best[1],)


_samples: dict[Any, TextSample] = {}
_lock = threading.Lock()


def sample_for(database: Any, load: Callable[[], TextSample]) -> TextSample:
    """The sample of ``database``'s text, taken again when ``SAMPLE_SECONDS`` old."""
    with _lock:
        sample = _samples.get(database)
    if sample is not None and time.monotonic() - sample.taken_at < SAMPLE_SECONDS:
        return sample
    sample = load()
    with _lock:
        _samples[database] = sample
    return sample


def forget_samples() -> None:
    """Every process-wide sample dropped: the next search of each database takes one."""
    with _lock:
        _samples.clear()
