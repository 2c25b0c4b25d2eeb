"""`embbench report` / `compare` as plain functions: load a run, write report.md and charts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from embbench.errors import ResultsError
from embbench.report import document as report
from embbench.report.charts.registry import write_charts
from embbench.report.sections.capacity import DEFAULT_PRICE_PER_CORE_HOUR
from embbench.results.folder import RunData, latest_run, load_run


@dataclass(frozen=True)
class Published:
    run: RunData
    markdown: Path
    charts: list[Path]
    table: pd.DataFrame


def publish_report(
    run_dir: Path | None,
    *,
    out: Path = Path("results"),
    baseline: str | None = None,
    force: bool = False,
    price_per_core_hour: float = DEFAULT_PRICE_PER_CORE_HOUR,
) -> Published:
    """Write report.md and charts/*.png into the run folder (the newest run by default).

    A report already there is kept unless `force`: it may hold a baseline someone chose.
    """
    path = run_dir if run_dir is not None else latest_run(out)
    run = load_run(path)
    markdown = path / "report.md"
    if markdown.exists() and not force:
        raise ResultsError(f"{markdown} exists; pass --force to write it again")
    if baseline is not None:
        report.compare_to_baseline(report.aggregate(run.summary), baseline)  # fail before writing
    charts = write_charts(run, path / "charts")
    links = [str(p.relative_to(path)) for p in charts]
    markdown.write_text(report.render_markdown(run, baseline, links, price_per_core_hour))
    return Published(run, markdown, charts, report.aggregate(run.summary))


def publish_compare(a: Path, b: Path) -> tuple[pd.DataFrame, str]:
    run_a, run_b = load_run(a), load_run(b)
    table = report.compare_runs(run_a, run_b)
    return table, report.render_compare_markdown(run_a, run_b, table)
