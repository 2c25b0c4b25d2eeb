"""Server resources: CPU per label and level (mean and max), peak memory per label."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from embbench.report.charts.kit import NO_OK, as_float, colors_of, finish, names_of, new_figure
from embbench.report.stats import level_order
from embbench.results.record import RunRecord


def resources_figure(agg: pd.DataFrame, record: RunRecord) -> Figure:
    """Server CPU % per label and level (bar = mean, tick = max); peak RSS/PSS per label.

    Bars take their label's colour (the same in every chart); a level is lighter the fewer
    its users, PSS is hatched beside RSS."""
    fig = new_figure(columns=2)[0]
    cpu_ax, mem_ax = fig.axes
    ok = agg[agg["n_ok"] > 0]
    labels = list(dict.fromkeys(ok["label"]))
    levels = sorted(ok["level"].unique(), key=level_order)
    x = np.arange(len(labels))
    width = 0.8 / max(len(levels), 1)
    alphas = np.linspace(0.35, 1.0, max(len(levels), 1))
    colors, names = colors_of(ok, record), names_of(ok, record)
    bar_colors = [colors[label] for label in labels]
    level_handles = [Patch(facecolor="0.35", alpha=alpha, label=f"{level} mean")
                     for alpha, level in zip(alphas, levels, strict=False)]  # fmt: skip
    for i, level in enumerate(levels):
        rows = ok[ok["level"] == level].set_index("label").reindex(labels)
        pos = x - 0.4 + width * (i + 0.5)
        cpu_ax.bar(pos, rows["cpu_pct_mean"], width, color=bar_colors, alpha=alphas[i],
                   label=f"{level} mean")  # fmt: skip
        cpu_ax.scatter(
            pos,
            rows["cpu_pct_max"],
            marker="_",
            s=200,
            color="black",
            zorder=3,
            label=f"{level} max",
        )
    cores = as_float(record.host.cores)
    if cores > 0:
        cpu_ax.axhline(
            cores * 100,
            color="firebrick",
            linestyle="--",
            linewidth=1,
            label=f"all {cores:g} cores",
        )
    cpu_ax.set_ylabel("server CPU (%, summed over its processes)")
    cpu_ax.set_ylim(0, max([*ok["cpu_pct_max"].dropna(), cores * 100 if cores > 0 else 1.0]) * 1.3)
    cpu_ax.set_title("CPU by label and concurrency", fontsize=10)
    peak = ok.groupby("label", sort=False)[["rss_mb_max", "pss_mb_max"]].max().reindex(labels)
    for i, (column, name) in enumerate((("rss_mb_max", "RSS"), ("pss_mb_max", "PSS"))):
        mem_ax.bar(
            x - 0.2 + 0.4 * i,
            peak[column],
            0.4,
            label=f"{name} peak",
            color=bar_colors,
            alpha=(1.0, 0.55)[i],
            hatch=(None, "//")[i],
            edgecolor="white",
        )
    mem_ax.set_ylabel("memory (MB, peak over concurrency levels)")
    mem_ax.set_title("Peak memory by label", fontsize=10)
    shown = [names[label] for label in labels]
    for ax in (cpu_ax, mem_ax):
        ax.set_xticks(x, shown, rotation=20 if len(labels) > 3 else 0, ha="right", fontsize=8)
        ax.set_xlabel("label")
    if labels:
        max_mark = Line2D([], [], marker="_", markersize=12, linestyle="", color="black",
                          label="max")  # fmt: skip
        cores_line = [ln for ln in cpu_ax.get_lines() if str(ln.get_label()).startswith("all ")]
        cpu_ax.legend(handles=[*level_handles, max_mark, *cores_line], fontsize=7)
        mem_ax.legend(handles=[Patch(facecolor="0.35", label="RSS peak"),
                               Patch(facecolor="0.35", alpha=0.55, hatch="//", label="PSS peak")],
                      fontsize=7)  # fmt: skip
    return finish(fig, cpu_ax, record, "Server resources", "" if labels else NO_OK, legend=False)
