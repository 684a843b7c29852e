"""Charts of a bench's headline figures, for bench/README.md (``--chart DIR``).

A table says every number; a chart says at a glance which bar crosses the target. Each
is a PNG of horizontal bars, one group per case, the target as a dashed line, titled
with the run's date and machine as its table is, so a chart cannot outlive its table
unnoticed. matplotlib comes with the dev extra; it is imported only when a chart is
asked for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

CHARTS = Path(__file__).resolve().parent / "charts"


def bars(
    path: Path,
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    unit: str,
    target: float | None = None,
    target_label: str | None = None,
    log_scale: bool = False,
) -> Path:
    """Grouped horizontal bars: ``series`` names each bar of a group (p50, p95…)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = 0.8 / max(len(series), 1)
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(labels) * max(len(series), 1) + 1.6))
    for index, (name, values) in enumerate(series.items()):
        positions = [row + index * height for row in range(len(labels))]
        drawn = axes.barh(positions, list(values), height=height, label=name)
        axes.bar_label(drawn, fmt="%.3g", padding=2, fontsize=7)
    axes.set_yticks([row + height * (len(series) - 1) / 2 for row in range(len(labels))])
    axes.set_yticklabels(labels)
    axes.invert_yaxis()
    axes.set_xlabel(unit)
    highest = max((max(values, default=0) for values in series.values()), default=0)
    if log_scale:
        axes.set_xscale("log")
        axes.set_xlim(right=highest * 3)
    else:
        axes.set_xlim(right=highest * 1.15)
    if target is not None:
        label = target_label or f"target {target:.3g} {unit}"
        axes.axvline(target, color="crimson", linestyle="--", linewidth=1, label=label)
    stamp = f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores"
    axes.set_title(f"{title}\n{stamp}", fontsize=10)
    axes.legend(loc="upper right", fontsize=8, framealpha=0.9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


__all__ = ["CHARTS", "bars"]
