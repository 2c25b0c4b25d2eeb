"""The report's "Start-up cost": what each label pays at every launch (seconds to ready, the
first request after ready, the memory peak while starting), set against its steady state.

Every cell launches its server afresh, so a label has as many start-ups as cells: the table
gives their median and range. The steady state is the measured windows' memory (rss_mb_max,
pss_mb_max), so a start-up spike above what the server needs later reads as a ratio. A replica
added under load pays all of this on a machine that is already busy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from embbench.report.markdown import headings, num, table
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.view import RunView
from embbench.results.folder import OK


def _median(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.median()) if len(values) else math.nan


def _range(values: pd.Series, digits: int) -> str:
    values = values.dropna()
    if len(values) < 2:
        return "–"
    return f"{num(values.min(), digits)}–{num(values.max(), digits)}"


def startup_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per label with at least one measured start-up: medians and ranges over its launches."""
    if "startup_s" not in frame.columns:
        return []
    out = []
    for label, rows in frame.groupby("label", sort=False):
        launched = rows[rows["startup_s"].notna()]
        if not len(launched):
            continue
        steady = rows[rows["status"] == OK]
        peak_pss = _median(launched["startup_pss_mb_peak"])
        steady_pss = _median(steady["pss_mb_max"])
        out.append(
            {
                "label": str(label),
                "launches": len(launched),
                "startup_s": _median(launched["startup_s"]),
                "startup_range": _range(launched["startup_s"], 1),
                "first_ms": _median(launched["first_request_ms"]),
                "first_max_ms": float(launched["first_request_ms"].max()),
                "peak_rss": _median(launched["startup_rss_mb_peak"]),
                "peak_pss": peak_pss,
                "steady_rss": _median(steady["rss_mb_max"]),
                "steady_pss": steady_pss,
                "ratio": peak_pss / steady_pss if steady_pss > 0 else math.nan,
            }
        )
    return sorted(out, key=lambda r: r["startup_s"])


def startup_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    cells = [
        [r["label"], str(r["launches"]), num(r["startup_s"], 1), r["startup_range"],
         num(r["first_ms"], 0), num(r["first_max_ms"], 0), num(r["peak_rss"], 0),
         num(r["steady_rss"], 0), num(r["peak_pss"], 0), num(r["steady_pss"], 0),
         "–" if math.isnan(r["ratio"]) else f"{r['ratio']:.2f}x"]
        for r in rows
    ]  # fmt: skip
    return table(
        headings("label, launches, start-up s, range s, first request ms, first request max ms, "
                 "start-up RSS MB, steady RSS MB, start-up PSS MB, steady PSS MB, PSS peak/steady"),
        cells,
    )  # fmt: skip


def body(view: RunView, options: ReportOptions) -> list[str] | None:
    """None for a run that launched no server of its own (`--url`) or predates the columns."""
    rows = startup_rows(view.frame)
    if not rows:
        return None
    return [
        "What every launch costs: seconds from the server's process start until /health "
        "answered, the first embedding request after that (lazy initialisation shows here), "
        "and the process tree's memory peak while starting beside its peak in the measured "
        "windows (steady). Medians over every cell's launch, with their range; a ratio above "
        "1x is memory a replica needs only to start, which a pod's memory limit must still "
        "allow.",
        "",
        *startup_table(rows),
    ]


SECTION = Section("Start-up cost", body)
