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
    log_axis,
    names_of,
    new_figure,
    slo_line,
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
    colors, names = colors_of(agg, record), names_of(agg, record)
    for label, rows in by_label(ok):
        for column, name, style in PERCENTILES:
            # Labelled for the page's hover text; the legends below are drawn from proxies.
            ax.plot(rows["concurrency"], rows[column], linestyle=style, marker="o",
                    color=colors[label], label=f"{names[label]} {name}")  # fmt: skip
    concurrency_axis(ax, agg)
    if not ok.empty:
        ax.set_yscale("log")
        log_axis(ax.yaxis)
    slo_line(ax, record)
    ax.set_ylabel("latency (ms, log scale; median over repeats)")
    shown = dict.fromkeys(ok["label"])
    label_handles = [
        Line2D([], [], color=colors[lab], marker="o", label=names[lab]) for lab in shown
    ]
    style_handles = [
        Line2D([], [], color="black", linestyle=style, label=name)
        for _column, name, style in PERCENTILES
    ]
    if record.slo_p99_ms:
        style_handles.append(
            Line2D(
                [],
                [],
                color="firebrick",
                linestyle="--",
                label=f"p99 target {record.slo_p99_ms:g} ms",
            )
        )
    # One legend (colour = label, then line style = percentile): constrained layout makes room
    # for a legend it is given, not for a second one added as an artist, which it clipped.
    ax.legend(
        handles=[*label_handles, *style_handles],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        title="label; percentile",
        fontsize=8,
    )
    title = "Latency percentiles by concurrency"
    return finish(fig, ax, record, title, NO_OK if ok.empty else "", legend=False)
