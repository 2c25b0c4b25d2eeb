"""The report's "CPU per embedding against the ceiling": each server's CPU time per answer set
beside the offline ceilings measured just before and just after its repeat.

A shared machine drifts (the same server and the same ceiling moved 10 % within an hour
here), so a ratio to a ceiling measured once, at the start of a 20-minute run, carries that
drift. The runner measures the ceiling before the cells, between repeats and after them
(run/session.py); a cell of repeat r is set against the mean of the two ceilings
around it, and the ratios of the repeats are summarised by their median and range.

CPU per embedding is the server's CPU time per answered request, the ceiling's its cores, all
busy, over its best rate: both defined once, in results/cpu.py.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from embbench.report.markdown import num, table
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.stats import level_order
from embbench.report.view import RunView
from embbench.results import cpu
from embbench.results.ceilings import Ceiling, best_rate
from embbench.results.folder import OK
from embbench.results.record import RunRecord

# The headings of the two figures, in this section's table and in the capacity section's.
CPU_MS = "CPU ms/embedding"
CEILING_CPU_MS = "ceiling CPU ms/embedding"


def ceiling_cpu_ms(ceiling: Ceiling, cores: float) -> float:
    """CPU ms per embedding at an offline ceiling (results/cpu.py), at its best rate."""
    return cpu.ceiling_cpu_ms(best_rate(ceiling)[0], cores)


def host_cores(record: RunRecord) -> float:
    return float(record.host.cores or math.nan)


def cpu_rows(view: RunView) -> list[dict[str, Any]]:
    """Per (label, level) of a backend with ceilings: the server's median CPU ms per
    embedding, and its ratio to the ceilings around each repeat (median, lowest, highest)."""
    frame, record = view.frame, view.record
    frame = frame[(frame["status"] == OK) & (frame["rps"] > 0) & frame["cpu_pct_mean"].notna()]
    cores = host_cores(record)
    out = []
    for (label, level), rows in frame.groupby(["label", "level"], sort=False):
        cpu_ms, ceilings, ratios = [], [], []
        for r in rows.to_dict("records"):
            quantize = r["quantize"] if isinstance(r["quantize"], str) else "none"
            around = [
                ceiling_cpu_ms(c, cores)
                for c in record.ceilings.around(r["backend"], quantize, int(r["repeat"]))
            ]
            around = [a for a in around if a > 0]
            if not around:
                continue
            server = cpu.server_cpu_ms(float(r["cpu_pct_mean"]), float(r["rps"]))
            ceiling = statistics.fmean(around)
            cpu_ms.append(server)
            ceilings.append(ceiling)
            ratios.append(server / ceiling)
        if ratios:
            out.append(
                {
                    "label": label,
                    "level": level,
                    "repeats": len(ratios),
                    "cpu_ms": statistics.median(cpu_ms),
                    "ceiling_ms": statistics.median(ceilings),
                    "ratio": statistics.median(ratios),
                    "ratio_low": min(ratios),
                    "ratio_high": max(ratios),
                }
            )
    return sorted(out, key=lambda row: (level_order(str(row["level"])), row["ratio"]))


def cpu_section(view: RunView) -> list[str]:
    """The table with its note; empty where no cell has a ceiling of its backend around it."""
    rows = cpu_rows(view)
    if not rows:
        return []
    headers = ["label", "level", CPU_MS, CEILING_CPU_MS, "ratio", "ratio range", "repeats"]
    cells = [
        [str(r["label"]), str(r["level"]), num(r["cpu_ms"], 3), num(r["ceiling_ms"], 3),
         f"{num(r['ratio'], 2)}x", f"{num(r['ratio_low'], 2)}-{num(r['ratio_high'], 2)}x",
         str(r["repeats"])]
        for r in rows
    ]  # fmt: skip
    return [
        "The server's CPU time per answered request beside the offline ceiling's CPU time per "
        "sentence, each repeat against the ceilings measured just before and after it (the "
        "machine drifts over a run); medians over the repeats, and the range of the ratios.",
        "",
        *table(headers, cells),
    ]


def body(view: RunView, options: ReportOptions) -> list[str] | None:
    return cpu_section(view) or None  # left out where there is nothing to set side by side


SECTION = Section("CPU per embedding against the ceiling", body)
