"""Server resources: CPU per label and level (mean and max), peak memory per label."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from embbench.report.charts.kit import NO_OK, as_float, finish, new_figure
from embbench.report.stats import level_order
from embbench.results.record import RunRecord


def resources_figure(agg: pd.DataFrame, record: RunRecord) -> Figure:
    """Server CPU % per label and level (bar = mean, tick = max); peak RSS/PSS per label."""
    fig = new_figure(columns=2)[0]
    cpu_ax, mem_ax = fig.axes
    ok = agg[agg["n_ok"] > 0]
    labels = list(dict.fromkeys(ok["label"]))
    levels = sorted(ok["level"].unique(), key=level_order)
    x = np.arange(len(labels))
    width = 0.8 / max(len(levels), 1)
    shades = matplotlib.colormaps["Blues"](np.linspace(0.45, 0.9, max(len(levels), 1)))
    for i, level in enumerate(levels):
        rows = ok[ok["level"] == level].set_index("label").reindex(labels)
        pos = x - 0.4 + width * (i + 0.5)
        cpu_ax.bar(pos, rows["cpu_pct_mean"], width, color=shades[i], label=f"{level} mean")
        cpu_ax.scatter(
            pos,
            rows["cpu_pct_max"],
            marker="_",
            s=200,
            color="black",
            zorder=3,
            label="max" if i == 0 else None,
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
            color=("tab:orange", "tab:green")[i],
        )
    mem_ax.set_ylabel("memory (MB, peak over concurrency levels)")
    mem_ax.set_title("Peak memory by label", fontsize=10)
    for ax in (cpu_ax, mem_ax):
        ax.set_xticks(x, labels, rotation=20 if len(labels) > 3 else 0, ha="right", fontsize=8)
        ax.set_xlabel("label")
        if labels:
            ax.legend(fontsize=7)
    return finish(fig, cpu_ax, record, "Server resources", "" if labels else NO_OK, legend=False)
