"""The open loop: latency against the offered rate per label, with the p99 target as a line."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from embbench.report.charts.kit import NO_OK, by_label, colors_of, finish, new_figure
from embbench.results.record import RunRecord


def offered_load_figure(
    agg: pd.DataFrame, record: RunRecord, slo_p99_ms: float | None = None
) -> Figure:
    """Open loop: p50 and p99 latency (from the scheduled send) against the offered rate, per
    label, log scale, with the latency target drawn as a line where one is known. Where the
    p99 leaves the target is the label's knee: the traffic it sustains."""
    fig, ax = new_figure()
    ok = agg[(agg["n_ok"] > 0) & agg["latency_p50_ms"].notna()]
    colors = colors_of(agg)
    for label, rows in by_label(ok, "offered_rps"):
        for column, name, style in (("latency_p50_ms", "p50", "-"), ("latency_p99_ms", "p99", ":")):
            ax.plot(rows["offered_rps"], rows[column], linestyle=style, marker="o",
                    color=colors[label], label=f"{label} {name}")  # fmt: skip
    if slo_p99_ms:
        ax.axhline(slo_p99_ms, color="firebrick", linestyle="--", linewidth=1.2,
                   label=f"p99 target {slo_p99_ms:g} ms")  # fmt: skip
    if not ok.empty:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("offered load (arrivals/s, log scale)")
    ax.set_ylabel("latency from the scheduled send (ms, log scale)")
    ax.grid(True, which="major", alpha=0.3)
    title = "Latency against offered load (open loop)"
    return finish(fig, ax, record, title, NO_OK if ok.empty else "")
