"""The report's "CPU per embedding against the ceiling": each server's CPU time per answer set
beside the offline ceilings measured just before and just after its repeat.

A shared machine drifts (the same server and the same ceiling moved 10 % within an hour
here), so a ratio to a ceiling measured once, at the start of a 20-minute run, carries that
drift. The runner measures the ceiling before the cells, between repeats and after them
(runner.measure_ceilings); a cell of repeat r is set against the mean of the two ceilings
around it, and the ratios of the repeats are summarised by their median and range.

CPU per embedding is the server's CPU time per answered request (CPU % x 10 / rps: ms);
the ceiling's is its cores, all busy, over its best rate (issue 9's column), so that both
count the same thing: CPU time per sentence embedded.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

import pandas as pd

from embbench.report.markdown import num, table
from embbench.report.stats import level_order, prepare
from embbench.results.ceilings import best_rate
from embbench.results.folder import OK


def ceiling_cpu_ms(ceiling: Mapping[str, Any], cores: float) -> float:
    """CPU ms per embedding at the offline ceiling: its cores, fully busy, over its rate."""
    rate, _ = best_rate(ceiling)
    return cores * 1000.0 / rate if rate > 0 and cores > 0 else math.nan


def host_cores(meta: Mapping[str, Any]) -> float:
    return float((meta.get("host") or {}).get("cores") or math.nan)


def of_backend(entries: Any, backend: Any, quantize: Any) -> list[Mapping[str, Any]]:
    """The ceilings among `entries` (a run.json list) measured for this backend."""
    return [
        c
        for c in entries or []
        if isinstance(c, Mapping)
        and (c.get("backend"), c.get("quantize", "none")) == (backend, quantize)
    ]


def ceilings_around(
    meta: Mapping[str, Any], backend: Any, quantize: Any, repeat: int
) -> list[Mapping[str, Any]]:
    """The ceilings of this backend measured just before and just after repeat `repeat`."""
    between = {
        int(c["after_repeat"]): c
        for c in of_backend(meta.get("ceiling_between"), backend, quantize)
        if isinstance(c.get("after_repeat"), int)
    }
    first = next(iter(of_backend(meta.get("ceiling"), backend, quantize)), None)
    last = next(iter(of_backend(meta.get("ceiling_after"), backend, quantize)), None)
    before = first if repeat == 0 else between.get(repeat - 1)
    # After the last repeat (or in a run from before ceilings were measured between repeats):
    # the one measured after the cells.
    after = between.get(repeat, last if repeat > max(between, default=-1) else None)
    return [c for c in (before, after) if c is not None]


def cpu_rows(summary: pd.DataFrame, meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per (label, level) of a backend with ceilings: the server's median CPU ms per
    embedding, and its ratio to the ceilings around each repeat (median, lowest, highest)."""
    frame = prepare(summary)
    frame = frame[(frame["status"] == OK) & (frame["rps"] > 0) & frame["cpu_pct_mean"].notna()]
    cores = host_cores(meta)
    out = []
    for (label, level), rows in frame.groupby(["label", "level"], sort=False):
        cpu_ms, ceilings, ratios = [], [], []
        for r in rows.to_dict("records"):
            quantize = r["quantize"] if isinstance(r["quantize"], str) else "none"
            around = [
                ceiling_cpu_ms(c, cores)
                for c in ceilings_around(meta, r["backend"], quantize, int(r["repeat"]))
            ]
            around = [a for a in around if a > 0]
            if not around:
                continue
            server = float(r["cpu_pct_mean"]) * 10.0 / float(r["rps"])
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


def cpu_section(summary: pd.DataFrame, meta: Mapping[str, Any]) -> list[str]:
    rows = cpu_rows(summary, meta)
    if not rows:
        return []
    headers = ["label", "level", "CPU ms/embedding", "ceiling CPU ms/embedding", "ratio",
               "ratio range", "repeats"]  # fmt: skip
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
