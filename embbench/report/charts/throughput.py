"""Throughput against concurrency: each label's median rps with its interval, saturated cells
marked (their rps is a floor), the offline ceilings as lines."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from embbench.report.charts.kit import (
    NO_OK,
    by_label,
    ceilings,
    colors_of,
    concurrency_axis,
    finish,
    names_of,
    new_figure,
)
from embbench.results.record import RunRecord


def throughput_figure(
    agg: pd.DataFrame, record: RunRecord, ceiling: pd.DataFrame | None = None
) -> Figure:
    """Median rps against concurrency per label (log x), 95 % intervals as error bars.

    Cells whose load generator was saturated get a cross (their rps is a floor); the offline
    ceiling (the record's, measured before the cells, or the `ceiling` frame) is a horizontal
    line per backend.
    """
    fig, ax = new_figure()
    ok = agg[(agg["n_ok"] > 0) & agg["rps"].notna()]
    colors, names = colors_of(agg, record), names_of(agg, record)
    for label, rows in by_label(ok):
        low = (rows["rps"] - rows["rps_ci_low"]).fillna(0).clip(lower=0)
        high = (rows["rps_ci_high"] - rows["rps"]).fillna(0).clip(lower=0)
        ax.errorbar(
            rows["concurrency"],
            rows["rps"],
            yerr=[low, high],
            marker="o",
            capsize=4,
            color=colors[label],
            label=names[label],
        )
    saturated = ok[ok["loadgen_saturated"].astype(bool)]
    if len(saturated):
        ax.scatter(
            saturated["concurrency"],
            saturated["rps"],
            marker="x",
            s=120,
            color="black",
            zorder=5,
            label="loadgen saturated (a floor)",
        )
    for i, line in enumerate(ceilings(record, ceiling)):
        ax.axhline(
            line["value"],
            color=str(0.2 + 0.2 * (i % 3)),
            linestyle="--",
            linewidth=1.2,
            label=f"offline ceiling ({line['name']})",
        )
    concurrency_axis(ax, agg)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("throughput (requests/s, median over repeats)")
    return finish(fig, ax, record, "Throughput by concurrency", NO_OK if ok.empty else "")
