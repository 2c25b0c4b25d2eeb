"""`embbench report` / `compare` as plain functions: load a run, write report.md, report.html
and charts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from embbench.errors import ResultsError
from embbench.report.charts import draw_charts
from embbench.report.charts.kit import save
from embbench.report.compare import compare_runs
from embbench.report.compare_markdown import render_compare_markdown
from embbench.report.document import render_markdown
from embbench.report.html.page import render_html
from embbench.report.html.svg import inline_svg
from embbench.report.sections.base import DEFAULT_PRICE_PER_CORE_HOUR, ReportOptions
from embbench.report.view import RunView
from embbench.results.folder import RunData, latest_run, load_run


@dataclass(frozen=True)
class Published:
    """What `embbench report` wrote, and the view it wrote it from (its aggregate, winners)."""

    view: RunView
    markdown: Path
    charts: list[Path]
    html: Path

    @property
    def run(self) -> RunData:
        return self.view.run

    @property
    def table(self) -> pd.DataFrame:
        """Medians per (label, level): the view's aggregate."""
        return self.view.agg


def publish_report(
    run_dir: Path | None,
    *,
    out: Path = Path("results"),
    baseline: str | None = None,
    force: bool = False,
    price_per_core_hour: float = DEFAULT_PRICE_PER_CORE_HOUR,
) -> Published:
    """Write report.md, report.html and charts/*.png into the run folder (the newest run by
    default). The page and the PNGs are drawn from the same figures.

    A report already there is kept unless `force`: it may hold a baseline someone chose.
    """
    path = run_dir if run_dir is not None else latest_run(out)
    run = load_run(path)
    markdown = run.folder.report
    if markdown.exists() and not force:
        raise ResultsError(f"{markdown} exists; pass --force to write it again")
    view = RunView(run)  # read once: the charts, every section and the caller share it
    if baseline is not None:
        view.against(baseline)  # an unknown baseline fails before anything is written
    drawn = draw_charts(view)
    charts = [save(figure, run.folder.charts / chart.file) for chart, figure in drawn]
    links = [str(p.relative_to(path)) for p in charts]
    markdown.write_text(render_markdown(view, baseline, links, price_per_core_hour))
    svgs = [(chart.name, inline_svg(figure, chart.name)) for chart, figure in drawn]
    options = ReportOptions(baseline, links, price_per_core_hour)
    page = run.folder.report_html
    page.write_text(render_html(view, options, svgs), encoding="utf-8")
    return Published(view, markdown, charts, page)


def publish_compare(a: Path, b: Path) -> tuple[pd.DataFrame, str]:
    run_a, run_b = load_run(a), load_run(b)
    table = compare_runs(run_a, run_b)
    return table, render_compare_markdown(run_a, run_b, table)
