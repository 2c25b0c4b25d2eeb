"""The timeline chart: the whole run against time, each cell's measured window shaded."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from embbench.report.charts.kit import colors_of, finish, names_of, new_figure, numbers
from embbench.report.stats import records
from embbench.results.record import RunRecord

LINE_STYLES: tuple[tuple[str, Any], ...] = (
    ("server CPU / RSS", "-"),
    ("load generator CPU", ":"),
    ("PSS", "--"),
)


def timeline_figure(
    frame: pd.DataFrame,
    requests: Mapping[str, pd.DataFrame],
    samples: Mapping[str, pd.DataFrame],
    record: RunRecord,
) -> Figure:
    """The whole run against time: responses/s, CPU % and memory, each cell's window shaded.

    `frame` is the run's summary as stats.prepare makes it (RunView.frame); `requests` and
    `samples` map a cell name to its per-cell frame; a cell without one is
    simply not drawn in that panel. Throughput counts 2xx responses by completion time
    (start + latency) in one-second bins; warm-up samples are drawn faded.
    """
    fig = new_figure(rows=3)[0]
    rps_ax, cpu_ax, mem_ax = fig.axes
    colors = colors_of(frame, record)
    t0 = _start_time(frame, requests, samples)
    for row in records(frame):
        cell, color = str(row["cell"]), colors[row["label"]]
        if cell in requests:
            _plot_rate(rps_ax, requests[cell], t0, color)
        if cell in samples:
            _plot_samples(cpu_ax, mem_ax, samples[cell], t0, color)
        start, end = _window(row, samples.get(cell))
        if math.isnan(start) or math.isnan(end):
            continue
        for ax in (rps_ax, cpu_ax, mem_ax):
            ax.axvspan(start - t0, end - t0, color=color, alpha=0.12, linewidth=0)
        failed = "" if row["status"] == "ok" else f" {row['status']}"
        rps_ax.text(
            (start + end) / 2 - t0,
            1.0,
            f"{row['level']}{failed}",
            rotation=90,
            fontsize=6,
            ha="center",
            va="bottom",
            transform=rps_ax.get_xaxis_transform(),
        )
    rps_ax.set_ylabel("responses/s")
    cpu_ax.set_ylabel("CPU (%)")
    mem_ax.set_ylabel("memory (MB)")
    mem_ax.set_xlabel("time since the first sample (s)")
    names = names_of(frame, record)
    handles: list[Artist] = [
        Patch(color=colors[lab], alpha=0.6, label=names[lab])
        for lab in dict.fromkeys(frame["label"])
    ]
    handles += [
        Line2D([], [], color="gray", linestyle=style, label=name) for name, style in LINE_STYLES
    ]
    rps_ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    empty = "" if requests or samples else "no per-cell requests or samples file"
    title = "Timeline of the run (shaded: measured window of each cell)"
    return finish(fig, rps_ax, record, title, empty, legend=False)


def _plot_rate(ax: Axes, frame: pd.DataFrame, t0: float, color: Any) -> None:
    start, latency, status = (numbers(frame, c) for c in ("start", "latency_ms", "status"))
    ok = (status >= 200) & (status < 300)
    if "error" in frame.columns:  # a 200 whose body was wrong is logged with an error
        ok &= frame["error"].isna() | (frame["error"].astype(str).str.strip() == "")
    done = (start + latency / 1000.0 - t0)[ok].dropna()
    if done.empty:
        return
    seconds = np.floor(done.to_numpy()).astype(int)
    bins = np.arange(seconds.min(), seconds.max() + 1)
    counts = np.bincount(seconds - seconds.min(), minlength=len(bins))
    ax.step(
        np.append(bins, bins[-1] + 1),
        np.append(counts, counts[-1]),
        where="post",
        color=color,
        linewidth=1,
    )


def _plot_samples(cpu_ax: Axes, mem_ax: Axes, frame: pd.DataFrame, t0: float, color: Any) -> None:
    time = numbers(frame, "time") - t0
    measure = frame.get("phase", pd.Series("measure", index=frame.index)).eq("measure")
    for ax, column, style in (
        (cpu_ax, "cpu_pct", "-"),
        (cpu_ax, "loadgen_cpu_pct", ":"),
        (mem_ax, "rss_mb", "-"),
        (mem_ax, "pss_mb", "--"),
    ):
        if column not in frame.columns:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        ax.plot(time, values, linestyle=style, color=color, alpha=0.35, linewidth=1)
        ax.plot(time[measure], values[measure], linestyle=style, color=color, linewidth=1.2)


def _window(row: Mapping[str, Any], samples: pd.DataFrame | None) -> tuple[float, float]:
    start, end = float(row["window_start"]), float(row["window_end"])
    if (math.isnan(start) or math.isnan(end)) and samples is not None and "time" in samples:
        times = pd.to_numeric(samples["time"][samples.get("phase", "") == "measure"], "coerce")
        start, end = (float(times.min()), float(times.max())) if len(times) else (start, end)
    return start, end


def _start_time(
    frame: pd.DataFrame, requests: Mapping[str, pd.DataFrame], samples: Mapping[str, pd.DataFrame]
) -> float:
    candidates = [float(frame["window_start"].min())]
    candidates += [
        float(pd.to_numeric(f["time"], "coerce").min()) for f in samples.values() if "time" in f
    ]
    candidates += [
        float(pd.to_numeric(f["start"], "coerce").min()) for f in requests.values() if "start" in f
    ]
    finite = [c for c in candidates if not math.isnan(c)]
    return min(finite) if finite else 0.0
