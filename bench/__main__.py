"""``python -m bench [NAME ...] [OPTIONS]``: run every bench module, or the named ones.

A bench is any module of this package (other than ``dataset`` and private ones) with a
``main(argv)`` function. Options after the names are passed to each bench as they are.
Every bench prints each of its targets as a line ending in ``: yes`` or ``: NO`` (with
its figure); at the end, those lines are printed again together, bench by bench, with
how many are met.
"""

from __future__ import annotations

import importlib
import io
import pkgutil
import re
import sys
from collections.abc import Sequence

import bench

NOT_BENCHES = {"dataset"}


def discover() -> list[str]:
    names = []
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_") or info.name in NOT_BENCHES:
            continue
        if hasattr(importlib.import_module(f"bench.{info.name}"), "main"):
            names.append(info.name)
    return sorted(names)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    available = discover()
    chosen = []
    while args and not args[0].startswith("-"):
        name = args.pop(0)
        if name not in available:
            print(f"unknown bench {name!r}; available: {', '.join(available)}", file=sys.stderr)
            return 2
        chosen.append(name)
    status = 0
    verdicts: list[tuple[str, str]] = []
    for name in chosen or available:
        print(f"=== bench.{name} ===", flush=True)
        with Verdicts(sys.stdout) as seen:
            status = importlib.import_module(f"bench.{name}").main(args) or status
        verdicts += [(name, line) for line in seen.lines]
    if verdicts:
        met = sum(VERDICT.search(line).group(1) == "yes" for _, line in verdicts)  # type: ignore[union-attr]
        print(f"=== targets: {met} of {len(verdicts)} met ===")
        for name, line in verdicts:
            print(f"{name:10s} {line}")
    return status


# A target's line: "<what> <= <bound>: yes (<figure>)" or ": NO ...".
VERDICT = re.compile(r": (yes|NO)\b")


class Verdicts(io.TextIOBase):
    """Passes a bench's stdout through, keeping the lines that state a target's verdict."""

    def __init__(self, out: io.TextIOBase) -> None:
        self.out = out
        self.lines: list[str] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self.out.write(text)
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        self.lines += [line.strip() for line in complete if VERDICT.search(line)]
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def __enter__(self) -> Verdicts:
        self._saved, sys.stdout = sys.stdout, self  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout = self._saved


if __name__ == "__main__":
    sys.exit(main())
