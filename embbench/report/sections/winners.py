"""The winners: per level, the label with the highest median throughput, named only where
the paired comparison with the runner-up is significant; a label flagged as caching is not
ranked, and a line says so."""

from __future__ import annotations

import math

from embbench.report.compare import cache_exclusions
from embbench.report.markdown import headings, level_cell
from embbench.report.markdown import num as _num
from embbench.report.markdown import table as _table
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.stats import records
from embbench.report.view import RunView
from embbench.results.verdicts import TOO_FEW


def body(view: RunView, options: ReportOptions) -> list[str]:
    rows = [
        [level_cell(r),
         (r["label"] if r["decided"]
          else f"none: {_undecided(str(r['verdict']))} ({r['label']} leads)")
         + (" (a floor: loadgen saturated)" if r["loadgen_saturated"] else ""),
         _num(r["rps"], 1), _num(r["latency_p99_ms"], 0), r["runner_up"] or "none",
         "" if math.isnan(r["margin"]) else f"{r['margin']:.2f}×", r["verdict"]]
        for r in records(view.winners)
    ]  # fmt: skip
    headers = headings("level, winner, rps, p99 ms, runner-up, rps margin, verdict")
    note = [
        "A winner is named only where its throughput beats the runner-up's with a paired "
        "t-interval on the log ratio that excludes 1 (repeats pair by index); otherwise the "
        "level is a tie within the noise shown, or undecided where too few repeats give no "
        "interval.",
        "",
    ]
    # A label flagged as caching does not rank (results/ranking.py): say so, once per label.
    excluded = cache_exclusions(view.agg, view.frame)
    if excluded:
        note = [*note, *excluded, ""]
    design = view.record.sequential
    if design is not None:  # an auto run: its verdicts are at the design's lower alpha
        note = [*note, design.describe(), ""]
        if design.undecided:
            note = [*note, "Still undecided at the cap: " + "; ".join(design.undecided) + ".", ""]
    if not rows and excluded:
        return [*excluded, "", "No other label finished a cell with status ok."]
    if not rows:
        return ["No cell finished with status ok."]
    return [*note, *_table(headers, rows)]


SECTION = Section("Winners", body)


def _undecided(verdict: str) -> str:
    """Why no winner: a tie has an interval; one repeat has none, and is no tie."""
    return "undecided" if verdict.startswith(TOO_FEW) else "tie within noise"
