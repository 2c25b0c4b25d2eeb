"""Charts of a run, as a list: each chart is a name, a file and a function drawing its figure.

`write_charts` draws every chart of `CHARTS` that has something to show into a folder as a PNG
of 1000 x 600 pixels; report.md links the files written. A chart is a module of this folder
(kit.py holds the drawing helpers they share) and one line in `CHARTS`, as asv's publishers are
a list. Each figure is a pure function of DataFrames and the record; every chart draws from the
same RunView (report/view.py), so the run is aggregated once for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from embbench.report.charts.kit import save
from embbench.report.charts.latency import latency_figure
from embbench.report.charts.offered_load import offered_load_figure
from embbench.report.charts.phases import applies as phases_apply
from embbench.report.charts.phases import phases_figure
from embbench.report.charts.quality import quality_figure
from embbench.report.charts.resources import resources_figure
from embbench.report.charts.speed_quality import speed_quality_figure
from embbench.report.charts.throughput import throughput_figure
from embbench.report.charts.timeline import timeline_figure
from embbench.report.retrieval import retrieval_rows
from embbench.report.view import RunView
from embbench.results.folder import CHARTS as CHARTS_DIR
from embbench.results.folder import RunData


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
          lambda v: throughput_figure(v.closed, v.record, v.ceiling), _has_closed),
    Chart("latency", "latency.png", lambda v: latency_figure(v.closed, v.record), _has_closed),
    Chart("resources", "resources.png", lambda v: resources_figure(v.agg, v.record)),
    Chart("offered-load", "offered-load.png",
          lambda v: offered_load_figure(v.open, v.record, v.record.slo_p99_ms),
          lambda v: not v.open.empty),
    Chart("quality", "quality.png", lambda v: quality_figure(v.quality, v.record),
          lambda v: bool(v.quality)),
    Chart("speed-quality", "speed-quality.png",
          lambda v: speed_quality_figure(*retrieval_rows(v), record=v.record),
          lambda v: bool(retrieval_rows(v)[0])),
    Chart("timeline", "timeline.png",
          lambda v: timeline_figure(v.frame, v.requests, v.samples, v.record)),
    Chart("phases", "phases.png", lambda v: phases_figure(v.agg, v.record),
          lambda v: phases_apply(v.agg)),
)  # fmt: skip
CHART_FILES = tuple(chart.file for chart in CHARTS)


def draw_charts(view: RunView) -> list[tuple[Chart, Figure]]:
    """Every chart that applies to the run, drawn: the PNGs and the page's SVGs are saved
    from these same figures.

    A cell whose requests or samples file is missing or unreadable (a failed cell) is left
    out of the timeline; it does not stop the other charts.
    """
    return [(chart, chart.draw(view)) for chart in CHARTS if chart.applies(view)]


def write_charts(run: RunData | RunView, out_dir: Path) -> list[Path]:
    """Write every chart that applies to the run into out_dir; returns the paths written."""
    view = run if isinstance(run, RunView) else RunView(run)
    return [save(figure, out_dir / chart.file) for chart, figure in draw_charts(view)]


def chart_links(run: RunData | RunView | None = None) -> list[str]:
    """Paths of the charts relative to a run folder, in list order (those that apply)."""
    view = run if isinstance(run, RunView | None) else RunView(run)
    return [f"{CHARTS_DIR}/{chart.file}" for chart in CHARTS if view is None or chart.applies(view)]
