"""Where the time went: per level, for each label, the requests around p50 and around p99 as
stacked bars of the server's phases and of what lay outside the server (the record's
p50_*/p99_* columns; report/phases.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import Patch

from embbench.report import phases
from embbench.report.charts.kit import DPI, HEIGHT_PX, WIDTH_PX, caption, colors_of, names_of
from embbench.report.stats import level_order, records
from embbench.results.phases import GROUPS, PARTS
from embbench.results.record import RunRecord

# Parts take colours of their own (ColorBrewer Set3, light), so that they do not read as labels:
# a label keeps its colour of every chart as its bars' outline and its name's colour.
PART_COLORS = {
    "admission": "#b3b3b3", "lock": "#fb8072", "queue": "#fdb462", "tokenize": "#ffffb3",
    "forward": "#80b1d3", "pool": "#bebada", "serialize": "#b3de69", "other": "#d9d9d9",
    "outside": "#fccde5",
}  # fmt: skip
MAX_PANELS = 6  # levels beyond this many: the highest ones (the most loaded) are drawn
BAR = 0.38


def applies(agg: pd.DataFrame) -> bool:
    return not phases.timed(agg).empty


def phases_figure(agg: pd.DataFrame, record: RunRecord) -> Figure:
    """One panel per level; in each, per label, two stacked bars: p50 group, p99 group."""
    timed = phases.timed(agg)
    levels = sorted(timed["level"].unique(), key=level_order)[-MAX_PANELS:] or ["-"]
    columns = min(len(levels), 3)
    rows = math.ceil(len(levels) / columns)
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    grid = fig.subplots(rows, columns, squeeze=False)
    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(rect=(0, 0.04, 1, 0.96))  # room for the caption below, as kit.new_figure
    colors, names = colors_of(agg, record), names_of(agg, record)
    drawn = set()
    for k, ax in enumerate(grid.flat):
        if k >= len(levels) or timed.empty:
            ax.set_axis_off()
            continue
        level = levels[k]
        here = records(timed[timed["level"] == level])
        x = np.arange(len(here))
        for i, row in enumerate(here):
            for g, group in enumerate(GROUPS):
                bottom = 0.0
                pos = x[i] + (g - 0.5) * BAR * 1.05
                for part, ms in phases.parts_of(row, group):
                    height = max(ms, 0.0)
                    ax.bar(
                        pos,
                        height,
                        BAR,
                        bottom=bottom,
                        color=PART_COLORS[part],
                        edgecolor=colors.get(row["label"], "black"),
                        linewidth=1.2,
                        hatch="//" if part == "outside" else None,
                    )
                    bottom += height
                    drawn.add(part)
                ax.annotate(
                    group,
                    (pos, bottom),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
        ax.set_xticks(
            x,
            [names.get(r["label"], r["label"]) for r in here],
            fontsize=8,
            rotation=20 if len(here) > 3 else 0,
        )
        for tick, row in zip(ax.get_xticklabels(), here, strict=True):
            tick.set_color(colors.get(row["label"], "black"))
        ax.set_title(str(level), fontsize=10)
        ax.set_ylabel("ms (mean of the group)", fontsize=8)
        ax.margins(y=0.12)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("Where the time went: requests around p50 and around p99, by phase")
    handles = [
        Patch(
            facecolor=PART_COLORS[p],
            hatch="//" if p == "outside" else None,
            edgecolor="0.3",
            label=phases.NAMES[p],
        )
        for p in PARTS
        if p in drawn
    ]
    if handles:
        fig.legend(handles=handles, loc="outside right center", fontsize=8)
    else:
        grid.flat[0].set_axis_on()
        grid.flat[0].text(
            0.5,
            0.5,
            "no server sent its phases",
            ha="center",
            va="center",
            color="gray",
            transform=grid.flat[0].transAxes,
        )
    fig.text(0.01, 0.01, caption(record), fontsize=7, color="0.3")
    return fig
