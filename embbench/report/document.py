"""report.md: a header about the run, then every section of sections.SECTIONS, in its order.

Pure functions: no printing, no exit. The run is read once into a RunView (view.py) that every
section shares; each section (sections/, one module each) turns its numbers into words that
cite them. This module writes only the header and loops over the list.
"""

from __future__ import annotations

from collections.abc import Sequence

from embbench.report.markdown import num as _num
from embbench.report.sections import SECTIONS
from embbench.report.sections.base import DEFAULT_PRICE_PER_CORE_HOUR, ReportOptions
from embbench.report.view import RunView
from embbench.results.folder import RunData
from embbench.results.record import COMPLETE, RunRecord


def render_markdown(
    run: RunData | RunView,
    baseline: str | None = None,
    charts: Sequence[str] | None = None,
    price_per_core_hour: float = DEFAULT_PRICE_PER_CORE_HOUR,
) -> str:
    """report.md: machine, versions, settings, tables, winners, ratios, reasons, charts.

    `charts` are the chart paths to link, relative to the run folder (default: every chart of
    charts.CHARTS that applies). An unknown `baseline` raises UsageError (compare_to_baseline).
    """
    view = run if isinstance(run, RunView) else RunView(run)
    options = ReportOptions(baseline, charts, price_per_core_hour)
    lines = [f"# embbench report: run {view.run_id}", "", *_header(view.record), ""]
    for section in SECTIONS:
        body = section.body(view, options)
        if body is not None:
            lines += [f"## {section.title(options)}", "", *body, ""]
    return "\n".join(lines).rstrip() + "\n"


def _header(record: RunRecord) -> list[str]:
    lines = [f"- Machine: {record.host.describe()}"]
    lines += [f"- Model: {m['summary']}" for m in [record.model or {}] if m.get("summary")]
    if record.status not in (None, COMPLETE):
        lines.append(f"- Run status: {record.status} (not every planned cell ran)")
    if record.versions:
        lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in record.versions.items()))
    if record.git.sha:
        lines.append(
            f"- Git: {record.git.sha}" + (" (uncommitted changes)" if record.git.dirty else "")
        )
    lines += [
        f"- Offline ceiling{when} ({c.kind}): "
        f"{_num(c.sentences_per_s, 1)} sentences/s without HTTP"
        + (
            f" ({c.threads} thread(s) x {c.streams} stream(s), batch {c.best_batch});"
            f" one bare pass {_num(c.batch1_ms, 2)} ms"
            if c.streams is not None
            else ""
        )
        for when, c in record.ceilings.in_order()
    ]
    return lines
