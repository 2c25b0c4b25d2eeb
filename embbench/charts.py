"""Charts of a run: PNG files from DataFrames, drawn with matplotlib's Agg backend.

Each `*_figure` function builds a `Figure` from DataFrames and the run's metadata (tests look
inside it); each `*_chart` function writes that figure into a folder as a PNG of 1000 x 600
pixels and returns its path in a list. Figures are `Figure` objects, never pyplot's global
state, so nothing leaks between charts or threads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: no display, same pixels everywhere

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter

from embbench.metadata import describe_host
from embbench.report import CHART_FILES
from embbench.results import RunData
from embbench.stats import aggregate, prepare, records

DPI = 110
WIDTH_PX, HEIGHT_PX = 1000, 600
PERCENTILES: tuple[tuple[str, str, Any], ...] = (
    ("latency_p50_ms", "p50", "-"),
    ("latency_p95_ms", "p95", "--"),
    ("latency_p99_ms", "p99", ":"),
)
NO_OK = "no cell finished with status ok"
LINE_STYLES: tuple[tuple[str, Any], ...] = (
    ("server CPU / RSS", "-"),
    ("load generator CPU", ":"),
    ("PSS", "--"),
)


def write_charts(run: RunData, out_dir: Path, ceiling: pd.DataFrame | None = None) -> list[Path]:
    """Write the four charts of a run into out_dir (report.md links them as charts/*.png).

    A cell whose requests or samples file is missing or unreadable (a failed cell) is left
    out of the timeline; it does not stop the other charts.
    """
    meta = {**run.meta, "run_id": run.meta.get("run_id") or run.path.name}
    agg = aggregate(run.summary)
    cells = [str(c) for c in prepare(run.summary)["cell"].dropna()]
    requests = {c: f for c in cells if (f := _read(run.path / "requests" / f"{c}.csv")) is not None}
    samples = {c: f for c in cells if (f := _read(run.path / "samples" / f"{c}.csv")) is not None}
    return [
        *throughput_chart(agg, meta, out_dir, ceiling),
        *latency_chart(agg, meta, out_dir),
        *resources_chart(agg, meta, out_dir),
        *timeline_chart(run.summary, requests, samples, meta, out_dir),
    ]


def throughput_chart(
    agg: pd.DataFrame, meta: Mapping[str, Any], out_dir: Path, ceiling: pd.DataFrame | None = None
) -> list[Path]:
    return save(throughput_figure(agg, meta, ceiling), out_dir / CHART_FILES[0])


def latency_chart(agg: pd.DataFrame, meta: Mapping[str, Any], out_dir: Path) -> list[Path]:
    return save(latency_figure(agg, meta), out_dir / CHART_FILES[1])


def resources_chart(agg: pd.DataFrame, meta: Mapping[str, Any], out_dir: Path) -> list[Path]:
    return save(resources_figure(agg, meta), out_dir / CHART_FILES[2])


def timeline_chart(
    summary: pd.DataFrame,
    requests: Mapping[str, pd.DataFrame],
    samples: Mapping[str, pd.DataFrame],
    meta: Mapping[str, Any],
    out_dir: Path,
) -> list[Path]:
    return save(timeline_figure(summary, requests, samples, meta), out_dir / CHART_FILES[3])


def save(fig: Figure, path: Path) -> list[Path]:
    """Write a figure as PNG at the chart size; returns [path]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return [path]


def throughput_figure(
    agg: pd.DataFrame, meta: Mapping[str, Any], ceiling: pd.DataFrame | None = None
) -> Figure:
    """Median rps against concurrency per label (log x), 95 % intervals as error bars.

    Cells whose load generator was saturated get a cross (their rps is a floor); the offline
    ceiling (meta["ceiling"] or the `ceiling` frame) is a horizontal line per backend.
    """
    fig, ax = _figure()
    ok = agg[(agg["n_ok"] > 0) & agg["rps"].notna()]
    colors = _colors(agg)
    for label, rows in _by_label(ok):
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
    for i, line in enumerate(_ceilings(meta, ceiling)):
        ax.axhline(
            line["value"],
            color=str(0.2 + 0.2 * (i % 3)),
            linestyle="--",
            linewidth=1.2,
            label=f"offline ceiling ({line['name']})",
        )
    _concurrency_axis(ax, agg)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("throughput (requests/s, median over repeats)")
    return _finish(fig, ax, meta, "Throughput by concurrency", NO_OK if ok.empty else "")


def latency_figure(agg: pd.DataFrame, meta: Mapping[str, Any]) -> Figure:
    """p50, p95 and p99 latency by concurrency (log-log); colour = label, style = percentile."""
    fig, ax = _figure()
    ok = agg[(agg["n_ok"] > 0) & agg["latency_p50_ms"].notna()]
    colors = _colors(agg)
    for label, rows in _by_label(ok):
        for column, _name, style in PERCENTILES:
            ax.plot(
                rows["concurrency"], rows[column], linestyle=style, marker="o", color=colors[label]
            )
    _concurrency_axis(ax, agg)
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
    return _finish(fig, ax, meta, title, NO_OK if ok.empty else "", legend=False)


def resources_figure(agg: pd.DataFrame, meta: Mapping[str, Any]) -> Figure:
    """Server CPU % per label and concurrency (bar = mean, tick = max); peak RSS/PSS per label."""
    fig = _figure(columns=2)[0]
    cpu_ax, mem_ax = fig.axes
    ok = agg[agg["n_ok"] > 0]
    labels = list(dict.fromkeys(ok["label"]))
    levels = sorted(ok["concurrency"].unique())
    x = np.arange(len(labels))
    width = 0.8 / max(len(levels), 1)
    shades = matplotlib.colormaps["Blues"](np.linspace(0.45, 0.9, max(len(levels), 1)))
    for i, level in enumerate(levels):
        rows = ok[ok["concurrency"] == level].set_index("label").reindex(labels)
        pos = x - 0.4 + width * (i + 0.5)
        cpu_ax.bar(pos, rows["cpu_pct_mean"], width, color=shades[i], label=f"c={level} mean")
        cpu_ax.scatter(
            pos,
            rows["cpu_pct_max"],
            marker="_",
            s=200,
            color="black",
            zorder=3,
            label="max" if i == 0 else None,
        )
    cores = _float((meta.get("host") or {}).get("cores"))
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
    return _finish(fig, cpu_ax, meta, "Server resources", "" if labels else NO_OK, legend=False)


def timeline_figure(
    summary: pd.DataFrame,
    requests: Mapping[str, pd.DataFrame],
    samples: Mapping[str, pd.DataFrame],
    meta: Mapping[str, Any],
) -> Figure:
    """The whole run against time: responses/s, CPU % and memory, each cell's window shaded.

    `requests` and `samples` map a cell name to its per-cell frame; a cell without one is
    simply not drawn in that panel. Throughput counts 2xx responses by completion time
    (start + latency) in one-second bins; warm-up samples are drawn faded.
    """
    fig = _figure(rows=3)[0]
    rps_ax, cpu_ax, mem_ax = fig.axes
    frame = prepare(summary)
    colors = _colors(frame)
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
            f"c={row['concurrency']:g}{failed}",
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
    handles: list[Artist] = [Patch(color=colors[lab], alpha=0.6, label=lab) for lab in colors]
    handles += [
        Line2D([], [], color="gray", linestyle=style, label=name) for name, style in LINE_STYLES
    ]
    rps_ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    empty = "" if requests or samples else "no per-cell requests or samples file"
    title = "Timeline of the run (shaded: measured window of each cell)"
    return _finish(fig, rps_ax, meta, title, empty, legend=False)


def _plot_rate(ax: Axes, frame: pd.DataFrame, t0: float, color: Any) -> None:
    start, latency, status = (_numbers(frame, c) for c in ("start", "latency_ms", "status"))
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
    time = _numbers(frame, "time") - t0
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


def _figure(rows: int = 1, columns: int = 1) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, columns, sharex=rows > 1, squeeze=False)
    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(rect=(0, 0.04, 1, 0.96))  # room for the caption below
    first: Axes = axes[0][0]
    return fig, first


def _finish(
    fig: Figure,
    ax: Axes,
    meta: Mapping[str, Any],
    title: str,
    empty: str,
    legend: bool = True,
) -> Figure:
    """Title, caption, legend; `empty` is a note to write across an axes with nothing to show."""
    fig.suptitle(title)
    if empty:
        ax.text(
            0.5,
            0.5,
            empty,
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="gray",
        )
    elif legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.text(0.01, 0.01, caption(meta), fontsize=7, color="0.3")
    return fig


def caption(meta: Mapping[str, Any]) -> str:
    return f"run {meta.get('run_id', '?')} · {describe_host(meta.get('host') or {})}"


def _concurrency_axis(ax: Axes, agg: pd.DataFrame) -> None:
    ax.set_xscale("log")
    levels = sorted(int(c) for c in agg["concurrency"].dropna().unique())
    if levels:
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_xlim(levels[0] / 1.6, levels[-1] * 1.6)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("concurrency (simultaneous users, log scale)")
    ax.grid(True, which="major", alpha=0.3)


def _ceilings(meta: Mapping[str, Any], ceiling: pd.DataFrame | None) -> list[dict[str, Any]]:
    items: Sequence[Mapping[str, Any]] = (
        records(ceiling) if ceiling is not None else meta.get("ceiling") or []
    )
    out = []
    for item in items:
        value = _float(item.get("sentences_per_s"))
        quantize = item.get("quantize")
        name = str(item.get("backend", "?"))
        if isinstance(quantize, str) and quantize not in ("", "none"):
            name += f" {quantize}"
        if item.get("streams") is not None:  # runs before thread layouts were measured lack it
            name += f", {item.get('threads')}t x {item.get('streams')}"
        if not math.isnan(value):
            out.append({"name": name, "value": float(value)})
    return out


def _colors(frame: pd.DataFrame) -> dict[str, Any]:
    """One colour per label, in order of first appearance, the same in every chart."""
    palette = matplotlib.colormaps["tab10"]
    return {label: palette(i % 10) for i, label in enumerate(dict.fromkeys(frame["label"]))}


def _by_label(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [
        (str(label), frame[frame["label"] == label].sort_values("concurrency"))
        for label in dict.fromkeys(frame["label"])
    ]


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series[float]:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError, pd.errors.ParserError, OSError):
        return None
