"""The noise floor: how much each cell's repeats spread, and the smallest difference they
could call significant."""

from __future__ import annotations

import math
from typing import Any

from embbench.report.markdown import headings, level_cell
from embbench.report.markdown import table as _table
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.stats import records
from embbench.report.view import RunView


def body(view: RunView, options: ReportOptions) -> list[str]:
    rows = [
        [r["label"], level_cell(r), f"{r['n_ok']}", _pct(r["rps_cv"]),
         "±" + _pct(r["detectable_pct"] / 100) if r["detectable_pct"] == r["detectable_pct"]
         else "too few repeats",
         ", ".join(f for f, on in (("unstable (CV > 10 %)", r["unstable"]),
                                   ("p99 imprecise (< 1000 requests)", r["p99_imprecise"])) if on)]
        for r in records(view.agg)
    ]  # fmt: skip
    headers = headings("label, level, ok repeats, rps CV, detectable difference, flags")
    return [
        "How much the repeats of each cell spread (coefficient of variation of rps), and the "
        "smallest throughput difference against a label with the same noise that this many "
        "repeats could call significant.",
        "",
        *_table(headers, rows),
    ]


SECTION = Section("Noise floor", body)


def _pct(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(number) else f"{100 * number:.1f} %"
