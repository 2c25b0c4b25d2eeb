"""Against a baseline (`--baseline`): each label's throughput and median latency as ratios to
the baseline's at the same level, paired by repeat."""

from __future__ import annotations

from typing import Any

from embbench.report.markdown import headings, level_cell
from embbench.report.markdown import table as _table
from embbench.report.markdown import with_ci as _with_ci
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.stats import records
from embbench.report.view import RunView
from embbench.results.verdicts import SIGNIFICANT, TIE


def body(view: RunView, options: ReportOptions) -> list[str] | None:
    baseline = options.baseline
    if baseline is None:
        return None
    table = view.against(baseline)
    rows = [
        [r["label"], level_cell(r),
         _with_ci(r["rps_ratio"], r["rps_ratio_ci_low"], r["rps_ratio_ci_high"], 2),
         _verdict(r["rps_verdict"], r["rps_noise_pct"]),
         _with_ci(r["p50_ratio"], r["p50_ratio_ci_low"], r["p50_ratio_ci_high"], 2),
         _verdict(r["p50_verdict"], r["p50_noise_pct"])]
        for r in records(table)
    ]  # fmt: skip
    base = table["baseline"].iloc[0] if len(table) else baseline
    headers = headings("label, level, rps ratio (95 % CI), throughput, p50 ratio (95 % CI), "
                       "latency")  # fmt: skip
    return [
        f"Ratios to {base} at the same concurrency (paired by repeat: the geometric mean of the"
        ' per-repeat ratios, with the 95 % t-interval of the log ratio; "significant" only'
        " where it excludes 1).",
        "",
        *_table(headers, rows),
    ]


def _verdict(word: Any, noise_pct: Any) -> str:
    if word == SIGNIFICANT:
        return SIGNIFICANT
    if word == TIE:
        return f"tie within noise (±{float(noise_pct):.0f} %)"
    return "too few repeats"


# The heading names the baseline asked for, as it was given.
SECTION = Section(lambda options: f"Against {options.baseline}", body)
