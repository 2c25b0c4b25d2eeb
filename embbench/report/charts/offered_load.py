"""The open loop: latency against the offered rate per label, with the p99 target as a line."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from embbench.report.charts.kit import (
    NO_OK,
    by_label,
    ceilings,
    colors_of,
    finish,
    log_axis,
    names_of,
    new_figure,
    slo_line,
)
from embbench.results.record import RunRecord


def offered_load_figure(
    agg: pd.DataFrame, record: RunRecord, slo_p99_ms: float | None = None
) -> Figure:
    """Open loop: p50 and p99 latency (from the scheduled send) against the offered rate, per
    label, log scale, with the latency target drawn as a line where one is known. Where the
    p99 leaves the target is the label's knee: the traffic it sustains."""
    fig, ax = new_figure()
    ok = agg[(agg["n_ok"] > 0) & agg["latency_p50_ms"].notna()]
    colors, names = colors_of(agg, record), names_of(agg, record)
    for label, rows in by_label(ok, "offered_rps"):
        for column, name, style in (("latency_p50_ms", "p50", "-"), ("latency_p99_ms", "p99", ":")):
            ax.plot(rows["offered_rps"], rows[column], linestyle=style, marker="o",
                    color=colors[label], label=f"{names[label]} {name}")  # fmt: skip
    slo_line(ax, record, slo_p99_ms)
    for i, line in enumerate(ceilings(record, None)):
        # The offline ceiling is a rate: past it no server of that backend keeps up.
        ax.axvline(line["value"], color=str(0.2 + 0.2 * (i % 3)), linestyle="-.",
                   linewidth=1.2, label=f"offline ceiling ({line['name']})")  # fmt: skip
    if not ok.empty:
        ax.set_xscale("log")
        ax.set_yscale("log")
        log_axis(ax.xaxis, ok["offered_rps"].dropna().tolist())
        log_axis(ax.yaxis)
    ax.set_xlabel("offered load (arrivals/s, log scale)")
    ax.set_ylabel("latency from the scheduled send (ms, log scale)")
    ax.grid(True, which="major", alpha=0.3)
    title = "Latency against offered load (open loop)"
    return finish(fig, ax, record, title, NO_OK if ok.empty else "")
