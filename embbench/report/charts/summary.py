"""The summary charts of a run: throughput, latency and resources against concurrency."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from embbench.report.charts.kit import (
    NO_OK,
    as_float,
    by_label,
    ceilings,
    colors_of,
    concurrency_axis,
    finish,
    new_figure,
)
from embbench.report.stats import level_order

PERCENTILES: tuple[tuple[str, str, Any], ...] = (
    ("latency_p50_ms", "p50", "-"),
    ("latency_p95_ms", "p95", "--"),
    ("latency_p99_ms", "p99", ":"),
)


def throughput_figure(
    agg: pd.DataFrame, meta: Mapping[str, Any], ceiling: pd.DataFrame | None = None
) -> Figure:
    """Median rps against concurrency per label (log x), 95 % intervals as error bars.

    Cells whose load generator was saturated get a cross (their rps is a floor); the offline
    ceiling (meta["ceiling"] or the `ceiling` frame) is a horizontal line per backend.
    """
    fig, ax = new_figure()
    ok = agg[(agg["n_ok"] > 0) & agg["rps"].notna()]
    colors = colors_of(agg)
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
            label=label,
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
    for i, line in enumerate(ceilings(meta, ceiling)):
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
    return finish(fig, ax, meta, "Throughput by concurrency", NO_OK if ok.empty else "")


def latency_figure(agg: pd.DataFrame, meta: Mapping[str, Any]) -> Figure:
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
    return finish(fig, ax, meta, title, NO_OK if ok.empty else "", legend=False)


def resources_figure(agg: pd.DataFrame, meta: Mapping[str, Any]) -> Figure:
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
    cores = as_float((meta.get("host") or {}).get("cores"))
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
    return finish(fig, cpu_ax, meta, "Server resources", "" if labels else NO_OK, legend=False)


def offered_load_figure(
    agg: pd.DataFrame, meta: Mapping[str, Any], slo_p99_ms: float | None = None
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
    return finish(fig, ax, meta, title, NO_OK if ok.empty else "")


def quality_figure(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> Figure:
    """Per label, 1 - cosine of its checked answers to their references (log scale: fp32's
    1e-7 and int8's 1e-2 on one axis): median, 1st percentile and worst, with the threshold
    each label is held to. Further right is worse; rows are quality.label_quality's."""
    fig, ax = new_figure()
    labels = [str(r["label"]) for r in rows]
    y = np.arange(len(labels))[::-1]
    marks = (("cosine_p50", "median", "o"), ("cosine_p1", "1st percentile", "^"),
             ("cosine_min", "worst (probe included)", "x"))  # fmt: skip
    for column, name, marker in marks:
        gap = [_gap(r.get(column)) for r in rows]
        ax.scatter(gap, y, marker=marker, s=60, label=name, zorder=3)
    for pos, r in zip(y, rows, strict=True):
        ax.plot([_gap(r.get("cosine_p50")), _gap(r.get("cosine_min"))], [pos, pos], color="0.6")
        limit = _gap(r.get("cosine_threshold"))
        ax.scatter([limit], [pos], marker="|", s=300, color="firebrick", zorder=2,
                   label="threshold" if pos == y[0] else None)  # fmt: skip
        if r.get("mismatched"):
            ax.annotate(f"{r['mismatched']} mismatched", (limit, pos), xytext=(8, 6),
                        textcoords="offset points", fontsize=8, color="firebrick")  # fmt: skip
    if labels:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # crowded within one decade
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("1 - cosine to sentence-transformers (log scale; right is worse)")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    return finish(fig, ax, meta, "Quality under load", "" if labels else "no answer checked")


def _gap(cosine: Any) -> float:
    # fp32 can round to a cosine of 1 or just above: kept on the log axis at 1e-8.
    value = as_float(cosine)
    return math.nan if math.isnan(value) else max(1.0 - value, 1e-8)
