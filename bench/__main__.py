"""``python -m bench [NAME ...] [OPTIONS]``: run every bench, or the named ones.

The benches are the modules of this package that register a ``main`` with
``@harness.bench``. Options after the names are passed to each bench as they are.
At the end every target's verdict line is printed again, bench by bench, with how
many are met.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence

import bench
from bench import harness

# Shared pieces, not benches (and the no-op app, which widens the consumer's task list).
HELPERS = {"common", "dataset", "harness", "noop_app"}
# Run only when named: the soak takes most of ten minutes (``make soak``).
ONLY_WHEN_NAMED = {"soak"}


def discover() -> dict[str, object]:
    for info in pkgutil.iter_modules(bench.__path__):
        if not info.name.startswith("_") and info.name not in HELPERS:
            importlib.import_module(f"bench.{info.name}")
    return dict(sorted(harness.REGISTRY.items()))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    available = discover()
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        for name, run in available.items():
            about = (sys.modules[run.__module__].__doc__ or "").strip().splitlines()[0]
            print(f"  {name:10s} {about}")
        print("\n`python -m bench NAME --help` for a bench's own options.")
        return 0
    chosen = []
    while args and not args[0].startswith("-"):
        name = args.pop(0)
        if name not in available:
            print(f"unknown bench {name!r}; available: {', '.join(available)}", file=sys.stderr)
            return 2
        chosen.append(name)
    status = 0
    stated: list[tuple[str, str]] = []
    for name in chosen or [name for name in available if name not in ONLY_WHEN_NAMED]:
        print(f"=== bench.{name} ===", flush=True)
        start = len(harness.VERDICTS)
        status = available[name](args) or status
        stated += [(name, line) for line in harness.VERDICTS[start:]]
    if stated:
        met = sum(": yes (" in line for _, line in stated)
        print(f"=== targets: {met} of {len(stated)} met ===")
        for name, line in stated:
            print(f"{name:10s} {line}")
    return status


if __name__ == "__main__":
    sys.exit(main())
