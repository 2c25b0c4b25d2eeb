"""Drawing helpers shared by every chart: one figure size, caption, colours and axes.

Figures are `Figure` objects, never pyplot's global state, so nothing leaks between charts or
threads; the Agg backend is chosen before anything imports pyplot.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: no display, same pixels everywhere

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

from embbench.report import labels
from embbench.report.stats import records
from embbench.results.ceilings import Ceiling, best_rate
from embbench.results.record import RunRecord

DPI = 110
WIDTH_PX, HEIGHT_PX = 1000, 600
NO_OK = "no cell finished with status ok"


def save(fig: Figure, path: Path) -> Path:
    """Write a figure as PNG at the chart size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def new_figure(rows: int = 1, columns: int = 1) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, columns, sharex=rows > 1, squeeze=False)
    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(rect=(0, 0.04, 1, 0.96))  # room for the caption below
    first: Axes = axes[0][0]
    return fig, first


def finish(
    fig: Figure,
    ax: Axes,
    record: RunRecord,
    title: str,
    empty: str,
    legend: bool = True,
) -> Figure:
    """Title, caption, legend; `empty` is a note to write across an axes with nothing to show."""
    fig.suptitle(title)
    if empty:
        ax.text(
            0.5,
            0.5,
            empty,
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="gray",
        )
    elif legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.text(0.01, 0.01, caption(record), fontsize=7, color="0.3")
    return fig


def caption(record: RunRecord) -> str:
    return f"run {record.run_id or '?'} · {record.host.describe()}"


def concurrency_axis(ax: Axes, agg: pd.DataFrame) -> None:
    ax.set_xscale("log")
    levels = sorted(int(c) for c in agg["concurrency"].dropna().unique())
    if levels:
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_xlim(levels[0] / 1.6, levels[-1] * 1.6)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("concurrency (simultaneous users, log scale)")
    ax.grid(True, which="major", alpha=0.3)


def ceilings(record: RunRecord, ceiling: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The offline ceilings to draw as lines: the record's (measured before the cells), or
    those of a `ceiling` frame given instead."""
    items: Sequence[Ceiling] = (
        [Ceiling.from_json(r) for r in records(ceiling)]
        if ceiling is not None
        else record.ceilings.before
    )
    out = []
    for item in items:
        value, figure = best_rate(item)
        name = item.kind
        if item.streams is not None:  # runs before thread layouts were measured lack it
            name += f", {item.threads}t x {item.streams}"
        if figure == "reachable":
            name += ", arrival order"
        if not math.isnan(value):
            out.append({"name": name, "value": float(value)})
    return out


def colors_of(frame: pd.DataFrame, record: RunRecord) -> dict[str, Any]:
    """One colour per label, the same in every chart of the run (labels.colors)."""
    return labels.colors(record, frame["label"])


def names_of(frame: pd.DataFrame, record: RunRecord) -> dict[str, str]:
    """The short name a legend writes for each label (labels.short_names)."""
    return labels.short_names(record, frame["label"])


def log_axis(axis: Axis, values: Sequence[float] = ()) -> None:
    """A log axis a person reads: labels on 1, 2 and 5 of each decade over a span of a few
    decades (on 1 alone over more), written as plain numbers (`20`, `50`, not `2×10¹`); the
    minor ticks, which crowd within a decade, unlabelled. A few well-spaced `values` (the
    rates a run offered) are labelled themselves instead."""
    levels = sorted({float(v) for v in values if v > 0})
    spaced = all(b / a >= 1.2 for a, b in itertools.pairwise(levels))
    if 2 <= len(levels) <= 8 and spaced:
        axis.set_major_locator(FixedLocator(levels))
    else:
        axis.set_major_locator(_ReadableLogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


class _ReadableLogLocator(LogLocator):
    def tick_values(self, vmin: float, vmax: float) -> Any:
        low, high = sorted((vmin, vmax))
        decades = math.log10(high / low) if low > 0 else math.inf
        self.set_params(subs=(1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,))
        return super().tick_values(vmin, vmax)


def slo_line(ax: Axes, record: RunRecord, slo_p99_ms: float | None = None) -> None:
    """The run's p99 target as a horizontal line, where it has one."""
    target = slo_p99_ms or record.slo_p99_ms
    if target:
        ax.axhline(target, color="firebrick", linestyle="--", linewidth=1.2,
                   label=f"p99 target {target:g} ms")  # fmt: skip


def by_label(frame: pd.DataFrame, by: str = "concurrency") -> list[tuple[str, pd.DataFrame]]:
    return [
        (str(label), frame[frame["label"] == label].sort_values(by))
        for label in dict.fromkeys(frame["label"])
    ]


def numbers(frame: pd.DataFrame, column: str) -> pd.Series[float]:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
