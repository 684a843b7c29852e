"""``python -m bench [NAME ...] [OPTIONS]``: run every bench module, or the named ones.

A bench is any module of this package (other than ``dataset`` and private ones) with a
``main(argv)`` function. Options after the names are passed to each bench as they are.
"""

from __future__ import annotations

import importlib
import pkgutil
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
    for name in chosen or available:
        print(f"=== bench.{name} ===", flush=True)
        status = importlib.import_module(f"bench.{name}").main(args) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
