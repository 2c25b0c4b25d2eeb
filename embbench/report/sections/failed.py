"""The failed cells: every cell whose status is not ok, with the reason the run recorded."""

from __future__ import annotations

from embbench.report.markdown import headings, level_cell
from embbench.report.markdown import table as _table
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.stats import records
from embbench.report.view import RunView


def body(view: RunView, options: ReportOptions) -> list[str]:
    rows = [
        [r["cell"], r["label"], level_cell(r), f"{r['repeat']:g}", r["status"],
         r["reason"]]
        for r in records(view.failed)
    ]  # fmt: skip
    headers = headings("cell, label, level, repeat, status, reason")
    return _table(headers, rows) if rows else ["None: every cell finished with status ok."]


SECTION = Section("Failed cells", body)
