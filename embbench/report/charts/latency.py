"""Latency percentiles against concurrency: p50, p95 and p99 per label, log-log."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from embbench.report.charts.kit import (
    NO_OK,
    by_label,
    colors_of,
    concurrency_axis,
    finish,
    new_figure,
)
from embbench.results.record import RunRecord

PERCENTILES: tuple[tuple[str, str, Any], ...] = (
    ("latency_p50_ms", "p50", "-"),
    ("latency_p95_ms", "p95", "--"),
    ("latency_p99_ms", "p99", ":"),
)


def latency_figure(agg: pd.DataFrame, record: RunRecord) -> Figure:
    """p50, p95 and p99 latency by concurrency (log-log); colour = label, style = percentile."""
    fig, ax = new_figure()
    ok = agg[(agg["n_ok"] > 0) & agg["latency_p50_ms"].notna()]
    colors = colors_of(agg)
    for label, rows in by_label(ok):
        for column, _name, style in PERCENTILES:
            ax.plot(
                rows["concurrency"], rows[column], linestyle=style, marker="o", color=colors[label]
            )
    concurrency_axis(ax, agg)
    if not ok.empty:
        ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log scale; median over repeats)")
    label_handles = [Line2D([], [], color=colors[lab], marker="o", label=lab) for lab in colors]
    style_handles = [
        Line2D([], [], color="black", linestyle=style, label=name)
        for _column, name, style in PERCENTILES
    ]
    if label_handles:
        first = ax.legend(
            handles=label_handles,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            title="label",
            fontsize=8,
        )
        ax.add_artist(first)
    ax.legend(
        handles=style_handles,
        loc="lower left",
        bbox_to_anchor=(1.01, 0.0),
        title="percentile",
        fontsize=8,
    )
    title = "Latency percentiles by concurrency"
    return finish(fig, ax, record, title, NO_OK if ok.empty else "", legend=False)
