"""The capacity section of report.md: the rate each variant sustains within its p99 target,
what that costs in CPU, memory and money, and where its knee is.

CPU per embedding is the server's own CPU time per answered request at the rate found, set
beside the offline ceiling's (all cores busy at its best batched rate), so the cost of serving
reads apart from the load generator's share of the machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from embbench.report.markdown import num as _num
from embbench.report.markdown import table as _table
from embbench.report.sections.ceiling import ceiling_cpu_ms, host_cores, of_backend
from embbench.report.stats import records

# USD per core-hour: about what an on-demand general-purpose cloud vCPU costs (2026); pass
# --price-per-core-hour for your own. The cost counts the server's CPU time only.
DEFAULT_PRICE_PER_CORE_HOUR = 0.05
MS_PER_HOUR = 3_600_000.0


def _ceiling_cpu_ms(meta: Mapping[str, Any], backend: Any, quantize: Any) -> float:
    """CPU ms per embedding at the offline ceiling measured before the cells."""
    first = of_backend(meta.get("ceiling"), backend, quantize)
    return ceiling_cpu_ms(first[0], host_cores(meta)) if first else math.nan


def capacity_section(
    capacity: pd.DataFrame,
    agg: pd.DataFrame,
    meta: Mapping[str, Any],
    price_per_core_hour: float = DEFAULT_PRICE_PER_CORE_HOUR,
) -> list[str]:
    backends = {r["label"]: (r.get("backend"), r.get("quantize") or "none") for r in records(agg)}
    rows, knees = [], []
    for r in records(capacity):
        cpu_ms = float(r.get("cpu_ms_per_embedding") or math.nan)
        ceiling = _ceiling_cpu_ms(meta, *backends.get(r["label"], (None, None)))
        cost = cpu_ms / MS_PER_HOUR * 1e6 * price_per_core_hour
        rows.append([
            str(r["label"]), str(r["status"]), _num(r.get("qps_at_slo"), 1),
            _num(r.get("p99_at_slo_ms"), 0), _num(r.get("cpu_pct_at_slo"), 0),
            _num(cpu_ms, 2), _num(ceiling, 2), _num(r.get("pss_mb_at_slo"), 0),
            _num(cost, 3), str(int(r.get("probes") or 0)),
        ])  # fmt: skip
        knees.append(f"- {r['label']}: {_knee(r)}")
    slo = float(capacity["slo_p99_ms"].iloc[0]) if len(capacity) else math.nan
    headers = ["label", "status", "rps at target", "p99 ms", "CPU %", "CPU ms/embedding",
               "ceiling CPU ms/embedding", "PSS MB", f"USD per million (at {price_per_core_hour:g}"
               "/core-hour)", "probes"]  # fmt: skip
    return [
        f"The highest open-loop arrival rate whose p99 (from the scheduled send) stays within "
        f"{slo:g} ms and whose errors stay within the limit, per label; every probe is a row "
        "of summary.csv and a point of the offered-load chart.",
        "",
        *_table(headers, rows),
        "",
        *knees,
    ]


def _knee(r: Mapping[str, Any]) -> str:
    reason = str(r.get("reason") or "")
    if r.get("status") == "found":
        return f"sustains {float(r['qps_at_slo']):.1f} rps within the target ({reason})."
    if r.get("status") == "none":
        return f"meets the target at no rate tried ({reason})."
    return f"capacity not decided ({reason})."
