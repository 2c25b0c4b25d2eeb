"""Quality under load: what each label's answers cost in cosine on the run's payload, beside
its speed."""

from __future__ import annotations

import pandas as pd

from embbench.report.markdown import headings
from embbench.report.markdown import num as _num
from embbench.report.markdown import table as _table
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.view import RunView


def body(view: RunView, options: ReportOptions) -> list[str]:
    """What each label's answers cost in cosine on this run's payload, beside its speed."""
    table, agg = view.quality, view.agg
    if not table:
        return ["No answer was checked under load (`--check-rate 0`, or a run before the check)."]
    ok = agg[agg["n_ok"] > 0]
    best = ok.groupby("label")["rps"].max() if len(ok) else pd.Series(dtype=float)
    rows = [
        [r["label"], str(r["quantize"] or "–"), f"{r['checked']}", f"{r['mismatched']}",
         _num(r["cosine_min"], 4), _num(r["cosine_p1"], 4), _num(r["cosine_p50"], 4),
         _num(r["cosine_threshold"], 3), _num(best.get(r["label"]), 1)]
        for r in table
    ]  # fmt: skip
    headers = headings("label, quantize, answers checked, mismatched, cosine min, cosine p1, "
                       "cosine p50, threshold, best rps")  # fmt: skip
    return [
        "Answers taken during the measured windows (all cells of a label, failed ones too), "
        "each compared with sentence-transformers' embedding of the input it was sent: the "
        "cost of int8 or any other approximation on this payload, next to the speed bought "
        "with it. Cosine min includes the probe before the load; p1 is the lowest of the "
        "cells' 1st percentiles, p50 the median of their medians. A mismatched answer is "
        "closer to another input's reference than to its own: one fails its cell, as does a "
        "cosine below the threshold.",
        "",
        *_table(headers, rows),
    ]


SECTION = Section("Quality under load", body)
