"""Charts of a run, as a list: each chart is a name, a file and a function drawing its figure.

`write_charts` draws every chart of `CHARTS` that has something to show into a folder as a PNG
of 1000 x 600 pixels; report.md links the files written. Adding a chart means one function
(figures.py, timeline.py or a module of its own) and one line in `CHARTS`, as asv's
publishers are a list. Each figure is a pure function of the run's DataFrames.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from embbench.report import quality
from embbench.report.charts.kit import HEIGHT_PX, WIDTH_PX, caption, read_frame, save
from embbench.report.charts.summary import (
    latency_figure,
    offered_load_figure,
    quality_figure,
    resources_figure,
    throughput_figure,
)
from embbench.report.charts.timeline import timeline_figure
from embbench.report.stats import aggregate, prepare, records
from embbench.results.folder import RunData

__all__ = [
    "CHARTS",
    "CHART_FILES",
    "HEIGHT_PX",
    "WIDTH_PX",
    "Chart",
    "RunView",
    "caption",
    "latency_figure",
    "resources_figure",
    "throughput_figure",
    "timeline_figure",
    "write_charts",
]


@dataclass
class RunView:
    """What charts draw from, each part read once and only when a chart asks for it."""

    run: RunData
    ceiling: pd.DataFrame | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def meta(self) -> dict[str, Any]:
        return {**self.run.meta, "run_id": self.run.meta.get("run_id") or self.run.path.name}

    @functools.cached_property
    def agg(self) -> pd.DataFrame:
        return aggregate(self.run.summary)

    @functools.cached_property
    def closed(self) -> pd.DataFrame:
        """Closed-loop levels: the charts whose x axis is concurrency."""
        return self.agg[self.agg["load_model"].fillna("closed") != "open"]

    @functools.cached_property
    def open(self) -> pd.DataFrame:
        return self.agg[self.agg["load_model"] == "open"]

    @functools.cached_property
    def quality(self) -> list[dict[str, Any]]:
        return quality.label_quality(records(self.run.summary))

    @functools.cached_property
    def cells(self) -> list[str]:
        return [str(c) for c in prepare(self.run.summary)["cell"].dropna()]

    @functools.cached_property
    def requests(self) -> dict[str, pd.DataFrame]:
        """Per-cell request logs; a missing or unreadable file (a failed cell) is left out."""
        return self._per_cell("requests")

    @functools.cached_property
    def samples(self) -> dict[str, pd.DataFrame]:
        return self._per_cell("samples")

    def _per_cell(self, folder: str) -> dict[str, pd.DataFrame]:
        found = {c: read_frame(self.run.path / folder / f"{c}.csv") for c in self.cells}
        return {c: f for c, f in found.items() if f is not None}


@dataclass(frozen=True)
class Chart:
    name: str
    file: str
    draw: Callable[[RunView], Figure]
    # Whether the run has what this chart shows (a chart of open-loop cells needs some).
    applies: Callable[[RunView], bool] = lambda view: True


def _has_closed(view: RunView) -> bool:
    return not view.closed.empty or view.open.empty


CHARTS: tuple[Chart, ...] = (
    Chart("throughput", "throughput.png",
          lambda v: throughput_figure(v.closed, v.meta, v.ceiling), _has_closed),
    Chart("latency", "latency.png", lambda v: latency_figure(v.closed, v.meta), _has_closed),
    Chart("resources", "resources.png", lambda v: resources_figure(v.agg, v.meta)),
    Chart("offered-load", "offered-load.png",
          lambda v: offered_load_figure(v.open, v.meta, v.meta.get("slo_p99_ms")),
          lambda v: not v.open.empty),
    Chart("quality", "quality.png", lambda v: quality_figure(v.quality, v.meta),
          lambda v: bool(v.quality)),
    Chart("timeline", "timeline.png",
          lambda v: timeline_figure(v.run.summary, v.requests, v.samples, v.meta)),
)  # fmt: skip
CHART_FILES = tuple(chart.file for chart in CHARTS)


def write_charts(run: RunData, out_dir: Path, ceiling: pd.DataFrame | None = None) -> list[Path]:
    """Write every chart that applies to the run into out_dir; returns the paths written.

    A cell whose requests or samples file is missing or unreadable (a failed cell) is left
    out of the timeline; it does not stop the other charts.
    """
    view = RunView(run, ceiling)
    return [save(chart.draw(view), out_dir / chart.file) for chart in CHARTS if chart.applies(view)]


def chart_links(run: RunData | None = None) -> list[str]:
    """Paths of the charts relative to a run folder, in list order (those that apply)."""
    view = RunView(run) if run is not None else None
    return [f"charts/{chart.file}" for chart in CHARTS if view is None or chart.applies(view)]
