"""The charts: a link to each chart drawn into the run folder's charts/."""

from __future__ import annotations

from embbench.report.sections.base import ReportOptions, Section
from embbench.report.view import RunView


def body(view: RunView, options: ReportOptions) -> list[str]:
    """A link per chart: those asked for, or every chart of charts.CHARTS that applies."""
    if options.charts is None:
        # Imported here: matplotlib loads only when a report is written, not with the CLI.
        from embbench.report.charts import chart_links

        paths = chart_links(view)
    else:
        paths = list(options.charts)
    lines: list[str] = []
    for path in paths:
        lines += [f"![{path.rsplit('/', 1)[-1].removesuffix('.png')}]({path})", ""]
    return lines


SECTION = Section("Charts", body)
