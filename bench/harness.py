"""What every bench shares: interleaved timing, figures, tables, verdicts, the registry.

One loop times every comparison (``interleaved``): the variants take turns in blocks,
so a busy moment on the shared machine (2 cores, other jobs) hits them alike; a block
also charges this process's CPU, and a server's process tree's when named, to its
variant. One table renders every result, its title stamped with when and where it
ran (``run YYYY-MM-DD HH:MM UTC, N cores, ...``), so a pasted table says when it was
measured, not when a file was edited. One form states every target, ``<target>: yes
(<figure>)`` or ``: NO (...)``, and ``python -m bench`` repeats them all at the end.

Why medians and tails rather than means: a single slow sample on a shared machine
says little; every comparison is against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MS = 1e3
US = 1e6

# name -> main(argv): filled by ``@bench`` as the bench modules are imported.
REGISTRY: dict[str, Callable[[Sequence[str] | None], int]] = {}
# Every verdict line stated in this process, in order (``python -m bench`` repeats them).
VERDICTS: list[str] = []


def bench(name: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Register a bench's ``main(argv)`` under ``name`` for ``python -m bench NAME``."""

    def register(main: Callable[..., int]) -> Callable[..., int]:
        REGISTRY[name] = main
        return main

    return register


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=f"python -m bench.{name}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the tables."""
    print(f"  {message}", file=sys.stderr, flush=True)


# --- figures ---------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float
    p95: float
    p99: float
    mean: float
    max: float


def summary(values: Sequence[float]) -> Summary:
    ordered = sorted(values)
    if not ordered:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    return Summary(
        n=len(ordered),
        p50=percentile(ordered, 50),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        mean=sum(ordered) / len(ordered),
        max=ordered[-1],
    )


def ratio(ours: float, baseline: float, digits: int = 2) -> str:
    if not baseline or math.isnan(ours) or math.isnan(baseline):
        return "-"
    return f"{ours / baseline:.{digits}f}x"


def fmt(value: float, digits: int = 2) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def short(value: float) -> str:
    """Milliseconds of a database call: one decimal below 100, none above."""
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


# --- timing ----------------------------------------------------------------------------


@dataclass
class Method:
    """One variant: ``call`` is timed; ``before`` and ``after`` run around it untimed
    (a rollback, a statement log read); ``server``: a pid whose process tree's CPU each
    block charges to this variant."""

    call: Callable[[], object]
    before: Callable[[], object] | None = None
    after: Callable[[], object] | None = None
    server: int | None = None


@dataclass
class Samples:
    times: list[float] = field(default_factory=list)
    cpu: float = 0.0  # this process's CPU seconds over the variant's blocks
    server_cpu: float = 0.0  # the server tree's CPU seconds over them

    def summary(self) -> Summary:
        return summary(self.times)

    def cpu_us(self, server: bool = False) -> float:
        spent = self.server_cpu if server else self.cpu
        return spent / len(self.times) * US if self.times else math.nan


def interleaved(
    methods: Mapping[str, Callable[[], object] | Method],
    samples: int | Mapping[str, int],
    *,
    block: int,
    warmup: int = 0,
    unit: float = MS,
) -> dict[str, Samples]:
    """``samples`` timed calls of each variant (in ``unit`` per call), after ``warmup``
    untimed ones, the variants taking turns in blocks of ``block`` calls. A variant
    wanting fewer samples than the most gets a proportionally smaller block, so all
    finish together."""
    variants = {n: m if isinstance(m, Method) else Method(m) for n, m in methods.items()}
    wanted = dict(samples) if isinstance(samples, Mapping) else dict.fromkeys(variants, samples)
    most = max(wanted.values(), default=0)
    for method in variants.values():
        for _ in range(warmup):
            _run(method)
    out = {name: Samples() for name in variants}
    while any(len(out[name].times) < wanted[name] for name in variants):
        for name, method in variants.items():
            size = max(1, block * wanted[name] // most)
            n = min(size, wanted[name] - len(out[name].times))
            if n > 0:
                _block(method, n, out[name], unit)
    return out


def _run(method: Method) -> None:
    if method.before is not None:
        method.before()
    method.call()
    if method.after is not None:
        method.after()


def _block(method: Method, n: int, into: Samples, unit: float) -> None:
    server_before = tree_cpu(method.server) if method.server else 0.0
    cpu_before = time.process_time()
    clock = time.perf_counter
    for _ in range(n):
        if method.before is not None:
            method.before()
        started = clock()
        method.call()
        into.times.append((clock() - started) * unit)
        if method.after is not None:
            method.after()
    into.cpu += time.process_time() - cpu_before
    if method.server:
        into.server_cpu += tree_cpu(method.server) - server_before


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live children.

    CPU time per request is the figure that survives a busy machine: wall time on
    2 shared cores is mostly waiting for a core, CPU time is what our code costs.
    """
    import psutil

    try:
        main = psutil.Process(pid)
        procs = [main, *main.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


# --- tables and verdicts ---------------------------------------------------------------


def run_label(*conditions: str) -> str:
    """When this run measured and on how many cores, plus ``conditions`` ("loopback"):
    read from the clock and the machine now."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ran = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return ", ".join([f"run {ran}", f"{cores} cores", *conditions])


def verdict(target: str, met: bool, figure: str) -> str:
    """A target's line, ``<target>: yes (<figure>)`` or ``: NO (...)``, recorded for
    ``python -m bench``'s summary."""
    line = f"{target}: {'yes' if met else 'NO'} ({figure})"
    VERDICTS.append(line)
    return line


@dataclass
class Table:
    """A plain-text table: the title stamped with ``run_label(*conditions)``, the first
    column left-aligned, numbers right-aligned through ``number`` (ints with commas)."""

    title: str
    headers: Sequence[str]
    conditions: Sequence[str] = ()
    number: Callable[[float], str] = fmt
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append(
            [
                c if isinstance(c, str) else f"{c:,}" if isinstance(c, int) else self.number(c)
                for c in cells
            ]
        )

    def verdict(self, target: str, met: bool, figure: str) -> bool:
        self.notes.append(verdict(target, met, figure))
        return met

    def render(self) -> str:
        cells = [list(map(str, self.headers)), *[list(map(str, r)) for r in self.rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.headers))]

        def line(row: Sequence[str]) -> str:
            first = row[0].ljust(widths[0])
            rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
            return "  ".join([first, *rest]).rstrip()

        return "\n".join(
            [
                f"{self.title} ({run_label(*self.conditions)})",
                line(cells[0]),
                "  ".join("-" * w for w in widths),
                *(line(row) for row in cells[1:]),
                *self.notes,
            ]
        )

    def print(self) -> None:
        print(self.render() + "\n", flush=True)
