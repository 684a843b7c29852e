"""The command line's value types: durations, byte sizes, ``key=value`` values."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def call_value(raw: str) -> Any:
    """``page=2`` is a number and ``has_proxy=true`` a bool; anything not JSON is a string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def duration(text: str) -> timedelta:
    """``24h``, ``90m``, ``7d``, ``3600s`` or plain seconds."""
    try:
        if text[-1:] in DURATION_UNITS:
            return timedelta(seconds=float(text[:-1]) * DURATION_UNITS[text[-1]])
        return timedelta(seconds=float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 24h, 90m, 7d)") from None


def byte_size(text: str) -> int:
    """``500G``, ``1.5T``, ``750M`` (powers of 1024) or a plain byte count."""
    raw = text.strip().upper().removesuffix("IB").removesuffix("B") if text else ""
    unit = raw[-1:] if raw[-1:] in SIZE_UNITS else ""
    number = raw[: -len(unit)] if unit else raw
    try:
        value = float(number) * SIZE_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 500G, 750M, 2T)") from None
    if not 1 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r}: a size from 1 byte to 8 EiB")
    return int(value)


def human_size(size: int) -> str:
    """The size in the largest unit that divides it (``500G``), else in bytes."""
    for unit in ("T", "G", "M", "K"):
        if size >= SIZE_UNITS[unit] and size % SIZE_UNITS[unit] == 0:
            return f"{size // SIZE_UNITS[unit]}{unit}"
    return f"{size} bytes"


def demo_videos(text: str) -> int:
    if not text.isdigit() or not 4 <= int(text) <= 100_000:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number from 4 to 100000")
    return int(text)


RETENTION_DAYS_MAX = 36500


def retention_days(text: str) -> int:
    """A whole number of days, 1 to 36500 (a century); said as a range, not listed."""
    if not text.strip().lstrip("-").isdigit() or not 1 <= int(text) <= RETENTION_DAYS_MAX:
        raise argparse.ArgumentTypeError(
            f"{text!r}: DAYS is a whole number from 1 to {RETENTION_DAYS_MAX}"
        )
    return int(text)


class IntermixedParser(argparse.ArgumentParser):
    """Options anywhere among a command's positionals (``call videos.list --timeout 5
    page_size=1``): plain argparse stops filling a list of positionals at the first
    option. Parsers that hold subcommands parse as usual, since argparse's intermixed
    parsing does not support them; each leaf subcommand parses intermixed."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 - argparse's
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False
